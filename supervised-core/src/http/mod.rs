//! Liveness and probe endpoints on [axum] (feature `http`).
//!
//! [`Endpoints`] turns a [`Registry`] into routes that operators, Kubernetes and
//! monitoring tools can read:
//!
//! | route | answers |
//! |---|---|
//! | `GET /admin/` | the status page: one self-contained HTML page (no task data in it, so no token needed to load it) showing every task, refreshed from `/admin/liveness` every 2 s; open `/admin/#token=<token>` (the fragment never reaches the server) or type the token in the page; `GET /admin` redirects here |
//! | `GET /admin/liveness` | JSON detail of every task (token required in bearer mode) |
//! | `GET /admin/events` | the registry's [lifecycle events](crate::Registry::subscribe) as Server-Sent Events: `event: started` (`failed`, `backing_off`, `restarting`, `stopped`, and `lagged` with the number missed by a slow reader), `data:` one JSON object (`task`, `attempt`, `at`, `kind`, and `failure`, `delay_seconds`, `cause` or `exit` as they apply); a comment every [`EVENTS_KEEP_ALIVE`]; each open stream holds one of the server's connections ([`Endpoints::max_connections`]) until the reader goes away or the server stops (token required in bearer mode) |
//! | `GET /livez`, `GET /livez/<name>` | liveness probe, kube-apiserver text format |
//! | `GET /readyz`, `GET /readyz/<name>` | readiness probe, kube-apiserver text format |
//! | `GET /health` | `application/health+json` (IETF draft) |
//! | `GET /metrics` | Prometheus text format (feature `metrics` too; token required in bearer mode) |
//!
//! # Access
//!
//! There is no default: [`Endpoints::new`] returns an [`EndpointsBuilder`] that
//! only becomes [`Endpoints`] through an explicit choice.
//!
//! * [`EndpointsBuilder::bearer_token`]: `/admin/liveness` and `/metrics` answer
//!   `401` with a JSON error unless the request carries
//!   `Authorization: Bearer <token>` (compared in constant time). The probes and
//!   `/health` answer everyone, as Kubernetes probes send no credentials, but
//!   show the reason of a failing check only to callers with the token; others
//!   read `failed: reason withheld`.
//! * [`EndpointsBuilder::unauthenticated`]: every route answers everyone, and
//!   failure reasons are withheld from everyone (they can contain data from
//!   panic messages and errors) unless [`Endpoints::expose_failure_messages`]
//!   says otherwise, e.g. on a developer's machine.
//!
//! # Checks
//!
//! Every supervised task ([`Registry::tasks`]) is one check, named after the task.
//!
//! * **Liveness** fails for a task that is stale past its `stale_after` (in
//!   any state before it ends: running, backing off, stopping), that blocks
//!   its worker thread past its `blocking_after`, or that has
//!   [failed](crate::TaskState::Failed) (given up).
//! * **Readiness** also fails for a task that has not beaten once by itself
//!   yet (unless it was declared without heartbeats, or has ended), and has
//!   one more check, `shutdown`, that fails from the moment the token given to
//!   [`Endpoints::not_ready_after`] is cancelled.
//!
//! Names that only receive [`heartbeat`](crate::heartbeat) calls have no policy
//! and no threshold, so they cannot fail a probe; they are listed by
//! `/admin/liveness` with the state `"unsupervised"`.
//!
//! # Errors
//!
//! A method other than `GET` (or `HEAD`) answers `405` with an `Allow` header;
//! an unknown check name `404`; a query longer than [`MAX_QUERY_LEN`] bytes or
//! with broken percent-encoding `400`. Errors produced here have a JSON body
//! `{"error": "<code>", "detail": "<sentence>"}`. Unknown paths answer `404`
//! (with a JSON body under [`Endpoints::serve`]; inside an application's own
//! router, its fallback applies).
//!
//! ```no_run
//! use supervised_core::http::Endpoints;
//! use supervised_core::{CancellationToken, Registry};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let shutdown = CancellationToken::new();
//! let endpoints = Endpoints::new(Registry::global())
//!     .bearer_token(std::env::var("ADMIN_TOKEN").expect("ADMIN_TOKEN"))
//!     .not_ready_after(shutdown.clone());
//!
//! // Either merge the routes into an application's router ...
//! let app: axum::Router = axum::Router::new().merge(endpoints.router());
//! # drop(app);
//! // ... or serve them on their own.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! endpoints.serve(listener, shutdown).await
//! # }
//! ```

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

