use supervised::supervised;

#[supervised(max_restarts = 5)]
async fn limit_only() {}

fn main() {}
