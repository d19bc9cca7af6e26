//! Clocks behind heartbeats, ages and displayed times.
//!
//! Two readings are kept apart:
//!
//! * a **monotonic** reading, in nanoseconds, decides every age ("how long since
//!   the last heartbeat?"). It never jumps when the system's wall clock is set.
//!   One bounded exception: a by-name heartbeat that repeats within a few
//!   milliseconds keeps the name's last stamp, judging the time passed by the
//!   wall reading it takes anyway. A wall clock set back can then make the
//!   name look older than it is, never younger (see
//!   [`Registry::heartbeat`](crate::Registry::heartbeat)).
//! * a **wall** reading ([`SystemTime`]) is only for display. It is derived from
//!   the monotonic stamp and the current relation between the two clocks, so a
//!   displayed time follows the system clock when an operator or NTP sets it.
//!
//! On Linux a heartbeat stamps the kernel's coarse monotonic clock
//! (`CLOCK_MONOTONIC_COARSE`): one read of a page the kernel keeps up to date,
//! with no system call, no hardware counter read and no background thread.
//! Its resolution is the kernel tick ([`resolution`]: 4 ms at the common
//! `HZ=250`, at most [`RESOLUTION`] for any `HZ` of 100 or more). Elsewhere the
//! precise monotonic clock is read instead.
//!
//! A [`ManualClock`] replaces it in tests: time moves only when the test says so.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
#[cfg(not(target_os = "linux"))]
use std::time::Instant;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The coarsest a heartbeat's timestamp can be on a supported system: the
/// kernel tick at `HZ=100`. See [`resolution`] for this machine's.
pub const RESOLUTION: Duration = Duration::from_millis(10);

/// The resolution of heartbeat timestamps on this machine.
pub fn resolution() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let res = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
        Duration::new(res.tv_sec as u64, res.tv_nsec as u32)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Duration::from_nanos(1)
    }
}

/// Nanoseconds on the system's monotonic clock, never zero.
#[cfg(target_os = "linux")]
#[inline]
fn mono_nanos(id: rustix::time::ClockId) -> u64 {
    let t = rustix::time::clock_gettime(id);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
        .max(1)
}

/// Where monotonic readings start on systems read through [`Instant`].
#[cfg(not(target_os = "linux"))]
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The heartbeat clock: coarse and cheap.
#[inline]
fn system_coarse() -> u64 {
    #[cfg(target_os = "linux")]
    {
        mono_nanos(rustix::time::ClockId::MonotonicCoarse)
    }
    #[cfg(not(target_os = "linux"))]
    {
        system_precise()
    }
}

/// The same clock, read precisely: for ages and for display.
fn system_precise() -> u64 {
    #[cfg(target_os = "linux")]
    {
        mono_nanos(rustix::time::ClockId::Monotonic)
    }
    #[cfg(not(target_os = "linux"))]
    {
        saturating_nanos(origin().elapsed()).saturating_add(1)
    }
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The system's wall clock in nanoseconds since the Unix epoch (negative
/// before it), read as `SystemTime::now` reads it.
#[inline]
fn system_wall_nanos() -> i64 {
    #[cfg(target_os = "linux")]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        t.tv_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec as i64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        wall_nanos(SystemTime::now())
    }
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
    /// [`Clock::stamp_reuse_window`]: 0, except in tests of the reuse.
    stamp_reuse_window: AtomicU64,
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
                stamp_reuse_window: AtomicU64::new(0),
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

    /// Lets by-name heartbeats keep a monotonic stamp for `window`, as on
    /// the system clock.
    #[cfg(test)]
    pub(crate) fn set_stamp_reuse_window(&self, window: Duration) {
        self.inner
            .stamp_reuse_window
            .store(saturating_nanos(window), Ordering::Relaxed);
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

/// The clock of a registry: the system's or a manual one.
#[derive(Clone, Debug)]
pub(crate) enum Clock {
    System,
    Manual(ManualClock),
    /// The system clock read once: a view of many entries converts each
    /// monotonic beat to a wall time against one reading of both clocks
    /// instead of reading them per entry.
    Anchored {
        wall: SystemTime,
        mono: u64,
    },
}

/// What a heartbeat reads its timestamp from.
#[derive(Debug)]
pub(crate) enum HotClock {
    System,
    Manual(Arc<AtomicU64>),
}

impl HotClock {
    /// The heartbeat's timestamp: a coarse monotonic reading (never zero).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            HotClock::System => system_coarse(),
            HotClock::Manual(now) => now.load(Ordering::Relaxed),
        }
    }
}

impl Clock {
    /// The clock heartbeats read.
    pub(crate) fn hot(&self) -> HotClock {
        match self {
            Clock::System | Clock::Anchored { .. } => HotClock::System,
            Clock::Manual(m) => HotClock::Manual(m.inner.now.clone()),
        }
    }

    /// A precise monotonic reading (never zero).
    pub(crate) fn now_mono(&self) -> u64 {
        match self {
            Clock::System => system_precise(),
            Clock::Manual(m) => m.inner.now.load(Ordering::Relaxed),
            Clock::Anchored { mono, .. } => *mono,
        }
    }