mod auth;
mod events;
mod health;
mod liveness;
mod page;
mod probes;
#[cfg(feature = "metrics")]
mod prometheus;
mod query;
mod respond;
mod server;
mod time;

use respond::Reject;

pub use events::EVENTS_KEEP_ALIVE;
pub use server::ACCEPT_RETRY;

/// The longest query string accepted, in bytes; a longer one answers `400`.
pub const MAX_QUERY_LEN: usize = 4096;

/// How long a connection may wait for the complete headers of a request, by
/// default: see [`Endpoints::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a keep-alive connection may sit idle, by default: see
/// [`Endpoints::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many connections are served at once, by default: see
/// [`Endpoints::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// How long requests in flight get after shutdown, by default: see
/// [`Endpoints::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The longest value the server's durations take: longer ones are cut to
/// this (a day), so that no deadline overflows.
pub const MAX_SERVER_DURATION: Duration = Duration::from_secs(86_400);

/// The shortest bearer token [`EndpointsBuilder::bearer_token`] accepts, in
/// bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// How many `exclude` parameters a probe accepts; more answer `400`.
pub const MAX_EXCLUDES: usize = 64;

/// The first step of building [`Endpoints`]: choose how callers are
/// authorised. See the [module docs](self#access).
#[derive(Debug)]
#[must_use = "choose `bearer_token` or `unauthenticated` to get the endpoints"]
pub struct EndpointsBuilder {
    registry: Registry,
}

impl EndpointsBuilder {
    /// Callers of `/admin/liveness` and `/metrics` must send
    /// `Authorization: Bearer <token>`; only they see failure reasons on the
    /// probes.
    ///
    /// # Panics
    ///
    /// When `token` is empty, shorter than [`MIN_TOKEN_LEN`] bytes, or
    /// contains characters that cannot appear in an HTTP header (control
    /// characters): such a token would either be guessed, let anyone in or
    /// let no one in.
    pub fn bearer_token(self, token: impl Into<String>) -> Endpoints {
        let token = token.into();
        assert!(
            !token.trim().is_empty(),
            "supervised::http: the bearer token is empty; refusing to serve the admin endpoints without a secret"
        );
        assert!(
            token.len() >= MIN_TOKEN_LEN,
            "supervised::http: the bearer token has {} bytes; use at least {MIN_TOKEN_LEN} \
             (e.g. 32 random hex digits: `openssl rand -hex 16`)",
            token.len()
        );
        assert!(
            HeaderValue::from_str(&token).is_ok() && token.trim() == token,
            "supervised::http: the bearer token contains characters not allowed in an HTTP header"
        );
        Endpoints::build(self.registry, Access::Token(token.into_bytes().into()))
    }

    /// Every route answers every caller. Failure reasons are withheld unless
    /// [`Endpoints::expose_failure_messages`] is called.
    pub fn unauthenticated(self) -> Endpoints {
        Endpoints::build(self.registry, Access::Open)
    }
}

enum Access {
    Token(Box<[u8]>),
    Open,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Token(_) => f.write_str("BearerToken(..)"),
            Access::Open => f.write_str("Unauthenticated"),
        }
    }
}

/// The liveness, probe and metrics routes over one [`Registry`]. Cheap to
/// clone. Made by [`Endpoints::new`]; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Endpoints {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    registry: Registry,
    access: Access,
    shutdown: Option<CancellationToken>,
    expose_failure_messages: bool,
    limits: server::Limits,
    #[cfg(feature = "metrics")]
    metrics: Option<Arc<prometheus_client::registry::Registry>>,
}

