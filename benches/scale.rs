//! Scale: 1,000, 10,000 and 100,000 supervised tasks, each waiting on its
//! token and beating once a second, under two name shapes
//! (`tenant-sync-00000700` and `perf-scale-100000-700`). For each size and
//! shape: the time to spawn and register them all, the memory per task
//! beyond the user's future (RSS against the same futures under bare
//! `tokio::spawn`), the time of `snapshot()`, `tasks()` and `is_healthy`
//! over every name, the 99th percentile of registering a new name while
//! another thread takes snapshots in a loop, a by-name `heartbeat(name)`
//! against `SystemTime::now()` in the same process, and `GET
//! /admin/liveness` over loopback. The memory per task is also measured for
//! members of one group (`Group::spawn`, the way `spawn_all!` runs tasks),
//! with the time of `Group::is_healthy` and of `Group::shutdown`, which
//! stops them all, for a group that starts its members at once and for an
//! ordered one (`Group::ordered`: each member starts once the one before
//! has beaten, and they stop from the last to the first).
//! Each run is a child process of its own.
//! `cargo bench --bench scale` prints a Markdown table. With `SCALE_VIEW`
//! set, a child calls that one view 200 times instead (see `repeat_view`),
//! or, with `SCALE_VIEW=liveness`, requests `GET /admin/liveness` 40 times.
//! A child of kind `supervised-context` (not in the table) runs the
//! supervised tasks on the token their `Context` gives them, as a loop that
//! waits on `Context::cancelled` does, which makes each task's own token:
//! `BENCH_CHILD=1 target/release/deps/scale-<hash> supervised-context
//! 100000 tenant` prints its spawn time and RSS.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use supervised::{CancellationToken, Context, Group, Registry, Spec, Task};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// The user's future in every variant: wait on the token, beat once a second.
async fn user_loop(token: CancellationToken, beat: impl Fn()) {
    support::beat_until_cancelled(token, Duration::from_secs(1), beat).await
}

