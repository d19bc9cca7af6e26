use supervised::supervised;

#[supervised("scheduler")]
async fn literal() {}

#[supervised(backoff_max = "1s", 5)]
async fn literal_after_a_key() {}

fn main() {}
