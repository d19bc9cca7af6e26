use supervised::supervised;

#[supervised(backoff_max = "30x")]
async fn unknown_unit() {}

#[supervised(backoff_max = "30")]
async fn no_unit() {}

#[supervised(grace = "1.5s")]
async fn fraction() {}

#[supervised(stale_after = "")]
async fn empty() {}

fn main() {}
