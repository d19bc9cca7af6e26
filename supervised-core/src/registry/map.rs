//! The map of names: sharded, so that a view never holds up a registration
//! or a heartbeat on another shard, and hashed with a seeded hasher, since
//! names may come from tenant data: keys that differ only in their last
//! characters spread over the whole table, and no one can choose names that
//! collide.
//!
//! Each name is hashed once per operation; the hash picks the shard (from
//! bits the table does not use) and the slot. Names are stored inline in the
//! table when short (up to 23 bytes), so that a lookup or a view compares
//! and copies them without following a pointer. The map also counts its
//! heartbeat-only entries, in the operations that add and remove entries.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;
use smol_str::SmolStr;

use super::Entry;

/// Shards per map: enough that a view, which locks one at a time, holds up
/// a writer for a small fraction of its run.
const SHARDS: usize = 64;

/// How many names [`Names::lookup_each`] looks up at a time: few enough
/// that their keys and names stay in the cache between their hashing and
/// their lookup, many enough that each shard is locked for a few dozen.
const LOOKUP_CHUNK: usize = 4096;

/// One slot: the name, and its entry.
pub(super) type Slot = (SmolStr, Arc<Entry>);

/// The slots of one shard.
pub(super) type Table = HashTable<Slot>;

/// One shard on its own cache lines, so that readers of neighbouring
/// shards do not contend.
#[repr(align(128))]
struct Shard(RwLock<Table>);

/// The map.
pub(super) struct Names {
    shards: Box<[Shard]>,
    hasher: foldhash::fast::RandomState,
    /// How many heartbeat-only entries the map holds.
    unsupervised: AtomicUsize,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(HashTable::new())))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
            unsupervised: AtomicUsize::new(0),
        }
    }
}

/// A name, hashed: where it lives.
#[derive(Clone, Copy)]
struct Key<'a> {
    name: &'a str,
    hash: u64,
}

impl Key<'_> {
    /// The shard: bits 32 and up, which a table of fewer than 2^32 slots
    /// does not use for its slot index, and which are not the top 7 bits it
    /// keeps as a tag.
    fn shard(self) -> usize {
        (self.hash >> 32) as usize % SHARDS
    }

    /// Whether `slot` holds this name.
    fn is(self, slot: &Slot) -> bool {
        slot.0.as_str() == self.name
    }
}

