//! Supervision structure: lifecycle events, members added, removed and
//! restarted at run time, restart strategies, ordered start and stop, group
//! intensity and groups as members of groups. Everything runs on tokio's
//! paused clock, so every instant asserted is exact.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervised_core::{
    Context, Event, EventKind, Exit, FailureKind, Group, Registry, Spec, Strategy, Task, TaskState,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{sleep, Instant};

mod support;

use support::{constant, settle, Rng};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Events as `(offset from start, task, attempt, kind)`, stamped on the
/// paused clock when received (the clock does not move while tasks run).
type Log = Arc<Mutex<Vec<(Duration, String, u32, String)>>>;

fn record(registry: &Registry) -> (Log, Instant) {
    let start = Instant::now();
    let log: Log = Arc::default();
    let mut events = registry.subscribe();
    let sink = log.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => sink.lock().unwrap().push((
                    start.elapsed(),
                    event.task.clone(),
                    event.attempt,
                    describe(&event),
                )),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            }
        }
    });
    (log, start)
}

fn describe(event: &Event) -> String {
    match &event.kind {
        EventKind::Started => "started".into(),
        EventKind::Failed(f) => format!("failed:{}", f.message),
        EventKind::BackingOff { delay } => format!("backing_off:{}ms", delay.as_millis()),
        EventKind::Restarting { delay, cause } => {
            format!("restarting:{}ms:{cause}", delay.as_millis())
        }
        EventKind::Stopped(exit) => format!("stopped:{exit}"),
        other => format!("{other:?}"),
    }
}

fn of(log: &Log, task: &str) -> Vec<(Duration, u32, String)> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|e| e.1 == task)
        .map(|e| (e.0, e.2, e.3.clone()))
        .collect()
}

/// A member that beats every second until cancelled.
fn steady(registry: &Registry, name: &str) -> Task {
    Task::new(
        Spec::new(name)
            .registry(registry)
            .backoff(constant(secs(1))),
        |ctx: Context| async move {
            while !ctx.is_cancelled() {
                ctx.heartbeat();
                tokio::select! {
                    _ = ctx.cancelled() => {}
                    _ = sleep(secs(1)) => {}
                }
            }
        },
    )
}

/// A member that beats, and panics at `at` after its first start (attempt 1
/// only).
fn fails_once_at(registry: &Registry, name: &str, at: Duration) -> Task {
    Task::new(
        Spec::new(name)
            .registry(registry)
            .backoff(constant(secs(1))),
        move |ctx: Context| async move {
            ctx.heartbeat();
            if ctx.attempt() == 1 {
                sleep(at).await;
                panic!("boom");
            }
            while !ctx.is_cancelled() {
                ctx.heartbeat();
                tokio::select! {
                    _ = ctx.cancelled() => {}
                    _ = sleep(secs(1)) => {}
                }
            }
        },
    )
}

