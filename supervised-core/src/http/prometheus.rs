//! `GET /metrics`: the task metrics in Prometheus text (or OpenMetrics,
//! when asked), behind the token.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::Response;

use super::respond::{error, respond};
use super::Shared;

pub(super) async fn metrics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    // Authorisation first, as for `/admin/liveness`.
    if let Err(reject) = shared.admit_request(&headers, raw.as_deref()) {
        return reject.into_response();
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let rendered = match &shared.metrics {
        Some(prom) => crate::metrics::encode_registry(prom, openmetrics),
        None => {
            let mut prom = prometheus_client::registry::Registry::default();
            crate::metrics::register(&mut prom, &shared.registry);
            crate::metrics::encode_registry(&prom, openmetrics)
        }
    };
    match rendered {
        Ok(text) => {
            let content_type = if openmetrics {
                crate::metrics::OPENMETRICS_CONTENT_TYPE
            } else {
                crate::metrics::TEXT_CONTENT_TYPE
            };
            respond(StatusCode::OK, content_type, Body::from(text))
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding_failed",
            "the metrics could not be encoded",
        ),
    }
}
