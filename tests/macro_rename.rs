//! `crate = "..."` for a dependency known under another name.
#![allow(unused_imports)]

extern crate supervised as sv;

// Whatever `supervised` means here, the attribute does not look at it.
use std as supervised;

#[sv::supervised(crate = "sv", backoff_initial = "10ms", backoff_max = "10ms")]
async fn renamed(ctx: sv::Context) -> Result<(), String> {
    if ctx.attempt() < 2 {
        return Err("first attempt fails".into());
    }
    Ok(())
}

#[sv::supervised(crate = "::sv")]
async fn absolute() {}

#[tokio::test(start_paused = true)]
async fn a_renamed_crate_path_is_used_everywhere() {
    let registry = sv::Registry::new();
    let group = sv::spawn_all!(
        renamed().with_spec(|s| s.registry(&registry)),
        absolute().with_spec(|s| s.registry(&registry)),
    );
    let exits = group.join().await;
    assert!(exits.iter().all(|(_, e)| e.is_completed()), "{exits:?}");
    assert_eq!(registry.status("renamed").unwrap().restarts, 1);
}
