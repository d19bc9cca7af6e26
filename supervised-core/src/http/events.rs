//! `GET /admin/events`: the registry's lifecycle events as Server-Sent
//! Events, behind the admin token.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::header::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::liveness::LastFailure;
use super::time::rfc3339;
use super::Shared;
use crate::events::{Event, EventKind};
use crate::run::Exit;

/// How often an idle event stream sends a comment, so that proxies keep it
/// open and a reader that went away is noticed.
pub const EVENTS_KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) async fn admin_events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let details = match shared.admit_request(&headers, raw.as_deref()) {
        Ok(details) => details,
        Err(reject) => return reject.into_response(),
    };
    let receiver = shared.registry.subscribe();
    let stream = futures_util::stream::unfold(receiver, move |mut receiver| async move {
        let sse = match receiver.recv().await {
            Ok(event) => SseEvent::default()
                .event(event.kind.as_str())
                .data(json(&event, details)),
            Err(RecvError::Lagged(missed)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{missed}}}")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(sse), receiver))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(EVENTS_KEEP_ALIVE))
        .into_response()
}

/// One event as JSON: failure messages only for callers who may see
/// details, as in `/admin/liveness`.
#[derive(Serialize)]
struct Doc<'a> {
    task: &'a str,
    attempt: u32,
    at: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<LastFailure<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit: Option<&'static str>,
}

fn json(event: &Event, details: bool) -> String {
    let mut doc = Doc {
        task: &event.task,
        attempt: event.attempt,
        at: rfc3339(event.at),
        kind: event.kind.as_str(),
        failure: None,
        delay_seconds: None,
        cause: None,
        exit: None,
    };
    match &event.kind {
        EventKind::Failed(failure) => doc.failure = Some(LastFailure::new(failure, details)),
        EventKind::BackingOff { delay } => doc.delay_seconds = Some(delay.as_secs_f64()),
        EventKind::Restarting { delay, cause } => {
            doc.delay_seconds = Some(delay.as_secs_f64());
            // A sibling's name is a task name, shown in every view.
            doc.cause = Some(cause.to_string());
        }
        EventKind::Stopped(exit) => {
            doc.exit = Some(match exit {
                Exit::Completed => "completed",
                Exit::Cancelled => "cancelled",
                Exit::Abandoned => "abandoned",
                Exit::Failed { .. } => "failed",
            });
            if let Exit::Failed { failure, .. } = exit {
                doc.failure = Some(LastFailure::new(failure, details));
            }
        }
        EventKind::Started => {}
    }
    serde_json::to_string(&doc).expect("the event document serializes")
}