impl Names {
    /// `name`, hashed.
    fn key<'a>(&self, name: &'a str) -> Key<'a> {
        Key {
            name,
            hash: self.hasher.hash_one(name),
        }
    }

    /// The hash of a stored slot, for the table's resizing.
    fn rehash(&self) -> impl Fn(&Slot) -> u64 + '_ {
        |slot| self.hasher.hash_one(slot.0.as_str())
    }

    /// The shard of `key`, for reading.
    fn read(&self, key: Key<'_>) -> RwLockReadGuard<'_, Table> {
        read(&self.shards[key.shard()])
    }

    /// The shard of `key`, for writing.
    fn write(&self, key: Key<'_>) -> RwLockWriteGuard<'_, Table> {
        self.shards[key.shard()]
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `entry` in or out of the heartbeat-only entries.
    fn count(&self, entry: &Entry, added: bool) {
        if entry.supervision.is_none() {
            if added {
                self.unsupervised.fetch_add(1, Ordering::Relaxed);
            } else {
                self.unsupervised.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// How many heartbeat-only entries the map holds.
    #[cfg(feature = "http")]
    pub(super) fn unsupervised(&self) -> usize {
        self.unsupervised.load(Ordering::Relaxed)
    }

    /// Puts `entry` under its name, unless `keep(held)` says the entry
    /// holding the name stays (`Err`). Returns the entry it replaced.
    pub(super) fn insert(
        &self,
        entry: &Arc<Entry>,
        keep: impl FnOnce(&Entry) -> bool,
    ) -> Result<Option<Arc<Entry>>, ()> {
        let key = self.key(&entry.name);
        let mut table = self.write(key);
        match table.find_mut(key.hash, |slot| key.is(slot)) {
            Some(held) => {
                if keep(&held.1) {
                    return Err(());
                }
                let replaced = std::mem::replace(&mut held.1, entry.clone());
                self.count(&replaced, false);
                self.count(entry, true);
                Ok(Some(replaced))
            }
            None => {
                table.insert_unique(key.hash, (entry.name.clone(), entry.clone()), self.rehash());
                self.count(entry, true);
                Ok(None)
            }
        }
    }

    /// The entry holding `fresh`'s name, or `fresh`, put there.
    pub(super) fn get_or_insert(&self, fresh: Arc<Entry>) -> Arc<Entry> {
        let key = self.key(&fresh.name);
        let mut table = self.write(key);
        if let Some(held) = table.find(key.hash, |slot| key.is(slot)) {
            return held.1.clone();
        }
        table.insert_unique(key.hash, (fresh.name.clone(), fresh.clone()), self.rehash());
        self.count(&fresh, true);
        fresh
    }

    /// Removes the entry of `name` if `remove(entry)` says so, and returns
    /// it.
    pub(super) fn remove_if(
        &self,
        name: &str,
        remove: impl FnOnce(&Arc<Entry>) -> bool,
    ) -> Option<Arc<Entry>> {
        let key = self.key(name);
        let mut table = self.write(key);
        let slot = table
            .find_entry(key.hash, |slot| key.is(slot))
            .ok()
            .filter(|slot| remove(&slot.get().1))?;
        let ((_, entry), _) = slot.remove();
        self.count(&entry, false);
        Some(entry)
    }

    /// Keeps the entries `keep` says to keep, each shard locked in turn.
    pub(super) fn retain(&self, mut keep: impl FnMut(&Arc<Entry>) -> bool) {
        for shard in self.shards.iter() {
            let mut table = shard.0.write().unwrap_or_else(PoisonError::into_inner);
            table.retain(|(_, entry)| {
                let kept = keep(entry);
                if !kept {
                    self.count(entry, false);
                }
                kept
            });
        }
    }

    /// The entry of `name`.
    pub(super) fn get(&self, name: &str) -> Option<Arc<Entry>> {
        let key = self.key(name);
        self.read(key)
            .find(key.hash, |slot| key.is(slot))
            .map(|slot| slot.1.clone())
    }

    /// Every shard in turn, each locked for reading while `f` runs on it.
    pub(super) fn for_each_shard(&self, mut f: impl FnMut(&Table)) {
        for shard in self.shards.iter() {
            f(&read(shard));
        }
    }

    /// How many names the map holds (each shard read in turn).
    pub(super) fn len(&self) -> usize {
        let mut n = 0;
        self.for_each_shard(|table| n += table.len());
        n
    }

    /// Calls `f` with the index of each of `names` and its entry (`None`
    /// when the map has none).
    ///
    /// The names are taken [`LOOKUP_CHUNK`] at a time, so that the names and
    /// keys a chunk reads stay in the cache while it runs. A chunk's names
    /// are hashed first, then looked up shard by shard, each shard locked
    /// once per chunk; all of a shard's entries are found before `f` reads
    /// any, so that the reads of entries, one cache miss each, overlap
    /// instead of each waiting behind the table lookup before it.
    pub(super) fn lookup_each(&self, names: &[&str], mut f: impl FnMut(usize, Option<&Entry>)) {
        let mut keys: Vec<Key<'_>> = Vec::with_capacity(names.len().min(LOOKUP_CHUNK));
        let mut order: Vec<u32> = Vec::with_capacity(keys.capacity());
        for (chunk, names) in names.chunks(LOOKUP_CHUNK).enumerate() {
            let first = chunk * LOOKUP_CHUNK;
            keys.clear();
            keys.extend(names.iter().map(|name| self.key(name)));
            // A counting sort of the chunk's indices by shard.
            let mut starts = [0usize; SHARDS + 1];
            for key in &keys {
                starts[key.shard() + 1] += 1;
            }
            for i in 0..SHARDS {
                starts[i + 1] += starts[i];
            }
            let mut next = starts;
            order.clear();
            order.resize(keys.len(), 0);
            for (i, key) in keys.iter().enumerate() {
                let shard = key.shard();
                order[next[shard]] = i as u32;
                next[shard] += 1;
            }
            for (shard, run) in starts.windows(2).enumerate() {
                if run[0] == run[1] {
                    continue;
                }
                let table = read(&self.shards[shard]);
                let run = &order[run[0]..run[1]];
                let found: Vec<Option<&Entry>> = run
                    .iter()
                    .map(|&i| {
                        let key = keys[i as usize];
                        table
                            .find(key.hash, |slot| key.is(slot))
                            .map(|(_, entry)| &**entry)
                    })
                    .collect();
                for (&i, entry) in run.iter().zip(found) {
                    f(first + i as usize, entry);
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn hasher(&self) -> &foldhash::fast::RandomState {
        &self.hasher
    }
}

fn read(shard: &Shard) -> RwLockReadGuard<'_, Table> {
    shard.0.read().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    /// Every name asked about is answered once, at its own index, with the
    /// entry of that name (or none), across more batches than one and in
    /// a last, partial batch: unknown names among the known ones, and one
    /// name asked about in two batches.
    #[test]
    fn each_name_asked_about_is_answered_once_with_its_entry() {
        let map = Names::default();
        let known = 3 * LOOKUP_CHUNK + 5;
        for i in 0..known {
            map.get_or_insert(Arc::new(Entry::new(
                &format!("task-{i}"),
                &Clock::System,
                None,
            )));
        }
        let mut asked: Vec<String> = (0..known).map(|i| format!("task-{i}")).collect();
        asked.insert(LOOKUP_CHUNK + 7, "unknown-1".into());
        asked.push("unknown-2".into());
        asked.push("task-3".into());
        let refs: Vec<&str> = asked.iter().map(String::as_str).collect();
        let mut answers: Vec<Option<Option<String>>> = vec![None; refs.len()];
        map.lookup_each(&refs, |i, entry| {
            assert!(answers[i].is_none(), "index {i} answered twice");
            answers[i] = Some(entry.map(|e| e.name.to_string()));
        });
        for (i, (name, answer)) in refs.iter().zip(answers).enumerate() {
            let expected = name.starts_with("task-").then(|| name.to_string());
            assert_eq!(answer, Some(expected), "index {i}");
        }
    }
}
