//! The attribute and `spawn_all!` in a few lines: two loops supervised, their
//! health checked, everything shut down within a bounded grace.
//!
//! `cargo run --example basic` (ends by itself after about two seconds).

use std::time::Duration;

use supervised::{spawn_all, supervised, Context};

/// Counts up, every 200 ms. Each loop iteration records a heartbeat.
#[supervised(stale_after = "1s")]
async fn counter(ctx: Context, step: u64) {
    let mut n = 0;
    loop {
        n += step;
        if n % 5 == 0 {
            println!("{} (attempt {}): {n}", ctx.name(), ctx.attempt());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Panics on its first run; restarted after 100 ms.
#[supervised(backoff_initial = "100ms")]
async fn flaky(ctx: Context) {
    if ctx.attempt() == 1 {
        panic!("first attempt fails");
    }
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::main]
async fn main() {
    let group = spawn_all!(counter(1), flaky);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for status in supervised::tasks() {
        println!(
            "{}: {} after {} restart(s), healthy: {}",
            status.name,
            status.state.as_str(),
            status.restarts,
            status.healthy
        );
    }
    assert!(group.is_healthy());
    for (name, exit) in group.shutdown(Duration::from_secs(1)).await {
        println!("{name}: {exit}");
    }
}