impl Shared {
    fn new(registry: Registry, access: Access) -> Shared {
        Shared {
            registry,
            access,
            shutdown: None,
            expose_failure_messages: false,
            limits: server::Limits::default(),
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }
}

impl Endpoints {
    /// Starts building the endpoints over `registry`
    /// ([`Registry::global`] for the process-wide one). The access choice
    /// comes next.
    // Returns the builder on purpose: there is no `Endpoints` without an
    // access choice.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(registry: &Registry) -> EndpointsBuilder {
        EndpointsBuilder {
            registry: registry.clone(),
        }
    }

    fn build(registry: Registry, access: Access) -> Endpoints {
        Endpoints {
            shared: Arc::new(Shared::new(registry, access)),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        self.edit_in_place(f);
        self
    }

    fn edit_in_place(&mut self, f: impl FnOnce(&mut Shared)) {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => f(shared),
            None => {
                let old = &*self.shared;
                let mut copy = Shared {
                    registry: old.registry.clone(),
                    access: match &old.access {
                        Access::Token(t) => Access::Token(t.clone()),
                        Access::Open => Access::Open,
                    },
                    shutdown: old.shutdown.clone(),
                    expose_failure_messages: old.expose_failure_messages,
                    limits: old.limits,
                    #[cfg(feature = "metrics")]
                    metrics: old.metrics.clone(),
                };
                f(&mut copy);
                self.shared = Arc::new(copy);
            }
        }
    }

    /// Readiness fails (check `shutdown`) from the moment `token` is cancelled,
    /// so that a load balancer stops sending traffic while the service drains.
    /// Usually the token whose cancellation starts the service's shutdown.
    pub fn not_ready_after(self, token: CancellationToken) -> Self {
        self.edit(|s| s.shutdown = Some(token))
    }

    /// The readiness drain in one call: readiness fails (check `shutdown`)
    /// from the moment `signal` is cancelled while liveness stays as it is,
    /// and the returned token is cancelled `period` later: give it to the
    /// tasks (`Group::with_token`, `spawn_all!(token = ..; ..)`), so they stop
    /// only after load balancers have stopped sending traffic. See
    /// [`drain`](crate::drain) for the token alone. Call it inside a tokio
    /// runtime.
    ///
    /// ```
    /// use std::time::Duration;
    /// use supervised_core::http::Endpoints;
    /// use supervised_core::{CancellationToken, Group, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let shutdown = CancellationToken::new(); // cancelled on SIGTERM
    /// let mut endpoints = Endpoints::new(Registry::global()).bearer_token("0123456789abcdef0123");
    /// let tasks = endpoints.drain(shutdown.clone(), Duration::from_secs(5));
    /// let group = Group::with_token(tasks);
    /// # drop((endpoints, group));
    /// # }
    /// ```
    pub fn drain(&mut self, signal: CancellationToken, period: Duration) -> CancellationToken {
        let tasks = crate::drain(&signal, period);
        self.edit_in_place(|s| s.shutdown = Some(signal));
        tasks
    }

    /// Shows failure reasons and messages to every caller. Only meaningful with
    /// [`EndpointsBuilder::unauthenticated`] (with a bearer token, callers that
    /// send it always see them); meant for development setups.
    pub fn expose_failure_messages(self) -> Self {
        self.edit(|s| s.expose_failure_messages = true)
    }

    /// Serves this Prometheus registry on `/metrics` instead of one holding only
    /// the task metrics. Register the task collector into it with
    /// [`metrics::register`](crate::metrics::register) to keep them.
    #[cfg(feature = "metrics")]
    pub fn metrics_registry(self, registry: Arc<prometheus_client::registry::Registry>) -> Self {
        self.edit(|s| s.metrics = Some(registry))
    }

