//! Restart policy: how long to wait before the next attempt, which endings
//! restart, and when to give up.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Randomisation added to backoff delays so that many tasks failing together do
/// not restart in lockstep. Every variant keeps the delay at or below the
/// computed one, so jitter never exceeds [`Backoff::max`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Jitter {
    /// Exact delays (the default).
    #[default]
    None,
    /// A uniformly random delay in `[0, d]`.
    Full,
    /// `d / 2` plus a uniformly random delay in `[0, d / 2]`.
    Equal,
}

impl FromStr for Jitter {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "none" => Ok(Jitter::None),
            "full" => Ok(Jitter::Full),
            "equal" => Ok(Jitter::Equal),
            _ => Err(ParseError::new("jitter", s, &["none", "full", "equal"])),
        }
    }
}

/// Exponential backoff: `initial`, `2 × initial`, `4 × initial`, ... capped at
/// `max`, back to `initial` after an attempt that ran at least `reset_after`.
///
/// The defaults are 1 s, 30 s, no jitter and a reset after 60 s of running:
/// delays of 1, 2, 4, 8, 16, 30, 30, ... seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay. When `initial` is larger, every delay is `max`.
    pub max: Duration,
    /// Randomisation, off by default.
    pub jitter: Jitter,
    /// An attempt that ran at least this long without failing resets the delay to
    /// `initial`.
    pub reset_after: Duration,
}

/// Default first delay: 1 s.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Default largest delay: 30 s.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default run time after which the delay resets: 60 s.
pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(60);
/// Default time an attempt has to return after cancellation before it is
/// dropped: 5 s.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// Default length of one poll past which a task is reported as blocking its
/// worker thread: 1 s.
pub const DEFAULT_BLOCKING_AFTER: Duration = Duration::from_secs(1);

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: DEFAULT_BACKOFF_INITIAL,
            max: DEFAULT_BACKOFF_MAX,
            jitter: Jitter::None,
            reset_after: DEFAULT_RESET_AFTER,
        }
    }
}

impl Backoff {
    /// The delay before restart number `n + 1` of a streak (`n = 0` for the first
    /// restart), before jitter: `min(max, initial × 2ⁿ)`, without overflow for
    /// any `n`.
    pub fn delay(&self, n: u32) -> Duration {
        let grown = 1u32
            .checked_shl(n)
            .and_then(|factor| self.initial.checked_mul(factor))
            .unwrap_or(Duration::MAX);
        grown.min(self.max)
    }

    /// [`Backoff::delay`] with this backoff's jitter applied, using `random` (a
    /// uniformly distributed 64-bit value) as the source of randomness.
    pub fn jittered_delay(&self, n: u32, random: u64) -> Duration {
        let d = self.delay(n);
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => d.mul_f64(fraction),
            Jitter::Equal => d / 2 + (d - d / 2).mul_f64(fraction),
        }
    }
}

/// Which endings of an attempt lead to a restart.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// Restart after a panic, an `Err` or a stall; a clean return ends the task
    /// (the default; OTP's "transient").
    #[default]
    OnFailure,
    /// Restart after every ending, clean returns included, with the same
    /// backoff (OTP's "permanent").
    Always,
    /// Never restart: the first failure ends the task with
    /// [`Exit::Failed`](crate::Exit::Failed) (OTP's "temporary").
    Never,
}

impl FromStr for RestartPolicy {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "on_failure" => Ok(RestartPolicy::OnFailure),
            "always" => Ok(RestartPolicy::Always),
            "never" => Ok(RestartPolicy::Never),
            _ => Err(ParseError::new(
                "restart",
                s,
                &["on_failure", "always", "never"],
            )),
        }
    }
}

/// What the stall watchdog does with a task that has not beaten for longer than
/// its `stale_after`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnStale {
    /// Mark it stale in the registry and log a warning; it becomes fresh again at
    /// its next heartbeat (the default).
    #[default]
    Report,
    /// Also drop the stalled attempt, record a failure of kind
    /// [`FailureKind::Stalled`](crate::FailureKind::Stalled) and restart it with
    /// backoff.
    Restart,
}

