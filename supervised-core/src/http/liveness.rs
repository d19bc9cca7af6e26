//! `GET /admin/liveness`: the JSON detail of every task, serialized from
//! borrowed structs straight into the response body.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::respond::json_response_sized;
use super::time::rfc3339;
use super::Shared;
use crate::registry::{Failure, FailureCounts, Registry, TaskState, TaskStatus};

pub(super) async fn admin_liveness(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let details = match shared.admit_request(&headers, raw.as_deref()) {
        Ok(details) => details,
        Err(reject) => return reject.into_response(),
    };
    let tasks = shared.registry.tasks();
    let doc = Document::new(&shared.registry, &tasks, details);
    // About 500 bytes a task: the body is written once, without regrowing.
    json_response_sized(
        StatusCode::OK,
        "application/json",
        &doc,
        512 * doc.subsystems.0.len() + 256,
    )
}

/// The `/admin/liveness` document: the Go endpoint's `subsystems` map (with
/// `last_tick_at` and `seconds_ago`), extended with the supervision data.
#[derive(Serialize)]
struct Document<'a> {
    subsystems: Subsystems<'a>,
    healthy: bool,
    stale: Vec<&'a str>,
    blocked: Vec<&'a str>,
    failed: Vec<&'a str>,
}

/// Every name, sorted, serialized as a JSON object.
struct Subsystems<'a>(Vec<(Cow<'a, str>, Subsystem<'a>)>);

impl Serialize for Subsystems<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, s)| (name, s)))
    }
}

#[derive(Serialize)]
struct Subsystem<'a> {
    last_tick_at: Option<String>,
    seconds_ago: Option<u64>,
    /// The same age with its fraction, for the status page.
    age_seconds: Option<f64>,
    state: &'static str,
    restarts: u64,
    attempt: u32,
    healthy: bool,
    stale: bool,
    stale_after_seconds: Option<f64>,
    blocked: bool,
    blocked_seconds: Option<f64>,
    expects_heartbeat: bool,
    failures: Failures,
    last_failure: Option<LastFailure<'a>>,
    /// The path of the group tasks the task runs in.
    parent: Option<&'a str>,
    /// How many keys the task keeps quarantined ([`Context::isolate`](crate::Context::isolate)).
    quarantined_keys: usize,
    /// The quarantined keys themselves: only for callers who may see
    /// details, since keys can be tenant ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantined: Option<Vec<QuarantinedKey<'a>>>,
    /// Singleton tasks only: whether this replica holds the lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<bool>,
    /// Singleton tasks only: the token of the grant held (or last held).
    #[serde(skip_serializing_if = "Option::is_none")]
    fencing_token: Option<u64>,
    /// Why a singleton is a standby: only for callers who may see details
    /// (a store's error can name hosts).
    #[serde(skip_serializing_if = "Option::is_none")]
    standby_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct QuarantinedKey<'a> {
    key: &'a str,
    failures: u32,
    until: String,
    last_failure: LastFailure<'a>,
}

#[derive(Serialize)]
struct Failures {
    panic: u64,
    error: u64,
    stalled: u64,
    blocked: u64,
}

impl From<&FailureCounts> for Failures {
    fn from(c: &FailureCounts) -> Failures {
        Failures {
            panic: c.panics,
            error: c.errors,
            stalled: c.stalls,
            blocked: c.blocked,
        }
    }
}

/// The last failure; its message, location and backtrace only for callers
/// who may see details.
#[derive(Serialize)]
pub(super) struct LastFailure<'a> {
    kind: &'static str,
    message: Option<&'a str>,
    location: Option<&'a str>,
    backtrace: Option<&'a str>,
    attempt: u32,
    at: String,
}