    /// The routes, to merge into an application's router (`app.merge(..)`) or
    /// nest under a prefix. Has no fallback of its own, so that merging never
    /// conflicts with the application's.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let router = Router::new()
            .route("/admin", get(page::to_page))
            .route("/admin/", get(page::page))
            .route("/admin/liveness", get(liveness::admin_liveness))
            .route("/admin/events", get(events::admin_events))
            .route("/livez", get(probes::livez))
            .route("/livez/{name}", get(probes::livez_one))
            .route("/readyz", get(probes::readyz))
            .route("/readyz/{name}", get(probes::readyz_one))
            .route("/health", get(health::health));
        #[cfg(feature = "metrics")]
        let router = router.route("/metrics", get(prometheus::metrics));
        router
            .layer(axum::middleware::map_response(respond::harden))
            .with_state(self.shared.clone())
    }

    /// The longest a connection may wait for the complete headers of a
    /// request, counted from when it starts waiting (on a new connection, or
    /// after the previous response); then it is closed. Bounds a client that
    /// sends half a request. Default [`DEFAULT_HEADER_READ_TIMEOUT`] (10 s).
    /// Used by [`Endpoints::serve`] and [`serve`].
    pub fn header_read_timeout(self, timeout: Duration) -> Self {
        self.edit(|s| s.limits.header_read_timeout = timeout.min(MAX_SERVER_DURATION))
    }

    /// A keep-alive connection with no request in flight that moves no byte
    /// for this long is closed. Default [`DEFAULT_IDLE_TIMEOUT`] (5 s). The
    /// wait for the next request's headers is also bounded by
    /// [`Endpoints::header_read_timeout`]: an idle connection is closed
    /// after the shorter of the two. Zero turns this timeout off.
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.edit(|s| s.limits.idle_timeout = timeout.min(MAX_SERVER_DURATION))
    }

    /// At most this many connections are served at once (at least 1); more
    /// wait in the kernel's accept queue until one closes, and a warning is
    /// logged. Default [`DEFAULT_MAX_CONNECTIONS`] (512): keep it below the
    /// process's descriptor limit.
    pub fn max_connections(self, max: usize) -> Self {
        let max = max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self.edit(|s| s.limits.max_connections = max)
    }

    /// After the shutdown token of [`Endpoints::serve`] is cancelled,
    /// requests in flight get this long; then every connection still open is
    /// closed, half-sent requests included. Default
    /// [`DEFAULT_SHUTDOWN_GRACE`] (1 s).
    pub fn shutdown_grace(self, grace: Duration) -> Self {
        self.edit(|s| s.limits.shutdown_grace = grace.min(MAX_SERVER_DURATION))
    }

    /// Serves the routes on `listener` until `shutdown` is cancelled, then
    /// lets the requests in flight finish within
    /// [`shutdown_grace`](Endpoints::shutdown_grace), closes every connection
    /// and returns. Unknown paths answer `404` with a JSON body.
    ///
    /// The server bounds what a client can hold: headers must arrive within
    /// [`header_read_timeout`](Endpoints::header_read_timeout), idle
    /// keep-alive connections close after
    /// [`idle_timeout`](Endpoints::idle_timeout), at most
    /// [`max_connections`](Endpoints::max_connections) are served at once,
    /// request bodies are refused (`413`), and accept errors (out of
    /// descriptors) are logged and retried after [`ACCEPT_RETRY`].
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let limits = self.shared.limits;
        let app = self.router::<()>().fallback(respond::not_found);
        server::serve(app, listener, shutdown, limits).await
    }
}

/// Binds `addr` and serves `endpoints` on it until `shutdown` is cancelled: the
/// one-call server for applications without an HTTP server of their own. See
/// [`Endpoints::serve`]; bind a [`TcpListener`](tokio::net::TcpListener)
/// yourself to learn the port chosen for port 0.
pub async fn serve(
    addr: impl tokio::net::ToSocketAddrs,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    endpoints.serve(listener, shutdown).await
}
