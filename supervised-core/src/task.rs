//! A supervised fn packaged as a value: what `#[supervised]` turns an async fn
//! into.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::registry::{Entry, Registry};
use crate::run::{Control, Exit, IntoOutcome, Spec, TaskOutput};

/// The future of one attempt, boxed, with its outcome as output. Not public
/// API.
#[doc(hidden)]
pub type BoxedAttempt = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;
/// A task's registry and entry, once registered.
pub(crate) type Registered = Option<(Registry, Arc<Entry>)>;
type Factory = Box<dyn FnMut(Context) -> BoxedAttempt + Send + 'static>;

/// A supervised task, ready to run: its [`Spec`] and a factory that makes one
/// future per attempt.
///
/// `#[supervised]` fns return one; [`Group::spawn`](crate::Group::spawn) and
/// `spawn_all!` start several.
///
/// ```
/// use supervised_core::{CancellationToken, Context, Exit, Spec, Task};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let task = Task::new(Spec::new("once"), |ctx: Context| async move {
///     ctx.heartbeat();
/// });
/// assert_eq!(task.name(), "once");
/// assert_eq!(task.run(CancellationToken::new()).await, Exit::Completed);
/// # }
/// ```
#[must_use = "a `Task` does nothing until it is run or spawned"]
pub struct Task {
    spec: Spec,
    factory: Factory,
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("spec", &self.spec).finish()
    }
}

impl Task {
    /// Packages `f` under `spec`: `f` makes the future of each attempt.
    ///
    /// The futures' output is a [`TaskOutput`]. A closure whose `async`
    /// block never returns needs its output type written out from edition
    /// 2024 on (see [the never-type trap](TaskOutput#the-never-type-trap-in-hand-written-closures)):
    ///
    /// ```
    /// use supervised_core::{Context, Spec, Task};
    ///
    /// let task = Task::new(Spec::new("forever"), |ctx: Context| async move {
    ///     loop {
    ///         ctx.heartbeat();
    ///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    ///     }
    ///     #[allow(unreachable_code)]
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// # drop(task);
    /// ```
    pub fn new<F, Fut>(spec: Spec, mut f: F) -> Task
    where
        F: FnMut(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        Task {
            spec,
            factory: Box::new(move |ctx| Box::pin(IntoOutcome::new(f(ctx)))),
        }
    }

    /// Packages `factory`, whose futures already give the outcome of an
    /// attempt. Used by the code `#[supervised]` generates, which checks the
    /// fn's return type once, at the return type, and boxes the factory
    /// itself, so that this fn is compiled once, not once per fn. Not public
    /// API.
    #[doc(hidden)]
    pub fn from_outcomes(
        spec: Spec,
        factory: Box<dyn FnMut(Context) -> BoxedAttempt + Send + 'static>,
    ) -> Task {
        Task { spec, factory }
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        self.spec.name()
    }

    /// The task's policy.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The same task under another name, e.g. to run one `#[supervised]` fn
    /// twice in a group.
    ///
    /// ```
    /// use supervised_core::{Context, Spec, Task};
    ///
    /// let task = Task::new(Spec::new("shard"), |_ctx: Context| async {});
    /// assert_eq!(task.named("shard-2").name(), "shard-2");
    /// ```
    pub fn named(self, name: impl Into<String>) -> Task {
        self.with_spec(|spec| spec.with_name(name))
    }

    /// Makes the task a singleton on `lease`: see [`Spec::singleton`].
    pub fn with_lease<L: crate::lease::Lease>(self, lease: L) -> Task {
        self.with_spec(|spec| spec.singleton(lease))
    }

    /// Changes the task's policy, e.g. to record it in another registry.
    pub fn with_spec(mut self, f: impl FnOnce(Spec) -> Spec) -> Task {
        self.spec = f(self.spec);
        self
    }

    /// Supervises the task on the current tokio task until it completes, is
    /// cancelled through `token` or gives up; see [`Spec::run`].
    pub fn run(self, token: CancellationToken) -> impl Future<Output = Exit> + Send + 'static {
        self.spec.run(token, self.factory)
    }

    /// [`Task::run`] on a new tokio task. The task is in the registry when
    /// this returns.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`].
    pub fn spawn(self, token: CancellationToken) -> JoinHandle<Exit> {
        self.start(token).1
    }

    /// [`Task::spawn`], also returning the task's registry entry (`None` when
    /// its name was taken).
    pub(crate) fn start(
        self,
        token: CancellationToken,
    ) -> (Option<(Registry, Arc<Entry>)>, JoinHandle<Exit>) {
        self.spec.start(token, self.factory)
    }

    /// Registers the task as a member of a group now (see
    /// [`Spec::member`]) and returns its supervisor, to be spawned, which
    /// gives the task back at the end; `Err` with the exit and the task when
    /// it cannot run (its name is taken).
    #[allow(clippy::type_complexity)]
    pub(crate) fn member(
        self,
        token: CancellationToken,
        control: Arc<Control>,
        parent: Option<&Arc<Entry>>,
    ) -> (
        Registered,
        Result<impl Future<Output = (Exit, Task)> + Send + 'static, (Exit, Task)>,
    ) {
        let (registered, supervisor) = self.spec.member(token, control, parent, self.factory);
        let supervisor = supervisor
            .map(|fut| GivesBack { fut })
            .map_err(|(exit, spec, factory)| (exit, Task { spec, factory }));
        (registered, supervisor)
    }
}

pin_project_lite::pin_project! {
    /// A group member's supervisor, giving its task back at the end. A
    /// plain adapter, not an `async` block, so that the supervisor is kept
    /// once; no more than the supervisor, since its size decides how many
    /// bytes the member's tokio task takes.
    struct GivesBack<F> {
        #[pin]
        fut: F,
    }
}

impl<F> Future for GivesBack<F>
where
    F: Future<Output = (Exit, Spec, Factory)>,
{
    type Output = (Exit, Task);

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let (exit, spec, factory) = std::task::ready!(self.project().fut.poll(cx));
        std::task::Poll::Ready((exit, Task { spec, factory }))
    }
}
