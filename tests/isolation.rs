//! Quarantined keys in every view: the status, `/admin/liveness` (keys only
//! with the token), the probes and `/health` (a count only), the metrics
//! (never a key as a label), and the attribute's quarantine keys.

mod common;

use std::time::Duration;

use common::{eventually, start, Server};
use supervised::http::Endpoints;
use supervised::{metrics, supervised, Context, Registry, Spec, Task};

const TOKEN: &str = "isolation-token-0123456789";

/// Serves three tenants; `tenant-13`'s data is poisoned.
fn billing() -> Task {
    Task::new(Spec::new("billing"), |ctx: Context| async move {
        loop {
            ctx.heartbeat();
            for tenant in [7u32, 13, 21] {
                let work = async move {
                    if tenant == 13 {
                        panic!("tenant {tenant}: bad row");
                    }
                };
                let _ = ctx.isolate(format!("tenant-{tenant}"), work).await;
            }
            tokio::select! {
                _ = ctx.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_keys_are_shown_by_count_and_by_key_behind_the_token() {
    let registry = Registry::new();
    let (token, handle) = start(billing(), &registry);
    let r = registry.clone();
    eventually("tenant-13 quarantined", move || {
        r.status("billing")
            .is_some_and(|s| s.quarantined.len() == 1 && s.last_tick.is_some())
    })
    .await;
    let server = Server::start(Endpoints::new(&registry).bearer_token(TOKEN)).await;

    // Alive and ready: it serves every other tenant.
    let livez = server.get("/livez?verbose").await;
    assert_eq!(livez.status, 200, "{}", livez.body);
    assert!(
        livez.body.contains("[+]billing ok (1 key quarantined)"),
        "{}",
        livez.body
    );
    assert!(!livez.body.contains("tenant-13"), "{}", livez.body);
    assert_eq!(server.get("/readyz").await.status, 200);

    // /health warns, with a count and no key.
    let health = server.get_with_token("/health", TOKEN).await;
    assert_eq!(health.status, 200);
    let doc = health.json();
    assert_eq!(doc["status"], "warn");
    assert_eq!(doc["checks"]["billing:heartbeat"][0]["status"], "warn");
    assert_eq!(
        doc["checks"]["billing:heartbeat"][0]["output"],
        "1 key quarantined"
    );

    // The keys, with the token only.
    let doc = server.get_with_token("/admin/liveness", TOKEN).await.json();
    let billing = &doc["subsystems"]["billing"];
    assert_eq!(billing["quarantined_keys"], 1);
    assert_eq!(billing["healthy"], true);
    let q = &billing["quarantined"][0];
    assert_eq!(q["key"], "tenant-13");
    assert!(q["failures"].as_u64().unwrap() >= 1);
    assert_eq!(q["last_failure"]["kind"], "panic");
    assert_eq!(q["last_failure"]["message"], "tenant 13: bad row");
    let open = Server::start(Endpoints::new(&registry).unauthenticated()).await;
    let doc = open.get("/admin/liveness").await.json();
    assert_eq!(doc["subsystems"]["billing"]["quarantined_keys"], 1);
    assert!(doc["subsystems"]["billing"].get("quarantined").is_none());

    // Metrics: a gauge and a counter by task and kind, never a key.
    let text = metrics::render(&registry);
    assert!(
        text.contains("supervised_quarantined_keys{task=\"billing\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("supervised_isolated_failures_total{task=\"billing\",kind=\"panic\"}"),
        "{text}"
    );
    assert!(!text.contains("tenant-13"), "{text}");

    token.cancel();
    handle.await.unwrap();
    server.stop().await;
    open.stop().await;
}

#[supervised(name = "iso-keys", quarantine_initial = "2s", quarantine_max = "1m")]
async fn with_keys(ctx: Context) {
    ctx.heartbeat();
}

#[supervised(name = "iso-max-only", quarantine_max = "10s")]
async fn with_max_only(ctx: Context) {
    ctx.heartbeat();
}

#[test]
fn the_attributes_quarantine_keys_set_the_policy() {
    assert_eq!(
        with_keys().spec().get_quarantine(),
        (Duration::from_secs(2), Duration::from_secs(60))
    );
    assert_eq!(
        with_max_only().spec().get_quarantine(),
        (
            supervised::DEFAULT_QUARANTINE_INITIAL,
            Duration::from_secs(10)
        )
    );
    assert_eq!(
        Spec::new("x").get_quarantine(),
        (
            supervised::DEFAULT_QUARANTINE_INITIAL,
            supervised::DEFAULT_QUARANTINE_MAX
        )
    );
}
