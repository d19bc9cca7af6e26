//! What a group does when a member fails: its restart strategy and its
//! restart intensity.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::{Run, Shared, State};
use crate::events::RestartCause;
use crate::format::Rounded;
use crate::policy::RestartLimit;
use crate::registry::{lock, Failure};
use crate::run::{Exit, Membership};
use crate::task::Task;

/// Which members restart when one fails (and restarts by its own policy).
///
/// The names are Erlang/OTP's. A member that completes or is cancelled
/// triggers nothing; a member that gives up (its own restart limit) restarts
/// nothing either.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Only the failed member restarts (the default).
    #[default]
    OneForOne,
    /// Every other member's attempt is stopped too, and all of them restart
    /// together when the failed member's backoff is over. Their `restarts`
    /// count it; it is not a failure of theirs.
    OneForAll,
    /// The members started after the failed one (in the order they were
    /// added) restart with it, when its backoff is over; earlier members are
    /// untouched.
    RestForOne,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        })
    }
}

/// The restarts a group's intensity limit counts: one per member failure
/// followed by a restart.
#[derive(Default)]
pub(super) struct Intensity {
    restarts: VecDeque<Instant>,
}

impl Intensity {
    /// Counts a restart now; `true` when that makes more than the limit's
    /// restarts within its window.
    fn exceeded(&mut self, limit: RestartLimit, now: Instant) -> bool {
        self.restarts.push_back(now);
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limit.within)
        {
            self.restarts.pop_front();
        }
        self.restarts.len() > limit.max_restarts as usize
    }

    pub(super) fn clear(&mut self) {
        self.restarts.clear();
    }
}

impl Membership for Shared {
    fn ended(&self, member: u64, exit: Exit, task: Task) {
        self.member_ended(member, exit, task);
    }

    fn dropped(&self, member: u64, task: tokio::task::Id) {
        self.member_dropped(member, task);
    }

    fn failed(&self, member: u64, resume_at: Instant, failure: &Failure) {
        let config = *lock(&self.config);
        let mut state = lock(&self.state);
        if state.token.is_cancelled() {
            return;
        }
        let Some(index) = state.members.index_of(member) else {
            return;
        };
        let name = state.members[index].name.clone();
        if let Some(limit) = config.limit {
            if state.intensity.exceeded(limit, Instant::now()) {
                let failure = Failure::new(
                    failure.kind,
                    format!(
                        "more than {} restarts of its members within {}; the last: `{name}` \
                         failed: {}",
                        limit.max_restarts,
                        Rounded(limit.within),
                        failure.message
                    ),
                    failure.attempt,
                );
                give_up(&mut state, failure);
                drop(state);
                self.changed.notify_waiters();
                return;
            }
        }
        let from = match config.strategy {
            Strategy::OneForOne => return,
            Strategy::OneForAll => 0,
            Strategy::RestForOne => index + 1,
        };
        for (i, m) in state.members.iter().enumerate().skip(from) {
            if i == index || !matches!(m.run, Run::Running(_)) {
                continue;
            }
            let finished = m
                .entry
                .as_ref()
                .and_then(|(_, e)| e.state())
                .is_none_or(|s| s.is_final());
            if !finished {
                m.control
                    .request(resume_at, RestartCause::Sibling(name.to_string()));
            }
        }
    }
}

/// The group gives up: records why and cancels every member.
pub(super) fn give_up(state: &mut State, failure: Failure) {
    if state.failure.is_none() {
        tracing::error!(
            kind = %failure.kind,
            error = %failure.message,
            "supervised group gave up; stopping its members"
        );
        state.failure = Some(failure);
    }
    state.token.cancel();
}

/// The group's default start timeout for an ordered group: see
/// [`Group::ordered`](crate::Group::ordered).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
