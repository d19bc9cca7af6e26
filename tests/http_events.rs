//! `GET /admin/events`: lifecycle events as Server-Sent Events, read from a
//! real server on 127.0.0.1 over a raw TCP stream.

mod common;

use std::time::Duration;

use common::{start, Server};
use supervised::http::Endpoints;
use supervised::{Context, Registry, Spec, Task};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "events-token-0123456789";

/// Opens the stream and returns the connection once the response head is
/// read, with the head.
async fn open(server: &Server, token: Option<&str>) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut request = format!("GET /admin/events HTTP/1.1\r\nHost: {}\r\n", server.addr);
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("a response head in time")
            .unwrap();
        assert!(n == 1, "connection closed in the head");
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).unwrap())
}

/// Reads the stream until `text` has arrived (bounded); returns all read.
async fn read_until(stream: &mut TcpStream, text: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(text) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {text:?} in time; read: {seen}"))
            .unwrap();
        assert!(n > 0, "stream closed before {text:?}; read: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

fn fails_once(name: &str) -> Task {
    Task::new(
        Spec::new(name)
            .backoff_initial(Duration::from_millis(50))
            .backoff_max(Duration::from_millis(50)),
        |ctx: Context| async move {
            ctx.heartbeat();
            if ctx.attempt() == 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(std::io::Error::other("tenant 13: bad row"));
            }
            ctx.cancelled().await;
            Ok(())
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_in_order_with_details_for_the_token() {
    let registry = Registry::new();
    let server = Server::start(
        Endpoints::new(&registry)
            .bearer_token(TOKEN)
            // The stream is not idle while it is open.
            .idle_timeout(Duration::from_millis(100)),
    )
    .await;

    // Without the token: 401, and no stream.
    let refused = server.get("/admin/events").await;
    assert_eq!(refused.status, 401);

    let (mut stream, head) = open(&server, Some(TOKEN)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    // Well past the idle timeout and the shutdown grace that follows it,
    // the stream is still open.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (token, handle) = start(fails_once("sse-job"), &registry);
    let seen = read_until(
        &mut stream,
        "event: started\ndata: {\"task\":\"sse-job\",\"attempt\":2",
    )
    .await;
    let kinds: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        kinds,
        ["started", "failed", "backing_off", "started"],
        "{seen}"
    );
    assert!(
        seen.contains("\"message\":\"tenant 13: bad row\""),
        "{seen}"
    );
    assert!(seen.contains("\"delay_seconds\":0.05"), "{seen}");

    token.cancel();
    handle.await.unwrap();
    let seen = read_until(&mut stream, "event: stopped").await;
    assert!(seen.contains("\"exit\":\"cancelled\""), "{seen}");

    // The server's shutdown ends the stream within its grace.
    server.stop().await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the stream ends with the server")
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_events_withhold_failure_messages() {
    let registry = Registry::new();
    let server = Server::start(Endpoints::new(&registry).unauthenticated()).await;
    let (mut stream, head) = open(&server, None).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (token, _handle) = start(fails_once("sse-open"), &registry);
    let seen = read_until(&mut stream, "event: backing_off").await;
    assert!(seen.contains("\"kind\":\"error\""), "{seen}");
    assert!(seen.contains("\"message\":null"), "{seen}");
    assert!(!seen.contains("bad row"), "{seen}");
    token.cancel();
    server.stop().await;
}
