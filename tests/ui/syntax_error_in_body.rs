use supervised::{spawn_all, supervised, Context};

#[supervised]
async fn broken(ctx: Context, n: u32) {
    let x = ;
    ctx.heartbeat();
}

async fn start() {
    // The call site sees `fn broken(n: u32) -> Task`: no second error here.
    let _group = spawn_all!(broken(1));
}

fn main() {}
