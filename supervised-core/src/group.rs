//! Several supervised tasks started together and stopped together.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::format::Rounded;
use crate::registry::{Entry, Registry};
use crate::run::Exit;
use crate::task::Task;

/// Supervised tasks sharing one cancellation token: what `spawn_all!` returns.
///
/// Dropping a `Group` cancels its tasks, as dropping a
/// [`JoinSet`](tokio::task::JoinSet) aborts its tasks; keep it for as long as
/// the tasks should run, or [`detach`](Group::detach) it.
///
/// ```
/// use std::time::Duration;
/// use supervised_core::{Context, Exit, Group, Registry, Spec, Task};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let registry = Registry::new();
/// let mut group = Group::new();
/// for name in ["a", "b"] {
///     let spec = Spec::new(name).registry(&registry);
///     group.spawn(Task::new(spec, |ctx: Context| async move {
///         while !ctx.is_cancelled() {
///             ctx.heartbeat();
///             tokio::time::sleep(Duration::from_secs(1)).await;
///         }
///     }));
/// }
/// assert_eq!(group.names(), ["a", "b"]);
/// let exits = group.shutdown(Duration::from_secs(5)).await;
/// assert!(exits.iter().all(|(_, exit)| *exit == Exit::Cancelled));
/// # }
/// ```
#[must_use = "dropping a `Group` cancels its tasks"]
pub struct Group {
    token: CancellationToken,
    members: Vec<Member>,
    detached: bool,
}

struct Member {
    name: String,
    /// The member's own registry entry; `None` when its name was taken and it
    /// never ran.
    entry: Option<(Registry, Arc<Entry>)>,
    handle: JoinHandle<Exit>,
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.detached {
            self.token.cancel();
        }
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("names", &self.names())
            .field("cancelled", &self.token.is_cancelled())
            .finish()
    }
}

impl Default for Group {
    fn default() -> Self {
        Self::new()
    }
}

impl Group {
    /// An empty group with a fresh token.
    pub fn new() -> Self {
        Self::with_token(CancellationToken::new())
    }

    /// An empty group whose tasks stop when `token` is cancelled (the group
    /// cancels only a child of it, never `token` itself).
    pub fn with_token(token: CancellationToken) -> Self {
        Group {
            token: token.child_token(),
            members: Vec::new(),
            detached: false,
        }
    }

    /// Starts `task` on a new tokio task.
    ///
    /// # Panics
    ///
    /// When a task of this group already has the same name, or outside a tokio
    /// runtime.
    pub fn spawn(&mut self, task: Task) -> &mut Self {
        if let Err(name) = self.try_spawn(task) {
            panic!("supervised: two tasks of one group are named `{name}`; names must be unique");
        }
        self
    }

    /// Starts `task` unless a task of this group already has its name, which is
    /// then returned.
    pub fn try_spawn(&mut self, task: Task) -> Result<(), String> {
        let name = task.name().to_owned();
        if self.members.iter().any(|m| m.name == name) {
            return Err(name);
        }
        let (entry, handle) = task.start(self.token.clone());
        self.members.push(Member {
            name,
            entry,
            handle,
        });
        Ok(())
    }

    /// The token the group's tasks watch; cancel it to stop them all.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The tasks' names, in the order they were started.
    pub fn names(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.name.as_str()).collect()
    }

    /// `true` when every task of this group is healthy: not stale by its own
    /// `stale_after`, not blocking its thread, not
    /// [failed](crate::TaskState::Failed). A member that never ran because a
    /// live task held its name is not healthy.
    ///
    /// Reads the group's own members, whatever else is registered under
    /// their names.
    pub fn is_healthy(&self) -> bool {
        self.members.iter().all(|m| {
            m.entry
                .as_ref()
                .and_then(|(registry, entry)| registry.status_of(entry))
                .is_some_and(|s| s.healthy)
        })
    }

    /// Lets the tasks run on after this `Group` is dropped; nothing but the
    /// token the group was made with (or the runtime's end) stops them then.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Waits until every task has ended on its own, and returns how each ended,
    /// in start order.
    pub async fn join(mut self) -> Vec<(String, Exit)> {
        let members = std::mem::take(&mut self.members);
        let mut exits = Vec::with_capacity(members.len());
        for m in members {
            exits.push((m.name, joined(m.handle.await)));
        }
        exits
    }

    /// Cancels every task and waits at most `grace` in all for them to end.
    /// `grace` bounds the whole call, whatever grace a task declares: at the
    /// deadline the attempts still running are aborted. One that is dropped
    /// at once (it was awaiting something) is reported [`Exit::Cancelled`];
    /// one that is not (it is blocked in a synchronous call) is reported
    /// [`Exit::Abandoned`] and logged by name, and the registry shows it
    /// [`Stopping`](crate::TaskState::Stopping) until it is dropped. Returns
    /// how each task ended, in start order.
    pub async fn shutdown(mut self, grace: Duration) -> Vec<(String, Exit)> {
        self.token.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        let members = std::mem::take(&mut self.members);
        let mut exits: Vec<(Member, Option<Exit>)> = Vec::with_capacity(members.len());
        let mut overdue = false;
        for mut m in members {
            let exit = match tokio::time::timeout_at(deadline, &mut m.handle).await {
                Ok(result) => Some(joined(result)),
                Err(_) => {
                    // Dropping the supervisor aborts its attempt; the task is
                    // recorded as cancelled once the attempt is dropped.
                    m.handle.abort();
                    overdue = true;
                    None
                }
            };
            exits.push((m, exit));
        }
        if overdue {
            // Let the runtime drop the aborted attempts that can be dropped:
            // a few turns of the scheduler, no waiting on a timer.
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
        exits
            .into_iter()
            .map(|(m, exit)| {
                let exit = exit.unwrap_or_else(|| {
                    let dropped = m.entry.as_ref().is_none_or(|(registry, entry)| {
                        registry.status_of(entry).is_none_or(|s| s.state.is_final())
                    });
                    if dropped {
                        tracing::warn!(
                            task = %m.name,
                            grace = %Rounded(grace),
                            "supervised task did not stop within the group's shutdown grace; \
                             its attempt was aborted"
                        );
                        Exit::Cancelled
                    } else {
                        tracing::error!(
                            task = %m.name,
                            grace = %Rounded(grace),
                            "supervised task was not stopped within the group's shutdown grace; \
                             abandoned (its attempt is aborted but not yet dropped)"
                        );
                        Exit::Abandoned
                    }
                });
                (m.name, exit)
            })
            .collect()
    }
}

fn joined(result: Result<Exit, tokio::task::JoinError>) -> Exit {
    // A supervisor never unwinds; an error means it was aborted.
    result.unwrap_or(Exit::Cancelled)
}
