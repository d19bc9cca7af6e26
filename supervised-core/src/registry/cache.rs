//! A per-thread cache of by-name heartbeats: the entries of the last names
//! a thread beat, so that [`Registry::heartbeat`](super::Registry::heartbeat)
//! on a name seen before is a compare, a clock read and a few stores, with no
//! hashing and no lock.
//!
//! A slot also keeps the wall time at which its thread last took a
//! monotonic stamp for the name. While the wall clock shows less than the
//! registry clock's [`stamp_reuse_window`](crate::clock::Clock::stamp_reuse_window)
//! since then, a beat keeps that stamp and reads only the wall clock, which
//! it needs for its exact time anyway: one clock read instead of two.
//!
//! A slot is chosen from the address of the name's text (a literal keeps
//! its address) and trusted only when the registry is the same, the text is
//! equal and the registry still holds the entry: a different string at a
//! reused address, a dropped registry or a forgotten name is a miss.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Weak};

use super::{Entry, Inner};

/// Slots per thread.
const SLOTS: usize = 8;

struct Slot {
    /// Keeps the registry's allocation, so that its address cannot be
    /// reused by another registry while the slot refers to it.
    registry: Weak<Inner>,
    entry: Arc<Entry>,
    /// The wall time (encoded) of this thread's last beat of the entry that
    /// took a monotonic stamp.
    stamped_at: Cell<i64>,
    /// The registry clock's stamp reuse window, in nanoseconds.
    window: u64,
}

/// Whether a beat at wall time `wall` may keep the stamp taken at
/// `stamped_at`: less than `window` later, and not earlier.
#[inline]
fn may_keep_stamp(wall: i64, stamped_at: i64, window: u64) -> bool {
    matches!(wall.checked_sub(stamped_at), Some(since) if since >= 0 && (since as u64) < window)
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

/// `a == b`, without a call to `memcmp` for the lengths names usually have
/// (8 to 32 bytes): two overlapping word compares cover the text.
#[inline]
fn same_text(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap());
        word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
    } else if (16..=32).contains(&n) {
        let word = |s: &[u8], at: usize| u128::from_ne_bytes(s[at..at + 16].try_into().unwrap());
        word(a, 0) == word(b, 0) && word(a, n - 16) == word(b, n - 16)
    } else {
        a == b
    }
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
                        && same_text(slot.entry.name.as_bytes(), name.as_bytes())
                        && slot.entry.is_held()
                        // A task that has ended may pass its retention: the
                        // slow path decides.
                        && !slot.entry.may_have_ended() =>
                {
                    if !(may_keep_stamp(wall, slot.stamped_at.get(), slot.window)
                        && slot.entry.beat_named_reusing_stamp(wall))
                    {
                        slot.entry.beat_named(wall);
                        slot.stamped_at.set(wall);
                    }
                    true
                }
                _ => false,
            }
        })
        .unwrap_or(false)
}

