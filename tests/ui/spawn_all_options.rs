use supervised::{spawn_all, supervised};

#[supervised]
async fn a() {}

#[supervised]
async fn b() {}

async fn start() {
    let _unknown_strategy = spawn_all!(strategy = one_for_some; a, b);
    let _no_window = spawn_all!(max_restarts = 3; a, b);
    let _no_count = spawn_all!(within = "1m"; a, b);
    let _flag_with_value = spawn_all!(ordered = true; a, b);
    let _twice = spawn_all!(ordered, ordered; a, b);
    let _bad_duration = spawn_all!(start_timeout = "1.5s"; a, b);
    let _not_a_count = spawn_all!(max_restarts = "5", within = "1m"; a, b);
    let _after_the_tasks = spawn_all!(a, b, strategy = one_for_all);
    let _options_then_comma = spawn_all!(ordered, a, b);
    let _unknown = spawn_all!(order; a, b);
}

fn main() {}
