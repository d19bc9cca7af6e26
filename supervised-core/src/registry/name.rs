//! What a task name may be. Names reach logs, endpoint bodies, metric labels
//! and systemd's `STATUS=` line, so a name with a newline or a control
//! character could forge lines in any of them.

use std::fmt;

/// The longest task name, in bytes: a DNS name's length, enough for
/// `tenant-sync-<uuid>` and shorter than any line limit of the views.
pub const MAX_NAME_LEN: usize = 253;

/// Why a task name was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds whitespace or a control character.
    Character {
        /// The first such character.
        found: char,
    },
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("a task name cannot be empty"),
            NameProblem::TooLong { len } => write!(
                f,
                "a task name is at most {MAX_NAME_LEN} bytes; this one has {len}"
            ),
            NameProblem::Character { found } => write!(
                f,
                "a task name cannot hold whitespace or control characters; found {found:?}"
            ),
        }
    }
}

impl std::error::Error for NameProblem {}

/// Checks a task name: not empty, at most [`MAX_NAME_LEN`] bytes, no
/// whitespace and no control characters. [`Spec::run`](crate::Spec::run) and
/// the other ways to start a task refuse a name that fails this: the task
/// ends [`Failed`](crate::Exit::Failed) with
/// [`FailureKind::InvalidName`](crate::FailureKind::InvalidName) without
/// running and without being registered.
///
/// ```
/// use supervised_core::check_name;
///
/// assert!(check_name("tenant-sync-00000700").is_ok());
/// assert!(check_name("").is_err());
/// assert!(check_name("evil\nlivez check passed").is_err());
/// ```
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameProblem::TooLong { len: name.len() });
    }
    match name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        Some(found) => Err(NameProblem::Character { found }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("scheduler"), Ok(()));
        assert_eq!(check_name("ünïcode-名前"), Ok(()));
        assert_eq!(check_name(&"a".repeat(MAX_NAME_LEN)), Ok(()));
        assert_eq!(check_name(""), Err(NameProblem::Empty));
        assert_eq!(
            check_name(&"a".repeat(MAX_NAME_LEN + 1)),
            Err(NameProblem::TooLong { len: 254 })
        );
        for (name, found) in [
            ("a b", ' '),
            ("a\nb", '\n'),
            ("a\tb", '\t'),
            ("a\u{7f}", '\u{7f}'),
            ("a\u{a0}", '\u{a0}'),
        ] {
            assert_eq!(
                check_name(name),
                Err(NameProblem::Character { found }),
                "{name:?}"
            );
        }
    }
}
