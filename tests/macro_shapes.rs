//! `#[supervised]` on every fn shape users write: generic fns, `impl Trait`
//! arguments, `self: Arc<Self>` methods, aliased and `Infallible` return
//! types, a renamed `Context` marked `#[context]`, `#[cfg]` parameters and
//! loops in every position; each one run on tokio's paused clock.
//! `#[tracing::instrument]` is in `macro_instrument.rs`.

mod common;

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::start;
use supervised::Context as Ctx;
use supervised::{supervised, Context, Exit, Registry};
use tokio::time::sleep;

const SEC: Duration = Duration::from_secs(1);

// --- generic fns and `impl Trait` arguments --------------------------------

trait Store: Clone + Send + Sync + 'static {
    fn put(&self, n: usize);
}

#[derive(Clone, Default)]
struct Counter(Arc<AtomicUsize>);

impl Store for Counter {
    fn put(&self, n: usize) {
        self.0.fetch_add(n, Ordering::SeqCst);
    }
}

#[supervised(name = "shapes-generic", stale_after = "5s")]
async fn relay<S: Store>(ctx: Context, store: S, batch: usize) {
    while !ctx.is_cancelled() {
        store.put(batch);
        sleep(SEC).await;
    }
}

#[supervised(name = "shapes-where")]
async fn relay_where<S>(store: S)
where
    S: Store,
{
    loop {
        store.put(1);
        sleep(SEC).await;
    }
}

#[supervised(name = "shapes-impl-trait")]
async fn with_impl_trait(store: impl Store, label: impl Into<String> + Clone + Send + 'static) {
    let _label: String = label.into();
    loop {
        store.put(1);
        sleep(SEC).await;
    }
}

#[tokio::test(start_paused = true)]
async fn generic_fns_and_impl_trait_arguments_run() {
    let registry = Registry::new();
    let (a, b, c) = (Counter::default(), Counter::default(), Counter::default());
    start(relay(a.clone(), 10), &registry);
    start(relay_where(b.clone()), &registry);
    start(with_impl_trait(c.clone(), "label"), &registry);
    sleep(Duration::from_millis(3_500)).await;
    assert_eq!(a.0.load(Ordering::SeqCst), 40);
    assert_eq!(b.0.load(Ordering::SeqCst), 4);
    assert_eq!(c.0.load(Ordering::SeqCst), 4);
    for name in ["shapes-generic", "shapes-where", "shapes-impl-trait"] {
        let status = registry.status(name).unwrap();
        assert!(status.last_tick.is_some(), "{name} beats");
    }
    assert!(!registry.status("shapes-generic").unwrap().stale);
}

// --- methods taking `self: Arc<Self>` ---------------------------------------

struct Service {
    polls: AtomicUsize,
    attempts: Mutex<Vec<u32>>,
}

impl Service {
    fn tick(&self) {
        self.polls.fetch_add(1, Ordering::SeqCst);
    }

