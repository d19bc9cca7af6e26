//! `#[supervised]`: the rewritten signature, the injected heartbeat, per-attempt
//! clones and every attribute knob, on tokio's paused clock.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::start;
use supervised::{
    supervised, CancellationToken, Context, Exit, GaveUp, ManualClock, Registry, Task, TaskState,
};
use tokio::time::{sleep, Instant};

const SEC: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The gaps between consecutive instants.
fn gaps(times: &Mutex<Vec<Instant>>) -> Vec<Duration> {
    let times = times.lock().unwrap();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

type Log = Arc<Mutex<Vec<Instant>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

// ---------------------------------------------------------------------------
// Heartbeat injection

#[supervised(stale_after = "5s", on_stale = "restart")]
async fn beating_loop() {
    loop {
        sleep(SEC).await;
    }
}

#[supervised(stale_after = "5s", on_stale = "restart", heartbeat = "manual")]
async fn manual_loop(_ctx: Context) {
    loop {
        sleep(SEC).await;
    }
}

#[supervised(heartbeat = "manual")]
async fn manual_loop_without_context() {
    loop {
        sleep(SEC).await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_annotated_loop_heartbeats_without_a_call() {
    let registry = Registry::new();
    start(beating_loop(), &registry);
    start(manual_loop(), &registry);
    sleep(Duration::from_secs(60)).await;

    let beating = registry.status("beating_loop").unwrap();
    assert_eq!(beating.state, TaskState::Running);
    assert_eq!((beating.restarts, beating.failures.stalls), (0, 0));
    assert!(beating.last_tick.is_some());
    assert!(!beating.stale);

    // The same loop with `heartbeat = "manual"` never beats: the watchdog
    // restarts it every 5 s or so.
    let manual = registry.status("manual_loop").unwrap();
    assert!(manual.failures.stalls >= 3, "{manual:?}");
}

#[supervised]
async fn ticks_every_second() {
    loop {
        sleep(SEC).await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_iteration_moves_the_last_tick() {
    let clock = ManualClock::new();
    let registry = Registry::with_clock(clock.clone());
    start(ticks_every_second(), &registry);
    sleep(ms(1500)).await;
    let first = registry.last_tick("ticks_every_second").unwrap();
    for _ in 0..3 {
        clock.advance(Duration::from_secs(10));
        sleep(SEC).await; // one more iteration
        let now = registry.last_tick("ticks_every_second").unwrap();
        assert_eq!(now, clock.now());
    }
    assert_eq!(
        registry
            .last_tick("ticks_every_second")
            .unwrap()
            .duration_since(first)
            .unwrap(),
        Duration::from_secs(30)
    );
}

#[supervised(stale_after = "5s", on_stale = "restart")]
async fn skips_with_continue(ctx: Context) {
    let mut i: u64 = 0;
    while !ctx.is_cancelled() {
        i += 1;
        sleep(SEC).await;
        if i > 0 {
            continue;
        }
        unreachable!("every iteration continues before this");
    }
}

#[supervised(stale_after = "5s", on_stale = "restart")]
async fn for_loop_then_tail_loop() {
    for _ in 0..10 {
        sleep(SEC).await;
    }
    'tail: loop {
        sleep(SEC).await;
        if false {
            break 'tail;
        }
    }
}

#[supervised(stale_after = "5s", on_stale = "restart")]
async fn nested_loops_only() {
    let inner = async {
        loop {
            sleep(SEC).await;
        }
    };
    {
        // A loop inside a block is not a statement of the fn's own body.
        let _ = tokio::time::timeout(Duration::from_secs(30), inner).await;
    }
    if true {
        loop {
            sleep(SEC).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn while_for_labelled_and_continue_loops_beat_nested_ones_do_not() {
    let registry = Registry::new();
    start(skips_with_continue(), &registry);
    start(for_loop_then_tail_loop(), &registry);
    start(nested_loops_only(), &registry);
    sleep(Duration::from_secs(60)).await;

    for fresh in ["skips_with_continue", "for_loop_then_tail_loop"] {
        let s = registry.status(fresh).unwrap();
        assert_eq!((s.restarts, s.failures.stalls), (0, 0), "{s:?}");
        assert!(s.last_tick.is_some(), "{s:?}");
    }
    let nested = registry.status("nested_loops_only").unwrap();
    assert!(nested.failures.stalls >= 1, "{nested:?}");
}

// ---------------------------------------------------------------------------
// Arguments and signature

/// Counts its clones; each clone carries the log it was cloned from.
#[derive(Debug)]
struct Counted {
    clones: Arc<AtomicUsize>,
    log: Vec<u32>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Counted {
            clones: self.clones.clone(),
            log: self.log.clone(),
        }
    }
}

#[supervised(backoff_initial = "100ms", backoff_max = "100ms")]
async fn crashes_twice(mut state: Counted, ctx: Context, seen: Arc<Mutex<Vec<Vec<u32>>>>) {
    state.log.push(ctx.attempt());
    seen.lock().unwrap().push(state.log.clone());
    if ctx.attempt() < 3 {
        panic!("attempt {} fails", ctx.attempt());
    }
}

#[tokio::test(start_paused = true)]
async fn arguments_are_cloned_for_each_attempt() {
    let clones = Arc::new(AtomicUsize::new(0));
    let state = Counted {
        clones: clones.clone(),
        log: vec![0],
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let registry = Registry::new();
    let task: Task = crashes_twice(state, seen.clone());
    assert_eq!(task.name(), "crashes_twice");
    let (_, handle) = start(task, &registry);
    assert_eq!(handle.await.unwrap(), Exit::Completed);

    assert_eq!(clones.load(Ordering::SeqCst), 3);
    // Each attempt starts from a fresh clone of the original, not from what
    // the previous attempt left.
    assert_eq!(*seen.lock().unwrap(), [vec![0, 1], vec![0, 2], vec![0, 3]]);
}

/// Docs and attributes are kept; the context may come anywhere or not at all.
#[allow(clippy::needless_pass_by_value)]
#[supervised]
pub(crate) async fn context_in_the_middle(
    a: u32,
    _ctx: supervised::Context,
    b: String,
    out: Arc<Mutex<String>>,
) {
    *out.lock().unwrap() = format!("{a}{b}");
}

#[supervised]
async fn no_context(out: Arc<Mutex<String>>) {
    out.lock().unwrap().push_str("ran");
}

#[supervised]
async fn wildcard_context(_: Context) {}

mod nested {
    use supervised::supervised;

    /// Visible outside its module.
    #[supervised(name = "nested-pub")]
    pub async fn public_task() {}
}

#[tokio::test(start_paused = true)]
async fn the_signature_loses_the_context_and_keeps_the_rest() {
    let out = Arc::new(Mutex::new(String::new()));
    let token = CancellationToken::new();
    assert_eq!(
        context_in_the_middle(4, "2".into(), out.clone())
            .with_spec(|s| s.registry(&Registry::new()))
            .run(token.clone())
            .await,
        Exit::Completed
    );
    assert_eq!(*out.lock().unwrap(), "42");

    let t = no_context(out.clone()).with_spec(|s| s.registry(&Registry::new()));
    assert_eq!(t.run(token.clone()).await, Exit::Completed);
    assert_eq!(*out.lock().unwrap(), "42ran");

    let t = wildcard_context().with_spec(|s| s.registry(&Registry::new()));
    assert!(t.run(token.clone()).await.is_completed());
    assert_eq!(nested::public_task().name(), "nested-pub");
}

// ---------------------------------------------------------------------------
// Return types

#[supervised(
    backoff_initial = "1s",
    backoff_max = "1s",
    max_restarts = 2,
    within = "1m"
)]
async fn string_error(ctx: Context) -> Result<(), String> {
    Err(format!("attempt {}", ctx.attempt()))
}

#[supervised(restart = "never")]
async fn anyhow_error() -> anyhow::Result<()> {
    let n: u32 = "x".parse()?;
    let _ = n;
    Ok(())
}

#[supervised(restart = "never")]
async fn io_error() -> std::io::Result<()> {
    Err(std::io::Error::other("disk on fire"))
}

#[supervised(restart = "never")]
async fn boxed_error() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Err("boxed".into())
}

#[supervised(restart = "never")]
async fn diverges_with_panic() -> anyhow::Result<()> {
    panic!("never returns")
}

#[supervised]
async fn diverges_with_loop(ctx: Context) -> Result<(), std::io::Error> {
    loop {
        ctx.cancelled().await;
        sleep(SEC).await;
    }
}

#[tokio::test(start_paused = true)]
async fn result_returns_fail_and_diverging_bodies_compile() {
    let registry = Registry::new();
    let (_, h) = start(string_error(), &registry);
    let exit = h.await.unwrap();
    assert!(
        matches!(
            exit,
            Exit::Failed {
                reason: GaveUp::RestartLimit {
                    max_restarts: 2,
                    ..
                },
                ..
            }
        ),
        "{exit:?}"
    );
    let s = registry.status("string_error").unwrap();
    assert_eq!(s.last_failure.unwrap().message, "attempt 3");

    for (task, message) in [
        (anyhow_error(), "invalid digit found in string"),
        (io_error(), "disk on fire"),
        (boxed_error(), "boxed"),
        (diverges_with_panic(), "never returns"),
    ] {
        let name = task.name().to_owned();
        let (_, h) = start(task, &registry);
        let exit = h.await.unwrap();
        assert!(exit.is_failed(), "{name}: {exit:?}");
        let failure = registry.status(&name).unwrap().last_failure.unwrap();
        assert_eq!(failure.message, message, "{name}");
    }

    let (token, h) = start(diverges_with_loop(), &registry);
    sleep(SEC).await;
    token.cancel();
    assert_eq!(h.await.unwrap(), Exit::Cancelled);
}

// ---------------------------------------------------------------------------
// Knobs

#[supervised]
async fn default_named() {}

#[supervised(name = "given name")]
async fn renamed() {}

#[test]
fn name_defaults_to_the_fn_name() {
    assert_eq!(default_named().name(), "default_named");
    assert_eq!(renamed().name(), "given name");
}

#[supervised(backoff_initial = "200ms", backoff_max = "800ms")]
async fn fails_fast(starts: Log) -> Result<(), &'static str> {
    starts.lock().unwrap().push(Instant::now());
    Err("no")
}

#[supervised]
async fn fails_fast_default(starts: Log) -> Result<(), &'static str> {
    starts.lock().unwrap().push(Instant::now());
    Err("no")
}

#[tokio::test(start_paused = true)]
async fn backoff_initial_and_max_set_the_delays() {
    let registry = Registry::new();
    let (starts, default) = (log(), log());
    start(fails_fast(starts.clone()), &registry);
    start(fails_fast_default(default.clone()), &registry);
    sleep(Duration::from_secs(100)).await;
    assert_eq!(
        gaps(&starts)[..5],
        [ms(200), ms(400), ms(800), ms(800), ms(800)]
    );
    let secs: Vec<u64> = gaps(&default).iter().map(Duration::as_secs).collect();
    assert_eq!(secs[..7], [1, 2, 4, 8, 16, 30, 30]);
}

#[supervised(backoff_initial = "1s", backoff_max = "1s", jitter = "full")]
async fn fails_with_jitter(starts: Log) -> Result<(), &'static str> {
    starts.lock().unwrap().push(Instant::now());
    Err("no")
}

#[supervised(backoff_initial = "1s", backoff_max = "1s", jitter = "none")]
async fn fails_without_jitter(starts: Log) -> Result<(), &'static str> {
    starts.lock().unwrap().push(Instant::now());
    Err("no")
}

