//! The answers: JSON errors, text and JSON bodies with the headers every
//! answer carries, and the layer that gives them to axum's own answers.

use axum::body::Body;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

/// The body of every error answer.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: &'a str,
}

pub(super) fn error(status: StatusCode, code: &str, detail: &str) -> Response {
    json_response(
        status,
        "application/json",
        &ErrorBody {
            error: code,
            detail,
        },
    )
}

/// A refused request, turned into its JSON error response at the end.
#[derive(Debug)]
pub(super) struct Reject {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) detail: &'static str,
}

impl Reject {
    pub(super) fn bad_query(code: &'static str, detail: &'static str) -> Reject {
        Reject {
            status: StatusCode::BAD_REQUEST,
            code,
            detail,
        }
    }

    pub(super) fn into_response(self) -> Response {
        let mut response = error(self.status, self.code, self.detail);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"supervised\""),
            );
        }
        response
    }
}

/// Every response of these routes, the ones axum makes included (`405`):
/// never cached, never sniffed, and a `405` says what is allowed in a body.
pub(super) async fn harden(response: Response) -> Response {
    let mut response = if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = response.headers().get(header::ALLOW).cloned();
        let mut replaced = Reject {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            detail: "these routes answer GET (and HEAD) only",
        }
        .into_response();
        if let Some(allow) = allow {
            replaced.headers_mut().insert(header::ALLOW, allow);
        }
        replaced
    } else {
        response
    };
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
}

/// `value` serialized straight into the body.
pub(super) fn json_response<T: Serialize>(
    status: StatusCode,
    content_type: &'static str,
    value: &T,
) -> Response {
    json_response_sized(status, content_type, value, 128)
}

/// [`json_response`] into a body of `capacity` bytes to start with.
pub(super) fn json_response_sized<T: Serialize>(
    status: StatusCode,
    content_type: &'static str,
    value: &T,
    capacity: usize,
) -> Response {
    let mut body = Vec::with_capacity(capacity);
    if serde_json::to_writer(&mut body, value).is_err() {
        body = b"{}".to_vec();
    }
    respond(status, content_type, Body::from(body))
}

pub(super) fn text_response(status: StatusCode, body: String) -> Response {
    respond(status, "text/plain; charset=utf-8", Body::from(body))
}

pub(super) fn respond(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(super) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
