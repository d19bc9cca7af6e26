//! A task's specification: its name, registry and policy, set by the
//! builder calls, and how it is run, spawned, or started as a group member.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::policy::{
    Backoff, Jitter, OnStale, RestartLimit, RestartPolicy, DEFAULT_BLOCKING_AFTER, DEFAULT_GRACE,
};
use crate::registry::{Entry, Registry, Settings};

use super::singleton::SharedLease;
use super::supervise::{register, supervise, supervise_parts};
use super::{Control, Exit, TaskOutput};

/// A supervised task's name and policy: the configurable form of
/// [`run_with_recover`](super::run_with_recover).
///
/// ```no_run
/// use std::time::Duration;
/// use supervised_core::{CancellationToken, Context, RestartPolicy, Spec};
///
/// # async fn demo() {
/// let token = CancellationToken::new();
/// let exit = Spec::new("relay")
///     .backoff_initial(Duration::from_millis(200))
///     .backoff_max(Duration::from_secs(10))
///     .max_restarts(5, Duration::from_secs(60))
///     .stale_after(Duration::from_secs(30))
///     .run(token, |ctx: Context| async move {
///         while !ctx.is_cancelled() {
///             ctx.heartbeat();
///             tokio::time::sleep(Duration::from_secs(1)).await;
///         }
///     })
///     .await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Spec {
    pub(super) name: String,
    /// Shared with the specs this one was cloned from or into, and by every
    /// spec that keeps the default policy; a builder call copies it first
    /// when it is shared (copy on write). The supervisor keeps its spec for
    /// the task's whole life, so this is memory every task pays for.
    pub(crate) policy: Arc<Policy>,
    pub(super) registry: Option<Registry>,
}

/// The part of a [`Spec`] that tasks share: everything but the name and the
/// registry.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) backoff: Backoff,
    pub(crate) restart: RestartPolicy,
    pub(crate) limit: Option<RestartLimit>,
    /// What the registry entry of each task shares: the same `Arc`.
    pub(crate) health: Arc<Settings>,
    pub(crate) on_stale: OnStale,
    pub(crate) grace: Duration,
    pub(crate) lease_from_group: bool,
    pub(crate) lease: Option<SharedLease>,
    pub(crate) escalate: Option<CancellationToken>,
}

impl Policy {
    /// The default policy, shared by every spec that does not change it.
    fn shared_default() -> Arc<Policy> {
        static DEFAULT: OnceLock<Arc<Policy>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                Arc::new(Policy {
                    backoff: Backoff::default(),
                    restart: RestartPolicy::OnFailure,
                    limit: None,
                    health: Arc::new(Settings {
                        stale_after: None,
                        blocking_after: DEFAULT_BLOCKING_AFTER,
                        expects_heartbeat: true,
                        quarantine: crate::isolate::Policy::default(),
                    }),
                    on_stale: OnStale::Report,
                    grace: DEFAULT_GRACE,
                    lease_from_group: false,
                    lease: None,
                    escalate: None,
                })
            })
            .clone()
    }
}

impl Spec {
    /// A task named `name` with the default policy: exponential backoff from 1 s
    /// to 30 s without jitter, reset after 60 s of running, restart on failure
    /// only, no restart limit, no staleness threshold, 5 s cancellation grace, the
    /// process-wide registry.
    pub fn new(name: impl Into<String>) -> Self {
        Spec {
            name: name.into(),
            policy: Policy::shared_default(),
            registry: None,
        }
    }

    /// The policy, copied first if another spec shares it.
    fn policy_mut(&mut self) -> &mut Policy {
        Arc::make_mut(&mut self.policy)
    }

