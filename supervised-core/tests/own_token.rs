//! A task's own cancellation token is made when its `Context` is first asked
//! for it (`Context::token`, `Context::cancelled`): a task that never asks
//! does not pay for one. These tests hold what that must not change:
//! cancelling the token stops the task and only it, at once, in an attempt
//! (within the grace) and during a backoff, and whoever waits on the
//! `Context` sees it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervised_core::{CancellationToken, Context, Exit, Registry, Spec, TaskState};
use tokio::time::Instant;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An attempt that makes its token after a second, cancels it, and then
/// ignores it: the supervisor, which waited on the token the task was
/// started on until then, must see the cancellation and drop the attempt
/// once its grace has passed.
#[tokio::test(start_paused = true)]
async fn a_token_made_and_cancelled_in_an_attempt_stops_it_after_the_grace() {
    let registry = Registry::new();
    let spec = Spec::new("late-token").registry(&registry).grace(secs(5));
    let t0 = Instant::now();
    let run = spec.run(CancellationToken::new(), |ctx: Context| async move {
        tokio::time::sleep(secs(1)).await;
        ctx.token().cancel();
        loop {
            tokio::time::sleep(secs(60)).await;
        }
        #[allow(unreachable_code)]
        ()
    });
    let exit = tokio::time::timeout(secs(3_600), run)
        .await
        .expect("the cancelled attempt was never stopped");
    assert_eq!(exit, Exit::Cancelled);
    assert_eq!(t0.elapsed(), secs(6), "cancelled at 1 s, grace of 5 s");
    assert_eq!(registry.status("late-token").unwrap().restarts, 0);
}

/// A `Context` kept past its attempt makes the task's token during the
/// backoff and cancels it: the backoff ends at once, not when it is over.
#[tokio::test(start_paused = true)]
async fn a_token_made_during_a_backoff_and_cancelled_stops_it_at_once() {
    let registry = Registry::new();
    let spec = Spec::new("kept-context")
        .registry(&registry)
        .backoff_initial(secs(10));
    let kept: Arc<Mutex<Option<Context>>> = Arc::default();
    let k = kept.clone();
    let t0 = Instant::now();
    let run = tokio::spawn(spec.run(CancellationToken::new(), move |ctx: Context| {
        *k.lock().unwrap() = Some(ctx);
        async { Err::<(), _>("fails at once") }
    }));
    tokio::time::sleep(secs(2)).await;
    assert_eq!(
        registry.status("kept-context").unwrap().state,
        TaskState::BackingOff
    );
    let ctx = kept.lock().unwrap().take().expect("the first attempt ran");
    ctx.token().cancel();
    let exit = run.await.unwrap();
    assert_eq!(exit, Exit::Cancelled);
    assert_eq!(t0.elapsed(), secs(2), "stopped when cancelled, not at 10 s");
    assert_eq!(registry.status("kept-context").unwrap().restarts, 0);
}

/// A child waits on the `Context` before the attempt cancels the task's
/// token: the child sees the cancellation and can finish its work before
/// the attempt returns.
#[tokio::test(start_paused = true)]
async fn a_child_waiting_on_the_context_sees_the_attempt_cancel_its_token() {
    let registry = Registry::new();
    let spec = Spec::new("waiting-child").registry(&registry);
    let seen: Arc<Mutex<Vec<&str>>> = Arc::default();
    let s = seen.clone();
    let exit = spec
        .run(CancellationToken::new(), move |ctx: Context| {
            let s = s.clone();
            async move {
                let child_ctx = ctx.clone();
                let child_seen = s.clone();
                let child = ctx.spawn(async move {
                    child_ctx.cancelled().await;
                    child_seen
                        .lock()
                        .unwrap()
                        .push("child saw the cancellation");
                });
                tokio::time::sleep(secs(1)).await;
                assert!(!ctx.is_cancelled());
                ctx.token().cancel();
                assert!(ctx.is_cancelled());
                child.await.unwrap();
                s.lock().unwrap().push("attempt returned");
            }
        })
        .await;
    assert_eq!(exit, Exit::Cancelled);
    assert_eq!(
        *seen.lock().unwrap(),
        ["child saw the cancellation", "attempt returned"]
    );
}

