//! The supervision loop: run an attempt, catch how it ends, wait, run again.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Scope};
use crate::panic::{ensure_panic_hook, failure_from_panic, CatchPanic};
use crate::policy::{Backoff, Jitter, OnStale, RestartLimit, RestartPolicy, Rng, DEFAULT_GRACE};
use crate::registry::{Entry, Failure, FailureKind, Registry, TaskState};

/// What a supervised fn may return: `()` or `Result<(), E>` with `E: Display`.
///
/// `Ok(())` and `()` are clean returns; `Err(e)` is a failure whose message is
/// `e` rendered with `{:#}` (which for `anyhow::Error` includes its causes).
pub trait TaskOutput: Send + 'static {
    /// `Ok` for a clean return, `Err(message)` for a failure.
    fn into_outcome(self) -> Result<(), String>;
}

impl TaskOutput for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display + Send + 'static> TaskOutput for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:#}"))
    }
}

/// How a supervised task ended.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Exit {
    /// The task returned cleanly and its policy does not restart it.
    Completed,
    /// The task was cancelled through its token.
    Cancelled,
    /// The task gave up.
    #[non_exhaustive]
    Failed {
        /// Why it gave up.
        reason: GaveUp,
        /// The failure that ended it.
        failure: Failure,
    },
}

impl Exit {
    /// `true` for [`Exit::Completed`].
    pub fn is_completed(&self) -> bool {
        matches!(self, Exit::Completed)
    }

    /// `true` for [`Exit::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Exit::Cancelled)
    }

    /// `true` for [`Exit::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, Exit::Failed { .. })
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Completed => f.write_str("completed"),
            Exit::Cancelled => f.write_str("cancelled"),
            Exit::Failed { reason, failure } => write!(f, "failed ({reason}): {failure}"),
        }
    }
}

/// Why a task stopped restarting.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// Its policy is [`RestartPolicy::Never`].
    NoRestart,
    /// It would have needed more than `max_restarts` restarts within `within`.
    RestartLimit {
        /// The limit that was hit.
        max_restarts: u32,
        /// Its window.
        within: Duration,
    },
    /// It never ran: a live task holds its name.
    NameTaken,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GaveUp::NoRestart => f.write_str("restart policy is `never`"),
            GaveUp::RestartLimit {
                max_restarts,
                within,
            } => write!(f, "more than {max_restarts} restarts within {within:?}"),
            GaveUp::NameTaken => f.write_str("name held by a live task"),
        }
    }
}

/// A supervised task's name and policy: the configurable form of
/// [`run_with_recover`].
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
    name: String,
    backoff: Backoff,
    restart: RestartPolicy,
    limit: Option<RestartLimit>,
    escalate: Option<CancellationToken>,
    stale_after: Option<Duration>,
    on_stale: OnStale,
    grace: Duration,
    registry: Option<Registry>,
}

impl Spec {
    /// A task named `name` with the default policy: exponential backoff from 1 s
    /// to 30 s without jitter, reset after 60 s of running, restart on failure
    /// only, no restart limit, no staleness threshold, 5 s cancellation grace, the
    /// process-wide registry.
    pub fn new(name: impl Into<String>) -> Self {
        Spec {
            name: name.into(),
            backoff: Backoff::default(),
            restart: RestartPolicy::OnFailure,
            limit: None,
            escalate: None,
            stale_after: None,
            on_stale: OnStale::Report,
            grace: DEFAULT_GRACE,
            registry: None,
        }
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
        self.backoff = backoff;
        self
    }

    /// The first restart delay (default 1 s).
    pub fn backoff_initial(mut self, initial: Duration) -> Self {
        self.backoff.initial = initial;
        self
    }

    /// The largest restart delay (default 30 s).
    pub fn backoff_max(mut self, max: Duration) -> Self {
        self.backoff.max = max;
        self
    }

