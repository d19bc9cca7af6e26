//! A handle on a running group: members added, removed and restarted by
//! other tasks.

use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{is_ended, let_aborted_drop, overdue_exit, Run, Shared};
use crate::events::RestartCause;
use crate::registry::{lock, Failure};
use crate::run::Exit;
use crate::task::Task;

/// A handle on a [`Group`](crate::Group) for other tasks: adds, removes and
/// restarts members while the group runs. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use supervised_core::{Context, Exit, Group, Registry, Spec, Task};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let registry = Registry::new();
/// let tenant = |name: &str| {
///     Task::new(Spec::new(name).registry(&registry), |ctx: Context| async move {
///         while !ctx.is_cancelled() {
///             ctx.heartbeat();
///             tokio::time::sleep(Duration::from_secs(1)).await;
///         }
///     })
/// };
/// let group = Group::new();
/// let handle = group.handle();
/// handle.add(tenant("tenant-7")).unwrap();
/// assert!(handle.add(tenant("tenant-7")).is_err()); // already a member
/// assert!(handle.restart("tenant-7"));
/// let exit = handle.remove("tenant-7", Duration::from_secs(5)).await;
/// assert_eq!(exit, Some(Exit::Cancelled));
/// assert!(group.names().is_empty());
/// # }
/// ```
#[derive(Clone)]
pub struct GroupHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for GroupHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupHandle")
            .field("names", &self.shared.names())
            .finish()
    }
}

impl GroupHandle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        GroupHandle { shared }
    }

    /// Adds `task` to the group and starts it at once (in an ordered group,
    /// once the last member is ready). Fails, giving the task back, when a
    /// member already has its name or the group is stopping or gave up.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`].
    pub fn add(&self, task: Task) -> Result<(), AddError> {
        self.shared.add(task)
    }

    /// Cancels the member named `name`, waits at most `grace` for it to end
    /// (then aborts it, as [`Group::shutdown`](crate::Group::shutdown) does)
    /// and takes it out of the group: it leaves
    /// [`names`](crate::Group::names) and is not restarted with the group.
    /// Returns how it ended; `None` when no member has that name.
    pub async fn remove(&self, name: &str, grace: Duration) -> Option<Exit> {
        let (id, token) = {
            let state = lock(&self.shared.state);
            let m = state.members.by_name(name)?;
            (m.id, m.token.clone())
        };
        token.cancel();
        let deadline = crate::clock::deadline_after(grace);
        let ended = self.shared.until(|state| {
            state
                .members
                .by_id(id)
                .is_none_or(|m| is_ended(&m.run) || matches!(m.run, Run::Waiting(_)))
        });
        let _ = tokio::time::timeout_at(deadline, ended).await;
        let member = {
            let mut state = lock(&self.shared.state);
            state.members.remove(id)?
        };
        self.shared.changed.notify_waiters();
        Some(match &member.run {
            Run::Ended(ended) => ended.exit.clone(),
            Run::Waiting(_) | Run::Moving => Exit::Cancelled,
            Run::Running(handle) => {
                handle.abort();
                let_aborted_drop().await;
                overdue_exit(&member, grace)
            }
        })
    }

    /// Stops the current attempt of the member named `name` (with its grace)
    /// and starts the next one at once, without backoff. Counted in the
    /// member's `restarts`, not as a failure, and not by restart limits.
    /// `false` when no member of that name is running (or backing off).
    pub fn restart(&self, name: &str) -> bool {
        let state = lock(&self.shared.state);
        let Some(m) = state.members.by_name(name) else {
            return false;
        };
        let live = matches!(m.run, Run::Running(_))
            && m.entry
                .as_ref()
                .and_then(|(_, entry)| entry.state())
                .is_some_and(|s| !s.is_final());
        if live {
            m.control.request(Instant::now(), RestartCause::Requested);
        }
        live
    }

    /// The members' names, in the order they were added.
    pub fn names(&self) -> Vec<String> {
        self.shared.names()
    }

    /// See [`Group::is_healthy`](crate::Group::is_healthy).
    pub fn is_healthy(&self) -> bool {
        self.shared.is_healthy()
    }

    /// See [`Group::gave_up`](crate::Group::gave_up).
    pub fn gave_up(&self) -> Option<Failure> {
        self.shared.gave_up()
    }
}

/// Why [`GroupHandle::add`] did not add a task; holds the task. An error
/// type like any other (`Send + Sync + 'static`): `?` turns it into an
/// `anyhow::Error` or a `Box<dyn Error + Send + Sync>`.
pub struct AddError {
    name: String,
    // A `Task` is `Send` but not `Sync`; behind a mutex the error is both.
    task: Box<Mutex<Task>>,
    closed: bool,
}

impl AddError {
    pub(super) fn name_taken(task: Task) -> Self {
        AddError {
            name: task.name().to_owned(),
            task: Box::new(Mutex::new(task)),
            closed: false,
        }
    }

    pub(super) fn closed(task: Task) -> Self {
        AddError {
            name: task.name().to_owned(),
            task: Box::new(Mutex::new(task)),
            closed: true,
        }
    }

    /// `true` when the group is stopping or gave up; `false` when a member
    /// already has the task's name.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The task that was not added.
    pub fn into_task(self) -> Task {
        self.task.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// The name of the task that was not added.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddError")
            .field("name", &self.name)
            .field("closed", &self.closed)
            .finish()
    }
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.closed {
            write!(
                f,
                "`{}` was not added: the group is stopping or gave up",
                self.name
            )
        } else {
            write!(
                f,
                "`{}` was not added: a member of the group already has that name \
                 (rename it with `.named(\"..\")`)",
                self.name
            )
        }
    }
}

impl Error for AddError {}
