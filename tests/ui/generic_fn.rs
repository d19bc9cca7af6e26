use supervised::supervised;

#[supervised]
async fn generic<T: Clone + Send + 'static>(value: T) {
    let _ = value;
}

fn main() {}
