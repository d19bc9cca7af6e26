use supervised::supervised;

#[supervised]
async fn borrowed(name: &str) {
    let _ = name;
}

fn main() {}
