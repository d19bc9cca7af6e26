//! `GET /admin/liveness`: the JSON detail of every task, written straight
//! from the tasks' statuses into the response body, each status made as it
//! is written and dropped after, judged on a clock read for each chunk. The
//! field names are written as they are (none needs escaping), strings
//! through `serde_json` (which escapes them), numbers with `serde_json`'s
//! own formatting.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::respond::respond;
use super::time::Rfc3339;
use super::Shared;
use crate::registry::{Failure, LastBeat, Statuses, TaskState, TaskStatus};

pub(super) async fn admin_liveness(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let details = match shared.admit_request(&headers, raw.as_deref()) {
        Ok(details) => details,
        Err(reject) => return reject.into_response(),
    };
    let tasks = shared.registry.statuses();
    // Names that only beat (`heartbeat(name)`), as the Go endpoint lists
    // them.
    let beats = shared.registry.unsupervised_beats();
    // Sent as it is written, a chunk at a time: the client reads the first
    // tasks while the next are written, and no buffer of the whole document
    // is ever made.
    let stream =
        futures_util::stream::unfold(Document::new(tasks, beats, details), |mut doc| async move {
            let mut chunk = Vec::with_capacity(CHUNK + 2_048);
            doc.write_next(&mut chunk, CHUNK)
                .then_some((Ok::<_, Infallible>(chunk), doc))
        });
    respond(
        StatusCode::OK,
        "application/json",
        Body::from_stream(stream),
    )
}

/// The size at which a chunk of the document is sent.
const CHUNK: usize = 64 * 1024;

/// The tasks a document lists, sorted by name.
trait Tasks {
    /// How many there are.
    fn len(&self) -> usize;
    /// The name of the `i`th.
    fn name(&self, i: usize) -> &str;
    /// The status of the `i`th; `None` leaves it out (and a heartbeat-only
    /// name it shares is then listed).
    fn status(&self, i: usize) -> Option<Cow<'_, TaskStatus>>;
    /// Reads the clock the next statuses are judged at.
    fn refresh(&mut self) {}
}

/// A registry's tasks, each status made when it is written.
impl Tasks for Statuses {
    fn len(&self) -> usize {
        Statuses::len(self)
    }

    fn name(&self, i: usize) -> &str {
        Statuses::name(self, i)
    }

    fn status(&self, i: usize) -> Option<Cow<'_, TaskStatus>> {
        Statuses::status(self, i).map(Cow::Owned)
    }

    fn refresh(&mut self) {
        Statuses::refresh(self)
    }
}

/// Statuses made beforehand, as tests write them.
#[cfg(test)]
impl Tasks for Vec<TaskStatus> {
    fn len(&self) -> usize {
        <[TaskStatus]>::len(self)
    }

    fn name(&self, i: usize) -> &str {
        &self[i].name
    }

    fn status(&self, i: usize) -> Option<Cow<'_, TaskStatus>> {
        Some(Cow::Borrowed(&self[i]))
    }
}

/// The `/admin/liveness` document: the Go endpoint's `subsystems` map (with
/// `last_tick_at` and `seconds_ago`), extended with the supervision data,
/// then `healthy` and the names that are `stale`, `blocked` and `failed`.
/// `tasks` and `beats` are each sorted by name; they were read at different
/// instants, so a name in both (it moved between them) is listed once, as
/// the task.
struct Document<T> {
    tasks: T,
    beats: Vec<(String, LastBeat)>,
    details: bool,
    /// The next task and the next heartbeat-only name to write.
    next_task: usize,
    next_beat: usize,
    /// How many names are written.
    written: usize,
    /// Whether every task written is healthy.
    healthy: bool,
    /// Indices into `tasks` of the stale, blocked and failed ones.
    stale: Vec<usize>,
    blocked: Vec<usize>,
    failed: Vec<usize>,
    started: bool,
    done: bool,
}

impl<T: Tasks> Document<T> {
    fn new(tasks: T, beats: Vec<(String, LastBeat)>, details: bool) -> Self {
        Document {
            tasks,
            beats,
            details,
            next_task: 0,
            next_beat: 0,
            written: 0,
            healthy: true,
            stale: Vec::new(),
            blocked: Vec::new(),
            failed: Vec::new(),
            started: false,
            done: false,
        }
    }

