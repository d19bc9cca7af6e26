use supervised::supervised;

/// An application type that happens to be named `Context`.
#[derive(Clone)]
struct Context;

#[supervised]
async fn worker(app: Context) {
    let _ = app;
}

fn main() {}
