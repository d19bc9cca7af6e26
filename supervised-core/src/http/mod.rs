//! Liveness and probe endpoints on [axum] (feature `http`).
//!
//! [`Endpoints`] turns a [`Registry`] into routes that operators, Kubernetes and
//! monitoring tools can read:
//!
//! | route | answers |
//! |---|---|
//! | `GET /admin/` | the status page: one self-contained HTML page (no task data in it, so no token needed to load it) showing every task, refreshed from `/admin/liveness` every 2 s; open `/admin/#token=<token>` (the fragment never reaches the server) or type the token in the page; `GET /admin` redirects here |
//! | `GET /admin/liveness` | JSON detail of every task (token required in bearer mode) |
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
//!   [failed](TaskState::Failed) (given up).
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

use std::fmt::Write as _;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::registry::{Registry, TaskState, TaskStatus};

mod page;
mod server;

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
            shared: Arc::new(Shared {
                registry,
                access,
                shutdown: None,
                expose_failure_messages: false,
                limits: server::Limits::default(),
                #[cfg(feature = "metrics")]
                metrics: None,
            }),
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
            .route("/admin/liveness", get(admin_liveness))
            .route("/livez", get(livez))
            .route("/livez/{name}", get(livez_one))
            .route("/readyz", get(readyz))
            .route("/readyz/{name}", get(readyz_one))
            .route("/health", get(health));
        #[cfg(feature = "metrics")]
        let router = router.route("/metrics", get(metrics));
        router
            .layer(axum::middleware::map_response(harden))
            .with_state(self.shared.clone())
    }

    /// The longest a connection may wait for the complete headers of a
    /// request, counted from when it starts waiting (on a new connection, or
    /// after the previous response); then it is closed. Bounds a client that
    /// sends half a request. Default [`DEFAULT_HEADER_READ_TIMEOUT`] (10 s).
    /// Used by [`Endpoints::serve`] and [`serve`].
    pub fn header_read_timeout(self, timeout: Duration) -> Self {
        self.edit(|s| s.limits.header_read_timeout = timeout)
    }

    /// A keep-alive connection with no request in flight that moves no byte
    /// for this long is closed. Default [`DEFAULT_IDLE_TIMEOUT`] (5 s). The
    /// wait for the next request's headers is also bounded by
    /// [`Endpoints::header_read_timeout`]: an idle connection is closed
    /// after the shorter of the two.
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.edit(|s| s.limits.idle_timeout = timeout)
    }

    /// At most this many connections are served at once (at least 1); more
    /// wait in the kernel's accept queue until one closes, and a warning is
    /// logged. Default [`DEFAULT_MAX_CONNECTIONS`] (512): keep it below the
    /// process's descriptor limit.
    pub fn max_connections(self, max: usize) -> Self {
        self.edit(|s| s.limits.max_connections = max.max(1))
    }

    /// After the shutdown token of [`Endpoints::serve`] is cancelled,
    /// requests in flight get this long; then every connection still open is
    /// closed, half-sent requests included. Default
    /// [`DEFAULT_SHUTDOWN_GRACE`] (1 s).
    pub fn shutdown_grace(self, grace: Duration) -> Self {
        self.edit(|s| s.limits.shutdown_grace = grace)
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
        let app = self.router::<()>().fallback(not_found);
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

// ---------------------------------------------------------------------------
// Access

impl Shared {
    /// `true` when the request carries the configured bearer token.
    fn has_token(&self, headers: &HeaderMap) -> bool {
        let Access::Token(expected) = &self.access else {
            return false;
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some(split) = value.iter().position(|b| *b == b' ') else {
            return false;
        };
        let (scheme, rest) = value.split_at(split);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let given = trim_ascii(rest);
        constant_time_eq(expected, given)
    }

    /// Whether failure reasons may be shown to this caller.
    fn details_for(&self, headers: &HeaderMap) -> bool {
        match self.access {
            Access::Open => self.expose_failure_messages,
            Access::Token(_) => self.has_token(headers),
        }
    }

    /// For the admin routes: `Ok(details)` or the `401` answer.
    fn admit(&self, headers: &HeaderMap) -> Result<bool, Reject> {
        match self.access {
            Access::Open => Ok(self.expose_failure_messages),
            Access::Token(_) if self.has_token(headers) => Ok(true),
            Access::Token(_) => Err(Reject {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized",
                detail: "this endpoint requires `Authorization: Bearer <token>` with a valid token",
            }),
        }
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|t| t.is_cancelled())
    }
}

fn trim_ascii(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// Compares a secret with a candidate in time that depends only on the
/// secret's length, never on where the first difference is.
fn constant_time_eq(secret: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(secret.len() != given.len());
    for (i, s) in secret.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!*s);
        diff |= std::hint::black_box(s ^ g);
    }
    std::hint::black_box(diff) == 0
}

