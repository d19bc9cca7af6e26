//! The server behind [`Endpoints::serve`](super::Endpoints::serve): hyper's
//! HTTP/1.1 connections with a timer, so that a client can neither hold a
//! connection open forever nor hold up shutdown.
//!
//! * A request's headers must be complete within `header_read_timeout`,
//!   counted from when the connection starts waiting for them (hyper's
//!   timer); a keep-alive connection with no request in flight and no byte
//!   moved for `idle_timeout` is closed.
//! * At most `max_connections` connections are served at once; more wait in
//!   the kernel's accept queue until one closes (a warning is logged once
//!   per episode).
//! * Requests with a body are refused (`413`): these routes take none.
//! * An accept error (e.g. `EMFILE`, out of descriptors) is logged once per
//!   streak and retried after [`ACCEPT_RETRY`], instead of spinning or going
//!   silent.
//! * On shutdown, accepting stops, every connection is told to close after
//!   its request in flight, and after `shutdown_grace` every connection still
//!   open is closed, half-sent requests included.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::Reject;

/// How long the server waits after a failed `accept` before trying again.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The server's limits; see [`Endpoints`](super::Endpoints) for the setters
/// and defaults.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) header_read_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_connections: usize,
    pub(super) shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: super::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: super::DEFAULT_IDLE_TIMEOUT,
            max_connections: super::DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: super::DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then closes
/// every connection within `limits.shutdown_grace` and returns.
pub(super) async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: CancellationToken,
    limits: Limits,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut accept_failing = false;
    let mut at_capacity = false;
    loop {
        while connections.try_join_next().is_some() {}
        if permits.available_permits() == 0 && !at_capacity {
            at_capacity = true;
            tracing::warn!(
                max_connections = limits.max_connections,
                "supervised::http: at the connection limit; new connections wait until one closes"
            );
        }
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                if accept_failing {
                    tracing::info!("supervised::http: accepting connections again");
                }
                accept_failing = false;
                stream
            }
            Err(error) => {
                if !accept_failing {
                    tracing::warn!(
                        %error,
                        retry_in = ?ACCEPT_RETRY,
                        "supervised::http: could not accept a connection; retrying"
                    );
                }
                accept_failing = true;
                drop(permit);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_RETRY) => continue,
                }
            }
        };
        if permits.available_permits() > 0 {
            at_capacity = false;
        }
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            router.clone(),
            limits,
            shutdown.clone(),
            permit,
        ));
    }
    drop(listener);
    // Each connection ends within `shutdown_grace` of the cancellation.
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves one connection until it ends, goes idle, or shutdown's grace is
/// over.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let busy = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut router = router.clone();
        let guard = Busy::new(busy.clone());
        async move {
            if has_body(&request) {
                return Ok::<_, Infallible>(body_refused());
            }
            // The request stays in flight until its body is sent: a
            // streamed response (the event stream) is not idle.
            let response = router.call(request).await?;
            Ok(response.map(|body| {
                Body::new(Guarded {
                    body,
                    _guard: guard,
                })
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing_by: Option<Instant> = None;
    loop {
        let idle_at = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "supervised::http: connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if closing_by.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing_by = Some(Instant::now() + limits.shutdown_grace);
            }
            _ = tokio::time::sleep_until(closing_by.unwrap_or_else(Instant::now)), if closing_by.is_some() => {
                // Grace is over: dropping the connection closes it, a
                // half-sent request included.
                return;
            }
            _ = tokio::time::sleep_until(idle_at), if closing_by.is_none() && !limits.idle_timeout.is_zero() => {
                if activity.idle_for(limits.idle_timeout) {
                    conn.as_mut().graceful_shutdown();
                    closing_by = Some(Instant::now() + limits.shutdown_grace);
                }
            }
        }
    }
}

/// `true` when the request announces a body.
fn has_body(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

fn body_refused() -> Response {
    let mut response = Reject {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "body_not_allowed",
        detail: "these routes take no request body",
    }
    .into_response();
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// When a connection last moved a byte or finished a request, and how many
/// requests it has in flight.
struct Activity {
    base: Instant,
    /// Milliseconds after `base`.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// When the connection will have been idle for `idle`, if nothing moves.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            Instant::now() + idle
        } else {
            self.last() + idle
        }
    }

    fn idle_for(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && self.last().elapsed() >= idle
    }
}

/// A request in flight on its connection.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's stream, recording when bytes move.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it is sent.
    struct Guarded<B> {
        #[pin]
        body: B,
        _guard: Busy,
    }
}

impl<B: http_body::Body> http_body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
