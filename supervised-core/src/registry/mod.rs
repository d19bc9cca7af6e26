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

use crate::clock::{Clock, ManualClock};
use crate::events::{Event, EventKind, Events};

mod cache;
mod entry;
mod map;
mod name;
mod status;
mod views;

use map::Names;

pub(crate) use entry::{lock, Entry, Settings};
pub use name::{check_name, NameProblem, MAX_NAME_LEN};
pub use status::{Failure, FailureCounts, FailureKind, LeaseStatus, TaskState, TaskStatus};
pub use views::LastBeat;
#[cfg(feature = "http")]
pub(crate) use views::Statuses;

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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

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
