//! The HTTP endpoints over real HTTP on 127.0.0.1: the `/admin/liveness` JSON,
//! access control, the kube-apiserver probe format and the error statuses.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{eventually, request, Server};
use serde_json::Value;
use supervised::http::Endpoints;
use supervised::{CancellationToken, Context, Exit, ManualClock, Registry, RestartPolicy, Spec};

const TOKEN: &str = "correct-horse-battery-staple";

/// A registry on a manual clock whose wall time starts at
/// 2026-04-15T10:00:00.123456789Z, with idle tasks that beat once when they
/// start. `stale_after` of `None` means the task can never be stale.
struct Fixture {
    registry: Registry,
    clock: ManualClock,
    stop: CancellationToken,
}

impl Fixture {
    async fn new(tasks: &[(&str, Option<u64>)]) -> Fixture {
        let clock =
            ManualClock::starting_at(UNIX_EPOCH + Duration::new(1_776_247_200, 123_456_789));
        let registry = Registry::with_clock(clock.clone());
        let stop = CancellationToken::new();
        for (name, stale_after) in tasks {
            let mut spec = Spec::new(*name).registry(&registry);
            if let Some(secs) = stale_after {
                spec = spec.stale_after(Duration::from_secs(*secs));
            }
            spec.spawn(stop.clone(), |ctx: Context| async move {
                ctx.heartbeat();
                ctx.cancelled().await;
            });
        }
        let r = registry.clone();
        let n = tasks.len();
        eventually("every task to start", move || {
            let all = r.tasks();
            all.len() == n && all.iter().all(|t| t.last_tick.is_some())
        })
        .await;
        Fixture {
            registry,
            clock,
            stop,
        }
    }

    /// Adds a task that fails for good with a message that must stay private.
    async fn add_failed(&self, name: &str) {
        let exit = Spec::new(name)
            .registry(&self.registry)
            .restart(RestartPolicy::Never)
            .spawn(self.stop.clone(), |_ctx: Context| async move {
                Err::<(), _>("connect to postgres://admin:hunter2@db failed")
            })
            .await
            .unwrap();
        assert!(exit.is_failed(), "{exit:?}");
    }

