use supervised::supervised;

#[supervised]
struct Worker;

fn main() {}