    /// Randomises delays (default [`Jitter::None`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.backoff.jitter = jitter;
        self
    }

    /// An attempt that runs at least this long resets the delay to its initial
    /// value (default 60 s).
    pub fn reset_after(mut self, reset_after: Duration) -> Self {
        self.backoff.reset_after = reset_after;
        self
    }

    /// Which endings restart the task (default [`RestartPolicy::OnFailure`]).
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Gives up with [`Exit::Failed`] when the task would need more than
    /// `max_restarts` restarts within any window of `within`.
    pub fn max_restarts(mut self, max_restarts: u32, within: Duration) -> Self {
        self.limit = Some(RestartLimit {
            max_restarts,
            within,
        });
        self
    }

    /// When the task gives up (restart limit or [`RestartPolicy::Never`]), also
    /// cancel `parent`, typically the whole service's token, so that the process
    /// stops and its orchestrator restarts it.
    pub fn escalate_to(mut self, parent: CancellationToken) -> Self {
        self.escalate = Some(parent);
        self
    }

    /// The task is stale when its last heartbeat is older than this. The stall
    /// watchdog checks every `stale_after / 10`, on tokio's timer.
    pub fn stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = Some(stale_after);
        self
    }

    /// What the watchdog does with a stale task (default [`OnStale::Report`]).
    /// Has no effect without [`Spec::stale_after`].
    pub fn on_stale(mut self, on_stale: OnStale) -> Self {
        self.on_stale = on_stale;
        self
    }

    /// How long an attempt has to return after cancellation before it is
    /// dropped (default 5 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Records the task in `registry` instead of the process-wide one.
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// The staleness threshold, if any.
    pub fn get_stale_after(&self) -> Option<Duration> {
        self.stale_after
    }

    /// The cancellation grace.
    pub fn get_grace(&self) -> Duration {
        self.grace
    }

    /// The registry named with [`Spec::registry`], if any.
    pub fn get_registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// Supervises `f`: runs `f(ctx)`, and after each ending applies the policy,
    /// until the task completes, is cancelled or gives up.
    ///
    /// Each attempt runs as its own tokio task, so the returned future must be
    /// polled inside a tokio runtime. Dropping the returned future stops the
    /// attempt and its children and records the task as
    /// [`TaskState::Cancelled`].
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
        supervise(self, token, f)
    }

    /// [`Spec::run`] on a new tokio task.
    pub fn spawn<F, Fut>(self, token: CancellationToken, f: F) -> JoinHandle<Exit>
    where
        F: FnMut(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        tokio::spawn(self.run(token, f))
    }
}

/// Supervises `f` under `name` with the default policy ([`Spec::new`]): the Go
/// `RunWithRecover`.
///
/// A panic or an `Err` is logged and `f` runs again after 1 s, 2 s, 4 s ... up to
/// 30 s; a clean return ends the task with [`Exit::Completed`]; cancelling
/// `token` ends it with [`Exit::Cancelled`], at once during a backoff.
///
/// ```no_run
/// use supervised_core::{run_with_recover, CancellationToken, Context};
///
/// # async fn demo() {
/// let token = CancellationToken::new();
/// let handle = tokio::spawn(run_with_recover(token.clone(), "sweep", |ctx: Context| async move {
///     while !ctx.is_cancelled() {
///         ctx.heartbeat();
///         tokio::time::sleep(std::time::Duration::from_secs(5)).await;
///     }
/// }));
/// token.cancel();
/// assert!(handle.await.unwrap().is_cancelled());
/// # }
/// ```
pub fn run_with_recover<F, Fut>(
    token: CancellationToken,
    name: impl Into<String>,
    f: F,
) -> impl Future<Output = Exit> + Send + 'static
where
    F: FnMut(Context) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    Spec::new(name).run(token, f)
}

/// How one attempt ended.
enum Ending {
    Clean,
    Failed(Failure),
    Cancelled,
}

/// Records `Cancelled` if the supervisor is dropped before it finished, and
/// stops the running attempt with it.
struct Guard {
    entry: Arc<Entry>,
    attempt: Option<JoinHandle<Result<(), Failure>>>,
    scope: Option<Arc<Scope>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop_attempt();
        self.entry.finish(TaskState::Cancelled);
    }
}

impl Guard {
    fn stop_attempt(&mut self) {
        if let Some(h) = self.attempt.take() {
            h.abort();
        }
        if let Some(scope) = self.scope.take() {
            scope.close();
        }
    }
}

