//! Finished tasks leave the registry after its retention, measured on the
//! registry's clock; heartbeat-only names stay; by-name heartbeats through
//! the per-thread cache follow removals.

use std::time::Duration;

use supervised_core::{
    CancellationToken, Context, Exit, ManualClock, Registry, Spec, DEFAULT_RETAIN_FINISHED,
};

const MINUTE: Duration = Duration::from_secs(60);

async fn finished(registry: &Registry, name: &str) {
    let exit = Spec::new(name)
        .registry(registry)
        .run(CancellationToken::new(), |ctx: Context| async move {
            ctx.heartbeat();
        })
        .await;
    assert_eq!(exit, Exit::Completed);
}

#[tokio::test]
async fn finished_tasks_are_evicted_after_the_retention_and_nothing_else_is() {
    let clock = ManualClock::new();
    let registry = Registry::with_clock(clock.clone());
    assert_eq!(registry.retain_finished(), DEFAULT_RETAIN_FINISHED);
    registry.set_retain_finished(5 * MINUTE);

    finished(&registry, "tenant-a").await;
    registry.heartbeat("only-beats");
    // A live task: never evicted.
    let token = CancellationToken::new();
    let live =
        Spec::new("live")
            .registry(&registry)
            .spawn(token.clone(), |ctx: Context| async move {
                ctx.heartbeat();
                ctx.cancelled().await;
            });
    tokio::task::yield_now().await;

    clock.advance(5 * MINUTE - Duration::from_nanos(1));
    assert!(registry.status("tenant-a").is_some());
    let names = |r: &Registry| -> Vec<String> { r.tasks().into_iter().map(|t| t.name).collect() };
    assert_eq!(names(&registry), ["live", "tenant-a"]);

    // At the retention: gone from every view at once.
    clock.advance(Duration::from_nanos(1));
    assert_eq!(registry.status("tenant-a"), None);
    assert_eq!(registry.last_tick("tenant-a"), None);
    assert_eq!(names(&registry), ["live"]);
    assert!(!registry.snapshot().contains_key("tenant-a"));
    assert!(!registry.last_beats().contains_key("tenant-a"));
    assert!(!registry.is_healthy(&["tenant-a"], MINUTE).0);
    // Heartbeat-only names are kept (Go semantics); `forget` removes them.
    assert!(registry.snapshot().contains_key("only-beats"));
    assert!(registry.forget("only-beats"));
    assert!(!registry.snapshot().contains_key("only-beats"));

    // The name is free again.
    finished(&registry, "tenant-a").await;
    assert!(registry.status("tenant-a").is_some());

    token.cancel();
    assert_eq!(live.await.unwrap(), Exit::Cancelled);
    clock.advance(5 * MINUTE);
    assert!(registry.tasks().is_empty());
}

#[test]
fn by_name_heartbeats_follow_forget_and_a_new_registry() {
    let clock = ManualClock::new();
    let registry = Registry::with_clock(clock.clone());
    // A literal: the per-thread cache recognises it by address.
    registry.heartbeat("cached");
    clock.advance(MINUTE);
    registry.heartbeat("cached");
    assert_eq!(registry.last_tick("cached"), Some(clock.now()));
    // Forgotten: the next beat makes a new entry, which views show.
    assert!(registry.forget("cached"));
    clock.advance(MINUTE);
    registry.heartbeat("cached");
    assert_eq!(registry.last_tick("cached"), Some(clock.now()));
    assert_eq!(registry.snapshot().len(), 1);
    // Another registry: the cached entry of the first one is not used.
    let other = Registry::with_clock(clock.clone());
    other.heartbeat("cached");
    assert_eq!(other.last_tick("cached"), Some(clock.now()));
    // Strings built at run time, reusing one address with other text.
    for i in 0..100 {
        let name = format!("tenant-{i:03}");
        registry.heartbeat(&name);
    }
    let names = registry.snapshot();
    assert_eq!(names.len(), 101);
    assert!((0..100).all(|i| names.contains_key(&format!("tenant-{i:03}"))));
}

#[tokio::test]
async fn a_by_name_beat_after_the_retention_takes_the_name_over() {
    let clock = ManualClock::new();
    let registry = Registry::with_clock(clock.clone());
    registry.set_retain_finished(MINUTE);
    finished(&registry, "legacy").await;
    // Beaten by name while the task is kept: the task's entry takes it.
    registry.heartbeat("legacy");
    assert!(registry.status("legacy").is_some());
    // Past the retention, with no view or registration to sweep: the beat
    // makes a heartbeat-only entry that every read sees.
    clock.advance(2 * MINUTE);
    registry.heartbeat("legacy");
    assert_eq!(registry.last_tick("legacy"), Some(clock.now()));
    assert!(registry.is_healthy(&["legacy"], MINUTE).0);
    assert_eq!(registry.status("legacy"), None);
    clock.advance(MINUTE);
    registry.heartbeat("legacy");
    assert_eq!(registry.last_tick("legacy"), Some(clock.now()));
}
