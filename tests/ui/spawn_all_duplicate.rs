use supervised::{spawn_all, supervised};

#[supervised]
async fn sweeper() {}

#[supervised]
async fn relay(port: u16) {
    let _ = port;
}

async fn start() {
    let _a = spawn_all!(sweeper, sweeper());
    let _b = spawn_all!(relay(80), relay(80), relay(443));
}

fn main() {}
