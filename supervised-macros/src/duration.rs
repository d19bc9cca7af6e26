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

/// Property tests: the parser never panics, accepts every form it documents
/// and reports values too large for a `Duration` instead of wrapping.
#[cfg(test)]
mod properties {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    /// Every spelling of each unit, with the unit's size.
    const SPELLINGS: [(&[&str], Duration); 7] = [
        (&["ns", "nsec", "nanos"], Duration::from_nanos(1)),
        (&["us", "µs", "usec", "micros"], Duration::from_micros(1)),
        (&["ms", "msec", "millis"], Duration::from_millis(1)),
        (
            &["s", "sec", "secs", "second", "seconds"],
            Duration::from_secs(1),
        ),
        (
            &["m", "min", "mins", "minute", "minutes"],
            Duration::from_secs(60),
        ),
        (
            &["h", "hr", "hrs", "hour", "hours"],
            Duration::from_secs(3_600),
        ),
        (&["d", "day", "days"], Duration::from_secs(86_400)),
    ];

    /// One `<number><unit>` piece as written: leading zeros, the number, an
    /// optional space, a spelling of the unit (index into `SPELLINGS`).
    #[derive(Clone, Debug)]
    struct Piece {
        zeros: usize,
        n: u64,
        space: bool,
        unit: usize,
        spelling: usize,
    }

    impl Piece {
        fn render(&self) -> String {
            let spellings = SPELLINGS[self.unit].0;
            format!(
                "{}{}{}{}",
                "0".repeat(self.zeros),
                self.n,
                if self.space { " " } else { "" },
                spellings[self.spelling % spellings.len()]
            )
        }

