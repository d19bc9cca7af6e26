//! The readiness drain on paused time: the tasks' token is cancelled exactly
//! the drain period after the signal, and the tasks run until then.

use std::time::Duration;

use supervised_core::{drain, CancellationToken, Context, Exit, Registry, Spec, TaskState};
use tokio::time::{sleep, Instant};

#[tokio::test(start_paused = true)]
async fn the_tasks_stop_exactly_one_drain_period_after_the_signal() {
    let registry = Registry::new();
    let signal = CancellationToken::new();
    let tasks = drain(&signal, Duration::from_secs(2));
    let handle =
        Spec::new("worker")
            .registry(&registry)
            .spawn(tasks.clone(), |ctx: Context| async move {
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    sleep(Duration::from_millis(100)).await;
                }
            });
    sleep(Duration::from_secs(1)).await;

    let t0 = Instant::now();
    signal.cancel();
    sleep(Duration::from_millis(1_999)).await;
    assert!(!tasks.is_cancelled());
    assert_eq!(registry.status("worker").unwrap().state, TaskState::Running);
    tasks.cancelled().await;
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    assert_eq!(handle.await.unwrap(), Exit::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_zero_period_stops_at_once_and_the_token_can_be_cancelled_by_hand() {
    let signal = CancellationToken::new();
    let tasks = drain(&signal, Duration::ZERO);
    signal.cancel();
    let t0 = Instant::now();
    tasks.cancelled().await;
    assert_eq!(t0.elapsed(), Duration::ZERO);

    let signal = CancellationToken::new();
    let tasks = drain(&signal, Duration::from_secs(60));
    tasks.cancel(); // stop without waiting
    assert!(tasks.is_cancelled());
    signal.cancel();
    sleep(Duration::from_secs(120)).await;
    assert!(tasks.is_cancelled());
}
