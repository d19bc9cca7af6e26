//! Hints in the attribute's error messages: the closest valid key to an
//! unknown one, and an example value for each key.

use super::KEYS;

/// An example value for `key`, for messages.
pub(super) fn example(key: &str) -> &'static str {
    match key {
        "name" => "\"scheduler\"",
        "backoff_initial" => "\"1s\"",
        "backoff_max" | "stale_after" => "\"30s\"",
        "reset_after" | "within" => "\"1m\"",
        "grace" => "\"5s\"",
        "blocking_after" | "quarantine_initial" => "\"1s\"",
        "quarantine_max" => "\"5m\"",
        "jitter" => "\"full\"",
        "restart" => "\"always\"",
        "on_stale" => "\"restart\"",
        "heartbeat" => "\"manual\"",
        "max_restarts" => "5",
        "singleton" => "true",
        "crate" => "\"my_supervised\"",
        _ => "...",
    }
}

pub(super) fn unknown_key_message(key: &str) -> String {
    let valid = KEYS
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let closest = KEYS
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 3));
    match closest {
        Some((_, k)) => format!("unknown key `{key}`; did you mean `{k}`? Valid keys: {valid}"),
        None => format!("unknown key `{key}`; valid keys: {valid}"),
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("nmae", "name"), 2);
        assert_eq!(edit_distance("backof_max", "backoff_max"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        assert!(unknown_key_message("backof_max").contains("did you mean `backoff_max`?"));
        assert!(!unknown_key_message("zzzzzzzz").contains("did you mean"));
    }
}
