//! Scale: 1,000, 10,000 and 100,000 supervised tasks, each waiting on its
//! token and beating once a second. For each size: the time to spawn and
//! register them all, the memory per task beyond the user's future (RSS against
//! the same futures under bare `tokio::spawn`), and the time of `snapshot()`,
//! `tasks()` and `is_healthy` over every name. Each size runs in a child
//! process of its own; up to 10,000 tasks, also the time of
//! `GET /admin/liveness` over loopback. `cargo bench --bench scale` prints a
//! Markdown table.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use supervised::{CancellationToken, Context, Registry, Spec};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// The user's future in every variant: wait on the token, beat once a second.
async fn user_loop(token: CancellationToken, beat: impl Fn()) {
    support::beat_until_cancelled(token, Duration::from_secs(1), beat).await
}

fn child(kind: &str, n: usize) {
    let rt = support::runtime();
    let token = CancellationToken::new();
    let registry = Registry::new();
    let started = Arc::new(AtomicUsize::new(0));
    let names: Vec<String> = (0..n).map(|i| format!("task-{i:06}")).collect();
    // Settle the runtime before the baseline reading.
    rt.block_on(tokio::task::yield_now());
    supervised::heartbeat("warm-up");
    let rss_before = support::rss_bytes();

    let mut peer = task_supervisor::SupervisorBuilder::new();
    let mut peer_handle = None;
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
        if n <= 10_000 {
            let liveness = rt.block_on(admin_liveness(&registry, n));
            line += &format!(" liveness_ms={:.1}", liveness.as_secs_f64() * 1e3);
        }
    }
    token.cancel();
    if let Some(handle) = peer_handle {
        rt.block_on(async { drop(handle.shutdown().await) });
    }
    println!("{line}");
}

/// Median time of `GET /admin/liveness` over loopback, body read to the end.
async fn admin_liveness(registry: &Registry, n: usize) -> Duration {
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
         Authorization: Bearer scale-token\r\nConnection: close\r\n\r\n"
    );
    let mut times = Vec::new();
    for _ in 0..5 {
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
    support::median(times)
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
        child(&args[1], n);
        return;
    }
    // `cargo bench` passes `--bench`; a filter may follow. Nothing to filter here.
    println!("| tasks | spawn + register (ms) | bare spawn (ms) | bytes per task beyond the future | snapshot() (µs) | tasks() (µs) | is_healthy(all) (µs) | GET /admin/liveness (ms) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut peer_rows = Vec::new();
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
        let sup = support::run_child(&["supervised", &size]);
        let per_task = (field(&sup, "rss_bytes") - field(&bare, "rss_bytes")) / n as f64;
        println!(
            "| {n} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            field(&sup, "spawn_ms"),
            field(&bare, "spawn_ms"),
            per_task,
            field(&sup, "snapshot_us"),
            field(&sup, "tasks_us"),
            field(&sup, "is_healthy_us"),
            match field(&sup, "liveness_ms") {
                ms if ms.is_nan() => "not measured".to_owned(),
                ms => format!("{ms:.1}"),
            },
        );
    }
    println!();
    println!("| tasks under task-supervisor | spawn until all run (ms) | bytes per task beyond the future |");
    println!("|---:|---:|---:|");
    for row in peer_rows {
        println!("{row}");
    }
}
