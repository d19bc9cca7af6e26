//! A supervised task's life as its entry records it: attempts, readiness,
//! its lease, quarantine, group parent, cancellation token and failures.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{bump, lock, Entry, Supervision};
use crate::context::{AttemptCell, Scope};
use crate::isolate::{Policy, Quarantine};
use crate::registry::status::{Failure, FailureKind, TaskState};

impl Entry {
    /// What wakes on the first heartbeat and on every change of state.
    pub(crate) fn watch(&self) -> &tokio::sync::Notify {
        self.sup().extras().watch.get_or_init(Default::default)
    }

    /// Ready as an ordered group means it: beaten at least once (in any
    /// attempt so far), or running and heartbeat-less, or completed.
    pub(crate) fn is_ready(&self) -> bool {
        let Some(state) = self.state() else {
            return false;
        };
        self.beats() > 0
            || state == TaskState::Completed
            || state == TaskState::Standby
            || (state == TaskState::Running && !self.sup().settings.expects_heartbeat)
    }

    /// Moves a singleton task to [`TaskState::Standby`] for `reason`;
    /// `true` when the reason changed.
    pub(crate) fn stand_by(&self, reason: String) -> bool {
        let Some(slot) = self.lease() else {
            return false;
        };
        slot.leader.store(false, Ordering::Relaxed);
        slot.stood_by.store(true, Ordering::Relaxed);
        let changed = {
            let mut current = lock(&slot.reason);
            let changed = current.as_deref() != Some(reason.as_str());
            *current = Some(reason);
            changed
        };
        self.set_state(TaskState::Standby);
        changed
    }

    /// The singleton task holds grant `fencing_token` from now on.
    pub(crate) fn lease_acquired(&self, fencing_token: u64) {
        if let Some(slot) = self.lease() {
            *lock(&slot.reason) = None;
            slot.fencing.store(fencing_token, Ordering::Relaxed);
            slot.resumed_mono
                .store(self.hot.now().max(1), Ordering::Relaxed);
            slot.leader.store(true, Ordering::Relaxed);
        }
    }

    /// The singleton task no longer holds its lease.
    pub(crate) fn lease_released(&self) {
        if let Some(slot) = self.lease() {
            slot.leader.store(false, Ordering::Relaxed);
        }
    }

    /// The task's quarantined keys (made on first use).
    pub(crate) fn quarantine(&self) -> &Quarantine {
        self.sup().extras().quarantine.get_or_init(Default::default)
    }

    /// How the task quarantines its failing keys.
    pub(crate) fn quarantine_policy(&self) -> Policy {
        self.sup().settings.quarantine
    }

    /// The path of the group tasks this task is a member of, outermost
    /// first, joined by `/`.
    pub(crate) fn parent_path(&self) -> Option<String> {
        let mut names: Vec<&str> = Vec::new();
        let mut at = self.supervision.as_ref()?.parent();
        // Links only point to entries registered earlier, so there is no
        // cycle; the bound is a guard all the same.
        while let Some(parent) = at {
            if names.len() == 64 {
                break;
            }
            names.push(parent.name());
            at = parent.supervision.as_ref().and_then(Supervision::parent);
        }
        if names.is_empty() {
            return None;
        }
        names.reverse();
        Some(names.join("/"))
    }

    /// Records the group task this task is a member of; the first one
    /// given stays.
    pub(crate) fn set_parent(&self, parent: &Arc<Entry>) {
        if let Some(sup) = &self.supervision {
            if !std::ptr::eq(self, &**parent) {
                let _ = sup.extras().parent.set(parent.clone());
            }
        }
    }

    /// Records the start of an attempt. Not a heartbeat: the task has done
    /// nothing yet.
    pub(crate) fn start_attempt(&self, attempt: u32) {
        let sup = self.sup();
        sup.attempt.store(attempt, Ordering::Relaxed);
        if attempt > 1 {
            bump(&sup.restarts);
        }
        sup.attempt_cell.open(attempt);
        self.live_attempt.store(attempt, Ordering::Relaxed);
        self.set_state(TaskState::Running);
    }

    /// The attempt is over: its `Context` no longer beats, and no longer
    /// starts children; those it started are aborted. Returns their scope,
    /// if any, for the caller to wait for.
    pub(crate) fn end_attempt(&self) -> Option<Arc<Scope>> {
        self.live_attempt.store(0, Ordering::Relaxed);
        self.supervision
            .as_ref()
            .and_then(|sup| sup.attempt_cell.close())
    }

    /// The running attempt's failure slot and children.
    pub(crate) fn attempt_cell(&self) -> &AttemptCell {
        &self.sup().attempt_cell
    }

    /// The task's own cancellation token, once made (see
    /// [`Entry::own_token_or_make`]).
    pub(crate) fn own_token(&self) -> Option<&CancellationToken> {
        self.supervision.as_ref()?.own_token.get()
    }

    /// The task's own cancellation token, made on the first call as a child
    /// of `parent`, the token the task was started on. The supervisor, which
    /// waits on `parent` until then, is woken to wait on the new token
    /// instead: cancelling it stops the task.
    pub(crate) fn own_token_or_make(&self, parent: &CancellationToken) -> &CancellationToken {
        let sup = self.sup();
        let mut made = false;
        let token = sup.own_token.get_or_init(|| {
            made = true;
            parent.child_token()
        });
        if made {
            sup.attempt_cell.wake();
        }
        token
    }

    /// The token whose cancellation stops the task: its own once made,
    /// otherwise `started_on`, the token it was started on.
    pub(crate) fn task_token<'a>(
        &'a self,
        started_on: &'a CancellationToken,
    ) -> &'a CancellationToken {
        self.own_token().unwrap_or(started_on)
    }

    /// The current (or last) attempt, 0 before the first.
    pub(crate) fn attempt(&self) -> u32 {
        self.supervision
            .as_ref()
            .map_or(0, |s| s.attempt.load(Ordering::Relaxed))
    }

    /// The last failure recorded.
    pub(crate) fn last_failure(&self) -> Option<Failure> {
        self.supervision.as_ref()?.attempt_cell.last_failure()
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.sup().restarts.load(Ordering::Relaxed).into()
    }

    pub(crate) fn set_stale(&self, stale: bool) {
        debug_assert!(self.supervision.is_some(), "a heartbeat-only name");
        self.stale.store(stale, Ordering::Relaxed);
    }

    pub(crate) fn record_failure(&self, failure: &Failure) {
        let sup = self.sup();
        let counter = match failure.kind {
            FailureKind::Panic => &sup.panics,
            FailureKind::Error => &sup.errors,
            FailureKind::Stalled => &sup.stalls,
            FailureKind::NameTaken | FailureKind::InvalidName | FailureKind::NoLease => return,
        };
        bump(counter);
        sup.attempt_cell.set_last_failure(failure);
    }
}
