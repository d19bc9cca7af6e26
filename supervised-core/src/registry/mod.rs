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
//! task takes the name over, [`Registry::forget`] removes it, or the
//! registry's retention of finished tasks has passed
//! ([`Registry::set_retain_finished`], 10 minutes by default).
//!
//! # Scale
//!
//! The registry is built for 10^5 names (per-tenant and per-connection loops):
//! the map is sharded with a seeded hasher and keeps short names inline;
//! views read one shard at a time, taking handles or inline names (under
//! the lock they allocate nothing else but a list of the shard's slots)
//! and allocating their results outside any lock; [`Registry::is_healthy`]
//! locks each shard once per batch of 4,096 of the names it asks about;
//! and a by-name heartbeat repeated on one thread skips the lookup.
//! BENCHMARKS.md has the figures.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use smol_str::SmolStr;

use crate::clock::{Clock, ManualClock};
use crate::events::{Event, EventKind, Events};

mod cache;
mod entry;
mod map;
mod name;
mod status;

use map::{Names, Slot};

pub(crate) use entry::{lock, Entry, Settings};
pub use name::{check_name, NameProblem, MAX_NAME_LEN};
pub use status::{Failure, FailureCounts, FailureKind, LeaseStatus, TaskState, TaskStatus};

/// How long a finished task stays in a registry by default: see
/// [`Registry::set_retain_finished`].
pub const DEFAULT_RETAIN_FINISHED: Duration = Duration::from_secs(600);

