use supervised::supervised;

#[supervised(scheduler)]
async fn bare_word() {}

#[supervised(name: "scheduler")]
async fn colon() {}

#[supervised(name = "a" backoff_max = "1s")]
async fn missing_comma() {}

fn main() {}
