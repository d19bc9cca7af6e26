//! The tests of the Go original, ported one by one. Where the original slept in
//! real time, these run on tokio's paused clock and assert exact instants; where
//! it shared one global registry, these use their own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use supervised_core::{
    run_with_recover, CancellationToken, Context, Exit, ManualClock, Registry, Spec,
};
use tokio::time::Instant;

/// Panics; typed `()` so that closures calling it return `()`, not `!`.
fn fail(message: &str) {
    panic!("{message}")
}

/// TestRunWithRecover_CleanReturnDoesNotRestart
#[tokio::test(start_paused = true)]
async fn run_with_recover_clean_return_does_not_restart() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let exit = run_with_recover(
        CancellationToken::new(),
        "go-clean",
        move |_ctx: Context| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
            }
        },
    )
    .await;
    assert_eq!(exit, Exit::Completed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// TestRunWithRecover_PanicRestartsWithBackoff
#[tokio::test(start_paused = true)]
async fn run_with_recover_panic_restarts_with_backoff() {
    let calls = Arc::new(AtomicU32::new(0));
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let token = CancellationToken::new();
    let t0 = Instant::now();
    let (c, s) = (calls.clone(), starts.clone());
    let task = tokio::spawn(run_with_recover(
        token.clone(),
        "go-panic",
        move |ctx: Context| {
            let (c, s) = (c.clone(), s.clone());
            async move {
                s.lock().unwrap().push(t0.elapsed());
                if c.fetch_add(1, Ordering::SeqCst) + 1 < 3 {
                    panic!("deliberate");
                }
                ctx.cancelled().await;
            }
        },
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Exactly 1 s, then 2 s more.
    assert_eq!(
        *starts.lock().unwrap(),
        [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(3)
        ]
    );
}

/// TestRunWithRecover_CtxDoneStopsRestart
#[tokio::test(start_paused = true)]
async fn run_with_recover_ctx_done_stops_restart() {
    let token = CancellationToken::new();
    let task = tokio::spawn(run_with_recover(
        token.clone(),
        "go-ctx-done",
        |_ctx: Context| async move { fail("always") },
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cancelled_at = Instant::now();
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
    // The 1 s backoff in progress is not waited out.
    assert_eq!(cancelled_at.elapsed(), Duration::ZERO);
}

/// TestLivenessRegistry, on a manual clock instead of a real sleep.
#[test]
fn liveness_registry() {
    let clock = ManualClock::new();
    let registry = Registry::with_clock(clock.clone());

    let before = clock.now();
    registry.heartbeat("testsubsys-A");
    let after = clock.now();
    let last = registry.last_tick("testsubsys-A").unwrap();
    assert!(before <= last && last <= after);

    assert_eq!(registry.last_tick("nonexistent-subsys"), None);

    registry.heartbeat("testsubsys-B");
    assert_eq!(
        registry.is_healthy(&["testsubsys-A", "testsubsys-B"], Duration::from_secs(60)),
        (true, vec![])
    );

    clock.advance(Duration::from_millis(10));
    assert_eq!(
        registry.is_healthy(&["testsubsys-A"], Duration::from_nanos(1)),
        (false, vec!["testsubsys-A".to_owned()])
    );
}

/// TestLivenessRegistry's first check, on the process-wide registry and the
/// real clock: the stored time lies between two readings taken around the call.
#[test]
fn liveness_registry_global_wall_time_is_exact() {
    let before = SystemTime::now();
    supervised_core::heartbeat("go-port-global-A");
    let after = SystemTime::now();
    let last = supervised_core::last_tick("go-port-global-A").unwrap();
    assert!(
        before <= last && last <= after,
        "{before:?} {last:?} {after:?}"
    );
    assert_eq!(supervised_core::last_tick("go-port-global-unknown"), None);
}

/// TestSnapshotIsCopy
#[test]
fn snapshot_is_copy() {
    let registry = Registry::new();
    registry.heartbeat("snap-test");
    let mut s1 = registry.snapshot();
    s1.insert("snap-test".to_owned(), SystemTime::UNIX_EPOCH);
    s1.remove("snap-test");
    assert!(registry.last_tick("snap-test").is_some());
    assert_ne!(
        registry.last_tick("snap-test"),
        Some(SystemTime::UNIX_EPOCH)
    );
}

/// The Go loop restarted forever on a panic; so does ours with the default
/// policy, under a task-local registry.
#[tokio::test(start_paused = true)]
async fn run_with_recover_uses_default_spec() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let task = Spec::new("go-default")
        .registry(&registry)
        .spawn(token.clone(), |_ctx: Context| async move { fail("again") });
    tokio::time::sleep(
        Duration::from_secs(1 + 2 + 4 + 8 + 16 + 30 + 30) + Duration::from_millis(1),
    )
    .await;
    assert_eq!(registry.status("go-default").unwrap().restarts, 7);
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
}
