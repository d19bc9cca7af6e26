use supervised::supervised;

const LIMIT: u32 = 5;

#[supervised(max_restarts = 1.5, within = "1m")]
async fn fraction() {}

#[supervised(max_restarts = 4294967296, within = "1m")]
async fn too_many() {}

#[supervised(max_restarts = LIMIT, within = "1m")]
async fn constant() {}

fn main() {}
