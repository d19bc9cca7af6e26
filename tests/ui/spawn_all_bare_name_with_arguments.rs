use supervised::{spawn_all, supervised};

#[supervised]
async fn worker(port: u16) {
    let _ = port;
}

async fn start() {
    let _group = spawn_all!(worker);
}

fn main() {}
