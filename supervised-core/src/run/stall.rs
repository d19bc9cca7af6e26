//! The stall watchdog: marks a silent task stale for its whole life, and with
//! `on_stale = restart` tells the supervisor to stop a silent attempt.

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Spec;
use crate::format::Secs;
use crate::policy::OnStale;
use crate::registry::{lock, Entry, Failure, FailureKind};

/// What the supervisor and its watchdog share about the running attempt.
#[derive(Default)]
pub(super) struct Stall {
    state: Mutex<StallState>,
    fired: Notify,
}

#[derive(Default)]
struct StallState {
    /// The running attempt and when it started, on tokio's clock.
    running: Option<(u32, Instant)>,
    /// The watchdog's verdict on it.
    stalled: Option<Failure>,
}

impl Stall {
    /// Attempt `attempt` starts now.
    pub(super) fn begin(&self, attempt: u32) {
        let mut state = lock(&self.state);
        state.running = Some((attempt, Instant::now()));
        state.stalled = None;
    }

    /// The attempt is over; a verdict on it no longer matters.
    pub(super) fn end(&self) {
        let mut state = lock(&self.state);
        state.running = None;
        state.stalled = None;
    }

    /// Resolves when the watchdog finds the running attempt stalled.
    pub(super) async fn stalled(&self) -> Failure {
        loop {
            let fired = self.fired.notified();
            if let Some(failure) = lock(&self.state).stalled.take() {
                return failure;
            }
            fired.await;
        }
    }

    /// The running attempt, if any.
    fn running(&self) -> Option<(u32, Instant)> {
        lock(&self.state).running
    }

    fn fire(&self, attempt: u32, failure: Failure) {
        let mut state = lock(&self.state);
        if state.running.is_some_and(|(a, _)| a == attempt) {
            state.running = None;
            state.stalled = Some(failure);
            drop(state);
            self.fired.notify_one();
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
        if beats != last_beats {
            last_beats = beats;
            last_change = now;
            if stale {
                stale = false;
                entry.set_stale(false);
                tracing::info!(task = %spec.name, "supervised task is beating again");
            }
        }
        let quiet = now.duration_since(last_change);
        if quiet > stale_after && !stale {
            stale = true;
            entry.set_stale(true);
            tracing::warn!(
                task = %spec.name,
                state = %entry.state().map_or("unknown", |s| s.as_str()),
                quiet = %Secs(quiet),
                stale_after = %Secs(stale_after),
                "supervised task is stale: no heartbeat for {}",
                Secs(quiet),
            );
        }
        if spec.on_stale == OnStale::Restart {
            if let Some((attempt, started)) = stall.running() {
                let silent = now.duration_since(last_change.max(started));
                if silent > stale_after {
                    let message = format!(
                        "no heartbeat for {} (stale_after {})",
                        Secs(silent),
                        Secs(stale_after)
                    );
                    stall.fire(
                        attempt,
                        Failure::new(FailureKind::Stalled, message, attempt),
                    );
                }
            }
        }
    }
}
