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
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use crate::clock::{Clock, ManualClock};

mod entry;
mod name;
mod status;

pub(crate) use entry::{lock, Entry, Settings};
pub use name::{check_name, NameProblem, MAX_NAME_LEN};
pub use status::{Failure, FailureCounts, FailureKind, TaskState, TaskStatus};
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
    pub(crate) fn register(&self, name: &str, settings: Settings) -> Result<Arc<Entry>, NameTaken> {
        let mut entries = self.write();
        if let Some(existing) = entries.get(name) {
            if existing.state().is_some_and(|s| !s.is_final()) {
                return Err(NameTaken);
            }
        }
        let entry = Arc::new(Entry::new(name, &self.inner.clock, Some(settings)));
        entries.insert(entry.name.clone(), entry.clone());
        Ok(entry)
    }

    /// The wall time now, on this registry's clock.
    #[cfg(feature = "http")]
    pub(crate) fn now_wall(&self) -> SystemTime {
        self.inner.clock.now_wall()
    }

    /// The status of one entry of this registry, read now.
    pub(crate) fn status_of(&self, entry: &Entry) -> Option<TaskStatus> {
        entry.status(&self.inner.clock, self.inner.clock.now_mono())
    }

    /// Records a heartbeat for `name` now: the wall time read during this call is
    /// what [`Registry::last_tick`] returns afterwards. Creates a heartbeat-only
    /// entry for a name not seen before; beats a supervised task's entry when the
    /// name is one. A new name that [`check_name`] refuses is not recorded (a
    /// warning is logged), so that no view can be fed a newline.
    pub fn heartbeat(&self, name: &str) {
        let wall = self.inner.clock.now_wall();
        if let Some(entry) = self.read().get(name) {
            entry.beat_named(wall);
            return;
        }
        // A new name: only names every view can show safely are recorded.
        if let Err(problem) = check_name(name) {
            tracing::warn!(name = ?name, "supervised: heartbeat for an invalid name ignored: {problem}");
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