    /// This clock for one view: the system clock read once (a manual clock
    /// is cheap to read and stays as it is).
    pub(crate) fn anchored(&self) -> Clock {
        match self {
            Clock::System | Clock::Anchored { .. } => Clock::Anchored {
                wall: SystemTime::now(),
                mono: system_precise(),
            },
            Clock::Manual(m) => Clock::Manual(m.clone()),
        }
    }

    /// The current wall time.
    pub(crate) fn now_wall(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Manual(_) => self.wall_of(self.now_mono()),
            Clock::Anchored { wall, .. } => *wall,
        }
    }

    /// The current wall time, encoded as [`encode_wall`] does: what a
    /// by-name heartbeat stores. On Linux the system clock is read as
    /// `SystemTime::now` reads it (`CLOCK_REALTIME`), without building a
    /// `SystemTime` and measuring it from the epoch again, which was about a
    /// quarter of a by-name heartbeat.
    #[inline]
    pub(crate) fn now_wall_encoded(&self) -> i64 {
        match self {
            Clock::System => system_wall_nanos(),
            _ => encode_wall(self.now_wall()),
        }
    }

    /// How long, in nanoseconds of wall time, a by-name heartbeat may keep
    /// the name's monotonic stamp, taken by an earlier beat of its thread,
    /// instead of reading the monotonic clock again: [`RESOLUTION`] less
    /// this machine's [`resolution`]. Zero (always read) where the tick is
    /// [`RESOLUTION`] already, and on a [`ManualClock`], whose readings a
    /// test sets one by one.
    ///
    /// The wall reading, which a by-name heartbeat takes anyway for its
    /// exact time, tells how much time has passed since the stamp: the two
    /// clocks run at the same rate (NTP's slewing speeds or slows both), so
    /// while nobody sets the wall clock, a stamp kept for less than the
    /// window is at most [`RESOLUTION`] old, as a `Context` beat's may be.
    /// A stamp is never kept once the wall clock shows an earlier time than
    /// when it was taken. Setting the wall clock forward only makes the
    /// wall time passed longer than the real time, so a kept stamp is then
    /// younger than the window. Setting it back by `d`, and beating again
    /// within the window of `d` later, keeps a stamp about `d` old: until
    /// that thread's next beat takes a new one, the name's age reads up to
    /// `d` too long. A name is shown older than it is then, never younger.
    pub(crate) fn stamp_reuse_window(&self) -> u64 {
        match self {
            Clock::System | Clock::Anchored { .. } => {
                static WINDOW: OnceLock<u64> = OnceLock::new();
                *WINDOW.get_or_init(|| saturating_nanos(RESOLUTION.saturating_sub(resolution())))
            }
            Clock::Manual(m) => m.inner.stamp_reuse_window.load(Ordering::Relaxed),
        }
    }

    /// The wall time that corresponds to a monotonic reading, under the current
    /// relation between the two clocks.
    pub(crate) fn wall_of(&self, mono: u64) -> SystemTime {
        match self {
            Clock::System => {
                let now_wall = SystemTime::now();
                let ago = Duration::from_nanos(system_precise().saturating_sub(mono));
                now_wall.checked_sub(ago).unwrap_or(now_wall)
            }
            Clock::Manual(m) => from_wall_nanos(
                m.inner
                    .wall_offset
                    .load(Ordering::Relaxed)
                    .saturating_add(mono as i64),
            ),
            Clock::Anchored { wall, mono: now } => {
                let ago = Duration::from_nanos(now.saturating_sub(mono));
                wall.checked_sub(ago).unwrap_or(*wall)
            }
        }
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

/// How far "never" is for deadlines that would not fit the clock's type.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d` on tokio's clock, or a far future when that does not fit an
/// `Instant` (a `Duration::MAX` grace or timeout).
pub(crate) fn deadline_after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + FAR_FUTURE)
}

/// `now + d` on the wall clock, or a far future when that does not fit.
pub(crate) fn wall_after(d: Duration) -> SystemTime {
    let now = SystemTime::now();
    now.checked_add(d).unwrap_or_else(|| now + FAR_FUTURE)
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

    /// The by-name heartbeat's reading of the system clock is the one
    /// `SystemTime::now` gives: it falls between two readings of it.
    #[test]
    fn system_wall_reading_is_system_time_now() {
        for _ in 0..1_000 {
            let before = encode_wall(SystemTime::now());
            let read = Clock::System.now_wall_encoded();
            let after = encode_wall(SystemTime::now());
            assert!(
                before <= read && read <= after,
                "{before} <= {read} <= {after}"
            );
        }
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
    fn system_clock_heartbeat_reading_follows_real_time() {
        let c = Clock::System;
        let hot = c.hot().now();
        let precise = c.now_mono();
        assert!(hot <= precise);
        assert!(Duration::from_nanos(precise - hot) <= RESOLUTION);
        let wall = c.wall_of(hot);
        let diff = match SystemTime::now().duration_since(wall) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(diff < Duration::from_secs(1), "{diff:?}");
        assert!(resolution() <= RESOLUTION, "{:?}", resolution());
    }
}