impl FromStr for OnStale {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "report" => Ok(OnStale::Report),
            "restart" => Ok(OnStale::Restart),
            _ => Err(ParseError::new("on_stale", s, &["report", "restart"])),
        }
    }
}

/// A crash-loop limit: more than `max_restarts` restarts within any window of
/// length `within` ends the task with [`Exit::Failed`](crate::Exit::Failed).
///
/// The failure that would need restart number `max_restarts + 1` inside the
/// window is not a restart: `max_restarts = N` allows `N + 1` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartLimit {
    /// Restarts allowed inside the window.
    pub max_restarts: u32,
    /// The sliding window's length.
    pub within: Duration,
}

/// A value that is not one of the accepted words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    what: &'static str,
    got: String,
    expected: &'static [&'static str],
}

impl ParseError {
    fn new(what: &'static str, got: &str, expected: &'static [&'static str]) -> Self {
        ParseError {
            what,
            got: got.to_owned(),
            expected,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} `{}`; expected one of: ", self.what, self.got)?;
        for (i, e) in self.expected.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{e}`")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// A small, fast pseudo-random generator (SplitMix64) for jitter; not for
/// anything that needs unpredictability.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Rng(h.finish())
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            ..Backoff::default()
        }
    }

    #[test]
    fn default_sequence_doubles_to_the_cap() {
        let d: Vec<u64> = (0..8)
            .map(|n| Backoff::default().delay(n).as_secs())
            .collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn table_from_akka_backoff_without_random_factor() {
        let min = Duration::from_secs(60);
        let day = Duration::from_secs(86_400);
        let cases = [
            (0, Duration::ZERO, Duration::ZERO, Duration::ZERO),
            (0, 5 * min, 7 * min, 5 * min),
            (
                2,
                Duration::from_secs(5),
                Duration::from_secs(7),
                Duration::from_secs(7),
            ),
            (2, Duration::from_secs(5), 7 * day, Duration::from_secs(20)),
            (29, 5 * min, 10 * min, 10 * min),
            (u32::MAX, 10_000 * day, 10_000 * day, 10_000 * day),
        ];
        for (n, initial, max, want) in cases {
            assert_eq!(b(initial, max).delay(n), want, "n={n}");
        }
    }

    #[test]
    fn initial_above_max_is_capped() {
        let p = b(Duration::from_secs(10), Duration::from_secs(3));
        assert_eq!(p.delay(0), Duration::from_secs(3));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let mut rng = Rng::from_entropy();
        for jitter in [Jitter::Full, Jitter::Equal] {
            let p = Backoff {
                jitter,
                ..Backoff::default()
            };
            for n in 0..40 {
                let exact = p.delay(n);
                for _ in 0..200 {
                    let d = p.jittered_delay(n, rng.next_u64());
                    assert!(d <= exact && d <= p.max, "{jitter:?} n={n}: {d:?}");
                    if jitter == Jitter::Equal {
                        assert!(d >= exact / 2, "{d:?} < half of {exact:?}");
                    }
                }
            }
            // The extremes of the random input map to the ends of the range.
            assert!(p.jittered_delay(5, u64::MAX) <= p.max);
        }
        assert_eq!(
            Backoff::default().jittered_delay(3, 12345),
            Duration::from_secs(8)
        );
    }

    #[test]
    fn words_parse_and_bad_words_list_the_choices() {
        assert_eq!("always".parse(), Ok(RestartPolicy::Always));
        assert_eq!("restart".parse(), Ok(OnStale::Restart));
        assert_eq!("equal".parse(), Ok(Jitter::Equal));
        let err = "sometimes".parse::<RestartPolicy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown restart `sometimes`; expected one of: `on_failure`, `always`, `never`"
        );
    }
}