/// Two tasks started on one token: one cancels its own token, and stops;
/// the other keeps running. Then the shared token stops the other, which
/// never made a token of its own.
#[tokio::test(start_paused = true)]
async fn a_tasks_token_is_its_own_and_the_shared_token_stops_every_task() {
    let registry = Registry::new();
    let shared = CancellationToken::new();
    let quitter = tokio::spawn(Spec::new("quitter").registry(&registry).run(
        shared.clone(),
        |ctx: Context| async move {
            tokio::time::sleep(secs(1)).await;
            ctx.token().cancel();
            ctx.cancelled().await;
        },
    ));
    let stayer = tokio::spawn(Spec::new("stayer").registry(&registry).run(
        shared.clone(),
        |ctx: Context| async move {
            loop {
                ctx.heartbeat();
                tokio::time::sleep(secs(1)).await;
            }
            #[allow(unreachable_code)]
            ()
        },
    ));
    assert_eq!(quitter.await.unwrap(), Exit::Cancelled);
    assert!(
        !shared.is_cancelled(),
        "a task's token is not the shared one"
    );
    tokio::time::sleep(secs(5)).await;
    assert_eq!(registry.status("stayer").unwrap().state, TaskState::Running);
    shared.cancel();
    assert_eq!(stayer.await.unwrap(), Exit::Cancelled);
}

/// `Context::is_cancelled` and the token made after the shared token was
/// cancelled: both say so.
#[tokio::test(start_paused = true)]
async fn a_token_made_after_the_shared_one_was_cancelled_is_cancelled() {
    let registry = Registry::new();
    let shared = CancellationToken::new();
    let s = shared.clone();
    let exit = Spec::new("late")
        .registry(&registry)
        .run(shared.clone(), move |ctx: Context| {
            let s = s.clone();
            async move {
                s.cancel();
                assert!(ctx.is_cancelled());
                assert!(ctx.token().is_cancelled());
                ctx.cancelled().await;
            }
        })
        .await;
    assert_eq!(exit, Exit::Cancelled);
}

/// The token an attempt made is the one every later attempt gets:
/// cancelling it after a restart stops the task.
#[tokio::test(start_paused = true)]
async fn every_attempt_gets_the_token_the_first_one_made() {
    let registry = Registry::new();
    let spec = Spec::new("same-token").registry(&registry);
    let first: Arc<Mutex<Option<CancellationToken>>> = Arc::default();
    let f = first.clone();
    let run = tokio::spawn(spec.run(CancellationToken::new(), move |ctx: Context| {
        let f = f.clone();
        async move {
            if ctx.attempt() == 1 {
                *f.lock().unwrap() = Some(ctx.token().clone());
                return Err("once");
            }
            ctx.heartbeat();
            ctx.cancelled().await;
            Ok(())
        }
    }));
    tokio::time::sleep(secs(5)).await;
    let status = registry.status("same-token").unwrap();
    assert_eq!((status.attempt, status.state), (2, TaskState::Running));
    let token = first.lock().unwrap().take().expect("the first attempt ran");
    token.cancel();
    assert_eq!(run.await.unwrap(), Exit::Cancelled);
}

/// On two worker threads, many attempts make their task's token and cancel
/// it while their supervisors wait, on whichever thread: every task stops.
/// A wake-up lost between the supervisor's check and the token's making
/// would leave a task running, and this test waiting for its time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_made_on_other_threads_stop_every_task() {
    let registry = Registry::new();
    let shared = CancellationToken::new();
    let runs: Vec<_> = (0..2_000)
        .map(|i| {
            let spec = Spec::new(format!("racer-{i}"))
                .registry(&registry)
                .grace(Duration::ZERO);
            tokio::spawn(spec.run(shared.clone(), move |ctx: Context| async move {
                for _ in 0..i % 3 {
                    tokio::task::yield_now().await;
                }
                ctx.token().cancel();
                std::future::pending::<()>().await;
            }))
        })
        .collect();
    let all = async {
        for run in runs {
            assert_eq!(run.await.unwrap(), Exit::Cancelled);
        }
    };
    tokio::time::timeout(secs(120), all)
        .await
        .expect("a task whose token was cancelled kept running");
    assert!(!shared.is_cancelled());
}
