use supervised::supervised;

#[supervised]
const async fn constant() {}

#[supervised]
async unsafe fn not_safe() {}

#[supervised]
async extern "C" fn foreign() {}

#[supervised]
async fn bounded(value: u8)
where
    u8: Copy,
{
    let _ = value;
}

fn main() {}
