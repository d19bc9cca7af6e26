use supervised::{supervised, Context};

#[supervised(quarantine_initial = "10s", quarantine_max = "5s")]
async fn a(ctx: Context) {
    ctx.heartbeat();
}

#[supervised(quarantine_initial = "10m")]
async fn b(ctx: Context) {
    ctx.heartbeat();
}

#[supervised(quarantine_max = "soon")]
async fn c(ctx: Context) {
    ctx.heartbeat();
}

fn main() {}
