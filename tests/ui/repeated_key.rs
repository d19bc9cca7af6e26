use supervised::supervised;

#[supervised(name = "a", backoff_max = "10s", name = "b")]
async fn twice() {}

fn main() {}
