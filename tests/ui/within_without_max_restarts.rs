use supervised::supervised;

#[supervised(within = "1m")]
async fn window_only() {}

fn main() {}
