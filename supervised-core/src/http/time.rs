//! Instants as RFC 3339 text, on humantime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats `t` as RFC 3339 in UTC with nanoseconds, e.g.
/// `2026-04-15T10:00:00.123456789Z` (always nine fractional digits).
/// Instants outside what RFC 3339 can write (before 1970 here, after 9999)
/// are clamped to the nearest it can.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    Rfc3339(t).to_string()
}

/// An instant written as [`rfc3339`] writes it, straight into a formatter
/// or a serializer, without a `String` of its own.
#[derive(Clone, Copy)]
pub(crate) struct Rfc3339(pub(crate) SystemTime);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 9999-12-31T23:59:59.999999999Z
        let last = UNIX_EPOCH + Duration::new(253_402_300_799, 999_999_999);
        std::fmt::Display::fmt(
            &humantime::format_rfc3339_nanos(self.0.clamp(UNIX_EPOCH, last)),
            f,
        )
    }
}

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(at(1_776_247_200, 123_456_789)),
            "2026-04-15T10:00:00.123456789Z"
        );
        // Leap day, end of a century leap year, far future.
        assert_eq!(
            rfc3339(at(951_782_400, 0)),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            rfc3339(at(978_307_199, 999_999_999)),
            "2000-12-31T23:59:59.999999999Z"
        );
        assert_eq!(
            rfc3339(at(4_107_542_400, 5)),
            "2100-03-01T00:00:00.000000005Z"
        );
        // Outside the format's range: clamped, never a panic.
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            rfc3339(at(300_000_000_000, 0)),
            "9999-12-31T23:59:59.999999999Z"
        );
        // Serialized in place: the same text, as a JSON string.
        assert_eq!(
            serde_json::to_string(&Rfc3339(at(951_782_400, 7))).unwrap(),
            "\"2000-02-29T00:00:00.000000007Z\""
        );
    }
}
