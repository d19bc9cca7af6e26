//! What the supervisor waits for while an attempt runs: the attempt's end,
//! its first failure, cancellation (with the grace after it), and for a
//! singleton the lease.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::format::Rounded;
use crate::registry::{Entry, Failure};
use crate::run::control::Control;
use crate::run::decide::Ending;
use crate::run::singleton;
use crate::run::Spec;

use super::attempt::from_join;
use super::guard::Grant;
use super::AttemptHandle;

/// [`watch_attempt`] for a singleton: also keeps its lease, and when the
/// lease can no longer be proven, cancels the attempt (with the grace of a
/// singleton) and marks the grant lost.
pub(super) async fn watch_held(
    spec: &Spec,
    entry: &Entry,
    token: &CancellationToken,
    running: &mut Option<AttemptHandle>,
    attempt: u32,
    grant: &mut Grant,
) -> Ending {
    let Grant { lease, held } = grant;
    let lease = &**lease;
    let timing = singleton::Timing::of(lease, spec.policy.grace);
    let watch = watch_attempt(spec, entry, token, running, attempt, timing.grace);
    let mut watch = std::pin::pin!(watch);
    tokio::select! {
        biased;
        ending = &mut watch => ending,
        reason = singleton::keep(lease, entry, held, timing) => {
            tracing::warn!(
                task = %spec.name,
                attempt,
                fencing_token = held.fencing_token,
                "supervised singleton stops its attempt: {reason}"
            );
            entry.lease_released();
            held.lost = true;
            token.cancel();
            watch.await
        }
    }
}

/// Waits for the attempt to end, a child to panic or the watchdog to find it
/// stalled, or cancellation (then at most `grace`).
async fn watch_attempt(
    spec: &Spec,
    entry: &Entry,
    token: &CancellationToken,
    running: &mut Option<AttemptHandle>,
    attempt: u32,
    grace: std::time::Duration,
) -> Ending {
    // A singleton's token is made with its attempt.
    let woke = first_of(entry, token, running, attempt, false).await;
    match ended(woke, running) {
        Some(ending) => ending,
        None => Box::pin(after_cancel(spec, running, attempt, grace)).await,
    }
}

/// Whether the task makes its own token when its `Context` is first asked
/// for it ([`Context::started_on`](crate::Context::started_on)): not a group member, whose token the
/// group makes, and not a singleton, whose attempts' tokens are made with
/// their grants.
pub(super) fn own_token_on_demand(spec: &Spec, control: Option<&Control>) -> bool {
    control.is_none() && spec.policy.lease.is_none()
}

/// The first of the running attempt's end, its first failure and
/// cancellation. With `own_on_demand`, the task may make its own token
/// meanwhile (see [`task_cancelled`]).
pub(super) fn first_of<'a>(
    entry: &'a Entry,
    token: &'a CancellationToken,
    running: &'a mut Option<AttemptHandle>,
    attempt: u32,
    own_on_demand: bool,
) -> FirstOf<'a> {
    let own = entry.own_token();
    FirstOf {
        handle: running.as_mut().expect("attempt was just spawned"),
        entry,
        cancelled: own.unwrap_or(token).cancelled(),
        attempt,
        own: own.is_some() || !own_on_demand,
    }
}

/// Resolves when the task is cancelled: when `started_on`, the token it
/// was started on, is cancelled, or, with `own_on_demand` (a task that
/// makes its own token when its `Context` is asked for it), its own token
/// once made (a child of `started_on`, which it then waits on instead).
pub(super) fn task_cancelled<'a>(
    entry: &'a Entry,
    started_on: &'a CancellationToken,
    own_on_demand: bool,
) -> TaskCancelled<'a> {
    let own = entry.own_token();
    TaskCancelled {
        entry,
        waiting: own.unwrap_or(started_on).cancelled(),
        own: own.is_some() || !own_on_demand,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`task_cancelled`].
    pub(super) struct TaskCancelled<'a> {
        entry: &'a Entry,
        #[pin]
        waiting: WaitForCancellationFuture<'a>,
        // Waiting on the task's own token, or on one that can have no
        // own token made beside it.
        own: bool,
    }
}

