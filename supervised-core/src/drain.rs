//! Readiness drain: stop taking traffic first, stop the tasks later.
//!
//! A load balancer (a Kubernetes `Service`, for one) goes on sending requests
//! for a moment after a pod is told to stop. The convention is to fail
//! readiness at once, keep serving for a drain period, and only then stop.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A token cancelled `period` after `signal` is (at once for a zero period),
/// for the tasks to stop on, while readiness fails from `signal` on: give
/// `signal` to [`Endpoints::not_ready_after`](crate::http::Endpoints::not_ready_after)
/// (or use [`Endpoints::drain`](crate::http::Endpoints::drain), which does
/// both) and the returned token to the tasks' group.
///
/// Cancelling the returned token yourself stops the tasks without waiting.
/// Spawns a small task: call it inside a tokio runtime.
///
/// ```
/// use std::time::Duration;
/// use supervised_core::{drain, CancellationToken, Group};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = CancellationToken::new(); // cancelled on SIGTERM
/// let tasks = drain(&shutdown, Duration::from_secs(2));
/// let group = Group::with_token(tasks.clone());
///
/// let t0 = tokio::time::Instant::now();
/// shutdown.cancel();
/// assert!(!tasks.is_cancelled()); // readiness fails; the tasks still run
/// tasks.cancelled().await;
/// assert_eq!(t0.elapsed(), Duration::from_secs(2));
/// # drop(group);
/// # }
/// ```
pub fn drain(signal: &CancellationToken, period: Duration) -> CancellationToken {
    let tasks = CancellationToken::new();
    let (signal, stop) = (signal.clone(), tasks.clone());
    tokio::spawn(async move {
        tokio::select! {
            // Stopped by hand: nothing left to do.
            _ = stop.cancelled() => {}
            _ = signal.cancelled() => {
                if !period.is_zero() {
                    tracing::info!(
                        period = %crate::format::Rounded(period),
                        "supervised: draining: readiness fails now, the tasks stop after the drain period"
                    );
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(period) => {}
                    }
                }
                stop.cancel();
            }
        }
    });
    tasks
}