async fn supervise<F, Fut>(spec: Spec, token: CancellationToken, mut f: F) -> Exit
where
    F: FnMut(Context) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    ensure_panic_hook();
    let registry = spec
        .registry
        .clone()
        .unwrap_or_else(|| Registry::global().clone());
    let entry = match registry.register(&spec.name, spec.stale_after) {
        Ok(entry) => entry,
        Err(_) => {
            let failure = Failure::new(
                FailureKind::NameTaken,
                format!("a live task is already named `{}`", spec.name),
                0,
            );
            tracing::error!(task = %spec.name, "supervised task not started: {}", failure.message);
            return Exit::Failed {
                reason: GaveUp::NameTaken,
                failure,
            };
        }
    };
    let mut guard = Guard {
        entry: entry.clone(),
        attempt: None,
        scope: None,
    };
    let mut attempt: u32 = 0;
    let mut streak = Streak {
        length: 0,
        rng: (spec.backoff.jitter != Jitter::None).then(Rng::from_entropy),
        recent_restarts: VecDeque::new(),
    };

    loop {
        if token.is_cancelled() {
            return finish(&entry, Exit::Cancelled);
        }
        attempt = attempt.saturating_add(1);
        entry.start_attempt(attempt);
        tracing::debug!(task = %spec.name, attempt, "supervised attempt started");
        let started = Instant::now();

        let scope = Arc::new(Scope::default());
        let ctx = Context::new(entry.clone(), token.clone(), attempt, scope.clone());
        let fut = f(ctx);
        let handle = tokio::spawn(async move {
            match CatchPanic::new(fut).await {
                Ok(output) => output
                    .into_outcome()
                    .map_err(|message| Failure::new(FailureKind::Error, message, attempt)),
                Err(payload) => Err(failure_from_panic(payload, attempt)),
            }
        });
        guard.attempt = Some(handle);
        guard.scope = Some(scope.clone());

        let ending = watch_attempt(&spec, &token, &entry, &mut guard, &scope, attempt).await;
        guard.stop_attempt();
        // Decided in a plain fn, so that nothing it uses is kept in this
        // future's state across the backoff below.
        let delay = match decide(&spec, &token, &entry, ending, started, attempt, &mut streak) {
            Ok(delay) => delay,
            Err(exit) => return exit,
        };
        entry.set_state(TaskState::BackingOff);
        // A zero delay restarts at once: a timer would round it up to the
        // timer wheel's 1 ms granularity.
        if !delay.is_zero() {
            tokio::select! {
                biased;
                _ = token.cancelled() => return finish(&entry, Exit::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
        }
        if spec.limit.is_some() {
            streak.recent_restarts.push_back(Instant::now());
        }
    }
}

/// What the restart decisions remember between attempts.
struct Streak {
    /// Restarts since the delay was last reset.
    length: u32,
    rng: Option<Rng>,
    /// When the restarts inside the limit's window happened.
    recent_restarts: VecDeque<Instant>,
}

/// After an attempt: records its failure and decides between a restart after
/// a delay (`Ok`) and the end of the task (`Err`).
fn decide(
    spec: &Spec,
    token: &CancellationToken,
    entry: &Entry,
    ending: Ending,
    started: Instant,
    attempt: u32,
    streak: &mut Streak,
) -> Result<Duration, Exit> {
    let name = spec.name.as_str();
    if token.is_cancelled() {
        return Err(finish(entry, Exit::Cancelled));
    }
    if started.elapsed() >= spec.backoff.reset_after {
        streak.length = 0;
    }
    let failure = match ending {
        Ending::Cancelled => return Err(finish(entry, Exit::Cancelled)),
        Ending::Clean if spec.restart != RestartPolicy::Always => {
            tracing::debug!(task = name, attempt, "supervised task completed");
            return Err(finish(entry, Exit::Completed));
        }
        Ending::Clean => None,
        Ending::Failed(failure) => {
            entry.record_failure(&failure);
            Some(failure)
        }
    };

    let give_up = match (&failure, spec.restart) {
        (Some(_), RestartPolicy::Never) => Some(GaveUp::NoRestart),
        _ => spec.limit.and_then(|limit| {
            let now = Instant::now();
            let recent = &mut streak.recent_restarts;
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= limit.within)
            {
                recent.pop_front();
            }
            (recent.len() >= limit.max_restarts as usize).then_some(GaveUp::RestartLimit {
                max_restarts: limit.max_restarts,
                within: limit.within,
            })
        }),
    };

    if let Some(reason) = give_up {
        let failure = failure.unwrap_or_else(|| {
            Failure::new(
                FailureKind::Error,
                "returned cleanly too often under restart policy `always`".to_owned(),
                attempt,
            )
        });
        log_failure(name, &failure, entry.restarts(), None, Some(&reason));
        if let Some(parent) = &spec.escalate {
            parent.cancel();
        }
        return Err(finish(entry, Exit::Failed { reason, failure }));
    }

    let delay = match streak.rng.as_mut() {
        Some(rng) => spec.backoff.jittered_delay(streak.length, rng.next_u64()),
        None => spec.backoff.delay(streak.length),
    };
    streak.length = streak.length.saturating_add(1);
    match &failure {
        Some(failure) => log_failure(name, failure, entry.restarts(), Some(delay), None),
        None => tracing::info!(
            task = name,
            attempt,
            next_delay = ?delay,
            "supervised task returned; restarting (policy `always`)"
        ),
    }
    Ok(delay)
}

