//! The happy path's cost as paired ratios: the same future under a bare
//! `tokio::spawn` and as a supervised task, run alternately many times in one
//! process, and the median of the per-pair ratios reported. Alternating the
//! two and pairing them cancels the slow drift of a shared VM, which moves
//! two separate timings (as in the `overhead` criterion bench) by up to 20 %.
//!
//! Each workload runs twice: with the supervisor as the runtime's `block_on`
//! future, as a test or a small program runs it, and with the supervisor
//! spawned on a task of its own, as a service runs it.
//!
//! `PAIRS` sets the number of pairs (default 41).

mod support;

use std::future::Future;
use std::time::Instant;

use supervised::{CancellationToken, Context, Registry, Spec};
use support::{ping_pong, yield_loop};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median bare time, median supervised time (ms) and the median paired
/// ratio; with `spawned`, the supervisor runs on a task of its own.
fn measure<F, Fut>(
    rt: &tokio::runtime::Runtime,
    pairs: usize,
    spawned: bool,
    f: F,
) -> (f64, f64, f64)
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let registry = Registry::new();
    let (mut bare, mut supervised, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..pairs {
        let t = Instant::now();
        let g = f.clone();
        rt.block_on(async move { tokio::spawn(g()).await.expect("no panic") });
        let b = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let g = f.clone();
        let supervisor = Spec::new("happy-path")
            .registry(&registry)
            .run(CancellationToken::new(), move |_ctx: Context| g());
        let exit = if spawned {
            rt.block_on(async move { tokio::spawn(supervisor).await.expect("no panic") })
        } else {
            rt.block_on(supervisor)
        };
        let s = t.elapsed().as_secs_f64();
        assert!(exit.is_completed());

        bare.push(b * 1e3);
        supervised.push(s * 1e3);
        ratios.push(s / b);
    }
    (median(bare), median(supervised), median(ratios))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    let pairs: usize = std::env::var("PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(41);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("| workload ({pairs} pairs) | bare `tokio::spawn` (ms) | supervised (ms) | median paired ratio |");
    println!("|---|---:|---:|---:|");
    let rows: [(&str, (f64, f64, f64)); 4] = [
        (
            "10,000 `yield_now()`",
            measure(&rt, pairs, false, yield_loop),
        ),
        (
            "10,000 channel round trips",
            measure(&rt, pairs, false, ping_pong),
        ),
        (
            "10,000 `yield_now()`, supervisor spawned",
            measure(&rt, pairs, true, yield_loop),
        ),
        (
            "10,000 channel round trips, supervisor spawned",
            measure(&rt, pairs, true, ping_pong),
        ),
    ];
    for (name, (b, s, r)) in rows {
        println!("| {name} | {b:.3} | {s:.3} | {r:.3} |");
    }
}
