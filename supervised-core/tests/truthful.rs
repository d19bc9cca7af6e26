//! Health is never reported better than it is: a task that is dead,
//! crash-looping, silent or stuck is shown as such. One test per way the
//! runtime could otherwise say "healthy" about a task that is not. Everything
//! runs on tokio's paused clock, so every instant asserted is exact.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervised_core::{
    CancellationToken, Context, Exit, FailureKind, GaveUp, Group, OnStale, Registry, RestartPolicy,
    Spec, Task, TaskState,
};
use tokio::time::{sleep, Instant};

mod support;

use support::{constant, settle};

const S: Duration = Duration::from_secs(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Panics; typed `()` so that bodies calling it return `()`, not `!`.
fn fail(message: &str) {
    panic!("{message}")
}

/// `resume_unwind`, typed `()`.
fn rethrow(payload: Box<dyn std::any::Any + Send>) {
    resume_unwind(payload)
}

fn spec(name: &str) -> (Registry, Spec) {
    let registry = Registry::new();
    let spec = Spec::new(name).registry(&registry);
    (registry, spec)
}

// 1. A panic in the attempt factory -------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_factory_fails_that_attempt_and_restarts_with_backoff() {
    let (registry, spec) = spec("factory");
    let token = CancellationToken::new();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let line = Arc::new(AtomicU32::new(0));
    let l = line.clone();
    let t0 = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let st = starts.clone();
    let task = spec.spawn(token.clone(), move |ctx: Context| {
        st.lock().unwrap().push(t0.elapsed());
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            // Like `pool.get().unwrap()` before the async block.
            l.store(line!() + 1, Ordering::SeqCst);
            panic!("no connection in the pool");
        }
        async move {
            while !ctx.is_cancelled() {
                ctx.heartbeat();
                sleep(S).await;
            }
        }
    });
    sleep(Duration::from_millis(1500)).await;
    let status = registry.status("factory").unwrap();
    assert_eq!(status.state, TaskState::Running, "{status:?}");
    assert_eq!((status.attempt, status.restarts), (2, 1));
    assert_eq!(status.failures.panics, 1);
    let failure = status.last_failure.unwrap();
    assert_eq!(failure.kind, FailureKind::Panic);
    assert_eq!(failure.message, "no connection in the pool");
    assert_eq!(failure.attempt, 1);
    let location = failure.location.expect("the factory panic's location");
    assert!(
        location.contains(&format!("truthful.rs:{}:", line.load(Ordering::SeqCst))),
        "{location}"
    );
    // The restart came after the first backoff, exactly.
    assert_eq!(*starts.lock().unwrap(), [Duration::ZERO, S]);
    assert!(status.healthy);

    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
}

