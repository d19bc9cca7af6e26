//! `heartbeat = "manual"`: the work loop sits inside a `select!`, so the
//! heartbeat is recorded where progress really happens. Without it the stall
//! watchdog restarts the task.
//!
//! `cargo run --example manual_heartbeat` (ends by itself after about a
//! second and a half).

use std::time::Duration;

use supervised::{supervised, CancellationToken, Context, Exit};

/// Processes a batch every 100 ms; beats after each.
#[supervised(heartbeat = "manual", stale_after = "500ms", on_stale = "restart")]
async fn batches(ctx: Context) {
    let mut done = 0u32;
    loop {
        tokio::select! {
            _ = ctx.cancelled() => {
                println!("batches: {done} done");
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                done += 1;
                ctx.heartbeat();
            }
        }
    }
}

/// Forgets to beat: the watchdog restarts it after 300 ms without one.
#[supervised(heartbeat = "manual", stale_after = "300ms", on_stale = "restart")]
async fn forgetful(ctx: Context) {
    println!("forgetful: attempt {}", ctx.attempt());
    ctx.cancelled().await;
}

#[tokio::main]
async fn main() {
    let token = CancellationToken::new();
    let good = batches().spawn(token.clone());
    let bad = forgetful().spawn(token.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for name in ["batches", "forgetful"] {
        let s = supervised::status(name).expect("registered");
        println!(
            "{name}: {} restart(s), {} stall(s)",
            s.restarts, s.failures.stalls
        );
    }
    token.cancel();
    assert_eq!(good.await.unwrap(), Exit::Cancelled);
    assert_eq!(bad.await.unwrap(), Exit::Cancelled);
}