fn child(kind: &str, n: usize, shape: &str) {
    let rt = support::runtime();
    let token = CancellationToken::new();
    let registry = Registry::new();
    let started = Arc::new(AtomicUsize::new(0));
    let names: Vec<String> = (0..n)
        .map(|i| match shape {
            "perf" => format!("perf-scale-{n}-{i}"),
            _ => format!("tenant-sync-{i:08}"),
        })
        .collect();
    // Settle the runtime before the baseline reading.
    rt.block_on(tokio::task::yield_now());
    supervised::heartbeat("warm-up");
    let rss_before = support::rss_bytes();

    let mut peer = task_supervisor::SupervisorBuilder::new();
    let mut peer_handle = None;
    let on_context = kind == "supervised-context";
    // Members of one group, as `spawn_all!` and `Group::spawn` run them.
    let mut group = match kind {
        "ordered" => Group::with_token(token.clone()).ordered(),
        _ => Group::with_token(token.clone()),
    };
    let spawn_start = Instant::now();
    rt.block_on(async {
        for name in &names {
            let started = started.clone();
            let token = token.clone();
            match kind {
                "task-supervisor" => {
                    peer = peer.with_task(
                        name,
                        PeerIdle {
                            started: started.clone(),
                        },
                    );
                }
                "group" | "ordered" => {
                    let spec = Spec::new(name.as_str()).registry(&registry);
                    // The member stops on its own token, which the group's
                    // shutdown cancels. It beats at once: an ordered group
                    // starts the next member on that first beat (the
                    // interval's first tick would wait for the timer's next
                    // millisecond, a millisecond per member).
                    group.spawn(Task::new(spec, move |ctx: Context| {
                        let started = started.clone();
                        async move {
                            started.fetch_add(1, Ordering::Relaxed);
                            ctx.heartbeat();
                            user_loop(ctx.token().clone(), || ctx.heartbeat()).await
                        }
                    }));
                }
                "bare" => {
                    tokio::spawn(async move {
                        started.fetch_add(1, Ordering::Relaxed);
                        user_loop(token, || {}).await
                    });
                }
                _ => {
                    let spec = Spec::new(name.as_str()).registry(&registry);
                    tokio::spawn(spec.run(token.clone(), move |ctx: Context| {
                        let started = started.clone();
                        let token = token.clone();
                        async move {
                            started.fetch_add(1, Ordering::Relaxed);
                            let token = if on_context {
                                ctx.token().clone()
                            } else {
                                token
                            };
                            user_loop(token, || ctx.heartbeat()).await
                        }
                    }));
                }
            }
        }
        if kind == "task-supervisor" {
            peer_handle = Some(std::mem::take(&mut peer).spawn());
        }
        while started.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let spawn_time = spawn_start.elapsed();
    // Let every task beat once.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(1100)).await });
    let rss_after = support::rss_bytes();

    let mut line = format!(
        "{kind} {n} spawn_ms={:.1} rss_bytes={}",
        spawn_time.as_secs_f64() * 1e3,
        rss_after.saturating_sub(rss_before)
    );
    if let Ok(view) = std::env::var("SCALE_VIEW") {
        if view == "liveness" {
            print_spread(
                "liveness",
                rt.block_on(admin_liveness_times(&registry, n, 40)),
            );
        } else {
            repeat_view(&registry, &names, &view);
        }
        return;
    }
    if kind == "supervised" {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let time = |f: &dyn Fn()| {
            support::median(
                (0..9)
                    .map(|_| {
                        let t = Instant::now();
                        f();
                        t.elapsed()
                    })
                    .collect(),
            )
        };
        let snapshot = time(&|| assert_eq!(registry.snapshot().len(), n));
        let tasks = time(&|| assert_eq!(registry.tasks().len(), n));
        let healthy = time(&|| assert!(registry.is_healthy(&refs, Duration::from_secs(60)).0));
        line += &format!(
            " snapshot_us={:.0} tasks_us={:.0} is_healthy_us={:.0}",
            snapshot.as_secs_f64() * 1e6,
            tasks.as_secs_f64() * 1e6,
            healthy.as_secs_f64() * 1e6
        );
        let liveness = support::median(rt.block_on(admin_liveness_times(&registry, n, 5)));
        line += &format!(" liveness_ms={:.1}", liveness.as_secs_f64() * 1e3);
        line += &format!(
            " register_p99_us={:.1}",
            register_p99(&registry).as_secs_f64() * 1e6
        );
        let (named, now) = by_name_beat(&registry, &names[n / 2]);
        line += &format!(" by_name_ns={named:.1} now_ns={now:.1}");
    }
    if kind == "group" || kind == "ordered" {
        let health: Vec<Duration> = (0..9)
            .map(|_| {
                let t = Instant::now();
                assert!(group.is_healthy());
                t.elapsed()
            })
            .collect();
        line += &format!(
            " group_healthy_us={:.0}",
            support::median(health).as_secs_f64() * 1e6
        );
        // Every member stops on its token within the grace.
        let t = Instant::now();
        let exits = rt.block_on(group.shutdown(Duration::from_secs(60)));
        assert_eq!(exits.len(), n);
        line += &format!(" shutdown_ms={:.1}", t.elapsed().as_secs_f64() * 1e3);
    } else {
        drop(group);
    }
    token.cancel();
    if let Some(handle) = peer_handle {
        rt.block_on(async { drop(handle.shutdown().await) });
    }
    println!("{line}");
}

/// One view (`snapshot`, `tasks` or `is_healthy`) called 200 times on the
/// tasks just spawned: its 10th percentile, median and fastest call. The
/// tasks' beats come in bursts once a second, which slow the calls that
/// meet them; 200 calls span several bursts. For paired comparisons of two
/// builds: `BENCH_CHILD=1 SCALE_VIEW=is_healthy target/release/deps/scale-<hash>
/// supervised 100000 tenant`, alternating the binaries.
fn repeat_view(registry: &Registry, names: &[String], view: &str) {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            match view {
                "snapshot" => assert_eq!(registry.snapshot().len(), names.len()),
                "tasks" => assert_eq!(registry.tasks().len(), names.len()),
                "is_healthy" => {
                    assert!(registry.is_healthy(&refs, Duration::from_secs(60)).0)
                }
                other => panic!("SCALE_VIEW: no view named {other:?}"),
            }
            t.elapsed()
        })
        .collect();
    print_spread(view, times);
}

/// Prints the 10th percentile, the median and the fastest of `times`, in
/// milliseconds, as `<label> x<count>: p10_ms=… median_ms=… min_ms=…`.
fn print_spread(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |i: usize| times[i].as_secs_f64() * 1e3;
    println!(
        "{label} x{}: p10_ms={:.2} median_ms={:.2} min_ms={:.2}",
        times.len(),
        ms(times.len() / 10),
        ms(times.len() / 2),
        ms(0)
    );
}

/// The times of `count` requests of `GET /admin/liveness` over loopback,
/// each body read to the end.
async fn admin_liveness_times(registry: &Registry, n: usize, count: usize) -> Vec<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    let endpoints =
        supervised::http::Endpoints::new(registry).bearer_token("scale-token-0123456789");
    let server = tokio::spawn(endpoints.serve(listener, stop.clone()));
    let request = format!(
        "GET /admin/liveness HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer scale-token-0123456789\r\nConnection: close\r\n\r\n"
    );
    let mut times = Vec::new();
    for _ in 0..count {
        let start = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await.expect("read");
        times.push(start.elapsed());
        assert!(body.starts_with(b"HTTP/1.1 200"), "liveness answered badly");
        assert!(body.len() > n * 100, "a short body for {n} tasks");
    }
    stop.cancel();
    let _ = server.await;
    times
}

