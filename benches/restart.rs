//! How fast a failed attempt is replaced by a running one: panic (or `Err`) to
//! the next attempt running, with zero backoff and no backtrace capture, against
//! the same cycle under the `task-supervisor` crate, in one run.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use supervised::{CancellationToken, Context, Exit, Registry, Spec};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Panics; typed `()` so the closures return `()`.
fn fail() {
    panic!("bench panic")
}

/// Runs one task that fails `restarts` times and then completes; returns the
/// time taken.
fn supervised_cycle(rt: &tokio::runtime::Runtime, restarts: u64, panic: bool) -> Duration {
    let registry = Registry::new();
    let spec = Spec::new("restart-bench")
        .registry(&registry)
        .backoff_initial(Duration::ZERO)
        .backoff_max(Duration::ZERO);
    let start = Instant::now();
    let exit = rt.block_on(
        spec.run(CancellationToken::new(), move |ctx: Context| async move {
            if u64::from(ctx.attempt()) > restarts {
                return Ok(());
            }
            if panic {
                fail();
            }
            Err("bench error")
        }),
    );
    let elapsed = start.elapsed();
    assert_eq!(exit, Exit::Completed);
    elapsed
}

#[derive(Clone)]
struct PeerTask {
    runs: Arc<AtomicU64>,
    restarts: u64,
    panic: bool,
}

impl task_supervisor::SupervisedTask for PeerTask {
    async fn run(self, _cancel: CancellationToken) -> task_supervisor::TaskResult {
        if self.runs.fetch_add(1, Ordering::Relaxed) >= self.restarts {
            return Ok(());
        }
        if self.panic {
            fail();
        }
        Err("bench error".into())
    }
}

fn peer_cycle(rt: &tokio::runtime::Runtime, restarts: u64, panic: bool) -> Duration {
    let runs = Arc::new(AtomicU64::new(0));
    let task = PeerTask {
        runs: runs.clone(),
        restarts,
        panic,
    };
    let start = Instant::now();
    rt.block_on(async {
        let handle = task_supervisor::SupervisorBuilder::new()
            .with_unlimited_restarts()
            .with_base_restart_delay(Duration::ZERO)
            .with_max_restart_delay(Duration::ZERO)
            .with_restart_jitter(0.0)
            .with_task("restart-bench", task)
            .spawn();
        let _ = black_box(handle.wait().await);
    });
    let elapsed = start.elapsed();
    assert_eq!(runs.load(Ordering::Relaxed), restarts + 1);
    elapsed
}

fn restart(c: &mut Criterion) {
    // No output and no backtrace for the thousands of deliberate panics.
    std::panic::set_hook(Box::new(|_| {}));
    let rt = runtime();
    let mut group = c.benchmark_group("restart_cycle");
    // A slow peer cycle takes milliseconds: keep the sample count modest.
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for (label, panic) in [("panic", true), ("error", false)] {
        group.bench_function(format!("supervised_{label}"), |b| {
            b.iter_custom(|iters| supervised_cycle(&rt, iters, panic))
        });
        group.bench_function(format!("task_supervisor_{label}"), |b| {
            b.iter_custom(|iters| peer_cycle(&rt, iters, panic))
        });
    }
    group.finish();
    let _ = std::panic::take_hook();
}

criterion_group!(benches, restart);
criterion_main!(benches);
