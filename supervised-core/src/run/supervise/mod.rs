//! The supervisor: runs one attempt at a time, waits for each to be dropped,
//! and applies the policy between them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::control::{Control, Request};
use super::decide::{decide, finish, record, Ending, Streak};
use super::singleton;
use super::stall::{watchdog, Stall};
use super::{Exit, GaveUp, Spec, TaskOutput};
use crate::context::Context;
use crate::events::{EventKind, RestartCause};
use crate::format::Rounded;
use crate::panic::ensure_panic_hook;
use crate::registry::{Entry, Failure, FailureKind, Registry, TaskState};

mod attempt;
mod guard;
mod wait;

use attempt::{spawn_attempt, stop_attempt};
use guard::{Grant, Guard};
use wait::{after_cancel, ended, first_of, own_token_on_demand, task_cancelled, watch_held};

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
