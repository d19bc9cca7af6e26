//! What the heartbeat injected by `#[supervised]` costs per loop iteration: the
//! same loop run as a plain async fn, as a supervised task without injection
//! (`heartbeat = "manual"`, measuring the supervision around it) and with it.
//!
//! `cargo bench --bench macro_heartbeat`; the injected heartbeat's cost per
//! iteration is (injected - manual) / ITERATIONS.
//!
//! A second group polls an attempt 10,000 times (a `yield_now` loop), built
//! by the attribute and by hand with `Task::new`: the attribute boxes the
//! body and converts its output in a wrapper shared by every fn with the
//! same return type, which costs one more indirect call per poll.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use supervised::{supervised, CancellationToken, Registry, Task};

const ITERATIONS: u64 = 100_000;

/// The loop body: a little arithmetic the optimiser cannot remove.
#[inline(always)]
fn step(acc: u64, i: u64) -> u64 {
    black_box(acc.wrapping_mul(31).wrapping_add(i))
}

async fn plain(n: u64, out: Arc<AtomicU64>) {
    let mut acc = 0u64;
    for i in 0..n {
        acc = step(acc, i);
    }
    out.store(acc, Ordering::Relaxed);
}

#[supervised(heartbeat = "manual")]
async fn manual(n: u64, out: Arc<AtomicU64>) {
    let mut acc = 0u64;
    for i in 0..n {
        acc = step(acc, i);
    }
    out.store(acc, Ordering::Relaxed);
}

#[supervised]
async fn injected(n: u64, out: Arc<AtomicU64>) {
    let mut acc = 0u64;
    for i in 0..n {
        acc = step(acc, i);
    }
    out.store(acc, Ordering::Relaxed);
}

const YIELDS: u64 = 10_000;

#[supervised(heartbeat = "manual")]
async fn yielding(n: u64) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

fn yielding_by_hand(n: u64) -> Task {
    Task::new(supervised::Spec::new("yielding"), move |_ctx| async move {
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Registry::new();
    let out = Arc::new(AtomicU64::new(0));
    let run = |task: Task| {
        let task = task.with_spec(|s| s.registry(&registry));
        rt.block_on(task.run(CancellationToken::new()))
    };

    let mut group = c.benchmark_group("loop_of_100k");
    group.throughput(Throughput::Elements(ITERATIONS));
    group.bench_function("plain_async_fn", |b| {
        b.iter(|| rt.block_on(plain(ITERATIONS, out.clone())))
    });
    group.bench_function("supervised_manual", |b| {
        b.iter(|| run(manual(ITERATIONS, out.clone())))
    });
    group.bench_function("supervised_injected", |b| {
        b.iter(|| run(injected(ITERATIONS, out.clone())))
    });
    group.finish();

    let mut group = c.benchmark_group("polls_of_10k");
    group.throughput(Throughput::Elements(YIELDS));
    group.bench_function("task_new", |b| b.iter(|| run(yielding_by_hand(YIELDS))));
    group.bench_function("attribute", |b| b.iter(|| run(yielding(YIELDS))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
