//! Clocks behind heartbeats, ages and displayed times.
//!
//! Two readings are kept apart:
//!
//! * a **monotonic** reading, in nanoseconds since the clock's own origin, decides
//!   every age ("how long since the last heartbeat?"). It never jumps when the
//!   system's wall clock is set.
//! * a **wall** reading ([`SystemTime`]) is only for display.
//!
//! The process-wide system clock keeps a cached monotonic reading that a
//! background thread refreshes every [`RESOLUTION`]. A heartbeat stores that
//! cached value with two atomic operations and reads no clock itself, which is what
//! makes [`Context::heartbeat`](crate::Context::heartbeat) cost about a nanosecond.
//! The thread wakes 1000 / 5 = 200 times a second and does a few nanoseconds of
//! work each time.
//!
//! A [`ManualClock`] replaces it in tests: time moves only when the test says so.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the cached system clock is refreshed.
///
/// Heartbeats recorded through a [`Context`](crate::Context) carry a timestamp
/// that is at most this much (plus scheduling delay of the clock thread) older
/// than the moment of the call.
pub const RESOLUTION: Duration = Duration::from_millis(5);

/// The cached clock of the process.
struct SystemClock {
    origin: Instant,
    /// Nanoseconds since `origin`, plus one (zero means "never" in entries).
    now: Arc<AtomicU64>,
    /// Wall-clock nanoseconds since the Unix epoch minus `now`, refreshed with it.
    wall_offset: AtomicI64,
}

impl SystemClock {
    fn mono(&self) -> u64 {
        saturating_nanos(self.origin.elapsed()).saturating_add(1)
    }

    fn refresh(&self) {
        let mono = self.mono();
        self.now.store(mono, Ordering::Relaxed);
        self.wall_offset.store(
            wall_nanos(SystemTime::now()) - mono as i64,
            Ordering::Relaxed,
        );
    }
}

fn system() -> &'static SystemClock {
    static CLOCK: OnceLock<SystemClock> = OnceLock::new();
    static THREAD: std::sync::Once = std::sync::Once::new();
    let clock = CLOCK.get_or_init(|| {
        let clock = SystemClock {
            origin: Instant::now(),
            now: Arc::new(AtomicU64::new(1)),
            wall_offset: AtomicI64::new(0),
        };
        clock.refresh();
        clock
    });
    THREAD.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("supervised-clock".into())
            .spawn(|| loop {
                std::thread::sleep(RESOLUTION);
                system().refresh();
            });
        if let Err(error) = spawned {
            tracing::error!(
                %error,
                "supervised: could not start the clock thread; heartbeat times will not advance"
            );
        }
    });
    clock
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds since the Unix epoch, negative before it.
fn wall_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

fn from_wall_nanos(n: i64) -> SystemTime {
    if n >= 0 {
        UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

/// A clock whose time moves only when told to, for deterministic tests of
/// staleness and of displayed times.
///
/// Give it to [`Registry::with_clock`](crate::Registry::with_clock); clones share the
/// same time.
///
/// ```
/// use std::time::Duration;
/// use supervised_core::{ManualClock, Registry};
///
/// let clock = ManualClock::new();
/// let registry = Registry::with_clock(clock.clone());
/// registry.heartbeat("sweep");
/// clock.advance(Duration::from_secs(61));
/// assert_eq!(
///     registry.is_healthy(&["sweep"], Duration::from_secs(60)),
///     (false, vec!["sweep".to_string()])
/// );
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    /// Monotonic nanoseconds plus one.
    now: Arc<AtomicU64>,
    wall_offset: AtomicI64,
}

impl ManualClock {
    /// A clock that reads the current system time as its wall time and never
    /// moves on its own.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A clock whose wall time starts at `wall`.
    pub fn starting_at(wall: SystemTime) -> Self {
        ManualClock {
            inner: Arc::new(ManualInner {
                now: Arc::new(AtomicU64::new(1)),
                wall_offset: AtomicI64::new(wall_nanos(wall) - 1),
            }),
        }
    }

    /// Moves both the monotonic and the wall reading forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.inner
            .now
            .fetch_add(saturating_nanos(by), Ordering::Relaxed);
    }

    /// Sets the wall reading to `wall` without moving the monotonic reading, as
    /// when an operator or NTP sets the system clock. Ages are unaffected.
    pub fn set_wall(&self, wall: SystemTime) {
        let mono = self.inner.now.load(Ordering::Relaxed) as i64;
        self.inner
            .wall_offset
            .store(wall_nanos(wall) - mono, Ordering::Relaxed);
    }

    /// The current wall reading.
    pub fn now(&self) -> SystemTime {
        Clock::Manual(self.clone()).now_wall()
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

/// The clock of a registry: the process's cached system clock or a manual one.
#[derive(Clone, Debug)]
pub(crate) enum Clock {
    System,
    Manual(ManualClock),
}

impl Clock {
    /// The atomic that heartbeats copy their timestamp from.
    pub(crate) fn cached(&self) -> Arc<AtomicU64> {
        match self {
            Clock::System => system().now.clone(),
            Clock::Manual(m) => m.inner.now.clone(),
        }
    }

    /// A precise monotonic reading (never zero).
    pub(crate) fn now_mono(&self) -> u64 {
        match self {
            Clock::System => system().mono(),
            Clock::Manual(m) => m.inner.now.load(Ordering::Relaxed),
        }
    }

    /// The current wall time.
    pub(crate) fn now_wall(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Manual(_) => self.wall_of(self.now_mono()),
        }
    }

    /// The wall time that corresponds to a monotonic reading, under the current
    /// relation between the two clocks.
    pub(crate) fn wall_of(&self, mono: u64) -> SystemTime {
        let offset = match self {
            Clock::System => system().wall_offset.load(Ordering::Relaxed),
            Clock::Manual(m) => m.inner.wall_offset.load(Ordering::Relaxed),
        };
        from_wall_nanos(offset.saturating_add(mono as i64))
    }
}

/// Encodes a wall time for an atomic slot.
pub(crate) fn encode_wall(t: SystemTime) -> i64 {
    wall_nanos(t)
}

/// Decodes what [`encode_wall`] stored.
pub(crate) fn decode_wall(n: i64) -> SystemTime {
    from_wall_nanos(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = ManualClock::starting_at(start);
        let c = Clock::Manual(clock.clone());
        let m0 = c.now_mono();
        assert_eq!(c.now_wall(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(c.now_mono() - m0, 1_500_000_000);
        assert_eq!(c.now_wall(), start + Duration::from_millis(1500));
    }

    #[test]
    fn wall_jump_leaves_monotonic_reading_alone() {
        let clock = ManualClock::new();
        let c = Clock::Manual(clock.clone());
        let m0 = c.now_mono();
        let back = UNIX_EPOCH + Duration::from_secs(3600);
        clock.set_wall(back);
        assert_eq!(c.now_mono(), m0);
        assert_eq!(c.now_wall(), back);
    }

    #[test]
    fn wall_encoding_round_trips_before_and_after_epoch() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::from_secs(86_400),
        ] {
            assert_eq!(decode_wall(encode_wall(t)), t);
        }
    }

    #[test]
    fn system_clock_cache_follows_real_time() {
        let c = Clock::System;
        let cached = c.cached();
        let precise = c.now_mono();
        assert!(cached.load(Ordering::Relaxed) <= precise);
        let wall = c.wall_of(precise);
        let now = SystemTime::now();
        let diff = match now.duration_since(wall) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(diff < Duration::from_secs(1), "{diff:?}");
    }
}
