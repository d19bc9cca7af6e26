//! Keeps the background loops of a tokio service alive and makes their health
//! visible.
//!
//! Put [`#[supervised]`](macro@supervised) on the async fn of a background
//! loop: it is restarted with backoff when it panics or returns `Err`, each
//! iteration of its loop records a heartbeat (no line to write), and its state
//! is in a [`Registry`]. [`spawn_all!`] starts several such tasks in a
//! [`Group`] that shuts down within one bounded grace.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use supervised::{spawn_all, supervised, Context, TaskState};
//!
//! struct Db;
//!
//! /// Sends what is due, once a second.
//! #[supervised(backoff_max = "30s", stale_after = "1m")]
//! async fn scheduler(ctx: Context, db: Arc<Db>) -> anyhow::Result<()> {
//!     loop {
//!         // One tick; an `Err` or a panic here restarts the task after a backoff.
//!         let _db = &db;
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!     }
//! }
//!
//! /// Drops expired sessions, once a minute.
//! #[supervised(restart = "always", max_restarts = 10, within = "1h")]
//! async fn health_sweep() {
//!     loop {
//!         tokio::time::sleep(Duration::from_secs(60)).await;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let db = Arc::new(Db);
//! let group = spawn_all!(scheduler(db.clone()), health_sweep);
//!
//! tokio::time::sleep(Duration::from_secs(120)).await; // the service runs
//! assert!(group.is_healthy());
//! assert_eq!(supervised::status("scheduler").unwrap().state, TaskState::Running);
//!
//! // On shutdown (e.g. after `tokio::signal::ctrl_c()`): cancel every task,
//! // wait at most 10 s in all.
//! let exits = group.shutdown(Duration::from_secs(10)).await;
//! assert!(exits.iter().all(|(_, exit)| exit.is_cancelled()));
//! # }
//! ```
//!
//! Everything the macros generate is plain code of the runtime
//! ([`supervised_core`], re-exported here): [`Task`], [`Spec`], [`Context`],
//! [`Group`]; use them directly for tasks built at run time.
#![warn(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub use supervised_core::*;
/// Turns an `async fn` into a fn returning a supervised [`Task`].
///
/// ```
/// use std::time::Duration;
/// use supervised::{supervised, CancellationToken, Context, Exit};
///
/// #[derive(Clone)]
/// struct Queue;
///
/// /// Relays the queue.
/// #[supervised(name = "relay", backoff_initial = "500ms", stale_after = "30s")]
/// pub async fn relay(ctx: Context, queue: Queue, batch: usize) -> Result<(), String> {
///     let _ = (queue, batch);
///     while !ctx.is_cancelled() {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///     }
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let task = relay(Queue, 100); // the `Context` is supplied by the runtime
/// assert_eq!(task.name(), "relay");
/// let token = CancellationToken::new();
/// let handle = task.spawn(token.clone());
/// token.cancel();
/// assert_eq!(handle.await.unwrap(), Exit::Cancelled);
/// # }
/// ```
///
/// `relay` above is the same as this hand-written fn:
///
/// ```
/// # use std::time::Duration;
/// # use supervised::{Context, Spec, Task};
/// # #[derive(Clone)]
/// # struct Queue;
/// /// Relays the queue.
/// pub fn relay(queue: Queue, batch: usize) -> Task {
///     let spec = Spec::new("relay")
///         .backoff_initial(Duration::from_millis(500))
///         .stale_after(Duration::from_secs(30));
///     Task::new(spec, move |ctx: Context| {
///         // Each attempt gets fresh clones of the arguments.
///         let queue = queue.clone();
///         let batch = batch.clone();
///         async move {
///             let _ = (queue, batch);
///             while !ctx.is_cancelled() {
///                 ctx.heartbeat(); // injected into each loop the body reaches
///                 tokio::time::sleep(Duration::from_secs(1)).await;
///             }
///             Ok::<(), String>(())
///         }
///     })
/// }
/// # assert_eq!(relay(Queue, 1).name(), "relay");
/// ```
///
/// # The fn
///
/// * It must be an `async fn`. Its visibility, docs, attributes, generics
///   (with their bounds and `where` clause) and `impl Trait` arguments are
///   kept; lifetime parameters are not allowed (everything an attempt holds
///   is `'static`).
/// * A parameter whose type is `Context` (or a path ending in `Context`) is
///   supplied by the runtime and removed from the signature. Under another
///   name (`use supervised::Context as Ctx`), mark it: `#[context] ctx: Ctx`;
///   once a parameter is marked, no other is taken for the context, so an
///   application type that happens to be named `Context` can be an argument.
/// * Every other argument must be `Clone + Send + 'static` and is cloned for
///   each attempt, so an attempt starts from the values the fn was called
///   with. A `#[cfg(..)]` on a parameter is honoured.
/// * A method taking `self: Arc<Self>` (or `self` of a `Clone` type) is a
///   task too, called as `Service::run(arc)` or `arc.run()`; each attempt gets
///   a clone of the receiver, which the body names `self` as usual.
/// * It returns `()`, `Result<(), E>`, [`Infallible`](std::convert::Infallible)
///   or `Result<Infallible, E>` with `E: Display + Send + 'static`
///   (`anyhow::Result<()>`, `io::Result<()>`, boxed errors), under any name:
///   aliases work, since the check is the [`TaskOutput`] bound. An `Err` or a
///   panic is a failure. A body that never returns is fine.
///
/// ```
/// use std::sync::Arc;
/// use supervised::{supervised, Context};
///
/// trait Store: Clone + Send + Sync + 'static {}
///
/// #[supervised]
/// async fn relay<S: Store>(ctx: Context, store: S) -> std::io::Result<()> {
///     let _ = (ctx, store);
///     Ok(())
/// }
///
/// struct Poller;
///
/// impl Poller {
///     #[supervised(name = "poller")]
///     async fn run(self: Arc<Self>) {
///         loop {
///             self.poll_once().await;
///         }
///     }
///
///     async fn poll_once(&self) {
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///     }
/// }
///
/// let task = Poller::run(Arc::new(Poller));
/// assert_eq!(task.name(), "poller");
/// ```
///
/// # Injected heartbeat
///
/// Every iteration of each `loop`, `while` and `for` the fn's body reaches
/// without entering another loop, a closure, an async block or a nested item
/// records a heartbeat, at the start of the iteration, so `continue` counts
/// too: statements and the tail, `let v = loop { .. }`, `if`/`else` branches,
/// `match` arms, plain, labelled and `unsafe` blocks. Nested loops pay
/// nothing. Loops in closures, async blocks or inside macros (`select!`) are
/// not seen; code there calls [`Context::heartbeat`] itself.
/// `heartbeat = "manual"` turns injection off. A heartbeat costs a few relaxed
/// atomic operations.
///
/// A fn with `stale_after` but nothing that can beat (no instrumented loop
/// and no `Context` parameter) would always be stale: that is a compile error
/// at `stale_after`, which says what to write. A fn with neither is marked
/// [`Spec::without_heartbeat`]: readiness does not wait for its first beat.
///
/// # Tracing
///
/// Every attempt runs inside a span named `supervised` with the fields
/// `task` and `attempt`, entered by the runtime, so every event the task logs
/// carries them. `#[tracing::instrument]` written *below* `#[supervised]`
/// instruments each attempt: its span is a child of the attempt's span,
/// entered and with its fields recorded for every attempt (the span is named
/// after the fn unless `name = ".."` is given). Written above, it would
/// instrument the call that builds the task: a compile error says to move it.
///
/// ```
/// use supervised::{supervised, Context};
///
/// #[supervised(stale_after = "1m")]
/// #[tracing::instrument(skip(ctx))]
/// async fn relay(ctx: Context, port: u16) {
///     loop {
///         tracing::info!("relaying"); // supervised{task="relay" attempt=1}:relay{port=80}: relaying
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///     }
/// }
/// # let _ = relay(80);
/// ```
///
/// Built with `--cfg tokio_unstable`, each attempt's tokio task is named
/// `<task>#<attempt>`, as tokio-console shows it.
///
/// # Arguments
///
/// All optional. Durations are strings such as `"500ms"`, `"30s"`, `"1m30s"`,
/// `"2h"` (units `ns`, `us`, `ms`, `s`, `m`, `h`, `d`), checked at compile
/// time and greater than zero.
///
/// | key | value | default |
/// |---|---|---|
/// | `name` | the task's name in the registry and logs | the fn's name |
/// | `backoff_initial` | first restart delay | `"1s"` |
/// | `backoff_max` | largest restart delay (not below `backoff_initial`) | `"30s"` |
/// | `jitter` | `"none"`, `"full"` or `"equal"` ([`Jitter`]) | `"none"` |
/// | `reset_after` | run time after which the delay is back to `backoff_initial` | `"1m"` |
/// | `restart` | `"on_failure"`, `"always"` or `"never"` ([`RestartPolicy`]) | `"on_failure"` |
/// | `max_restarts`, `within` | give up after more than `max_restarts` restarts within `within` (both or neither) | no limit |
/// | `stale_after` | no heartbeat for this long (from its start if it never beat) makes the task stale, in every state until it ends | never stale |
/// | `on_stale` | `"report"` or `"restart"` ([`OnStale`]); needs `stale_after` | `"report"` |
/// | `grace` | how long an attempt has to return after cancellation | `"5s"` |
/// | `blocking_after` | one poll running longer blocks its thread: the task is shown blocked ([`Spec::blocking_after`]) | `"1s"` |
/// | `quarantine_initial` | the first quarantine of a key that fails inside [`Context::isolate`] ([`Spec::quarantine`]) | `"1s"` |
/// | `quarantine_max` | the longest quarantine of a key | `"5m"` |
/// | `heartbeat` | `"auto"` or `"manual"`; a fn with no instrumented loop and no `Context` is marked [`Spec::without_heartbeat`] | `"auto"` |
/// | `singleton` | `true`: one replica at a time runs the task, on the lease of the group it is spawned in (`spawn_all!(lease = ...; ...)`, [`Group::with_lease`]; [`Spec::singleton_from_group`]) | `false` |
/// | `crate` | path of this crate when the dependency is renamed, e.g. `"sv"` | `"::supervised"` |
///
/// Knobs that take run-time values ([`Spec::registry`], [`Spec::escalate_to`])
/// are set on the returned task: `task.with_spec(|s| s.registry(&registry))`.
///
/// Mistakes are compile errors pointing at the offending token, all reported
/// at once, and nothing else: the fn the call sites expect (same name and
/// arguments, returning a `Task`) is still emitted, so they add no errors of
/// their own. A syntax error in the body is reported by rustc, once.
///
/// ```compile_fail
/// # use supervised::supervised;
/// #[supervised(backoff_max = "30x")] // error: unknown duration unit `x`
/// async fn sweep() {}
/// ```
pub use supervised_macros::supervised;

/// Items used by the code the macros generate. Not public API.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

mod macros;

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
