//! `GET /health`: `application/health+json`, after the IETF draft
//! "Health Check Response Format for HTTP APIs".

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::probes::liveness;
use super::query::parse_query;
use super::respond::json_response;
use super::time::rfc3339;
use super::Shared;
use crate::registry::TaskState;

pub(super) async fn health(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(reject) = parse_query(raw.as_deref()) {
        return reject.into_response();
    }
    let details = shared.details_for(&headers);
    let doc = document(&shared, details);
    let code = if doc.status == Level::Fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(code, "application/health+json", &doc)
}

/// A check's or the document's status, ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Pass,
    Warn,
    Fail,
}

#[derive(Serialize)]
struct Document {
    status: Level,
    description: &'static str,
    checks: BTreeMap<String, [Check; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Check {
    component_type: &'static str,
    status: Level,
    /// When the reading was made: now.
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_unit: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

fn document(shared: &Shared, details: bool) -> Document {
    let mut worst = Level::Pass;
    let mut checks = BTreeMap::new();
    // The draft's `time` is when the reading was made: now, for every check.
    let observed = rfc3339(shared.registry.now_wall());
    // One status at a time: 100,000 of them at once take 34 MB.
    for t in shared.registry.statuses().each() {
        let (level, reason) = match liveness(&t) {
            Err(reason) => (Level::Fail, Some(reason)),
            Ok(()) if t.awaits_first_beat() => (Level::Warn, Some("no heartbeat yet".to_owned())),
            // A correct state: passes, saying why it waits.
            Ok(()) if t.state == TaskState::Standby => {
                let reason = t
                    .lease
                    .as_ref()
                    .and_then(|l| l.standby_reason.as_deref())
                    .unwrap_or("waiting for the lease");
                (Level::Pass, Some(format!("standby: {reason}")))
            }
            Ok(()) if t.state == TaskState::Stopping => (
                Level::Warn,
                Some("stopping: waiting for its attempt to be dropped".to_owned()),
            ),
            Ok(()) if t.state == TaskState::BackingOff => {
                let cause = t
                    .last_failure
                    .as_ref()
                    .map(|f| format!(" after {f}"))
                    .unwrap_or_default();
                (Level::Warn, Some(format!("restarting{cause}")))
            }
            // Alive, serving every other key: a warning, with a count and
            // never a key (keys can be tenant ids).
            Ok(()) if !t.quarantined.is_empty() => (
                Level::Warn,
                Some(super::probes::quarantined(t.quarantined.len())),
            ),
            Ok(()) => (Level::Pass, None),
        };
        worst = worst.max(level);
        checks.insert(
            format!("{}:heartbeat", t.name),
            [Check {
                component_type: "component",
                status: level,
                time: observed.clone(),
                observed_value: t.since_last_tick.map(|age| age.as_secs_f64()),
                observed_unit: t.since_last_tick.map(|_| "s"),
                output: reason.filter(|_| details),
            }],
        );
    }
    if shared.shutting_down() {
        worst = worst.max(Level::Warn);
        // Says why the status is `warn` while every task may still pass.
        checks.insert(
            "shutdown".to_owned(),
            [Check {
                component_type: "system",
                status: Level::Warn,
                time: observed,
                observed_value: None,
                observed_unit: None,
                output: Some("shutting down: not ready for new work".to_owned()),
            }],
        );
    }
    Document {
        status: worst,
        description: "supervised tasks",
        checks,
    }
}
