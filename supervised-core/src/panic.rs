//! Catching panics of supervised code, with their location.
//!
//! A panic's location is only known to the panic hook, so the first supervised
//! task installs a hook that records it (and a backtrace when `RUST_BACKTRACE`
//! asks for one) for panics raised while supervised code is being polled, then
//! calls the hook that was installed before it. Applications that install their
//! own hook *after* starting supervised tasks should call
//! [`install_panic_hook`] again afterwards to keep locations in failure reports.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context, Poll};

use crate::registry::{Failure, FailureKind};

thread_local! {
    /// How many supervised polls are on this thread's stack.
    static INSIDE: Cell<u32> = const { Cell::new(0) };
    /// What the hook saw of the last panic raised inside one of them.
    static CAUGHT: RefCell<Option<Caught>> = const { RefCell::new(None) };
}

struct Caught {
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
        let supervised = INSIDE.try_with(Cell::get).unwrap_or(0) > 0;
        if supervised {
            let backtrace = Backtrace::capture();
            let caught = Caught {
                location: info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
                backtrace: (backtrace.status() == BacktraceStatus::Captured).then_some(backtrace),
            };
            let _ = CAUGHT.try_with(|c| {
                if let Ok(mut slot) = c.try_borrow_mut() {
                    *slot = Some(caught);
                }
            });
        }
        if !supervised || FORWARD.load(Ordering::Relaxed) {
            previous(info)
        }
    }));
}

static FORWARD: AtomicBool = AtomicBool::new(true);

/// Whether panics caught in supervised code also reach the panic hook that was
/// installed before ours (by default they do, so Rust's default hook prints
/// them, with a backtrace when `RUST_BACKTRACE` asks, and an application's
/// own hook, e.g. an error reporter, sees them).
///
/// Every such panic is logged by the supervisor anyway, at ERROR with its
/// message, location and backtrace; pass `false` to keep that single report.
/// Panics outside supervised code always reach the previous hook.
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
struct Inside;

impl Inside {
    fn enter() -> Inside {
        INSIDE.with(|c| c.set(c.get() + 1));
        Inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|c| c.set(c.get() - 1));
    }
}

/// Turns a caught panic payload into a failure, taking the location the hook
/// recorded on this thread.
pub(crate) fn failure_from_panic(payload: Box<dyn Any + Send>, attempt: u32) -> Failure {
    let message = panic_message(&*payload);
    drop_payload(payload);
    let caught = CAUGHT.with(|c| c.borrow_mut().take());
    let mut failure = Failure::new(FailureKind::Panic, message, attempt);
    if let Some(caught) = caught {
        failure.location = caught.location;
        failure.backtrace = caught.backtrace.map(Arc::new);
    }
    failure
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
    /// the same guard, so a panic in its `Drop` is caught too.
    pub(crate) struct CatchPanic<F> {
        #[pin]
        inner: Option<F>,
    }
}

impl<F: Future> CatchPanic<F> {
    pub(crate) fn new(inner: F) -> Self {
        CatchPanic { inner: Some(inner) }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _inside = Inside::enter();
        let mut inner = self.project().inner;
        let polled = catch_unwind(AssertUnwindSafe(|| match inner.as_mut().as_pin_mut() {
            Some(fut) => fut.poll(cx),
            None => panic!("`CatchPanic` polled after it finished"),
        }));
        let result = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(payload) => Err(payload),
        };
        match (catch_unwind(AssertUnwindSafe(|| inner.set(None))), result) {
            (Ok(()), result) => Poll::Ready(result),
            // The future finished but its `Drop` panicked: that is the failure.
            (Err(drop_panic), Ok(_)) => Poll::Ready(Err(drop_panic)),
            // It had already panicked: report the first panic.
            (Err(drop_panic), Err(first)) => {
                drop_payload(drop_panic);
                Poll::Ready(Err(first))
            }
        }
    }
}
