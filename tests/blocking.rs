//! A task that blocks its worker thread (a `std::thread::sleep` in async code)
//! cannot be dropped, but on the multi-thread runtime the registry still
//! reports it stale and the endpoints still answer, from the other worker.
//! Real time: the block is a real sleep.

mod common;

use std::time::Duration;

use common::Server;
use supervised::http::Endpoints;
use supervised::{CancellationToken, Context, Registry, Spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_and_report_stale_while_a_task_blocks_its_thread() {
    let registry = Registry::new();
    let token = CancellationToken::new();
    let server = Server::start(Endpoints::new(&registry).unauthenticated()).await;
    let blocker = Spec::new("blocker")
        .registry(&registry)
        .stale_after(Duration::from_millis(100))
        .grace(Duration::from_millis(50))
        .spawn(token.clone(), |ctx: Context| async move {
            ctx.heartbeat();
            std::thread::sleep(Duration::from_millis(1500));
        });
    tokio::time::sleep(Duration::from_millis(400)).await;

    let reply = tokio::time::timeout(Duration::from_secs(2), server.get("/livez?verbose"))
        .await
        .expect("the endpoint answers while a worker is blocked");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("[-]blocker failed"), "{}", reply.body);
    let status = registry.status("blocker").unwrap();
    assert!(status.stale && !status.healthy, "{status:?}");

    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), blocker)
        .await
        .expect("the supervisor ends once the thread is free");
    server.stop().await;
}