// Events ------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn events_of_a_task_that_fails_once_then_is_cancelled_come_in_order() {
    let registry = Registry::new();
    let (log, _) = record(&registry);
    let mut group = Group::new();
    group.spawn(fails_once_at(&registry, "job", secs(2)));
    sleep(secs(5)).await;
    let exits = group.shutdown(secs(5)).await;
    assert_eq!(exits, [("job".to_owned(), Exit::Cancelled)]);
    settle().await;
    assert_eq!(
        of(&log, "job"),
        [
            (secs(0), 1, "started".to_owned()),
            (secs(2), 1, "failed:boom".to_owned()),
            (secs(2), 1, "backing_off:1000ms".to_owned()),
            (secs(3), 2, "started".to_owned()),
            (secs(5), 2, "stopped:cancelled".to_owned()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_event_carries_the_failure_and_a_stop_the_exit() {
    let registry = Registry::new();
    let mut events = registry.subscribe();
    let exit = Spec::new("once")
        .registry(&registry)
        .restart(supervised_core::RestartPolicy::Never)
        .run(
            supervised_core::CancellationToken::new(),
            |_ctx: Context| async { Err::<(), _>("bad row") },
        )
        .await;
    assert!(exit.is_failed());
    let kinds: Vec<EventKind> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.kind)
        .collect();
    assert!(matches!(kinds[0], EventKind::Started));
    match &kinds[1] {
        EventKind::Failed(f) => {
            assert_eq!(
                (f.kind, f.message.as_str()),
                (FailureKind::Error, "bad row")
            )
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(&kinds[2], EventKind::Stopped(e) if e.is_failed()));
    assert_eq!(kinds.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_lags_and_never_slows_a_task() {
    let registry = Registry::new();
    let mut events = registry.subscribe();
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let task = Spec::new("churn")
        .registry(&registry)
        .backoff(constant(Duration::ZERO))
        .restart(supervised_core::RestartPolicy::Always)
        .max_restarts(u32::MAX, secs(1));
    let token = supervised_core::CancellationToken::new();
    let handle = task.spawn(token.clone(), move |ctx: Context| {
        let seen = seen.clone();
        async move {
            ctx.heartbeat();
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Nobody reads: 3,000 attempts make 9,000 events, far past the buffer.
    while attempts.load(Ordering::Relaxed) < 3_000 {
        tokio::task::yield_now().await;
    }
    token.cancel();
    handle.await.unwrap();
    match events.recv().await {
        Err(RecvError::Lagged(n)) => assert!(n > 5_000, "lagged by {n}"),
        other => panic!("expected a lag, got {other:?}"),
    }
    // The subscriber goes on with the newest events.
    assert!(events.recv().await.is_ok());
}

// Members at run time ----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn added_members_start_at_once_and_removed_ones_leave_with_their_exit() {
    let registry = Registry::new();
    let group = Group::new();
    let handle = group.handle();
    handle.add(steady(&registry, "a")).unwrap();
    sleep(secs(1)).await;
    handle.add(steady(&registry, "b")).unwrap();
    settle().await;
    assert_eq!(group.names(), ["a", "b"]);
    assert_eq!(registry.status("b").unwrap().state, TaskState::Running);
    assert!(registry.status("b").unwrap().last_tick.is_some());

    let again = handle.add(steady(&registry, "a")).unwrap_err();
    assert!(!again.is_closed());
    assert_eq!(again.name(), "a");
    // An error like any other: `?` into `Box<dyn Error + Send + Sync>`.
    fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    is_error(&again);
    assert_eq!(again.into_task().name(), "a");

    assert_eq!(handle.remove("a", secs(5)).await, Some(Exit::Cancelled));
    assert_eq!(group.names(), ["b"]);
    assert_eq!(registry.status("a").unwrap().state, TaskState::Cancelled);
    assert_eq!(handle.remove("a", secs(5)).await, None);
    assert!(!handle.restart("a"));
    // The removed name can be added again.
    handle.add(steady(&registry, "a")).unwrap();
    settle().await;
    assert_eq!(group.names(), ["b", "a"]);
    let exits = group.shutdown(secs(5)).await;
    assert!(
        exits.iter().all(|(_, e)| *e == Exit::Cancelled),
        "{exits:?}"
    );
}

/// A member that runs for `run` and then returns.
fn finite(registry: &Registry, name: &str, run: Duration) -> Task {
    Task::new(
        Spec::new(name).registry(registry).without_heartbeat(),
        move |_ctx: Context| async move { sleep(run).await },
    )
}

#[tokio::test(start_paused = true)]
async fn join_waits_for_the_last_member_whatever_the_order_they_end_in() {
    let registry = Registry::new();
    let start = Instant::now();
    let mut group = Group::new();
    // The second added ends last; the first ends first and is taken out
    // while `join` waits, so every member after it moves up one place.
    group.spawn(finite(&registry, "a", secs(1)));
    group.spawn(finite(&registry, "b", secs(6)));
    group.spawn(finite(&registry, "c", secs(2)));
    group.spawn(finite(&registry, "d", secs(3)));
    let handle = group.handle();
    let changes = tokio::spawn(async move {
        sleep(ms(1500)).await;
        assert_eq!(handle.remove("a", secs(1)).await, Some(Exit::Completed));
        // And one added meanwhile.
        handle.add(finite(&registry, "e", secs(2))).unwrap();
    });
    let exits = group.join().await;
    assert_eq!(start.elapsed(), secs(6));
    assert_eq!(
        exits,
        [
            ("b".to_owned(), Exit::Completed),
            ("c".to_owned(), Exit::Completed),
            ("d".to_owned(), Exit::Completed),
            ("e".to_owned(), Exit::Completed),
        ]
    );
    changes.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn remove_bounds_a_member_that_ignores_cancellation_by_its_grace() {
    let registry = Registry::new();
    let group = Group::new();
    let handle = group.handle();
    handle
        .add(Task::new(
            Spec::new("deaf").registry(&registry).grace(secs(60)),
            |ctx: Context| async move {
                loop {
                    ctx.heartbeat();
                    sleep(secs(1)).await;
                }
                #[allow(unreachable_code)]
                ()
            },
        ))
        .unwrap();
    settle().await;
    let start = Instant::now();
    assert_eq!(handle.remove("deaf", secs(2)).await, Some(Exit::Cancelled));
    assert_eq!(start.elapsed(), secs(2));
    assert!(group.names().is_empty());
}

#[tokio::test(start_paused = true)]
async fn restart_on_request_starts_the_next_attempt_at_once_and_is_not_a_failure() {
    let registry = Registry::new();
    let (log, _) = record(&registry);
    let group = Group::new();
    let handle = group.handle();
    handle
        .add(Task::new(
            Spec::new("cache")
                .registry(&registry)
                .max_restarts(0, secs(60)),
            |ctx: Context| async move {
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    tokio::select! {
                        _ = ctx.cancelled() => {}
                        _ = sleep(secs(1)) => {}
                    }
                }
            },
        ))
        .unwrap();
    sleep(ms(2500)).await;
    assert!(handle.restart("cache"));
    sleep(secs(1)).await;
    let status = registry.status("cache").unwrap();
    // A restart limit of zero is not hit by restarts on request.
    assert_eq!((status.state, status.restarts), (TaskState::Running, 1));
    assert_eq!(status.failures.panics + status.failures.errors, 0);
    assert!(status.last_failure.is_none());
    assert_eq!(
        of(&log, "cache"),
        [
            (secs(0), 1, "started".to_owned()),
            (ms(2500), 1, "restarting:0ms:requested".to_owned()),
            (ms(2500), 2, "started".to_owned()),
        ]
    );
    drop(group);
}

#[tokio::test(start_paused = true)]
async fn restart_during_a_backoff_cuts_it_short() {
    let registry = Registry::new();
    let group = Group::new();
    let handle = group.handle();
    handle
        .add(Task::new(
            Spec::new("flaky")
                .registry(&registry)
                .backoff(constant(secs(30))),
            |ctx: Context| async move {
                ctx.heartbeat();
                if ctx.attempt() == 1 {
                    panic!("first attempt fails");
                }
                ctx.cancelled().await;
            },
        ))
        .unwrap();
    sleep(secs(1)).await;
    assert_eq!(
        registry.status("flaky").unwrap().state,
        TaskState::BackingOff
    );
    assert!(handle.restart("flaky"));
    settle().await;
    let status = registry.status("flaky").unwrap();
    assert_eq!((status.state, status.attempt), (TaskState::Running, 2));
    drop(group);
}

// Strategies ---------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn one_for_all_restarts_every_member_after_the_failed_ones_backoff() {
    let registry = Registry::new();
    let (log, _) = record(&registry);
    let mut group = Group::new().with_strategy(Strategy::OneForAll);
    group
        .spawn(steady(&registry, "a"))
        .spawn(fails_once_at(&registry, "b", secs(5)))
        .spawn(steady(&registry, "c"));
    sleep(secs(10)).await;
    for name in ["a", "c"] {
        assert_eq!(
            of(&log, name),
            [
                (secs(0), 1, "started".to_owned()),
                (
                    secs(5),
                    1,
                    "restarting:1000ms:member `b` of its group failed".to_owned()
                ),
                (secs(6), 2, "started".to_owned()),
            ],
            "{name}"
        );
        let status = registry.status(name).unwrap();
        assert_eq!((status.restarts, status.failures.panics), (1, 0), "{name}");
    }
    assert_eq!(of(&log, "b")[3], (secs(6), 2, "started".to_owned()));
    assert_eq!(registry.status("b").unwrap().failures.panics, 1);
    drop(group);
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_later_members_only() {
    let registry = Registry::new();
    let (log, _) = record(&registry);
    let mut group = Group::new().with_strategy(Strategy::RestForOne);
    group
        .spawn(steady(&registry, "a"))
        .spawn(fails_once_at(&registry, "b", secs(5)))
        .spawn(steady(&registry, "c"));
    sleep(secs(10)).await;
    assert_eq!(of(&log, "a"), [(secs(0), 1, "started".to_owned())]);
    assert_eq!(registry.status("a").unwrap().restarts, 0);
    assert_eq!(
        of(&log, "c")[1..],
        [
            (
                secs(5),
                1,
                "restarting:1000ms:member `b` of its group failed".to_owned()
            ),
            (secs(6), 2, "started".to_owned()),
        ]
    );
    drop(group);
}

#[tokio::test(start_paused = true)]
async fn a_member_that_completes_or_is_cancelled_restarts_nobody() {
    let registry = Registry::new();
    let mut group = Group::new().with_strategy(Strategy::OneForAll);
    group.spawn(steady(&registry, "a"));
    group.spawn(Task::new(
        Spec::new("done").registry(&registry),
        |ctx: Context| async move {
            ctx.heartbeat();
            sleep(secs(1)).await;
        },
    ));
    let handle = group.handle();
    handle.add(steady(&registry, "b")).unwrap();
    sleep(secs(3)).await;
    handle.remove("b", secs(1)).await;
    sleep(secs(3)).await;
    assert_eq!(registry.status("done").unwrap().state, TaskState::Completed);
    assert_eq!(registry.status("a").unwrap().restarts, 0);
    drop(group);
}

// Intensity and trees ----------------------------------------------------------

/// Fails every attempt after one beat and one second.
fn always_fails(registry: &Registry, name: &str) -> Task {
    Task::new(
        Spec::new(name)
            .registry(registry)
            .backoff(constant(secs(1))),
        |ctx: Context| async move {
            ctx.heartbeat();
            sleep(secs(1)).await;
            Err::<(), _>("still broken")
        },
    )
}

#[tokio::test(start_paused = true)]
async fn more_restarts_than_the_groups_limit_make_it_give_up() {
    let registry = Registry::new();
    let mut group = Group::new().with_max_restarts(2, secs(60));
    group
        .spawn(steady(&registry, "a"))
        .spawn(always_fails(&registry, "b"));
    // b fails at 1 s, 3 s and 5 s: the third failure is one restart too many.
    sleep(ms(4900)).await;
    assert!(group.gave_up().is_none());
    assert!(group.is_healthy() || registry.status("b").unwrap().state == TaskState::BackingOff);
    sleep(ms(200)).await;
    let failure = group.gave_up().expect("the group gave up");
    assert!(
        failure.message.contains("more than 2 restarts") && failure.message.contains("`b`"),
        "{}",
        failure.message
    );
    assert!(!group.is_healthy());
    let exits = group.join().await;
    assert!(
        exits.iter().all(|(_, e)| *e == Exit::Cancelled),
        "{exits:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_group_that_gives_up_is_a_failure_its_parent_restarts() {
    let registry = Registry::new();
    let (log, _) = record(&registry);
    let mut inner = Group::new().with_max_restarts(1, secs(60));
    inner
        .spawn(steady(&registry, "worker"))
        .spawn(always_fails(&registry, "broken"));
    let inner = inner
        .into_task("inner")
        .with_spec(|s| s.registry(&registry).backoff(constant(secs(10))));
    let mut outer = Group::new();
    outer.spawn(inner);
    settle().await;
    let worker = registry.status("worker").unwrap();
    assert_eq!(worker.parent.as_deref(), Some("inner"));
    // broken fails at 1 s and 3 s: the group gives up at 3 s.
    sleep(ms(3500)).await;
    let status = registry.status("inner").unwrap();
    assert_eq!(status.state, TaskState::BackingOff);
    assert!(status
        .last_failure
        .as_ref()
        .is_some_and(|f| f.message.contains("group gave up")));
    assert_eq!(
        registry.status("worker").unwrap().state,
        TaskState::Cancelled
    );
    // The parent's backoff of 10 s, then the whole group again.
    sleep(secs(10)).await;
    let worker = registry.status("worker").unwrap();
    assert_eq!(worker.state, TaskState::Running);
    assert_eq!(worker.parent.as_deref(), Some("inner"));
    let inner_events = of(&log, "inner");
    assert_eq!(inner_events[0], (secs(0), 1, "started".to_owned()));
    assert_eq!(inner_events[3], (secs(13), 2, "started".to_owned()));
    let exits = outer.shutdown(secs(10)).await;
    assert_eq!(exits, [("inner".to_owned(), Exit::Cancelled)]);
    assert_eq!(
        registry.status("worker").unwrap().state,
        TaskState::Cancelled
    );
}

#[tokio::test(start_paused = true)]
async fn nested_groups_show_their_path() {
    let registry = Registry::new();
    let mut leaf = Group::new();
    leaf.spawn(steady(&registry, "shard-1"));
    let mut middle = Group::new();
    middle.spawn(
        leaf.into_task("shards")
            .with_spec(|s| s.registry(&registry)),
    );
    let mut root = Group::new();
    root.spawn(
        middle
            .into_task("storage")
            .with_spec(|s| s.registry(&registry)),
    );
    settle().await;
    assert_eq!(
        registry.status("shard-1").unwrap().parent.as_deref(),
        Some("storage/shards")
    );
    assert_eq!(
        registry.status("shards").unwrap().parent.as_deref(),
        Some("storage")
    );
    assert_eq!(registry.status("storage").unwrap().parent, None);
    assert!(root.is_healthy());
    root.shutdown(secs(10)).await;
    assert_eq!(
        registry.status("shard-1").unwrap().state,
        TaskState::Cancelled
    );
}

// Ordered start and stop ---------------------------------------------------------

/// Beats first after `warmup`, then every second; takes `stop` to stop.
fn slow(registry: &Registry, name: &str, warmup: Duration, stop: Duration) -> Task {
    Task::new(
        Spec::new(name).registry(registry).grace(secs(60)),
        move |ctx: Context| async move {
            sleep(warmup).await;
            while !ctx.is_cancelled() {
                ctx.heartbeat();
                tokio::select! {
                    _ = ctx.cancelled() => {}
                    _ = sleep(secs(1)) => {}
                }
            }
            sleep(stop).await;
        },
    )
}

#[tokio::test(start_paused = true)]
async fn an_ordered_group_starts_each_member_once_the_previous_is_ready_and_stops_in_reverse() {
    let registry = Registry::new();
    let (log, _) = record(&registry);
    let mut group = Group::new().ordered();
    group
        .spawn(slow(&registry, "db", secs(2), secs(3)))
        .spawn(slow(&registry, "cache", ms(500), secs(1)))
        .spawn(slow(&registry, "api", secs(1), secs(2)));
    settle().await;
    assert_eq!(registry.status("cache"), None);
    sleep(secs(10)).await;
    let started: Vec<_> = ["db", "cache", "api"]
        .iter()
        .map(|n| of(&log, n)[0].clone())
        .collect();
    assert_eq!(
        started,
        [
            (secs(0), 1, "started".to_owned()),
            (secs(2), 1, "started".to_owned()),
            (ms(2500), 1, "started".to_owned()),
        ]
    );
    // Shutdown at 10 s: api takes 2 s to stop, cache 1 s, db 3 s.
    let exits = group.shutdown(secs(60)).await;
    assert!(
        exits.iter().all(|(_, e)| *e == Exit::Cancelled),
        "{exits:?}"
    );
    let stopped: Vec<_> = ["api", "cache", "db"]
        .iter()
        .map(|n| of(&log, n).last().unwrap().0)
        .collect();
    assert_eq!(stopped, [secs(12), secs(13), secs(16)]);
}

#[tokio::test(start_paused = true)]
async fn an_ordered_shutdown_keeps_its_grace_as_the_bound() {
    let registry = Registry::new();
    let mut group = Group::new().ordered();
    group
        .spawn(slow(&registry, "db", Duration::ZERO, secs(3)))
        .spawn(slow(&registry, "api", Duration::ZERO, secs(3)));
    settle().await;
    let start = Instant::now();
    let exits = group.shutdown(secs(4)).await;
    assert_eq!(start.elapsed(), secs(4));
    assert_eq!(exits[1], ("api".to_owned(), Exit::Cancelled));
    // db was cancelled at 3 s and aborted at 4 s.
    assert_eq!(exits[0], ("db".to_owned(), Exit::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn a_member_added_to_an_ordered_group_waits_for_the_last_one() {
    let registry = Registry::new();
    let (log, _) = record(&registry);
    let group = Group::new().ordered();
    let handle = group.handle();
    handle
        .add(slow(&registry, "db", secs(2), Duration::ZERO))
        .unwrap();
    handle
        .add(slow(&registry, "api", secs(1), Duration::ZERO))
        .unwrap();
    settle().await;
    assert_eq!(group.names(), ["db", "api"]);
    sleep(secs(5)).await;
    assert_eq!(of(&log, "api")[0].0, secs(2));
    drop(group);
}

#[tokio::test(start_paused = true)]
async fn a_member_not_ready_within_the_start_timeout_fails_the_ordered_group() {
    let registry = Registry::new();
    let mut group = Group::new().ordered().with_start_timeout(secs(10));
    group
        .spawn(slow(&registry, "db", secs(3600), Duration::ZERO))
        .spawn(slow(&registry, "api", Duration::ZERO, Duration::ZERO));
    sleep(ms(9_999)).await;
    assert!(group.gave_up().is_none());
    sleep(ms(2)).await;
    let failure = group.gave_up().expect("gave up");
    assert!(
        failure.message.contains("`db` was not ready within 10.0 s"),
        "{}",
        failure.message
    );
    let exits = group.join().await;
    assert_eq!(
        exits,
        [
            ("db".to_owned(), Exit::Cancelled),
            ("api".to_owned(), Exit::Cancelled)
        ]
    );
    assert_eq!(registry.status("api"), None, "api never started");
}

#[tokio::test(start_paused = true)]
async fn heartbeat_less_and_completed_members_count_as_ready() {
    let registry = Registry::new();
    let (log, _) = record(&registry);
    let mut group = Group::new().ordered();
    group.spawn(Task::new(
        Spec::new("migrate").registry(&registry),
        |_ctx: Context| async move { sleep(secs(4)).await },
    ));
    group.spawn(Task::new(
        Spec::new("listener")
            .registry(&registry)
            .without_heartbeat(),
        |ctx: Context| async move { ctx.cancelled().await },
    ));
    group.spawn(steady(&registry, "api"));
    sleep(secs(5)).await;
    assert_eq!(of(&log, "listener")[0].0, secs(4));
    assert_eq!(of(&log, "api")[0].0, secs(4));
    drop(group);
}

// Soak ----------------------------------------------------------------------------

/// Fails with a chance of `per_mille` at each of its ticks.
fn flaky(registry: &Registry, name: &str, per_mille: u64, seed: u64) -> Task {
    Task::new(
        Spec::new(name)
            .registry(registry)
            .backoff(constant(ms(300))),
        move |ctx: Context| async move {
            let mut rng = Rng(seed ^ u64::from(ctx.attempt()));
            loop {
                ctx.heartbeat();
                if rng.below(1000) < per_mille {
                    return Err("injected");
                }
                tokio::select! {
                    _ = ctx.cancelled() => return Ok(()),
                    _ = sleep(ms(100)) => {}
                }
            }
        },
    )
}

#[tokio::test(start_paused = true)]
async fn members_added_removed_and_restarted_while_others_fail() {
    for strategy in [
        Strategy::OneForOne,
        Strategy::OneForAll,
        Strategy::RestForOne,
    ] {
        let registry = Registry::new();
        let (log, _) = record(&registry);
        let group = Group::new().with_strategy(strategy);
        let handle = group.handle();
        let mut rng = Rng(7);
        let mut members: Vec<String> = Vec::new();
        let mut next = 0u32;
        let mut removed = 0;
        for _round in 0..300 {
            match rng.below(10) {
                0..=3 => {
                    let name = format!("m{next}");
                    next += 1;
                    handle
                        .add(flaky(&registry, &name, rng.below(30), rng.next()))
                        .unwrap();
                    members.push(name);
                }
                4..=5 if !members.is_empty() => {
                    let name = members.remove(rng.below(members.len() as u64) as usize);
                    let exit = handle.remove(&name, secs(1)).await;
                    assert!(
                        matches!(exit, Some(Exit::Cancelled | Exit::Completed)),
                        "{name}: {exit:?}"
                    );
                    assert!(registry.status(&name).unwrap().state.is_final());
                    removed += 1;
                }
                6 if !members.is_empty() => {
                    let name = &members[rng.below(members.len() as u64) as usize];
                    assert!(handle.restart(name), "{name}");
                }
                _ => {}
            }
            sleep(ms(rng.below(200))).await;
            assert_eq!(group.names(), members, "{strategy:?}");
        }
        assert!(removed > 20, "{removed}");
        let exits = group.shutdown(secs(5)).await;
        assert_eq!(exits.len(), members.len());
        assert!(
            exits.iter().all(|(_, e)| *e == Exit::Cancelled),
            "{exits:?}"
        );
        settle().await;
        // Every task that ever started ended, once, with its last attempt.
        let mut started = std::collections::HashMap::<String, u32>::new();
        let mut stopped = std::collections::HashMap::<String, u32>::new();
        for (_, task, attempt, kind) in log.lock().unwrap().iter() {
            if kind == "started" {
                started.insert(task.clone(), *attempt);
            } else if kind.starts_with("stopped") {
                assert!(stopped.insert(task.clone(), *attempt).is_none(), "{task}");
            }
        }
        assert_eq!(started, stopped, "{strategy:?}");
        for status in registry.tasks() {
            assert!(status.state.is_final(), "{status:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_ordered_group_task_starts_its_members_from_the_first_again_in_its_next_run() {
    let registry = Registry::new();
    let (log, _) = record(&registry);
    // Not ready within the start timeout the first time it runs, at once
    // the next time.
    let runs = Arc::new(AtomicUsize::new(0));
    let late = {
        let runs = runs.clone();
        Task::new(
            Spec::new("late").registry(&registry),
            move |ctx: Context| {
                let first = runs.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        tokio::select! {
                            _ = ctx.cancelled() => return,
                            _ = sleep(secs(3600)) => {}
                        }
                    }
                    ctx.heartbeat();
                    ctx.cancelled().await;
                }
            },
        )
    };
    let mut inner = Group::new().ordered().with_start_timeout(secs(10));
    inner
        .spawn(slow(&registry, "db", secs(2), Duration::ZERO))
        .spawn(late)
        .spawn(slow(&registry, "api", Duration::ZERO, Duration::ZERO));
    let inner = inner
        .into_task("stack")
        .with_spec(|s| s.registry(&registry).backoff(constant(secs(5))));
    let mut outer = Group::new();
    outer.spawn(inner);
    // db is ready at 2 s; late is not ready by 12 s: the group gives up and
    // its task backs off 5 s. The next run starts db first again (at 17 s),
    // then late once db is ready (19 s), then api at once.
    sleep(secs(30)).await;
    let starts = |name: &str| -> Vec<Duration> {
        of(&log, name)
            .into_iter()
            .filter(|e| e.2 == "started")
            .map(|e| e.0)
            .collect()
    };
    assert_eq!(starts("db"), [secs(0), secs(17)]);
    assert_eq!(starts("late"), [secs(2), secs(19)]);
    assert_eq!(starts("api"), [secs(19)]);
    assert_eq!(registry.status("api").unwrap().state, TaskState::Running);
    let exits = outer.shutdown(secs(10)).await;
    assert_eq!(exits, [("stack".to_owned(), Exit::Cancelled)]);
}

// Found in review ------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_member_a_group_task_adopts_is_judged_on_its_health() {
    let registry = Registry::new();
    let mut inner = Group::new();
    // Never beats: stale after 1 s.
    inner.spawn(Task::new(
        Spec::new("silent").registry(&registry).stale_after(secs(1)),
        |ctx: Context| async move { ctx.cancelled().await },
    ));
    let handle = inner.handle();
    let inner = inner
        .into_task("stack")
        .with_spec(|s| s.registry(&registry));
    let mut outer = Group::new();
    outer.spawn(inner);
    sleep(secs(5)).await;
    assert!(!registry.status("silent").unwrap().healthy);
    assert!(!handle.is_healthy(), "a stale member is not healthy");
    // Adopted, not lost: the group still stops it.
    let exits = outer.shutdown(secs(10)).await;
    assert_eq!(exits, [("stack".to_owned(), Exit::Cancelled)]);
    assert_eq!(
        registry.status("silent").unwrap().state,
        TaskState::Cancelled
    );
}

#[test]
fn join_returns_when_the_runtime_that_ran_the_members_is_gone() {
    let registry = Registry::new();
    let members = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let mut group = Group::new();
    {
        let _enter = members.enter();
        group.spawn(steady(&registry, "orphan"));
    }
    members.block_on(settle());
    assert_eq!(registry.status("orphan").unwrap().state, TaskState::Running);
    // Shutting the runtime down drops the member's supervisor unfinished.
    drop(members);
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let exits = other
        .block_on(async { tokio::time::timeout(secs(60), group.join()).await })
        .expect("join returned");
    assert_eq!(exits, [("orphan".to_owned(), Exit::Cancelled)]);
    assert_eq!(
        registry.status("orphan").unwrap().state,
        TaskState::Cancelled
    );
}

#[tokio::test(start_paused = true)]
async fn a_member_that_was_ready_does_not_hold_up_one_added_while_it_restarts() {
    let registry = Registry::new();
    let group = Group::new().ordered().with_start_timeout(secs(5));
    let handle = group.handle();
    handle
        .add(Task::new(
            Spec::new("db")
                .registry(&registry)
                .backoff(constant(secs(60))),
            |ctx: Context| async move {
                ctx.heartbeat();
                if ctx.attempt() == 1 {
                    sleep(secs(1)).await;
                    panic!("connection lost");
                }
                ctx.cancelled().await;
            },
        ))
        .unwrap();
    // db beat at 0 s and is backing off from 1 s to 61 s.
    sleep(secs(30)).await;
    handle.add(steady(&registry, "api")).unwrap();
    settle().await;
    assert_eq!(registry.status("api").unwrap().state, TaskState::Running);
    sleep(secs(10)).await;
    assert!(group.gave_up().is_none());
    drop(group);
}

#[tokio::test(start_paused = true)]
async fn removing_the_member_another_waits_for_starts_the_next() {
    let registry = Registry::new();
    let group = Group::new().ordered();
    let handle = group.handle();
    handle
        .add(Task::new(
            Spec::new("never-ready").registry(&registry),
            |ctx: Context| async move { ctx.cancelled().await },
        ))
        .unwrap();
    handle.add(steady(&registry, "next")).unwrap();
    sleep(secs(1)).await;
    assert_eq!(registry.status("next"), None);
    assert_eq!(
        handle.remove("never-ready", secs(1)).await,
        Some(Exit::Cancelled)
    );
    settle().await;
    assert_eq!(registry.status("next").unwrap().state, TaskState::Running);
    assert!(group.gave_up().is_none());
    drop(group);
}

#[tokio::test(start_paused = true)]
async fn durations_too_long_for_an_instant_do_not_panic() {
    let registry = Registry::new();
    let group = Group::new().ordered().with_start_timeout(Duration::MAX);
    let handle = group.handle();
    handle.add(steady(&registry, "a")).unwrap();
    handle.add(steady(&registry, "b")).unwrap();
    handle
        .add(Task::new(
            Spec::new("keys")
                .registry(&registry)
                .quarantine(Duration::MAX, Duration::MAX),
            |ctx: Context| async move {
                ctx.heartbeat();
                let _ = ctx.isolate("k", async { Err::<(), _>("bad") }).await;
                ctx.cancelled().await;
            },
        ))
        .unwrap();
    sleep(secs(1)).await;
    assert_eq!(registry.status("keys").unwrap().quarantined.len(), 1);
    assert_eq!(
        handle.remove("a", Duration::MAX).await,
        Some(Exit::Cancelled)
    );
    let exits = group.shutdown(Duration::MAX).await;
    assert!(
        exits.iter().all(|(_, e)| *e == Exit::Cancelled),
        "{exits:?}"
    );
}
