//! What the custom-harness benchmarks share: process measurements read from
//! `/proc`, and running one measurement in a child process of its own so that
//! memory one measurement freed cannot flatter the next.

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use supervised::{CancellationToken, Context, Registry, Spec};

/// Resident set size of this process, in bytes (0 where `/proc` is missing).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// CPU time (user + system) used by this process so far.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let clock_ticks_per_second = 100;
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clock_ticks_per_second)
}

/// Re-runs this benchmark binary with `args`, with `BENCH_CHILD=1` set, and
/// returns what it printed on stdout.
pub fn run_child(args: &[&str]) -> String {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args(args)
        .env("BENCH_CHILD", "1")
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `true` inside a child started by [`run_child`].
pub fn is_child() -> bool {
    std::env::var_os("BENCH_CHILD").is_some()
}

/// The median of some durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The user's future of the scale and idle benches: wait on the token, call
/// `beat` every `period`.
pub async fn beat_until_cancelled(token: CancellationToken, period: Duration, beat: impl Fn()) {
    let mut every = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = every.tick() => beat(),
        }
    }
}

/// The happy-path workloads' size.
pub const HAPPY_PATH_ITERATIONS: u32 = 10_000;

/// A happy-path workload: `HAPPY_PATH_ITERATIONS` `yield_now()` calls.
pub async fn yield_loop() {
    for i in 0..HAPPY_PATH_ITERATIONS {
        std::hint::black_box(i);
        tokio::task::yield_now().await;
    }
}

/// A happy-path workload: `HAPPY_PATH_ITERATIONS` round trips to an echo
/// task over bounded channels.
pub async fn ping_pong() {
    let (to_echo, mut echo_in) = tokio::sync::mpsc::channel::<u32>(1);
    let (to_main, mut main_in) = tokio::sync::mpsc::channel::<u32>(1);
    let echo = tokio::spawn(async move {
        while let Some(v) = echo_in.recv().await {
            if to_main.send(v).await.is_err() {
                break;
            }
        }
    });
    for i in 0..HAPPY_PATH_ITERATIONS {
        to_echo.send(i).await.expect("echo alive");
        std::hint::black_box(main_in.recv().await);
    }
    drop(to_echo);
    let _ = echo.await;
}

/// A multi-thread runtime with two workers, like the machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts a supervised task named `name` on `registry` in `rt` and hands its
/// `Context` out; the task waits on its token, returned too.
pub fn context_named(
    rt: &tokio::runtime::Runtime,
    registry: &Registry,
    name: &str,
) -> (Context, CancellationToken) {
    let token = CancellationToken::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let spec = Spec::new(name).registry(registry);
    rt.spawn(spec.run(token.clone(), move |ctx: Context| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(ctx.clone());
            ctx.cancelled().await;
        }
    }));
    (rx.recv().expect("the task starts"), token)
}
