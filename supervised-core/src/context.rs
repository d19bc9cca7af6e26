//! The handle every attempt of a supervised task receives.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::panic::CatchPanic;
use crate::registry::{lock, Entry, Failure};

/// What one attempt of a supervised task is given: its name and attempt number,
/// a cheap heartbeat, the cancellation signal, and a way to start child tasks that
/// do not outlive the attempt.
///
/// Clones refer to the same attempt.
#[derive(Clone)]
pub struct Context {
    entry: Arc<Entry>,
    token: CancellationToken,
    attempt: u32,
    scope: Arc<Scope>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name())
            .field("attempt", &self.attempt)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Context {
    pub(crate) fn new(
        entry: Arc<Entry>,
        token: CancellationToken,
        attempt: u32,
        scope: Arc<Scope>,
    ) -> Self {
        Context {
            entry,
            token,
            attempt,
            scope,
        }
    }

    /// The task's name, as in the registry.
    pub fn name(&self) -> &str {
        self.entry.name()
    }

    /// Which attempt this is: 1 on the first run, 2 after the first restart.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Records a heartbeat: "this task is making progress".
    ///
    /// Costs a read of the kernel's coarse clock and a few relaxed atomic
    /// operations: no lock, no hashing, no system call. The recorded time is
    /// accurate to the kernel tick ([`clock::resolution`](crate::clock::resolution),
    /// at most [`clock::RESOLUTION`](crate::clock::RESOLUTION)).
    ///
    /// Only the current attempt beats: a `Context` kept past the end of its
    /// attempt (cloned into a plain `tokio::spawn`, say) records nothing, so it
    /// cannot keep a stuck successor looking alive.
    #[inline]
    pub fn heartbeat(&self) {
        self.entry.beat_for(self.attempt);
    }

    /// Resolves when the task is asked to stop. An attempt that does not return
    /// within the task's grace period after that is dropped.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// `true` once the task has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// This task's own cancellation token: a child of the token the task was
    /// started with. Cancelling it stops this task (as [`Exit::Cancelled`](crate::Exit::Cancelled)),
    /// not its siblings; cancelling the parent stops it too.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Starts a child task tied to this attempt.
    ///
    /// The child is aborted (dropped at its next `.await`, whether or not it looks
    /// at any token) when the attempt ends for any reason, and the next attempt
    /// starts only after it has been dropped. A panic in the child fails the
    /// attempt like a panic of its own, and the returned handle sees it as a
    /// [`JoinError`](tokio::task::JoinError) too.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`].
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let scope = self.scope.clone();
        let attempt = self.attempt;
        let child = self.scope.tracker.track_future(async move {
            match CatchPanic::new(fut, attempt).await {
                Ok(v) => v,
                Err(failure) => {
                    let message = format!("child task panicked: {}", failure.message);
                    scope.fail(Failure { message, ..failure });
                    // Surface the panic to the child's own handle as well.
                    std::panic::resume_unwind(Box::new("child task panicked"))
                }
            }
        });
        let handle = tokio::spawn(child);
        self.scope.adopt(handle.abort_handle());
        handle
    }
}

/// The children of one attempt.
#[derive(Default)]
pub(crate) struct Scope {
    children: Mutex<Children>,
    failed: Notify,
    /// Tracks the attempt's future and its children until each is dropped.
    pub(crate) tracker: TaskTracker,
}

#[derive(Default)]
struct Children {
    handles: Vec<AbortHandle>,
    closed: bool,
    failure: Option<Box<Failure>>,
}

impl Scope {
    fn adopt(&self, handle: AbortHandle) {
        let mut children = lock(&self.children);
        if children.closed {
            handle.abort();
            return;
        }
        // Forget finished children now and then so a long attempt that spawns
        // many short ones does not grow without bound.
        if children.handles.len() >= 32 && children.handles.len().is_power_of_two() {
            children.handles.retain(|h| !h.is_finished());
        }
        children.handles.push(handle);
    }

    /// Fails the attempt with `failure`, unless it already failed or ended:
    /// a child's panic, or the stall watchdog's verdict.
    pub(crate) fn fail(&self, failure: Failure) {
        let mut children = lock(&self.children);
        if children.failure.is_none() && !children.closed {
            children.failure = Some(Box::new(failure));
            self.failed.notify_one();
        }
    }

    /// Resolves with the first failure given to [`Scope::fail`].
    pub(crate) async fn first_failure(&self) -> Failure {
        loop {
            let notified = self.failed.notified();
            if let Some(f) = lock(&self.children).failure.take() {
                return *f;
            }
            notified.await;
        }
    }

    /// Resolves once the attempt's future and every child have been dropped
    /// (after [`Scope::close`]).
    pub(crate) async fn dropped(&self) {
        self.tracker.wait().await
    }

    /// `true` once the attempt's future and every child have been dropped.
    pub(crate) fn is_dropped(&self) -> bool {
        self.tracker.is_closed() && self.tracker.is_empty()
    }

    /// Aborts every child; children spawned afterwards are aborted at once.
    pub(crate) fn close(&self) {
        self.tracker.close();
        let handles = {
            let mut children = lock(&self.children);
            children.closed = true;
            std::mem::take(&mut children.handles)
        };
        for h in handles {
            h.abort();
        }
    }
}
