//! The supervision loop: backoff instants, restart policies, limits,
//! cancellation, stalls, children and panic payloads. Everything runs on tokio's
//! paused clock, so every instant asserted is exact.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervised_core::{
    Backoff, CancellationToken, Context, Exit, FailureKind, GaveUp, Jitter, OnStale, Registry,
    RestartPolicy, Spec, TaskOutput, TaskState,
};
use tokio::time::Instant;

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Panics; typed `()` so that closures calling it return `()`, not `!`.
fn fail(message: &str) {
    panic!("{message}")
}

/// A spec on a private registry.
fn spec(name: &str) -> (Registry, Spec) {
    let registry = Registry::new();
    let spec = Spec::new(name).registry(&registry);
    (registry, spec)
}

/// Records the instant (relative to creation) at which each attempt starts.
#[derive(Clone)]
struct Starts {
    t0: Instant,
    at: Arc<Mutex<Vec<Duration>>>,
}

impl Starts {
    fn new() -> Self {
        Starts {
            t0: Instant::now(),
            at: Arc::default(),
        }
    }
    fn record(&self) -> u32 {
        let mut at = self.at.lock().unwrap();
        at.push(self.t0.elapsed());
        at.len() as u32
    }
    fn get(&self) -> Vec<Duration> {
        self.at.lock().unwrap().clone()
    }
}

/// Runs `body(attempt)` under `spec`, recording attempt start instants.
fn supervise<Fut>(
    spec: Spec,
    token: &CancellationToken,
    starts: &Starts,
    body: impl Fn(Context) -> Fut + Send + Sync + 'static,
) -> tokio::task::JoinHandle<Exit>
where
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    let starts = starts.clone();
    spec.spawn(token.clone(), move |ctx: Context| {
        starts.record();
        body(ctx)
    })
}

#[tokio::test(start_paused = true)]
async fn delay_sequence_doubles_exactly_up_to_and_past_the_cap() {
    let (_r, spec) = spec("seq");
    let token = CancellationToken::new();
    let starts = Starts::new();
    let task = supervise(spec, &token, &starts, |_| async { fail("x") });
    tokio::time::sleep(secs(1 + 2 + 4 + 8 + 16 + 30 + 30) + MS).await;
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
    let want: Vec<Duration> = [0, 1, 3, 7, 15, 31, 61, 91].map(secs).to_vec();
    assert_eq!(starts.get(), want);
}

