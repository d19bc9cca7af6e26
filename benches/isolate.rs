//! What `Context::isolate` costs on the happy path, against a plain `.await`
//! and an `.await` of the same future inside `catch_unwind` (the floor any
//! isolation pays), in one run. The futures are ready at once, so the
//! numbers are the wrappers' cost alone.

use std::future::Future;
use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::{Context as PollContext, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use supervised::Registry;

mod support;

use support::context_named;

fn poll_ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = PollContext::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the benchmarked futures are ready at once"),
    }
}

fn isolate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Registry::new();
    let (ctx, _stop) = context_named(&rt, &registry, "bench-isolate");
    let (busy, _stop_busy) = context_named(&rt, &registry, "bench-isolate-quarantined");
    // One key of `busy` is quarantined (for a long while): its calls look
    // their key up.
    let _guard = rt.enter();
    let _ = poll_ready(busy.isolate("tenant-13", async { Err::<(), _>("bad row") }));

    // Each variant awaits the same ready future `iters` times inside one
    // async fn on the runtime, as a task's loop does.
    let mut group = c.benchmark_group("isolate");
    group.bench_function("plain_await", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let _ = black_box(std::future::ready(Ok::<u32, &str>(black_box(1))).await);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("catch_unwind_baseline", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let _ = black_box(
                        CatchUnwind(std::future::ready(Ok::<u32, &str>(black_box(1)))).await,
                    );
                }
                start.elapsed()
            })
        })
    });
    for (name, ctx) in [("isolate", &ctx), ("isolate_with_a_key_quarantined", &busy)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        let work = std::future::ready(Ok::<u32, &str>(black_box(1)));
                        let _ = black_box(ctx.isolate(black_box("tenant-7"), work).await);
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// A poll inside `catch_unwind`: the least any isolation of a future costs.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut PollContext<'_>) -> Poll<Self::Output> {
        let inner = std::pin::Pin::new(&mut self.0);
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

criterion_group!(benches, isolate);
criterion_main!(benches);
