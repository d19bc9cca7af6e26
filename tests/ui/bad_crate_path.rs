use supervised::supervised;

#[supervised(crate = "not a path")]
async fn spaces() {}

#[supervised(crate = "")]
async fn empty() {}

#[supervised(crate = supervised)]
async fn unquoted() {}

fn main() {}
