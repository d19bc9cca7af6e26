use supervised::supervised;

#[supervised]
async fn worker() {}

async fn start() {
    worker().await;
}

fn main() {}