/// The longest pause between two sweeps of finished tasks; views leave out
/// expired tasks in between.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A liveness registry. Cheap to clone; clones share the same entries.
///
/// Most programs use the process-wide one through the free functions of this
/// crate; see the [module docs](self) for how names behave.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    clock: Clock,
    entries: Names,
    /// Nanoseconds a finished task is kept.
    retain_finished: AtomicU64,
    /// Registry-clock stamp of the next sweep of finished tasks.
    next_sweep: AtomicU64,
    events: Events,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("clock", &self.inner.clock)
            .field("entries", &self.inner.entries.len())
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
                entries: Names::default(),
                retain_finished: AtomicU64::new(nanos(DEFAULT_RETAIN_FINISHED)),
                next_sweep: AtomicU64::new(0),
                events: Events::new(),
            }),
        }
    }

    /// The process-wide registry used by the free functions and by every task
    /// that does not name another.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// `true` when both handles refer to the same registry.
    pub fn same_as(&self, other: &Registry) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Keeps a finished task (completed, cancelled or failed) for `retain`
    /// after it ended, then forgets it: it disappears from every view,
    /// endpoint and metric. Default [`DEFAULT_RETAIN_FINISHED`] (10 minutes),
    /// so that names made per tenant or per connection do not grow memory
    /// and metric cardinality without bound.
    ///
    /// Time is the registry's clock (a [`ManualClock`] drives it in tests),
    /// and eviction happens at the latest on the next registration or view
    /// after the retention has passed: no background thread. Heartbeat-only
    /// names are kept; [`Registry::forget`] removes those.
    ///
    /// ```
    /// use std::time::Duration;
    /// use supervised_core::{ManualClock, Registry};
    ///
    /// Registry::global().set_retain_finished(Duration::from_secs(3600));
    /// let registry = Registry::with_clock(ManualClock::new());
    /// registry.set_retain_finished(Duration::from_secs(60));
    /// assert_eq!(registry.retain_finished(), Duration::from_secs(60));
    /// ```
    pub fn set_retain_finished(&self, retain: Duration) {
        self.inner
            .retain_finished
            .store(nanos(retain), Ordering::Relaxed);
        self.inner.next_sweep.store(0, Ordering::Relaxed);
    }

    /// How long a finished task is kept: see [`Registry::set_retain_finished`].
    pub fn retain_finished(&self) -> Duration {
        Duration::from_nanos(self.inner.retain_finished.load(Ordering::Relaxed))
    }

    /// `true` when `entry` is a task that ended longer than the retention
    /// ago.
    fn expired(&self, entry: &Entry, now: u64) -> bool {
        entry.ended_mono().is_some_and(|ended| {
            now.saturating_sub(ended) >= self.inner.retain_finished.load(Ordering::Relaxed)
        })
    }

    /// Removes the expired tasks, at most once per [`SWEEP_EVERY`]; views
    /// leave out expired tasks in between.
    fn sweep(&self, now: u64) {
        let next = self.inner.next_sweep.load(Ordering::Relaxed);
        if now < next
            || self
                .inner
                .next_sweep
                .compare_exchange(
                    next,
                    now + nanos(SWEEP_EVERY),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        self.inner.entries.retain(|entry| {
            let keep = !self.expired(entry, now);
            if !keep {
                entry.mark_removed();
            }
            keep
        });
    }

    /// The entry of `name`, unless it expired.
    fn get(&self, name: &str, now: u64) -> Option<Arc<Entry>> {
        let entry = self.inner.entries.get(name)?;
        (!self.expired(&entry, now)).then_some(entry)
    }

    /// Handles on every entry but the expired ones, sorted by name: taken
    /// one shard at a time (nothing is allocated while a shard is locked but
    /// the handles and lists of the shard's slots), each with a sort key
    /// made from the name in the table, so that sorting reads no entry.
    /// Each comes with its name copied from the table (inline when short),
    /// for views that would otherwise read it from the entry's last cache
    /// line.
    fn handles(&self, now: u64, supervised_only: bool) -> Vec<(SmolStr, Arc<Entry>)> {
        let mut named: Vec<(SmolStr, Arc<Entry>)> = Vec::with_capacity(self.inner.entries.len());
        self.for_each_live(now, |name, entry| {
            if !supervised_only || entry.supervision.is_some() {
                named.push((name.clone(), entry.clone()));
            }
        });
        sort_by_name(named, |(name, _)| name)
    }

    /// Calls `f` on every entry but the expired ones (removed first, when a
    /// sweep is due), one shard locked at a time: `f` allocates nothing but
    /// handles and inline names.
    ///
    /// Each shard is read in three passes: its slots (next to each other),
    /// then the entries, one cache miss each, in a loop that does nothing
    /// else, so that the misses overlap; then `f`, on entries in the cache.
    /// Read in one loop, each entry waited for the table's iteration before
    /// it, and for the handle `f` takes of the one before (an atomic
    /// increment, which lets no later read start early).
    fn for_each_live(&self, now: u64, mut f: impl FnMut(&SmolStr, &Arc<Entry>)) {
        self.sweep(now);
        self.inner.entries.for_each_shard(|table| {
            let slots: Vec<&Slot> = table.iter().collect();
            let live: Vec<&Slot> = slots
                .into_iter()
                .filter(|(_, entry)| !self.expired(entry, now))
                .collect();
            for (name, entry) in live {
                f(name, entry);
            }
        });
    }

    /// Registers a supervised task (state [`TaskState::Running`], no heartbeat
    /// yet), unless a live task holds the name.
    pub(crate) fn register(
        &self,
        name: &str,
        settings: Arc<Settings>,
        singleton: bool,
    ) -> Result<Arc<Entry>, NameTaken> {
        let now = self.inner.clock.now_mono();
        self.sweep(now);
        let entry = Arc::new(Entry::new(
            name,
            &self.inner.clock,
            Some((settings, singleton)),
        ));
        let replaced = self
            .inner
            .entries
            .insert(&entry, |held| held.state().is_some_and(|s| !s.is_final()))
            .map_err(|()| NameTaken)?;
        if let Some(replaced) = replaced {
            replaced.mark_removed();
        }
        Ok(entry)
    }

    /// Every lifecycle change of the tasks of this registry from now on:
    /// attempts started, failures, backoffs, restarts on request, ends.
    ///
    /// Publishing costs nothing while nobody subscribes. A subscriber that
    /// falls more than [`EVENT_BUFFER`](crate::EVENT_BUFFER) events behind
    /// loses the oldest (its next `recv` says how many); a slow subscriber
    /// never slows a task.
    ///
    /// ```
    /// use supervised_core::{CancellationToken, Context, EventKind, Registry, Spec};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = Registry::new();
    /// let mut events = registry.subscribe();
    /// Spec::new("once")
    ///     .registry(&registry)
    ///     .run(CancellationToken::new(), |_ctx: Context| async {})
    ///     .await;
    /// assert!(matches!(events.recv().await.unwrap().kind, EventKind::Started));
    /// assert!(matches!(events.recv().await.unwrap().kind, EventKind::Stopped(_)));
    /// # }
    /// ```
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Publishes an event about `task` when someone listens; `kind` is only
    /// built then.
    #[inline]
    pub(crate) fn publish(&self, task: &str, attempt: u32, kind: impl FnOnce() -> EventKind) {
        let events = &self.inner.events;
        if events.wanted() {
            events.send(Event {
                task: task.to_owned(),
                attempt,
                at: self.inner.clock.now_wall(),
                kind: kind(),
            });
        }
    }

    /// The wall time now, on this registry's clock.
    #[cfg(feature = "http")]
    pub(crate) fn now_wall(&self) -> SystemTime {
        self.inner.clock.now_wall()
    }

    /// A reading of the registry's monotonic clock, for judging one of its
    /// entries with `Entry::is_healthy`.
    pub(crate) fn now_mono(&self) -> u64 {
        self.inner.clock.now_mono()
    }

    /// Records a heartbeat for `name` now: the wall time read during this call is
    /// what [`Registry::last_tick`] returns afterwards. Creates a heartbeat-only
    /// entry for a name not seen before; beats a supervised task's entry when the
    /// name is one. A new name that [`check_name`] refuses is not recorded (a
    /// warning is logged), so that no view can be fed a newline.
    ///
    /// Each thread remembers the entries of the last names it beat, so that a
    /// repeated beat costs a clock read and a few stores, without a lookup.
    ///
    /// The age that staleness is judged by counts from a monotonic stamp,
    /// accurate to [`RESOLUTION`](crate::clock::RESOLUTION) like a
    /// [`Context`](crate::Context) heartbeat's. A beat that comes only
    /// milliseconds after its thread's last stamped beat of the name (by
    /// the wall reading it takes anyway) keeps the name's stamp instead of
    /// reading a second clock. A kept stamp can only make the name look
    /// older than it is, never younger: when the wall clock is set back by
    /// some time `d` and the thread beats the name again about `d` after
    /// its last stamp, the name's age reads up to `d` too long until the
    /// thread's next beat.
    #[inline]
    pub fn heartbeat(&self, name: &str) {
        let wall = self.inner.clock.now_wall_encoded();
        if !cache::beat(&self.inner, name, wall) {
            self.heartbeat_uncached(name, wall);
        }
    }

    /// A heartbeat of `name` at `wall` that this thread's cache could not
    /// take: the name is looked up (and made, or made again after its
    /// retention), beaten with a new stamp and remembered.
    #[cold]
    #[inline(never)]
    fn heartbeat_uncached(&self, name: &str, wall: i64) {
        let now = self.inner.clock.now_mono();
        let held = self.inner.entries.get(name);
        let entry = match held {
            Some(entry) if !self.expired(&entry, now) => entry,
            // A finished task past its retention: the name is free again,
            // for a heartbeat-only entry.
            Some(expired) => {
                if let Some(removed) = self
                    .inner
                    .entries
                    .remove_if(name, |held| Arc::ptr_eq(held, &expired))
                {
                    removed.mark_removed();
                }
                self.heartbeat_only(name)
            }
            None => {
                // A new name: only names every view can show safely are recorded.
                if let Err(problem) = check_name(name) {
                    tracing::warn!(name = ?name, "supervised: heartbeat for an invalid name ignored: {problem}");
                    return;
                }
                self.heartbeat_only(name)
            }
        };
        entry.beat_named(wall);
        cache::remember(&self.inner, name, entry, wall);
    }

    /// The entry of `name`, made heartbeat-only if no entry holds the name
    /// (another thread may have made one first: that one is returned).
    fn heartbeat_only(&self, name: &str) -> Arc<Entry> {
        let fresh = Arc::new(Entry::new(name, &self.inner.clock, None));
        self.inner.entries.get_or_insert(fresh)
    }

    /// The time of the last heartbeat of `name`; `None` if it never beat or is
    /// unknown.
    ///
    /// A time recorded by [`Registry::heartbeat`] is returned exactly; one
    /// recorded through a [`Context`](crate::Context) is accurate to
    /// [`RESOLUTION`](crate::clock::RESOLUTION).
    pub fn last_tick(&self, name: &str) -> Option<SystemTime> {
        let now = self.inner.clock.now_mono();
        self.get(name, now)
            .and_then(|e| e.last_tick(&self.inner.clock))
    }

    /// A copy of the last heartbeat time of every name that has beaten.
    pub fn snapshot(&self) -> BTreeMap<String, SystemTime> {
        let clock = self.inner.clock.anchored();
        let now = clock.now_mono();
        // Each entry read once, the names taken from the tables (inline
        // when short); sorted before the owned names are made, so that they
        // are allocated in order and the map's own sort finds one run.
        let mut beats = Vec::with_capacity(self.inner.entries.len());
        self.for_each_live(now, |name, entry| {
            if let Some(at) = entry.last_tick(&clock) {
                beats.push((name.clone(), at));
            }
        });
        sort_by_name(beats, |(name, _)| name)
            .into_iter()
            .map(|(name, at)| (String::from(name.as_str()), at))
            .collect()
    }

    /// Are all of `names` fresh?
    ///
    /// A name is stale when it never beat (or is unknown), or when its last
    /// heartbeat is *strictly* older than `stale_threshold` on the monotonic
    /// clock. A singleton task in [`TaskState::Standby`] is fresh (it is not
    /// expected to beat), and once it takes its lease its silence counts from
    /// then. Returns `(true, [])` when none is stale, otherwise `false` and the
    /// stale names in the order given (a name given twice is listed twice).
    pub fn is_healthy(&self, names: &[&str], stale_threshold: Duration) -> (bool, Vec<String>) {
        let now = self.inner.clock.now_mono();
        // Stale until the lookup says otherwise: a name it did not answer
        // for is not reported fresh.
        let mut stale = vec![true; names.len()];
        self.inner.entries.lookup_each(names, |i, entry| {
            stale[i] = entry
                .filter(|e| !self.expired(e, now))
                .is_none_or(|e| e.stale_by(now, stale_threshold));
        });
        let stale: Vec<String> = names
            .iter()
            .zip(stale)
            .filter(|(_, stale)| *stale)
            .map(|(name, _)| (*name).to_owned())
            .collect();
        (stale.is_empty(), stale)
    }

    /// The status of the supervised task `name`; `None` for unknown and
    /// heartbeat-only names.
    pub fn status(&self, name: &str) -> Option<TaskStatus> {
        let now = self.inner.clock.now_mono();
        self.get(name, now)
            .and_then(|e| e.status(&self.inner.clock, now))
    }

    /// The status of every supervised task, sorted by name.
    pub fn tasks(&self) -> Vec<TaskStatus> {
        let clock = self.inner.clock.anchored();
        let now = clock.now_mono();
        // Sort the small handles, not the large statuses.
        let handles = self.handles(now, true);
        let mut out = Vec::with_capacity(handles.len());
        out.extend(
            handles
                .iter()
                .filter_map(|(name, e)| e.status_named(name, &clock, now)),
        );
        out
    }

    /// The supervised tasks sorted by name, for a view that writes one
    /// status at a time: each is made when asked for, from what the task's
    /// entry holds then, and judged at the last [`Statuses::refresh`].
    #[cfg(feature = "http")]
    pub(crate) fn statuses(&self) -> Statuses {
        let clock = self.inner.clock.anchored();
        let now = clock.now_mono();
        Statuses {
            entries: self.handles(now, true),
            base: self.inner.clock.clone(),
            clock,
        }
    }

    /// Removes `name` unless a live supervised task holds it. Returns whether an
    /// entry was removed.
    pub fn forget(&self, name: &str) -> bool {
        let removed = self
            .inner
            .entries
            .remove_if(name, |held| held.state().is_none_or(|s| s.is_final()));
        match removed {
            Some(entry) => {
                entry.mark_removed();
                true
            }
            None => false,
        }
    }
}