#[tokio::test(start_paused = true)]
async fn jitter_randomises_delays_below_the_computed_one() {
    let registry = Registry::new();
    let (jittered, exact) = (log(), log());
    start(fails_with_jitter(jittered.clone()), &registry);
    start(fails_without_jitter(exact.clone()), &registry);
    sleep(Duration::from_secs(20)).await;
    let exact = gaps(&exact);
    assert!(exact.iter().all(|g| *g == SEC), "{exact:?}");
    let jittered = gaps(&jittered);
    assert!(jittered.len() > exact.len(), "{jittered:?}");
    assert!(jittered.iter().all(|g| *g <= SEC), "{jittered:?}");
    assert!(jittered.iter().any(|g| *g < SEC), "{jittered:?}");
}

#[supervised(backoff_initial = "100ms", backoff_max = "10s", reset_after = "500ms")]
async fn runs_then_fails_reset(starts: Log) -> Result<(), &'static str> {
    starts.lock().unwrap().push(Instant::now());
    sleep(SEC).await;
    Err("no")
}

#[supervised(backoff_initial = "100ms", backoff_max = "10s")]
async fn runs_then_fails(starts: Log) -> Result<(), &'static str> {
    starts.lock().unwrap().push(Instant::now());
    sleep(SEC).await;
    Err("no")
}

