use supervised::{spawn_all, supervised};

#[supervised]
async fn a() {}

#[supervised]
async fn b() {}

async fn start() {
    let _group = spawn_all!(a(); b());
}

fn main() {}
