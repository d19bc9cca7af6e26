//! The status page (`GET /admin/`) in a real browser: headless Chromium loads
//! it from a server on 127.0.0.1 and runs its script; the test reads the DOM
//! it leaves, as a person would see it: one row per task, a crash-looping
//! task's restart count rising, a stalled task shown as stale, the trimmed
//! failure details behind the token.
//!
//! Needs Chromium (`chromium` on the `PATH`, or `SUPERVISED_CHROMIUM`); `.ci/run`
//! installs Debian's package. Without it the test says it was skipped.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{start, Server};
use supervised::http::Endpoints;
use supervised::{Context, Registry, Spec, Task};

const TOKEN: &str = "page-token-0123456789";

fn chromium() -> Option<String> {
    if let Ok(path) = std::env::var("SUPERVISED_CHROMIUM") {
        return Some(path);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_owned)
}

/// The DOM after the page's script has run for `budget_ms` of virtual time
/// (network fetches pause it, so the page's first fetches complete).
fn dom(browser: &str, url: &str, budget_ms: u32) -> String {
    let out = Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom",
            url,
        ])
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium: {:?}", out.status);
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}

/// The rows of the DOM: `(task, shown state, restarts)`.
fn rows(dom: &str) -> Vec<(String, String, u32)> {
    let mut rows = Vec::new();
    for chunk in dom.split("<tr class=").skip(1) {
        let attr = |name: &str| {
            let start = chunk
                .find(&format!("{name}=\""))
                .map(|i| i + name.len() + 2)?;
            let end = chunk[start..].find('"')? + start;
            Some(chunk[start..end].to_owned())
        };
        let (Some(task), Some(state)) = (attr("data-task"), attr("data-state")) else {
            continue;
        };
        let restarts = chunk
            .split("class=\"num restarts\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .and_then(|s| s.parse().ok())
            .expect("a restarts cell");
        rows.push((task, state, restarts));
    }
    rows
}

fn tasks() -> Vec<Task> {
    let steady = Task::new(
        Spec::new("page-steady").stale_after(Duration::from_secs(30)),
        |ctx: Context| async move {
            while !ctx.is_cancelled() {
                ctx.heartbeat();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    );
    let flaky = Task::new(
        Spec::new("page-flaky")
            .backoff_initial(Duration::from_millis(100))
            .backoff_max(Duration::from_millis(100)),
        |ctx: Context| async move {
            ctx.heartbeat();
            tokio::time::sleep(Duration::from_millis(20)).await;
            parse_row("tenant 13: bad row");
        },
    );
    let stuck = Task::new(
        Spec::new("page-stuck").stale_after(Duration::from_millis(300)),
        |ctx: Context| async move {
            ctx.heartbeat();
            std::future::pending::<()>().await;
        },
    );
    vec![steady, flaky, stuck]
}

#[inline(never)]
fn parse_row(row: &str) {
    panic!("cannot parse {row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_each_task_as_a_person_sees_it() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no Chromium (install Debian's `chromium`, or set SUPERVISED_CHROMIUM)");
        return;
    };
    let registry = Registry::new();
    let tokens: Vec<_> = tasks().into_iter().map(|t| start(t, &registry).0).collect();
    let server = Server::start(Endpoints::new(&registry).bearer_token(TOKEN)).await;
    let base = format!("http://{}", server.addr);
    // Let the flaky task fail a few times and the stuck one go stale.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let page = format!("{base}/admin/#token={TOKEN}");
    let first = {
        let (browser, page) = (browser.clone(), page.clone());
        tokio::task::spawn_blocking(move || dom(&browser, &page, 3_000))
            .await
            .unwrap()
    };
    let seen = rows(&first);
    let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
    // One row per task, unhealthy first.
    assert_eq!(names.len(), 3, "{first}");
    assert_eq!(names[0], "page-stuck", "{first}");
    assert!(names.contains(&"page-steady") && names.contains(&"page-flaky"));
    let state = |rows: &[(String, String, u32)], name: &str| {
        rows.iter().find(|(n, _, _)| n == name).cloned().unwrap()
    };
    assert_eq!(state(&seen, "page-stuck").1, "stale");
    assert_eq!(state(&seen, "page-steady").1, "running");
    let restarts_then = state(&seen, "page-flaky").2;
    assert!(restarts_then >= 1, "{first}");
    // With the token, the last failure shows its message and a trimmed
    // backtrace whose first frame is the user's fn.
    assert!(first.contains("cannot parse tenant 13: bad row"), "{first}");
    assert!(first.contains("panic in attempt"), "{first}");
    // Durations are rounded for people.
    assert!(
        first.contains("<td class=\"num\">300 ms</td>"),
        "stale after, rounded: {first}"
    );
    assert!(first.contains(" ago</td>"), "{first}");

    // Later, the restart count has risen.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let later = {
        let (browser, page) = (browser.clone(), page.clone());
        tokio::task::spawn_blocking(move || dom(&browser, &page, 3_000))
            .await
            .unwrap()
    };
    let restarts_later = state(&rows(&later), "page-flaky").2;
    assert!(
        restarts_later > restarts_then,
        "restarts {restarts_then} then {restarts_later}"
    );

    // Without the token the page loads (it holds no task data) and asks for it.
    let anonymous = {
        let browser = browser.clone();
        let url = format!("{base}/admin");
        tokio::task::spawn_blocking(move || dom(&browser, &url, 2_000))
            .await
            .unwrap()
    };
    assert!(rows(&anonymous).is_empty(), "{anonymous}");
    assert!(
        anonymous.contains("the admin token is needed"),
        "{anonymous}"
    );
    assert!(
        anonymous.contains(r#"<form id="login" class="shown">"#),
        "{anonymous}"
    );

    for token in tokens {
        token.cancel();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_the_event_stream_shows_group_paths_and_quarantined_keys() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no Chromium (install Debian's `chromium`, or set SUPERVISED_CHROMIUM)");
        return;
    };
    let registry = Registry::new();
    let mut workers = supervised::Group::new();
    workers.spawn(Task::new(
        Spec::new("page-worker")
            .registry(&registry)
            .backoff_initial(Duration::from_millis(100))
            .backoff_max(Duration::from_millis(100)),
        |ctx: Context| async move {
            ctx.heartbeat();
            tokio::time::sleep(Duration::from_millis(50)).await;
            parse_row("tenant 7: bad row");
        },
    ));
    let mut root = supervised::Group::new();
    root.spawn(
        workers
            .into_task("page-workers")
            .with_spec(|s| s.registry(&registry)),
    );
    // A task that isolates its tenants; tenant 13's data is poisoned.
    root.spawn(Task::new(
        Spec::new("page-billing").registry(&registry),
        |ctx: Context| async move {
            loop {
                ctx.heartbeat();
                for tenant in [7u32, 13] {
                    let work = async move {
                        if tenant == 13 {
                            parse_row("tenant 13: bad row");
                        }
                    };
                    let _ = ctx.isolate(format!("tenant-{tenant}"), work).await;
                }
                tokio::select! {
                    _ = ctx.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        },
    ));
    let server = Server::start(Endpoints::new(&registry).bearer_token(TOKEN)).await;
    let page = format!("http://{}/admin/#token={TOKEN}", server.addr);
    let dom = {
        let browser = browser.clone();
        tokio::task::spawn_blocking(move || dom(&browser, &page, 3_000))
            .await
            .unwrap()
    };
    // The stream is open and has delivered the worker's failures and
    // restarts while the page ran.
    assert!(dom.contains(r#"data-events="live""#), "{dom}");
    let received: u32 = dom
        .split(r#"data-received=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(received >= 2, "events received: {received}\n{dom}");
    // The member is shown under the group task it runs in.
    assert!(
        dom.contains(r#"<span class="muted parent">page-workers/</span>page-worker"#),
        "{dom}"
    );
    // The isolating task is running and healthy, with its quarantined key
    // and the key's failure listed in its row.
    assert_eq!(
        rows(&dom)
            .iter()
            .find(|(n, _, _)| n == "page-billing")
            .map(|r| r.1.as_str()),
        Some("running"),
        "{dom}"
    );
    assert!(dom.contains("<strong>tenant-13</strong>"), "{dom}");
    assert!(
        dom.contains("panic: cannot parse tenant 13: bad row"),
        "{dom}"
    );
    root.shutdown(Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_leader_and_the_standby_of_a_singleton() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no Chromium (install Debian's `chromium`, or set SUPERVISED_CHROMIUM)");
        return;
    };
    // Two replicas: two registries on one lease store, each with its page.
    let store = supervised::lease::Memory::new("replica-a");
    let mut servers = Vec::new();
    let mut groups = Vec::new();
    for (name, lease) in [("a", store.clone()), ("b", store.replica("replica-b"))] {
        let registry = Registry::new();
        let mut group = supervised::Group::new().with_lease(lease);
        group.spawn(Task::new(
            Spec::new("page-scheduler")
                .singleton_from_group()
                .registry(&registry),
            |ctx: Context| async move {
                while !ctx.is_cancelled() {
                    ctx.heartbeat();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        ));
        common::eventually("the task to start", {
            let registry = registry.clone();
            move || registry.status("page-scheduler").is_some()
        })
        .await;
        if name == "a" {
            common::eventually("a to lead", {
                let store = store.clone();
                move || store.holder_of("page-scheduler").is_some()
            })
            .await;
        }
        servers.push(Server::start(Endpoints::new(&registry).bearer_token(TOKEN)).await);
        groups.push(group);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut doms = Vec::new();
    for server in &servers {
        let page = format!("http://{}/admin/#token={TOKEN}", server.addr);
        let browser = browser.clone();
        doms.push(
            tokio::task::spawn_blocking(move || dom(&browser, &page, 2_000))
                .await
                .unwrap(),
        );
    }
    let state = |dom: &str| {
        rows(dom)
            .into_iter()
            .find(|(n, _, _)| n == "page-scheduler")
            .map(|r| r.1)
    };
    assert_eq!(state(&doms[0]).as_deref(), Some("running"), "{}", doms[0]);
    assert!(doms[0].contains("leader, token 1"), "{}", doms[0]);
    assert_eq!(state(&doms[1]).as_deref(), Some("standby"), "{}", doms[1]);
    assert!(doms[1].contains("lease held by replica-a"), "{}", doms[1]);
    // A standby is a healthy row.
    assert!(
        doms[1].contains(r#"<tr class="healthy" data-task="page-scheduler""#),
        "{}",
        doms[1]
    );
    for group in groups {
        group.shutdown(Duration::from_secs(2)).await;
    }
    for server in servers {
        server.stop().await;
    }
}
