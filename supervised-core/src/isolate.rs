//! Isolation inside a task: one key's failure (a tenant, a shard, a
//! connection) costs that key alone. A failing key is quarantined with its
//! own backoff while the task goes on serving every other key.

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::format::Rounded;
use crate::panic::{catch_call, catch_payload, failure_of_panic};
use crate::policy::{Backoff, Jitter};
use crate::registry::{lock, Entry, Failure, FailureKind};

/// The first quarantine of a failing key, by default: see
/// [`Spec::quarantine`](crate::Spec::quarantine).
pub const DEFAULT_QUARANTINE_INITIAL: Duration = Duration::from_secs(1);

/// The longest quarantine of a failing key, by default.
pub const DEFAULT_QUARANTINE_MAX: Duration = Duration::from_secs(300);

/// How many keys one task keeps quarantined at most, by default: past it,
/// the oldest quarantine is dropped (and counted). See
/// [`Spec::max_quarantined`](crate::Spec::max_quarantined).
pub const DEFAULT_MAX_QUARANTINED: usize = 10_000;

/// Why [`Context::isolate`](crate::Context::isolate) has no output for a key.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum Isolated {
    /// The key's future panicked; the key is quarantined from now on.
    Panicked(Failure),
    /// The key is quarantined after earlier failures: its future was not
    /// polled (it was dropped unpolled).
    Quarantined {
        /// When the key runs again (the first call from then on runs it).
        until: SystemTime,
        /// Its failures in a row.
        failures: u32,
    },
}

impl Isolated {
    /// `true` for [`Isolated::Quarantined`]: the future did not run.
    pub fn is_quarantined(&self) -> bool {
        matches!(self, Isolated::Quarantined { .. })
    }
}

impl fmt::Display for Isolated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Isolated::Panicked(failure) => write!(f, "the key's work panicked: {failure}"),
            Isolated::Quarantined { failures, until } => {
                let left = until
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                write!(
                    f,
                    "the key is quarantined after {failures} failure{} in a row; it runs again in {}",
                    if *failures == 1 { "" } else { "s" },
                    Rounded(left)
                )
            }
        }
    }
}

impl Error for Isolated {}

/// A quarantined key of a task, in [`TaskStatus::quarantined`](crate::TaskStatus::quarantined).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub struct Quarantined {
    /// The key given to [`Context::isolate`](crate::Context::isolate).
    pub key: String,
    /// Its failures in a row.
    pub failures: u32,
    /// When it runs again.
    pub until: SystemTime,
    /// Its last failure.
    pub last_failure: Failure,
}

/// What the future given to [`Context::isolate`](crate::Context::isolate)
/// may return: a type that says whether the key failed.
///
/// `()` and `Option<T>` never fail; a `Result<T, E>` fails with `Err(e)`
/// (`E: Display`, rendered with `{:#}`). Implement it for a type of yours to
/// isolate work that returns it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say whether an isolated key failed",
    label = "`Context::isolate` needs a future whose output is `()`, `Option<T>` or `Result<T, E>` with `E: Display`",
    note = "implement `supervised::KeyOutcome` for `{Self}`, or return a `Result` from the future"
)]
pub trait KeyOutcome {
    /// `Some(message)` when this output is a failure of the key.
    fn key_failure(&self) -> Option<String>;
}

impl KeyOutcome for () {
    fn key_failure(&self) -> Option<String> {
        None
    }
}

impl<T> KeyOutcome for Option<T> {
    fn key_failure(&self) -> Option<String> {
        None
    }
}

impl<T, E: fmt::Display> KeyOutcome for Result<T, E> {
    fn key_failure(&self) -> Option<String> {
        self.as_ref().err().map(|e| format!("{e:#}"))
    }
}

/// How a task quarantines its failing keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) capacity: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            initial: DEFAULT_QUARANTINE_INITIAL,
            max: DEFAULT_QUARANTINE_MAX,
            capacity: DEFAULT_MAX_QUARANTINED,
        }
    }
}