    fn with_token(&self) -> Endpoints {
        Endpoints::new(&self.registry).bearer_token(TOKEN)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn assert_text(reply: &common::Reply, status: u16, body: &str) {
    assert_eq!(reply.status, status, "body: {:?}", reply.body);
    assert_eq!(reply.body, body);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

// --- /admin/liveness -------------------------------------------------------

#[tokio::test]
async fn liveness_json_keeps_the_go_fields_and_adds_supervision() {
    let f = Fixture::new(&[("scheduler", Some(10)), ("relay", None)]).await;
    f.registry.heartbeat("legacy");
    f.clock.advance(Duration::from_millis(42_900));
    let server = Server::start(f.with_token()).await;

    let reply = server.get_with_token("/admin/liveness", TOKEN).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();

    let scheduler = &doc["subsystems"]["scheduler"];
    // The Go endpoint's two fields, exactly.
    assert_eq!(scheduler["last_tick_at"], "2026-04-15T10:00:00.123456789Z");
    assert_eq!(scheduler["seconds_ago"], Value::from(42u64));
    assert!(scheduler["seconds_ago"].is_u64());
    // The extension.
    assert_eq!(scheduler["state"], "running");
    assert_eq!(scheduler["restarts"], Value::from(0u64));
    assert_eq!(scheduler["attempt"], Value::from(1u64));
    assert_eq!(scheduler["healthy"], false);
    assert_eq!(scheduler["stale"], true);
    assert_eq!(scheduler["stale_after_seconds"].as_f64(), Some(10.0));
    assert!(scheduler["last_failure"].is_null());
    assert_eq!(
        scheduler["failures"],
        serde_json::json!({"panic": 0, "error": 0, "stalled": 0, "blocked": 0})
    );
    assert_eq!(scheduler["blocked"], false);
    assert!(scheduler["blocked_seconds"].is_null());
    assert_eq!(scheduler["expects_heartbeat"], true);

    let relay = &doc["subsystems"]["relay"];
    assert_eq!(relay["healthy"], true);
    assert!(relay["stale_after_seconds"].is_null());

    // A heartbeat-only name is listed too, as unsupervised.
    let legacy = &doc["subsystems"]["legacy"];
    assert_eq!(legacy["state"], "unsupervised");
    assert_eq!(legacy["seconds_ago"], Value::from(42u64));
    assert!(legacy["last_tick_at"].as_str().unwrap().ends_with('Z'));

    assert_eq!(doc["healthy"], false);
    assert_eq!(doc["stale"], serde_json::json!(["scheduler"]));
    assert_eq!(doc["blocked"], serde_json::json!([]));
    assert_eq!(doc["failed"], serde_json::json!([]));
    server.stop().await;
}

#[tokio::test]
async fn liveness_json_shows_failure_messages_only_to_authorised_callers() {
    let f = Fixture::new(&[("relay", None)]).await;
    f.add_failed("db").await;

    let server = Server::start(f.with_token()).await;
    let doc = server.get_with_token("/admin/liveness", TOKEN).await.json();
    let failure = &doc["subsystems"]["db"]["last_failure"];
    assert_eq!(doc["subsystems"]["db"]["state"], "failed");
    assert_eq!(failure["kind"], "error");
    assert_eq!(failure["attempt"], Value::from(1u64));
    assert!(failure["message"].as_str().unwrap().contains("hunter2"));
    assert!(failure["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(doc["failed"], serde_json::json!(["db"]));
    assert_eq!(doc["healthy"], false);
    server.stop().await;

    // Unauthenticated: open, but the message is withheld ...
    let server = Server::start(Endpoints::new(&f.registry).unauthenticated()).await;
    let reply = server.get("/admin/liveness").await;
    assert_eq!(reply.status, 200);
    let failure = &reply.json()["subsystems"]["db"]["last_failure"];
    assert_eq!(failure["kind"], "error");
    assert!(failure["message"].is_null());
    assert!(!reply.body.contains("hunter2"));
    server.stop().await;

    // ... unless the application says otherwise.
    let endpoints = Endpoints::new(&f.registry)
        .unauthenticated()
        .expose_failure_messages();
    let server = Server::start(endpoints).await;
    assert!(server.get("/admin/liveness").await.body.contains("hunter2"));
    server.stop().await;
}

// --- Access ----------------------------------------------------------------

#[tokio::test]
async fn admin_routes_need_the_token() {
    let f = Fixture::new(&[("relay", None)]).await;
    let server = Server::start(f.with_token()).await;

    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer correct-horse-battery-stapl"),
        Some("Bearer correct-horse-battery-staple2"),
        Some("Basic Y29ycmVjdDpob3JzZQ=="),
        Some(TOKEN),
        Some("Bearer"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        for path in ["/admin/liveness", "/metrics"] {
            let reply = request(server.addr, "GET", path, &headers).await;
            assert_eq!(reply.status, 401, "{path} with {auth:?}");
            assert_eq!(reply.header("content-type"), Some("application/json"));
            assert_eq!(reply.json()["error"], "unauthorized");
            assert!(reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer"));
        }
    }

    let ok = server.get_with_token("/admin/liveness", TOKEN).await;
    assert_eq!(ok.status, 200);
    let lower = request(
        server.addr,
        "GET",
        "/admin/liveness",
        &[("authorization", &format!("bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(lower.status, 200);

    // Probes answer everyone.
    assert_eq!(server.get("/livez").await.status, 200);
    assert_eq!(server.get("/readyz").await.status, 200);
    assert_eq!(server.get("/health").await.status, 200);
    server.stop().await;
}

#[test]
#[should_panic(expected = "empty")]
fn an_empty_token_is_refused() {
    let _ = Endpoints::new(&Registry::new()).bearer_token("");
}

#[test]
#[should_panic(expected = "the bearer token has 15 bytes; use at least 16")]
fn a_short_token_is_refused() {
    let _ = Endpoints::new(&Registry::new()).bearer_token("fifteen-bytes-x");
}

// --- Probes: the kube-apiserver format ---------------------------------------

#[tokio::test]
async fn probes_when_healthy() {
    let f = Fixture::new(&[("relay", None), ("scheduler", Some(10))]).await;
    let server = Server::start(f.with_token()).await;

    assert_text(&server.get("/livez").await, 200, "ok");
    assert_text(&server.get("/readyz").await, 200, "ok");
    assert_text(
        &server.get("/livez?verbose").await,
        200,
        "[+]relay ok\n[+]scheduler ok\nlivez check passed\n",
    );
    assert_text(
        &server.get("/readyz?verbose=1").await,
        200,
        "[+]relay ok\n[+]scheduler ok\n[+]shutdown ok\nreadyz check passed\n",
    );
    assert_text(&server.get("/livez/relay").await, 200, "ok");
    assert_text(
        &server.get("/livez/relay?verbose").await,
        200,
        "[+]relay ok\nlivez check passed\n",
    );
    assert_text(&server.get("/readyz/shutdown").await, 200, "ok");
    let head = request(server.addr, "HEAD", "/livez", &[]).await;
    assert_eq!(head.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn readiness_waits_for_a_real_first_beat_but_not_for_a_task_without_heartbeats() {
    let f = Fixture::new(&[("relay", None)]).await;
    // Started, but it has not beaten: starting is not a heartbeat.
    let silent = Spec::new("silent").registry(&f.registry).spawn(
        f.stop.clone(),
        |ctx: Context| async move {
            ctx.cancelled().await;
        },
    );
    // Declared without heartbeats: nothing to wait for.
    let oneshot = Spec::new("oneshot")
        .registry(&f.registry)
        .without_heartbeat()
        .spawn(f.stop.clone(), |ctx: Context| async move {
            ctx.cancelled().await;
        });
    let server = Server::start(f.with_token()).await;

    assert_text(&server.get("/livez").await, 200, "ok");
    let reply = server.get_with_token("/readyz?verbose", TOKEN).await;
    assert_text(
        &reply,
        503,
        "[+]oneshot ok\n[+]relay ok\n[-]silent failed: not started: no heartbeat yet\n\
         [+]shutdown ok\nreadyz check failed\n",
    );
    let health = server.get_with_token("/health", TOKEN).await.json();
    assert_eq!(health["checks"]["silent:heartbeat"][0]["status"], "warn");
    assert_eq!(health["checks"]["oneshot:heartbeat"][0]["status"], "pass");
    let doc = server.get_with_token("/admin/liveness", TOKEN).await.json();
    assert!(doc["subsystems"]["silent"]["last_tick_at"].is_null());
    assert_eq!(doc["subsystems"]["oneshot"]["expects_heartbeat"], false);

    f.stop.cancel();
    silent.await.unwrap();
    oneshot.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_crash_loop_that_never_beats_fails_liveness_once_stale() {
    let f = Fixture::new(&[("relay", None)]).await;
    let crashing = Spec::new("crashloop")
        .registry(&f.registry)
        .stale_after(Duration::from_secs(10))
        .spawn(f.stop.clone(), |_ctx: Context| async move {
            Err::<(), _>("bad row for tenant 13")
        });
    let r = f.registry.clone();
    eventually("the first failure", move || {
        r.status("crashloop").unwrap().failures.errors >= 1
    })
    .await;
    let server = Server::start(f.with_token()).await;
    assert_text(&server.get("/livez").await, 200, "ok");

    f.clock.advance(Duration::from_secs(11));
    let reply = server.get_with_token("/livez?verbose", TOKEN).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("[-]crashloop failed: stale: no heartbeat yet (stale_after 10.0 s)"),
        "{}",
        reply.body
    );
    let doc = server.get_with_token("/admin/liveness", TOKEN).await.json();
    assert_eq!(doc["stale"], serde_json::json!(["crashloop"]));

    f.stop.cancel();
    crashing.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn probes_when_a_task_is_stale() {
    let f = Fixture::new(&[("relay", None), ("scheduler", Some(10))]).await;
    f.clock.advance(Duration::from_secs(11));
    let server = Server::start(f.with_token()).await;

    // Any failure is verbose; the reason is withheld from anonymous callers.
    let failed = "[+]relay ok\n[-]scheduler failed: reason withheld\nlivez check failed\n";
    assert_text(&server.get("/livez").await, 503, failed);
    assert_text(&server.get("/livez?verbose").await, 503, failed);
    assert_text(
        &server.get("/readyz").await,
        503,
        "[+]relay ok\n[-]scheduler failed: reason withheld\n[+]shutdown ok\nreadyz check failed\n",
    );
    // The token holder sees why.
    assert_text(
        &server.get_with_token("/livez", TOKEN).await,
        503,
        "[+]relay ok\n[-]scheduler failed: stale: no heartbeat for 11.0 s (stale_after 10.0 s)\nlivez check failed\n",
    );
    // A wrong token is simply anonymous on the probes.
    assert_text(&server.get_with_token("/livez", "nope").await, 503, failed);

    // One check at a time.
    assert_text(&server.get("/livez/relay").await, 200, "ok");
    assert_text(
        &server.get("/livez/scheduler").await,
        503,
        "[-]scheduler failed: reason withheld\nlivez check failed\n",
    );

    // Excluding the failing check passes.
    assert_text(&server.get("/livez?exclude=scheduler").await, 200, "ok");
    assert_text(
        &server.get("/livez?exclude=scheduler&verbose").await,
        200,
        "[+]relay ok\n[+]scheduler excluded: ok\nlivez check passed\n",
    );
    // Repeatable.
    assert_text(
        &server
            .get("/livez?verbose&exclude=scheduler&exclude=relay")
            .await,
        200,
        "[+]relay excluded: ok\n[+]scheduler excluded: ok\nlivez check passed\n",
    );
    // Unknown names add a warning (shown with the check lines).
    assert_text(
        &server
            .get("/livez?verbose&exclude=scheduler&exclude=nope&exclude=also%20nope")
            .await,
        200,
        "[+]relay ok\n[+]scheduler excluded: ok\nwarn: some health checks cannot be excluded: no matches for \"also nope\", \"nope\"\nlivez check passed\n",
    );
    assert_text(
        &server.get("/livez?exclude=nope").await,
        503,
        "[+]relay ok\n[-]scheduler failed: reason withheld\nwarn: some health checks cannot be excluded: no matches for \"nope\"\nlivez check failed\n",
    );
    assert_text(
        &server.get("/livez?exclude=nope&exclude=scheduler").await,
        200,
        "ok",
    );
    server.stop().await;
}

#[tokio::test]
async fn probes_when_a_task_gave_up() {
    let f = Fixture::new(&[("relay", None)]).await;
    f.add_failed("db").await;
    let server = Server::start(f.with_token()).await;

    assert_text(
        &server.get("/livez").await,
        503,
        "[-]db failed: reason withheld\n[+]relay ok\nlivez check failed\n",
    );
    let with_token = server.get_with_token("/livez", TOKEN).await;
    assert_eq!(with_token.status, 503);
    assert!(
        with_token
            .body
            .starts_with("[-]db failed: gave up after 0 restarts: error: connect to postgres://admin:hunter2@db failed\n"),
        "{}",
        with_token.body
    );
    assert!(!server.get("/readyz?verbose").await.body.contains("hunter2"));
    server.stop().await;
}

#[tokio::test]
async fn readiness_fails_from_the_start_of_shutdown() {
    let f = Fixture::new(&[("relay", None)]).await;
    let shutdown = CancellationToken::new();
    let server = Server::start(f.with_token().not_ready_after(shutdown.clone())).await;
    assert_text(&server.get("/readyz").await, 200, "ok");
    shutdown.cancel();
    assert_text(
        &server.get("/readyz").await,
        503,
        "[+]relay ok\n[-]shutdown failed: reason withheld\nreadyz check failed\n",
    );
    assert_text(
        &server.get_with_token("/readyz/shutdown", TOKEN).await,
        503,
        "[-]shutdown failed: shutting down\nreadyz check failed\n",
    );
    // Liveness is unaffected.
    assert_text(&server.get("/livez").await, 200, "ok");
    // `/health` warns, and a check says why.
    let health = server.get("/health").await;
    assert_eq!(health.status, 200);
    let doc = health.json();
    assert_eq!(doc["status"], "warn");
    assert_eq!(doc["checks"]["relay:heartbeat"][0]["status"], "pass");
    assert_eq!(doc["checks"]["shutdown"][0]["status"], "warn");
    assert_eq!(
        doc["checks"]["shutdown"][0]["output"],
        "shutting down: not ready for new work"
    );
    server.stop().await;
}

// --- Errors ----------------------------------------------------------------

#[tokio::test]
async fn wrong_method_unknown_path_and_bad_queries() {
    let f = Fixture::new(&[("relay", None)]).await;
    let server = Server::start(f.with_token()).await;

    for (method, path) in [
        ("POST", "/livez"),
        ("PUT", "/readyz"),
        ("DELETE", "/admin/liveness"),
        ("POST", "/livez/relay"),
        ("POST", "/metrics"),
    ] {
        let reply = request(server.addr, method, path, &[]).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert!(
            reply.header("allow").unwrap().contains("GET"),
            "{method} {path}"
        );
        // A short body, and the headers every other answer has.
        assert_eq!(
            reply.json()["error"],
            "method_not_allowed",
            "{method} {path}"
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    }

    for path in ["/", "/nope", "/livez/", "/admin/x", "/admin/liveness/x"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["error"], "not_found");
    }
    let unknown = server.get("/livez/nope").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "unknown_check");
    assert_eq!(server.get("/readyz/nope").await.status, 404);

    let long = format!("/livez?exclude={}", "a".repeat(5000));
    for path in [
        "/livez?exclude=%zz",
        "/readyz?exclude=%ff%fe",
        "/livez?exclude=",
        "/livez?exclude=%",
        long.as_str(),
        "/admin/liveness?x=%g0",
    ] {
        let reply = server.get_with_token(path, TOKEN).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(reply.json()["error"].is_string());
    }
    // Authorisation comes first: without the token, a bad query on a
    // protected route is a 401, not a 400.
    for path in ["/metrics?x=%zz", "/admin/liveness?x=%g0"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    }
    for path in ["/nope", "/livez/nope"] {
        let reply = server.get(path).await;
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    let many: String = (0..100).map(|i| format!("exclude=t{i}&")).collect();
    assert_eq!(server.get(&format!("/livez?{many}")).await.status, 400);

    // The server is still fine afterwards.
    assert_text(&server.get("/livez").await, 200, "ok");
    server.stop().await;
}

// --- Embedding and /health -------------------------------------------------

#[tokio::test]
async fn the_router_merges_into_an_application() {
    let f = Fixture::new(&[("relay", None)]).await;
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .merge(f.with_token().router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let handle = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped.cancelled_owned())
            .await
    });
    assert_eq!(request(addr, "GET", "/", &[]).await.body, "home");
    assert_eq!(request(addr, "GET", "/livez", &[]).await.body, "ok");
    assert_eq!(request(addr, "GET", "/nope", &[]).await.status, 404);
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn health_json_follows_the_ietf_draft() {
    let f = Fixture::new(&[("relay", None), ("scheduler", Some(10))]).await;
    let server = Server::start(f.with_token()).await;

    let pass = server.get("/health").await;
    assert_eq!(pass.status, 200);
    assert_eq!(pass.header("content-type"), Some("application/health+json"));
    let doc = pass.json();
    assert_eq!(doc["status"], "pass");
    let check = &doc["checks"]["scheduler:heartbeat"][0];
    assert_eq!(check["status"], "pass");
    assert_eq!(check["observedUnit"], "s");
    assert!(check["observedValue"].is_number());
    assert_eq!(check["time"], "2026-04-15T10:00:00.123456789Z");

    f.clock.advance(Duration::from_secs(11));
    let fail = server.get("/health").await;
    assert_eq!(fail.status, 503);
    let doc = fail.json();
    // `time` is when the reading was made, not the last beat.
    assert_eq!(
        doc["checks"]["scheduler:heartbeat"][0]["time"],
        "2026-04-15T10:00:11.123456789Z"
    );
    assert_eq!(doc["status"], "fail");
    assert_eq!(doc["checks"]["scheduler:heartbeat"][0]["status"], "fail");
    assert!(doc["checks"]["scheduler:heartbeat"][0]
        .get("output")
        .is_none());
    assert_eq!(doc["checks"]["relay:heartbeat"][0]["status"], "pass");
    let detailed = server.get_with_token("/health", TOKEN).await.json();
    assert!(detailed["checks"]["scheduler:heartbeat"][0]["output"]
        .as_str()
        .unwrap()
        .starts_with("stale"));
    server.stop().await;
}

#[tokio::test]
async fn a_standalone_server_stops_on_its_token() {
    let f = Fixture::new(&[]).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let stop = CancellationToken::new();
    let handle = tokio::spawn(supervised::http::serve(
        addr,
        Endpoints::new(&f.registry).unauthenticated(),
        stop.clone(),
    ));
    common::eventually("the server to listen", || {
        std::net::TcpStream::connect(addr).is_ok()
    })
    .await;
    assert_eq!(request(addr, "GET", "/livez", &[]).await.body, "ok");
    stop.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), handle).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    let _ = Exit::Completed;
}

#[tokio::test]
async fn the_status_page_is_served_without_the_token_and_holds_no_task_data() {
    let registry = Registry::new();
    registry.heartbeat("page-secret-task");
    let server = Server::start(Endpoints::new(&registry).bearer_token(TOKEN)).await;

    let redirect = server.get("/admin").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("admin/"));

    let page = server.get("/admin/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    // Self-contained: nothing loaded from elsewhere, and no task data.
    assert!(page.body.starts_with("<!doctype html>"));
    for external in ["<script src", "<link", "http://", "https://"] {
        assert!(!page.body.contains(external), "{external}");
    }
    assert!(!page.body.contains("page-secret-task"));
    assert!(page.body.contains(r#"fetch("liveness""#));

    // The page's data source carries the fractional age it ticks from.
    let liveness = server.get_with_token("/admin/liveness", TOKEN).await.json();
    assert!(liveness["subsystems"]["page-secret-task"]["age_seconds"].is_f64());
    server.stop().await;
}

#[tokio::test]
async fn drain_fails_readiness_at_once_and_stops_the_tasks_only_after_the_period() {
    let registry = Registry::new();
    let signal = CancellationToken::new();
    let mut endpoints = Endpoints::new(&registry).bearer_token(TOKEN);
    let tasks = endpoints.drain(signal.clone(), Duration::from_secs(60));
    let handle =
        Spec::new("worker")
            .registry(&registry)
            .spawn(tasks.clone(), |ctx: Context| async move {
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
    let server = Server::start(endpoints).await;
    eventually("the worker beats", || {
        registry.status("worker").unwrap().last_tick.is_some()
    })
    .await;
    assert_text(&server.get("/readyz").await, 200, "ok");

    signal.cancel();
    // At once: not ready, with the reason; alive; the tasks still run.
    assert_text(
        &server.get("/readyz").await,
        503,
        "[+]worker ok\n[-]shutdown failed: reason withheld\nreadyz check failed\n",
    );
    assert_text(&server.get("/livez").await, 200, "ok");
    assert!(!tasks.is_cancelled());
    assert_eq!(
        registry.status("worker").unwrap().state,
        supervised::TaskState::Running
    );
    // Stopping by hand ends the drain early.
    tasks.cancel();
    assert_eq!(handle.await.unwrap(), Exit::Cancelled);
    server.stop().await;
}
