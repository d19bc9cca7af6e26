//! What a supervisor leaves right however it ends: its guard, which waits
//! for a running attempt and records the task's final state when the
//! supervisor is dropped, and a singleton's grant.

use std::sync::Arc;

use crate::events::EventKind;
use crate::registry::{Entry, Registry, TaskState};
use crate::run::singleton;
use crate::run::Exit;

use super::AttemptHandle;

/// A grant of a singleton's lease, and the lease it came from.
pub(super) struct Grant {
    pub(super) lease: Arc<dyn crate::lease::Lease>,
    pub(super) held: singleton::Held,
}

/// Aborts the attempt if the supervisor is dropped; the task is recorded as
/// cancelled once the attempt and its children are dropped.
pub(super) struct Guard {
    pub(super) registry: Registry,
    pub(super) entry: Arc<Entry>,
    pub(super) attempt: Option<AttemptHandle>,
    /// Between the start of an attempt and the end of its drop.
    pub(super) in_attempt: bool,
    /// A singleton's grant while it holds one, the one record of it: kept
    /// and released by the restart loop, and released by the guard when
    /// the supervisor is dropped, once the attempt is.
    /// Boxed: one word for the tasks that are not singletons.
    pub(super) grant: Option<Box<Grant>>,
    /// Disarmed once the supervisor has recorded the task's end itself.
    pub(super) armed: bool,
}

impl Guard {
    pub(super) fn new(registry: Registry, entry: Arc<Entry>) -> Self {
        Guard {
            registry,
            entry,
            attempt: None,
            in_attempt: false,
            grant: None,
            armed: true,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let handle = self.attempt.take();
        if let Some(handle) = &handle {
            handle.abort();
        }
        if self.armed {
            let attempt = self.entry.attempt();
            self.registry.publish(self.entry.name(), attempt, || {
                EventKind::Stopped(Exit::Cancelled)
            });
        }
        // A grant still held is released once the attempt is dropped, never
        // before: a standby may start as soon as it is.
        let release = self.grant.take().map(|grant| {
            let Grant { lease, held } = *grant;
            let token = held.fencing_token;
            self.entry.lease_released();
            let name = self.entry.name().to_owned();
            async move {
                let _ =
                    tokio::time::timeout(lease.renew_every(), lease.release(&name, token)).await;
            }
        });
        let runtime = tokio::runtime::Handle::try_current().ok();
        if !std::mem::take(&mut self.in_attempt) {
            if let (Some(runtime), Some(release)) = (&runtime, release) {
                drop(runtime.spawn(release));
            }
            self.entry.finish(TaskState::Cancelled);
            return;
        }
        let scope = self.entry.end_attempt();
        // Waited for here, by the guard alone.
        self.entry.attempt_cell().clear();
        let Some(runtime) = runtime else {
            // No runtime left to release it: the grant expires after its TTL.
            self.entry.finish(TaskState::Cancelled);
            return;
        };
        let attempt = handle.filter(|handle| !handle.is_finished());
        let scope = scope.filter(|scope| !scope.is_dropped());
        if attempt.is_none() && scope.is_none() {
            if let Some(release) = release {
                drop(runtime.spawn(release));
            }
            self.entry.finish(TaskState::Cancelled);
            return;
        }
        self.entry.set_state(TaskState::Stopping);
        // Also records the end when the runtime drops this instead of running it.
        let finish = FinishOnDrop(self.entry.clone());
        drop(runtime.spawn(async move {
            let _finish = finish;
            // Resolves once the aborted attempt's future has been dropped.
            if let Some(attempt) = attempt {
                let _ = attempt.await;
            }
            if let Some(scope) = scope {
                scope.dropped().await;
            }
            if let Some(release) = release {
                release.await;
            }
        }));
    }
}

struct FinishOnDrop(Arc<Entry>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish(TaskState::Cancelled);
    }
}
