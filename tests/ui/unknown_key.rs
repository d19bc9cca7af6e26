use supervised::supervised;

#[supervised(backof_max = "30s")]
async fn typo() {}

#[supervised(interval = "30s")]
async fn unknown() {}

fn main() {}
