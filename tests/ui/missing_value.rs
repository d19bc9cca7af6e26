use supervised::supervised;

#[supervised(name)]
async fn bare_key() {}

fn main() {}
