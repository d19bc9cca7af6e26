//! Malformed and hostile requests against the endpoints on 127.0.0.1, written
//! as raw bytes: each gets its documented 4xx (or a clean close) and the
//! server keeps answering. Then a bounded load test while tasks panic.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, request, Server};
use supervised::http::{Endpoints, MAX_QUERY_LEN};
use supervised::{CancellationToken, Context, Registry, Spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "correct-horse-battery-staple";

/// How long the server may take to answer (or close) one raw request.
const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server did with a raw request.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Answered with this status.
    Status(u16),
    /// Closed the connection without a response.
    Closed,
}

/// Writes `bytes` on a fresh connection (and, when `half_close`, shuts the
/// write side), then reads until the server closes and returns the status of
/// the response, if any.
async fn raw(addr: SocketAddr, bytes: &[u8], half_close: bool) -> Outcome {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may refuse and close before reading everything: a failed
        // write is not an outcome by itself, what it answered is.
        let _ = stream.write_all(bytes).await;
        if half_close {
            let _ = stream.shutdown().await;
        }
        let mut got = Vec::new();
        // A reset after the response was sent still leaves it in `got`.
        let _ = stream.read_to_end(&mut got).await;
        got
    };
    let got = tokio::time::timeout(RAW_TIMEOUT, exchange)
        .await
        .expect("the server answers or closes in time");
    if got.is_empty() {
        return Outcome::Closed;
    }
    let head = String::from_utf8_lossy(&got);
    let status_line = head.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 "),
        "not an HTTP response: {status_line:?}"
    );
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    Outcome::Status(status)
}

