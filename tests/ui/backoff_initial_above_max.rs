use supervised::supervised;

#[supervised(backoff_initial = "1m", backoff_max = "30s")]
async fn inverted() {}

fn main() {}
