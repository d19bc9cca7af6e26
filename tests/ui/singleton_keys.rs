use supervised::{spawn_all, supervised, Context};

#[supervised(singleton = "true")]
async fn a(ctx: Context) {
    ctx.heartbeat();
}

#[supervised(singleton = yes)]
async fn b(ctx: Context) {
    ctx.heartbeat();
}

#[supervised(singleton = true)]
async fn c(ctx: Context) {
    ctx.heartbeat();
}

async fn demo() {
    let _group = spawn_all!(lease = "postgres://localhost/app"; c());
}

fn main() {}
