use supervised::{supervised, Context};

#[supervised]
fn not_async(ctx: Context) {
    ctx.heartbeat();
}

fn main() {}
