//! One replica of a service that runs as several: its `scheduler` must fire
//! due jobs once across all replicas, so it is a singleton on a lease in
//! PostgreSQL. Start two on one database:
//!
//! ```text
//! cargo run --example replica -- --database-url postgres://localhost/app --addr 127.0.0.1:8081 --replica a
//! cargo run --example replica -- --database-url postgres://localhost/app --addr 127.0.0.1:8082 --replica b
//! ```
//!
//! One shows `scheduler` as `running (leader, token N)`, the other as
//! `standby (lease held by a)`; stop the leader (Ctrl-C releases the lease,
//! `kill -9` does not) and the other takes over. `health-sweep` and
//! `flaky-worker` run on every replica.
//!
//! The scheduler fences its writes with the token of its grant: each tick
//! records one run in `supervised_demo_runs`, and only if no replica has
//! written with a newer token (`supervised_demo_fence`), so a replica that
//! was paused past its lease cannot write after the next one took over.
//!
//! Flags: `--database-url URL` (or `DATABASE_URL`), `--addr HOST:PORT`
//! (default 127.0.0.1:8080; port 0 picks one), `--replica NAME` (default
//! `<hostname>:<pid>`), `--ttl SECS` (the lease's, default 10), `--tick SECS`
//! (the scheduler's period, default 1), `--quiet` (no status table). The
//! admin token comes from `SUPERVISED_ADMIN_TOKEN`, or is generated.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use supervised::http::Endpoints;
use supervised::lease::Postgres;
use supervised::{spawn_all, supervised, CancellationToken, Context, Registry};

mod common;
use common::{admin_token, flaky_worker, health_sweep, print_table, stop_signal};

const DEFAULT_ADDR: &str = "127.0.0.1:8080";
const GRACE: Duration = Duration::from_secs(5);
const TABLE_EVERY: Duration = Duration::from_secs(5);

/// Fires due jobs every `tick`, once across the replicas: a singleton on the
/// group's lease. Each tick is one fenced write.
#[supervised(singleton = true, stale_after = "30s", backoff_max = "5s")]
async fn scheduler(
    ctx: Context,
    url: Arc<str>,
    replica: Arc<str>,
    tick: Duration,
) -> anyhow::Result<()> {
    let token = ctx
        .fencing_token()
        .context("a singleton's attempt has a fencing token")? as i64;
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .context("scheduler: cannot connect to PostgreSQL")?;
    // The connection's driver ends with the attempt.
    let _driver = ctx.spawn(async move {
        let _ = connection.await;
    });
    db.batch_execute(
        "BEGIN;
         SELECT pg_advisory_xact_lock(hashtext('supervised demo tables'));
         CREATE TABLE IF NOT EXISTS supervised_demo_fence (id int PRIMARY KEY, token bigint NOT NULL);
         INSERT INTO supervised_demo_fence VALUES (1, 0) ON CONFLICT DO NOTHING;
         CREATE TABLE IF NOT EXISTS supervised_demo_runs (
             id bigserial PRIMARY KEY,
             replica text NOT NULL,
             fencing_token bigint NOT NULL,
             at timestamptz NOT NULL DEFAULT clock_timestamp()
         );
         COMMIT;",
    )
    .await
    .context("scheduler: cannot create its tables")?;
    // One statement: raise the fence to this grant's token, and record the
    // run only if no newer grant has written.
    let fire = db
        .prepare(
            "WITH fence AS (
                 UPDATE supervised_demo_fence SET token = $1 WHERE id = 1 AND token <= $1
                 RETURNING token
             )
             INSERT INTO supervised_demo_runs (replica, fencing_token)
             SELECT $2, token FROM fence",
        )
        .await?;
    tracing::info!(fencing_token = token, "scheduler: leading");
    let mut every = tokio::time::interval(tick);
    loop {
        tokio::select! {
            _ = ctx.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        let fired = db.execute(&fire, &[&token, &&*replica]).await?;
        if fired == 0 {
            bail!("fenced out: a replica with a newer lease has written");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::init_logging();
    let args = parse_args()?;
    let (admin, generated) = admin_token()?;
    let registry = Registry::global();
    let shutdown = CancellationToken::new();

    let mut leases = Postgres::new(&args.database_url)?.ttl(args.ttl);
    if let Some(replica) = &args.replica {
        leases = leases.holder(replica.clone());
    }
    let replica: Arc<str> = Arc::from(supervised::lease::Lease::holder(&leases));
    let url: Arc<str> = Arc::from(args.database_url.as_str());
    let group = spawn_all!(
        token = shutdown.clone(), lease = leases.clone();
        scheduler(url, replica.clone(), args.tick),
        health_sweep,
        flaky_worker,
    );

    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    let endpoints = Endpoints::new(registry).bearer_token(admin.clone());
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(endpoints.serve(listener, server_stop.clone()));
    // The first line says where to look (tests read it).
    println!("replica {replica} listening on http://{local}");
    if generated {
        println!("admin token: {admin}");
    }

    let mut table = tokio::time::interval(TABLE_EVERY);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            signal = &mut stop => {
                println!("{signal} received: stopping (the lease is released)");
                break;
            }
            _ = table.tick(), if !args.quiet => print_table(&registry.tasks()),
        }
    }
    let exits = group.shutdown(GRACE).await;
    for (name, exit) in &exits {
        println!("  {name:<14} {exit}");
    }
    server_stop.cancel();
    server.await.context("server task")?.context("server")?;
    Ok(())
}

/// The command line.
struct Args {
    database_url: String,
    addr: std::net::SocketAddr,
    replica: Option<String>,
    ttl: Duration,
    tick: Duration,
    quiet: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut database_url = std::env::var("DATABASE_URL").ok();
    let mut addr = DEFAULT_ADDR.to_owned();
    let mut replica = None;
    let mut ttl = "10".to_owned();
    let mut tick = "1".to_owned();
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> anyhow::Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().with_context(|| format!("{flag} needs {what}")),
            }
        };
        match flag.as_str() {
            "--database-url" => database_url = Some(value("a URL")?),
            "--addr" => addr = value("HOST:PORT")?,
            "--replica" => replica = Some(value("a NAME")?),
            "--ttl" => ttl = value("SECS")?,
            "--tick" => tick = value("SECS")?,
            "--quiet" => quiet = true,
            "-h" | "--help" => {
                println!(
                    "usage: replica --database-url URL [--addr HOST:PORT] [--replica NAME] \
                     [--ttl SECS] [--tick SECS] [--quiet]"
                );
                println!("env: DATABASE_URL, SUPERVISED_ADMIN_TOKEN");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; try --help"),
        }
    }
    let secs = |flag: &str, text: &str| -> anyhow::Result<Duration> {
        text.parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .with_context(|| format!("{flag} {text:?} is not a positive number of seconds"))
    };
    Ok(Args {
        database_url: database_url
            .context("no database: pass --database-url URL (or set DATABASE_URL)")?,
        addr: addr
            .parse()
            .with_context(|| format!("--addr {addr:?} is not HOST:PORT"))?,
        replica,
        ttl: secs("--ttl", &ttl)?,
        tick: secs("--tick", &tick)?,
        quiet,
    })
}