// ---------------------------------------------------------------------------
// Responses

fn error(status: StatusCode, code: &str, detail: &str) -> Response {
    json_response(
        status,
        "application/json",
        &json!({ "error": code, "detail": detail }),
    )
}

/// A refused request, turned into its JSON error response at the end.
#[derive(Debug)]
struct Reject {
    status: StatusCode,
    code: &'static str,
    detail: &'static str,
}

impl Reject {
    fn bad_query(code: &'static str, detail: &'static str) -> Reject {
        Reject {
            status: StatusCode::BAD_REQUEST,
            code,
            detail,
        }
    }

    fn into_response(self) -> Response {
        let mut response = error(self.status, self.code, self.detail);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"supervised\""),
            );
        }
        response
    }
}

/// Every response of these routes, the ones axum makes included (`405`):
/// never cached, never sniffed, and a `405` says what is allowed in a body.
async fn harden(response: Response) -> Response {
    let mut response = if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = response.headers().get(header::ALLOW).cloned();
        let mut replaced = Reject {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            detail: "these routes answer GET (and HEAD) only",
        }
        .into_response();
        if let Some(allow) = allow {
            replaced.headers_mut().insert(header::ALLOW, allow);
        }
        replaced
    } else {
        response
    };
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
}

fn json_response(status: StatusCode, content_type: &'static str, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    respond(status, content_type, Body::from(body))
}

fn text_response(status: StatusCode, body: String) -> Response {
    respond(status, "text/plain; charset=utf-8", Body::from(body))
}

fn respond(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

// ---------------------------------------------------------------------------
// Query strings

#[derive(Debug, Default, PartialEq)]
struct ProbeQuery {
    verbose: bool,
    exclude: Vec<String>,
}

/// Parses a probe's query: `verbose` (any value, or none) and `exclude=<name>`
/// (repeatable). Other keys are ignored, as kube-apiserver does.
fn parse_query(raw: Option<&str>) -> Result<ProbeQuery, Reject> {
    let mut query = ProbeQuery::default();
    let Some(raw) = raw else {
        return Ok(query);
    };
    if raw.len() > MAX_QUERY_LEN {
        return Err(Reject::bad_query(
            "query_too_long",
            "the query string is longer than the endpoints accept",
        ));
    }
    let malformed = || {
        Reject::bad_query(
            "malformed_query",
            "the query string is not valid percent-encoded UTF-8",
        )
    };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (pair, None),
        };
        let key = percent_decode(key).ok_or_else(malformed)?;
        let value = match value {
            Some(v) => Some(percent_decode(v).ok_or_else(malformed)?),
            None => None,
        };
        match key.as_str() {
            "verbose" => query.verbose = true,
            "exclude" => {
                let name = value.unwrap_or_default();
                if name.is_empty() {
                    return Err(Reject::bad_query(
                        "malformed_query",
                        "`exclude` needs the name of a check",
                    ));
                }
                if query.exclude.len() >= MAX_EXCLUDES {
                    return Err(Reject::bad_query(
                        "query_too_long",
                        "too many `exclude` parameters",
                    ));
                }
                query.exclude.push(name);
            }
            _ => {}
        }
    }
    Ok(query)
}

/// Decodes `application/x-www-form-urlencoded` text; `None` when a `%` escape
/// is broken or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Checks

/// One named check: `Ok` or the reason it fails.
struct Check {
    name: String,
    result: Result<(), String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Probe {
    Live,
    Ready,
}

impl Probe {
    fn as_str(self) -> &'static str {
        match self {
            Probe::Live => "livez",
            Probe::Ready => "readyz",
        }
    }
}

fn secs(d: Duration) -> String {
    crate::format::Rounded(d).to_string()
}

