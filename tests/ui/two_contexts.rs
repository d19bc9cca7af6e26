use supervised::{supervised, Context};

#[supervised]
async fn two(ctx: Context, other: supervised::Context) {
    let _ = (ctx, other);
}

fn main() {}