// 2. "Never beat" is observable -----------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_task_that_never_beat_has_no_last_tick_and_is_stale_by_name() {
    let (registry, spec) = spec("quiet");
    let token = CancellationToken::new();
    let task = spec.spawn(token.clone(), |ctx: Context| async move {
        ctx.cancelled().await;
    });
    settle().await;
    let status = registry.status("quiet").unwrap();
    assert_eq!(status.state, TaskState::Running);
    assert_eq!(status.last_tick, None);
    assert_eq!(status.since_last_tick, None);
    assert!(status.awaits_first_beat());
    assert_eq!(registry.last_tick("quiet"), None);
    assert!(!registry.snapshot().contains_key("quiet"));
    // The Go rule: never beat = stale.
    assert_eq!(
        registry.is_healthy(&["quiet"], secs(3600)),
        (false, vec!["quiet".to_owned()])
    );
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_task_declared_without_heartbeat_is_not_awaited_but_still_stale_by_name() {
    let (registry, spec) = spec("oneshot");
    let token = CancellationToken::new();
    let spec = spec.without_heartbeat();
    assert!(!spec.expects_heartbeat());
    let task = spec.spawn(token.clone(), |_ctx: Context| std::future::pending::<()>());
    settle().await;
    let status = registry.status("oneshot").unwrap();
    assert!(!status.expects_heartbeat);
    assert!(!status.awaits_first_beat());
    assert!(status.healthy);
    assert_eq!(status.last_tick, None);
    assert!(!registry.is_healthy(&["oneshot"], secs(3600)).0);
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_new_attempt_gets_its_whole_stale_after_before_it_counts_as_stalled() {
    // Backoff (20 s) far longer than stale_after (5 s): the task is stale while
    // it backs off, but the next attempt is measured from its own start.
    let (registry, spec) = spec("slow-start");
    let spec = spec
        .stale_after(secs(5))
        .on_stale(OnStale::Restart)
        .backoff(constant(secs(20)));
    let token = CancellationToken::new();
    let task = spec.spawn(token.clone(), |ctx: Context| async move {
        if ctx.attempt() == 1 {
            ctx.heartbeat();
            return Err::<(), _>("first attempt fails");
        }
        // Beats 4 s after starting: within its stale_after.
        sleep(secs(4)).await;
        loop {
            ctx.heartbeat();
            sleep(S).await;
        }
    });
    sleep(secs(10)).await;
    let status = registry.status("slow-start").unwrap();
    assert_eq!(status.state, TaskState::BackingOff);
    assert!(status.stale && !status.healthy, "{status:?}");
    sleep(secs(13)).await; // t = 23 s: attempt 2 started at 20 s, beat at 24 s
    let status = registry.status("slow-start").unwrap();
    assert_eq!((status.state, status.attempt), (TaskState::Running, 2));
    assert!(status.stale, "not beaten yet since the failure: {status:?}");
    sleep(secs(3)).await; // t = 26 s
    let status = registry.status("slow-start").unwrap();
    assert_eq!(status.attempt, 2);
    assert_eq!(status.failures.stalls, 0, "{status:?}");
    assert!(!status.stale && status.healthy, "{status:?}");
    token.cancel();
    task.await.unwrap();
}

// 3. A crash loop looks unhealthy ----------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_task_failing_every_attempt_before_beating_becomes_stale() {
    let (registry, spec) = spec("crashloop");
    let spec = spec.stale_after(secs(3));
    let token = CancellationToken::new();
    let task = spec.spawn(token.clone(), |_ctx: Context| async move {
        Err::<(), _>("bad row for tenant 13")
    });
    // Attempts at 0, 1, 3, 7 s (backoff 1, 2, 4 s).
    sleep(Duration::from_millis(2500)).await;
    let status = registry.status("crashloop").unwrap();
    assert_eq!(status.state, TaskState::BackingOff);
    assert!(!status.stale, "within stale_after of its start: {status:?}");

    sleep(S).await; // t = 3.5 s: still never beat
    let status = registry.status("crashloop").unwrap();
    assert!(status.stale && !status.healthy, "{status:?}");
    sleep(secs(4)).await; // t = 7.5 s, in every state in between
    let status = registry.status("crashloop").unwrap();
    assert!(status.stale && !status.healthy, "{status:?}");
    assert_eq!(status.failures.errors, 4);
    token.cancel();
    task.await.unwrap();
    // A final state is not stale.
    assert!(!registry.status("crashloop").unwrap().stale);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_beat_once_then_crash_loops_is_stale_from_its_last_beat() {
    let (registry, spec) = spec("beat-then-crash");
    let spec = spec.stale_after(secs(10)).backoff(constant(secs(2)));
    let token = CancellationToken::new();
    let task = spec.spawn(token.clone(), |ctx: Context| async move {
        if ctx.attempt() == 1 {
            ctx.heartbeat();
            sleep(secs(5)).await;
        }
        Err::<(), _>("downstream is gone")
    });
    sleep(secs(9)).await; // failed at 5 s, again at 7 s and 9 s
    let status = registry.status("beat-then-crash").unwrap();
    assert!(!status.stale && status.failures.errors >= 2, "{status:?}");
    // No beat since 0 s. The watchdog samples every stale_after / 10 = 1 s,
    // so it first sees the beat at 1 s and finds 10 s exceeded at 12 s.
    sleep(Duration::from_millis(3500)).await; // t = 12.5 s
    let status = registry.status("beat-then-crash").unwrap();
    assert!(status.stale && !status.healthy, "{status:?}");
    token.cancel();
    task.await.unwrap();
}

// 4. A leaked Context does not keep a successor fresh --------------------------

#[tokio::test(start_paused = true)]
async fn a_context_kept_past_its_attempt_beats_nothing() {
    let (registry, spec) = spec("leaky");
    let spec = spec.stale_after(secs(3));
    let token = CancellationToken::new();
    let leaked_beats = Arc::new(AtomicU32::new(0));
    let lb = leaked_beats.clone();
    let task = spec.spawn(token.clone(), move |ctx: Context| {
        let lb = lb.clone();
        async move {
            if ctx.attempt() == 1 {
                let leaked = ctx.clone();
                // A plain tokio::spawn, not ctx.spawn: it outlives the attempt.
                tokio::spawn(async move {
                    loop {
                        leaked.heartbeat();
                        lb.fetch_add(1, Ordering::SeqCst);
                        sleep(Duration::from_millis(100)).await;
                    }
                });
                ctx.heartbeat();
                return Err("attempt 1 fails");
            }
            // Attempt 2 is stuck and never beats.
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    sleep(secs(6)).await;
    assert!(leaked_beats.load(Ordering::SeqCst) > 50);
    let status = registry.status("leaky").unwrap();
    assert_eq!((status.state, status.attempt), (TaskState::Running, 2));
    assert!(status.stale && !status.healthy, "{status:?}");
    token.cancel();
    task.await.unwrap();
}

// 5. Attempts never overlap ----------------------------------------------------

/// Counts live attempt futures, and the most ever alive at once.
#[derive(Clone, Default)]
struct Live {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    /// Attempt futures alive when the factory was called.
    at_factory: Arc<Mutex<Vec<usize>>>,
}

struct Alive(Live);

impl Live {
    fn enter(&self) -> Alive {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        Alive(self.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_attempt_is_dropped_before_its_replacement_is_made() {
    let (registry, spec) = spec("overlap");
    let spec = spec
        .stale_after(secs(2))
        .on_stale(OnStale::Restart)
        .backoff(constant(Duration::ZERO));
    let token = CancellationToken::new();
    let live = Live::default();
    let l = live.clone();
    let task = spec.spawn(token.clone(), move |ctx: Context| {
        l.at_factory
            .lock()
            .unwrap()
            .push(l.now.load(Ordering::SeqCst));
        let alive = l.enter();
        let child_alive = l.enter();
        async move {
            let _alive = alive;
            // A child of the attempt must be gone too.
            ctx.spawn(async move {
                let _child_alive = child_alive;
                std::future::pending::<()>().await;
            });
            ctx.heartbeat();
            std::future::pending::<()>().await;
        }
    });
    sleep(secs(10)).await;
    let status = registry.status("overlap").unwrap();
    assert!(status.failures.stalls >= 2, "{status:?}");
    let at_factory = live.at_factory.lock().unwrap().clone();
    assert!(at_factory.len() >= 3, "{at_factory:?}");
    assert!(
        at_factory.iter().all(|n| *n == 0),
        "attempt futures alive when the next one was made: {at_factory:?}"
    );
    assert_eq!(
        live.most.load(Ordering::SeqCst),
        2,
        "one attempt and its child"
    );
    token.cancel();
    task.await.unwrap();
    assert_eq!(live.now.load(Ordering::SeqCst), 0);
}

// 6. Cancellation resolves only after the attempt is dropped -------------------

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn cancellation_returns_after_the_attempt_and_its_children_are_dropped() {
    for ignores_token in [true, false] {
        let (registry, spec) = spec("holder");
        let token = CancellationToken::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let child_dropped = Arc::new(AtomicBool::new(false));
        let (d, cd) = (dropped.clone(), child_dropped.clone());
        // Run inline: the exit is seen in the same poll in which the
        // supervisor returns, before any other task runs.
        let task = spec.grace(S).run(token.clone(), move |ctx: Context| {
            let socket = SetOnDrop(d.clone());
            let child_socket = SetOnDrop(cd.clone());
            async move {
                let _socket = socket;
                ctx.spawn(async move {
                    let _child_socket = child_socket;
                    std::future::pending::<()>().await;
                });
                ctx.heartbeat();
                if ignores_token {
                    std::future::pending::<()>().await;
                }
                ctx.cancelled().await;
            }
        });
        let canceller = token.clone();
        tokio::spawn(async move {
            sleep(S).await;
            canceller.cancel();
        });
        let exit = task.await;
        assert_eq!(exit, Exit::Cancelled);
        assert!(
            dropped.load(Ordering::SeqCst),
            "attempt still alive at {exit}"
        );
        assert!(child_dropped.load(Ordering::SeqCst), "child still alive");
        assert_eq!(
            registry.status("holder").unwrap().state,
            TaskState::Cancelled
        );
    }
}

#[tokio::test(start_paused = true)]
async fn group_shutdown_is_a_hard_bound_and_aborts_what_is_left() {
    let registry = Registry::new();
    let mut group = Group::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    group.spawn(Task::new(
        Spec::new("polite").registry(&registry),
        |ctx: Context| async move { ctx.cancelled().await },
    ));
    group.spawn(Task::new(
        Spec::new("deaf").registry(&registry).grace(secs(3600)),
        move |ctx: Context| {
            let guard = SetOnDrop(d.clone());
            async move {
                let _guard = guard;
                ctx.heartbeat();
                std::future::pending::<()>().await;
            }
        },
    ));
    settle().await;
    let t0 = Instant::now();
    let exits = group.shutdown(secs(2)).await;
    assert_eq!(t0.elapsed(), secs(2));
    assert_eq!(
        exits,
        [
            ("polite".to_owned(), Exit::Cancelled),
            // Still in its own grace at the group's deadline: aborted there,
            // and dropped at once, since it was only awaiting.
            ("deaf".to_owned(), Exit::Cancelled)
        ]
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "dropped before shutdown returned"
    );
    assert_eq!(registry.status("deaf").unwrap().state, TaskState::Cancelled);
}

// 7. A task's token is its own -------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cancelling_ctx_token_stops_that_task_only() {
    let registry = Registry::new();
    let mut group = Group::new();
    for name in ["quitter", "sibling"] {
        group.spawn(Task::new(
            Spec::new(name).registry(&registry),
            |ctx: Context| async move {
                loop {
                    ctx.heartbeat();
                    if ctx.name() == "quitter" && ctx.attempt() == 1 {
                        sleep(S).await;
                        ctx.token().cancel();
                    }
                    tokio::select! {
                        _ = ctx.cancelled() => return,
                        _ = sleep(S) => {}
                    }
                }
            },
        ));
    }
    sleep(secs(5)).await;
    assert!(!group.token().is_cancelled());
    assert_eq!(
        registry.status("quitter").unwrap().state,
        TaskState::Cancelled
    );
    assert_eq!(
        registry.status("sibling").unwrap().state,
        TaskState::Running
    );
    let exits = group.shutdown(S).await;
    assert_eq!(
        exits,
        [
            ("quitter".to_owned(), Exit::Cancelled),
            ("sibling".to_owned(), Exit::Cancelled)
        ]
    );
}

// 8. Dropping a Group cancels its members --------------------------------------

fn idle(registry: &Registry, name: &str) -> Task {
    Task::new(
        Spec::new(name).registry(registry),
        |ctx: Context| async move {
            loop {
                ctx.heartbeat();
                tokio::select! {
                    _ = ctx.cancelled() => return,
                    _ = sleep(S) => {}
                }
            }
        },
    )
}

#[tokio::test(start_paused = true)]
async fn dropping_a_group_cancels_its_members_and_detach_keeps_them() {
    let registry = Registry::new();
    let mut group = Group::new();
    group.spawn(idle(&registry, "dropped"));
    settle().await;
    drop(group);
    settle().await;
    assert_eq!(
        registry.status("dropped").unwrap().state,
        TaskState::Cancelled
    );

    let parent = CancellationToken::new();
    let mut group = Group::with_token(parent.clone());
    group.spawn(idle(&registry, "detached"));
    group.detach();
    sleep(secs(3)).await;
    assert_eq!(
        registry.status("detached").unwrap().state,
        TaskState::Running
    );
    parent.cancel();
    settle().await;
    assert_eq!(
        registry.status("detached").unwrap().state,
        TaskState::Cancelled
    );
}

// 9. A group reads its own members ----------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_member_that_never_ran_is_unhealthy_whatever_holds_its_name() {
    let registry = Registry::new();
    let outsider = CancellationToken::new();
    let holder = idle(&registry, "shared-name").spawn(outsider.clone());
    settle().await;
    let mut group = Group::new();
    group.spawn(idle(&registry, "shared-name"));
    settle().await;
    assert!(registry.status("shared-name").unwrap().healthy);
    assert!(!group.is_healthy(), "its member never ran");
    outsider.cancel();
    holder.await.unwrap();
    let exits = group.shutdown(S).await;
    assert!(matches!(
        &exits[0].1,
        Exit::Failed {
            reason: GaveUp::NameTaken,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_name_was_taken_over_keeps_its_own_health() {
    let registry = Registry::new();
    let mut group = Group::new();
    group.spawn(Task::new(
        Spec::new("taken-over")
            .registry(&registry)
            .restart(RestartPolicy::Never),
        |_ctx: Context| async move { Err::<(), _>("gave up") },
    ));
    settle().await;
    assert!(!group.is_healthy());
    // Another task takes the name of the one that ended.
    let token = CancellationToken::new();
    let newcomer = idle(&registry, "taken-over").spawn(token.clone());
    settle().await;
    assert!(registry.status("taken-over").unwrap().healthy);
    assert!(!group.is_healthy(), "the group's member still gave up");
    token.cancel();
    newcomer.await.unwrap();
}

// 10. Failures racing cancellation and escalation -------------------------------

#[tokio::test(start_paused = true)]
async fn a_failure_during_cancellation_is_counted_and_kept() {
    let (registry, spec) = spec("flush");
    let token = CancellationToken::new();
    let task = spec.spawn(token.clone(), |ctx: Context| async move {
        ctx.heartbeat();
        ctx.cancelled().await;
        Err::<(), _>("final flush failed")
    });
    settle().await;
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
    let status = registry.status("flush").unwrap();
    assert_eq!(status.state, TaskState::Cancelled);
    assert_eq!(status.failures.errors, 1);
    assert_eq!(status.last_failure.unwrap().message, "final flush failed");
}

#[tokio::test(start_paused = true)]
async fn a_panic_during_cancellation_is_counted_and_kept() {
    let (registry, spec) = spec("flush-panic");
    let token = CancellationToken::new();
    let task = spec.spawn(token.clone(), |ctx: Context| async move {
        ctx.heartbeat();
        ctx.cancelled().await;
        fail("poisoned during shutdown");
    });
    settle().await;
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
    let status = registry.status("flush-panic").unwrap();
    assert_eq!(status.failures.panics, 1);
    assert_eq!(status.last_failure.unwrap().kind, FailureKind::Panic);
}

#[tokio::test(start_paused = true)]
async fn a_name_taken_give_up_escalates() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let first = idle(&registry, "singleton").spawn(token.clone());
    settle().await;
    let parent = CancellationToken::new();
    let exit = Spec::new("singleton")
        .registry(&registry)
        .escalate_to(parent.clone())
        .run(CancellationToken::new(), |_ctx: Context| async {})
        .await;
    assert!(matches!(
        exit,
        Exit::Failed {
            reason: GaveUp::NameTaken,
            ..
        }
    ));
    assert!(parent.is_cancelled(), "every give-up escalates");
    token.cancel();
    first.await.unwrap();
}

// 11. Panic locations belong to the panic that ended the attempt -----------------

#[tokio::test(start_paused = true)]
async fn resume_unwind_does_not_borrow_an_earlier_caught_panics_location() {
    let (registry, spec) = spec("rethrow");
    let token = CancellationToken::new();
    let task =
        spec.restart(RestartPolicy::Never)
            .spawn(token.clone(), |_ctx: Context| async move {
                // A panic the task catches itself ...
                let caught = catch_unwind(|| panic!("handled inside"));
                assert!(caught.is_err());
                sleep(S).await;
                // ... then a payload raised without the hook.
                rethrow(Box::new("raised without a hook"));
            });
    let exit = task.await.unwrap();
    assert!(exit.is_failed());
    let failure = registry.status("rethrow").unwrap().last_failure.unwrap();
    assert_eq!(failure.message, "raised without a hook");
    assert_eq!(failure.location, None, "{failure:?}");
}

#[tokio::test(start_paused = true)]
async fn resume_unwind_of_a_caught_payload_keeps_its_own_location() {
    let (registry, spec) = spec("rethrow-same");
    let token = CancellationToken::new();
    static LINE: AtomicU32 = AtomicU32::new(0);
    let task =
        spec.restart(RestartPolicy::Never)
            .spawn(token.clone(), |_ctx: Context| async move {
                let caught = catch_unwind(AssertUnwindSafe(|| {
                    LINE.store(line!() + 1, Ordering::SeqCst);
                    panic!("rethrown as is");
                }));
                rethrow(caught.unwrap_err());
            });
    task.await.unwrap();
    let failure = registry
        .status("rethrow-same")
        .unwrap()
        .last_failure
        .unwrap();
    assert_eq!(failure.message, "rethrown as is");
    let location = failure.location.unwrap();
    let line = LINE.load(Ordering::SeqCst);
    assert!(
        location.contains(&format!("truthful.rs:{line}:")),
        "{location}"
    );
}

/// A field whose destructor panics internally and catches it (a panic while
/// unwinding must not escape a destructor), as some cleanup code does.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        let _ = catch_unwind(|| fail("bomb went off in drop"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_destructor_does_not_take_the_first_panics_location() {
    let (registry, spec) = spec("bomb");
    let token = CancellationToken::new();
    static LINE: AtomicU32 = AtomicU32::new(0);
    let task =
        spec.restart(RestartPolicy::Never)
            .spawn(token.clone(), |_ctx: Context| async move {
                let bomb = Bomb;
                sleep(S).await; // `bomb` is now a field of the future
                if bomb_armed() {
                    LINE.store(line!() + 1, Ordering::SeqCst);
                    panic!("the first panic");
                }
                drop(bomb);
            });
    task.await.unwrap();
    let failure = registry.status("bomb").unwrap().last_failure.unwrap();
    assert_eq!(failure.message, "the first panic");
    let location = failure.location.unwrap();
    let line = LINE.load(Ordering::SeqCst);
    assert!(
        location.contains(&format!("truthful.rs:{line}:")),
        "{location}"
    );
}

fn bomb_armed() -> bool {
    true
}

// 12. The restart window counts attempt starts -----------------------------------

#[tokio::test(start_paused = true)]
async fn a_window_never_holding_two_restarts_does_not_give_up() {
    // One restart allowed per 5 s; restarts come every 10 s.
    let (registry, spec) = spec("sparse");
    let token = CancellationToken::new();
    let task = spec
        .backoff(constant(secs(10)))
        .max_restarts(1, secs(5))
        .spawn(token.clone(), |_ctx: Context| async move {
            Err::<(), _>("always")
        });
    sleep(secs(35)).await;
    let status = registry.status("sparse").unwrap();
    assert_eq!(status.state, TaskState::BackingOff, "{status:?}");
    assert_eq!(status.attempt, 4);
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_window_that_would_hold_two_restarts_gives_up_at_the_failure() {
    // One restart allowed per 15 s; restarts would start at 10 s and 20 s.
    let (registry, spec) = spec("dense");
    let token = CancellationToken::new();
    let t0 = Instant::now();
    let exit = spec
        .backoff(constant(secs(10)))
        .max_restarts(1, secs(15))
        .run(token, |_ctx: Context| async move { Err::<(), _>("always") })
        .await;
    assert_eq!(t0.elapsed(), secs(10), "gave up at the second failure");
    assert!(matches!(
        exit,
        Exit::Failed {
            reason: GaveUp::RestartLimit {
                max_restarts: 1,
                ..
            },
            ..
        }
    ));
    assert_eq!(registry.status("dense").unwrap().restarts, 1);
}
