//! Probe query strings: `verbose` and repeated `exclude=<name>`.

use super::{Reject, MAX_EXCLUDES, MAX_QUERY_LEN};

#[derive(Debug, Default, PartialEq)]
pub(super) struct ProbeQuery {
    pub(super) verbose: bool,
    pub(super) exclude: Vec<String>,
}

/// Parses a probe's query: `verbose` (any value, or none) and `exclude=<name>`
/// (repeatable). Other keys are ignored, as kube-apiserver does.
pub(super) fn parse_query(raw: Option<&str>) -> Result<ProbeQuery, Reject> {
    let mut query = ProbeQuery::default();
    let Some(raw) = raw else {
        return Ok(query);
    };
    if raw.len() > MAX_QUERY_LEN {
        return Err(Reject::bad_query(
            "query_too_long",
            "the query string is longer than the endpoints accept",
        ));
    }
    let malformed = || {
        Reject::bad_query(
            "malformed_query",
            "the query string is not valid percent-encoded UTF-8",
        )
    };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (pair, None),
        };
        let key = percent_decode(key).ok_or_else(malformed)?;
        let value = match value {
            Some(v) => Some(percent_decode(v).ok_or_else(malformed)?),
            None => None,
        };
        match key.as_str() {
            "verbose" => query.verbose = true,
            "exclude" => {
                let name = value.unwrap_or_default();
                if name.is_empty() {
                    return Err(Reject::bad_query(
                        "malformed_query",
                        "`exclude` needs the name of a check",
                    ));
                }
                if query.exclude.len() >= MAX_EXCLUDES {
                    return Err(Reject::bad_query(
                        "query_too_long",
                        "too many `exclude` parameters",
                    ));
                }
                query.exclude.push(name);
            }
            _ => {}
        }
    }
    Ok(query)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space); `None`
/// when a `%` escape is broken (percent-encoding's decoder would keep it as
/// it is) or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let escapes_ok = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(parse_query(None).unwrap(), ProbeQuery::default());
        let q = parse_query(Some("verbose&exclude=a&exclude=b%20c&exclude=d+e&x=1")).unwrap();
        assert!(q.verbose);
        assert_eq!(q.exclude, ["a", "b c", "d e"]);
        assert_eq!(parse_query(Some("exclude=%2B")).unwrap().exclude, ["+"]);
        assert!(parse_query(Some("exclude=%zz")).is_err());
        assert!(parse_query(Some("exclude=%f")).is_err());
        assert!(parse_query(Some("exclude=%")).is_err());
        assert!(parse_query(Some("exclude=%ff")).is_err());
        assert!(parse_query(Some("exclude=")).is_err());
        assert!(parse_query(Some(&"x".repeat(MAX_QUERY_LEN + 1))).is_err());
    }
}
