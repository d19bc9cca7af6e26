use supervised::supervised;

#[supervised]
async fn pattern((host, port): (String, u16)) {
    let _ = (host, port);
}

fn main() {}
