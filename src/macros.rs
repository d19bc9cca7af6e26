//! `spawn_all!`, the `macro_rules!` front of a procedural macro: it passes
//! `$crate` on, which a procedural macro cannot name by itself.

/// Starts several supervised tasks in one [`Group`](crate::Group) and returns
/// it.
///
/// Each argument is a task: a call of a `#[supervised]` fn, the bare name of
/// one that takes no arguments, or any expression giving a
/// [`Task`](crate::Task). The group's tasks share a cancellation token, a
/// fresh one, or a child of the token given first with `token = expr;`.
///
/// ```
/// use std::time::Duration;
/// use supervised::{spawn_all, supervised, CancellationToken, Context, Exit};
///
/// #[supervised(backoff_max = "10s")]
/// async fn ticker(ctx: Context, every: Duration) {
///     loop {
///         tokio::time::sleep(every).await; // each iteration records a heartbeat
///     }
/// }
///
/// #[supervised(stale_after = "2m")]
/// async fn sweeper() {
///     loop {
///         tokio::time::sleep(Duration::from_secs(60)).await;
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let shutdown = CancellationToken::new();
/// let group = spawn_all!(token = shutdown.clone(); ticker(Duration::from_secs(1)), sweeper);
/// assert_eq!(group.names(), ["ticker", "sweeper"]);
///
/// tokio::time::sleep(Duration::from_secs(90)).await;
/// assert!(group.is_healthy());
///
/// // Cancel everything, wait at most 10 s in all, drop what is still running.
/// let exits = group.shutdown(Duration::from_secs(10)).await;
/// assert!(exits.iter().all(|(_, exit)| *exit == Exit::Cancelled));
/// # }
/// ```
///
/// The `spawn_all!` line replaces this hand-written code:
///
/// ```
/// # use std::time::Duration;
/// # use supervised::{supervised, CancellationToken, Context, Group};
/// # #[supervised]
/// # async fn ticker(ctx: Context, every: Duration) {}
/// # #[supervised]
/// # async fn sweeper() {}
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// # let shutdown = CancellationToken::new();
/// let mut group = Group::with_token(shutdown.clone());
/// group.spawn(ticker(Duration::from_secs(1)));
/// group.spawn(sweeper());
/// # group.shutdown(Duration::from_secs(1)).await;
/// # }
/// ```
///
/// # Group options
///
/// Options come before the tasks, in any order, separated by `,` and ended by
/// `;`. Each is checked when the macro expands.
///
/// | option | meaning |
/// |---|---|
/// | `token = expr` | the tasks stop when this `CancellationToken` is cancelled |
/// | `lease = expr` | the lease store of the group's singletons (`#[supervised(singleton = true)]`), e.g. a [`lease::Postgres`](crate::lease::Postgres) ([`Group::with_lease`](crate::Group::with_lease)) |
/// | `strategy = one_for_one` \| `one_for_all` \| `rest_for_one` | see [`Strategy`](crate::Strategy) |
/// | `ordered` | start in order, each once the previous is ready; stop in reverse ([`Group::ordered`](crate::Group::ordered)) |
/// | `start_timeout = "30s"` | how long an ordered member has to become ready |
/// | `max_restarts = 5, within = "1m"` | give up after more restarts than that ([`Group::with_max_restarts`](crate::Group::with_max_restarts)) |
///
/// ```
/// use std::time::Duration;
/// use supervised::{spawn_all, supervised, Context};
///
/// #[supervised(stale_after = "30s")]
/// async fn db(ctx: Context) {
///     loop {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///     }
/// }
///
/// #[supervised(stale_after = "30s")]
/// async fn api(ctx: Context) {
///     loop {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let group = spawn_all!(
///     ordered, strategy = rest_for_one, max_restarts = 5, within = "1m";
///     db, api,
/// );
/// # group.shutdown(Duration::from_secs(1)).await;
/// # }
/// ```
///
/// A singleton (`#[supervised(singleton = true)]`) runs on one replica of
/// the service at a time, on the group's lease; the other replicas show it
/// as a healthy [`Standby`](crate::TaskState::Standby):
///
/// ```
/// use std::time::Duration;
/// use supervised::lease::Memory;
/// use supervised::{spawn_all, supervised, Context, TaskState};
///
/// #[supervised(singleton = true)]
/// async fn scheduler(ctx: Context) {
///     let _fence = ctx.fencing_token(); // carried by the writes it makes
///     loop {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///     }
/// }
///
/// #[supervised]
/// async fn relay(ctx: Context) {
///     loop {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // In a service: `supervised::lease::Postgres::new(&database_url)?`.
/// let leases = Memory::new("replica-a");
/// let group = spawn_all!(lease = leases.clone(); scheduler, relay);
/// tokio::time::sleep(Duration::from_secs(1)).await;
/// assert_eq!(supervised::status("scheduler").unwrap().state, TaskState::Running);
/// # group.shutdown(Duration::from_secs(1)).await;
/// # }
/// ```
///
/// # Names
///
/// The tasks of a group need different names. Naming the same fn twice is a
/// compile error, since a `#[supervised]` fn's task name is fixed by its
/// attribute:
///
/// ```compile_fail
/// # use supervised::{spawn_all, supervised};
/// # #[supervised]
/// # async fn sweeper() {}
/// # async fn demo() {
/// let group = spawn_all!(sweeper(), sweeper); // error: `sweeper` is spawned twice
/// # }
/// ```
///
/// To run one fn twice, rename the second task: `spawn_all!(shard(1),
/// shard(2).named("shard-2"))`. Two different fns declaring the same `name`
/// cannot be seen from the call site: `spawn_all!` then panics with a message
/// naming both and suggesting `.named(..)`, before starting the second.
///
/// Other mistakes get a compile error that says what to write: the
/// `token = ..;` option after the tasks, tasks separated by `;`, the bare
/// name of a fn that takes arguments, a plain `async fn` call (a future, not
/// a task).
///
/// # Panics
///
/// Outside a tokio runtime, and when two tasks have the same name.
#[macro_export]
macro_rules! spawn_all {
    ($($input:tt)*) => {
        $crate::__private::__spawn_all!([$crate] $($input)*)
    };
}