    /// Appends the next part of the document to `out`, stopping once `out`
    /// holds `limit` bytes; `false` when the document was complete already.
    fn write_next(&mut self, out: &mut Vec<u8>, limit: usize) -> bool {
        if self.done {
            return false;
        }
        // The chunk's statuses are judged now: the client may have taken
        // its time over the last one.
        self.tasks.refresh();
        if !self.started {
            self.started = true;
            out.extend_from_slice(b"{\"subsystems\":{");
        }
        while out.len() < limit {
            let (i, j) = (self.next_task, self.next_beat);
            let task = (i < self.tasks.len()).then(|| self.tasks.name(i));
            let task_first = match (task, self.beats.get(j)) {
                (Some(task), Some((name, _))) => match task.cmp(name) {
                    Ordering::Less | Ordering::Equal => true,
                    Ordering::Greater => false,
                },
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => {
                    self.write_end(out);
                    self.done = true;
                    break;
                }
            };
            if task_first {
                self.next_task += 1;
                let Some(t) = self.tasks.status(i) else {
                    continue;
                };
                // A heartbeat-only name read as well: listed once, as the
                // task.
                if self.beats.get(j).is_some_and(|(name, _)| *name == t.name) {
                    self.next_beat += 1;
                }
                if t.stale {
                    self.stale.push(i);
                }
                if t.blocked_for.is_some() {
                    self.blocked.push(i);
                }
                if t.state == TaskState::Failed {
                    self.failed.push(i);
                }
                self.healthy &= t.healthy;
                comma(out, &mut self.written);
                write_task(out, &t, self.details);
            } else {
                self.next_beat += 1;
                comma(out, &mut self.written);
                let (name, beat) = &self.beats[j];
                write_beat(out, name, beat);
            }
        }
        true
    }

    fn write_end(&self, out: &mut Vec<u8>) {
        let names = |indices: &[usize]| -> Vec<&str> {
            indices.iter().map(|&i| self.tasks.name(i)).collect()
        };
        out.extend_from_slice(b"},\"healthy\":");
        flag(out, self.healthy);
        out.extend_from_slice(b",\"stale\":");
        value(out, &names(&self.stale));
        out.extend_from_slice(b",\"blocked\":");
        value(out, &names(&self.blocked));
        out.extend_from_slice(b",\"failed\":");
        value(out, &names(&self.failed));
        out.push(b'}');
    }
}

/// The comma before every name but the first; counts the names `written`.
fn comma(out: &mut Vec<u8>, written: &mut usize) {
    if *written > 0 {
        out.push(b',');
    }
    *written += 1;
}

/// One task: `"name":{...}`.
fn write_task(out: &mut Vec<u8>, t: &TaskStatus, details: bool) {
    value(out, t.name.as_str());
    out.extend_from_slice(b":{\"last_tick_at\":");
    time(out, t.last_tick);
    out.extend_from_slice(b",\"seconds_ago\":");
    value(out, &t.since_last_tick.map(|d| d.as_secs()));
    out.extend_from_slice(b",\"age_seconds\":");
    value(out, &t.since_last_tick.map(|d| d.as_secs_f64()));
    out.extend_from_slice(b",\"state\":\"");
    out.extend_from_slice(t.state.as_str().as_bytes());
    out.extend_from_slice(b"\",\"restarts\":");
    value(out, &t.restarts);
    out.extend_from_slice(b",\"attempt\":");
    value(out, &t.attempt);
    out.extend_from_slice(b",\"healthy\":");
    flag(out, t.healthy);
    out.extend_from_slice(b",\"stale\":");
    flag(out, t.stale);
    out.extend_from_slice(b",\"stale_after_seconds\":");
    value(out, &t.stale_after.map(|d| d.as_secs_f64()));
    out.extend_from_slice(b",\"blocked\":");
    flag(out, t.blocked_for.is_some());
    out.extend_from_slice(b",\"blocked_seconds\":");
    value(out, &t.blocked_for.map(|d| d.as_secs_f64()));
    out.extend_from_slice(b",\"expects_heartbeat\":");
    flag(out, t.expects_heartbeat);
    out.extend_from_slice(b",\"failures\":{\"panic\":");
    value(out, &t.failures.panics);
    out.extend_from_slice(b",\"error\":");
    value(out, &t.failures.errors);
    out.extend_from_slice(b",\"stalled\":");
    value(out, &t.failures.stalls);
    out.extend_from_slice(b",\"blocked\":");
    value(out, &t.failures.blocked);
    out.extend_from_slice(b"},\"last_failure\":");
    value(
        out,
        &t.last_failure
            .as_ref()
            .map(|f| LastFailure::new(f, details)),
    );
    // The path of the group tasks the task runs in.
    out.extend_from_slice(b",\"parent\":");
    value(out, &t.parent);
    // How many keys the task keeps quarantined
    // (`Context::isolate`); the keys themselves only for callers who may
    // see details, since keys can be tenant ids.
    out.extend_from_slice(b",\"quarantined_keys\":");
    value(out, &t.quarantined.len());
    if details {
        out.extend_from_slice(b",\"quarantined\":");
        let keys: Vec<QuarantinedKey<'_>> = t
            .quarantined
            .iter()
            .map(|q| QuarantinedKey {
                key: &q.key,
                failures: q.failures,
                until: Rfc3339(q.until),
                last_failure: LastFailure::new(&q.last_failure, true),
            })
            .collect();
        value(out, &keys);
    }
    // Singleton tasks only: whether this replica holds the lease, the
    // token of the grant held (or last held), and why it is a standby
    // (only for callers who may see details: a store's error can name
    // hosts).
    if let Some(lease) = &t.lease {
        out.extend_from_slice(b",\"leader\":");
        flag(out, lease.leader);
        if let Some(token) = lease.fencing_token {
            out.extend_from_slice(b",\"fencing_token\":");
            value(out, &token);
        }
        if let Some(reason) = lease.standby_reason.as_deref().filter(|_| details) {
            out.extend_from_slice(b",\"standby_reason\":");
            value(out, reason);
        }
    }
    out.push(b'}');
}

