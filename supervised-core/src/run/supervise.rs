//! The supervisor: runs one attempt at a time, waits for each to be dropped,
//! and applies the policy between them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::control::{Control, Request};
use super::decide::{decide, finish, record, Ending, Streak};
use super::singleton;
use super::stall::{watchdog, Stall};
use super::{Exit, GaveUp, IntoOutcome, Spec, TaskOutput};
use crate::context::Context;
use crate::events::{EventKind, RestartCause};
use crate::format::Rounded;
use crate::panic::{catch_call, ensure_panic_hook, CatchPanic};
use crate::registry::{Entry, Failure, FailureKind, Registry, TaskState};

/// Registers the task under its name, or explains why it cannot run.
pub(super) fn register(spec: &Spec) -> Result<(Registry, Arc<Entry>), Exit> {
    ensure_panic_hook();
    if let Err(problem) = crate::registry::check_name(&spec.name) {
        // Not published: no view may show an invalid name.
        return Err(refuse(spec, None, GaveUp::InvalidName, problem.to_string()));
    }
    let registry = spec
        .registry
        .clone()
        .unwrap_or_else(|| Registry::global().clone());
    if spec.policy.lease_from_group && spec.policy.lease.is_none() {
        let message = format!(
            "`{}` is a singleton and has no lease: spawn it in a group with one \
             (`spawn_all!(lease = ...; ...)`, `Group::with_lease`) or give it one \
             (`Spec::singleton`, `Task::with_lease`)",
            spec.name
        );
        return Err(refuse(spec, Some(&registry), GaveUp::NoLease, message));
    }
    match registry.register(&spec.name, spec.settings(), spec.is_singleton()) {
        Ok(entry) => Ok((registry, entry)),
        Err(_) => {
            let message = format!("a live task is already named `{}`", spec.name);
            Err(refuse(spec, Some(&registry), GaveUp::NameTaken, message))
        }
    }
}

/// The exit of a task that cannot run: logged, escalated, and published
/// on `registry`'s event stream when given.
fn refuse(spec: &Spec, registry: Option<&Registry>, reason: GaveUp, message: String) -> Exit {
    let kind = match reason {
        GaveUp::InvalidName => FailureKind::InvalidName,
        GaveUp::NoLease => FailureKind::NoLease,
        _ => FailureKind::NameTaken,
    };
    let failure = Failure::new(kind, message, 0);
    // Debug formatting: the name may hold a newline.
    tracing::error!(task = ?spec.name, "supervised task not started: {}", failure.message);
    if let Some(parent) = &spec.policy.escalate {
        parent.cancel();
    }
    let exit = Exit::Failed { reason, failure };
    if let Some(registry) = registry {
        registry.publish(&spec.name, 0, || EventKind::Stopped(exit.clone()));
    }
    exit
}

type AttemptHandle = JoinHandle<Result<(), Failure>>;

/// A grant of a singleton's lease, and the lease it came from.
struct Grant {
    lease: Arc<dyn crate::lease::Lease>,
    held: singleton::Held,
}

/// Aborts the attempt if the supervisor is dropped; the task is recorded as
/// cancelled once the attempt and its children are dropped.
struct Guard {
    registry: Registry,
    entry: Arc<Entry>,
    attempt: Option<AttemptHandle>,
    /// Between the start of an attempt and the end of its drop.
    in_attempt: bool,
    /// A singleton's grant while it holds one, the one record of it: kept
    /// and released by the restart loop, and released by the guard when
    /// the supervisor is dropped, once the attempt is.
    /// Boxed: one word for the tasks that are not singletons.
    grant: Option<Box<Grant>>,
    /// Disarmed once the supervisor has recorded the task's end itself.
    armed: bool,
}

