use supervised::supervised;

#[supervised]
async fn borrowing<'a>(name: &'a str) {
    let _ = name;
}

fn main() {}
