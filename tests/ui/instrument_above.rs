use supervised::{supervised, Context};

#[tracing::instrument]
#[supervised]
async fn relay(ctx: Context, port: u16) {
    let _ = (ctx, port);
}

fn main() {}