impl Guard {
    fn new(registry: Registry, entry: Arc<Entry>) -> Self {
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

/// Supervises a task until it completes, is cancelled or gives up. With
/// `registered`, the task was registered by the caller; without, it
/// registers when first polled.
pub(super) fn supervise<F, Fut>(
    spec: Spec,
    token: CancellationToken,
    registered: Option<(Registry, Arc<Entry>)>,
    f: F,
) -> impl Future<Output = Exit> + Send + 'static
where
    F: FnMut(Context) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    ExitOnly {
        inner: supervise_parts(spec, token, registered, None, f),
    }
}

pin_project_lite::pin_project! {
    /// The exit of [`supervise_parts`], without the parts. A plain adapter,
    /// not an `async` block: a block awaiting the future it captured would
    /// keep it twice, and this future's size is memory every task pays for.
    struct ExitOnly<F> {
        #[pin]
        inner: F,
    }
}

impl<F, G> Future for ExitOnly<F>
where
    F: Future<Output = (Exit, Spec, G)>,
{
    type Output = Exit;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Exit> {
        self.project().inner.poll(cx).map(|(exit, _, _)| exit)
    }
}

/// [`supervise`] for a member of a group: restarts on `control`'s requests
/// and reports failures to the group, and gives back the policy and the
/// factory at the end, so that the group can run the task again.
pub(super) fn supervise_parts<F, Fut>(
    spec: Spec,
    token: CancellationToken,
    registered: Option<(Registry, Arc<Entry>)>,
    control: Option<Arc<Control>>,
    mut f: F,
) -> impl Future<Output = (Exit, Spec, F)> + Send + 'static
where
    F: FnMut(Context) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    // Made now, so that a registered task whose supervisor is dropped before
    // its first poll is still recorded as cancelled.
    let mut guard = registered.map(|(registry, entry)| Guard::new(registry, entry));
    // A plain fn returning a block, not an `async fn`: the block uses what it
    // captures in place, where an `async fn` would also keep a copy of each
    // argument. This future's size is memory every supervised task pays for.
    async move {
        if guard.is_none() {
            match register(&spec) {
                Ok((registry, entry)) => guard = Some(Guard::new(registry, entry)),
                Err(exit) => return (exit, spec, f),
            }
        }
        // Used in place: a guard moved into a local of its own would be kept
        // twice in this future.
        let guard = guard.as_mut().expect("registered above");
        let entry = guard.entry.clone();
        // The task's own token: cancelling it stops this task, not its
        // siblings. A group member's token is its own already: the group
        // makes one for each member, and cancels it to stop that member. A
        // singleton's attempts take children of one made now. Any other
        // task makes its own when its `Context` is first asked for it (see
        // `Entry::own_token_or_make`), and until then is stopped by the
        // token it was started on alone.
        let token = if control.is_none() && spec.policy.lease.is_some() {
            token.child_token()
        } else {
            token.clone()
        };
        // On the heap, and only for tasks that have a watchdog.
        let stall = spec
            .policy
            .health
            .stale_after
            .map(|_| Box::<Stall>::default());
        let control = control.as_deref();
        let watchdog = match (spec.policy.health.stale_after, stall.as_deref()) {
            (Some(stale_after), Some(stall)) => {
                Some(Box::pin(watchdog(&spec, stale_after, &entry, stall)))
            }
            _ => None,
        };
        let exit = Watched {
            run: run(&spec, &token, guard, stall.as_deref(), control, &mut f),
            watchdog,
        }
        .await;
        guard.armed = false;
        guard.registry.publish(entry.name(), entry.attempt(), || {
            EventKind::Stopped(exit.clone())
        });
        (exit, spec, f)
    }
}

pin_project_lite::pin_project! {
    /// The restart loop, with the stall watchdog beside it when the task has
    /// one. A plain adapter, not `tokio::select!`, whose state would make
    /// every supervisor's future larger.
    struct Watched<R, W> {
        #[pin]
        run: R,
        watchdog: Option<Pin<Box<W>>>,
    }
}

impl<R, W> Future for Watched<R, W>
where
    R: Future,
    W: Future<Output = std::convert::Infallible>,
{
    type Output = R::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<R::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.run.poll(cx) {
            return Poll::Ready(output);
        }
        if let Some(watchdog) = this.watchdog {
            // It never resolves.
            if let Poll::Ready(never) = watchdog.as_mut().poll(cx) {
                match never {}
            }
        }
        Poll::Pending
    }
}

