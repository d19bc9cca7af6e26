//! Ordered groups: members start one after the other, each once the one
//! before is ready, and stop in reverse order.

use std::sync::Arc;

use tokio::time::Instant;

use super::strategy::give_up;
use super::{is_ended, Run, Shared, State};
use crate::format::Rounded;
use crate::registry::{lock, Entry, Failure, FailureKind};
use crate::run::Exit;

/// What the driver waits for before it can start the next member.
enum Wait {
    /// Any change of the group.
    Change,
    /// The previous member to be ready, until its deadline.
    Ready {
        entry: Arc<Entry>,
        deadline: Instant,
        name: String,
    },
}

impl Shared {
    /// Starts the driver of the group's current run unless it runs.
    pub(super) fn ensure_driver(self: &Arc<Self>, state: &mut State) {
        if state.driving == Some(state.run) {
            return;
        }
        state.driving = Some(state.run);
        let run = state.run;
        let token = state.token.clone();
        let shared = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = token.cancelled() => break,
                    started = shared.start_next() => {
                        if let Err(failure) = started {
                            give_up(&mut lock(&shared.state), failure);
                            shared.changed.notify_waiters();
                        }
                    }
                }
            }
            shared.stop_in_reverse(run).await;
            let mut state = lock(&shared.state);
            if state.driving == Some(run) {
                state.driving = None;
            }
        });
    }

    /// Starts the first waiting member once the member before it is ready;
    /// `Err` when that member is not ready in time or ended without being
    /// ready.
    async fn start_next(self: &Arc<Self>) -> Result<(), Failure> {
        let timeout = self.config().start_timeout;
        // When the driver began waiting for the member before the next one:
        // the start timeout counts from then.
        let mut waiting: Option<(u64, Instant)> = None;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait = {
                let mut state = lock(&self.state);
                // From where the last search stopped, not from the first
                // member: starting n members is then one pass, not n.
                let from = state
                    .members
                    .partition_point(|m| m.id < state.first_waiting);
                let first = state.members[from..]
                    .iter()
                    .position(|m| matches!(m.run, Run::Waiting(_)))
                    .map(|i| from + i);
                if let Some(i) = first {
                    state.first_waiting = state.members[i].id;
                }
                match first {
                    None => Wait::Change,
                    Some(0) => {
                        self.start(&mut state, 0);
                        return Ok(());
                    }
                    Some(i) => {
                        let prev = &state.members[i - 1];
                        let ready = prev.ready_once
                            || match (&prev.run, &prev.entry) {
                                // Completed, or stopped on purpose (removed,
                                // cancelled): nothing to wait for.
                                (Run::Ended(ended), _) => {
                                    matches!(ended.exit, Exit::Completed | Exit::Cancelled)
                                }
                                (Run::Running(_), Some((_, entry))) => entry.is_ready(),
                                _ => false,
                            };
                        if ready {
                            state.members[i - 1].ready_once = true;
                            self.start(&mut state, i);
                            return Ok(());
                        }
                        match (&prev.run, &prev.entry) {
                            (Run::Ended(ended), _) => {
                                let exit = &ended.exit;
                                return Err(Failure::new(
                                    FailureKind::Stalled,
                                    format!(
                                        "member `{}` ended ({exit}) before it was ready; \
                                         `{}` was not started",
                                        prev.name, state.members[i].name
                                    ),
                                    0,
                                ));
                            }
                            (Run::Running(_), Some((_, entry))) => {
                                let since = match waiting {
                                    Some((id, since)) if id == prev.id => since,
                                    _ => {
                                        let since = Instant::now();
                                        waiting = Some((prev.id, since));
                                        since
                                    }
                                };
                                Wait::Ready {
                                    entry: entry.clone(),
                                    deadline: since
                                        .checked_add(timeout)
                                        .unwrap_or_else(|| crate::clock::deadline_after(timeout)),
                                    name: prev.name.to_string(),
                                }
                            }
                            _ => Wait::Change,
                        }
                    }
                }
            };
            match wait {
                Wait::Change => changed.await,
                Wait::Ready {
                    entry,
                    deadline,
                    name,
                } => {
                    let ready = entry.watch().notified();
                    tokio::pin!(ready);
                    ready.as_mut().enable();
                    if entry.is_ready() {
                        continue;
                    }
                    tokio::select! {
                        _ = changed => {}
                        _ = ready => {}
                        _ = tokio::time::sleep_until(deadline) => {
                            if entry.is_ready() {
                                continue;
                            }
                            return Err(Failure::new(
                                FailureKind::Stalled,
                                format!(
                                    "member `{name}` was not ready within {} of its start \
                                     (the ordered group's start timeout)",
                                    Rounded(timeout)
                                ),
                                0,
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Stops the members of run `run` from the last to the first, each once
    /// every later one has ended. Members not started yet never start in
    /// this run. Returns at once when a later run has begun.
    pub(super) async fn stop_in_reverse(&self, run: u64) {
        for m in lock(&self.state).members.iter_mut() {
            if let Run::Waiting(_) = m.run {
                let Run::Waiting(task) = std::mem::replace(&mut m.run, Run::Moving) else {
                    unreachable!("just matched");
                };
                m.run = Run::ended(Exit::Cancelled, Some(*task));
            }
        }
        self.changed.notify_waiters();
        // Members from this id on have ended; a member that ended in this
        // run stays ended, and the group, cancelled, takes no new member, so
        // each search starts below the member stopped last: stopping n
        // members is one pass over them, not n.
        let mut ended_from = u64::MAX;
        loop {
            let next = {
                let state = lock(&self.state);
                if state.run != run {
                    return;
                }
                let below = state.members.partition_point(|m| m.id < ended_from);
                state.members[..below]
                    .iter()
                    .rev()
                    .find(|m| !is_ended(&m.run))
                    .map(|m| (m.id, m.token.clone()))
            };
            let Some((id, token)) = next else {
                return;
            };
            token.cancel();
            self.until(|state| {
                state.run != run || state.members.by_id(id).is_none_or(|m| is_ended(&m.run))
            })
            .await;
            ended_from = id;
        }
    }
}
