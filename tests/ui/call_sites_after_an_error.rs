use supervised::{spawn_all, supervised, CancellationToken, Context};

#[supervised(stale_afer = "30s")]
async fn worker(ctx: Context, port: u16) {
    let _ = (ctx, port);
}

async fn start() {
    // One error, at the key: the calls still type-check against
    // `fn worker(port: u16) -> Task`.
    let _group = spawn_all!(worker(80));
    let _handle = worker(443).spawn(CancellationToken::new());
}

fn main() {}
