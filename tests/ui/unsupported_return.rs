use supervised::supervised;

#[supervised]
async fn number() -> u32 {
    1
}

#[supervised]
async fn ok_value() -> Result<u32, String> {
    Ok(1)
}

fn main() {}
