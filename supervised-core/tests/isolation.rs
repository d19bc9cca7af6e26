//! Isolation inside a task: one key's failure costs that key alone. All on
//! tokio's paused clock, so the quarantine steps asserted are exact.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervised_core::{
    CancellationToken, Context, FailureKind, Isolated, Registry, Spec, Task, TaskState,
};
use tokio::time::{sleep, Instant};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// When each tenant's work actually ran, as offsets from the start.
type Runs = Arc<Mutex<BTreeMap<u32, Vec<Duration>>>>;

/// A task that serves tenants 0..10 every second; `poison` fails (by
/// `fail`) whenever its work runs, until `heals_after` runs if given.
fn tenants(
    registry: &Registry,
    runs: Runs,
    start: Instant,
    poison: u32,
    fail: fn(u32) -> Result<(), String>,
) -> Task {
    Task::new(
        Spec::new("scheduler").registry(registry),
        move |ctx: Context| {
            let runs = runs.clone();
            async move {
                let mut every = tokio::time::interval(secs(1));
                loop {
                    every.tick().await;
                    ctx.heartbeat();
                    for tenant in 0..10u32 {
                        let runs = runs.clone();
                        let work = async move {
                            runs.lock()
                                .unwrap()
                                .entry(tenant)
                                .or_default()
                                .push(start.elapsed());
                            if tenant == poison {
                                fail(tenant)
                            } else {
                                Ok(())
                            }
                        };
                        let _ = ctx.isolate(format!("tenant-{tenant}"), work).await;
                    }
                }
                #[allow(unreachable_code)]
                ()
            }
        },
    )
}

fn panics(tenant: u32) -> Result<(), String> {
    panic!("tenant {tenant}: bad row")
}

fn errs(tenant: u32) -> Result<(), String> {
    Err(format!("tenant {tenant}: bad row"))
}