/// A request with `Host` and `Connection: close`, plus `extra` header lines.
fn req(method: &str, target: &str, extra: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

fn auth(value: &str) -> String {
    format!("Authorization: {value}\r\n")
}

/// A registry with one task that beats and waits, and the token that ends it.
async fn one_task() -> (Registry, CancellationToken) {
    let registry = Registry::new();
    let stop = CancellationToken::new();
    Spec::new("relay")
        .registry(&registry)
        .spawn(stop.clone(), |ctx: Context| async move {
            ctx.heartbeat();
            ctx.cancelled().await;
        });
    let r = registry.clone();
    eventually("the task to beat", move || {
        r.status("relay").is_some_and(|t| t.last_tick.is_some())
    })
    .await;
    (registry, stop)
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_and_the_server_stays_up() {
    let (registry, stop) = one_task().await;
    let server = Server::start(Endpoints::new(&registry).bearer_token(TOKEN)).await;

    let kb100 = "a".repeat(100 * 1024);
    let mb1 = "a".repeat(1024 * 1024);
    let many_headers: String = (0..200).map(|i| format!("X-Header-{i}: v\r\n")).collect();
    let short = &TOKEN[..TOKEN.len() - 1];
    let long = format!("{TOKEN}x");
    let one_off = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    let first_off = format!("X{}", &TOKEN[1..]);

    use Outcome::{Closed, Status};
    let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
        // Methods: the router answers 405 with `Allow: GET,HEAD`, for a
        // made-up token too; a token with a character not allowed in a
        // method is a parse error (400).
        ("POST", req("POST", "/livez", "Content-Length: 0\r\n"), Status(405)),
        ("PUT", req("PUT", "/admin/liveness", "Content-Length: 0\r\n"), Status(405)),
        ("DELETE", req("DELETE", "/readyz", ""), Status(405)),
        ("PATCH", req("PATCH", "/metrics", "Content-Length: 0\r\n"), Status(405)),
        ("OPTIONS", req("OPTIONS", "/livez", ""), Status(405)),
        ("made-up method", req("FROBNICATE", "/livez", ""), Status(405)),
        ("invalid method token", req("G(T", "/livez", ""), Status(400)),
        // Headers: 100 KB fits hyper's buffer (about 400 KB) and is served;
        // 1 MB of header, or more than 100 header lines, answer 431.
        ("100 KB header value", req("GET", "/livez", &format!("X-Big: {kb100}\r\n")), Status(200)),
        ("1 MB header value", req("GET", "/livez", &format!("X-Big: {mb1}\r\n")), Status(431)),
        ("200 header lines", req("GET", "/livez", &many_headers), Status(431)),
        ("NUL in a header value", req("GET", "/livez", "X-Bad: a\x00b\r\n"), Status(400)),
        ("Content-Length not a number", req("GET", "/livez", "Content-Length: abc\r\n"), Status(400)),
        // Queries: over MAX_QUERY_LEN the endpoints answer 400; a request
        // target over 64 KB is refused by hyper with 414.
        ("query at MAX_QUERY_LEN", req("GET", &format!("/livez?{}", "v".repeat(MAX_QUERY_LEN)), ""), Status(200)),
        ("query over MAX_QUERY_LEN", req("GET", &format!("/livez?{}", "v".repeat(MAX_QUERY_LEN + 1)), ""), Status(400)),
        ("query over MAX_QUERY_LEN on admin", req("GET", &format!("/admin/liveness?{}", "v".repeat(MAX_QUERY_LEN + 1)), &auth(&format!("Bearer {TOKEN}"))), Status(400)),
        ("100 KB query", req("GET", &format!("/livez?{kb100}"), ""), Status(414)),
        ("100 KB path", req("GET", &format!("/livez/{kb100}"), ""), Status(414)),
        ("broken %-escape in query", req("GET", "/readyz?exclude=%zz", ""), Status(400)),
        ("%-escape to invalid UTF-8 in query", req("GET", "/readyz?exclude=%ff%fe", ""), Status(400)),
        ("65 excludes", req("GET", &format!("/livez?{}", "exclude=a&".repeat(65)), ""), Status(400)),
        // Paths: raw non-ASCII bytes are a parse error; escapes decoding to
        // invalid UTF-8 in a check name are 400; broken escapes or dots
        // name no check or no route (404), never a file.
        ("raw bytes 0xff 0xfe in path", b"GET /livez/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_vec(), Status(400)),
        ("%ff in check name", req("GET", "/livez/%ff", ""), Status(400)),
        ("truncated UTF-8 %c3 in check name", req("GET", "/readyz/%c3", ""), Status(400)),
        ("broken escape %zz in check name", req("GET", "/livez/%zz", ""), Status(404)),
        ("dot-dot to the admin route", req("GET", "/livez/../admin/liveness", ""), Status(404)),
        ("dot-dot out of the root", req("GET", "/../../etc/passwd", ""), Status(404)),
        ("escaped dot-dot", req("GET", "/livez/%2e%2e/admin/liveness", ""), Status(404)),
        ("asterisk target", req("GET", "*", ""), Status(404)),
        // Tokens: everything but the exact token (scheme case-insensitive)
        // answers 401.
        ("no Authorization", req("GET", "/admin/liveness", ""), Status(401)),
        ("empty Authorization", req("GET", "/admin/liveness", &auth("")), Status(401)),
        ("scheme only", req("GET", "/admin/liveness", &auth("Bearer")), Status(401)),
        ("scheme and empty token", req("GET", "/admin/liveness", &auth("Bearer ")), Status(401)),
        ("token without scheme", req("GET", "/admin/liveness", &auth(TOKEN)), Status(401)),
        ("wrong token", req("GET", "/admin/liveness", &auth("Bearer wrong")), Status(401)),
        ("token one char short", req("GET", "/admin/liveness", &auth(&format!("Bearer {short}"))), Status(401)),
        ("token one char long", req("GET", "/admin/liveness", &auth(&format!("Bearer {long}"))), Status(401)),
        ("right length, last char differs", req("GET", "/admin/liveness", &auth(&format!("Bearer {one_off}"))), Status(401)),
        ("right length, first char differs", req("GET", "/admin/liveness", &auth(&format!("Bearer {first_off}"))), Status(401)),
        ("token in upper case", req("GET", "/admin/liveness", &auth(&format!("Bearer {}", TOKEN.to_uppercase()))), Status(401)),
        ("Basic scheme", req("GET", "/admin/liveness", &auth("Basic Y29ycmVjdDpob3JzZQ==")), Status(401)),
        ("Basic scheme with the token", req("GET", "/admin/liveness", &auth(&format!("Basic {TOKEN}"))), Status(401)),
        ("Token scheme", req("GET", "/metrics", &auth(&format!("Token {TOKEN}"))), Status(401)),
        ("tab instead of space", req("GET", "/admin/liveness", &auth(&format!("Bearer\t{TOKEN}"))), Status(401)),
        ("invalid UTF-8 token", b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n".to_vec(), Status(401)),
        ("wrong token first of two", req("GET", "/admin/liveness", &format!("{}{}", auth("Bearer wrong"), auth(&format!("Bearer {TOKEN}")))), Status(401)),
        ("lower-case scheme", req("GET", "/admin/liveness", &auth(&format!("bearer {TOKEN}"))), Status(200)),
        // Request lines that are not HTTP/1.x.
        ("garbage bytes", b"\x00\x01\x02 hello\r\n\r\n".to_vec(), Status(400)),
        ("plain text", b"this is not http\r\n\r\n".to_vec(), Status(400)),
        ("no version", b"GET /livez\r\n\r\n".to_vec(), Status(400)),
        ("HTTP/9.9", b"GET /livez HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n".to_vec(), Status(400)),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), Closed),
    ];

    for (name, bytes, expected) in &cases {
        let got = raw(server.addr, bytes, false).await;
        assert_eq!(&got, expected, "{name}");
        if let Status(s) = got {
            assert!(s < 500, "{name}: {s}");
        }
        // Still up, and still correct.
        let livez = request(server.addr, "GET", "/livez", &[]).await;
        assert_eq!(
            (livez.status, livez.body.as_str()),
            (200, "ok"),
            "after {name}"
        );
    }

    // A connection that sends nothing and closes its side is closed.
    assert_eq!(raw(server.addr, b"", true).await, Closed);
    // Half a request line, then the client goes away.
    assert_eq!(raw(server.addr, b"GET /liv", true).await, Closed);

    let admin = server.get_with_token("/admin/liveness", TOKEN).await;
    assert_eq!(admin.status, 200);
    assert_eq!(admin.json()["subsystems"]["relay"]["state"], "running");
    server.stop().await;
    stop.cancel();
}

/// The response bodies of the errors the endpoints produce themselves are
/// JSON with an `error` code; those of the router and of hyper are not.
#[tokio::test]
async fn error_bodies_say_what_is_wrong() {
    let (registry, stop) = one_task().await;
    let server = Server::start(Endpoints::new(&registry).bearer_token(TOKEN)).await;

    let too_long = format!("/livez?{}", "v".repeat(MAX_QUERY_LEN + 1));
    let reply = server.get(&too_long).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "query_too_long");

    let reply = server.get("/readyz?exclude=%zz").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "malformed_query");

    let reply = server.get("/livez/%zz").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "unknown_check");

    let reply = server.get("/livez/../admin/liveness").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "not_found");

    let reply = server.get_with_token("/admin/liveness", &TOKEN[1..]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"], "unauthorized");
    assert!(!reply.body.contains(TOKEN));

    // The router's own refusals: 405 with `Allow` and a short JSON body, 400
    // in plain text for a check name that is not UTF-8; both with the
    // headers of every other answer.
    let reply = request(server.addr, "DELETE", "/livez", &[]).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET,HEAD"));
    assert_eq!(reply.json()["error"], "method_not_allowed");
    let reply = server.get("/livez/%ff").await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("UTF-8"), "{:?}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));

    server.stop().await;
    stop.cancel();
}

