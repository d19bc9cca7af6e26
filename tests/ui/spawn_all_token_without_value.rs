use supervised::{spawn_all, supervised};

#[supervised]
async fn sweeper() {}

async fn start() {
    let _a = spawn_all!(token = ; sweeper);
}

fn main() {}
