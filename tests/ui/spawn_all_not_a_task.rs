use supervised::spawn_all;

async fn plain() {}

async fn start() {
    let _group = spawn_all!(plain());
}

fn main() {}