/// One heartbeat-only name: `"name":{...}`, in the same shape as a task.
fn write_beat(out: &mut Vec<u8>, name: &str, beat: &LastBeat) {
    value(out, name);
    out.extend_from_slice(b":{\"last_tick_at\":");
    time(out, Some(beat.at));
    out.extend_from_slice(b",\"seconds_ago\":");
    value(out, &beat.age.as_secs());
    out.extend_from_slice(b",\"age_seconds\":");
    value(out, &beat.age.as_secs_f64());
    out.extend_from_slice(
        b",\"state\":\"unsupervised\",\"restarts\":0,\"attempt\":0,\"healthy\":true,\
          \"stale\":false,\"stale_after_seconds\":null,\"blocked\":false,\
          \"blocked_seconds\":null,\"expects_heartbeat\":true,\
          \"failures\":{\"panic\":0,\"error\":0,\"stalled\":0,\"blocked\":0},\
          \"last_failure\":null,\"parent\":null,\"quarantined_keys\":0}",
    );
}

/// A value as `serde_json` writes it.
fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing to a `Vec` fails only for maps with non-string keys, which
    // nothing here has.
    serde_json::to_writer(&mut *out, v).expect("JSON of a plain value");
}

fn flag(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// An instant as an RFC 3339 string (which needs no escaping), or `null`.
fn time(out: &mut Vec<u8>, t: Option<std::time::SystemTime>) {
    match t {
        Some(t) => {
            // Writing to a `Vec` cannot fail.
            let _ = write!(out, "\"{}\"", Rfc3339(t));
        }
        None => out.extend_from_slice(b"null"),
    }
}

#[derive(Serialize)]
struct QuarantinedKey<'a> {
    key: &'a str,
    failures: u32,
    until: Rfc3339,
    last_failure: LastFailure<'a>,
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
    at: Rfc3339,
}