/// Waits for the attempt to end, a child to panic, the watchdog to find it
/// stalled, or cancellation (then at most the grace period).
async fn watch_attempt(
    spec: &Spec,
    token: &CancellationToken,
    entry: &Entry,
    guard: &mut Guard,
    scope: &Scope,
    attempt: u32,
) -> Ending {
    let handle = guard.attempt.as_mut().expect("attempt was just spawned");
    // On the heap, and only for tasks that have one: most tasks do not, and
    // this future's size is memory every supervised task pays for.
    let mut watchdog = spec
        .stale_after
        .map(|stale_after| Box::pin(watchdog(spec, stale_after, entry, attempt)));
    let stalled = async {
        match watchdog.as_mut() {
            Some(watchdog) => watchdog.await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        biased;
        joined = &mut *handle => Some(from_join(joined, attempt)),
        failure = scope.first_child_failure() => Some(Ending::Failed(failure)),
        failure = stalled => Some(Ending::Failed(failure)),
        _ = token.cancelled() => None,
    };
    match ending {
        Some(ending) => ending,
        None => {
            // Cancelled: give the attempt its grace, then drop it.
            if tokio::time::timeout(spec.grace, &mut *handle)
                .await
                .is_err()
            {
                tracing::warn!(
                    task = %spec.name,
                    attempt,
                    grace = ?spec.grace,
                    "supervised task did not stop within its grace period; dropping it"
                );
            }
            Ending::Cancelled
        }
    }
}

fn from_join(joined: Result<Result<(), Failure>, tokio::task::JoinError>, attempt: u32) -> Ending {
    match joined {
        Ok(Ok(())) => Ending::Clean,
        Ok(Err(failure)) => Ending::Failed(failure),
        // The attempt task was aborted or its runtime is shutting down.
        Err(e) if e.is_cancelled() => Ending::Cancelled,
        Err(e) => Ending::Failed(Failure::new(
            FailureKind::Panic,
            format!("attempt task failed: {e}"),
            attempt,
        )),
    }
}

/// The stall watchdog. Samples the entry's beat counter on tokio's timer every
/// `stale_after / 10`; a counter unchanged for longer than `stale_after` marks
/// the task stale. With [`OnStale::Restart`] it then resolves with a failure of
/// kind `Stalled`; otherwise it keeps watching (and un-marks the task when beats
/// resume).
async fn watchdog(spec: &Spec, stale_after: Duration, entry: &Entry, attempt: u32) -> Failure {
    let period = (stale_after / 10).max(Duration::from_millis(1));
    let mut last_beats = entry.beats();
    let mut last_change = Instant::now();
    let mut stale = false;
    let mut ticks = tokio::time::interval_at(last_change + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = ticks.tick().await;
        let beats = entry.beats();
        if beats != last_beats {
            last_beats = beats;
            last_change = now;
            if stale {
                stale = false;
                entry.set_stale(false);
                tracing::info!(task = %spec.name, attempt, "supervised task is beating again");
            }
            continue;
        }
        let quiet = now.duration_since(last_change);
        if quiet > stale_after && !stale {
            stale = true;
            entry.set_stale(true);
            match spec.on_stale {
                OnStale::Restart => {
                    return Failure::new(
                        FailureKind::Stalled,
                        format!("no heartbeat for {quiet:?} (stale_after {stale_after:?})"),
                        attempt,
                    );
                }
                _ => tracing::warn!(
                    task = %spec.name,
                    attempt,
                    quiet = ?quiet,
                    stale_after = ?stale_after,
                    "supervised task is stale: no heartbeat"
                ),
            }
        }
    }
}

fn finish(entry: &Entry, exit: Exit) -> Exit {
    let state = match &exit {
        Exit::Completed => TaskState::Completed,
        Exit::Cancelled => TaskState::Cancelled,
        Exit::Failed { .. } => TaskState::Failed,
    };
    entry.finish(state);
    exit
}

fn log_failure(
    name: &str,
    failure: &Failure,
    restarts: u64,
    next_delay: Option<Duration>,
    gave_up: Option<&GaveUp>,
) {
    let location = failure.location.as_deref();
    // Displayed, not debug-escaped: a backtrace is read line by line.
    let backtrace = failure
        .backtrace
        .as_ref()
        .map(|b| tracing::field::display(b.as_ref()));
    match gave_up {
        None => tracing::error!(
            task = name,
            attempt = failure.attempt,
            restarts,
            next_delay = ?next_delay.unwrap_or_default(),
            kind = %failure.kind,
            location,
            error = %failure.message,
            backtrace,
            "supervised task failed; restarting after backoff"
        ),
        Some(reason) => tracing::error!(
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
    }
}
