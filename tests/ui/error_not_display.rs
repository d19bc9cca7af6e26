use supervised::supervised;

#[derive(Debug)]
struct Opaque;

#[supervised]
async fn opaque() -> Result<(), Opaque> {
    Err(Opaque)
}

fn main() {}