#[tokio::test(start_paused = true)]
async fn reset_after_restarts_the_backoff_after_a_long_enough_run() {
    let registry = Registry::new();
    let (reset, growing) = (log(), log());
    start(runs_then_fails_reset(reset.clone()), &registry);
    start(runs_then_fails(growing.clone()), &registry);
    sleep(Duration::from_secs(6)).await;
    assert_eq!(gaps(&reset)[..4], [ms(1100); 4]);
    assert_eq!(
        gaps(&growing)[..4],
        [ms(1100), ms(1200), ms(1400), ms(1800)]
    );
}

#[supervised(restart = "always", backoff_initial = "1s", backoff_max = "1s")]
async fn returns_always(runs: Arc<AtomicUsize>) {
    runs.fetch_add(1, Ordering::SeqCst);
}

#[supervised(restart = "on_failure")]
async fn returns_on_failure(runs: Arc<AtomicUsize>) {
    runs.fetch_add(1, Ordering::SeqCst);
}

#[supervised(restart = "never")]
async fn fails_never(runs: Arc<AtomicUsize>) -> Result<(), String> {
    runs.fetch_add(1, Ordering::SeqCst);
    Err("once".into())
}

#[tokio::test(start_paused = true)]
async fn restart_policy_decides_which_endings_restart() {
    let registry = Registry::new();
    let always = Arc::new(AtomicUsize::new(0));
    start(returns_always(always.clone()), &registry);

    let on_failure = Arc::new(AtomicUsize::new(0));
    let (_, h) = start(returns_on_failure(on_failure.clone()), &registry);
    assert_eq!(h.await.unwrap(), Exit::Completed);

    let never = Arc::new(AtomicUsize::new(0));
    let (_, h) = start(fails_never(never.clone()), &registry);
    let exit = h.await.unwrap();
    assert!(
        matches!(
            exit,
            Exit::Failed {
                reason: GaveUp::NoRestart,
                ..
            }
        ),
        "{exit:?}"
    );

    sleep(ms(4500)).await;
    assert_eq!(always.load(Ordering::SeqCst), 5);
    assert_eq!(on_failure.load(Ordering::SeqCst), 1);
    assert_eq!(never.load(Ordering::SeqCst), 1);
}

