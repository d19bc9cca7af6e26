use supervised::{spawn_all, supervised, CancellationToken};

#[supervised]
async fn a() {}

async fn start(t: CancellationToken) {
    let _group = spawn_all!(a(), token = t);
}

fn main() {}