/// How many statuses [`Statuses::each`] judges on one reading of the clock.
#[cfg(feature = "http")]
const STATUSES_PER_READING: usize = 128;

/// The supervised tasks of a registry, sorted by name, whose statuses are
/// made one at a time ([`Registry::statuses`]). A view that writes each
/// status and drops it holds a handle and a name (32 bytes) per task,
/// where [`Registry::tasks`] holds every status at once: 344 bytes each,
/// 34 MB for 100,000 tasks, which glibc's allocator maps afresh for every
/// call (its threshold for reusing freed memory stops at 32 MB), so that
/// each page faults in again.
///
/// A status is judged at the last [`Statuses::refresh`] (or the list's
/// making), which a view that makes statuses long after the list was taken
/// calls before each batch: a response body is written as fast as its
/// client reads it, and judged at an instant older than what the entry
/// holds, a poll that began since, or a silence that passed its limit
/// since, would count as no time at all.
#[cfg(feature = "http")]
pub(crate) struct Statuses {
    /// The registry's clock, read at each refresh.
    base: Clock,
    /// `base`, read at the last refresh.
    clock: Clock,
    /// The tasks' entries, each with a copy of its name (inline when
    /// short), so that a name is read next to the others, not from its
    /// entry.
    entries: Vec<(SmolStr, Arc<Entry>)>,
}