/// Remembers `entry` for the next beat of `name` on this thread; `wall` is
/// the time of the beat it just took, with a new monotonic stamp.
pub(super) fn remember(registry: &Arc<Inner>, name: &str, entry: Arc<Entry>, wall: i64) {
    let window = registry.clock.stamp_reuse_window();
    let _ = SLOTS_OF_THREAD.try_with(|slots| {
        // The slot is chosen by the address of the caller's text, as at the
        // next beat.
        slots.borrow_mut()[slot_of(name)] = Some(Slot {
            registry: Arc::downgrade(registry),
            entry,
            stamped_at: Cell::new(wall),
            window,
        });
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ManualClock, Registry};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn texts_compare_equal_exactly_when_they_are_equal() {
        let long: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=long.len() {
            let a = &long[..n];
            // An equal text at another address.
            let copy = a.to_owned();
            assert!(same_text(a, copy.as_slice()), "length {n}");
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 1;
                assert!(!same_text(a, &b), "length {n}, differing at {at}");
            }
            if n > 0 {
                assert!(!same_text(a, &long[..n - 1]), "length {n} against one less");
            }
        }
    }

    #[test]
    fn a_stamp_is_kept_only_within_the_window_and_never_backwards() {
        let window = 6_000_000;
        assert!(may_keep_stamp(100, 100, window));
        assert!(may_keep_stamp(100 + 5_999_999, 100, window));
        assert!(!may_keep_stamp(100 + 6_000_000, 100, window));
        assert!(!may_keep_stamp(99, 100, window), "the wall clock went back");
        assert!(!may_keep_stamp(i64::MIN, i64::MAX, window));
        assert!(
            !may_keep_stamp(100, 100, 0),
            "no window: always a new stamp"
        );
    }

    /// A registry whose by-name heartbeats keep their stamps for 6 ms.
    fn reusing() -> (ManualClock, Registry) {
        let clock = ManualClock::new();
        clock.set_stamp_reuse_window(6 * MS);
        let registry = Registry::with_clock(clock.clone());
        (clock, registry)
    }

    /// The name every test beats: a static, so that every read of it is
    /// the same text at the same address, and each beat after the first
    /// finds it in the thread's cache.
    static NAME: &str = "a";

    /// A registry whose name was beaten twice, 1 ms apart, the second beat
    /// keeping the first one's stamp (checked, so that a test that builds
    /// on it knows the cache is hit).
    fn beaten_twice() -> (ManualClock, Registry) {
        let (clock, registry) = reusing();
        registry.heartbeat(NAME);
        clock.advance(MS);
        registry.heartbeat(NAME);
        assert!(
            !registry.is_healthy(&[NAME], Duration::ZERO).0,
            "the second beat kept the first one's stamp"
        );
        (clock, registry)
    }

    #[test]
    fn a_kept_stamp_shows_a_name_staler_never_fresher() {
        let (clock, registry) = reusing();
        registry.heartbeat(NAME);
        clock.advance(2 * MS);
        registry.heartbeat(NAME);
        // The wall time is the beat's own; the age counts from the kept
        // stamp, 2 ms back.
        assert_eq!(registry.last_tick(NAME), Some(clock.now()));
        assert!(!registry.is_healthy(&[NAME], MS).0);
        assert!(registry.is_healthy(&[NAME], 2 * MS).0);
        // 7 ms after the stamp: a new one.
        clock.advance(5 * MS);
        registry.heartbeat(NAME);
        assert!(registry.is_healthy(&[NAME], Duration::ZERO).0);
    }

    #[test]
    fn a_wall_clock_set_back_takes_a_new_stamp() {
        let (clock, registry) = beaten_twice();
        // Set back by less than the window: the wall clock shows 1 ms
        // before the stamp.
        clock.advance(MS);
        clock.set_wall(clock.now() - 3 * MS);
        registry.heartbeat(NAME);
        assert!(registry.is_healthy(&[NAME], Duration::ZERO).0);
        assert_eq!(registry.last_tick(NAME), Some(clock.now()));
    }

    #[test]
    fn a_wall_clock_set_back_by_the_time_that_then_passes_shows_the_name_older_until_the_next_stamp(
    ) {
        let (clock, registry) = reusing();
        registry.heartbeat(NAME);
        // Set back a second; the next beat comes a second and 1 ms later,
        // when the wall clock shows 1 ms after the stamp: it keeps it.
        clock.set_wall(clock.now() - Duration::from_secs(1));
        clock.advance(Duration::from_secs(1) + MS);
        registry.heartbeat(NAME);
        assert!(!registry.is_healthy(&[NAME], Duration::from_secs(1)).0);
        assert!(registry.is_healthy(&[NAME], Duration::from_secs(1) + MS).0);
        // The thread's next beat past the window takes a new stamp.
        clock.advance(6 * MS);
        registry.heartbeat(NAME);
        assert!(registry.is_healthy(&[NAME], Duration::ZERO).0);
    }

    #[test]
    fn a_context_beat_after_the_stamp_takes_a_new_one() {
        let (clock, registry) = beaten_twice();
        let entry = registry.inner.entries.get(NAME).unwrap();
        // A heartbeat-only entry has no attempt: attempt 0 beats it.
        entry.beat_for(0);
        clock.advance(MS);
        registry.heartbeat(NAME);
        // The by-name beat is the latest, with its exact time.
        assert_eq!(registry.last_tick(NAME), Some(clock.now()));
        assert!(registry.is_healthy(&[NAME], Duration::ZERO).0);
    }

    #[test]
    fn a_thread_keeps_the_latest_stamp_whichever_thread_took_it() {
        let (clock, registry) = reusing();
        registry.heartbeat(NAME);
        clock.advance(3 * MS);
        // Another thread's first beat of the name takes a new stamp.
        std::thread::scope(|s| {
            s.spawn(|| registry.heartbeat(NAME));
        });
        clock.advance(2 * MS);
        // Within this thread's window: the stamp kept is the other
        // thread's, 2 ms back, not this thread's own, 5 ms back.
        registry.heartbeat(NAME);
        assert!(registry.is_healthy(&[NAME], 2 * MS).0);
        assert!(!registry.is_healthy(&[NAME], MS).0);
    }
}
