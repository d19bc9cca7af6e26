//! What a group's handle and its supervisor share: adding and starting
//! members, their ends, the group's health, and the wait for every member
//! to end.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use smol_str::SmolStr;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::registry::{lock, Failure};
use crate::run::{Control, Exit, Membership};
use crate::task::Task;

use super::members::{Ended, Member, Reported, Run};
use super::{
    is_ended, let_aborted_drop, overdue_exit, task_ended, AddError, Config, Shared, State,
};

impl Shared {
    pub(super) fn config(&self) -> Config {
        *lock(&self.config)
    }

    pub(super) fn names(&self) -> Vec<String> {
        lock(&self.state)
            .members
            .iter()
            .map(|m| m.name.to_string())
            .collect()
    }

    pub(super) fn gave_up(&self) -> Option<Failure> {
        lock(&self.state).failure.clone()
    }

    pub(super) fn is_healthy(&self) -> bool {
        let state = lock(&self.state);
        // The clock is read once per registry, not once per member: a clock
        // reading waits for the instructions before it, so reading it for
        // each member would also wait for each member's entry to load,
        // one cache miss after the other.
        let mut now: Option<(&crate::registry::Registry, u64)> = None;
        state.failure.is_none()
            && state.members.iter().all(|m| match &m.run {
                // Not started yet in an ordered group: nothing to say yet.
                Run::Waiting(_) | Run::Moving => true,
                _ => m
                    .entry
                    .as_ref()
                    .and_then(|(registry, entry)| {
                        let at = match now {
                            Some((read, at)) if read.same_as(registry) => at,
                            _ => {
                                let at = registry.now_mono();
                                now = Some((registry, at));
                                at
                            }
                        };
                        entry.is_healthy(at)
                    })
                    .unwrap_or(false),
            })
    }

