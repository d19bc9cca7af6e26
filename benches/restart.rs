//! How fast a failed attempt is replaced by a running one: panic (or `Err`) to
//! the next attempt running, with zero backoff and no backtrace capture, against
//! the same cycle under the `task-supervisor` crate, in one run.
//!
//! Each variant runs batches of one task failing N times in a row on a
//! current-thread runtime; the table shows the median time per restart over the
//! batches and the restarts per second it implies. (A custom harness: the peer's
//! restart takes milliseconds, which does not suit criterion's iteration
//! scaling.)

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use supervised::{CancellationToken, Context, Exit, Registry, Spec};

const BATCHES: usize = 7;

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

/// One task that fails `restarts` times, then completes; the time taken.
fn supervised_cycle(rt: &tokio::runtime::Runtime, restarts: u64, panic: bool) -> Duration {
    let spec = Spec::new("restart-bench")
        .registry(&Registry::new())
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
        // Done when the last run has returned `Ok`.
        while !matches!(
            handle.task_status("restart-bench").await,
            Ok(task_supervisor::TaskStatus::Completed)
        ) {
            tokio::task::yield_now().await;
        }
        let _ = handle.shutdown().await;
    });
    let elapsed = start.elapsed();
    assert_eq!(runs.load(Ordering::Relaxed), restarts + 1);
    elapsed
}

fn main() {
    // No backtraces (whatever RUST_BACKTRACE says) and no output for the
    // thousands of deliberate panics.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    std::panic::set_hook(Box::new(|_| {}));
    let rt = runtime();
    println!("| restart cycle | restarts per batch | median per restart | restarts per second |");
    println!("|---|---:|---:|---:|");
    type Cycle = fn(&tokio::runtime::Runtime, u64, bool) -> Duration;
    let variants: [(&str, Cycle, u64, bool); 4] = [
        ("supervised, panic", supervised_cycle, 5_000, true),
        ("supervised, Err", supervised_cycle, 5_000, false),
        ("task-supervisor, panic", peer_cycle, 200, true),
        ("task-supervisor, Err", peer_cycle, 200, false),
    ];
    for (label, cycle, restarts, panic) in variants {
        cycle(&rt, restarts / 10, panic); // warm up
        let per_restart = support::median(
            (0..BATCHES)
                .map(|_| cycle(&rt, restarts, panic) / restarts as u32)
                .collect(),
        );
        println!(
            "| {label} | {restarts} | {:.1} µs | {:.0} |",
            per_restart.as_secs_f64() * 1e6,
            1.0 / per_restart.as_secs_f64()
        );
    }
}