/// Why the task fails liveness, if it does.
fn liveness(task: &TaskStatus) -> Result<(), String> {
    if task.state == TaskState::Failed {
        let cause = match &task.last_failure {
            Some(f) => format!(": {f}"),
            None => String::new(),
        };
        return Err(format!("gave up after {} restarts{cause}", task.restarts));
    }
    if task.stale {
        let limit = task
            .stale_after
            .map(|d| format!(" (stale_after {})", secs(d)))
            .unwrap_or_default();
        return Err(match task.since_last_tick {
            Some(age) => format!("stale: no heartbeat for {}{limit}", secs(age)),
            None => format!("stale: no heartbeat yet{limit}"),
        });
    }
    if let Some(blocked) = task.blocked_for {
        return Err(format!(
            "blocked: one poll has been running for {}, blocking its worker thread",
            secs(blocked)
        ));
    }
    Ok(())
}

fn readiness(task: &TaskStatus) -> Result<(), String> {
    liveness(task)?;
    if task.awaits_first_beat() {
        return Err("not started: no heartbeat yet".to_owned());
    }
    Ok(())
}

fn checks(shared: &Shared, probe: Probe) -> Vec<Check> {
    let tasks = shared.registry.tasks();
    let mut checks: Vec<Check> = tasks
        .iter()
        .map(|t| Check {
            name: t.name.clone(),
            result: match probe {
                Probe::Live => liveness(t),
                Probe::Ready => readiness(t),
            },
        })
        .collect();
    if probe == Probe::Ready {
        checks.push(Check {
            name: "shutdown".to_owned(),
            result: if shared.shutting_down() {
                Err("shutting down".to_owned())
            } else {
                Ok(())
            },
        });
    }
    checks
}

/// Renders checks in the kube-apiserver format: `ok`, or with `verbose` or on
/// any failure one `[+]`/`[-]` line a check and a closing line.
fn render_probe(
    probe: Probe,
    checks: &[Check],
    query: &ProbeQuery,
    details: bool,
) -> (StatusCode, String) {
    let failed = checks
        .iter()
        .any(|c| c.result.is_err() && !query.exclude.contains(&c.name));
    if !failed && !query.verbose {
        // The common case, and the only one without per-check lines.
        return (StatusCode::OK, "ok".to_owned());
    }
    let mut lines = String::new();
    for check in checks {
        if query.exclude.contains(&check.name) {
            let _ = writeln!(lines, "[+]{} excluded: ok", check.name);
            continue;
        }
        match &check.result {
            Ok(()) => {
                let _ = writeln!(lines, "[+]{} ok", check.name);
            }
            Err(reason) => {
                let reason = if details {
                    reason.as_str()
                } else {
                    "reason withheld"
                };
                let _ = writeln!(lines, "[-]{} failed: {reason}", check.name);
            }
        }
    }
    let mut unknown: Vec<&str> = query
        .exclude
        .iter()
        .filter(|n| !checks.iter().any(|c| &c.name == *n))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        unknown.dedup();
        let quoted: Vec<String> = unknown.iter().map(|n| format!("{n:?}")).collect();
        let _ = writeln!(
            lines,
            "warn: some health checks cannot be excluded: no matches for {}",
            quoted.join(", ")
        );
    }
    let name = probe.as_str();
    if failed {
        let _ = writeln!(lines, "{name} check failed");
        (StatusCode::SERVICE_UNAVAILABLE, lines)
    } else {
        let _ = writeln!(lines, "{name} check passed");
        (StatusCode::OK, lines)
    }
}

fn probe_all(shared: &Shared, probe: Probe, headers: &HeaderMap, raw: Option<&str>) -> Response {
    let query = match parse_query(raw) {
        Ok(q) => q,
        Err(reject) => return reject.into_response(),
    };
    let checks = checks(shared, probe);
    let (status, body) = render_probe(probe, &checks, &query, shared.details_for(headers));
    text_response(status, body)
}

fn probe_one(
    shared: &Shared,
    probe: Probe,
    name: &str,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Response {
    let query = match parse_query(raw) {
        Ok(q) => q,
        Err(reject) => return reject.into_response(),
    };
    let mut checks = checks(shared, probe);
    checks.retain(|c| c.name == name);
    if checks.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_check",
            &format!("there is no check named {name:?}"),
        );
    }
    let (status, body) = render_probe(probe, &checks, &query, shared.details_for(headers));
    text_response(status, body)
}

async fn livez(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    probe_all(&shared, Probe::Live, &headers, raw.as_deref())
}

async fn readyz(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    probe_all(&shared, Probe::Ready, &headers, raw.as_deref())
}

async fn livez_one(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    probe_one(&shared, Probe::Live, &name, &headers, raw.as_deref())
}

async fn readyz_one(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    probe_one(&shared, Probe::Ready, &name, &headers, raw.as_deref())
}

// ---------------------------------------------------------------------------
// /admin/liveness

