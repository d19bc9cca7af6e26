//! Fault-injection soak on real time: supervised tasks that panic, return
//! `Err`, stall, complete or work at random (seeded) on every tick, for a
//! bounded time. Checks at the end that the registry's books match what was
//! injected, that shutdown ends every task within its grace, and that memory is
//! stable over the second half (RSS within 10 %).
//!
//! ```sh
//! cargo run --release --example soak -- --seconds 20 --tasks 500
//! ```
//! Exits 1 when an invariant does not hold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use supervised::{Context, Exit, Group, OnStale, Registry, Spec, Task, TaskState};

const TICK: Duration = Duration::from_millis(20);

/// What a task does on one tick, from a seeded generator.
fn action(seed: u64, task: usize, tick: u64) -> u64 {
    let mut z = seed ^ ((task as u64) << 32) ^ tick;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 1000
}

#[derive(Default)]
struct Books {
    /// Set before shutdown: no more faults, so the books can be closed.
    quiet: std::sync::atomic::AtomicBool,
    ticks: AtomicU64,
    panics: AtomicU64,
    errors: AtomicU64,
    stalls: AtomicU64,
}

fn fail() {
    panic!("injected panic")
}

fn task(i: usize, seed: u64, books: Arc<Books>, registry: &Registry) -> Task {
    let spec = Spec::new(format!("soak-{i:04}"))
        .registry(registry)
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(80))
        .reset_after(Duration::from_millis(500))
        .stale_after(Duration::from_millis(200))
        .on_stale(OnStale::Restart)
        .grace(Duration::from_millis(100));
    Task::new(spec, move |ctx: Context| {
        let books = books.clone();
        async move {
            loop {
                tokio::time::sleep(TICK).await;
                ctx.heartbeat();
                let tick = books.ticks.fetch_add(1, Ordering::Relaxed);
                let roll = if books.quiet.load(Ordering::Relaxed) {
                    u64::MAX
                } else {
                    action(seed, i, tick)
                };
                match roll {
                    0..=4 => {
                        books.panics.fetch_add(1, Ordering::Relaxed);
                        fail();
                    }
                    5..=9 => {
                        books.errors.fetch_add(1, Ordering::Relaxed);
                        return Err("injected error");
                    }
                    10 => {
                        books.stalls.fetch_add(1, Ordering::Relaxed);
                        std::future::pending::<()>().await;
                    }
                    _ if ctx.is_cancelled() => return Ok(()),
                    _ => {}
                }
            }
        }
    })
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let seconds = arg("--seconds", 20);
    let tasks = arg("--tasks", 500) as usize;
    let seed = arg("--seed", 2026);
    let registry = Registry::new();
    let books: Vec<Arc<Books>> = (0..tasks).map(|_| Arc::default()).collect();
    let mut group = Group::new();
    for (i, b) in books.iter().enumerate() {
        group.spawn(task(i, seed, b.clone(), &registry));
    }

    let start = Instant::now();
    let half = Duration::from_secs(seconds) / 2;
    tokio::time::sleep(half).await;
    let rss_half = rss_bytes();
    tokio::time::sleep(Duration::from_secs(seconds) - half).await;
    let rss_end = rss_bytes();

    // Stop injecting, and let faults in flight (a stall takes up to
    // stale_after + stale_after / 10 to be seen) reach the books.
    for b in &books {
        b.quiet.store(true, Ordering::Relaxed);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;

    let grace = Duration::from_secs(1);
    let stop = Instant::now();
    let exits = group.shutdown(grace).await;
    let shutdown_took = stop.elapsed();

    let mut problems = Vec::new();
    let mut injected = [0u64; 3];
    for (status, b) in registry.tasks().iter().zip(&books) {
        let want = [&b.panics, &b.errors, &b.stalls].map(|c| c.load(Ordering::Relaxed));
        let got = [
            status.failures.panics,
            status.failures.errors,
            status.failures.stalls,
        ];
        if want != got {
            problems.push(format!(
                "{}: injected {want:?}, recorded {got:?}",
                status.name
            ));
        }
        if status.state != TaskState::Cancelled {
            problems.push(format!("{}: ended {:?}", status.name, status.state));
        }
        for k in 0..3 {
            injected[k] += want[k];
        }
    }
    if registry.tasks().len() != tasks {
        problems.push(format!("registry holds {} tasks", registry.tasks().len()));
    }
    if exits.iter().any(|(_, e)| *e != Exit::Cancelled) {
        problems.push("a task did not end cancelled".into());
    }
    if shutdown_took > grace + Duration::from_millis(250) {
        problems.push(format!("shutdown took {shutdown_took:?}"));
    }
    let growth = rss_end as f64 / rss_half.max(1) as f64 - 1.0;
    if growth > 0.10 {
        problems.push(format!(
            "RSS grew {:.1} % over the second half",
            growth * 100.0
        ));
    }

    let ticks: u64 = books.iter().map(|b| b.ticks.load(Ordering::Relaxed)).sum();
    println!(
        "soak: {tasks} tasks, {:.1} s, {ticks} ticks, injected panics/errors/stalls {:?}, \
         shutdown {:?}, RSS {:.1} MiB -> {:.1} MiB ({:+.1} %)",
        start.elapsed().as_secs_f64(),
        injected,
        shutdown_took,
        rss_half as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
        growth * 100.0
    );
    if problems.is_empty() {
        println!("soak: all invariants hold");
    } else {
        for p in &problems {
            eprintln!("soak: FAILED: {p}");
        }
        std::process::exit(1);
    }
}
