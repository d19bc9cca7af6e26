//! Backtraces of caught panics, trimmed to the frames a person reads.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// The backtrace of a caught panic, as text.
///
/// Captured when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) asks for
/// backtraces, and trimmed as the standard library's own short backtraces are:
/// the frames of the panic machinery above the panicking fn (the panic hook,
/// `rust_begin_unwind`, `core::panicking::panic_fmt`, `unwrap_failed`) and the
/// frames of the supervision machinery below the task (this crate's
/// `catch_unwind` wrapper, its run loop, tokio's scheduler) are dropped; the
/// task's own frames are kept and numbered from 0. With `RUST_BACKTRACE=full`
/// every frame is kept. If the frames cannot be told apart (no symbols), the
/// whole backtrace is kept.
///
/// This text is what the failure log, `/admin/liveness` (to callers with the
/// token) and [`Failure::backtrace`](crate::Failure::backtrace) show.
#[derive(Clone, PartialEq, Eq)]
pub struct PanicBacktrace {
    text: Arc<str>,
}

impl PanicBacktrace {
    /// Resolves `backtrace`'s symbols and keeps the frames that matter.
    pub(crate) fn from_std(backtrace: &std::backtrace::Backtrace) -> Self {
        let full = backtrace.to_string();
        let text = if full_requested() {
            full
        } else {
            trim(&full).unwrap_or(full)
        };
        PanicBacktrace {
            text: Arc::from(text.trim_end()),
        }
    }

    /// The frames, one `N: symbol` line each followed by its `at file:line`
    /// lines, as the standard library formats them.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for PanicBacktrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for PanicBacktrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PanicBacktrace").field(&&*self.text).finish()
    }
}

/// `RUST_LIB_BACKTRACE=full`, or `RUST_BACKTRACE=full` without
/// `RUST_LIB_BACKTRACE`, as the standard library reads them.
fn full_requested() -> bool {
    static FULL: OnceLock<bool> = OnceLock::new();
    *FULL.get_or_init(|| {
        let var = std::env::var("RUST_LIB_BACKTRACE").or_else(|_| std::env::var("RUST_BACKTRACE"));
        var.is_ok_and(|v| v == "full")
    })
}

/// One frame of a formatted backtrace: its symbol and its `at` lines.
struct Frame<'a> {
    symbol: &'a str,
    lines: Vec<&'a str>,
}

/// Frames of the panic machinery: everything up to the last of these, above
/// the supervision machinery, is dropped.
const ABOVE: &[&str] = &[
    "std::backtrace::",
    "supervised_core::panic::",
    "std::panicking::",
    "std::panic::panic_any",
    "std::sys::backtrace::__rust_end_short_backtrace",
    "std::sys_common::backtrace::__rust_end_short_backtrace",
    "rust_begin_unwind",
    "core::panicking::",
    "core::result::unwrap_failed",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    "core::option::Option<T>::unwrap",
    "core::option::Option<T>::expect",
    "core::result::Result<T,E>::unwrap",
    "core::result::Result<T,E>::expect",
    "<alloc::boxed::Box<F,A> as core::ops::function::Fn",
];

/// Frames of the supervision machinery: everything from the first of these
/// down is dropped.
const BELOW: &[&str] = &[
    "supervised_core::panic::CatchPanic",
    "<supervised_core::panic::CatchPanic",
    "supervised_core::panic::catch_call",
    "supervised_core::run::",
    "<supervised_core::run::",
    "supervised_core::context::",
    "<supervised_core::context::",
    "supervised_core::task::",
    "<supervised_core::task::",
    "tokio::",
    "<tokio::",
];

/// Generic frames between the task and the supervision machinery (the
/// `catch_unwind` and `Future::poll` plumbing), dropped from the end.
const PLUMBING: &[&str] = &[
    "core::",
    "<core::",
    "std::",
    "<std::",
    "__rust_try",
    "<alloc::",
];

/// The task's frames of a formatted backtrace, renumbered; `None` when they
/// cannot be found.
fn trim(full: &str) -> Option<String> {
    let frames = parse(full);
    let end = frames
        .iter()
        .position(|f| BELOW.iter().any(|m| f.symbol.contains(m)))?;
    let start = frames[..end]
        .iter()
        .rposition(|f| ABOVE.iter().any(|m| f.symbol.contains(m)))
        .map_or(0, |i| i + 1);
    let mut end = end;
    while end > start
        && PLUMBING
            .iter()
            .any(|m| frames[end - 1].symbol.starts_with(m))
    {
        end -= 1;
    }
    if start >= end {
        return None;
    }
    let mut out = String::new();
    for (n, frame) in frames[start..end].iter().enumerate() {
        out.push_str(&format!("{n:>4}: {}\n", frame.symbol));
        for line in &frame.lines {
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
}

/// Splits the standard library's backtrace format into frames.
fn parse(text: &str) -> Vec<Frame<'_>> {
    let mut frames: Vec<Frame<'_>> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let header = trimmed
            .split_once(": ")
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        match (header, frames.last_mut()) {
            (Some((_, symbol)), _) => frames.push(Frame {
                symbol,
                lines: Vec::new(),
            }),
            (None, Some(frame)) if !trimmed.is_empty() => frame.lines.push(line),
            _ => {}
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = "   0: std::backtrace::Backtrace::capture
             at /rustc/x/library/std/src/backtrace.rs:296:9
   1: supervised_core::panic::install_panic_hook::{{closure}}
             at ./supervised-core/src/panic.rs:76:41
   2: <alloc::boxed::Box<F,A> as core::ops::function::Fn<Args>>::call
   3: std::panicking::panic_with_hook
   4: std::panicking::panic_handler::{{closure}}
   5: std::sys::backtrace::__rust_end_short_backtrace
   6: __rustc::rust_begin_unwind
   7: core::panicking::panic_fmt
   8: core::result::unwrap_failed
   9: app::parse_row
             at ./src/rows.rs:12:30
  10: app::sync_tenant::{{closure}}
             at ./src/sync.rs:40:9
  11: <core::pin::Pin<P> as core::future::future::Future>::poll
  12: <supervised_core::panic::CatchPanic<F> as core::future::future::Future>::poll::{{closure}}
  13: std::panicking::catch_unwind::do_call
  14: tokio::runtime::task::core::Core<T,S>::poll
  15: std::thread::local::LocalKey<T>::with
";

    #[test]
    fn keeps_the_tasks_frames_only_numbered_from_zero() {
        let trimmed = trim(CAPTURED).unwrap();
        assert_eq!(
            trimmed,
            "   0: app::parse_row
             at ./src/rows.rs:12:30
   1: app::sync_tenant::{{closure}}
             at ./src/sync.rs:40:9
"
        );
    }

    #[test]
    fn unrecognisable_backtraces_are_not_trimmed() {
        assert_eq!(trim("   0: <unknown>\n   1: <unknown>\n"), None);
        assert_eq!(trim(""), None);
    }
}
