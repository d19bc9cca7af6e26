//! The map of names: sharded, so that a view never holds up a registration
//! or a heartbeat on another shard, and hashed with a seeded hasher, since
//! names may come from tenant data: keys that differ only in their last
//! characters spread over the whole table, and no one can choose names that
//! collide.
//!
//! Each name is hashed once per operation; the hash picks the shard (from
//! bits the table does not use) and the slot. Names are stored inline in the
//! table when short (up to 23 bytes), so that a lookup or a view compares
//! and copies them without following a pointer.

use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;
use smol_str::SmolStr;

use super::Entry;

/// Shards per map: enough that a view, which locks one at a time, holds up
/// a writer for a small fraction of its run.
const SHARDS: usize = 64;

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
}

impl Default for Names {
    fn default() -> Self {
        Names {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(HashTable::new())))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

/// A name, hashed: where it lives.
#[derive(Clone, Copy)]
pub(super) struct Key<'a> {
    pub(super) name: &'a str,
    pub(super) hash: u64,
}

impl Key<'_> {
    /// The shard: bits 32 and up, which a table of fewer than 2^32 slots
    /// does not use for its slot index, and which are not the top 7 bits it
    /// keeps as a tag.
    fn shard(self) -> usize {
        (self.hash >> 32) as usize % SHARDS
    }

    /// Whether `slot` holds this name.
    pub(super) fn is(self, slot: &Slot) -> bool {
        slot.0.as_str() == self.name
    }
}

impl Names {
    /// `name`, hashed.
    pub(super) fn key<'a>(&self, name: &'a str) -> Key<'a> {
        Key {
            name,
            hash: self.hasher.hash_one(name),
        }
    }

    /// The hash of a stored slot, for the table's resizing.
    pub(super) fn rehash(&self) -> impl Fn(&Slot) -> u64 + '_ {
        |slot| self.hasher.hash_one(slot.0.as_str())
    }

    /// The shard of `key`, for reading.
    pub(super) fn read(&self, key: Key<'_>) -> RwLockReadGuard<'_, Table> {
        read(&self.shards[key.shard()])
    }

    /// The shard of `key`, for writing.
    pub(super) fn write(&self, key: Key<'_>) -> RwLockWriteGuard<'_, Table> {
        self.shards[key.shard()]
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
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

    /// Every shard in turn, each locked for writing while `f` runs on it.
    pub(super) fn for_each_shard_mut(&self, mut f: impl FnMut(&mut Table)) {
        for shard in self.shards.iter() {
            f(&mut shard.0.write().unwrap_or_else(PoisonError::into_inner));
        }
    }

    /// How many names the map holds (each shard read in turn).
    pub(super) fn len(&self) -> usize {
        let mut n = 0;
        self.for_each_shard(|table| n += table.len());
        n
    }

    /// Groups `keys` by shard: indices into `keys`, shard by shard, with
    /// where each shard's run starts (a counting sort).
    pub(super) fn by_shard(keys: &[Key<'_>]) -> (Vec<u32>, [usize; SHARDS + 1]) {
        let mut starts = [0usize; SHARDS + 1];
        for key in keys {
            starts[key.shard() + 1] += 1;
        }
        for i in 0..SHARDS {
            starts[i + 1] += starts[i];
        }
        let mut next = starts;
        let mut order = vec![0u32; keys.len()];
        for (i, key) in keys.iter().enumerate() {
            let shard = key.shard();
            order[next[shard]] = i as u32;
            next[shard] += 1;
        }
        (order, starts)
    }

    /// Shard `i`, for reading.
    pub(super) fn read_shard(&self, i: usize) -> RwLockReadGuard<'_, Table> {
        read(&self.shards[i])
    }

    /// The number of shards.
    pub(super) const SHARDS: usize = SHARDS;

    #[cfg(test)]
    pub(super) fn hasher(&self) -> &foldhash::fast::RandomState {
        &self.hasher
    }
}

fn read(shard: &Shard) -> RwLockReadGuard<'_, Table> {
    shard.0.read().unwrap_or_else(PoisonError::into_inner)
}