impl Future for TaskCancelled<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.project();
        if !*this.own {
            this.entry.attempt_cell().register(cx.waker());
        }
        poll_cancelled(this.entry, this.waiting, this.own, cx)
    }
}

/// Polls `waiting`, a wait on the token a task was started on (`own` false)
/// or on its own token: switched to the task's own token once its `Context`
/// has made one.
///
/// The caller has registered `cx`'s waker in the task's attempt cell
/// before this call when `own` is false: a token made after the check here
/// wakes that waker (`Entry::own_token_or_make`), and one made before it is
/// seen by it (the cell's lock orders the two).
fn poll_cancelled<'a>(
    entry: &'a Entry,
    mut waiting: Pin<&mut WaitForCancellationFuture<'a>>,
    own: &mut bool,
    cx: &mut TaskContext<'_>,
) -> Poll<()> {
    if !*own {
        if let Some(token) = entry.own_token() {
            waiting.set(token.cancelled());
            *own = true;
        }
    }
    waiting.poll(cx)
}

/// How the attempt ended, or `None` when it was cancelled and is still
/// running.
pub(super) fn ended(woke: Woke, running: &mut Option<AttemptHandle>) -> Option<Ending> {
    match woke {
        Woke::Joined(ending) => {
            // Resolved: a handle may not be polled again.
            *running = None;
            Some(ending)
        }
        // A child's panic, or the stall watchdog's verdict.
        Woke::Failed(failure) => Some(Ending::Failed(failure)),
        Woke::Cancelled => None,
    }
}

/// Gives a cancelled attempt its grace to return. Boxed by its callers: its
/// timer lives on the heap while a task stops, not in every supervisor's
/// future.
pub(super) async fn after_cancel(
    spec: &Spec,
    running: &mut Option<AttemptHandle>,
    attempt: u32,
    grace: std::time::Duration,
) -> Ending {
    let handle = running.as_mut().expect("the attempt is still running");
    match tokio::time::timeout(grace, handle).await {
        Ok(joined) => {
            *running = None;
            match from_join(joined, attempt) {
                Ending::Failed(failure) => Ending::Cancelled(Some(failure)),
                _ => Ending::Cancelled(None),
            }
        }
        Err(_) => {
            tracing::warn!(
                task = %spec.name,
                attempt,
                grace = %Rounded(grace),
                "supervised task did not stop within its grace period; aborting it"
            );
            Ending::Cancelled(None)
        }
    }
}

/// What ended the wait for a running attempt.
pub(super) enum Woke {
    Joined(Ending),
    Failed(Box<Failure>),
    Cancelled,
}

pin_project_lite::pin_project! {
    /// The first of the attempt's end, its first failure and cancellation,
    /// in that order when several are ready. A plain future, not
    /// `tokio::select!`, whose state would make every supervisor's future
    /// larger.
    pub(super) struct FirstOf<'a> {
        handle: &'a mut AttemptHandle,
        entry: &'a Entry,
        #[pin]
        cancelled: WaitForCancellationFuture<'a>,
        attempt: u32,
        // As in `TaskCancelled`.
        own: bool,
    }
}

impl Future for FirstOf<'_> {
    type Output = Woke;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Woke> {
        let this = self.project();
        if let Poll::Ready(joined) = Pin::new(&mut **this.handle).poll(cx) {
            return Poll::Ready(Woke::Joined(from_join(joined, *this.attempt)));
        }
        // Pending, the failure's wait has registered this waker in the
        // attempt cell, as the wait for the task's own token needs.
        let mut failure = this.entry.attempt_cell().first_failure();
        if let Poll::Ready(failure) = Pin::new(&mut failure).poll(cx) {
            return Poll::Ready(Woke::Failed(Box::new(failure)));
        }
        if poll_cancelled(this.entry, this.cancelled, this.own, cx).is_ready() {
            return Poll::Ready(Woke::Cancelled);
        }
        Poll::Pending
    }
}
