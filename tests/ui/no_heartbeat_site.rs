use supervised::supervised;

// Nothing can beat: no loop, no `Context`.
#[supervised(stale_after = "30s")]
async fn once() {
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

// The only loop is inside a macro, which the attribute cannot see into.
#[supervised(stale_after = "30s", on_stale = "restart")]
async fn in_a_macro(rx: std::sync::Arc<tokio::sync::Notify>) {
    tokio::select! {
        _ = async { loop { rx.notified().await } } => {}
    }
}

// Injection turned off and no `Context` to beat with.
#[supervised(stale_after = "1m", heartbeat = "manual")]
async fn manual() {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn main() {}
