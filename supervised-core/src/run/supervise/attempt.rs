//! One attempt: started on a tokio task of its own, each poll stamped and
//! inside the attempt's span, and stopped by aborting it and waiting until
//! it and its children are dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use crate::context::Context;
use crate::panic::{catch_call, CatchPanic};
use crate::registry::{Entry, Failure, FailureKind, TaskState};
use crate::run::decide::Ending;
use crate::run::{IntoOutcome, TaskOutput};

use super::guard::Guard;
use super::AttemptHandle;

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
pub(super) fn spawn_attempt<F, Fut>(
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
pub(super) async fn stop_attempt(entry: &Entry, guard: &mut Guard) {
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

pub(super) fn from_join(
    joined: Result<Result<(), Failure>, tokio::task::JoinError>,
    attempt: u32,
) -> Ending {
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