/// The restart loop. A plain fn returning a block, not an `async fn`: the
/// block keeps its arguments once, where an `async fn` also keeps a copy of
/// each, and this future is memory every supervised task pays for.
// The size is the point: see above.
#[allow(clippy::manual_async_fn)]
fn run<'a, F, Fut>(
    spec: &'a Spec,
    token: &'a CancellationToken,
    guard: &'a mut Guard,
    stall: Option<&'a Stall>,
    control: Option<&'a Control>,
    f: &'a mut F,
) -> impl Future<Output = Exit> + Send + 'a
where
    F: FnMut(Context) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    async move {
        // Owned, so that the guard can be borrowed mutably meanwhile.
        let entry = guard.entry.clone();
        let registry = guard.registry.clone();
        let mut attempt: u32 = 0;
        let mut streak = Streak::new();
        // The next start follows a restart on request: not one the restart
        // limit counts.
        let mut requested = false;
        loop {
            if entry.task_token(token).is_cancelled() {
                return finish(&entry, Exit::Cancelled);
            }
            // A singleton first waits for its lease, as a standby.
            if let Some(lease) = &spec.policy.lease {
                match Box::pin(singleton::acquire(spec, &*lease.0, &entry, token)).await {
                    Some(held) => {
                        guard.grant = Some(Box::new(Grant {
                            lease: lease.0.clone(),
                            held,
                        }))
                    }
                    None => return finish(&entry, Exit::Cancelled),
                }
            }
            attempt = attempt.saturating_add(1);
            streak.started(spec, attempt, requested);
            entry.start_attempt(attempt);
            registry.publish(entry.name(), attempt, || EventKind::Started);
            tracing::debug!(task = %spec.name, attempt, "supervised attempt started");
            let started = Instant::now();

            if let Some(stall) = stall {
                stall.begin(attempt);
            }
            guard.in_attempt = true;
            let attempt_token = match control {
                Some(control) => control.begin_attempt(token),
                // A singleton's attempt stops alone when its lease is lost.
                None if guard.grant.is_some() => token.child_token(),
                None => token.clone(),
            };
            let ctx = if own_token_on_demand(spec, control) {
                Context::started_on(entry.clone(), attempt_token.clone(), attempt)
            } else {
                let fencing = guard.grant.as_ref().map(|grant| grant.held.fencing_token);
                Context::new(entry.clone(), attempt_token.clone(), attempt, fencing)
            };
            let ending = 'attempt: {
                // Matched before any wait, and moved out in both arms: the
                // spawn's result is not kept in this future meanwhile.
                let handle = match spawn_attempt(f, ctx, &entry, attempt) {
                    Ok(handle) => handle,
                    Err(failure) => break 'attempt Ending::Failed(failure),
                };
                guard.attempt = Some(handle);
                // The attempt's handle and the grant, borrowed apart.
                let Guard {
                    attempt: running,
                    grant,
                    ..
                } = &mut *guard;
                match grant.as_deref_mut() {
                    Some(grant) => {
                        let watch =
                            watch_held(spec, &entry, &attempt_token, running, attempt, grant);
                        Box::pin(watch).await
                    }
                    // `watch_attempt`, written out: its arguments are
                    // then not kept a second time in this future.
                    None => {
                        let own = own_token_on_demand(spec, control);
                        let woke = first_of(&entry, &attempt_token, running, attempt, own).await;
                        match ended(woke, running) {
                            Some(ending) => ending,
                            None => {
                                let grace = spec.policy.grace;
                                Box::pin(after_cancel(spec, running, attempt, grace)).await
                            }
                        }
                    }
                }
            };
            if let Some(stall) = stall {
                stall.end();
            }
            record(&entry, &ending);
            if let Ending::Failed(failure) | Ending::Cancelled(Some(failure)) = &ending {
                registry.publish(entry.name(), attempt, || {
                    EventKind::Failed(Failure::clone(failure))
                });
            }
            stop_attempt(&entry, guard).await;
            // The attempt is dropped: the grant can go. Also after a loss: a
            // grant that was only slow to renew is then free at once (a lost
            // one is released as a no-op).
            let grant = guard.grant.take();
            let lost = grant.as_ref().is_some_and(|grant| grant.held.lost);
            if let Some(grant) = grant {
                let timing = singleton::Timing::of(&*grant.lease, spec.policy.grace);
                Box::pin(singleton::release(
                    &*grant.lease,
                    &entry,
                    &grant.held,
                    timing,
                ))
                .await;
            }

            let request = control.and_then(|control| {
                control.end_attempt();
                control.take_request()
            });
            if lost && !entry.task_token(token).is_cancelled() {
                // Not the task's failure: back to standby. The next start is
                // not one the restart limit counts.
                requested = true;
                continue;
            }
            // A request restarts an attempt it stopped; an attempt that failed
            // or returned on its own is decided by its policy as usual, and a
            // request that came meanwhile can only put its restart later.
            let stopped_by_request = matches!(ending, Ending::Cancelled(_));
            let deadline = match request {
                Some(request) if stopped_by_request && !entry.task_token(token).is_cancelled() => {
                    requested = true;
                    restarting(spec, &registry, &entry, attempt, request)
                }
                request => {
                    requested = false;
                    // The attempt cancelled its own token: the task stops.
                    // (A task that is neither a group member nor a singleton
                    // has the token it was started on here, already
                    // cancelled: cancelling it again changes nothing. Its
                    // own token is seen through `Entry::task_token`.)
                    if attempt_token.is_cancelled() && request.is_none() {
                        token.cancel();
                    }
                    // For the group's strategy: the failure just recorded.
                    let failed = matches!(ending, Ending::Failed(_) | Ending::Cancelled(Some(_)));
                    let last = (failed && control.is_some())
                        .then(|| entry.last_failure())
                        .flatten();
                    let delay = match decide(
                        spec,
                        entry.task_token(token).is_cancelled(),
                        &entry,
                        ending,
                        started,
                        attempt,
                        &mut streak,
                    ) {
                        Ok(delay) => delay,
                        Err(exit) => return exit,
                    };
                    registry.publish(entry.name(), attempt, || EventKind::BackingOff { delay });
                    let resume_at = crate::clock::deadline_after(delay);
                    if let (Some(control), Some(failure)) = (control, &last) {
                        control.failed(resume_at, failure);
                    }
                    match request {
                        Some(request) if request.at > resume_at => request.at,
                        _ => resume_at,
                    }
                }
            };
            entry.set_state(TaskState::BackingOff);
            // A zero delay restarts at once: a timer would round it up to the
            // timer wheel's 1 ms granularity. The wait is boxed: its timer and
            // wake-up live on the heap during a backoff only, not in every
            // task's supervisor for its whole life.
            if deadline > Instant::now() {
                let wait = back_off(spec, &registry, &entry, token, control, attempt, deadline);
                match Box::pin(wait).await {
                    Waited::Cancelled => return finish(&entry, Exit::Cancelled),
                    Waited::Elapsed { requested: true } => requested = true,
                    Waited::Elapsed { requested: false } => {}
                }
            }
            if entry.task_token(token).is_cancelled() {
                return finish(&entry, Exit::Cancelled);
            }
        }
    }
}

