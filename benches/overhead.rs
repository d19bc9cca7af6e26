//! The cost of supervision on the happy path: the same future under a bare
//! `tokio::spawn` and as a supervised task, on a yield-heavy loop and on a
//! channel ping-pong, in one run.

mod support;

use std::future::Future;

use criterion::{criterion_group, criterion_main, Criterion};
use supervised::{CancellationToken, Context, Registry, Spec};
use support::{ping_pong, yield_loop};

fn bare<F, Fut>(rt: &tokio::runtime::Runtime, f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    rt.block_on(async { tokio::spawn(f()).await.expect("no panic") });
}

fn supervised<F, Fut>(rt: &tokio::runtime::Runtime, registry: &Registry, f: F)
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let spec = Spec::new("overhead").registry(registry);
    let exit = rt.block_on(spec.run(CancellationToken::new(), move |_ctx: Context| f()));
    assert!(exit.is_completed());
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Registry::new();

    let mut group = c.benchmark_group("happy_path_yield_10k");
    group.bench_function("bare_spawn", |b| b.iter(|| bare(&rt, yield_loop)));
    group.bench_function("supervised", |b| {
        b.iter(|| supervised(&rt, &registry, yield_loop))
    });
    group.finish();

    let mut group = c.benchmark_group("happy_path_ping_pong_10k");
    group.bench_function("bare_spawn", |b| b.iter(|| bare(&rt, ping_pong)));
    group.bench_function("supervised", |b| {
        b.iter(|| supervised(&rt, &registry, ping_pong))
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
