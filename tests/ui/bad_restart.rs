use supervised::supervised;

#[supervised(restart = "sometimes")]
async fn bad() {}

#[supervised(restart = always)]
async fn unquoted() {}

fn main() {}
