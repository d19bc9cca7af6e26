//! Catching panics of supervised code, with their location.
//!
//! A panic's location is only known to the panic hook, so the first supervised
//! task installs a hook that records it (and a backtrace when `RUST_BACKTRACE`
//! asks for one) for panics raised while supervised code is being polled. Such
//! panics are reported once, by the supervisor; every other panic goes on to
//! the hook that was installed before (see [`forward_supervised_panics`]).
//! Applications that install their
//! own hook *after* starting supervised tasks should call
//! [`install_panic_hook`] again afterwards to keep locations in failure reports.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::task::{Context, Poll};

use crate::backtrace::PanicBacktrace;
use crate::registry::{Failure, FailureKind};

thread_local! {
    /// Supervised polls on this thread's stack. No destructor, so a poll's
    /// access to it is a plain thread-local read.
    static INSIDE: Inside = const {
        Inside {
            depth: Cell::new(0),
            epoch: Cell::new(0),
        }
    };
    /// What the hook saw of the panics raised in supervised code, oldest
    /// first; only those of the current epoch count.
    static SEEN: RefCell<Vec<Seen>> = const { RefCell::new(Vec::new()) };
}

/// The supervised polls on one thread.
struct Inside {
    /// How many are on the stack.
    depth: Cell<u32>,
    /// How many outermost ones have begun: a panic seen in an earlier one was
    /// caught there (by the task itself) and cannot end the current one.
    epoch: Cell<u32>,
}

/// At most this many panics are remembered per outermost poll: enough for a
/// panic, a panic in a destructor it runs, and a few the task caught itself.
const SEEN_MAX: usize = 8;

/// One panic as the hook saw it.
struct Seen {
    epoch: u32,
    message: String,
    location: Option<String>,
    backtrace: Option<Backtrace>,
}

/// Chains a hook that records the location of panics raised in supervised code
/// in front of the current panic hook, which still runs for every panic.
///
/// Supervised tasks call this once, when the first of them starts. Call it
/// yourself after installing a panic hook of your own later than that; otherwise
/// failures are still caught and reported, only without their location.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let epoch = INSIDE
            .try_with(|inside| (inside.depth.get() > 0).then(|| inside.epoch.get()))
            .ok()
            .flatten();
        let supervised = epoch.is_some();
        if let Some(epoch) = epoch {
            let _ = SEEN.try_with(|seen| {
                if let Ok(mut seen) = seen.try_borrow_mut() {
                    seen.retain(|s| s.epoch == epoch);
                    if seen.len() < SEEN_MAX {
                        let backtrace = Backtrace::capture();
                        seen.push(Seen {
                            epoch,
                            message: panic_message(info.payload()),
                            location: info
                                .location()
                                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
                            backtrace: (backtrace.status() == BacktraceStatus::Captured)
                                .then_some(backtrace),
                        });
                    }
                }
            });
        }
        if !supervised || FORWARD.load(Ordering::Relaxed) {
            previous(info)
        }
    }));
}

static FORWARD: AtomicBool = AtomicBool::new(false);

/// Whether panics caught in supervised code also reach the panic hook that was
/// installed before ours. Off by default: each such panic is reported once,
/// by the supervisor's ERROR event with its message, location and trimmed
/// backtrace, and Rust's default hook does not print it a second time.
///
/// Pass `true` when an error reporter installed as a panic hook (before the
/// first supervised task starts, or followed by [`install_panic_hook`]) must
/// see supervised panics too; the default hook, if it is the one installed
/// before ours, then prints them as well. Panics outside supervised code
/// always reach the previous hook.
pub fn forward_supervised_panics(forward: bool) {
    FORWARD.store(forward, Ordering::Relaxed);
}

/// `false` when this program is built with `panic = "abort"`: a panic then ends
/// the whole process and cannot be caught, so supervision restarts only after
/// `Err` returns and stalls.
pub const fn panics_are_caught() -> bool {
    cfg!(panic = "unwind")
}

/// Installs the hook once per process, and warns once when panics cannot be
/// caught at all.
pub(crate) fn ensure_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if !panics_are_caught() {
            let warning = "supervised: this program is built with panic = \"abort\"; \
                a panic in a supervised task will abort the whole process instead of \
                restarting the task. Build with panic = \"unwind\" (the default) to \
                supervise panics.";
            tracing::warn!("{warning}");
            eprintln!("WARNING: {warning}");
        }
        install_panic_hook();
    });
}

/// Runs supervised code on this thread: polls inside are seen by the hook.
struct Entered;

