//! Singleton tasks on a lease, on tokio's paused clock with the in-process
//! lease store: standby, handover, loss of the store, fencing tokens.

mod support;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervised_core::lease::Memory;
use supervised_core::{
    CancellationToken, Context, Exit, FailureKind, GaveUp, Group, ManualClock, Registry, Spec,
    Task, TaskState,
};
use support::settle;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(10);

/// Counts the attempts running at once, across replicas, and the most ever.
#[derive(Default)]
struct Leaders {
    now: AtomicU32,
    most: AtomicU32,
    tokens: Mutex<Vec<u64>>,
}

impl Leaders {
    fn enter(&self, token: Option<u64>) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.tokens
            .lock()
            .unwrap()
            .push(token.expect("a singleton has a token"));
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Leaving<'a>(&'a Leaders);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// A singleton that beats every 100 ms until cancelled, counted in `leaders`.
fn replica(
    registry: &Registry,
    lease: Memory,
    leaders: &Arc<Leaders>,
    token: &CancellationToken,
) -> tokio::task::JoinHandle<Exit> {
    let leaders = leaders.clone();
    Spec::new("scheduler")
        .singleton(lease)
        .registry(registry)
        .stale_after(Duration::from_secs(1))
        .spawn(token.clone(), move |ctx: Context| {
            let leaders = leaders.clone();
            async move {
                leaders.enter(ctx.fencing_token());
                let _leaving = Leaving(&leaders);
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    tokio::select! {
                        _ = ctx.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        })
}

fn state(registry: &Registry) -> TaskState {
    registry.status("scheduler").unwrap().state
}

#[tokio::test(start_paused = true)]
async fn one_replica_runs_the_other_is_a_healthy_standby() {
    let (a, b) = (Registry::new(), Registry::new());
    let store = Memory::new("replica-a");
    let leaders = Arc::new(Leaders::default());
    let token = CancellationToken::new();
    replica(&a, store.clone(), &leaders, &token);
    settle().await;
    replica(&b, store.replica("replica-b"), &leaders, &token);
    tokio::time::sleep(Duration::from_secs(5)).await;

    let (sa, sb) = (
        a.status("scheduler").unwrap(),
        b.status("scheduler").unwrap(),
    );
    assert_eq!(sa.state, TaskState::Running);
    let lease = sa.lease.unwrap();
    assert!(lease.leader);
    assert_eq!(lease.fencing_token, Some(1));
    assert_eq!(lease.standby_reason, None);

    assert_eq!(sb.state, TaskState::Standby);
    assert!(sb.healthy, "a standby is healthy: {sb:?}");
    assert!(!sb.stale, "a standby does not beat and is not stale");
    assert!(
        !sb.awaits_first_beat(),
        "readiness does not wait for a standby"
    );
    let lease = sb.lease.unwrap();
    assert!(!lease.leader);
    assert_eq!(
        lease.standby_reason.as_deref(),
        Some("lease held by replica-a")
    );
    let threshold = Duration::from_secs(1);
    assert_eq!(b.is_healthy(&["scheduler"], threshold), (true, vec![]));
    assert_eq!(a.is_healthy(&["scheduler"], threshold), (true, vec![]));
    assert_eq!(leaders.most.load(Ordering::SeqCst), 1);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_graceful_stop_hands_over_within_one_acquire_interval() {
    let (a, b) = (Registry::new(), Registry::new());
    let store = Memory::new("replica-a");
    let leaders = Arc::new(Leaders::default());
    let (token_a, token_b) = (CancellationToken::new(), CancellationToken::new());
    let handle_a = replica(&a, store.clone(), &leaders, &token_a);
    settle().await;
    replica(&b, store.replica("replica-b"), &leaders, &token_b);
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(state(&b), TaskState::Standby);

    // b asks at 0, 3.33 s, 6.67 s ...: a's stop at 4.5 s is seen at 6.67 s.
    let stopped = Instant::now();
    token_a.cancel();
    assert_eq!(handle_a.await.unwrap(), Exit::Cancelled);
    assert_eq!(store.holder_of("scheduler"), None, "released at once");
    while state(&b) != TaskState::Running {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = stopped.elapsed();
    assert!(took <= TTL / 3, "handover took {took:?}");
    assert_eq!(
        b.status("scheduler").unwrap().lease.unwrap().fencing_token,
        Some(2)
    );
    assert_eq!(*leaders.tokens.lock().unwrap(), [1, 2]);
    token_b.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_holder_cut_off_from_the_store_is_replaced_within_ttl_and_one_interval() {
    let (a, b) = (Registry::new(), Registry::new());
    let store_a = Memory::new("replica-a");
    let leaders = Arc::new(Leaders::default());
    let token = CancellationToken::new();
    replica(&a, store_a.clone(), &leaders, &token);
    settle().await;
    replica(&b, store_a.replica("replica-b"), &leaders, &token);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // a's network is cut: it can neither renew nor release.
    let cut = Instant::now();
    store_a.set_reachable(false);
    while state(&b) != TaskState::Running {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = cut.elapsed();
    assert!(took <= TTL + TTL / 3, "failover took {took:?}");
    assert!(
        took >= TTL - TTL / 3,
        "taken over before a's lease expired: {took:?}"
    );
    assert_eq!(state(&a), TaskState::Standby);
    let reason = a
        .status("scheduler")
        .unwrap()
        .lease
        .unwrap()
        .standby_reason
        .unwrap();
    assert!(reason.contains("cannot be reached"), "{reason}");
    assert_eq!(leaders.most.load(Ordering::SeqCst), 1);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_cannot_renew_stops_its_attempt_before_the_ttl() {
    let registry = Registry::new();
    let store = Memory::new("replica-a");
    let token = CancellationToken::new();
    let cancelled_at = Arc::new(Mutex::new(None));
    let seen = cancelled_at.clone();
    let start = Instant::now();
    Spec::new("scheduler")
        .singleton(store.clone())
        .registry(&registry)
        .spawn(token.clone(), move |ctx: Context| {
            let seen = seen.clone();
            async move {
                ctx.cancelled().await;
                *seen.lock().unwrap() = Some(Instant::now());
                // Uses all of its grace, and more: it is aborted.
                std::future::pending::<()>().await;
            }
        });
    settle().await;
    assert_eq!(state(&registry), TaskState::Running);
    store.set_available(false);

    // Confirmed at 0; ttl 10 s, margin 1 s, grace min(5 s, 2.5 s): cancelled
    // at 6.5 s, aborted at 9 s, before the store's expiry at 10 s.
    tokio::time::sleep(Duration::from_millis(9_001)).await;
    assert_eq!(
        cancelled_at.lock().unwrap().map(|at| at - start),
        Some(Duration::from_millis(6_500))
    );
    let status = registry.status("scheduler").unwrap();
    assert_eq!(status.state, TaskState::Standby);
    assert!(status.healthy);
    assert_eq!(status.restarts, 0, "losing the lease is not a failure");
    let reason = status.lease.unwrap().standby_reason.unwrap();
    assert!(reason.starts_with("lease store error"), "{reason}");

    // The store comes back: the task takes the lease again, with a new token.
    store.set_available(true);
    tokio::time::sleep(TTL).await;
    let status = registry.status("scheduler").unwrap();
    assert_eq!(status.state, TaskState::Running);
    assert_eq!(status.lease.unwrap().fencing_token, Some(2));
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_failure_releases_the_lease_for_another_replica() {
    let (a, b) = (Registry::new(), Registry::new());
    let store = Memory::new("replica-a");
    let token = CancellationToken::new();
    let fail = Arc::new(AtomicU32::new(1));
    let fails = fail.clone();
    Spec::new("scheduler")
        .singleton(store.clone())
        .registry(&a)
        .backoff(support::constant(Duration::from_secs(30)))
        .spawn(token.clone(), move |ctx: Context| {
            let fails = fails.clone();
            async move {
                if fails.swap(0, Ordering::SeqCst) == 1 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    panic!("bad data");
                }
                ctx.cancelled().await;
            }
        });
    settle().await;
    let leaders = Arc::new(Leaders::default());
    replica(&b, store.replica("replica-b"), &leaders, &token);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(state(&a), TaskState::BackingOff);
    assert_eq!(state(&b), TaskState::Running);
    // a's restart after its backoff finds the lease held.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(state(&a), TaskState::Standby);
    let a_status = a.status("scheduler").unwrap();
    assert_eq!(
        a_status.restarts, 0,
        "no attempt started: the lease was held"
    );
    assert_eq!(a_status.failures.panics, 1);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn never_two_leaders_and_tokens_only_grow() {
    let store = Memory::new("r0").ttl(Duration::from_secs(3));
    let leaders = Arc::new(Leaders::default());
    let registries: Vec<Registry> = (0..3).map(|_| Registry::new()).collect();
    let mut tokens: Vec<CancellationToken> = Vec::new();
    let mut handles = Vec::new();
    for (i, registry) in registries.iter().enumerate() {
        let token = CancellationToken::new();
        handles.push(replica(
            registry,
            store.replica(format!("r{i}")),
            &leaders,
            &token,
        ));
        tokens.push(token);
    }
    let mut rng = support::Rng(7);
    let samples = AtomicU64::new(0);
    for step in 0..1_200 {
        // Sampled every 50 ms throughout.
        tokio::time::sleep(Duration::from_millis(50)).await;
        samples.fetch_add(1, Ordering::Relaxed);
        let running = registries
            .iter()
            .filter(|r| {
                r.status("scheduler")
                    .is_some_and(|s| s.state == TaskState::Running)
            })
            .count();
        assert!(running <= 1, "{running} replicas running at step {step}");
        assert!(leaders.now.load(Ordering::SeqCst) <= 1);
        match rng.below(40) {
            0 => store.set_available(false),
            1 | 2 => store.set_available(true),
            3 => {
                // A replica dies and a new one starts in its place.
                let i = rng.below(3) as usize;
                handles[i].abort();
                settle().await;
                tokens[i] = CancellationToken::new();
                registries[i].forget("scheduler");
                handles[i] = replica(
                    &registries[i],
                    store.replica(format!("r{i}-{step}")),
                    &leaders,
                    &tokens[i],
                );
            }
            _ => {}
        }
    }
    store.set_available(true);
    assert_eq!(leaders.most.load(Ordering::SeqCst), 1);
    let tokens_seen = leaders.tokens.lock().unwrap().clone();
    assert!(tokens_seen.len() > 3, "few handovers: {tokens_seen:?}");
    assert!(
        tokens_seen.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens not increasing: {tokens_seen:?}"
    );
    for token in tokens {
        token.cancel();
    }
}

#[tokio::test(start_paused = true)]
async fn a_singleton_without_a_lease_does_not_run() {
    let registry = Registry::new();
    let ran = Arc::new(AtomicU32::new(0));
    let counted = ran.clone();
    let exit = Spec::new("scheduler")
        .singleton_from_group()
        .registry(&registry)
        .run(CancellationToken::new(), move |_ctx: Context| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        })
        .await;
    match exit {
        Exit::Failed {
            reason, failure, ..
        } => {
            assert_eq!(reason, GaveUp::NoLease);
            assert_eq!(failure.kind, FailureKind::NoLease);
            assert!(
                failure.message.contains("spawn_all!(lease = "),
                "{}",
                failure.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(registry.status("scheduler").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_group_gives_its_lease_to_its_singletons_only() {
    let (a, b) = (Registry::new(), Registry::new());
    let store = Memory::new("replica-a");
    let mut groups = Vec::new();
    for (registry, lease) in [(&a, store.clone()), (&b, store.replica("replica-b"))] {
        let mut group = Group::new().with_lease(lease);
        group.spawn(Task::new(
            Spec::new("scheduler")
                .singleton_from_group()
                .registry(registry),
            |ctx: Context| async move { ctx.cancelled().await },
        ));
        group.spawn(Task::new(
            Spec::new("relay").registry(registry),
            |ctx: Context| async move { ctx.cancelled().await },
        ));
        groups.push(group);
        settle().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state(&a), TaskState::Running);
    assert_eq!(state(&b), TaskState::Standby);
    for registry in [&a, &b] {
        let relay = registry.status("relay").unwrap();
        assert_eq!(relay.state, TaskState::Running);
        assert_eq!(relay.lease, None);
    }
    assert!(groups.iter().all(Group::is_healthy));
    for group in groups {
        group.shutdown(Duration::from_secs(5)).await;
    }
    assert_eq!(store.holder_of("scheduler"), None);
}

#[tokio::test(start_paused = true)]
async fn a_long_standby_is_not_stale_when_it_takes_over() {
    let clock = ManualClock::new();
    let registry = Registry::with_clock(clock.clone());
    let store = Memory::new("replica-a");
    let token = CancellationToken::new();
    Spec::new("scheduler")
        .singleton(store.clone())
        .registry(&registry)
        .stale_after(Duration::from_secs(1))
        .spawn(token.clone(), |ctx: Context| async move {
            loop {
                // The first beat comes half a second into the attempt.
                tokio::time::sleep(Duration::from_millis(500)).await;
                ctx.heartbeat();
            }
            #[allow(unreachable_code)]
            ()
        });
    // Leads and beats for 2 s.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        clock.advance(Duration::from_millis(100));
    }
    assert_eq!(state(&registry), TaskState::Running);
    // The store goes away for a minute: a standby, never stale.
    store.set_available(false);
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        clock.advance(Duration::from_millis(100));
        let status = registry.status("scheduler").unwrap();
        if status.state == TaskState::Standby {
            assert!(!status.stale && status.healthy, "{status:?}");
        }
    }
    assert_eq!(state(&registry), TaskState::Standby);
    // Back: it takes the lease; its silence counts from then, not from its
    // last beat a minute ago.
    store.set_available(true);
    while state(&registry) != TaskState::Running {
        tokio::time::sleep(Duration::from_millis(100)).await;
        clock.advance(Duration::from_millis(100));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    clock.advance(Duration::from_millis(200));
    let status = registry.status("scheduler").unwrap();
    assert_eq!(status.state, TaskState::Running);
    assert!(!status.stale, "{status:?}");
    token.cancel();
}

/// A supervisor dropped while its attempt blocks its thread: the grant is
/// kept until the attempt is dropped, then released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_supervisor_releases_the_lease_once_its_attempt_is_dropped() {
    let registry = Registry::new();
    let store = Memory::new("replica-a");
    let (blocking_tx, blocking_rx) = std::sync::mpsc::channel();
    let handle = Spec::new("scheduler")
        .singleton(store.clone())
        .registry(&registry)
        .spawn(CancellationToken::new(), move |_ctx: Context| {
            let blocking = blocking_tx.clone();
            async move {
                let _ = blocking.send(());
                std::thread::sleep(Duration::from_millis(300));
            }
        });
    tokio::task::spawn_blocking(move || blocking_rx.recv().unwrap())
        .await
        .unwrap();
    handle.abort();
    let _ = handle.await;
    // The attempt still runs: the grant stays.
    assert_eq!(store.holder_of("scheduler").as_deref(), Some("replica-a"));
    assert_eq!(state(&registry), TaskState::Stopping);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.holder_of("scheduler").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was never released"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state(&registry), TaskState::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn losing_the_lease_is_not_a_failure_nor_counted_by_the_restart_limit() {
    let registry = Registry::new();
    let store = Memory::new("replica-a");
    let token = CancellationToken::new();
    let fail = Arc::new(AtomicU32::new(0));
    let fails = fail.clone();
    let handle = Spec::new("scheduler")
        .singleton(store.clone())
        .registry(&registry)
        .backoff(support::constant(Duration::from_secs(1)))
        .max_restarts(1, Duration::from_secs(600))
        .spawn(token.clone(), move |ctx: Context| {
            let fails = fails.clone();
            async move {
                if fails.swap(0, Ordering::SeqCst) == 1 {
                    panic!("one bad tick");
                }
                ctx.cancelled().await;
            }
        });
    settle().await;
    // The store goes away and comes back three times.
    for _ in 0..3 {
        store.set_reachable(false);
        tokio::time::sleep(TTL).await;
        assert_eq!(state(&registry), TaskState::Standby);
        store.set_reachable(true);
        tokio::time::sleep(TTL).await;
        assert_eq!(state(&registry), TaskState::Running);
    }
    let status = registry.status("scheduler").unwrap();
    assert!(
        status.healthy && status.last_failure.is_none(),
        "{status:?}"
    );
    // One real failure is within a limit of one restart.
    fail.store(1, Ordering::SeqCst);
    store.set_reachable(false);
    tokio::time::sleep(TTL).await;
    store.set_reachable(true);
    tokio::time::sleep(TTL).await;
    let status = registry.status("scheduler").unwrap();
    assert_eq!(status.failures.panics, 1);
    assert_eq!(status.state, TaskState::Running, "gave up: {status:?}");
    token.cancel();
    assert_eq!(handle.await.unwrap(), Exit::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_singleton_is_a_standby_until_it_has_its_lease() {
    let registry = Registry::new();
    let store = Memory::new("replica-a");
    store.set_available(false);
    let token = CancellationToken::new();
    Spec::new("scheduler")
        .singleton(store.clone())
        .registry(&registry)
        .spawn(token.clone(), |ctx: Context| async move {
            ctx.cancelled().await;
        });
    // Registered, not yet polled: nothing runs, and it says so.
    let status = registry.status("scheduler").unwrap();
    assert_eq!(status.state, TaskState::Standby);
    assert_eq!(
        status.lease.unwrap().standby_reason.as_deref(),
        Some("waiting for the lease")
    );
    settle().await;
    assert_eq!(state(&registry), TaskState::Standby);
    token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_standby_that_takes_over_is_fresh_and_ready_before_its_first_beat() {
    let (a, b) = (Registry::new(), Registry::new());
    let store = Memory::new("replica-a");
    let leaders = Arc::new(Leaders::default());
    let token_a = CancellationToken::new();
    replica(&a, store.clone(), &leaders, &token_a);
    settle().await;
    // b never beats before it leads: its first beat comes 500 ms in.
    let token_b = CancellationToken::new();
    Spec::new("scheduler")
        .singleton(store.replica("replica-b"))
        .registry(&b)
        .spawn(token_b.clone(), |ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            while !ctx.is_cancelled() {
                ctx.heartbeat();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!b.status("scheduler").unwrap().awaits_first_beat());
    token_a.cancel();
    while state(&b) != TaskState::Running {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = b.status("scheduler").unwrap();
    assert_eq!(status.last_tick, None);
    assert!(
        !status.awaits_first_beat(),
        "readiness flapped on takeover: {status:?}"
    );
    assert_eq!(
        b.is_healthy(&["scheduler"], Duration::from_secs(1)),
        (true, vec![])
    );
    token_b.cancel();
}