#[cfg(feature = "http")]
impl Statuses {
    /// How many tasks the list holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The name of the `i`th task.
    pub(crate) fn name(&self, i: usize) -> &str {
        self.entries[i].0.as_str()
    }

    /// Reads the clock that the next statuses are judged at.
    pub(crate) fn refresh(&mut self) {
        self.clock = self.base.anchored();
    }

    /// The status of the `i`th task, made from its entry now and judged at
    /// the last refresh, as [`Registry::tasks`] would list it.
    pub(crate) fn status(&self, i: usize) -> Option<TaskStatus> {
        let (name, entry) = &self.entries[i];
        entry.status_named(name, &self.clock, self.clock.now_mono())
    }

    /// Every status in turn, for a view that takes them all at once: the
    /// clock is read again every [`STATUSES_PER_READING`] statuses, so
    /// that what the view does with each status does not age the reading
    /// the next are judged at.
    pub(crate) fn each(mut self) -> impl Iterator<Item = TaskStatus> {
        (0..self.entries.len()).filter_map(move |i| {
            if i > 0 && i % STATUSES_PER_READING == 0 {
                self.refresh();
            }
            self.status(i)
        })
    }
}

/// `items` sorted by the name each holds. Names are compared by 16 bytes
/// taken after the prefix all of them share, as one big-endian integer
/// (zero-padded: names hold no NUL byte, so a shorter name sorts first, as
/// it should), and in full only when those bytes are equal: most
/// comparisons of `tenant-sync-00000700`-like names are then one integer
/// comparison, on data next to each other.
fn sort_by_name<T>(items: Vec<T>, name: impl Fn(&T) -> &SmolStr) -> Vec<T> {
    let shared = match items.split_first() {
        None => return items,
        Some((first, rest)) => {
            let first = name(first).as_bytes();
            rest.iter().fold(first.len(), |shared, item| {
                let other = name(item).as_bytes();
                first[..shared]
                    .iter()
                    .zip(other)
                    .take_while(|(a, b)| a == b)
                    .count()
            })
        }
    };
    let key = |name: &str| {
        let mut bytes = [0u8; 16];
        let rest = &name.as_bytes()[shared..];
        let n = rest.len().min(16);
        bytes[..n].copy_from_slice(&rest[..n]);
        u128::from_be_bytes(bytes)
    };
    let mut keyed: Vec<(u128, T)> = items
        .into_iter()
        .map(|item| (key(name(&item)), item))
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| name(&a.1).cmp(name(&b.1))));
    keyed.into_iter().map(|(_, item)| item).collect()
}

