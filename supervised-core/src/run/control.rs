//! A group's hold on the supervisor of one of its members: restarts on
//! request, and the member's failures reported back to the group.

use std::sync::{Mutex, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Exit;
use crate::events::RestartCause;
use crate::registry::{lock, Failure};
use crate::task::Task;

/// What a group does with the failures of its members.
pub(crate) trait Membership: Send + Sync {
    /// Member `member` failed and its next attempt starts at `resume_at`:
    /// the group applies its strategy and counts the restart.
    fn failed(&self, member: u64, resume_at: Instant, failure: &Failure);

    /// Member `member`'s supervisor ended with `exit`, and gave `task` back.
    fn ended(&self, member: u64, exit: Exit, task: Task);

    /// Member `member`'s supervisor, the tokio task `task`, was dropped
    /// before it ended: its runtime shut down, or it was aborted.
    fn dropped(&self, member: u64, task: tokio::task::Id);
}

/// A restart that the member did not fail for.
pub(crate) struct Request {
    /// The next attempt starts no earlier than this.
    pub(crate) at: Instant,
    pub(crate) cause: RestartCause,
}

/// Shared by a group and one member's supervisor.
pub(crate) struct Control {
    id: u64,
    group: Weak<dyn Membership>,
    state: Mutex<State>,
    /// Woken when a request arrives; one waiter, the supervisor.
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// The running attempt's own token, a child of the task's token.
    attempt: Option<CancellationToken>,
    /// Boxed: one word in every member's `Control`, which every member
    /// keeps for its whole life, for a request that is rare.
    request: Option<Box<Request>>,
}

impl Control {
    pub(crate) fn new(id: u64, group: Weak<dyn Membership>) -> Self {
        Control {
            id,
            group,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    /// The token of a new attempt: a child of `task`, so that a restart
    /// request stops the attempt and not the task. The attempt satisfies
    /// any request made before it.
    pub(crate) fn begin_attempt(&self, task: &CancellationToken) -> CancellationToken {
        let token = task.child_token();
        let mut state = lock(&self.state);
        state.attempt = Some(token.clone());
        state.request = None;
        token
    }

    pub(crate) fn end_attempt(&self) {
        lock(&self.state).attempt = None;
    }

    /// Stops the running attempt, if any, and asks for the next one to start
    /// at `at` (a later request replaces an earlier one).
    pub(crate) fn request(&self, at: Instant, cause: RestartCause) {
        let mut state = lock(&self.state);
        if let Some(token) = &state.attempt {
            token.cancel();
        }
        state.request = Some(Box::new(Request { at, cause }));
        drop(state);
        self.wake.notify_one();
    }

    pub(crate) fn take_request(&self) -> Option<Request> {
        lock(&self.state).request.take().map(|request| *request)
    }

    /// Resolves after a request (or a stale wake-up: check
    /// [`Control::take_request`]).
    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }

    /// Tells the group that the member failed and restarts at `resume_at`.
    pub(crate) fn failed(&self, resume_at: Instant, failure: &Failure) {
        if let Some(group) = self.group.upgrade() {
            group.failed(self.id, resume_at, failure);
        }
    }

    /// Tells the group that the member's supervisor ended.
    pub(crate) fn ended(&self, exit: Exit, task: Task) {
        if let Some(group) = self.group.upgrade() {
            group.ended(self.id, exit, task);
        }
    }

    /// Tells the group that the member's supervisor, the tokio task `task`,
    /// was dropped before it ended.
    pub(crate) fn dropped(&self, task: tokio::task::Id) {
        if let Some(group) = self.group.upgrade() {
            group.dropped(self.id, task);
        }
    }
}
