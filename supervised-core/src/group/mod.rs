//! Supervised tasks started and stopped together: a group, its restart
//! strategy and intensity, ordered start and stop, members added and removed
//! at run time, and groups as members of other groups.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::format::Rounded;
use crate::policy::{RestartLimit, DEFAULT_GRACE};
use crate::registry::{lock, Entry, Failure};
use crate::run::Exit;
use crate::task::Task;

mod handle;
mod members;
mod ordering;
mod shared;
mod strategy;

pub use handle::{AddError, GroupHandle};
use members::{Member, Members, Run};
use strategy::Intensity;
pub use strategy::{Strategy, DEFAULT_START_TIMEOUT};

/// Supervised tasks sharing one cancellation token: what `spawn_all!` returns.
///
/// Dropping a `Group` cancels its tasks, as dropping a
/// [`JoinSet`](tokio::task::JoinSet) aborts its tasks; keep it for as long as
/// the tasks should run, or [`detach`](Group::detach) it.
///
/// A group has a restart [`Strategy`] (one for one by default), may start
/// and stop its members in order ([`Group::ordered`]), may give up when its
/// members restart too often ([`Group::with_max_restarts`]), takes members
/// at run time through a [`GroupHandle`], and can itself be a member of
/// another group ([`Group::into_task`]): a supervision tree.
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
    shared: Arc<Shared>,
    /// The token of the group's members; a clone of the one in its state.
    token: CancellationToken,
    detached: bool,
}

/// What a group, its handles and its members' supervisors share.
pub(crate) struct Shared {
    config: Mutex<Config>,
    state: Mutex<State>,
    /// Woken when a member ends, is added or removed, and when the group
    /// gives up.
    changed: Notify,
    next_id: AtomicU64,
    /// Given to the singleton members that wait for their group's lease.
    lease: Mutex<Option<Arc<dyn crate::lease::Lease>>>,
    /// Members whose supervisor (the tokio task given) was dropped before
    /// it ended, not yet marked ended. Apart from `state`: a supervisor may
    /// be dropped while `state` is held, when a runtime that is shutting
    /// down drops a task as it is spawned.
    dropped: Mutex<Vec<(u64, tokio::task::Id)>>,
}

#[derive(Clone, Copy)]
struct Config {
    strategy: Strategy,
    ordered: bool,
    start_timeout: Duration,
    limit: Option<RestartLimit>,
    grace: Duration,
}

