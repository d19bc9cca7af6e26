//! The liveness registry: the Go `IsHealthy` semantics and their edge cases,
//! clocks, names, and concurrent use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use supervised_core::{CancellationToken, Context, ManualClock, Registry, Spec, TaskState};

fn manual() -> (ManualClock, Registry) {
    let clock = ManualClock::new();
    let registry = Registry::with_clock(clock.clone());
    (clock, registry)
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn age_equal_to_the_threshold_is_healthy_and_one_nanosecond_more_is_stale() {
    let (clock, registry) = manual();
    registry.heartbeat("a");
    clock.advance(MINUTE);
    assert_eq!(registry.is_healthy(&["a"], MINUTE), (true, vec![]));
    clock.advance(Duration::from_nanos(1));
    assert_eq!(
        registry.is_healthy(&["a"], MINUTE),
        (false, vec!["a".into()])
    );
}

#[test]
fn stale_names_keep_the_input_order_and_duplicates() {
    let (clock, registry) = manual();
    registry.heartbeat("old-1");
    registry.heartbeat("old-2");
    clock.advance(2 * MINUTE);
    registry.heartbeat("fresh");
    let (healthy, stale) =
        registry.is_healthy(&["old-2", "fresh", "unknown", "old-1", "old-2"], MINUTE);
    assert!(!healthy);
    assert_eq!(stale, ["old-2", "unknown", "old-1", "old-2"]);
}

/// More names than one batch of lookups holds: every stale or unknown name
/// is found, in the order given, wherever its batch and shard.
#[test]
fn stale_names_keep_the_input_order_across_many_names() {
    let (clock, registry) = manual();
    let names: Vec<String> = (0..10_000).map(|i| format!("tenant-{i:05}")).collect();
    for name in &names {
        registry.heartbeat(name);
    }
    clock.advance(2 * MINUTE);
    for (i, name) in names.iter().enumerate() {
        if i % 7 != 3 {
            registry.heartbeat(name);
        }
    }
    let mut asked: Vec<&str> = names.iter().map(String::as_str).collect();
    asked.insert(5_000, "unknown-in-the-middle");
    asked.push("tenant-00003");
    let (healthy, stale) = registry.is_healthy(&asked, MINUTE);
    let expected: Vec<&str> = asked
        .iter()
        .copied()
        .filter(|name| {
            name.strip_prefix("tenant-")
                .is_none_or(|i| i.parse::<usize>().unwrap() % 7 == 3)
        })
        .collect();
    assert!(!healthy);
    assert_eq!(expected.len(), 10_000 / 7 + 1 + 1 + 1);
    assert_eq!(stale, expected);
}

#[test]
fn unknown_and_empty_inputs() {
    let (_clock, registry) = manual();
    assert_eq!(registry.is_healthy(&[], MINUTE), (true, vec![]));
    assert_eq!(
        registry.is_healthy(&["never"], Duration::MAX),
        (false, vec!["never".into()])
    );
    assert_eq!(registry.last_tick("never"), None);
    assert_eq!(registry.status("never"), None);
    assert!(registry.snapshot().is_empty());
}

#[test]
fn a_zero_threshold_accepts_only_a_beat_at_this_very_instant() {
    let (clock, registry) = manual();
    registry.heartbeat("now");
    assert_eq!(
        registry.is_healthy(&["now"], Duration::ZERO),
        (true, vec![])
    );
    clock.advance(Duration::from_nanos(1));
    assert!(!registry.is_healthy(&["now"], Duration::ZERO).0);
}

#[test]
fn wall_clock_jumps_change_displayed_times_but_not_ages() {
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = ManualClock::starting_at(start);
    let registry = Registry::with_clock(clock.clone());
    registry.heartbeat("a");
    assert_eq!(registry.last_tick("a"), Some(start));
    // The wall clock is set back a day, then forward a year.
    clock.set_wall(start - Duration::from_secs(86_400));
    assert_eq!(registry.is_healthy(&["a"], MINUTE), (true, vec![]));
    clock.set_wall(start + Duration::from_secs(365 * 86_400));
    assert_eq!(registry.is_healthy(&["a"], MINUTE), (true, vec![]));
    // The by-name heartbeat's own wall reading is what it reported.
    assert_eq!(registry.last_tick("a"), Some(start));
    clock.advance(MINUTE + Duration::from_secs(1));
    assert!(!registry.is_healthy(&["a"], MINUTE).0);
}

#[test]
fn snapshot_lists_every_name_that_has_beaten() {
    let (clock, registry) = manual();
    registry.heartbeat("b");
    clock.advance(Duration::from_secs(1));
    registry.heartbeat("a");
    let snap = registry.snapshot();
    assert_eq!(snap.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(
        snap["a"].duration_since(snap["b"]).unwrap(),
        Duration::from_secs(1)
    );
}

#[test]
fn heartbeat_only_names_are_not_tasks() {
    let (_clock, registry) = manual();
    registry.heartbeat("legacy");
    assert!(registry.tasks().is_empty());
    assert_eq!(registry.status("legacy"), None);
    assert!(registry.forget("legacy"));
    assert_eq!(registry.last_tick("legacy"), None);
    assert!(!registry.forget("legacy"));
}

#[tokio::test(start_paused = true)]
async fn a_supervised_task_is_registered_and_by_name_beats_reach_it() {
    let (clock, registry) = manual();
    let token = CancellationToken::new();
    let task = Spec::new("sup")
        .registry(&registry)
        .stale_after(MINUTE)
        .spawn(token.clone(), |ctx: Context| async move {
            ctx.cancelled().await
        });
    tokio::task::yield_now().await;
    let status = registry.status("sup").unwrap();
    assert_eq!(status.state, TaskState::Running);
    assert_eq!(status.stale_after, Some(MINUTE));
    assert!(status.last_tick.is_none(), "it has not beaten: {status:?}");
    assert!(
        !status.stale,
        "not stale before its stale_after: {status:?}"
    );
    assert!(!registry.forget("sup"), "a live task cannot be forgotten");

    // Never beaten: stale once `stale_after` has passed since it started.
    clock.advance(2 * MINUTE);
    let status = registry.status("sup").unwrap();
    assert!(status.stale && !status.healthy, "{status:?}");
    // An old-style by-name heartbeat feeds the same entry.
    registry.heartbeat("sup");
    let status = registry.status("sup").unwrap();
    assert!(!status.stale && status.healthy);
    assert_eq!(status.last_tick, Some(clock.now()));

    token.cancel();
    task.await.unwrap();
    let status = registry.status("sup").unwrap();
    assert_eq!(status.state, TaskState::Cancelled);
    clock.advance(9 * MINUTE);
    assert!(
        !registry.status("sup").unwrap().stale,
        "ended tasks are not stale"
    );
    // Kept for the retention (10 minutes by default), then gone.
    clock.advance(MINUTE);
    assert_eq!(registry.status("sup"), None);
}

#[test]
fn global_free_functions_share_one_registry() {
    supervised_core::heartbeat("registry-test-global");
    assert!(supervised_core::snapshot().contains_key("registry-test-global"));
    assert!(supervised_core::is_healthy(&["registry-test-global"], MINUTE).0);
    assert_eq!(supervised_core::status("registry-test-global"), None);
    assert!(Registry::global().same_as(Registry::global()));
    assert!(!Registry::new().same_as(Registry::global()));
    let _ = supervised_core::tasks();
}

#[test]
fn concurrent_beats_registrations_and_snapshots_lose_nothing() {
    let registry = Registry::new();
    let threads = 4;
    let names_per_thread = 200;
    std::thread::scope(|s| {
        for t in 0..threads {
            let registry = &registry;
            s.spawn(move || {
                for round in 0..20 {
                    for i in 0..names_per_thread {
                        registry.heartbeat(&format!("t{t}-n{i}"));
                    }
                    if round % 5 == 0 {
                        for i in (0..names_per_thread).step_by(7) {
                            registry.forget(&format!("t{t}-n{i}"));
                            registry.heartbeat(&format!("t{t}-n{i}"));
                        }
                    }
                }
            });
        }
        let registry = &registry;
        s.spawn(move || {
            for _ in 0..200 {
                let snap = registry.snapshot();
                for (name, t) in &snap {
                    assert!(name.starts_with('t'));
                    assert!(*t > UNIX_EPOCH);
                }
            }
        });
    });
    let snap = registry.snapshot();
    assert_eq!(snap.len(), threads * names_per_thread);
    let names: Vec<String> = snap.keys().cloned().collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    assert!(registry.is_healthy(&refs, Duration::from_secs(3600)).0);
    let now = SystemTime::now();
    for t in snap.values() {
        assert!(*t <= now);
    }
}
