//! What one heartbeat costs: through a task's `Context`, by name, and in the Go
//! design ported literally (a mutex-guarded map of name to `SystemTime`), all in
//! one run so the ratios are honest.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use supervised::{CancellationToken, Context, Registry};

mod support;

use support::context_named;

/// Starts a supervised task on a private registry and hands its `Context` out.
fn context(rt: &tokio::runtime::Runtime, registry: &Registry) -> (Context, CancellationToken) {
    context_named(rt, registry, "bench")
}

fn heartbeat(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Registry::new();
    let (ctx, token) = context(&rt, &registry);

    let mut group = c.benchmark_group("heartbeat");
    group.bench_function("context", |b| b.iter(|| black_box(&ctx).heartbeat()));

    registry.heartbeat("by-name");
    group.bench_function("by_name", |b| {
        b.iter(|| registry.heartbeat(black_box("by-name")))
    });

    let go_design: Mutex<HashMap<String, SystemTime>> = Mutex::new(HashMap::new());
    group.bench_function("go_design_baseline", |b| {
        b.iter(|| {
            let name = black_box("by-name");
            go_design
                .lock()
                .unwrap()
                .insert(name.to_string(), SystemTime::now());
        })
    });
    group.finish();

    // Under contention: two threads beating two tasks, and one thread beating
    // while another takes snapshots of the registry without pause.
    let (other, other_token) = context_named(&rt, &registry, "bench-2");
    let mut group = c.benchmark_group("heartbeat_contended");
    group.bench_function("two_threads_two_tasks", |b| {
        b.iter_custom(|iters| {
            std::thread::scope(|s| {
                let peer = s.spawn(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(&other).heartbeat();
                    }
                    start.elapsed()
                });
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(&ctx).heartbeat();
                }
                let mine = start.elapsed();
                mine.max(peer.join().expect("peer thread"))
            })
        })
    });
    group.bench_function("while_snapshotting", |b| {
        b.iter_custom(|iters| {
            let done = AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        black_box(registry.snapshot());
                    }
                });
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(&ctx).heartbeat();
                }
                let elapsed = start.elapsed();
                done.store(true, Ordering::Relaxed);
                elapsed
            })
        })
    });
    group.finish();
    token.cancel();
    other_token.cancel();

    // What the above are made of, measured in the same run.
    let mut blocks = c.benchmark_group("building_blocks");
    blocks.bench_function("system_time_now", |b| b.iter(SystemTime::now));
    blocks.bench_function("instant_now", |b| b.iter(std::time::Instant::now));
    let lock = std::sync::RwLock::new(0u64);
    blocks.bench_function("rwlock_read", |b| {
        b.iter(|| *black_box(&lock).read().unwrap())
    });
    blocks.finish();
}

criterion_group!(benches, heartbeat);
criterion_main!(benches);
