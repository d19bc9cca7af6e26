//! The liveness registry: last heartbeat, state, restarts and last failure of
//! every task, by name.
//!
//! One process-wide registry ([`Registry::global`]) backs the free functions
//! [`heartbeat`], [`last_tick`], [`snapshot`], [`is_healthy`], [`status`] and
//! [`tasks`]. Tests and libraries that want isolation create their own with
//! [`Registry::new`] or [`Registry::with_clock`] and hand it to
//! [`Spec::registry`](crate::Spec::registry).
//!
//! # Names
//!
//! A supervised task is registered under its name when it starts, before its first
//! heartbeat, so "never beat" and "not configured" differ. A name that is only
//! ever passed to [`heartbeat`] gets a heartbeat-only entry, listed by [`snapshot`]
//! and checked by [`is_healthy`] like any other, but not by [`tasks`].
//!
//! **Two live tasks cannot share a name.** While a supervised task with a name is
//! running or backing off, a second task started under the same name does not run:
//! it logs an error and returns [`Exit::Failed`](crate::Exit::Failed) with a
//! failure of kind [`FailureKind::NameTaken`], and the registry keeps showing the
//! first one. Once a task has ended, its final state stays visible until another
//! task takes the name over or [`Registry::forget`] removes it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use crate::clock::{decode_wall, encode_wall, Clock, HotClock, ManualClock};

/// Where a supervised task is in its life.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// An attempt is running.
    Running,
    /// The last attempt ended and the next one starts after a delay.
    BackingOff,
    /// The task returned cleanly and its policy does not restart it.
    Completed,
    /// The task was cancelled (or its supervisor was dropped).
    Cancelled,
    /// The task gave up: its policy does not restart after a failure, or it hit its
    /// restart limit.
    Failed,
}

impl TaskState {
    /// The state in `snake_case`, as shown by the endpoints and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::BackingOff => "backing_off",
            TaskState::Completed => "completed",
            TaskState::Cancelled => "cancelled",
            TaskState::Failed => "failed",
        }
    }

    /// `true` once the task has ended for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Cancelled | TaskState::Failed
        )
    }

    fn to_u8(self) -> u8 {
        self as u8
    }

    fn from_u8(v: u8) -> TaskState {
        match v {
            0 => TaskState::Running,
            1 => TaskState::BackingOff,
            2 => TaskState::Completed,
            3 => TaskState::Cancelled,
            _ => TaskState::Failed,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure ended an attempt.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The attempt, or a child it spawned with [`Context::spawn`](crate::Context::spawn), panicked.
    Panic,
    /// The attempt returned `Err`.
    Error,
    /// The attempt sent no heartbeat for longer than its `stale_after` and was
    /// dropped (`on_stale = restart`).
    Stalled,
    /// The task never ran: a live task already holds its name.
    NameTaken,
}

impl FailureKind {
    /// The kind in `snake_case`, as shown by the endpoints and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Panic => "panic",
            FailureKind::Error => "error",
            FailureKind::Stalled => "stalled",
            FailureKind::NameTaken => "name_taken",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failure of a supervised task.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Failure {
    /// Panic, error return, stall, or a rejected name.
    pub kind: FailureKind,
    /// The panic message (or a note on its payload type), the error's `{:#}`
    /// rendering, or what stalled.
    pub message: String,
    /// Where the panic happened, as `file:line:column`, when known.
    pub location: Option<String>,
    /// A backtrace of the panic, captured when `RUST_BACKTRACE` (or
    /// `RUST_LIB_BACKTRACE`) asks for one.
    pub backtrace: Option<Arc<std::backtrace::Backtrace>>,
    /// The attempt that failed (1 for the first run).
    pub attempt: u32,
    /// When the failure was seen (wall clock, for display).
    pub at: SystemTime,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: String, attempt: u32) -> Self {
        Failure {
            kind,
            message,
            location: None,
            backtrace: None,
            attempt,
            at: SystemTime::now(),
        }
    }
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.message == other.message
            && self.location == other.location
            && self.attempt == other.attempt
            && self.at == other.at
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(loc) = &self.location {
            write!(f, " at {loc}")?;
        }
        Ok(())
    }
}

