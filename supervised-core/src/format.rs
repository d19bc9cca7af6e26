//! Values rendered for people: durations in logs, messages and views.

use std::fmt;
use std::time::Duration;

/// A duration rounded for reading, as this crate writes durations in its logs,
/// probe messages and status lines: `3.02 s`, `14.5 s`, `250 ms`,
/// `2 min 5 s`, `1.5 h`.
///
/// ```
/// use std::time::Duration;
/// use supervised_core::format::Rounded;
///
/// assert_eq!(Rounded(Duration::from_nanos(3_019_999_012)).to_string(), "3.02 s");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounded(pub Duration);

impl fmt::Display for Rounded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let s = d.as_secs_f64();
        if d.is_zero() {
            f.write_str("0 s")
        } else if d < Duration::from_millis(1) {
            write!(f, "{} µs", d.as_micros().max(1))
        } else if d < Duration::from_secs(1) {
            write!(f, "{} ms", d.as_millis())
        } else if s < 10.0 {
            write!(f, "{s:.2} s")
        } else if s < 100.0 {
            write!(f, "{s:.1} s")
        } else if s < 3600.0 {
            let secs = d.as_secs();
            match secs % 60 {
                0 => write!(f, "{} min", secs / 60),
                rest => write!(f, "{} min {rest} s", secs / 60),
            }
        } else {
            write!(f, "{:.1} h", s / 3600.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let cases = [
            (Duration::ZERO, "0 s"),
            (Duration::from_nanos(10), "1 µs"),
            (Duration::from_micros(250), "250 µs"),
            (Duration::from_millis(250), "250 ms"),
            (Duration::from_nanos(3_019_999_012), "3.02 s"),
            (Duration::from_millis(14_549), "14.5 s"),
            (Duration::from_secs(125), "2 min 5 s"),
            (Duration::from_secs(300), "5 min"),
            (Duration::from_secs(5400), "1.5 h"),
        ];
        for (d, want) in cases {
            assert_eq!(Rounded(d).to_string(), want, "{d:?}");
        }
    }
}
