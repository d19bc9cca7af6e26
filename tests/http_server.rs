//! The probe server under slow, idle and many clients, as real clients over
//! loopback: a half-sent request, a silent connection and an idle keep-alive
//! connection are closed in time; a flood beyond `max_connections` waits and
//! the probes answer again; a body is refused; shutdown is bounded even with
//! a half-sent request open; accept errors (out of descriptors) are survived.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{request, Server};
use supervised::http::Endpoints;
use supervised::{CancellationToken, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "server-token-0123456789";

fn endpoints(registry: &Registry) -> Endpoints {
    Endpoints::new(registry)
        .bearer_token(TOKEN)
        .header_read_timeout(Duration::from_millis(300))
        .idle_timeout(Duration::from_millis(200))
        .shutdown_grace(Duration::from_millis(200))
}

/// How long until the server closes `stream` (reads until EOF or a reset),
/// at most `limit`; also returns what was read.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}; read {got:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_half_sent_request_and_a_silent_connection_are_closed_in_time() {
    let registry = Registry::new();
    registry.heartbeat("relay");
    let server = Server::start(endpoints(&registry)).await;

    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();

    let (half_after, _) = closed_within(&mut half, Duration::from_secs(5)).await;
    let (silent_after, _) = closed_within(&mut silent, Duration::from_secs(5)).await;
    assert!(half_after >= Duration::from_millis(250), "{half_after:?}");
    assert!(half_after < Duration::from_secs(2), "{half_after:?}");
    assert!(silent_after < Duration::from_secs(2), "{silent_after:?}");

    // Probes answer throughout.
    assert_eq!(request(server.addr, "GET", "/livez", &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let registry = Registry::new();
    let server = Server::start(endpoints(&registry)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The response comes, the connection stays open for the next request,
    // then is closed once idle.
    let (after, got) = closed_within(&mut stream, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(after >= Duration::from_millis(150), "{after:?}");
    assert!(after < Duration::from_secs(2), "{after:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_request_body_is_refused() {
    let registry = Registry::new();
    let server = Server::start(endpoints(&registry)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let (_, got) = closed_within(&mut stream, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("body_not_allowed"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_flood_beyond_the_connection_limit_waits_and_probes_answer_again() {
    let registry = Registry::new();
    registry.heartbeat("relay");
    let server = Server::start(endpoints(&registry).max_connections(8)).await;
    // 64 connections that never send a byte: 8 are served (and closed by the
    // header timeout), the rest wait in the accept queue meanwhile.
    let mut flood = Vec::new();
    for _ in 0..64 {
        flood.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // A probe behind the flood is answered once the server has worked
    // through it: each round of 8 is closed after 300 ms.
    let started = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        request(server.addr, "GET", "/livez", &[]),
    )
    .await
    .expect("the probe is answered");
    assert_eq!(reply.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    drop(flood);
    // With the flood gone, probes answer at once.
    let started = Instant::now();
    assert_eq!(request(server.addr, "GET", "/livez", &[]).await.status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_is_bounded_with_a_half_sent_request_open() {
    let registry = Registry::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    // A header timeout far beyond the grace: only shutdown can close it.
    let endpoints = Endpoints::new(&registry)
        .bearer_token(TOKEN)
        .header_read_timeout(Duration::from_secs(60))
        .idle_timeout(Duration::from_secs(60))
        .shutdown_grace(Duration::from_millis(300));
    let server = tokio::spawn(endpoints.serve(listener, stop.clone()));
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns within the grace")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    closed_within(&mut half, Duration::from_secs(2)).await;
    // Nothing listens any more.
    assert!(TcpStream::connect(addr).await.is_err());
}

/// The body of the child process of
/// [`accept_errors_are_logged_and_retried`], run with a descriptor limit of
/// 64: this same process takes every descriptor left, so that the server's
/// `accept` fails with `EMFILE`.
#[test]
fn accept_errors_child() {
    if std::env::var_os("SUPERVISED_ACCEPT_CHILD").is_none() {
        return; // Only meaningful in a child process.
    }
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let registry = Registry::new();
        registry.heartbeat("relay");
        let server = Server::start(endpoints(&registry)).await;
        // Client sockets made while descriptors are left; then every other
        // descriptor is taken, so that the server's `accept` of their
        // connections fails with EMFILE until they are given back.
        let sockets: Vec<tokio::net::TcpSocket> = (0..4)
            .map(|_| tokio::net::TcpSocket::new_v4().unwrap())
            .collect();
        let mut hold = Vec::new();
        while let Ok(file) = std::fs::File::open("/dev/null") {
            hold.push(file);
        }
        let mut clients = Vec::new();
        for socket in sockets {
            clients.push(socket.connect(server.addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(hold);
        drop(clients);
        // The server accepts again: a probe is answered.
        let reply = tokio::time::timeout(Duration::from_secs(10), probe(server.addr))
            .await
            .expect("the probe is answered after the descriptors are back");
        println!("probe status {reply}");
        server.stop().await;
    });
}

async fn probe(addr: SocketAddr) -> u16 {
    loop {
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let sent = stream
                .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut raw = Vec::new();
            if sent.is_ok() && stream.read_to_end(&mut raw).await.is_ok() && raw.len() > 12 {
                return String::from_utf8_lossy(&raw[9..12]).parse().unwrap_or(0);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn accept_errors_are_logged_and_retried() {
    if std::env::var_os("SUPERVISED_ACCEPT_CHILD").is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            r#"ulimit -n 64 && exec "$0" --exact accept_errors_child --nocapture --test-threads=1"#,
        )
        .arg(&exe)
        .env("SUPERVISED_ACCEPT_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("probe status 200"), "{stdout}");
    // Logged once per streak, then recovered.
    assert_eq!(
        stdout
            .matches("could not accept a connection; retrying")
            .count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains("accepting connections again"), "{stdout}");
}

#[tokio::test]
async fn extreme_settings_are_clamped_instead_of_overflowing() {
    let registry = Registry::new();
    registry.heartbeat("relay");
    let server = Server::start(
        Endpoints::new(&registry)
            .bearer_token(TOKEN)
            .header_read_timeout(Duration::MAX)
            .idle_timeout(Duration::MAX)
            .shutdown_grace(Duration::MAX)
            .max_connections(usize::MAX),
    )
    .await;
    assert_eq!(request(server.addr, "GET", "/livez", &[]).await.status, 200);
    server.stop().await;

    // A zero idle timeout turns idle closing off: a request in flight is
    // answered, and nothing spins.
    let server = Server::start(endpoints(&registry).idle_timeout(Duration::ZERO)).await;
    assert_eq!(request(server.addr, "GET", "/livez", &[]).await.status, 200);
    server.stop().await;
}
