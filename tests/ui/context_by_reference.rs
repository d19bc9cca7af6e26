use supervised::{supervised, Context};

#[supervised]
async fn by_ref(ctx: &Context) {
    ctx.heartbeat();
}

fn main() {}
