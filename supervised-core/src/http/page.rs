//! `GET /admin/`: the status page, one self-contained HTML document (inline
//! CSS and JS, no external resource) that shows every task as a row and
//! refreshes from `/admin/liveness` every 2 s.
//!
//! The page carries no task data, so it is served without the token; the
//! token comes from the URL fragment (`/admin/#token=…`, which browsers never
//! send to the server) or a form, and is kept in the tab's `sessionStorage`.

use axum::body::Body;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::respond::respond;

/// The document.
const PAGE: &str = include_str!("page.html");

/// What the page may do: run its own inline script and style, and fetch
/// from its own origin. Nothing else, and no framing.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// `GET /admin/`: the shared answer headers (`no-store`, `nosniff`), plus
/// the page's policy.
pub(super) async fn page() -> Response {
    let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", Body::from(PAGE));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /admin`: to `/admin/`, so that the page's relative fetch of
/// `liveness` resolves under the same prefix (the fragment is kept by the
/// browser).
pub(super) async fn to_page() -> Response {
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("admin/"));
    response
}