/// How many failures of each kind a task has had.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureCounts {
    /// Panics, of the attempt or of a child.
    pub panics: u64,
    /// `Err` returns.
    pub errors: u64,
    /// Attempts dropped for not beating.
    pub stalls: u64,
}

/// A point-in-time view of one supervised task.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub struct TaskStatus {
    /// The task's name.
    pub name: String,
    /// Where the task is in its life.
    pub state: TaskState,
    /// Attempts started after the first one.
    pub restarts: u64,
    /// The current (or last) attempt, 1 for the first run.
    pub attempt: u32,
    /// The time of the last heartbeat, `None` before the first.
    pub last_tick: Option<SystemTime>,
    /// How long ago the last heartbeat was, on the monotonic clock.
    pub since_last_tick: Option<Duration>,
    /// The task's staleness threshold, if it has one.
    pub stale_after: Option<Duration>,
    /// `true` when the task is running and its last heartbeat is older than
    /// `stale_after`.
    pub stale: bool,
    /// Not stale and not [`TaskState::Failed`].
    pub healthy: bool,
    /// Failures so far, by kind.
    pub failures: FailureCounts,
    /// The most recent failure.
    pub last_failure: Option<Failure>,
}

/// Supervision data of an entry; absent for heartbeat-only names.
#[derive(Debug)]
pub(crate) struct Supervision {
    state: AtomicU8,
    restarts: AtomicU64,
    attempt: AtomicU32,
    /// Set by the stall watchdog.
    stale: AtomicBool,
    stale_after: Option<Duration>,
    panics: AtomicU64,
    errors: AtomicU64,
    stalls: AtomicU64,
    /// Boxed: most tasks never fail, and an empty slot costs one word.
    last_failure: Mutex<Option<Box<Failure>>>,
}

/// One name in the registry.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Shared with the registry's map key.
    name: Arc<str>,
    /// The clock heartbeats stamp.
    hot: HotClock,
    /// Monotonic stamp of the last [`Entry::beat`], 0 if none.
    beat_mono: AtomicU64,
    /// Monotonic stamp and exact wall time of the last by-name heartbeat.
    named_mono: AtomicU64,
    named_wall: AtomicI64,
    /// Changes on every beat; sampled by the stall watchdog on tokio's timer.
    beats: AtomicU64,
    supervision: Option<Supervision>,
}

