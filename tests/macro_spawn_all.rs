//! `spawn_all!`: tasks started together in a `Group`, stopped together within
//! the group's grace.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use supervised::{
    spawn_all, supervised, CancellationToken, Context, Exit, Registry, Task, TaskState,
};
use tokio::time::{sleep, Instant};

const SEC: Duration = Duration::from_secs(1);

#[supervised(name = "spawn_all-worker")]
async fn worker(ctx: Context, every: Duration) {
    while !ctx.is_cancelled() {
        sleep(every).await;
    }
}

#[supervised(name = "spawn_all-bare")]
async fn bare() {
    loop {
        sleep(SEC).await;
    }
}

/// Ignores cancellation and declares a grace far beyond the group's.
#[supervised(name = "spawn_all-stubborn", grace = "1h")]
async fn stubborn() {
    loop {
        sleep(SEC).await;
    }
}

#[supervised(name = "spawn_all-done")]
async fn finishes_after(wait: Duration, runs: Arc<AtomicUsize>) {
    sleep(wait).await;
    runs.fetch_add(1, Ordering::SeqCst);
}

fn in_registry(task: Task, registry: &Registry) -> Task {
    task.with_spec(|s| s.registry(registry))
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_everything_within_the_grace() {
    let registry = Registry::new();
    let group = spawn_all!(
        in_registry(worker(SEC), &registry),
        in_registry(stubborn(), &registry),
    );
    assert_eq!(group.names(), ["spawn_all-worker", "spawn_all-stubborn"]);
    sleep(Duration::from_secs(10)).await;
    assert!(group.is_healthy());

    let t0 = Instant::now();
    let exits = group.shutdown(Duration::from_secs(3)).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
    assert_eq!(
        exits,
        [
            ("spawn_all-worker".to_owned(), Exit::Cancelled),
            // Still in its own grace at the group's deadline: its attempt is
            // aborted there and dropped at once (it awaits a timer).
            ("spawn_all-stubborn".to_owned(), Exit::Cancelled)
        ]
    );
    for name in ["spawn_all-worker", "spawn_all-stubborn"] {
        assert_eq!(registry.status(name).unwrap().state, TaskState::Cancelled);
    }
}

#[tokio::test(start_paused = true)]
async fn bare_names_task_values_and_a_parent_token() {
    let parent = CancellationToken::new();
    let prepared: Task = worker(SEC);
    let group = spawn_all!(token = parent.clone(); prepared, bare);
    assert_eq!(group.names(), ["spawn_all-worker", "spawn_all-bare"]);
    sleep(Duration::from_secs(5)).await;

    // Cancelling the application's token stops the group; the group never
    // cancels the parent itself.
    parent.cancel();
    let t0 = Instant::now();
    let exits = group.shutdown(Duration::from_secs(30)).await;
    assert!(
        exits.iter().all(|(_, e)| *e == Exit::Cancelled),
        "{exits:?}"
    );
    assert!(t0.elapsed() <= Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_token_by_reference_and_join() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let group = spawn_all!(
        token = &token;
        in_registry(finishes_after(SEC, runs.clone()), &registry)
    );
    assert!(!group.token().is_cancelled());
    let exits = group.join().await;
    assert_eq!(exits, [("spawn_all-done".to_owned(), Exit::Completed)]);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(!token.is_cancelled());
}

#[supervised(name = "spawn_all-stale", stale_after = "2s", heartbeat = "manual")]
async fn silent(_ctx: Context) {
    std::future::pending::<()>().await;
}

#[tokio::test(start_paused = true)]
async fn is_healthy_follows_each_tasks_own_stale_after() {
    let registry = Registry::new();
    let group = spawn_all!(
        in_registry(worker(SEC), &registry),
        in_registry(silent(), &registry)
    );
    sleep(SEC).await;
    assert!(group.is_healthy());
    sleep(Duration::from_secs(3)).await;
    assert!(!group.is_healthy());
    group.shutdown(SEC).await;
}

#[tokio::test]
async fn an_empty_group() {
    let group = spawn_all!();
    assert!(group.names().is_empty());
    assert!(group.join().await.is_empty());
}

#[supervised(name = "spawn_all-same")]
async fn first_of_a_name() {}

#[supervised(name = "spawn_all-same")]
async fn second_of_a_name() {}

#[tokio::test]
#[should_panic(expected = "`second_of_a_name()` is a second task named `spawn_all-same`")]
async fn two_fns_with_one_name_panic_clearly() {
    let _group = spawn_all!(first_of_a_name(), second_of_a_name());
}

// Group options -------------------------------------------------------------------

#[supervised(name = "opts-db", backoff_initial = "1s", backoff_max = "1s")]
async fn opts_db(ctx: Context, warmup: Duration) {
    sleep(warmup).await;
    while !ctx.is_cancelled() {
        sleep(SEC).await;
    }
}

#[supervised(name = "opts-api", backoff_initial = "1s", backoff_max = "1s")]
async fn opts_api(ctx: Context, fail_at: Option<Duration>) -> Result<(), String> {
    if let (Some(at), 1) = (fail_at, ctx.attempt()) {
        sleep(at).await;
        return Err("api failed".to_owned());
    }
    while !ctx.is_cancelled() {
        sleep(SEC).await;
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn spawn_all_options_configure_the_group() {
    // Ordered: the api starts once the db has beaten (after its 3 s warm-up
    // and first loop iteration).
    let group = spawn_all!(ordered, start_timeout = "10s"; opts_db(3 * SEC), opts_api(None));
    sleep(SEC).await;
    assert_eq!(supervised::status("opts-api"), None);
    sleep(4 * SEC).await;
    let api = supervised::status("opts-api").expect("api started");
    assert_eq!(api.state, TaskState::Running);
    group.shutdown(SEC).await;

    // One for all, with the group's restart limit: the api's failure
    // restarts the db too.
    let group = spawn_all!(
        strategy = one_for_all, max_restarts = 5, within = "1m";
        opts_db(Duration::ZERO), opts_api(Some(2 * SEC)),
    );
    sleep(5 * SEC).await;
    assert_eq!(supervised::status("opts-db").unwrap().restarts, 1);
    assert_eq!(supervised::status("opts-api").unwrap().restarts, 1);
    assert!(group.gave_up().is_none());
    group.shutdown(SEC).await;

    // The same group with a limit of zero restarts gives up at once.
    let group = spawn_all!(
        strategy = rest_for_one, max_restarts = 0, within = "1m";
        opts_db(Duration::ZERO), opts_api(Some(2 * SEC)),
    );
    sleep(3 * SEC).await;
    assert!(group.gave_up().is_some());
    let exits = group.join().await;
    assert!(
        exits.iter().all(|(_, e)| *e == Exit::Cancelled),
        "{exits:?}"
    );
}
