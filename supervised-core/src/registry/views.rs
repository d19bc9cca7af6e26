//! The registry's views: the status of one task or of every task, the last
//! heartbeat of every name, and the health check of a list of names. The
//! views of every task or name walk the map one shard at a time and sort
//! what they took outside any lock; the health check looks its names up in
//! batches, each shard locked once per batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use smol_str::SmolStr;

use super::map::Slot;
use super::{Entry, Registry, TaskStatus};
#[cfg(feature = "http")]
use crate::clock::Clock;

impl Registry {
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
    /// clock. A singleton task in [`TaskState::Standby`](super::TaskState::Standby) is fresh (it is not
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
        let manual = crate::clock::ManualClock::new();
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
}