async fn admin_liveness(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    // Authorisation first: a caller without the token learns nothing, not
    // even whether its query parses.
    let details = match shared.admit(&headers) {
        Ok(details) => details,
        Err(reject) => return reject.into_response(),
    };
    if let Err(reject) = parse_query(raw.as_deref()) {
        return reject.into_response();
    }
    json_response(
        StatusCode::OK,
        "application/json",
        &liveness_document(&shared.registry, details),
    )
}

/// The `/admin/liveness` document: the Go endpoint's `subsystems` map (with
/// `last_tick_at` and `seconds_ago`), extended with the supervision data.
fn liveness_document(registry: &Registry, details: bool) -> Value {
    let tasks = registry.tasks();
    let beats = registry.last_beats();
    let mut subsystems = Map::new();
    let mut stale = Vec::new();
    let mut blocked = Vec::new();
    let mut failed = Vec::new();
    for t in &tasks {
        if t.stale {
            stale.push(Value::from(t.name.as_str()));
        }
        if t.blocked_for.is_some() {
            blocked.push(Value::from(t.name.as_str()));
        }
        if t.state == TaskState::Failed {
            failed.push(Value::from(t.name.as_str()));
        }
        let last_failure = t.last_failure.as_ref().map(|f| {
            json!({
                "kind": f.kind.as_str(),
                "message": details.then(|| f.message.clone()),
                "location": if details { f.location.clone() } else { None },
                "backtrace": f.backtrace.as_ref().filter(|_| details).map(|b| b.as_str()),
                "attempt": f.attempt,
                "at": rfc3339(f.at),
            })
        });
        subsystems.insert(
            t.name.clone(),
            json!({
                "last_tick_at": t.last_tick.map(rfc3339),
                "seconds_ago": t.since_last_tick.map(|d| d.as_secs()),
                "age_seconds": t.since_last_tick.map(|d| d.as_secs_f64()),
                "state": t.state.as_str(),
                "restarts": t.restarts,
                "attempt": t.attempt,
                "healthy": t.healthy,
                "stale": t.stale,
                "stale_after_seconds": t.stale_after.map(|d| d.as_secs_f64()),
                "blocked": t.blocked_for.is_some(),
                "blocked_seconds": t.blocked_for.map(|d| d.as_secs_f64()),
                "expects_heartbeat": t.expects_heartbeat,
                "failures": {
                    "panic": t.failures.panics,
                    "error": t.failures.errors,
                    "stalled": t.failures.stalls,
                    "blocked": t.failures.blocked,
                },
                "last_failure": last_failure,
            }),
        );
    }
    for (name, beat) in beats {
        if beat.supervised || subsystems.contains_key(&name) {
            continue;
        }
        subsystems.insert(
            name,
            json!({
                "last_tick_at": rfc3339(beat.at),
                "seconds_ago": beat.age.as_secs(),
                "age_seconds": beat.age.as_secs_f64(),
                "state": "unsupervised",
                "restarts": 0,
                "attempt": 0,
                "healthy": true,
                "stale": false,
                "stale_after_seconds": null,
                "blocked": false,
                "blocked_seconds": null,
                "expects_heartbeat": true,
                "failures": { "panic": 0, "error": 0, "stalled": 0, "blocked": 0 },
                "last_failure": null,
            }),
        );
    }
    json!({
        "subsystems": subsystems,
        "healthy": tasks.iter().all(|t| t.healthy),
        "stale": stale,
        "blocked": blocked,
        "failed": failed,
    })
}

// ---------------------------------------------------------------------------
// /health (application/health+json)

async fn health(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(reject) = parse_query(raw.as_deref()) {
        return reject.into_response();
    }
    let details = shared.details_for(&headers);
    let (status, doc) = health_document(&shared, details);
    let code = if status == "fail" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(code, "application/health+json", &doc)
}