#[tokio::test(start_paused = true)]
async fn custom_initial_and_cap() {
    let (_r, spec) = spec("custom");
    let spec = spec
        .backoff_initial(Duration::from_millis(250))
        .backoff_max(Duration::from_millis(700));
    let token = CancellationToken::new();
    let starts = Starts::new();
    let task = supervise(spec, &token, &starts, |_| async { fail("x") });
    tokio::time::sleep(Duration::from_millis(250 + 500 + 700 + 700) + MS).await;
    token.cancel();
    task.await.unwrap();
    let want: Vec<Duration> = [0, 250, 750, 1450, 2150]
        .map(Duration::from_millis)
        .to_vec();
    assert_eq!(starts.get(), want);
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_stay_within_bounds() {
    for jitter in [Jitter::Full, Jitter::Equal] {
        let (_r, spec) = spec("jitter");
        let spec = spec.jitter(jitter);
        let token = CancellationToken::new();
        let starts = Starts::new();
        let task = supervise(spec, &token, &starts, |_| async { fail("x") });
        tokio::time::sleep(secs(300)).await;
        token.cancel();
        task.await.unwrap();
        let at = starts.get();
        assert!(at.len() > 8, "{jitter:?}: {at:?}");
        for (n, pair) in at.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            let exact = Backoff::default().delay(n as u32);
            assert!(gap <= exact, "{jitter:?} gap {n}: {gap:?} > {exact:?}");
            if jitter == Jitter::Equal {
                assert!(gap >= exact / 2, "{jitter:?} gap {n}: {gap:?}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn delay_resets_after_a_long_healthy_run() {
    let (_r, spec) = spec("reset");
    let spec = spec.reset_after(secs(10));
    let token = CancellationToken::new();
    let starts = Starts::new();
    let task = supervise(spec, &token, &starts, |ctx: Context| async move {
        match ctx.attempt() {
            // Fail fast three times: delays 1, 2, 4.
            1..=3 => fail("fast"),
            // Run 10 s (>= reset_after), then fail: the next delay is 1 s again.
            4 => {
                tokio::time::sleep(secs(10)).await;
                fail("after a healthy run")
            }
            // Run 9 s (< reset_after): the streak goes on, next delay 2 s.
            5 => {
                tokio::time::sleep(secs(9)).await;
                fail("short run")
            }
            _ => ctx.cancelled().await,
        }
    });
    tokio::time::sleep(secs(40)).await;
    token.cancel();
    task.await.unwrap();
    // 0, +1, +2, +4 = 7; runs 10 s -> 17, +1 -> 18; runs 9 s -> 27, +2 -> 29.
    assert_eq!(starts.get(), [0, 1, 3, 7, 18, 29].map(secs).to_vec());
}

#[tokio::test(start_paused = true)]
async fn restart_limit_ends_in_failed_and_escalates() {
    let (registry, spec) = spec("limited");
    let parent = CancellationToken::new();
    let spec = spec
        .backoff_initial(S)
        .backoff_max(S)
        .max_restarts(3, secs(60))
        .escalate_to(parent.clone());
    let starts = Starts::new();
    let task = supervise(spec, &CancellationToken::new(), &starts, |_| async {
        Err::<(), _>("boom")
    });
    let exit = task.await.unwrap();
    // max_restarts = 3 allows 4 runs; the 4th failure is not a restart.
    assert_eq!(starts.get(), [0, 1, 2, 3].map(secs).to_vec());
    match exit {
        Exit::Failed {
            reason, failure, ..
        } => {
            assert_eq!(
                reason,
                GaveUp::RestartLimit {
                    max_restarts: 3,
                    within: secs(60)
                }
            );
            assert_eq!(failure.kind, FailureKind::Error);
            assert_eq!(failure.message, "boom");
            assert_eq!(failure.attempt, 4);
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let status = registry.status("limited").unwrap();
    assert_eq!(status.state, TaskState::Failed);
    assert_eq!(status.restarts, 3);
    assert_eq!(status.failures.errors, 4);
    assert!(!status.healthy);
    assert!(parent.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn restart_limit_window_slides() {
    // 2 restarts per 10 s, failing every 6 s: the window never holds more than 2.
    let (_r, spec) = spec("sliding");
    let spec = spec
        .backoff_initial(S)
        .backoff_max(S)
        .max_restarts(2, secs(10));
    let token = CancellationToken::new();
    let starts = Starts::new();
    let task = supervise(spec, &token, &starts, |ctx: Context| async move {
        if ctx.attempt() > 6 {
            return Ok(());
        }
        tokio::time::sleep(secs(5)).await;
        Err("again")
    });
    assert_eq!(task.await.unwrap(), Exit::Completed);
    assert_eq!(starts.get().len(), 7);
}

#[tokio::test(start_paused = true)]
async fn err_restarts_and_ok_stops() {
    let (registry, spec) = spec("err-ok");
    let starts = Starts::new();
    let task = supervise(
        spec,
        &CancellationToken::new(),
        &starts,
        |ctx: Context| async move {
            if ctx.attempt() < 3 {
                Err(std::io::Error::other(format!("attempt {}", ctx.attempt())))
            } else {
                Ok(())
            }
        },
    );
    assert_eq!(task.await.unwrap(), Exit::Completed);
    assert_eq!(starts.get(), [0, 1, 3].map(secs).to_vec());
    let status = registry.status("err-ok").unwrap();
    assert_eq!(status.state, TaskState::Completed);
    assert_eq!(status.restarts, 2);
    let last = status.last_failure.unwrap();
    assert_eq!(
        (last.kind, last.message.as_str(), last.attempt),
        (FailureKind::Error, "attempt 2", 2)
    );
}

#[tokio::test(start_paused = true)]
async fn policy_always_restarts_clean_returns_with_the_same_backoff() {
    let (registry, spec) = spec("always");
    let spec = spec.restart(RestartPolicy::Always).reset_after(secs(3));
    let token = CancellationToken::new();
    let starts = Starts::new();
    let task = supervise(spec, &token, &starts, |ctx: Context| async move {
        if ctx.attempt() == 4 {
            // A run of 3 s resets the streak.
            tokio::time::sleep(secs(3)).await;
        }
    });
    tokio::time::sleep(secs(14)).await;
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
    // 0, +1, +2, +4 = 7; runs 3 s -> 10, +1 (reset) -> 11, +2 -> 13.
    assert_eq!(starts.get(), [0, 1, 3, 7, 11, 13].map(secs).to_vec());
    let status = registry.status("always").unwrap();
    assert_eq!(status.failures.panics + status.failures.errors, 0);
    assert_eq!(status.state, TaskState::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn policy_never_fails_on_the_first_failure_and_completes_on_ok() {
    let (registry, spec) = spec("never");
    let starts = Starts::new();
    let task = supervise(
        spec.restart(RestartPolicy::Never),
        &CancellationToken::new(),
        &starts,
        |_| async { fail("once") },
    );
    match task.await.unwrap() {
        Exit::Failed {
            reason, failure, ..
        } => {
            assert_eq!(reason, GaveUp::NoRestart);
            assert_eq!(failure.kind, FailureKind::Panic);
            assert_eq!(failure.message, "once");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(starts.get().len(), 1);
    assert_eq!(registry.status("never").unwrap().state, TaskState::Failed);

    let (_r, spec) = self::spec("never-ok");
    let exit = spec
        .restart(RestartPolicy::Never)
        .run(CancellationToken::new(), |_ctx: Context| async {})
        .await;
    assert_eq!(exit, Exit::Completed);
}

#[tokio::test(start_paused = true)]
async fn cancel_during_backoff_returns_without_time_advancing() {
    let (registry, spec) = spec("cancel-backoff");
    let token = CancellationToken::new();
    let task = supervise(
        spec.backoff_initial(secs(3600)),
        &token,
        &Starts::new(),
        |_| async { fail("x") },
    );
    tokio::time::sleep(secs(10)).await;
    assert_eq!(
        registry.status("cancel-backoff").unwrap().state,
        TaskState::BackingOff
    );
    let at = Instant::now();
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
    assert_eq!(at.elapsed(), Duration::ZERO);
    assert_eq!(
        registry.status("cancel-backoff").unwrap().state,
        TaskState::Cancelled
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_during_a_run_that_ignores_the_token_returns_after_the_grace() {
    let (registry, spec) = spec("stubborn");
    let token = CancellationToken::new();
    let dropped = Arc::new(AtomicU32::new(0));
    struct Flag(Arc<AtomicU32>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let d = dropped.clone();
    let task = spec
        .grace(secs(2))
        .spawn(token.clone(), move |_ctx: Context| {
            let flag = Flag(d.clone());
            async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            }
        });
    tokio::time::sleep(secs(5)).await;
    let at = Instant::now();
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
    assert_eq!(at.elapsed(), secs(2));
    tokio::task::yield_now().await;
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the attempt was dropped");
    assert_eq!(
        registry.status("stubborn").unwrap().state,
        TaskState::Cancelled
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_seen_by_the_attempt_ends_it_early_and_nothing_restarts() {
    for ending in ["ok", "err", "panic"] {
        let (registry, spec) = spec("cooperative");
        let token = CancellationToken::new();
        let starts = Starts::new();
        let task = supervise(spec, &token, &starts, move |ctx: Context| async move {
            ctx.cancelled().await;
            match ending {
                "ok" => Ok(()),
                "err" => Err("stopping"),
                _ => {
                    fail("while stopping");
                    Ok(())
                }
            }
        });
        tokio::time::sleep(secs(1)).await;
        let at = Instant::now();
        token.cancel();
        assert_eq!(task.await.unwrap(), Exit::Cancelled, "{ending}");
        assert_eq!(at.elapsed(), Duration::ZERO);
        assert_eq!(starts.get().len(), 1);
        let status = registry.status("cooperative").unwrap();
        assert_eq!(status.state, TaskState::Cancelled);
    }
}

#[tokio::test(start_paused = true)]
async fn an_already_cancelled_token_runs_nothing() {
    let (_r, spec) = spec("pre-cancelled");
    let token = CancellationToken::new();
    token.cancel();
    let starts = Starts::new();
    let exit = supervise(spec, &token, &starts, |_| async {})
        .await
        .unwrap();
    assert_eq!(exit, Exit::Cancelled);
    assert!(starts.get().is_empty());
}

#[tokio::test(start_paused = true)]
async fn stall_watchdog_restarts_a_stuck_attempt() {
    let (registry, spec) = spec("stall");
    let spec = spec.stale_after(secs(10)).on_stale(OnStale::Restart);
    let token = CancellationToken::new();
    let starts = Starts::new();
    let task = supervise(spec, &token, &starts, |ctx: Context| async move {
        if ctx.attempt() == 1 {
            // Beat for 5 s, then hang.
            for _ in 0..5 {
                ctx.heartbeat();
                tokio::time::sleep(S).await;
            }
            std::future::pending::<()>().await;
        }
        loop {
            ctx.heartbeat();
            tokio::time::sleep(S).await;
            if ctx.is_cancelled() {
                break;
            }
        }
    });
    tokio::time::sleep(secs(30)).await;
    let status = registry.status("stall").unwrap();
    // The last beat is at 4 s and first seen by the check at 5 s (checks run
    // every stale_after / 10 = 1 s). The quiet time must exceed 10 s: the check
    // at 16 s finds it stalled; then 1 s of backoff.
    assert_eq!(starts.get(), [0, 17].map(secs).to_vec());
    assert_eq!(status.failures.stalls, 1);
    assert_eq!(status.state, TaskState::Running);
    assert!(!status.stale);
    let failure = status.last_failure.unwrap();
    assert_eq!(failure.kind, FailureKind::Stalled);
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stall_report_marks_stale_and_recovers_on_the_next_beat() {
    let (registry, spec) = spec("stall-report");
    let spec = spec.stale_after(secs(10));
    let token = CancellationToken::new();
    let resume = Arc::new(tokio::sync::Notify::new());
    let r = resume.clone();
    let task = spec.spawn(token.clone(), move |ctx: Context| {
        let r = r.clone();
        async move {
            r.notified().await;
            loop {
                ctx.heartbeat();
                tokio::time::sleep(S).await;
            }
            #[allow(unreachable_code)]
            ()
        }
    });
    tokio::time::sleep(secs(5)).await;
    assert!(registry.status("stall-report").unwrap().healthy);
    tokio::time::sleep(secs(7)).await;
    let status = registry.status("stall-report").unwrap();
    assert!(status.stale && !status.healthy, "{status:?}");
    assert_eq!(status.state, TaskState::Running);
    assert_eq!(status.restarts, 0);
    resume.notify_one();
    tokio::time::sleep(secs(3)).await;
    let status = registry.status("stall-report").unwrap();
    assert!(!status.stale && status.healthy, "{status:?}");
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn children_are_aborted_when_their_attempt_ends() {
    let (_r, spec) = spec("parent");
    let token = CancellationToken::new();
    let child_ticks = Arc::new(AtomicU32::new(0));
    let ticks = child_ticks.clone();
    let task = spec.spawn(token.clone(), move |ctx: Context| {
        let ticks = ticks.clone();
        async move {
            // A child that ignores every token.
            ctx.spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            tokio::time::sleep(Duration::from_millis(450)).await;
            if ctx.attempt() == 1 {
                fail("parent fails");
            }
            ctx.cancelled().await;
        }
    });
    // Attempt 1: child ticks at 0, 100, ..., 400 (5 ticks), aborted at 450.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(child_ticks.load(Ordering::SeqCst), 5);
    // Attempt 2 starts at 1450 with a new child: ticks at 1450 ... 1850.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let n = child_ticks.load(Ordering::SeqCst);
    assert_eq!(n, 5 + 5);
    token.cancel();
    task.await.unwrap();
    tokio::time::sleep(secs(1)).await;
    assert_eq!(
        child_ticks.load(Ordering::SeqCst),
        n,
        "child outlived the task"
    );
}

#[tokio::test(start_paused = true)]
async fn a_child_panic_fails_its_attempt() {
    let (registry, spec) = spec("child-panic");
    let token = CancellationToken::new();
    let starts = Starts::new();
    let task = supervise(spec, &token, &starts, |ctx: Context| async move {
        if ctx.attempt() == 1 {
            // The handle is dropped: the child still belongs to the attempt.
            drop(ctx.spawn(async {
                tokio::time::sleep(S).await;
                fail("child broke");
            }));
        }
        ctx.cancelled().await;
    });
    tokio::time::sleep(secs(3)).await;
    assert_eq!(starts.get(), [0, 2].map(secs).to_vec());
    let failure = registry
        .status("child-panic")
        .unwrap()
        .last_failure
        .unwrap();
    assert_eq!(failure.kind, FailureKind::Panic);
    assert_eq!(failure.message, "child task panicked: child broke");
    assert!(failure.location.unwrap().contains("runtime.rs"));
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn non_string_panic_payloads_are_caught() {
    struct Custom;
    let payloads: Vec<(&str, fn())> = vec![
        ("i32", || std::panic::panic_any(42_i32)),
        ("struct", || std::panic::panic_any(Custom)),
        ("string", || std::panic::panic_any(String::from("owned"))),
        ("str", || std::panic::panic_any("static")),
    ];
    for (what, raise) in payloads {
        let (registry, spec) = spec("payload");
        let exit = spec
            .restart(RestartPolicy::Never)
            .run(CancellationToken::new(), move |_ctx: Context| async move {
                raise()
            })
            .await;
        let Exit::Failed { failure, .. } = exit else {
            panic!("{what}: {exit:?}")
        };
        let want = match what {
            "string" => "owned",
            "str" => "static",
            _ => "panic with a non-string payload",
        };
        assert_eq!(failure.message, want, "{what}");
        assert_eq!(registry.status("payload").unwrap().failures.panics, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_payload_whose_drop_panics_is_contained() {
    struct Nasty;
    impl Drop for Nasty {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("drop of the payload");
            }
        }
    }
    let (_r, spec) = spec("nasty");
    let exit = spec
        .restart(RestartPolicy::Never)
        .run(CancellationToken::new(), |_ctx: Context| async {
            if true {
                std::panic::panic_any(Nasty)
            }
        })
        .await;
    assert!(exit.is_failed(), "{exit:?}");
}

#[tokio::test(start_paused = true)]
async fn panic_location_is_recorded() {
    let (_r, spec) = spec("located");
    let exit = spec
        .restart(RestartPolicy::Never)
        .run(CancellationToken::new(), |_ctx: Context| async {
            let v: Vec<u8> = Vec::new();
            let _ = v[1];
        })
        .await;
    let Exit::Failed { failure, .. } = exit else {
        panic!("{exit:?}")
    };
    let location = failure.location.clone().expect("location");
    assert!(location.starts_with(file!()), "{location}");
    assert!(
        failure.message.contains("index out of bounds"),
        "{}",
        failure.message
    );
    assert_eq!(
        failure.to_string(),
        format!("panic: {} at {location}", failure.message)
    );
}

#[tokio::test(start_paused = true)]
async fn error_messages_include_their_causes() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if f.alternate() {
                write!(f, "loading config: {}", self.0)
            } else {
                f.write_str("loading config")
            }
        }
    }
    let (_r, spec) = spec("causes");
    let exit = spec
        .restart(RestartPolicy::Never)
        .run(CancellationToken::new(), |_ctx: Context| async {
            Err::<(), _>(Outer(std::io::Error::other("file missing")))
        })
        .await;
    let Exit::Failed { failure, .. } = exit else {
        panic!("{exit:?}")
    };
    assert_eq!(failure.message, "loading config: file missing");
}

#[tokio::test(start_paused = true)]
async fn states_are_visible_through_status() {
    let (registry, spec) = spec("states");
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let task = spec.spawn(CancellationToken::new(), move |ctx: Context| {
        let g = g.clone();
        async move {
            g.acquire().await.unwrap().forget();
            if ctx.attempt() == 1 {
                return Err("first");
            }
            Ok(())
        }
    });
    tokio::task::yield_now().await;
    let s = registry.status("states").unwrap();
    assert_eq!((s.state, s.attempt, s.restarts), (TaskState::Running, 1, 0));
    // Starting an attempt is not a heartbeat: nothing beats on a task's behalf.
    assert_eq!((s.last_tick, s.since_last_tick), (None, None));
    gate.add_permits(1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = registry.status("states").unwrap();
    assert_eq!(
        (s.state, s.attempt, s.restarts),
        (TaskState::BackingOff, 1, 0)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = registry.status("states").unwrap();
    assert_eq!((s.state, s.attempt, s.restarts), (TaskState::Running, 2, 1));
    gate.add_permits(1);
    assert_eq!(task.await.unwrap(), Exit::Completed);
    let s = registry.status("states").unwrap();
    assert_eq!(
        (s.state, s.attempt, s.restarts),
        (TaskState::Completed, 2, 1)
    );
    let all: Vec<String> = registry.tasks().into_iter().map(|t| t.name).collect();
    assert_eq!(all, ["states"]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_supervisor_records_cancelled_and_stops_the_attempt() {
    let (registry, spec) = spec("dropped");
    let ticks = Arc::new(AtomicU32::new(0));
    let t = ticks.clone();
    let task = spec.spawn(CancellationToken::new(), move |_ctx: Context| {
        let t = t.clone();
        async move {
            loop {
                t.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(S).await;
            }
            #[allow(unreachable_code)]
            ()
        }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    task.abort();
    let _ = task.await;
    assert_eq!(
        registry.status("dropped").unwrap().state,
        TaskState::Cancelled
    );
    let n = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(secs(5)).await;
    assert_eq!(
        ticks.load(Ordering::SeqCst),
        n,
        "attempt outlived its supervisor"
    );
}

/// Records the task's state in the registry when it is dropped.
struct SeesStateOnDrop {
    registry: Registry,
    name: &'static str,
    seen: Arc<Mutex<Vec<TaskState>>>,
}

impl Drop for SeesStateOnDrop {
    fn drop(&mut self) {
        let state = self.registry.status(self.name).unwrap().state;
        self.seen.lock().unwrap().push(state);
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_supervisor_records_cancelled_only_after_its_attempt_and_children_are_dropped() {
    let (registry, spec) = spec("drop-order");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (observers, r) = (seen.clone(), registry.clone());
    let task = spec.spawn(CancellationToken::new(), move |ctx: Context| {
        let attempt_sees = SeesStateOnDrop {
            registry: r.clone(),
            name: "drop-order",
            seen: observers.clone(),
        };
        let child_sees = SeesStateOnDrop {
            registry: r.clone(),
            name: "drop-order",
            seen: observers.clone(),
        };
        async move {
            let _attempt_sees = attempt_sees;
            ctx.spawn(async move {
                let _child_sees = child_sees;
                std::future::pending::<()>().await
            });
            std::future::pending::<()>().await
        }
    });
    tokio::time::sleep(S).await;
    task.abort();
    let _ = task.await;
    tokio::time::sleep(S).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|state| *state != TaskState::Cancelled),
        "recorded as cancelled before its futures were dropped: {seen:?}"
    );
    assert_eq!(
        registry.status("drop-order").unwrap().state,
        TaskState::Cancelled
    );
}

#[tokio::test(start_paused = true)]
async fn a_context_kept_past_its_attempt_starts_no_children() {
    let (registry, spec) = spec("stale-spawn");
    let token = CancellationToken::new();
    let kept: Arc<Mutex<Option<Context>>> = Arc::default();
    let keep = kept.clone();
    let task = spec.spawn(token.clone(), move |ctx: Context| {
        let keep = keep.clone();
        async move {
            if ctx.attempt() == 1 {
                *keep.lock().unwrap() = Some(ctx.clone());
                fail("first attempt fails");
            }
            ctx.cancelled().await;
        }
    });
    // Attempt 2 runs from 1 s.
    tokio::time::sleep(secs(2)).await;
    let old = kept.lock().unwrap().take().unwrap();
    let ran = Arc::new(AtomicU32::new(0));
    let r = ran.clone();
    let child = old.spawn(async move {
        r.fetch_add(1, Ordering::SeqCst);
        fail("a stale child fails");
    });
    let joined = child.await;
    assert!(joined.unwrap_err().is_cancelled());
    tokio::time::sleep(secs(5)).await;
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let status = registry.status("stale-spawn").unwrap();
    assert_eq!((status.state, status.attempt), (TaskState::Running, 2));
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_second_live_task_with_the_same_name_is_refused() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let first = Spec::new("twin")
        .registry(&registry)
        .spawn(token.clone(), |ctx: Context| async move {
            ctx.cancelled().await
        });
    tokio::task::yield_now().await;
    let second = Spec::new("twin")
        .registry(&registry)
        .run(token.clone(), |_ctx: Context| async {})
        .await;
    match second {
        Exit::Failed {
            reason, failure, ..
        } => {
            assert_eq!(reason, GaveUp::NameTaken);
            assert_eq!(failure.kind, FailureKind::NameTaken);
            assert!(failure.message.contains("twin"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(registry.status("twin").unwrap().state, TaskState::Running);
    token.cancel();
    first.await.unwrap();
    // Once the first has ended, the name can be used again.
    let third = Spec::new("twin")
        .registry(&registry)
        .run(CancellationToken::new(), |_ctx: Context| async {})
        .await;
    assert_eq!(third, Exit::Completed);
    assert!(registry.forget("twin"));
    assert_eq!(registry.status("twin"), None);
}

#[tokio::test(start_paused = true)]
async fn context_reports_name_attempt_and_token() {
    let (_r, spec) = spec("ctx");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let token = CancellationToken::new();
    let exit = spec
        .run(token.clone(), move |ctx: Context| {
            let s = s.clone();
            async move {
                s.lock()
                    .unwrap()
                    .push((ctx.name().to_owned(), ctx.attempt(), ctx.is_cancelled()));
                if ctx.attempt() < 2 {
                    return Err("again");
                }
                ctx.token().cancel();
                Ok(())
            }
        })
        .await;
    assert_eq!(exit, Exit::Cancelled);
    assert_eq!(
        *seen.lock().unwrap(),
        [("ctx".to_owned(), 1, false), ("ctx".to_owned(), 2, false)]
    );
}

#[test]
fn supervisor_futures_are_send_and_static_with_any_name() {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    let token = CancellationToken::new();
    let literal =
        supervised_core::run_with_recover(token.clone(), "literal", |_ctx: Context| async {});
    let owned =
        supervised_core::run_with_recover(token, String::from("owned"), |_ctx: Context| async {
            Ok::<(), std::io::Error>(())
        });
    assert_send_static(&literal);
    assert_send_static(&owned);
}

#[tokio::test(start_paused = true)]
async fn context_heartbeat_takes_the_registry_clock() {
    let clock = supervised_core::ManualClock::new();
    let registry = Registry::with_clock(clock.clone());
    let token = CancellationToken::new();
    let c = clock.clone();
    let task =
        Spec::new("clocked")
            .registry(&registry)
            .spawn(token.clone(), move |ctx: Context| {
                let c = c.clone();
                async move {
                    c.advance(secs(30));
                    ctx.heartbeat();
                    ctx.cancelled().await;
                }
            });
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    let s = registry.status("clocked").unwrap();
    assert_eq!(s.last_tick, Some(clock.now()));
    assert_eq!(s.since_last_tick, Some(Duration::ZERO));
    clock.advance(secs(2));
    assert_eq!(
        registry.status("clocked").unwrap().since_last_tick,
        Some(secs(2))
    );
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_zero_backoff_restarts_at_once() {
    let (registry, spec) = spec("zero-backoff");
    let spec = spec
        .backoff_initial(Duration::ZERO)
        .backoff_max(Duration::ZERO);
    let starts = Starts::new();
    let task = supervise(
        spec,
        &CancellationToken::new(),
        &starts,
        |ctx: Context| async move {
            if ctx.attempt() <= 5 {
                fail("again");
            }
        },
    );
    assert_eq!(task.await.unwrap(), Exit::Completed);
    assert_eq!(starts.get(), vec![Duration::ZERO; 6]);
    assert_eq!(registry.status("zero-backoff").unwrap().restarts, 5);
}
