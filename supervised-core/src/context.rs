//! The handle every attempt of a supervised task receives.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::isolate::{Isolated, KeyOutcome};
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
    /// The attempt's token; with `started_on`, the token the task was
    /// started on, whose child the task's own token is, made on demand.
    token: CancellationToken,
    attempt: u32,
    /// `token` is the token the task was started on, not its own: the task's
    /// own token is made in its entry on the first
    /// [`Context::token`] or [`Context::cancelled`].
    started_on: bool,
    /// The singleton's grant, 0 for other tasks.
    fencing: u64,
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
    /// A `Context` whose token is the attempt's own (a group member's, a
    /// singleton's attempt).
    pub(crate) fn new(
        entry: Arc<Entry>,
        token: CancellationToken,
        attempt: u32,
        fencing: Option<u64>,
    ) -> Self {
        Context {
            entry,
            token,
            attempt,
            started_on: false,
            fencing: fencing.unwrap_or(0),
        }
    }

    /// A `Context` for a task started on `started_on`, a token it does not
    /// own: the task's own token, a child of it, is made when first asked
    /// for, and kept in the task's entry for every attempt.
    pub(crate) fn started_on(
        entry: Arc<Entry>,
        started_on: CancellationToken,
        attempt: u32,
    ) -> Self {
        Context {
            started_on: true,
            ..Context::new(entry, started_on, attempt, None)
        }
    }

    /// For a singleton task ([`Spec::singleton`](crate::Spec::singleton)),
    /// the fencing token of the lease grant this attempt runs under: strictly
    /// greater than the token of every earlier grant of the task's name, on
    /// any replica. `None` for other tasks.
    ///
    /// Writes that must happen once carry it, and the store they go to
    /// keeps the highest token it has seen and refuses older ones in the
    /// same statement as the write: a replica that was paused past its
    /// lease and resumes then cannot write after the next holder has. See
    /// [fencing tokens](crate::lease#what-it-cannot-guarantee-and-fencing-tokens).
    pub fn fencing_token(&self) -> Option<u64> {
        (self.fencing != 0).then_some(self.fencing)
    }

    /// The task's name, as in the registry.
    pub fn name(&self) -> &str {
        self.entry.name()
    }

    /// The task's registry entry.
    pub(crate) fn entry(&self) -> &Arc<Entry> {
        &self.entry
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
    ///
    /// Waits on [`Context::token`], which the first call makes.
    pub async fn cancelled(&self) {
        self.token().cancelled().await
    }

    /// `true` once the task has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        // The task's own token can only have been cancelled once made.
        self.current_token().is_cancelled()
    }

    /// This task's own cancellation token: a child of the token the task was
    /// started with. Cancelling it stops this task (as [`Exit::Cancelled`](crate::Exit::Cancelled)),
    /// not its siblings; cancelling the parent stops it too.
    ///
    /// A task started on a token it shares (not a group member, not a
    /// [singleton](crate::Spec::singleton)) makes its token on the first
    /// call of this (or of [`Context::cancelled`]), and every later attempt
    /// gets the same one: a task that never asks does not pay for it (112
    /// bytes on the heap, a tenth of what a supervised task costs). Once
    /// made, it is kept with the task's registry entry. A group member's
    /// and a singleton's attempts each get a token of their own, made with
    /// the attempt.
    pub fn token(&self) -> &CancellationToken {
        if self.started_on {
            self.entry.own_token_or_make(&self.token)
        } else {
            &self.token
        }
    }

    /// The token that stops this attempt now, without making one.
    fn current_token(&self) -> &CancellationToken {
        if self.started_on {
            self.entry.task_token(&self.token)
        } else {
            &self.token
        }
    }

    /// Runs `fut` for `key` inside this attempt: a panic in it (or an `Err`,
    /// for a `Result` output) is that key's failure, not the task's.
    ///
    /// `fut` is polled inline, on this attempt's task (no task is spawned
    /// per key; the happy path costs about a `catch_unwind`). A panic
    /// returns `Err(Isolated::Panicked(failure))`; an `Err` output is
    /// returned as `Ok(Err(e))`; both quarantine the key, log the failure
    /// once (task, key, attempt, kind, message, location) and leave the
    /// task's attempt and its `restarts` alone. While `key` is quarantined,
    /// `isolate` returns `Err(Isolated::Quarantined { .. })` at once without
    /// polling `fut`; after the quarantine (1 s doubling to 5 minutes by
    /// default, see [`Spec::quarantine`](crate::Spec::quarantine)) the key
    /// runs again, and a success clears it.
    ///
    /// Quarantines outlive the attempt (a restart does not clear them) and
    /// are listed in [`TaskStatus::quarantined`](crate::TaskStatus::quarantined).
    /// The output must say whether the key failed: see [`KeyOutcome`](crate::KeyOutcome).
    ///
    /// ```
    /// use std::time::Duration;
    /// use supervised_core::{Context, Isolated, Registry, Spec, Task};
    ///
    /// async fn bill(tenant: u32) -> Result<(), String> {
    ///     if tenant == 13 {
    ///         return Err("tenant 13: bad row".to_owned());
    ///     }
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let registry = Registry::new();
    /// let task = Task::new(Spec::new("billing").registry(&registry), |ctx: Context| async move {
    ///     loop {
    ///         ctx.heartbeat();
    ///         for tenant in [7, 13, 21] {
    ///             match ctx.isolate(format!("tenant-{tenant}"), bill(tenant)).await {
    ///                 Ok(Ok(())) => {}
    ///                 Ok(Err(_)) | Err(_) => {} // logged and quarantined
    ///             }
    ///         }
    ///         tokio::time::sleep(Duration::from_secs(1)).await;
    ///     }
    ///     #[allow(unreachable_code)]
    ///     ()
    /// });
    /// let token = supervised_core::CancellationToken::new();
    /// let handle = task.spawn(token.clone());
    /// tokio::time::sleep(Duration::from_millis(10)).await;
    /// let status = registry.status("billing").unwrap();
    /// assert_eq!(status.restarts, 0);
    /// assert_eq!(status.quarantined[0].key, "tenant-13");
    /// token.cancel();
    /// handle.await.unwrap();
    /// # }
    /// ```
    pub fn isolate<'a, F>(
        &'a self,
        key: impl Into<String> + 'a,
        fut: F,
    ) -> impl Future<Output = Result<F::Output, Isolated>> + 'a
    where
        F: Future + 'a,
        F::Output: KeyOutcome,
    {
        crate::isolate::Isolate::new(&self.entry, self.attempt, key, fut)
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
        let entry = self.entry.clone();
        let attempt = self.attempt;
        let child = async move {
            match CatchPanic::new(fut, attempt).await {
                Ok(v) => v,
                Err(failure) => {
                    let message = format!("child task panicked: {}", failure.message);
                    entry
                        .attempt_cell()
                        .fail(attempt, Failure { message, ..failure });
                    // Surface the panic to the child's own handle as well.
                    std::panic::resume_unwind(Box::new("child task panicked"))
                }
            }
        };
        match self.entry.attempt_cell().scope(attempt) {
            Some(scope) => {
                let handle = tokio::spawn(Scope::track(&scope, child));
                scope.adopt(handle.abort_handle());
                handle
            }
            // The attempt is over: the child never runs.
            None => {
                let handle = tokio::spawn(child);
                handle.abort();
                handle
            }
        }
    }
}

