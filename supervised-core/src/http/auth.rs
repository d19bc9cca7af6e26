//! Who may see what: the bearer token, compared in constant time.

use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use subtle::ConstantTimeEq;

use super::query::parse_query;
use super::{Access, Reject, Shared};

impl Shared {
    /// `true` when the request carries the configured bearer token.
    pub(super) fn has_token(&self, headers: &HeaderMap) -> bool {
        let Access::Token(expected) = &self.access else {
            return false;
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some(split) = value.iter().position(|b| *b == b' ') else {
            return false;
        };
        let (scheme, rest) = value.split_at(split);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let given = rest.trim_ascii();
        // Constant time in the token's content: no early exit at the first
        // differing byte.
        bool::from(expected.as_ref().ct_eq(given))
    }

    /// Whether failure reasons may be shown to this caller.
    pub(super) fn details_for(&self, headers: &HeaderMap) -> bool {
        match self.access {
            Access::Open => self.expose_failure_messages,
            Access::Token(_) => self.has_token(headers),
        }
    }

    /// For the admin routes: `Ok(details)` or the `401` answer.
    pub(super) fn admit(&self, headers: &HeaderMap) -> Result<bool, Reject> {
        match self.access {
            Access::Open => Ok(self.expose_failure_messages),
            Access::Token(_) if self.has_token(headers) => Ok(true),
            Access::Token(_) => Err(Reject {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized",
                detail: "this endpoint requires `Authorization: Bearer <token>` with a valid token",
            }),
        }
    }

    /// For the admin routes that take no query: authorisation first (a
    /// caller without the token learns nothing, not even whether its query
    /// parses), then the query. `Ok(details)` or the answer to send.
    pub(super) fn admit_request(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<bool, Reject> {
        let details = self.admit(headers)?;
        parse_query(query)?;
        Ok(details)
    }

    pub(super) fn shutting_down(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|t| t.is_cancelled())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use axum::http::HeaderValue;

    fn shared(token: &str) -> Shared {
        Shared::new(Registry::new(), Access::Token(token.as_bytes().into()))
    }

    fn with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    #[test]
    fn only_the_exact_token_is_admitted() {
        let s = shared("secret-token-0123456789");
        assert!(s.has_token(&with("Bearer secret-token-0123456789")));
        assert!(s.has_token(&with("bearer  secret-token-0123456789 ")));
        assert!(!s.has_token(&with("Bearer secret-token-012345678")));
        assert!(!s.has_token(&with("Bearer secret-token-01234567890")));
        assert!(!s.has_token(&with("Bearer secret-token-0123456788")));
        assert!(!s.has_token(&with("Basic secret-token-0123456789")));
        assert!(!s.has_token(&with("Bearer")));
        assert!(!s.has_token(&HeaderMap::new()));
    }
}
