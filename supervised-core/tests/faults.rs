//! Faults beyond a plain panic: panicking destructors, panics while being
//! cancelled, blocking code, and the panics Rust itself cannot recover from
//! (checked in a child process, which is expected to abort).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use supervised_core::{
    CancellationToken, Context, Exit, FailureKind, OnStale, Registry, RestartPolicy, Spec,
    TaskState,
};

fn fail(message: &str) {
    panic!("{message}")
}

/// Panics when dropped, unless already unwinding.
struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{}", self.0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_future_whose_drop_panics_after_a_clean_return_is_a_failure() {
    let registry = Registry::new();
    let exit = Spec::new("drop-after-ok")
        .registry(&registry)
        .restart(RestartPolicy::Never)
        .run(CancellationToken::new(), |_ctx: Context| {
            let guard = PanicOnDrop("drop of the finished future");
            async move {
                let _keep = &guard;
            }
        })
        .await;
    let Exit::Failed { failure, .. } = exit else {
        panic!("{exit:?}")
    };
    assert_eq!(failure.kind, FailureKind::Panic);
    assert_eq!(failure.message, "drop of the finished future");
}

#[tokio::test(start_paused = true)]
async fn a_future_whose_drop_panics_after_a_panic_reports_the_first_panic() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let task =
        Spec::new("drop-after-panic")
            .registry(&registry)
            .spawn(token.clone(), |ctx: Context| {
                let guard = PanicOnDrop("second, from drop");
                async move {
                    let _keep = &guard;
                    if ctx.attempt() < 3 {
                        fail("first, from the body");
                    }
                    std::mem::forget(guard);
                    ctx.cancelled().await;
                }
            });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = registry.status("drop-after-panic").unwrap();
    assert_eq!((status.state, status.restarts), (TaskState::Running, 2));
    assert_eq!(status.failures.panics, 2);
    assert_eq!(status.last_failure.unwrap().message, "first, from the body");
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_future_whose_drop_panics_is_still_restarted() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let task = Spec::new("drop-on-stall")
        .registry(&registry)
        .stale_after(Duration::from_secs(2))
        .on_stale(OnStale::Restart)
        .spawn(token.clone(), |ctx: Context| {
            let guard = PanicOnDrop("drop of a stalled attempt");
            async move {
                let _keep = &guard;
                if ctx.attempt() == 1 {
                    std::future::pending::<()>().await;
                }
                std::mem::forget(guard);
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let status = registry.status("drop-on-stall").unwrap();
    assert_eq!((status.state, status.restarts), (TaskState::Running, 1));
    assert_eq!(status.failures.stalls, 1);
    assert!(status.healthy);
    token.cancel();
    assert_eq!(task.await.unwrap(), Exit::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_one_task_never_touches_another() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let calm_beats = Arc::new(AtomicU32::new(0));
    let beats = calm_beats.clone();
    let calm = Spec::new("calm")
        .registry(&registry)
        .spawn(token.clone(), move |ctx: Context| {
            let beats = beats.clone();
            async move {
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    beats.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    let wild = Spec::new("wild")
        .registry(&registry)
        .backoff_initial(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(10))
        .spawn(token.clone(), |_ctx: Context| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            fail("wild")
        });
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calm_status = registry.status("calm").unwrap();
    assert_eq!(
        (calm_status.state, calm_status.restarts),
        (TaskState::Running, 0)
    );
    assert_eq!(calm_beats.load(Ordering::SeqCst), 10);
    assert!(registry.status("wild").unwrap().restarts > 500);
    token.cancel();
    assert_eq!(calm.await.unwrap(), Exit::Cancelled);
    assert_eq!(wild.await.unwrap(), Exit::Cancelled);
}

/// A task that blocks its worker thread cannot be dropped, but the registry
/// still reports it stale, on the real clock, while other tasks go on. This
/// test needs real time: the block is a real `std::thread::sleep`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_blocking_its_thread_is_reported_stale_and_others_go_on() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let blocker = Spec::new("blocker")
        .registry(&registry)
        .stale_after(Duration::from_millis(100))
        .grace(Duration::from_millis(50))
        .spawn(token.clone(), |ctx: Context| async move {
            ctx.heartbeat();
            std::thread::sleep(Duration::from_millis(600));
        });
    let other =
        Spec::new("other")
            .registry(&registry)
            .spawn(token.clone(), |ctx: Context| async move {
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = registry.status("blocker").unwrap();
    assert!(status.stale && !status.healthy, "{status:?}");
    assert!(registry.status("other").unwrap().healthy);
    assert!(
        registry
            .is_healthy(&["other"], Duration::from_millis(200))
            .0
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), blocker)
        .await
        .unwrap();
    let _ = other.await;
}

/// Runs `case` of this test binary in a child process and returns its status.
fn child(case: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unrecoverable_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SUPERVISED_UNRECOVERABLE_CASE", case)
        .output()
        .expect("run the child")
}

/// The body of the child processes of [`unrecoverable_panics_abort_the_process`].
#[test]
fn unrecoverable_child() {
    let Ok(case) = std::env::var("SUPERVISED_UNRECOVERABLE_CASE") else {
        return; // Only meaningful in a child process.
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match case.as_str() {
            // A panic inside the application's own panic hook.
            "hook" => {
                std::panic::set_hook(Box::new(|_| panic!("the hook itself panics")));
                // Supervised panics reach the application's hook only when asked.
                supervised_core::forward_supervised_panics(true);
                let _ = Spec::new("hook")
                    .run(CancellationToken::new(), |_ctx: Context| async {
                        fail("first")
                    })
                    .await;
            }
            // A panic in a destructor while unwinding from another panic.
            "double" => {
                let _ = Spec::new("double")
                    .run(CancellationToken::new(), |_ctx: Context| async {
                        struct Bomb;
                        impl Drop for Bomb {
                            fn drop(&mut self) {
                                panic!("panic while unwinding");
                            }
                        }
                        let _bomb = Bomb;
                        fail("first");
                    })
                    .await;
            }
            other => unreachable!("{other}"),
        }
    });
    println!("child survived");
}

#[test]
fn unrecoverable_panics_abort_the_process() {
    if std::env::var("SUPERVISED_UNRECOVERABLE_CASE").is_ok() {
        return;
    }
    for case in ["hook", "double"] {
        let out = child(case);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{case}: {:?}", out.status);
        assert!(!stdout.contains("child survived"), "{case}: {stdout}");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                out.status.signal(),
                Some(6),
                "{case}: SIGABRT expected, {:?}",
                out.status
            );
        }
    }
}