/// What an attempt's `Context`s share with its supervisor, kept in the
/// task's registry entry: the first failure of its children (or the stall
/// watchdog's verdict), the supervisor's waker for it (and for the making
/// of the task's own token, see [`Context::token`]), and the scope of its
/// children, made on the first [`Context::spawn`]. A task that starts no
/// children allocates nothing for them. It also keeps the task's last
/// failure, of any attempt, under the same lock.
#[derive(Default)]
pub(crate) struct AttemptCell {
    inner: Mutex<Cell>,
}

impl fmt::Debug for AttemptCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = lock(&self.inner);
        f.debug_struct("AttemptCell")
            .field("attempt", &cell.attempt)
            .field("failed", &cell.failure.is_some())
            .field("children", &cell.scope.is_some())
            .finish()
    }
}

#[derive(Default)]
struct Cell {
    /// The attempt the cell is open for, 0 between attempts.
    attempt: u32,
    failure: Option<Box<Failure>>,
    /// The supervisor waiting for `failure` (or for the task's own token to
    /// be made): a waker, not a `Notify`, so that its wait is one pointer in
    /// the supervisor's future.
    waiter: Option<Waker>,
    scope: Option<Arc<Scope>>,
    /// The task's last failure, of any attempt: kept across attempts, under
    /// this cell's lock so that it takes no lock of its own in the entry.
    last: Option<Box<Failure>>,
}

impl AttemptCell {
    /// Attempt `attempt` starts: no failure, no children yet.
    pub(crate) fn open(&self, attempt: u32) {
        let mut cell = lock(&self.inner);
        *cell = Cell {
            attempt,
            last: cell.last.take(),
            ..Cell::default()
        };
    }

    /// The attempt is over: it no longer fails and starts no children, and
    /// its children are aborted. Returns their scope, if it made one, for
    /// the caller to wait for; the cell keeps it until
    /// [`AttemptCell::clear`], so that a supervisor dropped while it waits
    /// leaves the wait to its guard.
    pub(crate) fn close(&self) -> Option<Arc<Scope>> {
        let scope = {
            let mut cell = lock(&self.inner);
            let scope = cell.scope.clone();
            *cell = Cell {
                scope: scope.clone(),
                last: cell.last.take(),
                ..Cell::default()
            };
            scope
        };
        if let Some(scope) = &scope {
            scope.close();
        }
        scope
    }

