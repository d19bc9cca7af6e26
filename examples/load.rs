//! Many supervised tasks behind the endpoints, for measuring the endpoints'
//! latency with a load generator:
//!
//! ```text
//! cargo run --release --example load -- --tasks 1000 --addr 127.0.0.1:8081
//! wrk -t2 -c16 -d5s --latency http://127.0.0.1:8081/livez
//! wrk -t2 -c16 -d5s --latency -H 'Authorization: Bearer load-token-0123456789' \
//!     http://127.0.0.1:8081/admin/liveness
//! ```
//!
//! The admin token is `load-token-0123456789` unless `SUPERVISED_ADMIN_TOKEN` says
//! otherwise. Ctrl-C stops it.

use std::time::Duration;

use anyhow::Context as _;
use supervised::http::Endpoints;
use supervised::{CancellationToken, Context, Group, Registry, Spec, Task};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut tasks = 1000usize;
    let mut addr = "127.0.0.1:8081".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tasks" => tasks = args.next().context("--tasks N")?.parse()?,
            "--addr" => addr = args.next().context("--addr HOST:PORT")?,
            other => anyhow::bail!("unknown argument {other:?}; use --tasks N --addr HOST:PORT"),
        }
    }
    let token =
        std::env::var("SUPERVISED_ADMIN_TOKEN").unwrap_or_else(|_| "load-token-0123456789".into());

    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let mut group = Group::with_token(shutdown.clone());
    for i in 0..tasks {
        let spec = Spec::new(format!("task-{i:04}"))
            .registry(&registry)
            .stale_after(Duration::from_secs(10));
        group.spawn(Task::new(spec, |ctx: Context| async move {
            while !ctx.is_cancelled() {
                ctx.heartbeat();
                tokio::select! {
                    _ = ctx.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }));
    }

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "{tasks} tasks; serving on http://{} (token {token})",
        listener.local_addr()?
    );
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(
        Endpoints::new(&registry)
            .bearer_token(token)
            .not_ready_after(shutdown.clone())
            .serve(listener, server_stop.clone()),
    );
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    group.shutdown(Duration::from_secs(5)).await;
    server_stop.cancel();
    server.await??;
    Ok(())
}
