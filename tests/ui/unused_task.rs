#![deny(unused_must_use)]

use supervised::supervised;

/// A task whose call is not used: the `Task` type is `#[must_use]`.
#[supervised]
async fn worker() {}

fn main() {
    worker();
}
