//! Durations written the humantime way (`"500ms"`, `"30s"`, `"1m30s"`, `"2h"`),
//! parsed when the macro expands.

use std::fmt;

/// A parsed duration, kept as whole seconds and the nanoseconds beyond them so
/// that the expansion can build it with the const `Duration::new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Dur {
    pub(crate) secs: u64,
    pub(crate) nanos: u32,
}

impl Dur {
    fn total_nanos(self) -> u128 {
        u128::from(self.secs) * NANOS_PER_SEC + u128::from(self.nanos)
    }

    fn from_total_nanos(n: u128) -> Option<Self> {
        let secs = u64::try_from(n / NANOS_PER_SEC).ok()?;
        // Always below 10^9.
        let nanos = (n % NANOS_PER_SEC) as u32;
        Some(Dur { secs, nanos })
    }

    pub(crate) fn is_zero(self) -> bool {
        self.secs == 0 && self.nanos == 0
    }
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

impl fmt::Display for Dur {
    /// Writes the duration back in the form it is parsed from, e.g. `1m30s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0s");
        }
        let mut rest = self.total_nanos();
        for (unit, size) in UNITS_OUT {
            let n = rest / size;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                rest -= n * size;
            }
        }
        Ok(())
    }
}

const UNITS_OUT: [(&str, u128); 7] = [
    ("d", 86_400 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// The size in nanoseconds of a unit suffix.
fn unit(suffix: &str) -> Option<u128> {
    Some(match suffix {
        "ns" | "nsec" | "nanos" => 1,
        "us" | "µs" | "usec" | "micros" => 1_000,
        "ms" | "msec" | "millis" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => NANOS_PER_SEC,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * NANOS_PER_SEC,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600 * NANOS_PER_SEC,
        "d" | "day" | "days" => 86_400 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Why a duration string was rejected; rendered as the compile error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DurError {
    Empty,
    MissingNumber(String),
    MissingUnit(String),
    UnknownUnit(String),
    Fraction(String),
    Overflow,
}

impl fmt::Display for DurError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORMS: &str = "write it like \"500ms\", \"30s\", \"1m30s\" or \"2h\" \
             (units: ns, us, ms, s, m, h, d)";
        match self {
            DurError::Empty => write!(f, "empty duration; {FORMS}"),
            DurError::MissingNumber(at) => {
                write!(
                    f,
                    "expected a number before `{at}` in the duration; {FORMS}"
                )
            }
            DurError::MissingUnit(n) => write!(
                f,
                "missing unit after `{n}` in the duration; write e.g. \"{n}s\" or \"{n}ms\""
            ),
            DurError::UnknownUnit(u) => write!(f, "unknown duration unit `{u}`; {FORMS}"),
            DurError::Fraction(s) => write!(
                f,
                "fractions are not supported in durations (`{s}`); use a smaller unit, \
                 e.g. \"1500ms\" instead of \"1.5s\""
            ),
            DurError::Overflow => write!(
                f,
                "duration too large: it does not fit a `std::time::Duration`; \
                 write a smaller one such as \"1h\""
            ),
        }
    }
}

/// Parses a sequence of `<number><unit>` pieces, optionally separated by spaces:
/// `"1m30s"`, `"1h 15m"`, `"250ms"`. Every piece needs a unit.
pub(crate) fn parse(s: &str) -> Result<Dur, DurError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurError::Empty);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            let piece: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            return Err(DurError::MissingNumber(piece));
        }
        let (number, after) = rest.split_at(digits);
        if after.starts_with(['.', ',']) {
            let piece: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            return Err(DurError::Fraction(piece));
        }
        let after = after.trim_start();
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || c.is_whitespace())
            .map_or(after.len(), |(i, _)| i);
        let (suffix, after) = after.split_at(unit_len);
        if suffix.is_empty() {
            return Err(DurError::MissingUnit(number.to_owned()));
        }
        let size = unit(suffix).ok_or_else(|| DurError::UnknownUnit(suffix.to_owned()))?;
        let n: u128 = number.parse().map_err(|_| DurError::Overflow)?;
        total = n
            .checked_mul(size)
            .and_then(|piece| total.checked_add(piece))
            .ok_or(DurError::Overflow)?;
        rest = after.trim_start();
    }
    Dur::from_total_nanos(total).ok_or(DurError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (u64, u32) {
        let d = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (d.secs, d.nanos)
    }

    #[test]
    fn accepts_the_humantime_forms() {
        assert_eq!(ok("500ms"), (0, 500_000_000));
        assert_eq!(ok("30s"), (30, 0));
        assert_eq!(ok("1m30s"), (90, 0));
        assert_eq!(ok("1m 30s"), (90, 0));
        assert_eq!(ok("2h"), (7_200, 0));
        assert_eq!(ok("1d"), (86_400, 0));
        assert_eq!(ok("1s250ms"), (1, 250_000_000));
        assert_eq!(ok("7ns"), (0, 7));
        assert_eq!(ok("3us"), (0, 3_000));
        assert_eq!(ok("3µs"), (0, 3_000));
        assert_eq!(ok("2 minutes"), (120, 0));
        assert_eq!(ok("0s"), (0, 0));
        assert_eq!(ok("18446744073709551615s"), (u64::MAX, 0));
    }

    #[test]
    fn rejects_malformed_strings() {
        assert_eq!(parse(""), Err(DurError::Empty));
        assert_eq!(parse("  "), Err(DurError::Empty));
        assert_eq!(parse("30"), Err(DurError::MissingUnit("30".into())));
        assert_eq!(parse("30x"), Err(DurError::UnknownUnit("x".into())));
        assert_eq!(parse("s"), Err(DurError::MissingNumber("s".into())));
        assert_eq!(parse("1.5s"), Err(DurError::Fraction("1.5s".into())));
        assert_eq!(parse("-1s"), Err(DurError::MissingNumber("-1s".into())));
        assert_eq!(parse("1m30"), Err(DurError::MissingUnit("30".into())));
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(parse("18446744073709551616s"), Err(DurError::Overflow));
        assert_eq!(
            parse("99999999999999999999999999999999999999999d"),
            Err(DurError::Overflow)
        );
        assert_eq!(parse("18446744073709551615s 1s"), Err(DurError::Overflow));
    }

    #[test]
    fn displays_in_the_parsed_form() {
        assert_eq!(parse("90s").unwrap().to_string(), "1m30s");
        assert_eq!(parse("1500ms").unwrap().to_string(), "1s500ms");
        assert_eq!(parse("0ms").unwrap().to_string(), "0s");
    }
}
