use supervised::supervised;

#[supervised(stale_after = "0s")]
async fn zero() {}

fn main() {}
