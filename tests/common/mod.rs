//! Helpers shared by the integration tests: starting a task in a registry of
//! the test's own, a tiny HTTP/1.1 client over a tokio `TcpStream` and a
//! server started on 127.0.0.1, port 0.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use supervised::http::Endpoints;
use supervised::{CancellationToken, Exit, Registry, Task};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Spawns `task` in `registry`; returns its token and its handle.
pub fn start(
    task: Task,
    registry: &Registry,
) -> (CancellationToken, tokio::task::JoinHandle<Exit>) {
    let token = CancellationToken::new();
    let handle = task
        .with_spec(|s| s.registry(registry))
        .spawn(token.clone());
    (token, handle)
}

/// How long one request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// A running server and the token that stops it.
pub struct Server {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `endpoints` on 127.0.0.1, port 0.
    pub async fn start(endpoints: Endpoints) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let handle = tokio::spawn(endpoints.serve(listener, stop.clone()));
        Server { addr, stop, handle }
    }

    /// `GET target` without headers.
    pub async fn get(&self, target: &str) -> Reply {
        request(self.addr, "GET", target, &[]).await
    }

    /// `GET target` with `Authorization: Bearer token`.
    pub async fn get_with_token(&self, target: &str, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        request(self.addr, "GET", target, &[("Authorization", &auth)]).await
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(REQUEST_TIMEOUT, self.handle)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

/// Sends one request (with `Connection: close`) and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Reply {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, method, target, headers))
        .await
        .expect("the server answers in time")
}

/// [`request`] to a server that may be gone: `None` when it cannot be
/// reached or closes the connection early.
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Option<Reply> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.ok()?;
    raw.windows(4)
        .any(|w| w == b"\r\n\r\n")
        .then(|| parse(&raw, method == "HEAD"))
}

async fn exchange(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || method == "PUT" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse(&raw, method == "HEAD")
}

fn parse(raw: &[u8], head: bool) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head_text = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked && !head {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Waits (bounded) until `f` holds, checking every few milliseconds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