impl<'a> LastFailure<'a> {
    pub(super) fn new(f: &'a Failure, details: bool) -> LastFailure<'a> {
        LastFailure {
            kind: f.kind.as_str(),
            message: details.then_some(f.message.as_str()),
            location: f.location.as_deref().filter(|_| details),
            backtrace: f.backtrace.as_ref().filter(|_| details).map(|b| b.as_str()),
            attempt: f.attempt,
            at: rfc3339(f.at),
        }
    }
}

impl<'a> Document<'a> {
    fn new(registry: &Registry, tasks: &'a [TaskStatus], details: bool) -> Document<'a> {
        let mut doc = Document {
            subsystems: Subsystems(Vec::with_capacity(tasks.len())),
            healthy: tasks.iter().all(|t| t.healthy),
            stale: Vec::new(),
            blocked: Vec::new(),
            failed: Vec::new(),
        };
        for t in tasks {
            let name = t.name.as_str();
            if t.stale {
                doc.stale.push(name);
            }
            if t.blocked_for.is_some() {
                doc.blocked.push(name);
            }
            if t.state == TaskState::Failed {
                doc.failed.push(name);
            }
            doc.subsystems.0.push((
                Cow::Borrowed(name),
                Subsystem {
                    last_tick_at: t.last_tick.map(rfc3339),
                    seconds_ago: t.since_last_tick.map(|d| d.as_secs()),
                    age_seconds: t.since_last_tick.map(|d| d.as_secs_f64()),
                    state: t.state.as_str(),
                    restarts: t.restarts,
                    attempt: t.attempt,
                    healthy: t.healthy,
                    stale: t.stale,
                    stale_after_seconds: t.stale_after.map(|d| d.as_secs_f64()),
                    blocked: t.blocked_for.is_some(),
                    blocked_seconds: t.blocked_for.map(|d| d.as_secs_f64()),
                    expects_heartbeat: t.expects_heartbeat,
                    failures: Failures::from(&t.failures),
                    last_failure: t
                        .last_failure
                        .as_ref()
                        .map(|f| LastFailure::new(f, details)),
                    parent: t.parent.as_deref(),
                    quarantined_keys: t.quarantined.len(),
                    quarantined: details.then(|| {
                        t.quarantined
                            .iter()
                            .map(|q| QuarantinedKey {
                                key: &q.key,
                                failures: q.failures,
                                until: rfc3339(q.until),
                                last_failure: LastFailure::new(&q.last_failure, true),
                            })
                            .collect()
                    }),
                    leader: t.lease.as_ref().map(|l| l.leader),
                    fencing_token: t.lease.as_ref().and_then(|l| l.fencing_token),
                    standby_reason: t
                        .lease
                        .as_ref()
                        .and_then(|l| l.standby_reason.as_deref())
                        .filter(|_| details),
                },
            ));
        }
        // Names that only beat (`heartbeat(name)`), as the Go endpoint lists
        // them.
        let supervised = doc.subsystems.0.len();
        for (name, beat) in registry.unsupervised_beats() {
            doc.subsystems.0.push((
                Cow::Owned(name),
                Subsystem {
                    last_tick_at: Some(rfc3339(beat.at)),
                    seconds_ago: Some(beat.age.as_secs()),
                    age_seconds: Some(beat.age.as_secs_f64()),
                    state: "unsupervised",
                    restarts: 0,
                    attempt: 0,
                    healthy: true,
                    stale: false,
                    stale_after_seconds: None,
                    blocked: false,
                    blocked_seconds: None,
                    expects_heartbeat: true,
                    failures: Failures::from(&FailureCounts::default()),
                    last_failure: None,
                    parent: None,
                    quarantined_keys: 0,
                    quarantined: None,
                    leader: None,
                    fencing_token: None,
                    standby_reason: None,
                },
            ));
        }
        // Both runs are sorted by name: the sort merges them.
        if supervised < doc.subsystems.0.len() {
            doc.subsystems.0.sort_by(|a, b| a.0.cmp(&b.0));
            // The two lists were read at different instants: a name that
            // moved between them is listed once, as the task (stable sort:
            // the supervised entry comes first).
            doc.subsystems.0.dedup_by(|later, first| later.0 == first.0);
        }
        doc
    }
}
