use supervised::supervised;

#[supervised(heartbeat = "off")]
async fn bad() {}

#[supervised(jitter = "half")]
async fn bad_jitter() {}

fn main() {}
