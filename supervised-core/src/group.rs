//! Several supervised tasks started together and stopped together.

use std::fmt;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::run::Exit;
use crate::task::Task;

/// Supervised tasks sharing one cancellation token: what `spawn_all!` returns.
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
pub struct Group {
    token: CancellationToken,
    members: Vec<Member>,
}

struct Member {
    name: String,
    registry: Registry,
    handle: JoinHandle<Exit>,
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
        let registry = task
            .spec()
            .get_registry()
            .cloned()
            .unwrap_or_else(|| Registry::global().clone());
        let handle = task.spawn(self.token.clone());
        self.members.push(Member {
            name,
            registry,
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

    /// `true` when no task is stale by its own `stale_after` and none has
    /// [failed](crate::TaskState::Failed).
    pub fn is_healthy(&self) -> bool {
        self.members
            .iter()
            .all(|m| m.registry.status(&m.name).is_none_or(|s| s.healthy))
    }

    /// Waits until every task has ended on its own, and returns how each ended,
    /// in start order.
    pub async fn join(self) -> Vec<(String, Exit)> {
        let mut exits = Vec::with_capacity(self.members.len());
        for m in self.members {
            exits.push((m.name, joined(m.handle.await)));
        }
        exits
    }

    /// Cancels every task and waits at most `grace` in all for them to end;
    /// tasks still running then are dropped (their attempts aborted) and
    /// recorded [`Cancelled`](crate::TaskState::Cancelled). `grace` bounds the whole
    /// group, whatever grace a task declares. Returns how each task ended, in
    /// start order.
    pub async fn shutdown(self, grace: Duration) -> Vec<(String, Exit)> {
        self.token.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        let mut exits = Vec::with_capacity(self.members.len());
        for mut m in self.members {
            let exit = match tokio::time::timeout_at(deadline, &mut m.handle).await {
                Ok(result) => joined(result),
                Err(_) => {
                    m.handle.abort();
                    // The supervisor runs no user code, so it goes away at once;
                    // its drop guard records the task as cancelled.
                    let _ = (&mut m.handle).await;
                    tracing::warn!(
                        task = %m.name,
                        ?grace,
                        "supervised task did not stop within the group's grace; dropped"
                    );
                    Exit::Cancelled
                }
            };
            exits.push((m.name, exit));
        }
        exits
    }
}

fn joined(result: Result<Exit, tokio::task::JoinError>) -> Exit {
    // A supervisor never panics; an error means it was aborted.
    result.unwrap_or(Exit::Cancelled)
}
