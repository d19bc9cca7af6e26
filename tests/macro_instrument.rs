//! The span of every attempt (`supervised{task, attempt}`), and
//! `#[tracing::instrument]` written below `#[supervised]`: entered, and its
//! fields recorded, per attempt.
//!
//! One test in its own binary: tracing caches per call site whether anyone
//! listens, and a test without a subscriber on another thread would race
//! this one's thread-local subscriber for the runtime's call sites.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::start;
use supervised::{supervised, Context, Registry};
use tokio::time::sleep;

const SEC: Duration = Duration::from_secs(1);

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[supervised(
    name = "shapes-instrumented",
    backoff_initial = "1s",
    stale_after = "10s"
)]
#[tracing::instrument(skip(ctx), fields(shard = port % 2))]
async fn instrumented(ctx: Context, port: u16) -> Result<(), String> {
    loop {
        tracing::info!("tick");
        if ctx.attempt() == 1 {
            return Err("first attempt fails".to_owned());
        }
        sleep(SEC).await;
    }
}

struct Relay {
    port: u16,
}

impl Relay {
    #[supervised(name = "shapes-instrumented-method")]
    #[tracing::instrument(skip(self), fields(port = self.port))]
    async fn serve(self: Arc<Self>) {
        loop {
            tracing::info!("serving");
            sleep(SEC).await;
        }
    }
}

/// `mut` arguments reach the per-attempt fn by name.
#[supervised(name = "shapes-mut-instrumented")]
#[tracing::instrument(skip_all)]
async fn counts(mut n: u32, label: String) {
    n += 1;
    tracing::info!(n, %label, "counted");
}

/// A type parameter used only in the body reaches the per-attempt fn.
#[supervised(name = "shapes-instrumented-generic")]
#[tracing::instrument(skip_all)]
async fn made<T: Default + std::fmt::Debug + Send + 'static>() {
    tracing::info!(value = ?T::default(), "made");
}

#[supervised(name = "shapes-plain-span")]
async fn plain_logger(ctx: Context) {
    tracing::info!(seen = ctx.attempt(), "hello");
    if ctx.attempt() < 2 {
        panic!("once");
    }
}

#[tokio::test(start_paused = true)]
async fn every_attempt_runs_in_a_span_and_instrument_below_is_per_attempt() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let registry = Registry::new();
    let task = instrumented(81);
    assert!(task.spec().expects_heartbeat());
    start(task, &registry);
    start(plain_logger(), &registry);
    start(counts(41, "x".to_owned()), &registry);
    start(Relay::serve(Arc::new(Relay { port: 7 })), &registry);
    start(made::<u64>(), &registry);
    sleep(Duration::from_millis(2_500)).await;
    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("tick")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    // The runtime's span, then the user's, fields recorded per attempt.
    assert!(
        lines[0].contains(
            "supervised{task=\"shapes-instrumented\" attempt=1}:instrumented{port=81 shard=1}: tick"
        ),
        "{out}"
    );
    assert!(
        lines[1].contains(
            "supervised{task=\"shapes-instrumented\" attempt=2}:instrumented{port=81 shard=1}: tick"
        ),
        "{out}"
    );
    // The heartbeat injection still works under `#[instrument]`.
    assert!(registry
        .status("shapes-instrumented")
        .unwrap()
        .last_tick
        .is_some());
    // On a method taking `self: Arc<Self>` too.
    assert!(
        out.contains(
            "supervised{task=\"shapes-instrumented-method\" attempt=1}:serve{port=7}: serving"
        ),
        "{out}"
    );
    assert!(out.contains("counted n=42 label=x"), "{out}");
    assert!(out.contains("made: made value=0"), "{out}");
    // A task without `#[instrument]` logs inside the attempt's span too.
    assert!(
        out.contains("supervised{task=\"shapes-plain-span\" attempt=1}: hello seen=1"),
        "{out}"
    );
    assert!(
        out.contains("supervised{task=\"shapes-plain-span\" attempt=2}: hello seen=2"),
        "{out}"
    );
}
