//! `crate = "..."`: for a project that knows this crate under another name,
//! e.g. with `sv = { package = "supervised", version = "..." }` in
//! Cargo.toml. Here the rename is made with `extern crate`.
//!
//! `cargo run --example renamed_crate` (ends by itself at once).

extern crate supervised as sv;

use sv::{spawn_all, Context};

/// Runs once and completes.
#[sv::supervised(crate = "sv", name = "renamed")]
async fn once(ctx: Context, greeting: String) {
    println!("{} says {greeting}", ctx.name());
}

#[tokio::main]
async fn main() {
    let group = spawn_all!(once("hello".to_owned()));
    for (name, exit) in group.join().await {
        println!("{name}: {exit}");
        assert!(exit.is_completed());
    }
}