impl Policy {
    /// The quarantine after `failures` failures in a row: `initial`
    /// doubling, up to `max`.
    fn delay(&self, failures: u32) -> Duration {
        let backoff = Backoff {
            initial: self.initial,
            max: self.max,
            jitter: Jitter::None,
            reset_after: Duration::MAX,
        };
        backoff.delay(failures.saturating_sub(1))
    }
}

/// A task's quarantined keys and isolated failure counts. Made the first time
/// the task isolates a key.
#[derive(Default)]
pub(crate) struct Quarantine {
    /// How many keys are quarantined: 0 lets a call skip the table.
    len: AtomicUsize,
    table: Mutex<Table>,
    pub(crate) panics: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) evicted: AtomicU64,
}

impl fmt::Debug for Quarantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quarantine")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Table {
    keys: HashMap<String, KeyState, foldhash::fast::RandomState>,
    /// Keys by the order they were quarantined in, oldest first.
    order: BTreeMap<u64, String>,
    next: u64,
}

struct KeyState {
    since: u64,
    failures: u32,
    until: Instant,
    until_wall: SystemTime,
    last_failure: Failure,
}

impl Quarantine {
    /// `true` when no key is quarantined (one relaxed load).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// The quarantine that still holds `key` now, if any.
    pub(crate) fn holds(&self, key: &str) -> Option<Isolated> {
        let table = lock(&self.table);
        let state = table.keys.get(key)?;
        (Instant::now() < state.until).then_some(Isolated::Quarantined {
            until: state.until_wall,
            failures: state.failures,
        })
    }

    /// `key` succeeded: it leaves no state behind.
    pub(crate) fn cleared(&self, task: &str, key: &str) {
        let mut table = lock(&self.table);
        if let Some(state) = table.keys.remove(key) {
            table.order.remove(&state.since);
            self.len.store(table.keys.len(), Ordering::Relaxed);
            drop(table);
            tracing::info!(
                task,
                key,
                failures = state.failures,
                "supervised key recovered; out of quarantine"
            );
        }
    }

    /// `key` failed: quarantines it for its next backoff step, and logs it.
    pub(crate) fn failed(&self, task: &str, key: String, failure: Failure, policy: &Policy) {
        match failure.kind {
            FailureKind::Panic => &self.panics,
            _ => &self.errors,
        }
        .fetch_add(1, Ordering::Relaxed);
        let mut table = lock(&self.table);
        let table = &mut *table;
        let (failures, delay) = match table.keys.get_mut(&key) {
            Some(state) => {
                state.failures = state.failures.saturating_add(1);
                let delay = policy.delay(state.failures);
                state.until = crate::clock::deadline_after(delay);
                state.until_wall = crate::clock::wall_after(delay);
                state.last_failure = failure.clone();
                (state.failures, delay)
            }
            None => {
                let delay = policy.delay(1);
                let since = table.next;
                table.next += 1;
                table.order.insert(since, key.clone());
                table.keys.insert(
                    key.clone(),
                    KeyState {
                        since,
                        failures: 1,
                        until: crate::clock::deadline_after(delay),
                        until_wall: crate::clock::wall_after(delay),
                        last_failure: failure.clone(),
                    },
                );
                // The bound: the oldest quarantines go first.
                while table.keys.len() > policy.capacity.max(1) {
                    let Some((_, oldest)) = table.order.pop_first() else {
                        break;
                    };
                    table.keys.remove(&oldest);
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                (1, delay)
            }
        };
        self.len.store(table.keys.len(), Ordering::Relaxed);
        tracing::error!(
            task,
            key = %key,
            attempt = failure.attempt,
            kind = %failure.kind,
            location = failure.location.as_deref(),
            error = %failure.message,
            failures,
            quarantined_for = %Rounded(delay),
            "supervised key failed; quarantined (the task goes on)"
        );
    }

    /// The quarantined keys, by key.
    pub(crate) fn list(&self) -> Vec<Quarantined> {
        let table = lock(&self.table);
        let mut keys: Vec<Quarantined> = table
            .keys
            .iter()
            .map(|(key, s)| Quarantined {
                key: key.clone(),
                failures: s.failures,
                until: s.until_wall,
                last_failure: s.last_failure.clone(),
            })
            .collect();
        drop(table);
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        keys
    }
}

/// The counts of isolated failures of a task, in
/// [`TaskStatus::isolated`](crate::TaskStatus::isolated).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsolatedCounts {
    /// Isolated futures that panicked.
    pub panics: u64,
    /// Isolated futures that returned `Err`.
    pub errors: u64,
    /// Quarantined keys dropped to keep the bound
    /// ([`Spec::max_quarantined`](crate::Spec::max_quarantined)).
    pub evicted: u64,
}