/// How a backoff ended.
enum Waited {
    /// The delay is over; `requested` when a restart on request set it.
    Elapsed {
        requested: bool,
    },
    Cancelled,
}

/// Waits until `deadline`, or the deadline of a restart requested meanwhile.
async fn back_off(
    spec: &Spec,
    registry: &Registry,
    entry: &Entry,
    token: &CancellationToken,
    control: Option<&Control>,
    attempt: u32,
    mut deadline: Instant,
) -> Waited {
    let mut requested = false;
    let own_on_demand = own_token_on_demand(spec, control);
    while deadline > Instant::now() {
        let woken = async {
            match control {
                Some(control) => control.woken().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = task_cancelled(entry, token, own_on_demand) => return Waited::Cancelled,
            _ = tokio::time::sleep_until(deadline) => break,
            _ = woken => {
                if let Some(request) = control.and_then(Control::take_request) {
                    requested = true;
                    // A restart asked for by hand starts at once; one for a
                    // sibling's failure does not cut this task's own
                    // backoff short.
                    let sibling = matches!(request.cause, RestartCause::Sibling(_));
                    let at = restarting(spec, registry, entry, attempt, request);
                    deadline = if sibling { deadline.max(at) } else { at };
                }
            }
        }
    }
    Waited::Elapsed { requested }
}

/// Logs and publishes a restart on request; returns when the next attempt
/// starts.
fn restarting(
    spec: &Spec,
    registry: &Registry,
    entry: &Entry,
    attempt: u32,
    request: Request,
) -> Instant {
    let delay = request.at.saturating_duration_since(Instant::now());
    tracing::info!(
        task = %spec.name,
        attempt,
        cause = %request.cause,
        next_delay = %Rounded(delay),
        "supervised task restarting"
    );
    registry.publish(entry.name(), attempt, || EventKind::Restarting {
        delay,
        cause: request.cause,
    });
    request.at
}

/// Makes attempt `attempt` with `f` and starts it on its own tokio task. The
/// factory is supervised code too: a panic in it fails the attempt.
///
/// The factory runs, and the attempt is polled, inside the attempt's span
/// (`supervised`, with the fields `task` and `attempt`), so every event the
/// task logs carries them. Under `--cfg tokio_unstable` the attempt's tokio
/// task is named `<task>#<attempt>`, as tokio-console shows it.
///
/// A plain fn: the user's future passes through here on its way to its task,
/// and is never kept in the supervisor's future.
fn spawn_attempt<F, Fut>(
    f: &mut F,
    ctx: Context,
    entry: &Arc<Entry>,
    attempt: u32,
) -> Result<AttemptHandle, Box<Failure>>
where
    F: FnMut(Context) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    let name = entry.name();
    let span = tracing::info_span!("supervised", task = name, attempt);
    let fut = span
        .in_scope(|| catch_call(attempt, || f(ctx)))
        .map_err(Box::new)?;
    let attempt_fut = Timed {
        entry: entry.clone(),
        span,
        inner: CatchPanic::new(IntoOutcome::new(fut), attempt),
        attempt,
    };
    #[cfg(tokio_unstable)]
    {
        let task_name = format!("{name}#{attempt}");
        tokio::task::Builder::new()
            .name(&task_name)
            .spawn(attempt_fut)
            .map_err(|e| {
                Box::new(Failure::new(
                    FailureKind::Panic,
                    format!("could not start the attempt's task: {e}"),
                    attempt,
                ))
            })
    }
    #[cfg(not(tokio_unstable))]
    Ok(tokio::spawn(attempt_fut))
}

