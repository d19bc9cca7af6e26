//! Prometheus metrics: values computed from the registry, `promtool check
//! metrics` on real output, and the `/metrics` route.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use common::{eventually, request, Server};
use supervised::http::Endpoints;
use supervised::{metrics, CancellationToken, Context, ManualClock, Registry, RestartPolicy, Spec};

const TOKEN: &str = "metrics-token-0123456789";

/// A registry with a running task, a stale one, one that gave up after an
/// error and a heartbeat-only name.
async fn populated() -> (Registry, ManualClock, CancellationToken) {
    let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_776_247_200));
    let registry = Registry::with_clock(clock.clone());
    let stop = CancellationToken::new();
    for (name, stale_after) in [("relay", None), ("scheduler", Some(10))] {
        let mut spec = Spec::new(name).registry(&registry);
        if let Some(secs) = stale_after {
            spec = spec.stale_after(Duration::from_secs(secs));
        }
        spec.spawn(stop.clone(), |ctx: Context| async move {
            ctx.heartbeat();
            ctx.cancelled().await
        });
    }
    let r = registry.clone();
    eventually("tasks to beat once", move || {
        let all = r.tasks();
        all.len() == 2 && all.iter().all(|t| t.last_tick.is_some())
    })
    .await;
    let exit = Spec::new("db")
        .registry(&registry)
        .restart(RestartPolicy::Never)
        .spawn(
            stop.clone(),
            |_ctx: Context| async move { Err::<(), _>("boom") },
        )
        .await
        .unwrap();
    assert!(exit.is_failed());
    registry.heartbeat("legacy");
    clock.advance(Duration::from_millis(12_500));
    (registry, clock, stop)
}

/// Runs `promtool check metrics` on `text`; `None` when promtool is missing.
fn promtool(text: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), report))
}

#[tokio::test]
async fn values_come_from_the_registry() {
    let (registry, _clock, stop) = populated().await;
    let text = metrics::render(&registry);
    for line in [
        "supervised_task_restarts_total{task=\"relay\"} 0",
        "supervised_task_failures_total{task=\"db\",kind=\"error\"} 1",
        "supervised_task_failures_total{task=\"db\",kind=\"panic\"} 0",
        "supervised_task_state{task=\"db\",state=\"failed\"} 1",
        "supervised_task_state{task=\"db\",state=\"running\"} 0",
        "supervised_task_state{task=\"relay\",state=\"running\"} 1",
        "supervised_task_up{task=\"relay\"} 1",
        "supervised_task_up{task=\"scheduler\"} 0",
        "supervised_task_up{task=\"db\"} 0",
        "supervised_task_stale{task=\"scheduler\"} 1",
        "supervised_task_state{task=\"relay\",state=\"stopping\"} 0",
        "supervised_task_blocked_seconds{task=\"relay\"} 0",
        "supervised_task_blocked_polls_total{task=\"relay\"} 0",
        "supervised_task_last_heartbeat_timestamp_seconds{task=\"relay\"} 1776247200",
        "supervised_task_heartbeat_age_seconds{task=\"relay\"} 12.5",
        "supervised_task_heartbeat_age_seconds{task=\"legacy\"} 12.5",
        "# TYPE supervised_task_restarts_total counter",
        "# TYPE supervised_task_heartbeat_age_seconds gauge",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in\n{text}"
        );
    }
    stop.cancel();
}

#[tokio::test]
async fn promtool_accepts_the_output() {
    let (registry, _clock, stop) = populated().await;
    // Also inside an application's registry, next to its own metrics.
    let mut prom = prometheus_client::registry::Registry::default();
    let requests: prometheus_client::metrics::counter::Counter = Default::default();
    requests.inc();
    prom.register("app_requests", "Requests served", requests);
    metrics::register(&mut prom, &registry);
    let mut combined = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut combined, &prom).unwrap();
    assert!(combined.contains("app_requests_total 1"));
    assert!(combined.contains("supervised_task_up{task=\"relay\"} 1"));

    for text in [metrics::render(&registry), combined] {
        match promtool(&text) {
            None => {
                eprintln!(
                    "SKIPPED: promtool is not installed (Debian package `prometheus`); \
                     the metrics text was not validated"
                );
                return;
            }
            Some((ok, report)) => assert!(ok, "promtool check metrics failed:\n{report}\n{text}"),
        }
    }
    stop.cancel();
}

#[tokio::test]
async fn the_metrics_route() {
    let (registry, _clock, stop) = populated().await;
    let server = Server::start(Endpoints::new(&registry).bearer_token(TOKEN)).await;

    assert_eq!(server.get("/metrics").await.status, 401);
    let reply = server.get_with_token("/metrics", TOKEN).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(reply.body.contains("supervised_task_up{task=\"relay\"} 1"));
    if let Some((ok, report)) = promtool(&reply.body) {
        assert!(ok, "{report}");
    }

    let auth = format!("Bearer {TOKEN}");
    let om = request(
        server.addr,
        "GET",
        "/metrics",
        &[
            ("Authorization", &auth),
            ("Accept", "application/openmetrics-text; version=1.0.0"),
        ],
    )
    .await;
    assert_eq!(om.status, 200);
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(om.body.ends_with("# EOF\n"));
    server.stop().await;

    // An application's own registry, served instead.
    let mut prom = prometheus_client::registry::Registry::default();
    prom.register(
        "app_up",
        "Always one",
        prometheus_client::metrics::gauge::Gauge::<i64>::default(),
    );
    metrics::register(&mut prom, &registry);
    let endpoints = Endpoints::new(&registry)
        .unauthenticated()
        .metrics_registry(std::sync::Arc::new(prom));
    let server = Server::start(endpoints).await;
    let body = server.get("/metrics").await.body;
    assert!(body.contains("app_up 0"), "{body}");
    assert!(body.contains("supervised_task_state{"), "{body}");
    server.stop().await;
    stop.cancel();
}