/// A duration in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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
    /// The last heartbeat of every heartbeat-only name (names passed to
    /// [`Registry::heartbeat`] that no supervised task holds), sorted by name:
    /// what the liveness endpoint lists next to [`Registry::tasks`], without
    /// copying the supervised tasks' names a second time.
    #[cfg(feature = "http")]
    pub(crate) fn unsupervised_beats(&self) -> Vec<(String, LastBeat)> {
        if self.inner.entries.unsupervised() == 0 {
            return Vec::new();
        }
        let now = self.inner.clock.now_mono();
        let mut only: Vec<(SmolStr, Arc<Entry>)> = Vec::new();
        self.inner.entries.for_each_shard(|table| {
            only.extend(
                table
                    .iter()
                    .filter(|(_, e)| e.supervision.is_none())
                    .cloned(),
            )
        });
        sort_by_name(only, |(name, _)| name)
            .iter()
            .filter_map(|(_, e)| {
                let beat = LastBeat {
                    at: e.last_tick(&self.inner.clock)?,
                    age: e.age(now)?,
                    supervised: false,
                };
                Some((String::from(e.name.as_str()), beat))
            })
            .collect()
    }

    /// The last heartbeat of every name that has beaten, supervised tasks and
    /// heartbeat-only names alike, sorted by name, read at one instant.
    ///
    /// This is [`Registry::snapshot`] with the monotonic age of each heartbeat,
    /// which is what the liveness endpoint and the metrics show for names that
    /// [`Registry::tasks`] does not list.
    pub fn last_beats(&self) -> BTreeMap<String, LastBeat> {
        let clock = self.inner.clock.anchored();
        let now = clock.now_mono();
        self.handles(now, false)
            .iter()
            .filter_map(|(name, e)| {
                let at = e.last_tick(&clock)?;
                let age = e.age(now)?;
                let supervised = e.supervision.is_some();
                Some((
                    String::from(name.as_str()),
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn handles_sort_like_their_names() {
        let registry = Registry::new();
        let mut names: Vec<String> = vec![
            "b".into(),
            "a".into(),
            "ab".into(),
            "abc".into(),
            "é-accent".into(),
            "z".repeat(40),
            format!("{}a", "x".repeat(32)),
            format!("{}b", "x".repeat(32)),
            "x".repeat(32),
            "tenant-sync-00000700".into(),
            "tenant-sync-00000070".into(),
            "Tenant".into(),
        ];
        for name in &names {
            registry.heartbeat(name);
        }
        let now = registry.inner.clock.now_mono();
        let sorted: Vec<String> = registry
            .handles(now, false)
            .iter()
            .map(|(name, e)| {
                assert_eq!(name, &e.name);
                e.name.to_string()
            })
            .collect();
        let snapshot: Vec<String> = registry.snapshot().into_keys().collect();
        names.sort();
        assert_eq!(sorted, names);
        assert_eq!(snapshot, names);
    }

    /// Names sorted by their keys after the shared prefix come out as a
    /// plain sort of the text puts them, for names of every length around
    /// the 16 bytes a key holds, sharing prefixes of every length.
    #[test]
    fn sorting_by_keys_after_the_shared_prefix_is_sorting_by_name() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % below
        };
        for round in 0..200 {
            let prefix = "p".repeat(next(40) as usize);
            let names: Vec<SmolStr> = (0..(1 + next(50)))
                .map(|_| {
                    let tail: String = (0..next(24))
                        .map(|_| ['a', 'b', 'é'][next(3) as usize])
                        .collect();
                    SmolStr::new(format!(
                        "{prefix}{tail}{}",
                        if round % 2 == 0 { "" } else { "z" }
                    ))
                })
                .collect();
            let mut expected = names.clone();
            expected.sort();
            assert_eq!(sort_by_name(names, |n| n), expected);
        }
    }

    /// A status made after a refresh is judged then: a task that went
    /// silent past its limit since the list was taken is stale.
    #[cfg(feature = "http")]
    #[test]
    fn a_listed_status_is_judged_at_the_last_refresh() {
        let manual = ManualClock::new();
        let registry = Registry::with_clock(manual.clone());
        let settings = crate::Spec::new("a")
            .stale_after(Duration::from_secs(10))
            .settings();
        registry.register("a", settings, false).expect("a new name");
        let mut statuses = registry.statuses();
        assert!(!statuses.status(0).expect("supervised").stale);
        manual.advance(Duration::from_secs(11));
        statuses.refresh();
        let status = statuses.status(0).expect("supervised");
        assert!(status.stale, "silent for 11 s of 10");
        assert!(!status.healthy);
        let later: Vec<TaskStatus> = statuses.each().collect();
        assert!(later[0].stale);
    }

    /// The count that lets views skip their pass over heartbeat-only names
    /// follows names made, taken over by a supervised task, and forgotten.
    #[cfg(feature = "http")]
    #[test]
    fn heartbeat_only_names_are_counted_through_their_changes() {
        let registry = Registry::new();
        let listed = |r: &Registry| -> Vec<String> {
            r.unsupervised_beats().into_iter().map(|(n, _)| n).collect()
        };
        assert!(listed(&registry).is_empty());
        registry.heartbeat("a");
        registry.heartbeat("b");
        registry.heartbeat("a");
        assert_eq!(listed(&registry), ["a", "b"]);
        let settings = crate::Spec::new("a").settings();
        registry
            .register("a", settings, false)
            .expect("a is heartbeat-only");
        assert_eq!(listed(&registry), ["b"]);
        assert!(registry.forget("b"));
        assert!(listed(&registry).is_empty());
        assert_eq!(registry.inner.entries.unsupervised(), 0);
        registry.heartbeat("c");
        assert_eq!(listed(&registry), ["c"]);
    }

    /// The collision-prone shape of an unfinalised FxHash: names that differ
    /// only in their last digits. In a table of 2^17 slots, a good hash of
    /// 100,000 such names lands in about 2^17 × (1 − e^(−100000/2^17)) ≈
    /// 70,000 distinct slots; the registry's old hash put them in a few
    /// hundred (a 10× slowdown of `is_healthy` over such names). The bound is
    /// generous (half the expected), so that noise cannot fail it and a hash
    /// whose low bits ignore the digits cannot pass it. Counts, not times.
    #[test]
    fn names_differing_in_their_last_digits_spread_over_the_table() {
        let registry = Registry::new();
        let hasher = registry.inner.entries.hasher();
        for shape in ["perf-scale-100000-", "tenant-sync-000", "t"] {
            let slots: HashSet<u64> = (0..100_000)
                .map(|i| hasher.hash_one(format!("{shape}{i:05}").as_str()) & ((1 << 17) - 1))
                .collect();
            assert!(
                slots.len() > 35_000,
                "{shape}: {} distinct slots",
                slots.len()
            );
        }
    }
}