/// Aborts the attempt (a no-op when it has ended) and its children, and waits
/// until all of them are dropped, as [`TaskState::Stopping`] meanwhile.
async fn stop_attempt(entry: &Entry, guard: &mut Guard) {
    if let Some(handle) = &guard.attempt {
        handle.abort();
    }
    let scope = entry.end_attempt();
    let running = guard
        .attempt
        .as_ref()
        .is_some_and(|handle| !handle.is_finished());
    if running || scope.as_ref().is_some_and(|scope| !scope.is_dropped()) {
        entry.set_state(TaskState::Stopping);
    }
    // Left in the guard meanwhile: a supervisor dropped while it waits leaves
    // the wait to its guard. A handle resolves once its task's future has
    // been dropped.
    if let Some(handle) = guard.attempt.as_mut() {
        let _ = handle.await;
        guard.attempt = None;
    }
    if let Some(scope) = scope {
        // Boxed: only attempts that started children wait here.
        Box::pin(async move { scope.dropped().await }).await;
    }
    entry.attempt_cell().clear();
    guard.in_attempt = false;
}

/// [`watch_attempt`] for a singleton: also keeps its lease, and when the
/// lease can no longer be proven, cancels the attempt (with the grace of a
/// singleton) and marks the grant lost.
async fn watch_held(
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
/// for it ([`Context::started_on`]): not a group member, whose token the
/// group makes, and not a singleton, whose attempts' tokens are made with
/// their grants.
fn own_token_on_demand(spec: &Spec, control: Option<&Control>) -> bool {
    control.is_none() && spec.policy.lease.is_none()
}

/// The first of the running attempt's end, its first failure and
/// cancellation. With `own_on_demand`, the task may make its own token
/// meanwhile (see [`task_cancelled`]).
fn first_of<'a>(
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
fn task_cancelled<'a>(
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
    struct TaskCancelled<'a> {
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
fn ended(woke: Woke, running: &mut Option<AttemptHandle>) -> Option<Ending> {
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
async fn after_cancel(
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
enum Woke {
    Joined(Ending),
    Failed(Box<Failure>),
    Cancelled,
}

pin_project_lite::pin_project! {
    /// The first of the attempt's end, its first failure and cancellation,
    /// in that order when several are ready. A plain future, not
    /// `tokio::select!`, whose state would make every supervisor's future
    /// larger.
    struct FirstOf<'a> {
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

fn from_join(joined: Result<Result<(), Failure>, tokio::task::JoinError>, attempt: u32) -> Ending {
    match joined {
        Ok(Ok(())) => Ending::Clean,
        Ok(Err(failure)) => Ending::Failed(Box::new(failure)),
        // The attempt task was aborted or its runtime is shutting down.
        Err(e) if e.is_cancelled() => Ending::Cancelled(None),
        Err(e) => Ending::Failed(Box::new(Failure::new(
            FailureKind::Panic,
            format!("attempt task failed: {e}"),
            attempt,
        ))),
    }
}

pin_project_lite::pin_project! {
    /// The attempt's future, with each poll's start stamped in its entry so
    /// that a status read can tell a poll that blocks its thread, each poll
    /// inside the attempt's span, and an `Err` outcome turned into the
    /// attempt's failure.
    struct Timed<F> {
        entry: Arc<Entry>,
        // The attempt's span, entered for each poll.
        span: tracing::Span,
        #[pin]
        inner: F,
        // For the failure of an `Err` outcome.
        attempt: u32,
    }
}

impl<F> Future for Timed<F>
where
    F: Future<Output = Result<Result<(), String>, Failure>>,
{
    type Output = Result<(), Failure>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let started = this.entry.poll_begin();
        let polled = this.inner.poll(cx);
        this.entry.poll_end(started);
        let attempt = *this.attempt;
        polled.map(|result| {
            result.and_then(|outcome| {
                outcome.map_err(|message| Failure::new(FailureKind::Error, message, attempt))
            })
        })
    }
}
