//! A small service with supervised subsystems in a small tree, and every
//! operations endpoint: `cargo run --example service`.
//!
//! ```text
//! root group
//! ├── storage            an ordered group (rest for one), run as one task
//! │   ├── db             ready after a 1 s warm-up; the others wait for it
//! │   ├── scheduler      runs eight tenants' jobs every 2 s; tenant 5's bad
//! │   │                  row is quarantined, the other seven go on
//! │   └── relay          forwards the scheduler's jobs as they arrive
//! ├── health-sweep
//! ├── flaky-worker
//! ├── ingest
//! └── reports            added at run time, 3 s after the start
//! ```
//!
//! * `health-sweep` checks things every 3 s;
//! * `flaky-worker` panics every fourth tick and is restarted after a backoff;
//! * `ingest` hangs now and then without beating; its `stale_after` of 3 s
//!   with `OnStale::Restart` drops the stuck attempt and starts a fresh one.
//!
//! Routes are served on 127.0.0.1:8080 (`--addr HOST:PORT` to change). The
//! admin token comes from `SUPERVISED_ADMIN_TOKEN`, or is generated. A status
//! table is printed every 5 s; Ctrl-C (or SIGTERM) stops the service
//! gracefully: readiness fails at once, the tasks stop after a drain of 2 s
//! (`--drain SECS`), then the server.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use supervised::http::Endpoints;
use supervised::systemd::Watchdog;
use supervised::{CancellationToken, Context, Group, OnStale, Registry, Spec, Strategy, Task};
use tokio::sync::mpsc;

mod common;
use common::{admin_token, flaky_worker, health_sweep, print_table, stop_signal};

const DEFAULT_ADDR: &str = "127.0.0.1:8080";
const TABLE_EVERY: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(5);
/// How long readiness fails before the tasks stop, on shutdown (`--drain`).
const DEFAULT_DRAIN: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::init_logging();

    let Args { addr, drain } = parse_args()?;
    let (token, generated) = admin_token()?;
    let registry = Registry::global();
    let shutdown = CancellationToken::new();

    // The endpoints: readiness fails as soon as `shutdown` is cancelled, and
    // the tasks' token follows `drain` later.
    let mut endpoints = Endpoints::new(registry).bearer_token(token.clone());
    let tasks = endpoints.drain(shutdown.clone(), drain);

    // The subsystems. `storage` starts `db` first and the scheduler and the
    // relay once it is ready, stops them in reverse order, and restarts the
    // ones after a member that fails; the root group runs it as one task.
    let (jobs_tx, jobs_rx) = mpsc::channel::<u64>(64);
    let jobs_rx = std::sync::Arc::new(tokio::sync::Mutex::new(jobs_rx));
    let mut storage = Group::with_token(tasks.clone())
        .ordered()
        .with_strategy(Strategy::RestForOne);
    storage
        .spawn(db())
        .spawn(scheduler(jobs_tx))
        .spawn(relay(jobs_rx));
    let mut group = Group::with_token(tasks.clone());
    group
        .spawn(storage.into_task("storage"))
        .spawn(health_sweep())
        .spawn(flaky_worker())
        .spawn(ingest());
    // A member added while the group runs, as a tenant or a connection
    // would be.
    let members = group.handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        match members.add(reports()) {
            Ok(()) => tracing::info!("added the run-time member `reports`"),
            Err(e) => tracing::warn!("{e}"),
        }
    });

    // The endpoints, and systemd when running under it.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(endpoints.serve(listener, server_stop.clone()));
    let watchdog = Watchdog::from_env(registry).map(|w| w.spawn(shutdown.clone()));

    print_banner(local, generated.then_some(token.as_str()));

    // A status table every few seconds until a signal arrives.
    let mut table =
        tokio::time::interval_at(tokio::time::Instant::now() + TABLE_EVERY, TABLE_EVERY);
    let stop_signal = stop_signal();
    tokio::pin!(stop_signal);
    loop {
        tokio::select! {
            signal = &mut stop_signal => {
                println!(
                    "\n{signal} received: not ready from now on; the tasks stop in {drain:?} \
                     (grace {GRACE:?}; a second signal skips the wait)"
                );
                break;
            }
            _ = table.tick() => print_table(&registry.tasks()),
        }
    }

    // Readiness fails from here on; the tasks stop after the drain period
    // (or at a second signal), then the server.
    shutdown.cancel();
    tokio::select! {
        _ = tasks.cancelled() => {}
        _ = self::stop_signal() => tasks.cancel(),
    }
    let exits = group.shutdown(GRACE).await;
    println!("\nHow each task ended:");
    for (name, exit) in &exits {
        println!("  {name:<14} {exit}");
    }
    server_stop.cancel();
    server.await.context("server task")?.context("server")?;
    if let Some(watchdog) = watchdog {
        let _ = watchdog.await;
    }
    println!("bye");
    Ok(())
}

// --- The subsystems -----------------------------------------------------------

