//! A singleton's lease in every view: status, `/admin/liveness`, `/health`,
//! the probes, metrics, and the attribute with `spawn_all!(lease = ...)`.
//! Two "replicas" are two registries on one in-process lease store.

mod common;

use std::time::Duration;

use common::{eventually, Server};
use supervised::http::Endpoints;
use supervised::lease::Memory;
use supervised::{metrics, spawn_all, supervised, Context, Group, Registry, TaskState};

const TOKEN: &str = "singleton-token-0123456789";

#[supervised(singleton = true, stale_after = "5s")]
async fn scheduler(ctx: Context) {
    assert!(ctx.fencing_token().is_some());
    while !ctx.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[supervised]
async fn relay(ctx: Context) {
    assert_eq!(ctx.fencing_token(), None);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One replica: the two tasks in `registry`, on `lease`.
fn replica(registry: &Registry, lease: Memory) -> Group {
    let registry = registry.clone();
    let on = move |task: supervised::Task| task.with_spec(|s| s.registry(&registry));
    spawn_all!(lease = lease; on(scheduler()), on(relay()))
}

async fn two_replicas() -> (Registry, Registry, Memory, Vec<Group>) {
    let (a, b) = (Registry::new(), Registry::new());
    let store = Memory::new("replica-a");
    let ga = replica(&a, store.clone());
    let ra = a.clone();
    eventually("a to lead", move || {
        ra.status("scheduler")
            .is_some_and(|s| s.state == TaskState::Running)
    })
    .await;
    let gb = replica(&b, store.replica("replica-b"));
    let rb = b.clone();
    eventually("b to stand by", move || {
        rb.status("scheduler").is_some_and(|s| {
            s.state == TaskState::Standby
                && s.lease
                    .is_some_and(|l| l.standby_reason.as_deref() == Some("lease held by replica-a"))
        })
    })
    .await;
    (a, b, store, vec![ga, gb])
}

#[tokio::test]
async fn the_attribute_and_spawn_all_make_one_leader_and_one_standby() {
    let (a, b, store, groups) = two_replicas().await;
    let lead = a.status("scheduler").unwrap();
    assert_eq!(
        lead.lease.as_ref().map(|l| (l.leader, l.fencing_token)),
        Some((true, Some(1)))
    );
    let standby = b.status("scheduler").unwrap();
    assert!(standby.healthy && !standby.stale);
    assert_eq!(
        standby.lease.unwrap().standby_reason.as_deref(),
        Some("lease held by replica-a")
    );
    // Not a singleton: runs on both.
    for r in [&a, &b] {
        let relay = r.status("relay").unwrap();
        assert_eq!((relay.state, relay.lease), (TaskState::Running, None));
    }
    assert_eq!(store.holder_of("scheduler").as_deref(), Some("replica-a"));
    for group in groups {
        group.shutdown(Duration::from_secs(2)).await;
    }
    assert_eq!(
        store.holder_of("scheduler"),
        None,
        "shutdown releases the lease"
    );
}

#[tokio::test]
async fn endpoints_show_standby_as_healthy_and_say_why() {
    let (a, b, _store, groups) = two_replicas().await;
    let server_b = Server::start(Endpoints::new(&b).bearer_token(TOKEN)).await;
    let server_a = Server::start(Endpoints::new(&a).bearer_token(TOKEN)).await;

    let doc = server_b
        .get_with_token("/admin/liveness", TOKEN)
        .await
        .json();
    let s = &doc["subsystems"]["scheduler"];
    assert_eq!(s["state"], "standby");
    assert_eq!(s["leader"], false);
    assert_eq!(s["healthy"], true);
    assert_eq!(s["standby_reason"], "lease held by replica-a");
    assert_eq!(doc["healthy"], true);
    assert!(
        doc["subsystems"]["relay"].get("leader").is_none(),
        "only singletons have a lease"
    );

    let doc = server_a
        .get_with_token("/admin/liveness", TOKEN)
        .await
        .json();
    let s = &doc["subsystems"]["scheduler"];
    assert_eq!(
        (s["state"].as_str(), s["leader"].as_bool()),
        (Some("running"), Some(true))
    );
    assert_eq!(s["fencing_token"], 1);

    // Probes: a standby is live and ready.
    for target in ["/livez", "/readyz"] {
        let reply = server_b.get(target).await;
        assert_eq!(reply.status, 200, "{target}: {}", reply.body);
    }
    let health = server_b.get_with_token("/health", TOKEN).await.json();
    let check = &health["checks"]["scheduler:heartbeat"][0];
    assert_eq!(check["status"], "pass");
    assert_eq!(check["output"], "standby: lease held by replica-a");

    server_a.stop().await;
    server_b.stop().await;
    for group in groups {
        group.shutdown(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn metrics_have_a_leader_gauge_for_singletons() {
    let (a, b, _store, groups) = two_replicas().await;
    let text_a = metrics::render(&a);
    let text_b = metrics::render(&b);
    assert!(
        text_a.contains("supervised_task_leader{task=\"scheduler\"} 1"),
        "{text_a}"
    );
    assert!(
        text_b.contains("supervised_task_leader{task=\"scheduler\"} 0"),
        "{text_b}"
    );
    assert!(!text_a.contains("supervised_task_leader{task=\"relay\"}"));
    assert!(text_b.contains("supervised_task_state{task=\"scheduler\",state=\"standby\"} 1"));
    assert!(
        text_b.contains("supervised_task_up{task=\"scheduler\"} 1"),
        "a healthy standby is up"
    );
    for group in groups {
        group.shutdown(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn the_lease_store_going_away_shows_in_the_standby_reason() {
    let (a, _b, store, groups) = two_replicas().await;
    store.set_available(false);
    let r = a.clone();
    // ttl 10 s: the leader stops its attempt 6.5 s after its last renewal.
    tokio::time::timeout(Duration::from_secs(15), async move {
        loop {
            let s = r.status("scheduler").unwrap();
            if s.state == TaskState::Standby {
                let reason = s.lease.unwrap().standby_reason.unwrap();
                assert!(
                    reason.contains("the lease store is unavailable"),
                    "{reason}"
                );
                assert!(s.healthy);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the leader stands down before its lease expires");
    for group in groups {
        group.shutdown(Duration::from_secs(2)).await;
    }
}