impl Entry {
    fn new(name: &str, clock: &Clock, supervision: Option<Supervision>) -> Self {
        Entry {
            name: Arc::from(name),
            hot: clock.hot(),
            beat_mono: AtomicU64::new(0),
            named_mono: AtomicU64::new(0),
            named_wall: AtomicI64::new(0),
            beats: AtomicU64::new(0),
            supervision,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The heartbeat hot path: a coarse clock read and three relaxed atomic
    /// operations; no lock, no system call. A lost increment under a race between two threads beating the same
    /// task is harmless: the counter still changes, which is all the watchdog
    /// looks for.
    #[inline]
    pub(crate) fn beat(&self) {
        let now = self.hot.now();
        self.beat_mono.store(now, Ordering::Relaxed);
        let n = self.beats.load(Ordering::Relaxed);
        self.beats.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    fn beat_named(&self, wall: SystemTime) {
        let now = self.hot.now();
        self.named_wall.store(encode_wall(wall), Ordering::Relaxed);
        self.named_mono.store(now, Ordering::Relaxed);
        let n = self.beats.load(Ordering::Relaxed);
        self.beats.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    pub(crate) fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    /// Monotonic stamp of the latest heartbeat of either kind, 0 if none.
    fn last_mono(&self) -> u64 {
        self.beat_mono
            .load(Ordering::Relaxed)
            .max(self.named_mono.load(Ordering::Relaxed))
    }

    fn last_tick(&self, clock: &Clock) -> Option<SystemTime> {
        let beat = self.beat_mono.load(Ordering::Relaxed);
        let named = self.named_mono.load(Ordering::Relaxed);
        if named == 0 && beat == 0 {
            None
        } else if named >= beat {
            Some(decode_wall(self.named_wall.load(Ordering::Relaxed)))
        } else {
            Some(clock.wall_of(beat))
        }
    }

    fn age(&self, now_mono: u64) -> Option<Duration> {
        match self.last_mono() {
            0 => None,
            last => Some(Duration::from_nanos(now_mono.saturating_sub(last))),
        }
    }

    fn sup(&self) -> &Supervision {
        self.supervision
            .as_ref()
            .expect("runtime calls are only made on supervised entries")
    }

    pub(crate) fn state(&self) -> Option<TaskState> {
        self.supervision
            .as_ref()
            .map(|s| TaskState::from_u8(s.state.load(Ordering::Acquire)))
    }

    pub(crate) fn set_state(&self, state: TaskState) {
        self.sup().state.store(state.to_u8(), Ordering::Release);
    }

    /// Moves to a final state unless one was already recorded.
    pub(crate) fn finish(&self, state: TaskState) {
        let sup = self.sup();
        let mut current = sup.state.load(Ordering::Acquire);
        while !TaskState::from_u8(current).is_final() {
            match sup.state.compare_exchange(
                current,
                state.to_u8(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        sup.stale.store(false, Ordering::Relaxed);
    }

    /// Records the start of an attempt, with the heartbeat that goes with it.
    pub(crate) fn start_attempt(&self, attempt: u32) {
        let sup = self.sup();
        sup.attempt.store(attempt, Ordering::Relaxed);
        if attempt > 1 {
            sup.restarts.fetch_add(1, Ordering::Relaxed);
        }
        sup.stale.store(false, Ordering::Relaxed);
        self.set_state(TaskState::Running);
        self.beat();
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.sup().restarts.load(Ordering::Relaxed)
    }

    pub(crate) fn set_stale(&self, stale: bool) {
        self.sup().stale.store(stale, Ordering::Relaxed);
    }

    pub(crate) fn record_failure(&self, failure: &Failure) {
        let sup = self.sup();
        let counter = match failure.kind {
            FailureKind::Panic => &sup.panics,
            FailureKind::Error => &sup.errors,
            FailureKind::Stalled => &sup.stalls,
            FailureKind::NameTaken => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        *lock(&sup.last_failure) = Some(Box::new(failure.clone()));
    }

    fn status(&self, clock: &Clock, now_mono: u64) -> Option<TaskStatus> {
        let sup = self.supervision.as_ref()?;
        let state = TaskState::from_u8(sup.state.load(Ordering::Acquire));
        let since_last_tick = self.age(now_mono);
        let late = match (sup.stale_after, since_last_tick) {
            (Some(limit), Some(age)) => age > limit,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let stale = state == TaskState::Running && (sup.stale.load(Ordering::Relaxed) || late);
        Some(TaskStatus {
            name: self.name.to_string(),
            state,
            restarts: sup.restarts.load(Ordering::Relaxed),
            attempt: sup.attempt.load(Ordering::Relaxed),
            last_tick: self.last_tick(clock),
            since_last_tick,
            stale_after: sup.stale_after,
            stale,
            healthy: !stale && state != TaskState::Failed,
            failures: FailureCounts {
                panics: sup.panics.load(Ordering::Relaxed),
                errors: sup.errors.load(Ordering::Relaxed),
                stalls: sup.stalls.load(Ordering::Relaxed),
            },
            last_failure: lock(&sup.last_failure).as_deref().cloned(),
        })
    }
}

/// Locks a mutex, ignoring poisoning: every value kept under these locks is
/// valid after any panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The map of names. Names come from the program (task names, heartbeat call
/// sites), not from its clients, so a fast non-keyed hash is safe here and
/// keeps a by-name heartbeat cheap.
type Names = HashMap<Arc<str>, Arc<Entry>, BuildHasherDefault<NameHasher>>;

/// A multiply-rotate hash over 8-byte words (the FxHash construction).
#[derive(Default, Clone, Copy)]
struct NameHasher(u64);

impl NameHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A liveness registry. Cheap to clone; clones share the same entries.
///
/// Most programs use the process-wide one through the free functions of this
/// crate; see the [module docs](self) for how names behave.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    entries: RwLock<Names>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("clock", &self.inner.clock)
            .field("entries", &self.read().len())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// Returned when a live task already holds a name.
#[derive(Debug)]
pub(crate) struct NameTaken;

impl Registry {
    /// A new, empty registry on the system clock.
    pub fn new() -> Self {
        Self::on(Clock::System)
    }

    /// A new, empty registry whose time is a [`ManualClock`].
    pub fn with_clock(clock: ManualClock) -> Self {
        Self::on(Clock::Manual(clock))
    }

    fn on(clock: Clock) -> Self {
        Registry {
            inner: Arc::new(Inner {
                clock,
                entries: RwLock::new(Names::default()),
            }),
        }
    }

    /// The process-wide registry used by the free functions and by every task
    /// that does not name another.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Names> {
        self.inner.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Names> {
        self.inner
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// `true` when both handles refer to the same registry.
    pub fn same_as(&self, other: &Registry) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Registers a supervised task (state [`TaskState::Running`], no heartbeat
    /// yet), unless a live task holds the name.
    pub(crate) fn register(
        &self,
        name: &str,
        stale_after: Option<Duration>,
    ) -> Result<Arc<Entry>, NameTaken> {
        let mut entries = self.write();
        if let Some(existing) = entries.get(name) {
            if existing.state().is_some_and(|s| !s.is_final()) {
                return Err(NameTaken);
            }
        }
        let supervision = Supervision {
            state: AtomicU8::new(TaskState::Running.to_u8()),
            restarts: AtomicU64::new(0),
            attempt: AtomicU32::new(0),
            stale: AtomicBool::new(false),
            stale_after,
            panics: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        };
        let entry = Arc::new(Entry::new(name, &self.inner.clock, Some(supervision)));
        entries.insert(entry.name.clone(), entry.clone());
        Ok(entry)
    }

    /// Records a heartbeat for `name` now: the wall time read during this call is
    /// what [`Registry::last_tick`] returns afterwards. Creates a heartbeat-only
    /// entry for a name not seen before; beats a supervised task's entry when the
    /// name is one.
    pub fn heartbeat(&self, name: &str) {
        let wall = self.inner.clock.now_wall();
        if let Some(entry) = self.read().get(name) {
            entry.beat_named(wall);
            return;
        }
        let mut entries = self.write();
        let entry = entries
            .entry(Arc::from(name))
            .or_insert_with_key(|key| Arc::new(Entry::new(key, &self.inner.clock, None)));
        entry.beat_named(wall);
    }

    /// The time of the last heartbeat of `name`; `None` if it never beat or is
    /// unknown.
    ///
    /// A time recorded by [`Registry::heartbeat`] is returned exactly; one
    /// recorded through a [`Context`](crate::Context) is accurate to
    /// [`RESOLUTION`](crate::clock::RESOLUTION).
    pub fn last_tick(&self, name: &str) -> Option<SystemTime> {
        self.read()
            .get(name)
            .and_then(|e| e.last_tick(&self.inner.clock))
    }

    /// A copy of the last heartbeat time of every name that has beaten.
    pub fn snapshot(&self) -> BTreeMap<String, SystemTime> {
        self.read()
            .iter()
            .filter_map(|(name, e)| Some((name.to_string(), e.last_tick(&self.inner.clock)?)))
            .collect()
    }

    /// Are all of `names` fresh?
    ///
    /// A name is stale when it never beat (or is unknown), or when its last
    /// heartbeat is *strictly* older than `stale_threshold` on the monotonic
    /// clock. Returns `(true, [])` when none is stale, otherwise `false` and the
    /// stale names in the order given (a name given twice is listed twice).
    pub fn is_healthy(&self, names: &[&str], stale_threshold: Duration) -> (bool, Vec<String>) {
        let now = self.inner.clock.now_mono();
        let entries = self.read();
        let stale: Vec<String> = names
            .iter()
            .filter(|name| {
                entries
                    .get(**name)
                    .and_then(|e| e.age(now))
                    .is_none_or(|age| age > stale_threshold)
            })
            .map(|name| (*name).to_owned())
            .collect();
        (stale.is_empty(), stale)
    }

    /// The status of the supervised task `name`; `None` for unknown and
    /// heartbeat-only names.
    pub fn status(&self, name: &str) -> Option<TaskStatus> {
        let now = self.inner.clock.now_mono();
        self.read()
            .get(name)
            .and_then(|e| e.status(&self.inner.clock, now))
    }

    /// The status of every supervised task, sorted by name.
    pub fn tasks(&self) -> Vec<TaskStatus> {
        let now = self.inner.clock.now_mono();
        let mut entries: Vec<Arc<Entry>> = self
            .read()
            .values()
            .filter(|e| e.supervision.is_some())
            .cloned()
            .collect();
        // Sort the small handles, not the large statuses.
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        entries
            .iter()
            .filter_map(|e| e.status(&self.inner.clock, now))
            .collect()
    }

    /// Removes `name` unless a live supervised task holds it. Returns whether an
    /// entry was removed.
    pub fn forget(&self, name: &str) -> bool {
        let mut entries = self.write();
        match entries.get(name) {
            Some(e) if e.state().is_some_and(|s| !s.is_final()) => false,
            Some(_) => entries.remove(name).is_some(),
            None => false,
        }
    }
}

/// [`Registry::heartbeat`] on the process-wide registry.
pub fn heartbeat(name: &str) {
    Registry::global().heartbeat(name)
}

/// [`Registry::last_tick`] on the process-wide registry.
pub fn last_tick(name: &str) -> Option<SystemTime> {
    Registry::global().last_tick(name)
}

/// [`Registry::snapshot`] on the process-wide registry.
pub fn snapshot() -> BTreeMap<String, SystemTime> {
    Registry::global().snapshot()
}

/// [`Registry::is_healthy`] on the process-wide registry.
pub fn is_healthy(names: &[&str], stale_threshold: Duration) -> (bool, Vec<String>) {
    Registry::global().is_healthy(names, stale_threshold)
}

/// [`Registry::status`] on the process-wide registry.
pub fn status(name: &str) -> Option<TaskStatus> {
    Registry::global().status(name)
}

/// [`Registry::tasks`] on the process-wide registry.
pub fn tasks() -> Vec<TaskStatus> {
    Registry::global().tasks()
}

/// The last heartbeat of one name, as [`Registry::last_beats`] reports it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastBeat {
    /// When it was (wall clock, for display).
    pub at: SystemTime,
    /// How long ago it was, on the monotonic clock.
    pub age: Duration,
    /// `true` for a supervised task, `false` for a heartbeat-only name.
    pub supervised: bool,
}

impl Registry {
    /// The last heartbeat of every name that has beaten, supervised tasks and
    /// heartbeat-only names alike, sorted by name, read at one instant.
    ///
    /// This is [`Registry::snapshot`] with the monotonic age of each heartbeat,
    /// which is what the liveness endpoint and the metrics show for names that
    /// [`Registry::tasks`] does not list.
    pub fn last_beats(&self) -> BTreeMap<String, LastBeat> {
        let now = self.inner.clock.now_mono();
        self.read()
            .iter()
            .filter_map(|(name, e)| {
                let at = e.last_tick(&self.inner.clock)?;
                let age = e.age(now)?;
                let supervised = e.supervision.is_some();
                Some((
                    name.to_string(),
                    LastBeat {
                        at,
                        age,
                        supervised,
                    },
                ))
            })
            .collect()
    }
}
