//! After an attempt: record how it ended and decide between a restart after a
//! delay and the end of the task.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::{Exit, GaveUp, Spec};
use crate::format::Rounded;
use crate::policy::{Jitter, RestartPolicy, Rng};
use crate::registry::{Entry, Failure, FailureKind, TaskState};

/// How one attempt ended. Failures are boxed: this is kept in the
/// supervisor's future while the attempt is being dropped.
pub(super) enum Ending {
    Clean,
    Failed(Box<Failure>),
    /// Cancelled; with the failure the attempt ended with during its grace,
    /// if it failed then.
    Cancelled(Option<Box<Failure>>),
}

/// What the restart decisions remember between attempts. Made on the
/// first decision: a task that never ends keeps one pointer for it, not the
/// counts, in the future every supervised task pays for.
pub(super) struct Streak(Option<Box<Counts>>);

struct Counts {
    /// Restarts since the delay was last reset.
    length: u32,
    rng: Option<Rng>,
    /// When the restarts (attempt starts after the first) inside the limit's
    /// window happened; kept only with a restart limit.
    restarts: Option<VecDeque<Instant>>,
}

impl Streak {
    pub(super) fn new() -> Self {
        Streak(None)
    }

    fn counts(&mut self, spec: &Spec) -> &mut Counts {
        self.0.get_or_insert_with(|| {
            Box::new(Counts {
                length: 0,
                rng: (spec.policy.backoff.jitter != Jitter::None).then(Rng::from_entropy),
                restarts: spec.policy.limit.map(|_| VecDeque::new()),
            })
        })
    }

    /// Attempt `attempt` starts now; `requested` when it follows a restart
    /// on request, which the restart limit does not count.
    pub(super) fn started(&mut self, spec: &Spec, attempt: u32, requested: bool) {
        if attempt > 1 && !requested && spec.policy.limit.is_some() {
            if let Some(restarts) = self.counts(spec).restarts.as_mut() {
                restarts.push_back(Instant::now());
            }
        }
    }
}

/// Records how the attempt ended as soon as that is known, before the
/// supervisor waits for it to be dropped: every failure is counted and kept,
/// also one that races cancellation.
pub(super) fn record(entry: &Entry, ending: &Ending) {
    if let Ending::Failed(failure) | Ending::Cancelled(Some(failure)) = ending {
        entry.record_failure(failure);
    }
}

/// Decides between a restart after a delay (`Ok`) and the end of the task
/// (`Err`), once the attempt has been dropped. A plain fn, so that nothing it
/// uses is kept in the supervisor's future across the backoff.
pub(super) fn decide(
    spec: &Spec,
    cancelled: bool,
    entry: &Entry,
    ending: Ending,
    started: Instant,
    attempt: u32,
    streak: &mut Streak,
) -> Result<Duration, Exit> {
    let name = spec.name.as_str();
    let failure = match ending {
        Ending::Clean | Ending::Cancelled(None) => None,
        Ending::Failed(failure) | Ending::Cancelled(Some(failure)) => Some(*failure),
    };
    if cancelled {
        if let Some(failure) = &failure {
            log_failure(name, failure, entry.restarts(), Next::Cancelled);
        }
        return Err(finish(entry, Exit::Cancelled));
    }
    if failure.is_none() && spec.policy.restart != RestartPolicy::Always {
        tracing::debug!(task = name, attempt, "supervised task completed");
        return Err(finish(entry, Exit::Completed));
    }
    let streak = streak.counts(spec);
    if started.elapsed() >= spec.policy.backoff.reset_after {
        streak.length = 0;
    }
    let delay = match streak.rng.as_mut() {
        Some(rng) => spec
            .policy
            .backoff
            .jittered_delay(streak.length, rng.next_u64()),
        None => spec.policy.backoff.delay(streak.length),
    };

    let give_up = match (&failure, spec.policy.restart) {
        (Some(_), RestartPolicy::Never) => Some(GaveUp::NoRestart),
        _ => limit_reached(spec, streak, crate::clock::deadline_after(delay)),
    };
    if let Some(reason) = give_up {
        let failure = failure.unwrap_or_else(|| {
            Failure::new(
                FailureKind::Error,
                "returned cleanly too often under restart policy `always`".to_owned(),
                attempt,
            )
        });
        log_failure(name, &failure, entry.restarts(), Next::GiveUp(&reason));
        if let Some(parent) = &spec.policy.escalate {
            parent.cancel();
        }
        return Err(finish(entry, Exit::Failed { reason, failure }));
    }

    streak.length = streak.length.saturating_add(1);
    match &failure {
        Some(failure) => log_failure(name, failure, entry.restarts(), Next::Restart(delay)),
        None => tracing::info!(
            task = name,
            attempt,
            next_delay = %Rounded(delay),
            "supervised task returned; restarting (policy `always`)"
        ),
    }
    Ok(delay)
}

/// Would a restart at `next_start` make more than `max_restarts` restarts
/// (attempt starts) within one window of length `within`?
fn limit_reached(spec: &Spec, streak: &mut Counts, next_start: Instant) -> Option<GaveUp> {
    let limit = spec.policy.limit?;
    let restarts = streak.restarts.as_mut()?;
    while restarts
        .front()
        .is_some_and(|t| next_start.duration_since(*t) >= limit.within)
    {
        restarts.pop_front();
    }
    (restarts.len() >= limit.max_restarts as usize).then_some(GaveUp::RestartLimit {
        max_restarts: limit.max_restarts,
        within: limit.within,
    })
}

pub(super) fn finish(entry: &Entry, exit: Exit) -> Exit {
    let state = match &exit {
        Exit::Completed => TaskState::Completed,
        Exit::Cancelled | Exit::Abandoned => TaskState::Cancelled,
        Exit::Failed { .. } => TaskState::Failed,
    };
    entry.finish(state);
    exit
}

/// What follows a failure.
enum Next<'a> {
    Restart(Duration),
    GiveUp(&'a GaveUp),
    Cancelled,
}

fn log_failure(name: &str, failure: &Failure, restarts: u64, next: Next<'_>) {
    let location = failure.location.as_deref();
    // Displayed, not debug-escaped, from a line of its own: a backtrace is
    // read frame by frame.
    let backtrace = failure.backtrace.as_ref().map(|b| format!("\n{b}"));
    let backtrace = backtrace.as_deref().map(tracing::field::display);
    match next {
        Next::Restart(delay) => tracing::error!(
            task = name,
            attempt = failure.attempt,
            restarts,
            next_delay = %Rounded(delay),
            kind = %failure.kind,
            location,
            error = %failure.message,
            backtrace,
            "supervised task failed; restarting after backoff"
        ),
        Next::GiveUp(reason) => tracing::error!(
            task = name,
            attempt = failure.attempt,
            restarts,
            kind = %failure.kind,
            location,
            error = %failure.message,
            backtrace,
            gave_up = %reason,
            "supervised task failed; giving up"
        ),
        Next::Cancelled => tracing::error!(
            task = name,
            attempt = failure.attempt,
            restarts,
            kind = %failure.kind,
            location,
            error = %failure.message,
            backtrace,
            "supervised task failed while it was being cancelled; not restarting"
        ),
    }
}