// --- Load ------------------------------------------------------------------

/// How many tasks the load test supervises, and how many of them panic.
const TASKS: usize = 1_000;
const PANICKING: usize = 100;
/// How long the clients send requests, in real time.
const LOAD_FOR: Duration = Duration::from_secs(3);
const CLIENTS: usize = 4;

fn injected_panic(i: usize) {
    panic!("injected panic {i}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoints_answer_under_load_while_tasks_panic() {
    let registry = Registry::new();
    let stop = CancellationToken::new();
    let mut handles = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let spec = Spec::new(format!("task-{i:04}"))
            .registry(&registry)
            .backoff_initial(Duration::from_millis(5))
            .backoff_max(Duration::from_millis(20));
        if i < PANICKING {
            // Beats, then panics after 200 to 500 ms, forever.
            let after = Duration::from_millis(200 + (i as u64 * 37) % 300);
            handles.push(spec.spawn(stop.clone(), move |ctx: Context| async move {
                ctx.heartbeat();
                tokio::time::sleep(after).await;
                injected_panic(i);
            }));
        } else {
            handles.push(spec.stale_after(Duration::from_secs(60)).spawn(
                stop.clone(),
                |ctx: Context| async move {
                    loop {
                        ctx.heartbeat();
                        tokio::select! {
                            _ = ctx.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                },
            ));
        }
    }
    let r = registry.clone();
    eventually("every task to beat once", move || {
        let all = r.tasks();
        all.len() == TASKS && all.iter().all(|t| t.last_tick.is_some())
    })
    .await;
    let restarts_before: u64 = registry.tasks().iter().map(|t| t.restarts).sum();

    let server = Server::start(Endpoints::new(&registry).bearer_token(TOKEN)).await;
    let addr = server.addr;
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = tokio::time::Instant::now();
    let deadline = started + LOAD_FOR;
    let bearer = format!("Bearer {TOKEN}");
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (requests, errors, bearer) = (requests.clone(), errors.clone(), bearer.clone());
        clients.push(tokio::spawn(async move {
            let mut n = client;
            while tokio::time::Instant::now() < deadline {
                let (path, with_token) = match n % 4 {
                    0 => ("/livez", false),
                    1 => ("/readyz?verbose", false),
                    2 => ("/admin/liveness", true),
                    _ => ("/metrics", true),
                };
                n += 1;
                let bearer = bearer.clone();
                // A panic of the client (a timeout, a refused connection, a
                // response that does not parse) counts as an error.
                let reply = tokio::spawn(async move {
                    let headers: &[(&str, &str)] = if with_token {
                        &[("Authorization", &bearer)]
                    } else {
                        &[]
                    };
                    request(addr, "GET", path, headers).await
                })
                .await;
                requests.fetch_add(1, Ordering::Relaxed);
                let ok = match &reply {
                    Ok(reply) => match path {
                        // Nothing is stale and nothing gave up: both probes
                        // pass; a task between attempts keeps its last beat.
                        "/livez" => reply.status == 200 && reply.body == "ok",
                        "/readyz?verbose" => {
                            reply.status == 200 && reply.body.ends_with("readyz check passed\n")
                        }
                        "/admin/liveness" => {
                            reply.status == 200
                                && reply.json()["subsystems"]
                                    .as_object()
                                    .is_some_and(|s| s.len() == TASKS)
                        }
                        _ => {
                            reply.status == 200
                                && reply
                                    .body
                                    .contains("supervised_task_restarts_total{task=\"task-0999\"}")
                        }
                    },
                    Err(_) => false,
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                    let summary = match &reply {
                        Ok(r) => format!("{} {:?}", r.status, &r.body[..r.body.len().min(300)]),
                        Err(e) => e.to_string(),
                    };
                    eprintln!("unexpected answer to {path}: {summary}");
                }
            }
        }));
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("a client ends after the deadline")
            .unwrap();
    }
    let elapsed = started.elapsed();
    let requests = requests.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    let restarts: u64 = registry.tasks().iter().map(|t| t.restarts).sum::<u64>() - restarts_before;
    println!(
        "load: {requests} requests in {:.2} s over {CLIENTS} connections, {errors} errors, \
         {restarts} restarts of {PANICKING} panicking tasks among {TASKS}",
        elapsed.as_secs_f64()
    );
    assert_eq!(errors, 0, "{errors} of {requests} requests failed");
    assert!(requests >= 20, "only {requests} requests in {elapsed:?}");
    // The tasks did panic and restart while the requests were served.
    assert!(
        restarts >= PANICKING as u64,
        "only {restarts} restarts during the load"
    );
    for t in registry.tasks() {
        assert!(t.healthy, "{t:?}");
    }

    server.stop().await;
    stop.cancel();
    for handle in handles {
        let exit = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("every task ends after cancellation")
            .unwrap();
        assert!(exit.is_cancelled(), "{exit:?}");
    }
}