        /// The piece's value computed with `std::time::Duration`, the oracle;
        /// `None` when it does not fit.
        fn value(&self) -> Option<Duration> {
            let size = SPELLINGS[self.unit].1;
            if size < Duration::from_secs(1) {
                let nanos = u128::from(self.n) * size.as_nanos();
                let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
                Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
            } else {
                self.n.checked_mul(size.as_secs()).map(Duration::from_secs)
            }
        }
    }

    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![0..1_000u64, 0..100_000_000u64, any::<u64>()]
    }

    fn piece() -> impl Strategy<Value = Piece> {
        (0..3usize, number(), any::<bool>(), 0..7usize, 0..5usize).prop_map(
            |(zeros, n, space, unit, spelling)| Piece {
                zeros,
                n,
                space,
                unit,
                spelling,
            },
        )
    }

    /// What goes between two pieces: nothing or some whitespace.
    fn separator() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", " ", "  ", "\t", " \n "])
    }

    /// Writes `d` as `<n>d<n>h<n>m<n>s<n>ms<n>us<n>ns`, leaving out zero
    /// parts (all of them but one for a zero duration), with the chosen
    /// spellings and separators.
    fn render(d: Duration, spelling: &[usize; 7], separators: &[&str; 7]) -> String {
        let secs = d.as_secs();
        let sub = u64::from(d.subsec_nanos());
        // Largest unit first, as indices into `SPELLINGS`.
        let parts = [
            (6, secs / 86_400),
            (5, secs % 86_400 / 3_600),
            (4, secs % 3_600 / 60),
            (3, secs % 60),
            (2, sub / 1_000_000),
            (1, sub % 1_000_000 / 1_000),
            (0, sub % 1_000),
        ];
        let mut out = String::new();
        for (i, (unit, n)) in parts.into_iter().enumerate() {
            if n == 0 && !(d.is_zero() && unit == 3) {
                continue;
            }
            if !out.is_empty() {
                out.push_str(separators[i]);
            }
            let spellings = SPELLINGS[unit].0;
            out.push_str(&n.to_string());
            out.push_str(spellings[spelling[i] % spellings.len()]);
        }
        out
    }

    fn as_std(d: Dur) -> Duration {
        Duration::new(d.secs, d.nanos)
    }

    /// The strings the parser must survive: its own alphabet, mixed freely.
    fn near_miss() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "0",
                "1",
                "9",
                "42",
                "18446744073709551615",
                "99999999999999999999999",
                " ",
                "\t",
                ".",
                ",",
                "+",
                "-",
                "_",
                "e",
                "s",
                "m",
                "h",
                "d",
                "ms",
                "us",
                "µs",
                "ns",
                "sec",
                "min",
                "hours",
                "µ",
                "é",
                "\u{a0}",
                "\u{2003}",
                "\u{0}",
            ]),
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn never_panics_on_any_string(s in any::<String>()) {
            if let Err(e) = parse(&s) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn never_panics_on_near_misses(s in near_miss()) {
            match parse(&s) {
                Ok(d) => {
                    // Accepted only without a sign, a fraction or a stray
                    // character, and what it writes back parses to the same.
                    prop_assert!(!s.contains(['-', '+', '.', ',', '_', '\u{0}']), "{s:?}");
                    prop_assert_eq!(parse(&d.to_string()), Ok(d));
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        #[test]
        fn every_duration_round_trips(
            secs in prop_oneof![0..100_000u64, any::<u64>()],
            nanos in prop_oneof![Just(0u32), 0..1_000_000_000u32],
            spelling in any::<[usize; 7]>(),
            separators in [separator(), separator(), separator(), separator(),
                           separator(), separator(), separator()],
        ) {
            let d = Duration::new(secs, nanos);
            let text = render(d, &spelling, &separators);
            let parsed = parse(&text).map(as_std);
            prop_assert_eq!(parsed, Ok(d), "{:?}", text);
            // The canonical form written back for messages parses too.
            let canonical = parse(&text).unwrap().to_string();
            prop_assert_eq!(parse(&canonical).map(as_std), Ok(d), "{:?}", canonical);
        }

        #[test]
        fn any_sequence_of_pieces_sums_or_overflows(
            pieces in prop::collection::vec(piece(), 1..6),
            separators in prop::collection::vec(separator(), 6),
            padding in prop::sample::select(vec!["", " ", "\t "]),
        ) {
            let mut text = padding.to_owned();
            for (piece, sep) in pieces.iter().zip(&separators) {
                text.push_str(&piece.render());
                text.push_str(sep);
            }
            text.push_str(padding);
            let expected = pieces
                .iter()
                .try_fold(Duration::ZERO, |sum, p| sum.checked_add(p.value()?));
            let got = parse(&text);
            match expected {
                Some(d) => prop_assert_eq!(got.map(as_std), Ok(d), "{:?}", text),
                None => prop_assert_eq!(got, Err(DurError::Overflow), "{:?}", text),
            }
        }

        #[test]
        fn one_past_the_largest_duration_overflows(
            extra in 1..=u64::MAX,
            unit in 0..7usize,
            spelling in 0..5usize,
        ) {
            // `Duration::MAX` written out, plus at least one more of a unit.
            let max = render(Duration::MAX, &[0; 7], &[""; 7]);
            let spellings = SPELLINGS[unit].0;
            let text = format!("{max} {extra}{}", spellings[spelling % spellings.len()]);
            prop_assert_eq!(parse(&max).map(as_std), Ok(Duration::MAX));
            prop_assert_eq!(parse(&text), Err(DurError::Overflow), "{:?}", text);
        }

        #[test]
        fn numbers_too_long_for_any_integer_overflow(
            digits in "[1-9][0-9]{39,80}",
            unit in prop::sample::select(vec!["ns", "s", "d"]),
        ) {
            prop_assert_eq!(parse(&format!("{digits}{unit}")), Err(DurError::Overflow));
        }

        /// Numbers that fit the parser's 128-bit accumulator but whose product
        /// with the unit, or whose sum, does not: a wrapping computation
        /// would turn some of them into small durations (`2^112` days is
        /// exactly `2^128` nanoseconds, which wraps to zero).
        #[test]
        fn products_and_sums_past_128_bits_overflow_instead_of_wrapping(
            k in 1..=65_535u128,
            unit in 1..7usize,
            fraction in any::<u128>(),
            a in (1u128 << 127)..=u128::MAX,
            past in 0..1_000_000_000_000u128,
        ) {
            let text = format!("{}d", k << 112);
            prop_assert_eq!(parse(&text), Err(DurError::Overflow), "{:?}", text);

            let size = SPELLINGS[unit].1.as_nanos();
            let least = u128::MAX / size + 1;
            let n = least + fraction % (u128::MAX - least + 1);
            let text = format!("{n}{}", SPELLINGS[unit].0[0]);
            prop_assert_eq!(parse(&text), Err(DurError::Overflow), "{:?}", text);

            // `a + b` is `2^128 + past`: wrapped, a duration of `past` ns.
            let b = (u128::MAX - a) + 1 + past;
            let text = format!("{a}ns {b}ns");
            prop_assert_eq!(parse(&text), Err(DurError::Overflow), "{:?}", text);
        }
    }
}