pin_project_lite::pin_project! {
    /// The future of [`Context::isolate`](crate::Context::isolate): checks
    /// the quarantine once, then polls the key's future inline, each poll
    /// inside `catch_unwind`, and drops it inside the same guard when it is
    /// done, so that a panic in its `Drop` is the key's too.
    pub(crate) struct Isolate<'a, K, F> {
        entry: &'a Entry,
        attempt: u32,
        key: Option<K>,
        // The key as a `String`, once it had to be made.
        owned: Option<String>,
        checked: bool,
        #[pin]
        fut: Option<F>,
    }
}

impl<'a, K, F> Isolate<'a, K, F> {
    pub(crate) fn new(entry: &'a Entry, attempt: u32, key: K, fut: F) -> Self {
        Isolate {
            entry,
            attempt,
            key: Some(key),
            owned: None,
            checked: false,
            fut: Some(fut),
        }
    }
}

/// The key as a `String`, made once.
fn key_string<K: Into<String>>(key: &mut Option<K>, owned: &mut Option<String>) -> String {
    match owned.take() {
        Some(k) => k,
        None => key.take().map(Into::into).unwrap_or_default(),
    }
}

impl<K, F> Future for Isolate<'_, K, F>
where
    K: Into<String>,
    F: Future,
    F::Output: KeyOutcome,
{
    type Output = Result<F::Output, Isolated>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let entry: &Entry = this.entry;
        let quarantine = entry.quarantine();
        if !*this.checked {
            *this.checked = true;
            // Only a task with quarantined keys looks the key up (and makes
            // it a `String` before the future runs).
            if !quarantine.is_empty() {
                let key = key_string(this.key, this.owned);
                if let Some(held) = quarantine.holds(&key) {
                    // Dropped unpolled, inside the guard: a panic in its
                    // `Drop` is not the task's.
                    let _ = catch_call(*this.attempt, || this.fut.set(None));
                    return Poll::Ready(Err(held));
                }
                *this.owned = Some(key);
            }
        }
        let attempt = *this.attempt;
        // One guard for the poll and, once it is ready, the drop of the
        // key's future: a panic in its `Drop` is the key's failure too.
        let mut fut = this.fut.as_mut();
        let polled = catch_payload(|| {
            let polled = match fut.as_mut().as_pin_mut() {
                Some(inner) => inner.poll(cx),
                None => panic!("`Context::isolate` polled after it finished"),
            };
            if polled.is_ready() {
                fut.set(None);
            }
            polled
        });
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Ok(output),
            Err(payload) => {
                let failure = failure_of_panic(payload, attempt);
                // Unwound: the future may not have been dropped yet.
                let _ = catch_call(attempt, || this.fut.set(None));
                Err(failure)
            }
        };
        Poll::Ready(match outcome {
            Ok(output) => {
                match output.key_failure() {
                    Some(message) => {
                        let failure = Failure::new(FailureKind::Error, message, attempt);
                        let key = key_string(this.key, this.owned);
                        quarantine.failed(entry.name(), key, failure, &entry.quarantine_policy());
                    }
                    None if !quarantine.is_empty() => {
                        quarantine.cleared(entry.name(), &key_string(this.key, this.owned))
                    }
                    None => {}
                }
                Ok(output)
            }
            Err(failure) => {
                let key = key_string(this.key, this.owned);
                let policy = entry.quarantine_policy();
                quarantine.failed(entry.name(), key, failure.clone(), &policy);
                Err(Isolated::Panicked(failure))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_initial_to_max() {
        let policy = Policy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            capacity: 10,
        };
        let delays: Vec<u64> = (1..=12).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(policy.delay(u32::MAX), Duration::from_secs(300));
    }
}