    /// The attempt's children have been dropped: forgets their scope.
    pub(crate) fn clear(&self) {
        lock(&self.inner).scope = None;
    }

    /// Fails attempt `attempt` with `failure`, unless it already failed or
    /// is over: a child's panic, or the stall watchdog's verdict.
    pub(crate) fn fail(&self, attempt: u32, failure: Failure) {
        let waiter = {
            let mut cell = lock(&self.inner);
            if cell.attempt != attempt || attempt == 0 || cell.failure.is_some() {
                return;
            }
            cell.failure = Some(Box::new(failure));
            cell.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// The task's last failure, of any attempt.
    pub(crate) fn last_failure(&self) -> Option<Failure> {
        lock(&self.inner).last.as_deref().cloned()
    }

    /// Records the task's last failure.
    pub(crate) fn set_last_failure(&self, failure: &Failure) {
        lock(&self.inner).last = Some(Box::new(failure.clone()));
    }

    /// Wakes the supervisor waiting on this cell, if one is: the task's own
    /// token was just made.
    pub(crate) fn wake(&self) {
        let waiter = lock(&self.inner).waiter.take();
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// Forgets the supervisor's waker: the task has ended.
    pub(crate) fn forget_waiter(&self) {
        lock(&self.inner).waiter = None;
    }

    /// Registers `waker` as the supervisor's, to be woken by
    /// [`AttemptCell::wake`] (and by a failure of the attempt).
    pub(crate) fn register(&self, waker: &Waker) {
        register(&mut lock(&self.inner), waker);
    }

    /// Resolves with the first failure given to [`AttemptCell::fail`]. One
    /// waiter at a time: the supervisor.
    pub(crate) fn first_failure(&self) -> FirstFailure<'_> {
        FirstFailure(self)
    }

    /// The scope of attempt `attempt`'s children, made on the first call;
    /// `None` once the attempt is over.
    fn scope(&self, attempt: u32) -> Option<Arc<Scope>> {
        let mut cell = lock(&self.inner);
        if cell.attempt != attempt || attempt == 0 {
            return None;
        }
        Some(cell.scope.get_or_insert_with(Arc::default).clone())
    }
}

/// Makes `waker` the cell's waiter.
fn register(cell: &mut Cell, waker: &Waker) {
    match &mut cell.waiter {
        Some(waiter) => waiter.clone_from(waker),
        slot => *slot = Some(waker.clone()),
    }
}

/// The future of [`AttemptCell::first_failure`].
pub(crate) struct FirstFailure<'a>(&'a AttemptCell);

impl Future for FirstFailure<'_> {
    type Output = Failure;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Failure> {
        let mut cell = lock(&self.0.inner);
        match cell.failure.take() {
            Some(failure) => Poll::Ready(*failure),
            None => {
                register(&mut cell, cx.waker());
                Poll::Pending
            }
        }
    }
}

/// The children of one attempt, and how many of them are still alive.
#[derive(Default)]
pub(crate) struct Scope {
    children: Mutex<Children>,
    /// Children made with [`Scope::track`] and not yet dropped.
    live: AtomicUsize,
    closed: AtomicBool,
    /// Notified when the last tracked future is dropped.
    emptied: Notify,
}

pin_project_lite::pin_project! {
    /// A future counted by its scope until it is dropped.
    pub(crate) struct Tracked<F> {
        #[pin]
        inner: F,
        // Declared after `inner`, so dropped after it.
        live: Live,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

/// One live future of a scope.
struct Live(Arc<Scope>);

impl Drop for Live {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.emptied.notify_waiters();
        }
    }
}

#[derive(Default)]
struct Children {
    handles: Vec<AbortHandle>,
    closed: bool,
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

    /// Counts `fut`, a child, until it is dropped.
    pub(crate) fn track<F: Future>(scope: &Arc<Scope>, fut: F) -> Tracked<F> {
        scope.live.fetch_add(1, Ordering::AcqRel);
        Tracked {
            inner: fut,
            live: Live(scope.clone()),
        }
    }

    /// Resolves once every child has been dropped (after [`Scope::close`]).
    pub(crate) async fn dropped(&self) {
        loop {
            let emptied = self.emptied.notified();
            let mut emptied = std::pin::pin!(emptied);
            emptied.as_mut().enable();
            if self.is_dropped() {
                return;
            }
            emptied.await;
        }
    }

    /// `true` once the scope is closed and every child has been dropped.
    pub(crate) fn is_dropped(&self) -> bool {
        self.closed.load(Ordering::Acquire) && self.live.load(Ordering::Acquire) == 0
    }

    /// Aborts every child; children spawned afterwards are aborted at once.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
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