#[supervised(
    backoff_initial = "100ms",
    backoff_max = "100ms",
    max_restarts = 3,
    within = "10s"
)]
async fn crash_loop(runs: Arc<AtomicUsize>) -> Result<(), String> {
    runs.fetch_add(1, Ordering::SeqCst);
    Err("crash".into())
}

#[supervised(
    backoff_initial = "100ms",
    backoff_max = "100ms",
    max_restarts = 1,
    within = "4s"
)]
async fn slow_crash_loop(runs: Arc<AtomicUsize>) -> Result<(), String> {
    runs.fetch_add(1, Ordering::SeqCst);
    sleep(Duration::from_secs(5)).await;
    Err("crash".into())
}

#[tokio::test(start_paused = true)]
async fn max_restarts_within_gives_up_on_a_crash_loop() {
    let registry = Registry::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let (_, h) = start(crash_loop(runs.clone()), &registry);
    let exit = h.await.unwrap();
    assert!(
        matches!(
            exit,
            Exit::Failed {
                reason: GaveUp::RestartLimit {
                    max_restarts: 3,
                    within
                },
                ..
            } if within == Duration::from_secs(10)
        ),
        "{exit:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 4);

    // Failures further than `within` from the last restart never add up.
    let slow = Arc::new(AtomicUsize::new(0));
    start(slow_crash_loop(slow.clone()), &registry);
    sleep(Duration::from_secs(60)).await;
    assert!(slow.load(Ordering::SeqCst) >= 10);
    assert!(!registry.status("slow_crash_loop").unwrap().state.is_final());
}

#[supervised(stale_after = "10s", heartbeat = "manual")]
async fn stalls_reported(_ctx: Context) {
    std::future::pending::<()>().await;
}

#[supervised(stale_after = "10s", on_stale = "report", heartbeat = "manual")]
async fn stalls_reported_explicitly(_ctx: Context) {
    std::future::pending::<()>().await;
}

#[supervised(stale_after = "10s", on_stale = "restart", heartbeat = "manual")]
async fn stalls_restarted(_ctx: Context) {
    std::future::pending::<()>().await;
}

#[tokio::test(start_paused = true)]
async fn stale_after_and_on_stale_decide_what_a_stall_does() {
    let registry = Registry::new();
    start(stalls_reported(), &registry);
    start(stalls_reported_explicitly(), &registry);
    start(stalls_restarted(), &registry);
    sleep(Duration::from_secs(9)).await;
    for name in [
        "stalls_reported",
        "stalls_reported_explicitly",
        "stalls_restarted",
    ] {
        let s = registry.status(name).unwrap();
        assert!(!s.stale && s.healthy, "{s:?}");
        assert_eq!(s.stale_after, Some(Duration::from_secs(10)));
    }
    sleep(Duration::from_secs(3)).await;
    for name in ["stalls_reported", "stalls_reported_explicitly"] {
        let s = registry.status(name).unwrap();
        assert!(s.stale && !s.healthy, "{s:?}");
        assert_eq!(s.restarts, 0);
    }
    let s = registry.status("stalls_restarted").unwrap();
    assert_eq!(s.failures.stalls, 1, "{s:?}");
    sleep(Duration::from_secs(2)).await; // its 1 s backoff
    let s = registry.status("stalls_restarted").unwrap();
    assert_eq!((s.restarts, s.state), (1, TaskState::Running), "{s:?}");
}

#[supervised(grace = "2s")]
async fn ignores_cancellation_briefly() {
    loop {
        sleep(SEC).await;
    }
}

#[supervised]
async fn ignores_cancellation() {
    loop {
        sleep(SEC).await;
    }
}

#[tokio::test(start_paused = true)]
async fn grace_bounds_the_wait_for_a_task_that_ignores_cancellation() {
    let registry = Registry::new();
    let (short, h_short) = start(ignores_cancellation_briefly(), &registry);
    let (default, h_default) = start(ignores_cancellation(), &registry);
    sleep(ms(500)).await;
    let t0 = Instant::now();
    short.cancel();
    default.cancel();
    assert_eq!(h_short.await.unwrap(), Exit::Cancelled);
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
    assert_eq!(h_default.await.unwrap(), Exit::Cancelled);
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
}

#[test]
fn a_fn_with_no_heartbeat_site_is_marked_heartbeat_less() {
    // No loop the attribute instruments and no usable `Context`: readiness
    // must not wait for a beat that can never come.
    assert!(!no_context(Arc::default()).spec().expects_heartbeat());
    assert!(!wildcard_context().spec().expects_heartbeat());
    assert!(!manual_loop_without_context().spec().expects_heartbeat());
    assert!(!nested::public_task().spec().expects_heartbeat());
    // An instrumented loop, or a `Context` to call `heartbeat` on.
    assert!(ticks_every_second().spec().expects_heartbeat());
    assert!(beating_loop().spec().expects_heartbeat());
    assert!(manual_loop().spec().expects_heartbeat());
    assert!(context_in_the_middle(1, String::new(), Arc::default())
        .spec()
        .expects_heartbeat());
}

#[supervised(blocking_after = "250ms")]
async fn with_blocking_after(ctx: Context) {
    ctx.heartbeat();
}

#[test]
fn blocking_after_reaches_the_spec() {
    assert_eq!(
        with_blocking_after().spec().get_blocking_after(),
        Duration::from_millis(250)
    );
    assert_eq!(
        ticks_every_second().spec().get_blocking_after(),
        Duration::from_secs(1)
    );
}
