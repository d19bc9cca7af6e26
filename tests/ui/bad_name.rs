use supervised::supervised;

#[supervised(name = "")]
async fn empty() {}

#[supervised(name = "   ")]
async fn spaces() {}

#[supervised(name = concat!("a", "b"))]
async fn macro_call() {}

fn main() {}