/// The connection the scheduler and the relay need: ready (first beat) after
/// a 1 s warm-up, then checks the connection every second.
fn db() -> Task {
    let spec = Spec::new("db").stale_after(Duration::from_secs(10));
    Task::new(spec, |ctx: Context| async move {
        tokio::select! {
            _ = ctx.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        while !ctx.is_cancelled() {
            ctx.heartbeat();
            tokio::select! {
                _ = ctx.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

/// Writes a report every 2 s; added to the running group after the start.
fn reports() -> Task {
    let spec = Spec::new("reports").stale_after(Duration::from_secs(10));
    Task::new(spec, |ctx: Context| async move {
        while !ctx.is_cancelled() {
            ctx.heartbeat();
            tokio::select! {
                _ = ctx.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    })
}

/// The tenants the scheduler serves; one of them has a row it cannot parse.
const TENANTS: u32 = 8;
const POISONED_TENANT: u32 = 5;

/// Runs every tenant's due jobs every 2 s and hands them to the relay. Each
/// tenant runs isolated: tenant 5's bad row panics, and only tenant 5 waits
/// out a quarantine (1 s, 2 s, 4 s ...) while the seven others are served on
/// every tick and the scheduler never restarts.
fn scheduler(jobs: mpsc::Sender<u64>) -> Task {
    let spec = Spec::new("scheduler").stale_after(Duration::from_secs(10));
    Task::new(spec, move |ctx: Context| {
        let jobs = jobs.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = ctx.cancelled() => return Ok::<(), anyhow::Error>(()),
                    _ = every.tick() => {}
                }
                ctx.heartbeat();
                for tenant in 1..=TENANTS {
                    let due = ctx.isolate(format!("tenant-{tenant}"), due_jobs(tenant));
                    // A quarantined or failed tenant is logged and skipped.
                    if let Ok(Some(count)) = due.await {
                        for _ in 0..count {
                            n += 1;
                            tracing::debug!(tenant, job = n, "scheduled");
                            jobs.send(n).await.context("relay is gone")?;
                        }
                    }
                }
            }
        }
    })
}

/// How many jobs a tenant has due; the poisoned tenant's data panics.
async fn due_jobs(tenant: u32) -> Option<u32> {
    if tenant == POISONED_TENANT {
        parse_row(tenant, "17;;not-a-date");
    }
    Some(1)
}

fn parse_row(tenant: u32, row: &str) {
    panic!("tenant {tenant}: cannot parse row {row:?}");
}

/// Forwards jobs; beats on every job and every second while idle.
fn relay(jobs: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<u64>>>) -> Task {
    let spec = Spec::new("relay").stale_after(Duration::from_secs(5));
    Task::new(spec, move |ctx: Context| {
        let jobs = jobs.clone();
        async move {
            let mut jobs = jobs.lock().await;
            loop {
                ctx.heartbeat();
                tokio::select! {
                    _ = ctx.cancelled() => return,
                    job = jobs.recv() => match job {
                        Some(job) => tracing::debug!(job, "relayed"),
                        None => return,
                    },
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    })
}

/// Hangs (awaits forever without beating) on its seventh tick; the stall
/// watchdog drops it after 3 s of silence and restarts it.
fn ingest() -> Task {
    let spec = Spec::new("ingest")
        .stale_after(Duration::from_secs(3))
        .on_stale(OnStale::Restart)
        .reset_after(Duration::from_secs(5));
    Task::new(spec, |ctx: Context| async move {
        let mut tick = 0u32;
        while !ctx.is_cancelled() {
            ctx.heartbeat();
            tick += 1;
            if tick == 7 {
                tracing::info!(attempt = ctx.attempt(), "ingest: stuck on a slow upstream");
                // No heartbeat and no cancellation check: a real hang.
                std::future::pending::<()>().await;
            }
            tokio::select! {
                _ = ctx.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

// --- Terminal output ---------------------------------------------------------------

/// The banner; the admin token is printed only when the demo generated it
/// (`token` is `None` when it came from `SUPERVISED_ADMIN_TOKEN`).
fn print_banner(addr: SocketAddr, token: Option<&str>) {
    let base = format!("http://{addr}");
    println!();
    println!("supervised demo service on {base}");
    let shown = match token {
        Some(token) => {
            println!("admin token: {token}");
            token.to_owned()
        }
        None => {
            println!("admin token: the one in SUPERVISED_ADMIN_TOKEN");
            "$SUPERVISED_ADMIN_TOKEN".to_owned()
        }
    };
    println!();
    match token {
        Some(token) => println!("status page: {base}/admin/#token={token}"),
        None => println!("status page: {base}/admin/ (or {base}/admin/#token=<the token>)"),
    }
    println!();
    println!("try:");
    println!("  curl -s {base}/livez?verbose");
    println!("  curl -s {base}/readyz?verbose");
    println!("  curl -s -H \"Authorization: Bearer {shown}\" {base}/livez?verbose");
    println!("  curl -s -H \"Authorization: Bearer {shown}\" {base}/admin/liveness");
    println!("  curl -s -H \"Authorization: Bearer {shown}\" {base}/metrics");
    println!("  curl -s {base}/health");
    println!();
    println!("Ctrl-C stops the service.");
    println!();
}

// --- Setup ------------------------------------------------------------------------

/// The command line.
struct Args {
    addr: SocketAddr,
    /// How long readiness fails before the tasks stop, on shutdown.
    drain: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut addr = DEFAULT_ADDR.to_owned();
    let mut drain = DEFAULT_DRAIN.as_secs_f64().to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().context("--addr needs HOST:PORT")?,
            s if s.starts_with("--addr=") => addr = s["--addr=".len()..].to_owned(),
            "--drain" => drain = args.next().context("--drain needs SECS")?,
            s if s.starts_with("--drain=") => drain = s["--drain=".len()..].to_owned(),
            "-h" | "--help" => {
                println!(
                    "usage: service [--addr HOST:PORT] [--drain SECS]   (defaults {DEFAULT_ADDR}, {})",
                    DEFAULT_DRAIN.as_secs()
                );
                println!("env: SUPERVISED_ADMIN_TOKEN (admin bearer token, 16 bytes or more; random if unset)");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; try --help"),
        }
    }
    let addr = addr
        .parse()
        .with_context(|| format!("--addr {addr:?} is not HOST:PORT (an IP address and a port)"))?;
    let drain = drain
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .with_context(|| format!("--drain {drain:?} is not a number of seconds"))?;
    Ok(Args { addr, drain })
}