fn health_document(shared: &Shared, details: bool) -> (&'static str, Value) {
    let mut worst = 0u8;
    let mut checks = Map::new();
    // The draft's `time` is when the reading was made: now, for every check.
    let observed = rfc3339(shared.registry.now_wall());
    for t in shared.registry.tasks() {
        let (level, reason) = match liveness(&t) {
            Err(reason) => (2, Some(reason)),
            Ok(()) if t.awaits_first_beat() => (1, Some("no heartbeat yet".to_owned())),
            Ok(()) if t.state == TaskState::Stopping => (
                1,
                Some("stopping: waiting for its attempt to be dropped".to_owned()),
            ),
            Ok(()) if t.state == TaskState::BackingOff => {
                let cause = t
                    .last_failure
                    .as_ref()
                    .map(|f| format!(" after {f}"))
                    .unwrap_or_default();
                (1, Some(format!("restarting{cause}")))
            }
            Ok(()) => (0, None),
        };
        worst = worst.max(level);
        let mut check = Map::new();
        check.insert("componentType".into(), "component".into());
        check.insert("status".into(), level_name(level).into());
        check.insert("time".into(), observed.clone().into());
        if let Some(age) = t.since_last_tick {
            check.insert("observedValue".into(), age.as_secs_f64().into());
            check.insert("observedUnit".into(), "s".into());
        }
        if let (true, Some(reason)) = (details, reason) {
            check.insert("output".into(), reason.into());
        }
        checks.insert(
            format!("{}:heartbeat", t.name),
            Value::Array(vec![Value::Object(check)]),
        );
    }
    if shared.shutting_down() {
        worst = worst.max(1);
        // Says why the status is `warn` while every task may still pass.
        checks.insert(
            "shutdown".into(),
            json!([{
                "componentType": "system",
                "status": "warn",
                "time": observed,
                "output": "shutting down: not ready for new work",
            }]),
        );
    }
    let status = level_name(worst);
    (
        status,
        json!({
            "status": status,
            "description": "supervised tasks",
            "checks": checks,
        }),
    )
}

fn level_name(level: u8) -> &'static str {
    match level {
        0 => "pass",
        1 => "warn",
        _ => "fail",
    }
}

// ---------------------------------------------------------------------------
// /metrics

#[cfg(feature = "metrics")]
async fn metrics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    // Authorisation first, as for `/admin/liveness`.
    if let Err(reject) = shared.admit(&headers) {
        return reject.into_response();
    }
    if let Err(reject) = parse_query(raw.as_deref()) {
        return reject.into_response();
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let rendered = match &shared.metrics {
        Some(prom) => crate::metrics::encode_registry(prom, openmetrics),
        None => {
            let mut prom = prometheus_client::registry::Registry::default();
            crate::metrics::register(&mut prom, &shared.registry);
            crate::metrics::encode_registry(&prom, openmetrics)
        }
    };
    match rendered {
        Ok(text) => {
            let content_type = if openmetrics {
                crate::metrics::OPENMETRICS_CONTENT_TYPE
            } else {
                crate::metrics::TEXT_CONTENT_TYPE
            };
            respond(StatusCode::OK, content_type, Body::from(text))
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding_failed",
            "the metrics could not be encoded",
        ),
    }
}

// ---------------------------------------------------------------------------
// Time

/// Formats `t` as RFC 3339 in UTC with nanoseconds, e.g.
/// `2026-04-15T10:00:00.123456789Z` (always nine fractional digits).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a count of days since 1970-01-01.
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(at(1_776_247_200, 123_456_789)),
            "2026-04-15T10:00:00.123456789Z"
        );
        // Leap day, end of a century leap year, far future.
        assert_eq!(
            rfc3339(at(951_782_400, 0)),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(
            rfc3339(at(978_307_199, 999_999_999)),
            "2000-12-31T23:59:59.999999999Z"
        );
        assert_eq!(
            rfc3339(at(4_107_542_400, 5)),
            "2100-03-01T00:00:00.000000005Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59.000000000Z"
        );
    }

    #[test]
    fn civil_dates_round_trip_every_day_for_centuries() {
        // Walk day by day from 1900 and compare with a naive calendar.
        let mut days = -25_567i128; // 1900-01-01
        for year in 1900..2300i128 {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let lengths = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            for (m, len) in lengths.iter().enumerate() {
                for d in 1..=*len {
                    assert_eq!(civil_from_days(days), (year, m as u32 + 1, d));
                    days += 1;
                }
            }
        }
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn query_parsing() {
        assert_eq!(parse_query(None).unwrap(), ProbeQuery::default());
        let q = parse_query(Some("verbose&exclude=a&exclude=b%20c&x=1")).unwrap();
        assert!(q.verbose);
        assert_eq!(q.exclude, ["a", "b c"]);
        assert!(parse_query(Some("exclude=%zz")).is_err());
        assert!(parse_query(Some("exclude=%ff")).is_err());
        assert!(parse_query(Some("exclude=")).is_err());
        assert!(parse_query(Some(&"x".repeat(MAX_QUERY_LEN + 1))).is_err());
    }
}