impl Entered {
    /// Entering the outermost supervised poll starts a new epoch: the panics
    /// seen before were caught elsewhere (by the task itself) and cannot be
    /// the one that ends this poll.
    #[inline]
    fn enter() -> Entered {
        INSIDE.with(|inside| {
            let depth = inside.depth.get();
            inside.depth.set(depth + 1);
            if depth == 0 {
                inside.epoch.set(inside.epoch.get().wrapping_add(1));
            }
        });
        Entered
    }
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        INSIDE.with(|inside| inside.depth.set(inside.depth.get() - 1));
    }
}

/// Turns a caught panic payload into a failure, with the location the hook
/// recorded for that panic on this thread.
///
/// The hook's record is matched by message: the oldest panic seen in this
/// poll with the payload's message. A payload raised without the hook
/// (`resume_unwind`) of a message never seen gets no location rather than
/// another panic's, and a panic in a destructor that runs while the first one
/// unwinds does not take its place.
fn failure_from_panic(payload: Box<dyn Any + Send>, attempt: u32) -> Failure {
    let message = panic_message(&*payload);
    drop_payload(payload);
    let epoch = INSIDE.try_with(|inside| inside.epoch.get()).ok();
    let seen = SEEN
        .try_with(|seen| {
            let mut seen = seen.try_borrow_mut().ok()?;
            let index = seen
                .iter()
                .position(|s| Some(s.epoch) == epoch && s.message == message)?;
            let found = seen.swap_remove(index);
            seen.clear();
            Some(found)
        })
        .ok()
        .flatten();
    let mut failure = Failure::new(FailureKind::Panic, message, attempt);
    if let Some(seen) = seen {
        failure.location = seen.location;
        failure.backtrace = seen.backtrace.as_ref().map(PanicBacktrace::from_std);
    }
    failure
}

/// Calls `f` as supervised code: a panic in it becomes a failure of
/// `attempt`, with its location.
pub(crate) fn catch_call<T>(attempt: u32, f: impl FnOnce() -> T) -> Result<T, Failure> {
    let inside = Entered::enter();
    let result = catch_unwind(AssertUnwindSafe(f));
    let result = result.map_err(|payload| failure_from_panic(payload, attempt));
    drop(inside);
    result
}

/// [`catch_call`] that leaves turning a panic into a failure to the caller
/// ([`failure_of_panic`]): its `Ok` path moves nothing but `T`.
#[inline]
pub(crate) fn catch_payload<T>(f: impl FnOnce() -> T) -> Result<T, Box<dyn Any + Send>> {
    let inside = Entered::enter();
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(inside);
    result
}

/// The failure of `attempt` that a payload from [`catch_payload`] is, with
/// the location the hook recorded.
#[cold]
pub(crate) fn failure_of_panic(payload: Box<dyn Any + Send>, attempt: u32) -> Failure {
    failure_from_panic(payload, attempt)
}

/// The message of a panic payload: the `&str` or `String` it carries, or a note
/// naming what it is otherwise.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Drops a panic payload whose `Drop` may itself panic, without letting that
/// second panic escape.
fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // The payload of a panic in a payload's `Drop` could panic again on drop:
        // leak it rather than risk an abort.
        std::mem::forget(second);
    }
}

pin_project_lite::pin_project! {
    /// A future whose polls catch panics and mark the thread as running
    /// supervised code. The inner future is dropped as soon as it finishes, inside
    /// the same guard, so a panic in its `Drop` is caught too. A panic becomes a
    /// failure of `attempt`, with its location.
    pub(crate) struct CatchPanic<F> {
        #[pin]
        inner: Option<F>,
        attempt: u32,
    }
}

impl<F: Future> CatchPanic<F> {
    pub(crate) fn new(inner: F, attempt: u32) -> Self {
        CatchPanic {
            inner: Some(inner),
            attempt,
        }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _inside = Entered::enter();
        let this = self.project();
        let attempt = *this.attempt;
        let mut inner = this.inner;
        let polled = catch_unwind(AssertUnwindSafe(|| match inner.as_mut().as_pin_mut() {
            Some(fut) => fut.poll(cx),
            None => panic!("`CatchPanic` polled after it finished"),
        }));
        let result = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(payload) => Err(payload),
        };
        let result = match (catch_unwind(AssertUnwindSafe(|| inner.set(None))), result) {
            (Ok(()), result) => result,
            // The future finished but its `Drop` panicked: that is the failure.
            (Err(drop_panic), Ok(_)) => Err(drop_panic),
            // It had already panicked: report the first panic.
            (Err(drop_panic), Err(first)) => {
                drop_payload(drop_panic);
                Err(first)
            }
        };
        Poll::Ready(result.map_err(|payload| failure_from_panic(payload, attempt)))
    }
}
