//! One long-running loop per tenant, as members of a group added and removed
//! while it runs: `cargo run --example tenants [-- --seconds N]`.
//!
//! A `directory` task watches the list of tenants (here: a script of sign-ups
//! and departures) and keeps the `tenants` group in step through its
//! `GroupHandle`: a tenant that signs up gets its loop, one that leaves has
//! its loop stopped and removed. Tenant 3's loop panics on every third tick:
//! only tenant 3 restarts, after its own backoff; the others never notice.
//!
//! (One loop over all tenants is the other shape: there, `Context::isolate`
//! keeps one tenant's failure to that tenant; see the `scheduler` of the
//! `service` example.)

use std::io::IsTerminal;
use std::time::Duration;

use supervised::{supervised, Context, Group, GroupHandle, Registry};

/// One tenant's loop: syncs the tenant every second.
#[supervised(
    name = "tenant",
    backoff_initial = "500ms",
    backoff_max = "5s",
    stale_after = "10s"
)]
async fn tenant_loop(ctx: Context, id: u32) -> anyhow::Result<()> {
    let mut tick = 0u32;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ctx.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        tick += 1;
        if id == 3 && tick % 3 == 0 {
            panic!("tenant 3: corrupt settings row");
        }
        tracing::debug!(tenant = id, tick, "synced");
    }
}

/// What the directory learns, and when (seconds after the start).
const SCRIPT: &[(u64, Change)] = &[
    (0, Change::SignUp(1)),
    (0, Change::SignUp(2)),
    (0, Change::SignUp(3)),
    (0, Change::SignUp(4)),
    (3, Change::SignUp(5)),
    (6, Change::Leave(2)),
];

#[derive(Clone, Copy, Debug)]
enum Change {
    SignUp(u32),
    Leave(u32),
}

/// Keeps the `tenants` group in step with the directory.
#[supervised(name = "directory")]
async fn directory(ctx: Context, tenants: GroupHandle) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    for (at, change) in SCRIPT {
        tokio::select! {
            _ = ctx.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(start + Duration::from_secs(*at)) => {}
        }
        match *change {
            Change::SignUp(id) => {
                tenants.add(tenant_loop(id).named(format!("tenant-{id}")))?;
                tracing::info!(tenant = id, "signed up: its loop is added");
            }
            Change::Leave(id) => {
                let exit = tenants
                    .remove(&format!("tenant-{id}"), Duration::from_secs(5))
                    .await;
                tracing::info!(tenant = id, ?exit, "left: its loop is removed");
            }
        }
    }
    // The directory's work is done; its members run on.
    ctx.cancelled().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let seconds = seconds_arg()?;

    let tenants = Group::new();
    let mut services = Group::new();
    services.spawn(directory(tenants.handle()));

    tokio::time::sleep(Duration::from_secs(seconds)).await;
    println!("\nafter {seconds} s:");
    let mut rows = Registry::global().tasks();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    for t in rows {
        println!(
            "  {:<10} {:<10} restarts {:>2}  panics {:>2}",
            t.name,
            t.state.as_str(),
            t.restarts,
            t.failures.panics
        );
    }
    println!("members of `tenants`: {}", tenants.names().join(", "));

    services.shutdown(Duration::from_secs(5)).await;
    for (name, exit) in tenants.shutdown(Duration::from_secs(5)).await {
        println!("  {name:<10} {exit}");
    }
    Ok(())
}

fn seconds_arg() -> anyhow::Result<u64> {
    let mut args = std::env::args().skip(1);
    let mut seconds = 10;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().unwrap_or_default();
                seconds = value
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--seconds {value:?} is not a whole number"))?;
            }
            "-h" | "--help" => {
                println!("usage: tenants [--seconds N]   (default 10)");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}; try --help"),
        }
    }
    Ok(seconds)
}
