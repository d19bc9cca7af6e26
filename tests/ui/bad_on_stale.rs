use supervised::supervised;

#[supervised(stale_after = "30s", on_stale = "panic")]
async fn bad(ctx: supervised::Context) { ctx.heartbeat() }

#[supervised(on_stale = "restart")]
async fn without_stale_after() {}

fn main() {}
