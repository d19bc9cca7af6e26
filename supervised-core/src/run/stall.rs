//! The stall watchdog: marks a silent task stale for its whole life, and with
//! `on_stale = restart` tells the supervisor to stop a silent attempt.

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Spec;
use crate::format::Rounded;
use crate::policy::OnStale;
use crate::registry::{lock, Entry, Failure, FailureKind};

/// The running attempt, as the supervisor tells its watchdog: its number
/// and when it started (on tokio's clock).
#[derive(Default)]
pub(super) struct Stall {
    running: Mutex<Option<(u32, Instant)>>,
}

impl Stall {
    /// Attempt `attempt` starts now.
    pub(super) fn begin(&self, attempt: u32) {
        *lock(&self.running) = Some((attempt, Instant::now()));
    }

    /// The attempt is over.
    pub(super) fn end(&self) {
        *lock(&self.running) = None;
    }

    /// The running attempt's number and start, if any.
    fn running(&self) -> Option<(u32, Instant)> {
        *lock(&self.running)
    }

    /// Fails attempt `attempt` of `entry`'s task if it is still the running
    /// one.
    fn fire(&self, entry: &Entry, attempt: u32, failure: Failure) {
        let running = lock(&self.running).take_if(|(a, _)| *a == attempt);
        if running.is_some() {
            entry.attempt_cell().fail(attempt, failure);
        }
    }
}

/// Watches the task from its start until the supervisor returns (it never
/// resolves). Samples the entry's beat counter on tokio's timer every
/// `stale_after / 10`:
///
/// * the task is marked stale once it has gone longer than `stale_after`
///   without a beat, counted from its start when it never beat, in every
///   state (running, backing off, stopping), and fresh again at its next beat;
/// * with [`OnStale::Restart`], an attempt that has gone longer than
///   `stale_after` without a beat, counted from the attempt's start, is
///   reported to the supervisor, which stops it;
/// * the attempt's poll in progress is looked at for blocking.
pub(super) async fn watchdog(
    spec: &Spec,
    stale_after: Duration,
    entry: &Entry,
    stall: &Stall,
) -> Infallible {
    let period = (stale_after / 10).max(Duration::from_millis(1));
    let mut last_beats = entry.beats();
    let mut last_change = Instant::now();
    let mut stale = false;
    let mut ticks = tokio::time::interval_at(last_change + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = ticks.tick().await;
        entry.check_blocked();
        let beats = entry.beats();
        // A standby is not expected to beat: its silence counts from when it
        // takes its lease.
        let standby = entry.state() == Some(crate::registry::TaskState::Standby);
        if beats != last_beats || standby {
            last_beats = beats;
            last_change = now;
            if stale {
                stale = false;
                entry.set_stale(false);
                if !standby {
                    tracing::info!(task = %spec.name, "supervised task is beating again");
                }
            }
        }
        let quiet = now.duration_since(last_change);
        if quiet > stale_after && !stale {
            stale = true;
            entry.set_stale(true);
            tracing::warn!(
                task = %spec.name,
                state = %entry.state().map_or("unknown", |s| s.as_str()),
                quiet = %Rounded(quiet),
                stale_after = %Rounded(stale_after),
                "supervised task is stale: no heartbeat for {}",
                Rounded(quiet),
            );
        }
        if spec.policy.on_stale == OnStale::Restart {
            if let Some((attempt, started)) = stall.running() {
                let silent = now.duration_since(last_change.max(started));
                if silent > stale_after {
                    let message = format!(
                        "no heartbeat for {} (stale_after {})",
                        Rounded(silent),
                        Rounded(stale_after)
                    );
                    stall.fire(
                        entry,
                        attempt,
                        Failure::new(FailureKind::Stalled, message, attempt),
                    );
                }
            }
        }
    }
}
