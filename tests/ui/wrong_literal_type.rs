use supervised::supervised;

#[supervised(name = 5)]
async fn int_name() {}

#[supervised(backoff_max = 30)]
async fn int_duration() {}

#[supervised(max_restarts = "5", within = "1m")]
async fn string_count() {}

#[supervised(max_restarts = -1, within = "1m")]
async fn negative_count() {}

#[supervised(heartbeat = true)]
async fn bool_word() {}

fn main() {}