impl<'a> LastFailure<'a> {
    pub(super) fn new(f: &'a Failure, details: bool) -> LastFailure<'a> {
        LastFailure {
            kind: f.kind.as_str(),
            message: details.then_some(f.message.as_str()),
            location: f.location.as_deref().filter(|_| details),
            backtrace: f.backtrace.as_ref().filter(|_| details).map(|b| b.as_str()),
            attempt: f.attempt,
            at: Rfc3339(f.at),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::registry::{FailureCounts, FailureKind, LeaseStatus};

    fn task(name: &str, failure: Option<Failure>) -> TaskStatus {
        TaskStatus {
            name: name.to_owned(),
            state: TaskState::Running,
            restarts: 3,
            attempt: 4,
            last_tick: Some(UNIX_EPOCH + Duration::new(1_776_247_200, 5)),
            since_last_tick: Some(Duration::from_millis(2_500)),
            stale_after: Some(Duration::from_secs(60)),
            stale: false,
            blocked_for: None,
            expects_heartbeat: true,
            healthy: true,
            failures: FailureCounts {
                panics: 1,
                errors: 2,
                stalls: 0,
                blocked: 0,
            },
            last_failure: failure,
            parent: Some("storage/\"shards\"".to_owned()),
            quarantined: Vec::new(),
            isolated: Default::default(),
            lease: Some(LeaseStatus {
                leader: true,
                fencing_token: Some(17),
                standby_reason: Some("not shown".to_owned()),
                has_stood_by: false,
            }),
        }
    }

    /// The document, written in chunks of at most a few bytes past 100:
    /// however it is cut, the chunks make the same text.
    fn whole<T: Tasks>(mut doc: Document<T>) -> String {
        let mut out = Vec::new();
        let mut chunks = 0;
        loop {
            let mut chunk = Vec::new();
            if !doc.write_next(&mut chunk, 100) {
                break;
            }
            chunks += 1;
            out.extend(chunk);
        }
        assert!(chunks > 1);
        String::from_utf8(out).unwrap()
    }

    /// A registry's statuses, on the system clock, are judged when their
    /// chunk is written, not when the request came: a poll that began
    /// in between and blocks is reported blocked.
    #[test]
    fn a_poll_begun_after_the_request_is_reported_blocking() {
        let registry = crate::Registry::new();
        let settings = crate::Spec::new("a")
            .blocking_after(Duration::ZERO)
            .settings();
        let entry = registry.register("a", settings, false).expect("a new name");
        let doc = Document::new(registry.statuses(), Vec::new(), false);
        let stamp = crate::clock::Clock::System.now_mono();
        entry.set_poll_started(stamp);
        // Until the clock has moved past the stamp, however coarse it is:
        // the poll has then run for some time.
        while crate::clock::Clock::System.now_mono() <= stamp {
            std::hint::spin_loop();
        }
        let text = whole(doc);
        assert!(text.contains("\"blocked\":true"), "{text}");
        assert!(
            text.ends_with("\"healthy\":false,\"stale\":[],\"blocked\":[\"a\"],\"failed\":[]}"),
            "{text}"
        );
    }

    /// The text written by hand, field by field, against the expected
    /// document: names in order, nulls where a value is absent, singleton
    /// fields, the heartbeat-only name merged in order (a name in both
    /// lists once, as the task), strings escaped.
    #[test]
    fn the_document_is_written_as_json_with_its_fields_in_order() {
        let mut failure = Failure::new(FailureKind::Error, "bad \"row\"\n".into(), 4);
        failure.at = UNIX_EPOCH;
        let mut c = task("c", None);
        c.stale = true;
        c.healthy = false;
        let tasks = vec![task("a\"b", Some(failure)), c];
        let beat = LastBeat {
            at: UNIX_EPOCH,
            age: Duration::from_secs(1),
            supervised: false,
        };
        let beats = vec![("b".to_owned(), beat), ("c".to_owned(), beat)];
        let text = whole(Document::new(tasks.clone(), beats, false));
        let common = "\"last_tick_at\":\"2026-04-15T10:00:00.000000005Z\",\"seconds_ago\":2,\
            \"age_seconds\":2.5,\"state\":\"running\",\"restarts\":3,\"attempt\":4";
        let health = "\"stale_after_seconds\":60.0,\"blocked\":false,\
            \"blocked_seconds\":null,\"expects_heartbeat\":true,\
            \"failures\":{\"panic\":1,\"error\":2,\"stalled\":0,\"blocked\":0}";
        let tail = "\"parent\":\"storage/\\\"shards\\\"\",\"quarantined_keys\":0,\
            \"leader\":true,\"fencing_token\":17";
        let expected = format!(
            "{{\"subsystems\":{{\"a\\\"b\":{{{common},\"healthy\":true,\"stale\":false,{health},\
             \"last_failure\":{{\"kind\":\"error\",\"message\":null,\"location\":null,\
             \"backtrace\":null,\"attempt\":4,\"at\":\"1970-01-01T00:00:00.000000000Z\"}},{tail}}},\
             \"b\":{{\"last_tick_at\":\"1970-01-01T00:00:00.000000000Z\",\"seconds_ago\":1,\
             \"age_seconds\":1.0,\"state\":\"unsupervised\",\"restarts\":0,\"attempt\":0,\
             \"healthy\":true,\"stale\":false,\"stale_after_seconds\":null,\"blocked\":false,\
             \"blocked_seconds\":null,\"expects_heartbeat\":true,\
             \"failures\":{{\"panic\":0,\"error\":0,\"stalled\":0,\"blocked\":0}},\
             \"last_failure\":null,\"parent\":null,\"quarantined_keys\":0}},\
             \"c\":{{{common},\"healthy\":false,\"stale\":true,{health},\"last_failure\":null,{tail}}}}},\
             \"healthy\":false,\"stale\":[\"c\"],\"blocked\":[],\"failed\":[]}}"
        );
        assert_eq!(text, expected);
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
        // With details: the message, the quarantined keys and the standby
        // reason.
        let text = whole(Document::new(tasks[..1].to_vec(), Vec::new(), true));
        assert!(
            text.contains("\"message\":\"bad \\\"row\\\"\\n\""),
            "{text}"
        );
        assert!(text.contains("\"quarantined\":[]"), "{text}");
        assert!(text.contains("\"standby_reason\":\"not shown\""), "{text}");
    }
}
