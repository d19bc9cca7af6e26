//! Tasks that block their worker thread: named while they block (read from
//! outside the runtime, with every worker blocked), counted and logged when
//! the poll returns, and never overlapped by a replacement while blocked.
//! Real time: the blocks are real `std::thread::sleep` calls inside async
//! code, the very thing being reported. Each wait is bounded.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use supervised_core::{
    CancellationToken, Context, Exit, Group, OnStale, Registry, Spec, Task, TaskState, TaskStatus,
};

/// Log lines of the whole test binary (tasks log from worker threads).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Writer(buffer))
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    })
}

struct Writer(&'static Mutex<Vec<u8>>);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `status` from this (non-runtime) thread until `f` holds; panics
/// after 5 s.
fn wait_for(
    registry: &Registry,
    name: &str,
    what: &str,
    f: impl Fn(&TaskStatus) -> bool,
) -> TaskStatus {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = registry.status(name).expect("registered");
        if f(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_poll_blocking_every_worker_is_named_while_it_blocks_then_counted_and_logged() {
    logs();
    let rt = runtime(1);
    let registry = Registry::new();
    let token = CancellationToken::new();
    let handle = {
        let _enter = rt.enter();
        Spec::new("blocker")
            .registry(&registry)
            .blocking_after(Duration::from_millis(100))
            .spawn(token.clone(), |ctx: Context| async move {
                ctx.heartbeat();
                // A synchronous call on the only worker thread.
                std::thread::sleep(Duration::from_millis(600));
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
    };

    // Read from outside the runtime while its only worker is blocked.
    let status = wait_for(&registry, "blocker", "blocked_for", |s| {
        s.blocked_for.is_some()
    });
    assert!(
        status.blocked_for.unwrap() > Duration::from_millis(100),
        "{status:?}"
    );
    assert!(
        !status.healthy,
        "a blocking task is not healthy: {status:?}"
    );
    assert_eq!(status.state, TaskState::Running);
    assert!(!status.stale, "no stale_after: {status:?}");
    #[cfg(feature = "metrics")]
    {
        let text = supervised_core::metrics::render(&registry);
        let gauge = text
            .lines()
            .find(|l| l.starts_with("supervised_task_blocked_seconds{task=\"blocker\"}"))
            .unwrap_or_else(|| panic!("no blocked gauge in\n{text}"));
        let value: f64 = gauge.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value > 0.1, "{gauge}");
        assert!(
            text.contains("supervised_task_up{task=\"blocker\"} 0"),
            "{text}"
        );
    }

    // The poll returns: no longer blocked, counted once, logged with its duration.
    let status = wait_for(&registry, "blocker", "the poll to end", |s| {
        s.blocked_for.is_none() && s.failures.blocked == 1
    });
    assert!(status.healthy, "{status:?}");
    let logs = log_text();
    let line = logs
        .lines()
        .find(|l| l.contains("blocked its worker thread") && l.contains("task=blocker"))
        .unwrap_or_else(|| panic!("no warning in:\n{logs}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("one poll ran for ") && line.contains("blocking_after=100 ms"),
        "{line}"
    );

    token.cancel();
    assert_eq!(rt.block_on(handle).unwrap(), Exit::Cancelled);
}

#[test]
fn a_short_poll_is_never_reported() {
    let rt = runtime(1);
    let registry = Registry::new();
    let token = CancellationToken::new();
    let handle = {
        let _enter = rt.enter();
        Spec::new("brief")
            .registry(&registry)
            .blocking_after(Duration::from_millis(500))
            .spawn(token.clone(), |ctx: Context| async move {
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    std::thread::sleep(Duration::from_millis(20));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
    };
    let deadline = Instant::now() + Duration::from_millis(400);
    while Instant::now() < deadline {
        let status = registry.status("brief").unwrap();
        assert_eq!(status.blocked_for, None, "{status:?}");
        std::thread::sleep(Duration::from_millis(3));
    }
    token.cancel();
    rt.block_on(handle).unwrap();
    assert_eq!(registry.status("brief").unwrap().failures.blocked, 0);
}

#[test]
fn a_stalled_attempt_stuck_in_a_sync_call_is_stopping_and_not_overlapped() {
    let rt = runtime(2);
    let registry = Registry::new();
    let token = CancellationToken::new();
    let first_dropped = Arc::new(AtomicBool::new(false));
    let overlapped = Arc::new(AtomicBool::new(false));
    let (fd, ov) = (first_dropped.clone(), overlapped.clone());
    let handle = {
        let _enter = rt.enter();
        Spec::new("stuck")
            .registry(&registry)
            .stale_after(Duration::from_millis(200))
            .on_stale(OnStale::Restart)
            .backoff_initial(Duration::ZERO)
            .spawn(token.clone(), move |ctx: Context| {
                if ctx.attempt() > 1 && !fd.load(Ordering::SeqCst) {
                    ov.store(true, Ordering::SeqCst);
                }
                let guard = SetOnDrop(fd.clone());
                async move {
                    ctx.heartbeat();
                    if ctx.attempt() == 1 {
                        let _guard = guard;
                        std::thread::sleep(Duration::from_millis(1200));
                        tokio::task::yield_now().await;
                    }
                    while !ctx.is_cancelled() {
                        ctx.heartbeat();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
    };
    // Found stalled by the watchdog on the other worker, aborted, and waited for.
    let status = wait_for(&registry, "stuck", "the stopping state", |s| {
        s.state == TaskState::Stopping
    });
    assert!(!first_dropped.load(Ordering::SeqCst));
    assert_eq!(status.attempt, 1, "{status:?}");
    assert!(status.stale && !status.healthy, "{status:?}");
    assert_eq!(status.failures.stalls, 1);

    // Once the sync call returns, the attempt is dropped; only then the next.
    let status = wait_for(&registry, "stuck", "the next attempt", |s| {
        s.attempt >= 2 && s.state == TaskState::Running && !s.stale
    });
    assert!(first_dropped.load(Ordering::SeqCst));
    assert!(
        !overlapped.load(Ordering::SeqCst),
        "attempt 2 was made while attempt 1 lived"
    );
    assert!(status.healthy, "{status:?}");
    token.cancel();
    assert_eq!(rt.block_on(handle).unwrap(), Exit::Cancelled);
}

#[test]
fn group_shutdown_abandons_a_member_blocked_in_a_sync_call() {
    logs();
    let rt = runtime(2);
    let registry = Registry::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let mut group = Group::new();
    spawn_wedged(&rt, &mut group, &registry, "wedged", &dropped);
    // Shut down from another runtime: a tokio runtime whose worker blocks in
    // a task may not run its timers meanwhile, which is what the registry's
    // own clock reading is for.
    let main = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let exits = main.block_on(group.shutdown(Duration::from_millis(300)));
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t0.elapsed()
    );
    abandoned_then_cancelled(&registry, "wedged", &exits, &dropped);
}

/// As above, in an ordered group, shut down on the members' own runtime:
/// the group's driver waits for the member meanwhile, and must not take the
/// aborted supervisor's drop for the member's end while its attempt is
/// still blocked.
#[test]
fn ordered_group_shutdown_abandons_a_member_blocked_in_a_sync_call() {
    logs();
    let rt = runtime(2);
    let registry = Registry::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let mut group = Group::new().ordered();
    spawn_wedged(&rt, &mut group, &registry, "wedged-in-order", &dropped);
    let exits = rt.block_on(async move {
        tokio::spawn(group.shutdown(Duration::from_millis(300)))
            .await
            .unwrap()
    });
    abandoned_then_cancelled(&registry, "wedged-in-order", &exits, &dropped);
}

/// The member `name` of a group just shut down was abandoned (reported so,
/// logged, still stopping, its attempt not dropped); once its call returns,
/// its attempt is dropped and the task recorded as cancelled.
fn abandoned_then_cancelled(
    registry: &Registry,
    name: &str,
    exits: &[(String, Exit)],
    dropped: &AtomicBool,
) {
    assert_eq!(exits, [(name.to_owned(), Exit::Abandoned)]);
    let status = registry.status(name).unwrap();
    assert_eq!(status.state, TaskState::Stopping, "{status:?}");
    assert!(!dropped.load(Ordering::SeqCst));
    let logs = log_text();
    let tag = format!("task={name}");
    assert!(
        logs.lines()
            .any(|l| l.contains("abandoned") && l.contains(&tag)),
        "{logs}"
    );
    wait_for(registry, name, "cancelled", |s| {
        s.state == TaskState::Cancelled
    });
    assert!(dropped.load(Ordering::SeqCst));
}

/// Spawns into `group`, on `rt`, a member named `name` with a grace of
/// 50 ms whose attempt blocks its thread for 1.5 s in a synchronous call,
/// and returns once it blocks. `dropped` is set when the attempt is
/// dropped.
fn spawn_wedged(
    rt: &tokio::runtime::Runtime,
    group: &mut Group,
    registry: &Registry,
    name: &str,
    dropped: &Arc<AtomicBool>,
) {
    let blocking = Arc::new(AtomicBool::new(false));
    let (b, d) = (blocking.clone(), dropped.clone());
    {
        let _enter = rt.enter();
        group.spawn(Task::new(
            Spec::new(name)
                .registry(registry)
                .grace(Duration::from_millis(50)),
            move |ctx: Context| {
                let guard = SetOnDrop(d.clone());
                let b = b.clone();
                async move {
                    let _guard = guard;
                    ctx.heartbeat();
                    b.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(1500));
                    ctx.cancelled().await;
                }
            },
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !blocking.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
