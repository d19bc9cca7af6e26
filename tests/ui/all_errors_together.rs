use supervised::supervised;

#[supervised(nmae = "x", backoff_max = "5q", restart = "maybe", within = "1m")]
fn everything_wrong<T>(value: T, (a, b): (u8, u8)) -> u32 {
    let _ = (value, a, b);
    1
}

fn main() {}