fn at(offsets: &[u64]) -> Vec<Duration> {
    offsets.iter().map(|s| secs(*s)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_poison_key_among_ten_is_quarantined_with_its_own_backoff() {
    let registry = Registry::new();
    let runs: Runs = Arc::default();
    let start = Instant::now();
    let token = CancellationToken::new();
    let handle = tenants(&registry, runs.clone(), start, 3, panics).spawn(token.clone());
    sleep(Duration::from_millis(40_500)).await;

    let runs = runs.lock().unwrap().clone();
    // Quarantines of 1, 2, 4, 8 and 16 s after each failure: it runs at
    // these instants only.
    assert_eq!(runs[&3], at(&[0, 1, 3, 7, 15, 31]));
    // The nine others are served on every tick.
    for tenant in (0..10).filter(|t| *t != 3) {
        assert_eq!(runs[&tenant], (0..=40).map(secs).collect::<Vec<_>>());
    }
    let status = registry.status("scheduler").unwrap();
    assert_eq!(
        (status.state, status.attempt, status.restarts),
        (TaskState::Running, 1, 0)
    );
    assert!(status.healthy);
    assert_eq!(status.failures.panics, 0);
    assert_eq!((status.isolated.panics, status.isolated.errors), (6, 0));
    assert_eq!(status.quarantined.len(), 1);
    let q = &status.quarantined[0];
    assert_eq!((q.key.as_str(), q.failures), ("tenant-3", 6));
    assert_eq!(q.last_failure.kind, FailureKind::Panic);
    assert_eq!(q.last_failure.message, "tenant 3: bad row");
    assert!(q
        .last_failure
        .location
        .as_deref()
        .is_some_and(|l| l.contains("isolation.rs")));
    token.cancel();
    handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_err_output_is_returned_and_quarantines_the_key_the_same_way() {
    let registry = Registry::new();
    let runs: Runs = Arc::default();
    let start = Instant::now();
    let token = CancellationToken::new();
    let handle = tenants(&registry, runs.clone(), start, 5, errs).spawn(token.clone());
    sleep(Duration::from_millis(15_500)).await;
    assert_eq!(runs.lock().unwrap()[&5], at(&[0, 1, 3, 7, 15]));
    let status = registry.status("scheduler").unwrap();
    assert_eq!((status.isolated.panics, status.isolated.errors), (0, 5));
    assert_eq!(status.quarantined[0].last_failure.kind, FailureKind::Error);
    assert_eq!(status.restarts, 0);
    token.cancel();
    handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn isolate_returns_what_happened() {
    let registry = Registry::new();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let task = Task::new(
        Spec::new("shapes").registry(&registry),
        move |ctx: Context| {
            let log = log.clone();
            async move {
                let ok = ctx.isolate("a", async { Ok::<u32, String>(7) }).await;
                log.lock().unwrap().push(format!("{ok:?}"));
                let err = ctx.isolate("b", async { Err::<u32, _>("nope") }).await;
                log.lock().unwrap().push(format!("{err:?}"));
                let held = ctx.isolate("b", async { Ok::<u32, &str>(1) }).await;
                log.lock().unwrap().push(match held {
                    Err(Isolated::Quarantined { failures, .. }) => format!("held {failures}"),
                    other => format!("{other:?}"),
                });
                let panicked = ctx.isolate("c", async { panic!("c broke") }).await;
                log.lock().unwrap().push(match panicked {
                    Err(Isolated::Panicked(f)) => format!("panicked: {}", f.message),
                    Ok(()) => "ok".into(),
                    Err(other) => format!("{other:?}"),
                });
                ctx.isolate("plain", async {}).await.unwrap();
                ctx.isolate("opt", async { None::<u8> }).await.unwrap();
            }
        },
    );
    let exit = task.run(CancellationToken::new()).await;
    assert!(exit.is_completed());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "Ok(Ok(7))",
            "Ok(Err(\"nope\"))",
            "held 1",
            "panicked: c broke",
        ]
    );
    let status = registry.status("shapes").unwrap();
    let keys: Vec<&str> = status.quarantined.iter().map(|q| q.key.as_str()).collect();
    assert_eq!(keys, ["b", "c"]);
    assert_eq!(status.failures.panics + status.failures.errors, 0);
}

#[tokio::test(start_paused = true)]
async fn a_key_that_heals_leaves_quarantine_and_no_state() {
    let registry = Registry::new();
    let tries = Arc::new(Mutex::new(Vec::new()));
    let log = tries.clone();
    let start = Instant::now();
    let token = CancellationToken::new();
    let handle =
        Spec::new("healing")
            .registry(&registry)
            .spawn(token.clone(), move |ctx: Context| {
                let log = log.clone();
                async move {
                    let mut n = 0u32;
                    loop {
                        ctx.heartbeat();
                        let work = async {
                            n += 1;
                            log.lock().unwrap().push(start.elapsed());
                            if n <= 2 {
                                Err("not yet")
                            } else {
                                Ok(())
                            }
                        };
                        let _ = ctx.isolate("tenant-9", work).await;
                        sleep(Duration::from_millis(500)).await;
                    }
                    #[allow(unreachable_code)]
                    ()
                }
            });
    sleep(secs(2)).await;
    assert!(!registry.status("healing").unwrap().quarantined.is_empty());
    sleep(secs(2)).await;
    // Failed at 0 s (1 s quarantine), at 1 s (2 s), healed at 3 s.
    assert_eq!(tries.lock().unwrap()[..3], at(&[0, 1, 3]));
    let status = registry.status("healing").unwrap();
    assert!(status.quarantined.is_empty());
    assert_eq!(status.isolated.errors, 2);
    token.cancel();
    handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_quarantine_is_bounded_and_outlives_a_restart() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let held: Arc<Mutex<Vec<bool>>> = Arc::default();
    let log = held.clone();
    let handle = Spec::new("bounded")
        .registry(&registry)
        .max_quarantined(3)
        .quarantine(secs(60), secs(600))
        .spawn(token.clone(), move |ctx: Context| {
            let log = log.clone();
            async move {
                ctx.heartbeat();
                if ctx.attempt() == 1 {
                    for key in ["k1", "k2", "k3", "k4", "k5"] {
                        let _ = ctx.isolate(key, async { Err::<(), _>("bad") }).await;
                    }
                    panic!("the task's own failure, outside any key");
                }
                // The next attempt finds k5 still held, and k1 (evicted) not.
                for key in ["k5", "k1"] {
                    let r = ctx.isolate(key, async { Ok::<(), &str>(()) }).await;
                    log.lock()
                        .unwrap()
                        .push(matches!(r, Err(ref e) if e.is_quarantined()));
                }
                ctx.cancelled().await;
            }
        });
    sleep(secs(2)).await;
    let status = registry.status("bounded").unwrap();
    assert_eq!((status.attempt, status.restarts), (2, 1));
    assert_eq!(*held.lock().unwrap(), [true, false]);
    let keys: Vec<&str> = status.quarantined.iter().map(|q| q.key.as_str()).collect();
    assert_eq!(keys, ["k3", "k4", "k5"]);
    assert!(status.quarantined.iter().all(|q| q.failures == 1));
    assert_eq!((status.isolated.errors, status.isolated.evicted), (5, 2));
    token.cancel();
    handle.await.unwrap();
}
