//! The supervision loop: run an attempt, catch how it ends, wait, run again.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::registry::Failure;

mod control;
mod decide;
mod singleton;
mod spec;
mod stall;
mod supervise;

pub(crate) use control::{Control, Membership};
pub use spec::Spec;

/// What a supervised fn may return: `()`, `Result<(), E>`, [`Infallible`] or
/// `Result<Infallible, E>`, with `E: Display + Send + 'static`.
///
/// `Ok(())` and `()` are clean returns; `Err(e)` is a failure whose message is
/// `e` rendered with `{:#}` (which for `anyhow::Error` includes its causes).
/// `Infallible` says in the type that the task never returns cleanly; a
/// `Result<Infallible, E>` can only end in a failure.
///
/// Any spelling of these types works, aliases included
/// (`type JobResult = std::io::Result<()>`).
///
/// # The never-type trap in hand-written closures
///
/// An `async` block whose body never ends (`async move { loop { .. } }`) has
/// no output type of its own: Rust picks `()` in editions up to 2021 and `!`
/// from edition 2024, and `!` is not a `TaskOutput`. Give the block its type
/// with [`Task::new`](crate::Task::new)'s closure returning a typed value, for
/// example by ending the body with `Ok::<(), E>(())` after the loop, or write
/// the task as a `#[supervised]` fn, whose return type fixes the output in
/// every edition.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a return type of a supervised task",
    label = "a supervised task returns `()`, `Result<(), E>`, `Infallible` or `Result<Infallible, E>`",
    note = "`E` must be `Display + Send + 'static` (e.g. `anyhow::Error`, `std::io::Error`, `String`)",
    note = "the runtime restarts on `Err` and has no use for an `Ok` value: send or store it from the body"
)]
pub trait TaskOutput: Send + 'static {
    /// `Ok` for a clean return, `Err(message)` for a failure.
    fn into_outcome(self) -> Result<(), String>;
}

impl TaskOutput for Infallible {
    fn into_outcome(self) -> Result<(), String> {
        match self {}
    }
}

impl<E: fmt::Display + Send + 'static> TaskOutput for Result<Infallible, E> {
    fn into_outcome(self) -> Result<(), String> {
        match self {
            Ok(never) => match never {},
            Err(e) => Err(format!("{e:#}")),
        }
    }
}

impl TaskOutput for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display + Send + 'static> TaskOutput for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:#}"))
    }
}

pin_project_lite::pin_project! {
    /// `fut` with its output turned into an attempt's outcome. A plain
    /// adapter, not an `async` block: a block awaiting a future it captured
    /// keeps that future twice, and the user's future is the largest part
    /// of an attempt. Also used by the code `#[supervised]` generates; not
    /// public API.
    #[doc(hidden)]
    pub struct IntoOutcome<F> {
        #[pin]
        fut: F,
    }
}

impl<F> IntoOutcome<F> {
    /// `fut`, its output to be converted.
    pub fn new(fut: F) -> Self {
        IntoOutcome { fut }
    }
}

impl<F> Future for IntoOutcome<F>
where
    F: Future,
    F::Output: TaskOutput,
{
    type Output = Result<(), String>;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.project().fut.poll(cx).map(TaskOutput::into_outcome)
    }
}

/// How a supervised task ended.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Exit {
    /// The task returned cleanly and its policy does not restart it.
    Completed,
    /// The task was cancelled through its token, and its last attempt and
    /// that attempt's children have been dropped.
    Cancelled,
    /// [`Group::shutdown`](crate::Group::shutdown) stopped waiting for the task:
    /// its attempt was not dropped within the group's grace (it is typically
    /// blocked in a synchronous call). The attempt has been aborted and the
    /// registry shows the task as [`Stopping`](crate::TaskState::Stopping) until
    /// it is dropped, then as [`Cancelled`](crate::TaskState::Cancelled).
    Abandoned,
    /// The task gave up.
    #[non_exhaustive]
    Failed {
        /// Why it gave up.
        reason: GaveUp,
        /// The failure that ended it.
        failure: Failure,
    },
}

impl Exit {
    /// `true` for [`Exit::Completed`].
    pub fn is_completed(&self) -> bool {
        matches!(self, Exit::Completed)
    }

    /// `true` for [`Exit::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Exit::Cancelled)
    }

    /// `true` for [`Exit::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, Exit::Failed { .. })
    }

    /// `true` for [`Exit::Abandoned`].
    pub fn is_abandoned(&self) -> bool {
        matches!(self, Exit::Abandoned)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Completed => f.write_str("completed"),
            Exit::Cancelled => f.write_str("cancelled"),
            Exit::Abandoned => f.write_str("abandoned: not dropped within the shutdown grace"),
            Exit::Failed { reason, failure } => write!(f, "failed ({reason}): {failure}"),
        }
    }
}

/// Why a task stopped restarting.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// Its policy is [`RestartPolicy::Never`](crate::RestartPolicy::Never).
    NoRestart,
    /// It would have needed more than `max_restarts` restarts within `within`.
    RestartLimit {
        /// The limit that was hit.
        max_restarts: u32,
        /// Its window.
        within: Duration,
    },
    /// It never ran: a live task holds its name.
    NameTaken,
    /// It never ran: its name is not one the registry accepts (see
    /// [`check_name`](crate::check_name)).
    InvalidName,
    /// It never ran: it is a singleton
    /// ([`Spec::singleton_from_group`], `#[supervised(singleton = true)]`)
    /// and was started without a lease.
    NoLease,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GaveUp::NoRestart => f.write_str("restart policy is `never`"),
            GaveUp::RestartLimit {
                max_restarts,
                within,
            } => write!(f, "more than {max_restarts} restarts within {within:?}"),
            GaveUp::NameTaken => f.write_str("name held by a live task"),
            GaveUp::InvalidName => f.write_str("invalid task name"),
            GaveUp::NoLease => f.write_str("singleton task without a lease"),
        }
    }
}

/// Supervises `f` under `name` with the default policy ([`Spec::new`]): the Go
/// `RunWithRecover`.
///
/// A panic or an `Err` is logged and `f` runs again after 1 s, 2 s, 4 s ... up to
/// 30 s; a clean return ends the task with [`Exit::Completed`]; cancelling
/// `token` ends it with [`Exit::Cancelled`], at once during a backoff (after
/// the attempt's grace while it runs).
///
/// ```no_run
/// use supervised_core::{run_with_recover, CancellationToken, Context};
///
/// # async fn demo() {
/// let token = CancellationToken::new();
/// let handle = tokio::spawn(run_with_recover(token.clone(), "sweep", |ctx: Context| async move {
///     while !ctx.is_cancelled() {
///         ctx.heartbeat();
///         tokio::time::sleep(std::time::Duration::from_secs(5)).await;
///     }
/// }));
/// token.cancel();
/// assert!(handle.await.unwrap().is_cancelled());
/// # }
/// ```
pub fn run_with_recover<F, Fut>(
    token: CancellationToken,
    name: impl Into<String>,
    f: F,
) -> impl Future<Output = Exit> + Send + 'static
where
    F: FnMut(Context) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    Spec::new(name).run(token, f)
}
