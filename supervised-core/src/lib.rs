//! The runtime of [`supervised`](https://docs.rs/supervised): restart policy,
//! supervision loop, task context and liveness registry.
//!
//! Applications normally depend on the `supervised` crate, which re-exports
//! everything here together with the `#[supervised]` attribute.
//!
//! * [`run_with_recover`] and [`Spec`] supervise an async fn: a panic or an `Err`
//!   is caught, logged and followed by a restart after an exponential backoff; a
//!   clean return ends it; cancellation stops it at once.
//! * [`Context`] is what every attempt gets: a heartbeat that costs a few
//!   nanoseconds, the cancellation signal and child tasks that die with the
//!   attempt.
//! * [`Registry`] (and the free functions [`heartbeat`], [`is_healthy`],
//!   [`tasks`], ...) tell whether every task is alive and beating.
//!
//! ```
//! use std::time::Duration;
//! use supervised_core::{CancellationToken, Context, Exit, Registry, Spec, TaskState};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let registry = Registry::new();
//! let token = CancellationToken::new();
//! let task = Spec::new("flaky")
//!     .registry(&registry)
//!     .spawn(token.clone(), |ctx: Context| async move {
//!         if ctx.attempt() < 3 {
//!             panic!("attempt {} fails", ctx.attempt());
//!         }
//!         while !ctx.is_cancelled() {
//!             ctx.heartbeat();
//!             tokio::time::sleep(Duration::from_secs(1)).await;
//!         }
//!     });
//!
//! tokio::time::sleep(Duration::from_secs(4)).await; // backoffs of 1 s and 2 s
//! let status = registry.status("flaky").unwrap();
//! assert_eq!((status.state, status.restarts), (TaskState::Running, 2));
//!
//! token.cancel();
//! assert_eq!(task.await.unwrap(), Exit::Cancelled);
//! # }
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]

mod backtrace;
pub mod clock;
mod context;
mod drain;
mod events;
pub mod format;
mod group;
#[cfg(feature = "http")]
pub mod http;
mod isolate;
pub mod lease;
#[cfg(feature = "metrics")]
pub mod metrics;
mod panic;
pub mod policy;
pub mod registry;
mod run;
#[cfg(feature = "systemd")]
pub mod systemd;
mod task;

pub use backtrace::PanicBacktrace;
pub use clock::ManualClock;
pub use context::Context;
pub use drain::drain;
pub use events::{Event, EventKind, RestartCause, EVENT_BUFFER};
pub use group::{AddError, Group, GroupHandle, Strategy, DEFAULT_START_TIMEOUT};
pub use isolate::{
    Isolated, IsolatedCounts, KeyOutcome, Quarantined, DEFAULT_MAX_QUARANTINED,
    DEFAULT_QUARANTINE_INITIAL, DEFAULT_QUARANTINE_MAX,
};
pub use panic::{forward_supervised_panics, install_panic_hook, panic_message, panics_are_caught};
pub use policy::{Backoff, Jitter, OnStale, RestartLimit, RestartPolicy};
pub use registry::{
    check_name, heartbeat, is_healthy, last_tick, snapshot, status, tasks, Failure, FailureCounts,
    FailureKind, LeaseStatus, NameProblem, Registry, TaskState, TaskStatus,
    DEFAULT_RETAIN_FINISHED, MAX_NAME_LEN,
};
#[doc(hidden)]
pub use run::IntoOutcome;
pub use run::{run_with_recover, Exit, GaveUp, Spec, TaskOutput};
#[doc(hidden)]
pub use task::BoxedAttempt;
pub use task::Task;
pub use tokio_util::sync::CancellationToken;
