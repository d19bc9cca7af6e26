//! `/livez` and `/readyz`, in kube-apiserver's text format.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;

use super::query::{parse_query, ProbeQuery};
use super::respond::{error, text_response};
use super::Shared;
use crate::registry::{TaskState, TaskStatus};

/// One named check: `Ok` or the reason it fails.
struct Check {
    name: String,
    result: Result<(), String>,
    /// Keys the task keeps quarantined: shown as a count on an `ok` line.
    quarantined: usize,
}

/// "1 key quarantined", "3 keys quarantined".
pub(super) fn quarantined(n: usize) -> String {
    format!("{n} key{} quarantined", if n == 1 { "" } else { "s" })
}

#[derive(Clone, Copy, PartialEq)]
enum Probe {
    Live,
    Ready,
}

impl Probe {
    fn as_str(self) -> &'static str {
        match self {
            Probe::Live => "livez",
            Probe::Ready => "readyz",
        }
    }
}

fn secs(d: Duration) -> String {
    crate::format::Rounded(d).to_string()
}

/// Why the task fails liveness, if it does.
pub(super) fn liveness(task: &TaskStatus) -> Result<(), String> {
    if task.state == TaskState::Failed {
        let cause = match &task.last_failure {
            Some(f) => format!(": {f}"),
            None => String::new(),
        };
        return Err(format!("gave up after {} restarts{cause}", task.restarts));
    }
    if task.stale {
        let limit = task
            .stale_after
            .map(|d| format!(" (stale_after {})", secs(d)))
            .unwrap_or_default();
        return Err(match task.since_last_tick {
            Some(age) => format!("stale: no heartbeat for {}{limit}", secs(age)),
            None => format!("stale: no heartbeat yet{limit}"),
        });
    }
    if let Some(blocked) = task.blocked_for {
        return Err(format!(
            "blocked: one poll has been running for {}, blocking its worker thread",
            secs(blocked)
        ));
    }
    Ok(())
}

fn readiness(task: &TaskStatus) -> Result<(), String> {
    liveness(task)?;
    if task.awaits_first_beat() {
        return Err("not started: no heartbeat yet".to_owned());
    }
    Ok(())
}

fn checks(shared: &Shared, probe: Probe) -> Vec<Check> {
    // One status at a time: 100,000 of them at once take 34 MB.
    let mut checks: Vec<Check> = shared
        .registry
        .statuses()
        .each()
        .map(|t| Check {
            result: match probe {
                Probe::Live => liveness(&t),
                Probe::Ready => readiness(&t),
            },
            quarantined: t.quarantined.len(),
            name: t.name,
        })
        .collect();
    if probe == Probe::Ready {
        checks.push(Check {
            name: "shutdown".to_owned(),
            result: if shared.shutting_down() {
                Err("shutting down".to_owned())
            } else {
                Ok(())
            },
            quarantined: 0,
        });
    }
    checks
}

/// Renders checks in the kube-apiserver format: `ok`, or with `verbose` or on
/// any failure one `[+]`/`[-]` line a check and a closing line.
fn render_probe(
    probe: Probe,
    checks: &[Check],
    query: &ProbeQuery,
    details: bool,
) -> (StatusCode, String) {
    let failed = checks
        .iter()
        .any(|c| c.result.is_err() && !query.exclude.contains(&c.name));
    if !failed && !query.verbose {
        // The common case, and the only one without per-check lines.
        return (StatusCode::OK, "ok".to_owned());
    }
    let mut lines = String::new();
    for check in checks {
        if query.exclude.contains(&check.name) {
            let _ = writeln!(lines, "[+]{} excluded: ok", check.name);
            continue;
        }
        match &check.result {
            Ok(()) if check.quarantined > 0 => {
                let _ = writeln!(
                    lines,
                    "[+]{} ok ({})",
                    check.name,
                    quarantined(check.quarantined)
                );
            }
            Ok(()) => {
                let _ = writeln!(lines, "[+]{} ok", check.name);
            }
            Err(reason) => {
                let reason = if details {
                    reason.as_str()
                } else {
                    "reason withheld"
                };
                let _ = writeln!(lines, "[-]{} failed: {reason}", check.name);
            }
        }
    }
    let mut unknown: Vec<&str> = query
        .exclude
        .iter()
        .filter(|n| !checks.iter().any(|c| &c.name == *n))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        unknown.dedup();
        let quoted: Vec<String> = unknown.iter().map(|n| format!("{n:?}")).collect();
        let _ = writeln!(
            lines,
            "warn: some health checks cannot be excluded: no matches for {}",
            quoted.join(", ")
        );
    }
    let name = probe.as_str();
    if failed {
        let _ = writeln!(lines, "{name} check failed");
        (StatusCode::SERVICE_UNAVAILABLE, lines)
    } else {
        let _ = writeln!(lines, "{name} check passed");
        (StatusCode::OK, lines)
    }
}

fn probe_all(shared: &Shared, probe: Probe, headers: &HeaderMap, raw: Option<&str>) -> Response {
    let query = match parse_query(raw) {
        Ok(q) => q,
        Err(reject) => return reject.into_response(),
    };
    let checks = checks(shared, probe);
    let (status, body) = render_probe(probe, &checks, &query, shared.details_for(headers));
    text_response(status, body)
}

fn probe_one(
    shared: &Shared,
    probe: Probe,
    name: &str,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Response {
    let query = match parse_query(raw) {
        Ok(q) => q,
        Err(reject) => return reject.into_response(),
    };
    let mut checks = checks(shared, probe);
    checks.retain(|c| c.name == name);
    if checks.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_check",
            &format!("there is no check named {name:?}"),
        );
    }
    let (status, body) = render_probe(probe, &checks, &query, shared.details_for(headers));
    text_response(status, body)
}

pub(super) async fn livez(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    probe_all(&shared, Probe::Live, &headers, raw.as_deref())
}

pub(super) async fn readyz(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    probe_all(&shared, Probe::Ready, &headers, raw.as_deref())
}

pub(super) async fn livez_one(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    probe_one(&shared, Probe::Live, &name, &headers, raw.as_deref())
}

pub(super) async fn readyz_one(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    probe_one(&shared, Probe::Ready, &name, &headers, raw.as_deref())
}
