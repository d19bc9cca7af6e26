//! The poll in progress, and a supervised task's health and status as the
//! views read them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{bump, lock, Entry};
use crate::clock::Clock;
use crate::isolate::IsolatedCounts;
use crate::registry::status::{FailureCounts, LeaseStatus, TaskState, TaskStatus};

impl Entry {
    /// Called before each poll of the attempt: one coarse clock read and one
    /// relaxed store. Returns the stamp for [`Entry::poll_end`].
    #[inline]
    pub(crate) fn poll_begin(&self) -> u64 {
        let now = self.hot.now();
        self.poll_started.store(now, Ordering::Relaxed);
        now
    }

    /// A poll in progress since `stamp`, for tests of what a status read
    /// makes of it.
    #[cfg(all(test, feature = "http"))]
    pub(crate) fn set_poll_started(&self, stamp: u64) {
        self.poll_started.store(stamp, Ordering::Relaxed);
    }

    /// Called after each poll of the attempt: one relaxed store and one
    /// relaxed load; a poll that a status read saw blocking is then logged
    /// and counted.
    #[inline]
    pub(crate) fn poll_end(&self, started: u64) {
        self.poll_started.store(0, Ordering::Relaxed);
        if self.blocked_seen.load(Ordering::Relaxed) == started {
            self.blocked_poll_ended(started);
        }
    }

    #[cold]
    fn blocked_poll_ended(&self, started: u64) {
        self.blocked_seen.store(0, Ordering::Relaxed);
        let took = Duration::from_nanos(self.hot.now().saturating_sub(started));
        if let Some(sup) = &self.supervision {
            bump(&sup.blocked);
            tracing::warn!(
                task = %self.name,
                attempt = sup.attempt.load(Ordering::Relaxed),
                blocked_for = %crate::format::Rounded(took),
                blocking_after = %crate::format::Rounded(sup.settings.blocking_after),
                "supervised task blocked its worker thread: one poll ran for {}",
                crate::format::Rounded(took),
            );
        }
    }

    /// How long the poll in progress has run, when longer than `threshold`;
    /// marks it so that it reports itself when it ends.
    fn blocked_for(&self, now_mono: u64, threshold: Duration) -> Option<Duration> {
        let started = self.poll_started.load(Ordering::Relaxed);
        if started == 0 {
            return None;
        }
        let running = Duration::from_nanos(now_mono.saturating_sub(started));
        if running <= threshold {
            return None;
        }
        if self.blocked_seen.load(Ordering::Relaxed) != started {
            self.blocked_seen.store(started, Ordering::Relaxed);
        }
        Some(running)
    }

    /// Looks at the poll in progress on behalf of the stall watchdog.
    pub(crate) fn check_blocked(&self) {
        if let Some(sup) = &self.supervision {
            self.blocked_for(self.hot.now(), sup.settings.blocking_after);
        }
    }

    /// What a supervised task's health is judged on, at `now_mono`; `None`
    /// for a heartbeat-only name.
    fn health(&self, now_mono: u64) -> Option<Health> {
        let sup = self.supervision.as_ref()?;
        let state = TaskState::from_u8(self.state.load(Ordering::Acquire));
        // Silence counts from the last beat, or from the start when there
        // was none, and for a singleton not from before its last grant.
        let quiet_since = match self.last_mono() {
            0 => sup.started_mono,
            last => last,
        }
        .max(self.resumed_mono());
        let quiet = Duration::from_nanos(now_mono.saturating_sub(quiet_since));
        let late = sup.settings.stale_after.is_some_and(|limit| quiet > limit);
        let stale = !state.is_final()
            && state != TaskState::Standby
            && (self.stale.load(Ordering::Relaxed) || late);
        let blocked_for = if state.is_final() {
            None
        } else {
            self.blocked_for(now_mono, sup.settings.blocking_after)
        };
        Some(Health {
            state,
            stale,
            blocked_for,
        })
    }

    /// [`TaskStatus::healthy`] of a supervised task at `now_mono`, without
    /// the rest of its status; `None` for a heartbeat-only name.
    pub(crate) fn is_healthy(&self, now_mono: u64) -> Option<bool> {
        self.health(now_mono).map(|health| health.is_healthy())
    }

    pub(in crate::registry) fn status(&self, clock: &Clock, now_mono: u64) -> Option<TaskStatus> {
        self.status_named(&self.name, clock, now_mono)
    }

    /// [`Entry::status`] for a caller that holds a copy of the entry's name
    /// (a view's sorted handles): the name is the entry's last field, on a
    /// cache line that nothing else a status reads is on.
    pub(in crate::registry) fn status_named(
        &self,
        name: &str,
        clock: &Clock,
        now_mono: u64,
    ) -> Option<TaskStatus> {
        debug_assert_eq!(name, self.name.as_str());
        let sup = self.supervision.as_ref()?;
        let health = self.health(now_mono)?;
        let Health {
            state,
            stale,
            blocked_for,
        } = health;
        let since_last_tick = self.age(now_mono);
        let failures = FailureCounts {
            panics: sup.panics.load(Ordering::Relaxed).into(),
            errors: sup.errors.load(Ordering::Relaxed).into(),
            stalls: sup.stalls.load(Ordering::Relaxed).into(),
            blocked: sup.blocked.load(Ordering::Relaxed).into(),
        };
        // Only a counted failure is recorded as the last one (after its
        // count): a task that never failed has none, and its cell's lock,
        // a cache miss and an atomic write, is not taken to learn it.
        let failed = failures.panics + failures.errors + failures.stalls > 0;
        Some(TaskStatus {
            name: String::from(name),
            state,
            restarts: sup.restarts.load(Ordering::Relaxed).into(),
            attempt: sup.attempt.load(Ordering::Relaxed),
            last_tick: self.last_tick(clock),
            since_last_tick,
            stale_after: sup.settings.stale_after,
            stale,
            blocked_for,
            expects_heartbeat: sup.settings.expects_heartbeat,
            healthy: health.is_healthy(),
            failures,
            last_failure: if failed {
                sup.attempt_cell.last_failure()
            } else {
                None
            },
            parent: self.parent_path(),
            quarantined: sup.quarantine().map(|q| q.list()).unwrap_or_default(),
            isolated: sup
                .quarantine()
                .map_or_else(IsolatedCounts::default, |q| IsolatedCounts {
                    panics: q.panics.load(Ordering::Relaxed),
                    errors: q.errors.load(Ordering::Relaxed),
                    evicted: q.evicted.load(Ordering::Relaxed),
                }),
            lease: self.lease().map(|slot| LeaseStatus {
                leader: slot.leader.load(Ordering::Relaxed),
                fencing_token: match slot.fencing.load(Ordering::Relaxed) {
                    0 => None,
                    token => Some(token),
                },
                standby_reason: lock(&slot.reason).clone(),
                has_stood_by: slot.stood_by.load(Ordering::Relaxed),
            }),
        })
    }
}

/// What a supervised task's health is judged on.
#[derive(Clone, Copy)]
struct Health {
    state: TaskState,
    /// Silent for longer than its `stale_after`, or found stalled by its
    /// watchdog, while it should be running.
    stale: bool,
    /// How long the poll in progress has blocked its thread, past the
    /// task's threshold.
    blocked_for: Option<Duration>,
}

impl Health {
    fn is_healthy(self) -> bool {
        !self.stale && self.blocked_for.is_none() && self.state != TaskState::Failed
    }
}
