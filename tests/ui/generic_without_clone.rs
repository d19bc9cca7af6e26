use supervised::supervised;

trait Store: Send + 'static {}

#[supervised]
async fn relay<S: Store>(store: S) {
    let _ = store;
}

fn main() {}