    /// Adds a member: starts it now, or in an ordered group queues it for
    /// the driver.
    pub(super) fn add(self: &Arc<Self>, task: Task) -> Result<(), AddError> {
        let config = self.config();
        let task = match lock(&self.lease).clone() {
            Some(lease) if task.spec().is_singleton() => {
                task.with_spec(|spec| spec.with_group_lease(&lease))
            }
            _ => task,
        };
        let mut state = lock(&self.state);
        if state.members.has_name(task.name()) {
            return Err(AddError::name_taken(task));
        }
        if state.token.is_cancelled() {
            return Err(AddError::closed(task));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let membership: std::sync::Weak<dyn Membership> = Arc::downgrade(self) as _;
        let token = if config.ordered {
            CancellationToken::new()
        } else {
            state.token.child_token()
        };
        state.members.push(Member {
            id,
            name: SmolStr::new(task.name()),
            control: Arc::new(Control::new(id, membership)),
            token,
            entry: None,
            run: Run::waiting(task),
            started: None,
            ready_once: false,
        });
        if config.ordered {
            self.ensure_driver(&mut state);
        } else {
            let last = state.members.len() - 1;
            self.start(&mut state, last);
        }
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Starts member `index` if it is waiting; leaves any other member as
    /// it is (running, or ended and not to run again).
    pub(super) fn start(self: &Arc<Self>, state: &mut State, index: usize) {
        let parent = state.parent.clone();
        let member = &mut state.members[index];
        let task = match std::mem::replace(&mut member.run, Run::Moving) {
            Run::Waiting(task) => task,
            other => {
                member.run = other;
                return;
            }
        };
        let (entry, supervisor) = (*task).member(
            member.token.clone(),
            member.control.clone(),
            parent.as_ref(),
        );
        member.entry = entry;
        member.started = Some(Instant::now());
        match supervisor {
            Ok(supervisor) => {
                let handle = tokio::spawn(Reported::new(supervisor, member.control.clone()));
                member.run = Run::Running(handle.abort_handle());
            }
            // It never ran (its name was taken).
            Err((exit, task)) => {
                member.run = Run::ended(exit, Some(task));
                self.changed.notify_waiters();
            }
        }
    }

    pub(super) fn member_ended(&self, id: u64, exit: Exit, task: Task) {
        let mut state = lock(&self.state);
        if let Some(m) = state.members.by_id_mut(id) {
            m.run = Run::ended(exit, Some(task));
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// Member `id`'s supervisor, the tokio task `task`, was dropped before
    /// it ended: marked ended at the next check (see [`Shared::until`]).
    pub(super) fn member_dropped(&self, id: u64, task: tokio::task::Id) {
        lock(&self.dropped).push((id, task));
        self.changed.notify_waiters();
    }

    /// Marks ended the members whose running supervisor was dropped before
    /// it ended, once the registry has recorded their end: a supervisor
    /// aborted at a shutdown's deadline may leave its attempt blocked in a
    /// call, and that member is the shutdown's to judge (abandoned), not
    /// cancelled. A report for a supervisor the member no longer runs (one
    /// of an earlier run, dropped late) is ignored.
    fn absorb_dropped(&self, state: &mut State) {
        let dropped = std::mem::take(&mut *lock(&self.dropped));
        for (id, task) in dropped {
            if let Some(m) = state.members.by_id_mut(id) {
                if task_ended(m) && matches!(&m.run, Run::Running(handle) if handle.id() == task) {
                    m.run = Run::ended(Exit::Cancelled, None);
                }
            }
        }
    }

    /// Waits until `done` holds, checked now and after each change.
    pub(super) async fn until(&self, mut done: impl FnMut(&State) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = lock(&self.state);
                self.absorb_dropped(&mut state);
                if done(&state) {
                    return;
                }
            }
            changed.await;
        }
    }

    /// Waits until no member runs or waits to run.
    ///
    /// Each check resumes at the first member the last one found running: a
    /// member that has ended stays ended until the group runs again, and
    /// members are sorted by id, so removals do not move the place. Checked
    /// after every member's end, a scan from the start would make stopping
    /// a large group quadratic.
    pub(super) fn ended(&self) -> impl Future<Output = ()> + '_ {
        let mut from = 0;
        self.until(move |state| {
            let start = state.members.partition_point(|m| m.id < from);
            match state.members[start..].iter().find(|m| !is_ended(&m.run)) {
                Some(running) => {
                    from = running.id;
                    false
                }
                None => true,
            }
        })
    }

    /// Cancels every member (in reverse order if ordered) and waits for them
    /// for `grace`; then aborts the ones still running.
    pub(super) async fn stop(&self, grace: Duration) {
        let deadline = crate::clock::deadline_after(grace);
        let ordered = self.config().ordered;
        let (token, run) = {
            let state = lock(&self.state);
            (state.token.clone(), state.run)
        };
        token.cancel();
        if ordered {
            let _ = tokio::time::timeout_at(deadline, self.stop_in_reverse(run)).await;
        } else {
            let _ = tokio::time::timeout_at(deadline, self.ended()).await;
        }
        let mut overdue = false;
        for m in lock(&self.state).members.iter_mut() {
            m.token.cancel();
            match &m.run {
                Run::Running(handle) => {
                    // Aborting the supervisor aborts its attempt; the task is
                    // recorded as cancelled once the attempt is dropped.
                    handle.abort();
                    overdue = true;
                }
                Run::Waiting(_) => {
                    let Run::Waiting(task) = std::mem::replace(&mut m.run, Run::Moving) else {
                        unreachable!("just matched");
                    };
                    m.run = Run::ended(Exit::Cancelled, Some(*task));
                }
                _ => {}
            }
        }
        if overdue {
            let_aborted_drop().await;
            for m in lock(&self.state).members.iter_mut() {
                if matches!(m.run, Run::Running(_)) {
                    m.run = Run::ended(overdue_exit(m, grace), None);
                }
            }
        }
        // Members moved to an end here: wake whoever waits on them.
        self.changed.notify_waiters();
    }

    /// How each member ended, in order.
    pub(super) fn exits(&self) -> Vec<(String, Exit)> {
        let state = lock(&self.state);
        state
            .members
            .iter()
            .map(|m| {
                let exit = match &m.run {
                    Run::Ended(ended) => ended.exit.clone(),
                    // Not started, or (after `join`) still running: `join`
                    // returns only when none is.
                    Run::Waiting(_) | Run::Moving | Run::Running(_) => Exit::Cancelled,
                };
                (m.name.to_string(), exit)
            })
            .collect()
    }

    /// One attempt of the group as a task.
    pub(super) async fn run_as_task(self: Arc<Self>, ctx: Context) -> Result<(), String> {
        let config = self.config();
        let path = ctx.entry().clone();
        {
            let mut state = lock(&self.state);
            if state.token.is_cancelled() {
                // A new run after the last one gave up or was stopped.
                state.token = ctx.token().child_token();
                state.run += 1;
                state.first_waiting = 0;
                state.failure = None;
                state.intensity.clear();
                let token = state.token.clone();
                for m in state.members.iter_mut() {
                    m.ready_once = false;
                    m.token = if config.ordered {
                        CancellationToken::new()
                    } else {
                        token.child_token()
                    };
                    m.run = match std::mem::replace(&mut m.run, Run::Moving) {
                        Run::Ended(ended) => match *ended {
                            Ended {
                                task: Some(task), ..
                            } => Run::waiting(task),
                            Ended { exit, task: None } => {
                                // Its supervisor was aborted at a deadline and
                                // the task went with it: it cannot run again.
                                tracing::error!(
                                    task = %m.name,
                                    "supervised group member lost at an earlier stop; not restarted with its group"
                                );
                                Run::ended(exit, None)
                            }
                        },
                        other => other,
                    };
                }
            }
            state.parent = Some(path.clone());
            for m in state.members.iter() {
                if let Some((_, entry)) = &m.entry {
                    entry.set_parent(&path);
                }
            }
            if config.ordered {
                self.ensure_driver(&mut state);
            } else {
                for i in 0..state.members.len() {
                    self.start(&mut state, i);
                }
            }
        }
        // The members of the first run may have been started under the
        // group's own token before the group became a task: an attempt
        // dropped without returning stops them too.
        let _stop_on_drop = lock(&self.state).token.clone().drop_guard();
        let given_up = self.until(|state| state.failure.is_some());
        tokio::select! {
            _ = ctx.cancelled() => {
                self.stop(config.grace).await;
                Ok(())
            }
            _ = given_up => {
                self.stop(config.grace).await;
                let failure = lock(&self.state).failure.clone();
                Err(failure.map_or_else(String::new, |f| format!("group gave up: {}", f.message)))
            }
        }
    }
}
