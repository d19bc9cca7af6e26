//! Heartbeats, through a `Context` and by name, and what a health check by
//! name reads of them.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::{Entry, Supervision};
use crate::clock::{decode_wall, Clock};
use crate::registry::status::TaskState;

impl Entry {
    /// The heartbeat hot path: a coarse clock read and three relaxed atomic
    /// operations; no lock, no system call. A lost increment under a race
    /// between two threads beating the same task is harmless: the counter
    /// still changes, which is all the watchdog looks for.
    #[inline]
    pub(super) fn beat(&self) {
        let now = self.hot.now();
        self.beat_mono.store(now, Ordering::Relaxed);
        self.count_beat();
    }

    /// The first beat ever: wakes whoever waits for the task to be ready.
    #[cold]
    fn first_beat(&self) {
        self.wake_watchers();
    }

    pub(super) fn wake_watchers(&self) {
        if let Some(watch) = self.supervision.as_ref().and_then(Supervision::watch) {
            watch.notify_waiters();
        }
    }

    /// A heartbeat through the `Context` of `attempt`: counts only while that
    /// attempt is the current one (one more relaxed load).
    #[inline]
    pub(crate) fn beat_for(&self, attempt: u32) {
        if self.live_attempt.load(Ordering::Relaxed) == attempt {
            self.beat();
        }
    }

    /// A heartbeat by name at `wall`, encoded by
    /// [`encode_wall`](crate::clock::encode_wall).
    pub(in crate::registry) fn beat_named(&self, wall: i64) {
        self.beat_named_stamped(wall, self.hot.now());
    }

    /// [`Entry::beat_named`] with the monotonic stamp `now`, read by the
    /// caller.
    #[inline]
    pub(super) fn beat_named_stamped(&self, wall: i64, now: u64) {
        self.named_wall.store(wall, Ordering::Relaxed);
        // Never back: a beat whose thread was held up between its clock
        // read and this write would otherwise leave an older stamp than
        // another thread's, which beats that keep the stamp then keep. One
        // read-modify-write per stamp, which repeated beats take once per
        // window.
        self.named_mono.fetch_max(now, Ordering::Relaxed);
        self.count_beat();
    }

    /// A heartbeat by name at `wall` that keeps the name's monotonic stamp,
    /// because the caller's thread took one less than a
    /// [`stamp_reuse_window`](crate::clock::Clock::stamp_reuse_window) ago
    /// (the stamp kept may be another thread's, later).
    /// Declines (`false`) when a `Context` beat is later than that stamp:
    /// the exact wall time is then the latest only with a new stamp.
    #[inline]
    pub(in crate::registry) fn beat_named_reusing_stamp(&self, wall: i64) -> bool {
        if self.beat_mono.load(Ordering::Relaxed) > self.named_mono.load(Ordering::Relaxed) {
            return false;
        }
        self.named_wall.store(wall, Ordering::Relaxed);
        self.count_beat();
        true
    }

    /// Counts a heartbeat of either kind; the first wakes whoever waits for
    /// the task to be ready.
    #[inline]
    fn count_beat(&self) {
        let n = self.beats.load(Ordering::Relaxed);
        self.beats.store(n.wrapping_add(1), Ordering::Relaxed);
        if n == 0 {
            self.first_beat();
        }
    }

    pub(crate) fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    /// Monotonic stamp of the latest heartbeat of either kind, 0 if none.
    pub(super) fn last_mono(&self) -> u64 {
        self.beat_mono
            .load(Ordering::Relaxed)
            .max(self.named_mono.load(Ordering::Relaxed))
    }

    pub(in crate::registry) fn last_tick(&self, clock: &Clock) -> Option<SystemTime> {
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

    /// Stale by `threshold` for a by-name health check: never beat, or
    /// silent for longer, counted for a singleton from its last grant; never
    /// while a standby.
    pub(in crate::registry) fn stale_by(&self, now_mono: u64, threshold: Duration) -> bool {
        // The last `Context` beat is one of the stamps the exact answer
        // below takes the latest of, and it sits next to the end stamp:
        // recent enough alone is recent enough, read in the same cache line.
        let beat = self.beat_mono.load(Ordering::Relaxed);
        if beat != 0 && Duration::from_nanos(now_mono.saturating_sub(beat)) <= threshold {
            return false;
        }
        let slot = self.lease();
        if slot.is_some() && self.state() == Some(TaskState::Standby) {
            return false;
        }
        match self.last_mono().max(self.resumed_mono()) {
            0 => true,
            since => Duration::from_nanos(now_mono.saturating_sub(since)) > threshold,
        }
    }

    /// Registry-clock stamp of a singleton's last grant, 0 for other
    /// tasks: a singleton's silence counts from no earlier than this, not
    /// from before its standby.
    pub(super) fn resumed_mono(&self) -> u64 {
        self.lease()
            .map_or(0, |slot| slot.resumed_mono.load(Ordering::Relaxed))
    }

    pub(in crate::registry) fn age(&self, now_mono: u64) -> Option<Duration> {
        match self.last_mono() {
            0 => None,
            last => Some(Duration::from_nanos(now_mono.saturating_sub(last))),
        }
    }
}
