//! Fault-injection soak on tokio's paused clock: 2,000 supervised tasks follow
//! seeded random scripts of 1,000 ticks, panicking, returning `Err`, stalling,
//! completing or working normally at each tick. At the end, every count the
//! registry shows must equal what was injected, and shutdown must end every task
//! within its grace.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use supervised_core::{
    Context, Exit, Group, OnStale, Registry, RestartPolicy, Spec, Task, TaskState,
};
use tokio::time::Instant;

mod support;

use support::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Work,
    Panic,
    Error,
    Stall,
    Complete,
}

/// Per-mille chances of each fault at one tick.
fn script(rng: &mut Rng, ticks: usize) -> Vec<Action> {
    (0..ticks)
        .map(|_| match rng.next() % 1000 {
            0..=2 => Action::Panic,
            3..=5 => Action::Error,
            6 => Action::Stall,
            7 if rng.next() % 4 == 0 => Action::Complete,
            _ => Action::Work,
        })
        .collect()
}

/// What one task was scripted to do and how far it got.
struct Script {
    actions: Vec<Action>,
    next: AtomicUsize,
    finished: AtomicBool,
    executed: [AtomicU64; 3],
}

fn fail(message: &str) {
    panic!("{message}")
}

fn task(name: String, script: Arc<Script>, registry: &Registry) -> Task {
    let spec = Spec::new(name)
        .registry(registry)
        .backoff_initial(Duration::from_millis(100))
        .backoff_max(Duration::from_secs(2))
        .stale_after(Duration::from_secs(5))
        .on_stale(OnStale::Restart)
        .restart(RestartPolicy::OnFailure)
        .grace(Duration::from_secs(1));
    Task::new(spec, move |ctx: Context| {
        let script = script.clone();
        async move {
            loop {
                let i = script.next.fetch_add(1, Ordering::SeqCst);
                let Some(&action) = script.actions.get(i) else {
                    // Script done: keep beating until shut down.
                    script.finished.store(true, Ordering::SeqCst);
                    while !ctx.is_cancelled() {
                        ctx.heartbeat();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    return Ok(());
                };
                tokio::time::sleep(Duration::from_secs(1)).await;
                ctx.heartbeat();
                match action {
                    Action::Work => {}
                    Action::Panic => {
                        script.executed[0].fetch_add(1, Ordering::SeqCst);
                        fail("injected panic");
                    }
                    Action::Error => {
                        script.executed[1].fetch_add(1, Ordering::SeqCst);
                        return Err("injected error");
                    }
                    Action::Stall => {
                        script.executed[2].fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }
                    Action::Complete => {
                        script.finished.store(true, Ordering::SeqCst);
                        return Ok(());
                    }
                }
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn two_thousand_tasks_keep_exact_books_under_random_faults() {
    // Keep the output readable: thousands of injected panics.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if supervised_core::panic_message(info.payload()) != "injected panic" {
            default_hook(info)
        }
    }));
    const TASKS: usize = 2_000;
    const TICKS: usize = 1_000;

    let registry = Registry::new();
    let mut rng = Rng(0x5eed_2026);
    let scripts: Vec<Arc<Script>> = (0..TASKS)
        .map(|_| {
            Arc::new(Script {
                actions: script(&mut rng, TICKS),
                next: AtomicUsize::new(0),
                finished: AtomicBool::new(false),
                executed: Default::default(),
            })
        })
        .collect();

    let mut group = Group::new();
    for (i, s) in scripts.iter().enumerate() {
        group.spawn(task(format!("soak-{i:04}"), s.clone(), &registry));
    }

    // Run until every script is done (bounded in simulated time).
    let start = Instant::now();
    while !scripts.iter().all(|s| s.finished.load(Ordering::SeqCst)) {
        assert!(
            start.elapsed() < Duration::from_secs(20_000),
            "soak did not finish"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }

    // The books: every injected fault was seen, nothing else.
    let statuses = registry.tasks();
    assert_eq!(
        statuses.len(),
        TASKS,
        "registry holds exactly the task names"
    );
    let mut totals = [0u64; 4];
    for (i, (status, script)) in statuses.iter().zip(&scripts).enumerate() {
        assert_eq!(status.name, format!("soak-{i:04}"));
        let [panics, errors, stalls] = [0, 1, 2].map(|k| script.executed[k].load(Ordering::SeqCst));
        assert_eq!(status.failures.panics, panics, "{status:?}");
        assert_eq!(status.failures.errors, errors, "{status:?}");
        assert_eq!(status.failures.stalls, stalls, "{status:?}");
        assert_eq!(status.restarts, panics + errors + stalls, "{status:?}");
        let completed_early = script.actions[..script.next.load(Ordering::SeqCst).min(TICKS)]
            .contains(&Action::Complete);
        let want = if completed_early {
            TaskState::Completed
        } else {
            TaskState::Running
        };
        assert_eq!(status.state, want, "{status:?}");
        totals[0] += panics;
        totals[1] += errors;
        totals[2] += stalls;
        totals[3] += u64::from(completed_early);
    }
    println!(
        "soak: {TASKS} tasks x {TICKS} ticks: panics {}, errors {}, stalls {}, completed early {}",
        totals[0], totals[1], totals[2], totals[3]
    );
    // The scripts really did inject every kind of fault, many times.
    assert!(totals.iter().all(|&n| n > 100), "{totals:?}");

    let grace = Duration::from_secs(3);
    let before = Instant::now();
    let exits = group.shutdown(grace).await;
    assert!(before.elapsed() <= grace);
    assert_eq!(exits.len(), TASKS);
    for ((name, exit), status) in exits.iter().zip(registry.tasks()) {
        assert_eq!(*name, status.name);
        match exit {
            Exit::Completed => assert_eq!(status.state, TaskState::Completed),
            Exit::Cancelled => assert_eq!(status.state, TaskState::Cancelled),
            other => panic!("{name}: {other:?}"),
        }
    }
    let _ = std::panic::take_hook();
}