/// The 99th percentile of registering a new name (a first by-name
/// heartbeat) while another thread takes snapshots in a loop. The
/// registrations are paced, one every half millisecond or so, so that they
/// fall at every point of the snapshots they meet: a registration that has to
/// wait for a snapshot to end shows in the percentile. (Registered back to
/// back, 2,000 of them took a few milliseconds, less than one snapshot, and
/// at most the first could wait.)
fn register_p99(registry: &Registry) -> Duration {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let snapshots = {
        let (registry, stop) = (registry.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut taken = 0u64;
            while !stop.load(Ordering::Relaxed) {
                taken += registry.snapshot().len() as u64;
            }
            taken
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let mut times: Vec<Duration> = (0..2_000)
        .map(|i| {
            let name = format!("registered-later-{i}");
            std::thread::sleep(Duration::from_micros(500));
            let t = Instant::now();
            registry.heartbeat(&name);
            t.elapsed()
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    assert!(snapshots.join().expect("snapshot thread") > 0);
    times.sort_unstable();
    times[times.len() * 99 / 100]
}

/// Nanoseconds per by-name heartbeat of one name, and per
/// `SystemTime::now()`, the floor any heartbeat with a wall time has.
fn by_name_beat(registry: &Registry, name: &str) -> (f64, f64) {
    const N: u32 = 2_000_000;
    let per = |f: &dyn Fn()| {
        support::median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..N {
                        f();
                    }
                    t.elapsed()
                })
                .collect(),
        )
        .as_secs_f64()
            * 1e9
            / f64::from(N)
    };
    let named = per(&|| registry.heartbeat(std::hint::black_box(name)));
    let now = per(&|| {
        std::hint::black_box(std::time::SystemTime::now());
    });
    (named, now)
}

/// The same idle loop as a `task-supervisor` task.
#[derive(Clone)]
struct PeerIdle {
    started: Arc<AtomicUsize>,
}

impl task_supervisor::SupervisedTask for PeerIdle {
    async fn run(self, cancel: CancellationToken) -> task_supervisor::TaskResult {
        self.started.fetch_add(1, Ordering::Relaxed);
        user_loop(cancel, || {}).await;
        Ok(())
    }
}

fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if support::is_child() {
        let n: usize = args[2].parse().expect("size");
        let shape = args.get(3).map_or("tenant", String::as_str);
        child(&args[1], n, shape);
        return;
    }
    // `cargo bench` passes `--bench`; a filter may follow. Nothing to filter here.
    println!("| tasks | names | spawn + register (ms) | bare spawn (ms) | bytes per task beyond the future | snapshot() (ms) | tasks() (ms) | is_healthy(all) (ms) | register p99 during snapshots (µs) | heartbeat(name) (ns) | SystemTime::now() (ns) | GET /admin/liveness (ms) |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut peer_rows = Vec::new();
    let mut group_rows = Vec::new();
    for n in SIZES {
        let size = n.to_string();
        if n <= 10_000 {
            let peer = support::run_child(&["task-supervisor", &size]);
            let bare = support::run_child(&["bare", &size]);
            peer_rows.push(format!(
                "| {n} | {:.1} | {:.0} |",
                field(&peer, "spawn_ms"),
                (field(&peer, "rss_bytes") - field(&bare, "rss_bytes")) / n as f64
            ));
        }
        let bare = support::run_child(&["bare", &size]);
        for (kind, order) in [("group", "any"), ("ordered", "ordered")] {
            let members = support::run_child(&[kind, &size]);
            group_rows.push(format!(
                "| {n} | {order} | {:.1} | {:.0} | {:.2} | {:.1} |",
                field(&members, "spawn_ms"),
                (field(&members, "rss_bytes") - field(&bare, "rss_bytes")) / n as f64,
                field(&members, "group_healthy_us") / 1e3,
                field(&members, "shutdown_ms"),
            ));
        }
        for (shape, example) in [
            ("tenant", "tenant-sync-00000700"),
            ("perf", "perf-scale-N-700"),
        ] {
            let sup = support::run_child(&["supervised", &size, shape]);
            let per_task = (field(&sup, "rss_bytes") - field(&bare, "rss_bytes")) / n as f64;
            println!(
                "| {n} | `{example}` | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
                field(&sup, "spawn_ms"),
                field(&bare, "spawn_ms"),
                per_task,
                field(&sup, "snapshot_us") / 1e3,
                field(&sup, "tasks_us") / 1e3,
                field(&sup, "is_healthy_us") / 1e3,
                field(&sup, "register_p99_us"),
                field(&sup, "by_name_ns"),
                field(&sup, "now_ns"),
                field(&sup, "liveness_ms"),
            );
        }
    }
    println!();
    println!("| tasks under task-supervisor | spawn until all run (ms) | bytes per task beyond the future |");
    println!("|---:|---:|---:|");
    for row in peer_rows {
        println!("{row}");
    }
    println!();
    println!(
        "| members of one group | start order | spawn until all run (ms) | bytes per task beyond the future | `Group::is_healthy` (ms) | `Group::shutdown` (ms) |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    for row in group_rows {
        println!("{row}");
    }
}
