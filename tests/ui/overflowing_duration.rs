use supervised::supervised;

#[supervised(reset_after = "18446744073709551616s")]
async fn too_many_seconds() {}

#[supervised(reset_after = "999999999999999999d")]
async fn too_many_days() {}

fn main() {}
