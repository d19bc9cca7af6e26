use supervised::supervised;

#[supervised(backoff_max = "-1s")]
async fn negative() {}

#[supervised(backoff_max = "+30s")]
async fn plus_sign() {}

#[supervised(backoff_max = "1_000ms")]
async fn underscore() {}

#[supervised(backoff_max = "1e3ms")]
async fn exponent() {}

#[supervised(backoff_max = "30s,")]
async fn trailing_comma() {}

fn main() {}
