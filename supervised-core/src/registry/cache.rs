//! A per-thread cache of by-name heartbeats: the entries of the last names
//! a thread beat, so that [`Registry::heartbeat`](super::Registry::heartbeat)
//! on a name seen before is a compare, a clock read and a few stores, with no
//! hashing and no lock.
//!
//! A slot is chosen from the address of the name's text (a literal keeps
//! its address) and trusted only when the registry is the same, the text is
//! equal and the registry still holds the entry: a different string at a
//! reused address, a dropped registry or a forgotten name is a miss.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use super::{Entry, Inner};

/// Slots per thread.
const SLOTS: usize = 8;

struct Slot {
    /// Keeps the registry's allocation, so that its address cannot be
    /// reused by another registry while the slot refers to it.
    registry: Weak<Inner>,
    entry: Arc<Entry>,
}

thread_local! {
    static SLOTS_OF_THREAD: RefCell<[Option<Slot>; SLOTS]> = const {
        RefCell::new([const { None }; SLOTS])
    };
}

fn slot_of(name: &str) -> usize {
    // Text is at least byte-aligned; mix in the length for names that
    // share a buffer.
    let address = name.as_ptr() as usize;
    (address >> 3 ^ address >> 7 ^ name.len()) % SLOTS
}

/// Beats `name` through the cache; `false` on a miss.
#[inline]
pub(super) fn beat(registry: &Arc<Inner>, name: &str, wall: i64) -> bool {
    SLOTS_OF_THREAD
        .try_with(|slots| {
            let slots = slots.borrow();
            match &slots[slot_of(name)] {
                Some(slot)
                    if std::ptr::eq(slot.registry.as_ptr(), Arc::as_ptr(registry))
                        && *slot.entry.name == *name
                        && slot.entry.is_held()
                        // A task that has ended may pass its retention: the
                        // slow path decides.
                        && slot.entry.ended_mono().is_none() =>
                {
                    slot.entry.beat_named(wall);
                    true
                }
                _ => false,
            }
        })
        .unwrap_or(false)
}

/// Remembers `entry` for the next beat of `name` on this thread.
pub(super) fn remember(registry: &Arc<Inner>, name: &str, entry: Arc<Entry>) {
    let _ = SLOTS_OF_THREAD.try_with(|slots| {
        // The slot is chosen by the address of the caller's text, as at the
        // next beat.
        slots.borrow_mut()[slot_of(name)] = Some(Slot {
            registry: Arc::downgrade(registry),
            entry,
        });
    });
}
