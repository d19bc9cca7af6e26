use supervised::{spawn_all, supervised};

#[supervised]
async fn sweeper() {}

async fn start() {
    let _a = spawn_all!(token = 5; sweeper);
    let _b = spawn_all!(tokn = 5; sweeper);
}

fn main() {}
