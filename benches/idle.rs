//! Idle cost: CPU used by supervision itself (the stall
//! watchdogs' timers) with 1,000 idle supervised tasks, against the same 1,000
//! futures under bare `tokio::spawn`, each over the same window in a child
//! process of its own. `IDLE_SECONDS` sets the window (default 30).

mod support;

use std::time::Duration;

use supervised::{CancellationToken, Context, Registry, Spec};

const TASKS: usize = 1_000;

/// The user's future: idle, beating every 10 s.
async fn idle(token: CancellationToken, beat: impl Fn()) {
    support::beat_until_cancelled(token, Duration::from_secs(10), beat).await
}

fn child(kind: &str, seconds: u64) {
    let rt = support::runtime();
    let token = CancellationToken::new();
    let registry = Registry::new();
    rt.block_on(async {
        for i in 0..TASKS {
            let token = token.clone();
            if kind == "bare" {
                tokio::spawn(idle(token, || {}));
            } else {
                let spec = Spec::new(format!("idle-{i}"))
                    .registry(&registry)
                    .stale_after(Duration::from_secs(60));
                tokio::spawn(spec.run(token.clone(), move |ctx: Context| {
                    let token = token.clone();
                    async move { idle(token, || ctx.heartbeat()).await }
                }));
            }
        }
        // Let start-up settle, then measure a quiet window.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = support::cpu_time();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let used = support::cpu_time() - before;
        println!("{kind} cpu_ms={}", used.as_millis());
    });
    token.cancel();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = std::env::var("IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    if support::is_child() {
        child(&args[1], seconds);
        return;
    }
    let ms = |out: &str| -> f64 {
        out.trim()
            .rsplit_once("cpu_ms=")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let bare = ms(&support::run_child(&["bare"]));
    let sup = ms(&support::run_child(&["supervised"]));
    let window_ms = seconds as f64 * 1000.0;
    println!("| {TASKS} idle tasks over {seconds} s | CPU (ms) | share of one core |");
    println!("|---|---:|---:|");
    println!(
        "| bare tokio::spawn | {bare:.0} | {:.3} % |",
        bare / window_ms * 100.0
    );
    println!(
        "| supervised | {sup:.0} | {:.3} % |",
        sup / window_ms * 100.0
    );
    println!(
        "| supervision itself | {:.0} | {:.3} % |",
        sup - bare,
        (sup - bare) / window_ms * 100.0
    );
}
