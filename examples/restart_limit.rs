//! A `Result`-returning task with a crash-loop limit: more than 3 restarts
//! within a minute and it gives up with `Exit::Failed`.
//!
//! `cargo run --example restart_limit` (ends by itself in under a second).

use supervised::{supervised, CancellationToken, Context, Exit};

/// Connects to a server that is never there.
#[supervised(
    backoff_initial = "50ms",
    backoff_max = "200ms",
    max_restarts = 3,
    within = "1m"
)]
async fn connect(ctx: Context, addr: String) -> anyhow::Result<()> {
    println!("attempt {}: connecting to {addr}", ctx.attempt());
    anyhow::bail!("connection to {addr} refused")
}

#[tokio::main]
async fn main() {
    let exit = connect("127.0.0.1:1".to_owned())
        .run(CancellationToken::new())
        .await;
    println!("{exit}");
    assert!(matches!(exit, Exit::Failed { .. }));
}