struct State {
    /// Cancelled to stop every member (in reverse order in an ordered group).
    token: CancellationToken,
    members: Members,
    intensity: Intensity,
    /// Why the group gave up, if it did.
    failure: Option<Failure>,
    /// The entry of the task this group runs as, for its members' statuses.
    parent: Option<Arc<Entry>>,
    /// Counts the runs of a group task (one per attempt).
    run: u64,
    /// The run whose ordered-start driver is running.
    driving: Option<u64>,
    /// In an ordered group, no member with a smaller id is waiting to
    /// start: the driver looks for the next one from here. Members only
    /// wait when they are added (with a larger id than any) and when a new
    /// run begins, which sets this back to 0.
    first_waiting: u64,
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
        let config = *lock(&self.shared.config);
        f.debug_struct("Group")
            .field("names", &self.names())
            .field("strategy", &config.strategy)
            .field("ordered", &config.ordered)
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
        let token = token.child_token();
        Group {
            shared: Arc::new(Shared {
                config: Mutex::new(Config {
                    strategy: Strategy::OneForOne,
                    ordered: false,
                    start_timeout: DEFAULT_START_TIMEOUT,
                    limit: None,
                    grace: DEFAULT_GRACE,
                }),
                state: Mutex::new(State {
                    token: token.clone(),
                    members: Members::default(),
                    intensity: Intensity::default(),
                    failure: None,
                    parent: None,
                    run: 0,
                    driving: None,
                    first_waiting: 0,
                }),
                changed: Notify::new(),
                next_id: AtomicU64::new(0),
                lease: Mutex::new(None),
                dropped: Mutex::new(Vec::new()),
            }),
            token,
            detached: false,
        }
    }

    /// Which members restart when one fails (default
    /// [`Strategy::OneForOne`]). Applies to failures from now on.
    pub fn with_strategy(self, strategy: Strategy) -> Group {
        lock(&self.shared.config).strategy = strategy;
        self
    }

    /// Starts the members in the order they are added, each once the one
    /// before it is ready: it has beaten once, or is heartbeat-less and
    /// running, or has completed. A member not ready within the start
    /// timeout ([`DEFAULT_START_TIMEOUT`], 30 s, counted from its start;
    /// see [`Group::with_start_timeout`]) makes the group give up.
    ///
    /// Stops them in reverse order: a member is cancelled only once every
    /// member added after it has ended. [`Group::shutdown`]'s grace stays
    /// the bound on the whole stop.
    ///
    /// Call it before spawning members: members spawned before are already
    /// running.
    pub fn ordered(self) -> Group {
        lock(&self.shared.config).ordered = true;
        self
    }

    /// How long a member of an [ordered](Group::ordered) group has to become
    /// ready (default [`DEFAULT_START_TIMEOUT`]).
    pub fn with_start_timeout(self, timeout: Duration) -> Group {
        lock(&self.shared.config).start_timeout = timeout;
        self
    }

    /// Gives up when the members restart more than `max_restarts` times in
    /// all within any window of `within` (a failure counts once, however
    /// many members the strategy restarts with it; restarts on request do
    /// not count): every member is cancelled and the group ends failed
    /// ([`Group::gave_up`]). As a member of another group
    /// ([`Group::into_task`]), that is a failure of the group's task, which
    /// its parent's policy handles.
    pub fn with_max_restarts(self, max_restarts: u32, within: Duration) -> Group {
        lock(&self.shared.config).limit = Some(RestartLimit {
            max_restarts,
            within,
        });
        self
    }

    /// The grace the group gives its members in all when it runs as a task
    /// ([`Group::into_task`]) and that task is cancelled (default 5 s).
    pub fn with_grace(self, grace: Duration) -> Group {
        lock(&self.shared.config).grace = grace;
        self
    }

    /// Gives `lease` to the members that are singletons without a lease of
    /// their own (`#[supervised(singleton = true)]`,
    /// [`Spec::singleton_from_group`](crate::Spec::singleton_from_group)),
    /// spawned from now on: each takes the lease named after itself before
    /// each attempt, and is a [standby](crate::TaskState::Standby) while
    /// another replica holds it. Other members are not affected. What
    /// `spawn_all!(lease = ...; ...)` calls.
    ///
    /// One lease store (one database connection) serves every singleton of
    /// the group.
    pub fn with_lease<L: crate::lease::Lease>(self, lease: L) -> Group {
        *lock(&self.shared.lease) = Some(Arc::new(lease));
        self
    }

    /// Starts `task` on a new tokio task (in an ordered group, once the
    /// member before it is ready).
    ///
    /// # Panics
    ///
    /// When a task of this group already has the same name, or outside a tokio
    /// runtime.
    pub fn spawn(&mut self, task: Task) -> &mut Self {
        if let Err(name) = self.try_spawn(task) {
            panic!(
                "supervised: two tasks of one group are named `{name}`; names must be unique \
                 (rename one with `.named(\"..\")`)"
            );
        }
        self
    }

    /// Starts `task` unless a task of this group already has its name, which is
    /// then returned.
    pub fn try_spawn(&mut self, task: Task) -> Result<(), String> {
        self.shared
            .add(task)
            .map_err(|e| e.into_task().name().to_owned())
    }

    /// A handle for other tasks to add, remove and restart members while
    /// the group runs.
    pub fn handle(&self) -> GroupHandle {
        GroupHandle::new(self.shared.clone())
    }

    /// The token the group's tasks watch; cancel it to stop them all.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The members' names, in the order they were added.
    pub fn names(&self) -> Vec<String> {
        self.shared.names()
    }

    /// `true` when every task of this group is healthy: not stale by its own
    /// `stale_after`, not blocking its thread, not
    /// [failed](crate::TaskState::Failed). A member that never ran because a
    /// live task held its name is not healthy, nor is a group that gave up.
    ///
    /// Reads the group's own members, whatever else is registered under
    /// their names.
    pub fn is_healthy(&self) -> bool {
        self.shared.is_healthy()
    }

    /// Why the group gave up ([`Group::with_max_restarts`], or an ordered
    /// member not ready in time), if it did.
    pub fn gave_up(&self) -> Option<Failure> {
        self.shared.gave_up()
    }

    /// Lets the tasks run on after this `Group` is dropped; nothing but the
    /// token the group was made with (or the runtime's end) stops them then.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// The group as one task, to be a member of another group: a supervision
    /// tree. Each attempt of the task starts every member (the ones already
    /// running are adopted by the first attempt) and runs until it is
    /// cancelled, which stops the members (in reverse order if ordered)
    /// within the group's grace ([`Group::with_grace`]), or until the group
    /// gives up ([`Group::with_max_restarts`]), which fails the attempt: the
    /// parent's policy then restarts the whole group after its backoff.
    ///
    /// The group task is heartbeat-less (its members beat for themselves)
    /// and keeps running when every member has ended, so that members can
    /// still be added through its [`handle`](Group::handle). Its members'
    /// statuses name it in [`TaskStatus::parent`](crate::TaskStatus::parent).
    ///
    /// ```
    /// use std::time::Duration;
    /// use supervised_core::{Context, Group, Registry, Spec, Task};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let registry = Registry::new();
    /// let worker = |name: &str| {
    ///     Task::new(Spec::new(name).registry(&registry), |ctx: Context| async move {
    ///         while !ctx.is_cancelled() {
    ///             ctx.heartbeat();
    ///             tokio::time::sleep(Duration::from_secs(1)).await;
    ///         }
    ///     })
    /// };
    /// let mut workers = Group::new();
    /// workers.spawn(worker("w1")).spawn(worker("w2"));
    /// let workers = workers
    ///     .with_max_restarts(3, Duration::from_secs(60))
    ///     .into_task("workers")
    ///     .with_spec(|spec| spec.registry(&registry));
    ///
    /// let mut root = Group::new();
    /// root.spawn(workers);
    /// tokio::time::sleep(Duration::from_millis(10)).await;
    /// let w1 = registry.status("w1").unwrap();
    /// assert_eq!(w1.parent.as_deref(), Some("workers"));
    /// root.shutdown(Duration::from_secs(5)).await;
    /// # }
    /// ```
    pub fn into_task(mut self, name: impl Into<String>) -> Task {
        self.detached = true;
        let shared = self.shared.clone();
        let grace = lock(&shared.config).grace;
        // The attempt stops its members within the group's grace and then
        // returns; the task's own grace is a margin above that.
        let spec = crate::run::Spec::new(name)
            .without_heartbeat()
            .grace(grace.saturating_add(Duration::from_secs(1)));
        Task::new(spec, move |ctx: Context| {
            let shared = shared.clone();
            async move { shared.run_as_task(ctx).await }
        })
    }

    /// Waits until every task has ended on its own, and returns how each ended,
    /// in the order they were added.
    pub async fn join(self) -> Vec<(String, Exit)> {
        let shared = self.shared.clone();
        shared.ended().await;
        shared.exits()
    }

    /// Cancels every task and waits at most `grace` in all for them to end.
    /// `grace` bounds the whole call, whatever grace a task declares: at the
    /// deadline the attempts still running are aborted. One that is dropped
    /// at once (it was awaiting something) is reported [`Exit::Cancelled`];
    /// one that is not (it is blocked in a synchronous call) is reported
    /// [`Exit::Abandoned`] and logged by name, and the registry shows it
    /// [`Stopping`](crate::TaskState::Stopping) until it is dropped. Returns
    /// how each task ended, in the order they were added.
    ///
    /// An [ordered](Group::ordered) group stops its members in reverse
    /// order, each once every later one has ended.
    pub async fn shutdown(self, grace: Duration) -> Vec<(String, Exit)> {
        let shared = self.shared.clone();
        shared.stop(grace).await;
        shared.exits()
    }
}

/// Lets the runtime drop the aborted attempts that can be dropped: a few
/// turns of the scheduler, no waiting on a timer.
async fn let_aborted_drop() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

fn is_ended(run: &Run) -> bool {
    matches!(run, Run::Ended(..))
}

/// Whether the registry has recorded the end of member `m`'s task: its
/// supervisor and its attempt have been dropped, or it never registered.
fn task_ended(m: &Member) -> bool {
    m.entry
        .as_ref()
        .is_none_or(|(_, entry)| entry.state().is_none_or(|state| state.is_final()))
}

/// The exit of a member whose supervisor was aborted at a shutdown's
/// deadline.
fn overdue_exit(m: &Member, grace: Duration) -> Exit {
    if task_ended(m) {
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
}