    /// The health settings, copied first if another spec or a registry
    /// entry shares them.
    fn health_mut(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.policy_mut().health)
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Changes the task's name, e.g. to run one supervised fn twice.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the whole backoff policy.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy_mut().backoff = backoff;
        self
    }

    /// The first restart delay (default 1 s).
    pub fn backoff_initial(mut self, initial: Duration) -> Self {
        self.policy_mut().backoff.initial = initial;
        self
    }

    /// The largest restart delay (default 30 s).
    pub fn backoff_max(mut self, max: Duration) -> Self {
        self.policy_mut().backoff.max = max;
        self
    }

    /// Randomises delays (default [`Jitter::None`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.policy_mut().backoff.jitter = jitter;
        self
    }

    /// An attempt that runs at least this long resets the delay to its initial
    /// value (default 60 s).
    pub fn reset_after(mut self, reset_after: Duration) -> Self {
        self.policy_mut().backoff.reset_after = reset_after;
        self
    }

    /// Which endings restart the task (default [`RestartPolicy::OnFailure`]).
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.policy_mut().restart = policy;
        self
    }

    /// Gives up with [`Exit::Failed`] when the task would need more than
    /// `max_restarts` restarts within any window of `within`.
    pub fn max_restarts(mut self, max_restarts: u32, within: Duration) -> Self {
        self.policy_mut().limit = Some(RestartLimit {
            max_restarts,
            within,
        });
        self
    }

    /// When the task gives up (restart limit or [`RestartPolicy::Never`]), also
    /// cancel `parent`, typically the whole service's token, so that the process
    /// stops and its orchestrator restarts it.
    pub fn escalate_to(mut self, parent: CancellationToken) -> Self {
        self.policy_mut().escalate = Some(parent);
        self
    }

    /// The task is stale when it has gone longer than this without a
    /// heartbeat: counted from its last heartbeat, or from when it started if
    /// it never beat, in every state until it ends (running, backing off,
    /// stopping). A task that fails every attempt before it beats is
    /// therefore stale after `stale_after`.
    ///
    /// A stall watchdog on tokio's timer checks every `stale_after / 10` for
    /// the task's whole life, so staleness is also seen on tokio's paused
    /// clock; status reads also compare the last heartbeat with the registry's
    /// clock, so it is also seen while the task's runtime is blocked.
    pub fn stale_after(mut self, stale_after: Duration) -> Self {
        self.health_mut().stale_after = Some(stale_after);
        self
    }

    /// What the watchdog does with a stale task (default [`OnStale::Report`]).
    /// Has no effect without [`Spec::stale_after`].
    pub fn on_stale(mut self, on_stale: OnStale) -> Self {
        self.policy_mut().on_stale = on_stale;
        self
    }

    /// How long an attempt has to return after cancellation before it is
    /// aborted (default 5 s). The task ends only once the aborted attempt and
    /// its children have been dropped.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.policy_mut().grace = grace;
        self
    }

    /// One poll of an attempt that runs longer than this blocks its worker
    /// thread (a synchronous call, a CPU loop without `.await`); the task's
    /// status then shows [`TaskStatus::blocked_for`](crate::TaskStatus::blocked_for)
    /// and is unhealthy until the poll returns (default 1 s). Such a poll is
    /// logged at WARN with its duration when it returns, and counted in
    /// [`FailureCounts::blocked`](crate::FailureCounts::blocked), once a status
    /// read or the task's stall watchdog has seen it.
    ///
    /// Pass [`Duration::MAX`] to never report blocking.
    pub fn blocking_after(mut self, blocking_after: Duration) -> Self {
        self.health_mut().blocking_after = blocking_after;
        self
    }

    /// Declares that the task never beats: it has no loop that beats and
    /// no [`Context`] to call [`Context::heartbeat`] on. Readiness (the
    /// `/readyz` probe, systemd's `READY=1`) then does not wait for a first
    /// beat that can never come. Its health by name
    /// ([`Registry::is_healthy`]) still says stale, since it never beats, and
    /// with [`Spec::stale_after`] it becomes stale like any silent task.
    ///
    /// `#[supervised]` sets this on fns that have no heartbeat site.
    pub fn without_heartbeat(mut self) -> Self {
        self.health_mut().expects_heartbeat = false;
        self
    }

    /// How long a key that failed inside [`Context::isolate`] stays
    /// quarantined: `initial` after its first failure, doubling with each
    /// failure in a row, up to `max` (defaults 1 s and 5 minutes:
    /// [`DEFAULT_QUARANTINE_INITIAL`](crate::DEFAULT_QUARANTINE_INITIAL),
    /// [`DEFAULT_QUARANTINE_MAX`](crate::DEFAULT_QUARANTINE_MAX)). A success
    /// clears it. `max` below `initial` is raised to `initial`.
    pub fn quarantine(mut self, initial: Duration, max: Duration) -> Self {
        self.health_mut().quarantine.initial = initial;
        self.health_mut().quarantine.max = max.max(initial);
        self
    }

    /// How many keys the task keeps quarantined at most (default
    /// [`DEFAULT_MAX_QUARANTINED`](crate::DEFAULT_MAX_QUARANTINED), 10,000;
    /// at least 1): past it, the oldest quarantine is dropped and counted in
    /// [`IsolatedCounts::evicted`](crate::IsolatedCounts::evicted), so that
    /// keys from data cannot grow memory without bound.
    pub fn max_quarantined(mut self, max: usize) -> Self {
        self.health_mut().quarantine.capacity = max.max(1);
        self
    }

    /// The quarantine set with [`Spec::quarantine`]: `(initial, max)`.
    pub fn get_quarantine(&self) -> (Duration, Duration) {
        (
            self.policy.health.quarantine.initial,
            self.policy.health.quarantine.max,
        )
    }

    /// `false` after [`Spec::without_heartbeat`].
    pub fn expects_heartbeat(&self) -> bool {
        self.policy.health.expects_heartbeat
    }

    /// The threshold set with [`Spec::blocking_after`].
    pub fn get_blocking_after(&self) -> Duration {
        self.policy.health.blocking_after
    }

    /// What the task's registry entry keeps: shared, not copied.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.policy.health.clone()
    }

    /// Makes the task a singleton across the replicas of a service: before
    /// each attempt it takes `lease` (named after the task) and it runs only
    /// while it holds it; meanwhile it is in
    /// [`TaskState::Standby`](crate::TaskState::Standby). See the
    /// [`lease`](crate::lease) module for the timing and what it guarantees.
    ///
    /// The attempt's grace is capped at a quarter of the lease's TTL, so that
    /// an attempt that must stop for a lost lease is gone before the lease
    /// can expire. [`Context::fencing_token`] gives each attempt its grant's
    /// token. Losing the lease is not a failure: the task goes back to
    /// standby, and the restart limit does not count the next start.
    ///
    /// The lease is held for one attempt at a time and released when it
    /// ends. A task that ends cleanly without being restarted
    /// ([`RestartPolicy::OnFailure`], the default) releases it for good, so
    /// another replica then runs it too: a one-shot job runs once per
    /// replica. Loops that run for the life of the service are what
    /// singletons are for.
    ///
    /// ```
    /// use std::time::Duration;
    /// use supervised_core::lease::Memory;
    /// use supervised_core::{CancellationToken, Context, Registry, Spec, TaskState};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (replica_a, replica_b) = (Registry::new(), Registry::new());
    /// let store = Memory::new("a");
    /// let token = CancellationToken::new();
    /// for (registry, lease) in [(&replica_a, store.clone()), (&replica_b, store.replica("b"))] {
    ///     Spec::new("scheduler")
    ///         .singleton(lease)
    ///         .registry(registry)
    ///         .spawn(token.clone(), |ctx: Context| async move {
    ///             assert!(ctx.fencing_token().is_some());
    ///             ctx.cancelled().await;
    ///         });
    /// }
    /// tokio::time::sleep(Duration::from_secs(1)).await;
    /// assert_eq!(replica_a.status("scheduler").unwrap().state, TaskState::Running);
    /// assert_eq!(replica_b.status("scheduler").unwrap().state, TaskState::Standby);
    /// # token.cancel();
    /// # }
    /// ```
    pub fn singleton<L: crate::lease::Lease>(mut self, lease: L) -> Self {
        self.policy_mut().lease = Some(SharedLease(Arc::new(lease)));
        if self.policy.lease_from_group {
            self.policy_mut().lease_from_group = false;
        }
        self
    }

    /// Makes the task a singleton whose lease the [`Group`](crate::Group) it
    /// is spawned in gives ([`Group::with_lease`](crate::Group::with_lease),
    /// `spawn_all!(lease = ...; ...)`): what `#[supervised(singleton = true)]`
    /// sets. Started without one, the task does not run and ends with
    /// [`GaveUp::NoLease`](super::GaveUp::NoLease).
    pub fn singleton_from_group(mut self) -> Self {
        if self.policy.lease.is_none() {
            self.policy_mut().lease_from_group = true;
        }
        self
    }

    /// `true` for a singleton task, with its lease or waiting for its
    /// group's.
    pub fn is_singleton(&self) -> bool {
        self.policy.lease.is_some() || self.policy.lease_from_group
    }

    /// Gives `lease` to a task that waits for its group's.
    pub(crate) fn with_group_lease(mut self, lease: &Arc<dyn crate::lease::Lease>) -> Self {
        if self.policy.lease_from_group && self.policy.lease.is_none() {
            self.policy_mut().lease = Some(SharedLease(lease.clone()));
            self.policy_mut().lease_from_group = false;
        }
        self
    }

    /// Records the task in `registry` instead of the process-wide one.
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// The staleness threshold, if any.
    pub fn get_stale_after(&self) -> Option<Duration> {
        self.policy.health.stale_after
    }

    /// The cancellation grace.
    pub fn get_grace(&self) -> Duration {
        self.policy.grace
    }

    /// The registry named with [`Spec::registry`], if any.
    pub fn get_registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// Supervises `f`: runs `f(ctx)`, and after each ending applies the policy,
    /// until the task completes, is cancelled or gives up.
    ///
    /// The task's own token ([`Context::token`]) is a child of `token`:
    /// cancelling `token` stops the task, and the task cancelling its own
    /// token stops only it.
    /// A panic in `f` itself (not only in the future it returns) is a failure
    /// of that attempt. Two attempts never overlap: the next one, `f`'s call
    /// included, starts only after the previous attempt's future and its
    /// children have been dropped, and the returned future resolves only after
    /// that too.
    ///
    /// Each attempt runs as its own tokio task, so the returned future must be
    /// polled inside a tokio runtime. Dropping the returned future aborts the
    /// attempt and its children; the task is recorded as
    /// [`TaskState::Cancelled`](crate::TaskState::Cancelled) once they are dropped.
    pub fn run<F, Fut>(
        self,
        token: CancellationToken,
        f: F,
    ) -> impl Future<Output = Exit> + Send + 'static
    where
        F: FnMut(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        supervise(self, token, None, f)
    }

    /// [`Spec::run`] on a new tokio task. The task is in the registry when
    /// this returns.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`].
    pub fn spawn<F, Fut>(self, token: CancellationToken, f: F) -> JoinHandle<Exit>
    where
        F: FnMut(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        self.start(token, f).1
    }

    /// Registers the task now and supervises it on a new tokio task; also
    /// returns its registry and entry, `None` when the name was taken.
    pub(crate) fn start<F, Fut>(
        self,
        token: CancellationToken,
        f: F,
    ) -> (Option<(Registry, Arc<Entry>)>, JoinHandle<Exit>)
    where
        F: FnMut(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        // Fails before anything is registered when there is no runtime.
        let runtime = tokio::runtime::Handle::current();
        match register(&self) {
            Ok(registered) => {
                let handle = runtime.spawn(supervise(self, token, Some(registered.clone()), f));
                (Some(registered), handle)
            }
            Err(exit) => (None, runtime.spawn(std::future::ready(exit))),
        }
    }

    /// Registers a member of a group now (under `parent`, the path of the
    /// group tasks it runs in) and returns its supervisor, to be spawned:
    /// `Err` with the exit when it cannot run. The supervisor gives the
    /// policy and the factory back at the end.
    #[allow(clippy::type_complexity)]
    pub(crate) fn member<F, Fut>(
        self,
        token: CancellationToken,
        control: Arc<Control>,
        parent: Option<&Arc<Entry>>,
        f: F,
    ) -> (
        Option<(Registry, Arc<Entry>)>,
        Result<impl Future<Output = (Exit, Spec, F)> + Send + 'static, (Exit, Spec, F)>,
    )
    where
        F: FnMut(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        match register(&self) {
            Ok(registered) => {
                if let Some(parent) = parent {
                    registered.1.set_parent(parent);
                }
                let fut = supervise_parts(self, token, Some(registered.clone()), Some(control), f);
                (Some(registered), Ok(fut))
            }
            Err(exit) => (None, Err((exit, self, f))),
        }
    }
}