    /// Polls until the third poll, then fails once.
    #[supervised(name = "shapes-method", backoff_initial = "1s")]
    async fn run(self: Arc<Self>, ctx: Context) -> Result<(), String> {
        self.attempts.lock().unwrap().push(ctx.attempt());
        loop {
            self.tick();
            let me = &self;
            if me.polls.load(Ordering::SeqCst) == 3 && ctx.attempt() == 1 {
                return Err(format!(
                    "failed after {} polls",
                    self.polls.load(Ordering::SeqCst)
                ));
            }
            sleep(SEC).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_method_taking_an_arc_of_self_is_a_task_restarted_with_a_fresh_clone() {
    let registry = Registry::new();
    let service = Arc::new(Service {
        polls: AtomicUsize::new(0),
        attempts: Mutex::new(Vec::new()),
    });
    // Callable as an associated fn and as a method.
    let task = Service::run(service.clone());
    assert_eq!(task.name(), "shapes-method");
    assert_eq!(service.clone().run().name(), "shapes-method");
    start(task, &registry);
    sleep(Duration::from_millis(5_500)).await;
    assert_eq!(*service.attempts.lock().unwrap(), [1, 2]);
    let status = registry.status("shapes-method").unwrap();
    assert_eq!(status.restarts, 1);
    assert_eq!(status.last_failure.unwrap().message, "failed after 3 polls");
    // Three polls in attempt 1 (t = 0, 1, 2 s), then from t = 3 s every second.
    assert_eq!(service.polls.load(Ordering::SeqCst), 6);
}

// --- return types -------------------------------------------------------------

type JobResult = Result<(), io::Error>;

#[supervised(name = "shapes-alias", backoff_initial = "1s")]
async fn aliased(ctx: Context) -> JobResult {
    if ctx.attempt() == 1 {
        return Err(io::Error::other("disk full"));
    }
    Ok(())
}

#[supervised(name = "shapes-infallible")]
async fn never_returns() -> Infallible {
    loop {
        sleep(SEC).await;
    }
}

#[supervised(name = "shapes-only-fails", backoff_initial = "1s", backoff_max = "1s")]
async fn only_fails(ctx: Context) -> Result<Infallible, String> {
    sleep(SEC).await;
    Err(format!("attempt {} failed", ctx.attempt()))
}

#[tokio::test(start_paused = true)]
async fn aliases_and_infallible_return_types_are_tasks() {
    let registry = Registry::new();
    let (_, aliased) = start(aliased(), &registry);
    assert_eq!(aliased.await.unwrap(), Exit::Completed);
    assert_eq!(registry.status("shapes-alias").unwrap().restarts, 1);
    assert_eq!(
        registry
            .status("shapes-alias")
            .unwrap()
            .last_failure
            .unwrap()
            .message,
        "disk full"
    );

    start(never_returns(), &registry);
    start(only_fails(), &registry);
    sleep(Duration::from_millis(4_500)).await;
    let forever = registry.status("shapes-infallible").unwrap();
    assert!(!forever.state.is_final());
    assert_eq!(forever.restarts, 0);
    // Fails at 1 s, restarts at 2 s, fails at 3 s, restarts at 4 s.
    let fails = registry.status("shapes-only-fails").unwrap();
    assert_eq!(fails.restarts, 2);
    assert_eq!(fails.last_failure.unwrap().message, "attempt 2 failed");
}

// --- the `Context` parameter, marked or renamed; `#[cfg]` parameters -------

#[supervised(name = "shapes-marked", stale_after = "5s")]
async fn marked(#[context] runtime: Ctx, label: String) {
    let _ = label;
    loop {
        runtime.heartbeat();
        sleep(SEC).await;
    }
}

#[supervised(name = "shapes-cfg")]
async fn with_cfg(
    #[cfg(any())] compiled_out: u8,
    #[cfg(test)] kept: Arc<AtomicUsize>,
    ctx: Context,
) {
    kept.fetch_add(ctx.attempt() as usize, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn a_marked_context_and_cfg_parameters_are_honoured() {
    let registry = Registry::new();
    start(marked("x".to_owned()), &registry);
    let kept = Arc::new(AtomicUsize::new(0));
    let (_, cfg) = start(with_cfg(kept.clone()), &registry);
    assert_eq!(cfg.await.unwrap(), Exit::Completed);
    assert_eq!(kept.load(Ordering::SeqCst), 1);
    sleep(Duration::from_millis(2_500)).await;
    assert!(!registry.status("shapes-marked").unwrap().stale);
    assert!(marked(String::new()).spec().expects_heartbeat());
}

// --- loops in every position the body reaches ------------------------------

fn beats(registry: &Registry, name: &str) -> Option<Duration> {
    let status = registry.status(name).unwrap();
    status.last_tick.map(|t| t.elapsed().unwrap_or_default())
}

#[supervised(name = "shapes-let-loop", stale_after = "5s", heartbeat = "auto")]
async fn let_loop(seen: Arc<AtomicUsize>) {
    let total = loop {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        if n == usize::MAX {
            break n;
        }
        sleep(SEC).await;
    };
    let _ = total;
}

#[supervised(name = "shapes-match-loop", stale_after = "5s")]
async fn match_loop(mode: u8) {
    match mode {
        0 => loop {
            sleep(SEC).await;
        },
        _ => {
            let mut n = u64::from(mode);
            while n < u64::MAX {
                n += 1;
                sleep(SEC).await;
            }
        }
    }
}

#[supervised(name = "shapes-if-loop", stale_after = "5s")]
async fn if_loop(fast: bool) {
    if fast {
        for _ in 0.. {
            sleep(Duration::from_millis(500)).await;
        }
    } else {
        loop {
            sleep(SEC).await;
        }
    }
}

#[supervised(name = "shapes-labelled-loop", stale_after = "5s")]
async fn labelled_loop() {
    let _ = 'outer: {
        loop {
            sleep(SEC).await;
            if false {
                break 'outer 1;
            }
        }
    };
}

#[tokio::test(start_paused = true)]
async fn loops_in_lets_arms_branches_and_labelled_blocks_beat() {
    let registry = Registry::new();
    start(let_loop(Arc::default()), &registry);
    start(match_loop(1), &registry);
    start(if_loop(false), &registry);
    start(labelled_loop(), &registry);
    sleep(Duration::from_millis(30_100)).await;
    for name in [
        "shapes-let-loop",
        "shapes-match-loop",
        "shapes-if-loop",
        "shapes-labelled-loop",
    ] {
        // Each beat is at most a second old after 30 s: the loop beats.
        let age = beats(&registry, name).unwrap_or_else(|| panic!("{name} never beat"));
        assert!(age <= SEC, "{name}: last beat {age:?} ago");
        assert!(!registry.status(name).unwrap().stale, "{name}");
    }
}
