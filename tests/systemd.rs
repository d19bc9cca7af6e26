//! The systemd watchdog against a real Unix datagram socket, on paused time.
//! (Tests that read the environment are in `systemd_env.rs`, their own
//! process.)

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use supervised::systemd::Watchdog;
use supervised::{CancellationToken, Context, Registry, RestartPolicy, Spec};
use tokio::time::{sleep_until, Instant};

/// A bound notification socket in a fresh directory, removed on drop.
struct NotifySocket {
    dir: PathBuf,
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new(tag: &str) -> NotifySocket {
        let (dir, path) = NotifySocket::unbound(tag);
        NotifySocket::bind(dir, path)
    }

    /// Every datagram received so far.
    fn drain(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        out
    }
}

impl NotifySocket {
    /// A path in a fresh directory, with nothing bound to it yet.
    fn unbound(tag: &str) -> (PathBuf, PathBuf) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("supervised-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        (dir, path)
    }

    /// Binds the socket at `path` now.
    fn bind(dir: PathBuf, path: PathBuf) -> NotifySocket {
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        NotifySocket { dir, path, socket }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A task that beats every second unless `stuck` is set.
fn beating(registry: &Registry, name: &str, stuck: Arc<AtomicBool>, stop: &CancellationToken) {
    Spec::new(name)
        .registry(registry)
        .stale_after(Duration::from_secs(3))
        .spawn(stop.clone(), move |ctx: Context| {
            let stuck = stuck.clone();
            async move {
                while !ctx.is_cancelled() {
                    if !stuck.load(Ordering::Relaxed) {
                        ctx.heartbeat();
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
}

#[tokio::test(start_paused = true)]
async fn pings_only_while_every_task_is_fresh() {
    let notify = NotifySocket::new("watchdog");
    let registry = Registry::new();
    let stop = CancellationToken::new();
    let stuck = Arc::new(AtomicBool::new(false));
    beating(&registry, "a", stuck.clone(), &stop);
    beating(&registry, "b", Arc::new(AtomicBool::new(false)), &stop);

    let watchdog =
        Watchdog::new(&registry, notify.path.clone()).watchdog_timeout(Duration::from_secs(10));
    assert_eq!(watchdog.ping_interval(), Some(Duration::from_secs(5)));
    assert_eq!(watchdog.socket(), notify.path.as_os_str());
    let stop_watchdog = CancellationToken::new();
    let t0 = Instant::now();
    let handle = watchdog.spawn(stop_watchdog.clone());

    // The attempts have not run yet when the watchdog first looks: nothing
    // has beaten, so no `READY=1` (starting is not a heartbeat). At the next
    // look every task has beaten by itself: ready.
    sleep_until(t0 + Duration::from_millis(150)).await;
    assert_eq!(
        notify.drain(),
        [
            "WATCHDOG=1\nSTATUS=starting: 0/2 tasks beating; waiting for a, b\n",
            "READY=1\nSTATUS=2/2 healthy\n"
        ]
    );

    // Pings every WATCHDOG_USEC / 2; nothing else while nothing changes.
    sleep_until(t0 + Duration::from_millis(5_500)).await;
    assert_eq!(notify.drain(), ["WATCHDOG=1\n"]);

    // `a` stops beating: stale after 3 s, and the ping at 10 s is withheld.
    stuck.store(true, Ordering::Relaxed);
    sleep_until(t0 + Duration::from_millis(10_500)).await;
    assert_eq!(notify.drain(), ["STATUS=1/2 healthy; stale: a\n"]);

    // It recovers with its next beat at 11 s: the ping goes out at once (the
    // tasks are looked at every 100 ms while a ping is withheld), with the
    // new status, not at the next 5 s mark.
    stuck.store(false, Ordering::Relaxed);
    sleep_until(t0 + Duration::from_millis(10_950)).await;
    assert_eq!(notify.drain(), Vec::<String>::new());
    sleep_until(t0 + Duration::from_millis(11_150)).await;
    assert_eq!(notify.drain(), ["WATCHDOG=1\nSTATUS=2/2 healthy\n"]);
    // Then every 5 s from there.
    sleep_until(t0 + Duration::from_millis(16_000)).await;
    assert_eq!(notify.drain(), Vec::<String>::new());
    sleep_until(t0 + Duration::from_millis(16_200)).await;
    assert_eq!(notify.drain(), ["WATCHDOG=1\n"]);

    stop_watchdog.cancel();
    handle.await.unwrap();
    assert_eq!(notify.drain(), ["STOPPING=1\nSTATUS=stopping\n"]);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_task_that_gave_up_stops_the_pings() {
    let notify = NotifySocket::new("gaveup");
    let registry = Registry::new();
    let stop = CancellationToken::new();
    beating(&registry, "relay", Arc::new(AtomicBool::new(false)), &stop);
    let exit = Spec::new("db")
        .registry(&registry)
        .restart(RestartPolicy::Never)
        .spawn(
            stop.clone(),
            |_ctx: Context| async move { Err::<(), _>("down") },
        )
        .await
        .unwrap();
    assert!(exit.is_failed());

    let t0 = Instant::now();
    let handle = Watchdog::new(&registry, notify.path.clone())
        .watchdog_timeout(Duration::from_secs(2))
        .spawn(stop.clone());
    sleep_until(t0 + Duration::from_millis(5_500)).await;
    // Ready (every task has run), but never a ping.
    assert_eq!(
        notify.drain(),
        ["READY=1\nSTATUS=1/2 healthy; failed: db\n"]
    );
    stop.cancel();
    handle.await.unwrap();
    assert_eq!(notify.drain(), ["STOPPING=1\nSTATUS=stopping\n"]);
}

#[tokio::test(start_paused = true)]
async fn without_a_watchdog_timeout_only_state_is_sent() {
    let notify = NotifySocket::new("nowatchdog");
    let registry = Registry::new();
    let stop = CancellationToken::new();
    let t0 = Instant::now();
    let watchdog = Watchdog::new(&registry, notify.path.clone());
    assert_eq!(watchdog.ping_interval(), None);
    let handle = watchdog.spawn(stop.clone());
    // No task at all: ready at once.
    sleep_until(t0 + Duration::from_secs(30)).await;
    assert_eq!(notify.drain(), ["READY=1\nSTATUS=0/0 healthy\n"]);
    stop.cancel();
    handle.await.unwrap();
    assert_eq!(notify.drain(), ["STOPPING=1\nSTATUS=stopping\n"]);
}

#[tokio::test(start_paused = true)]
async fn a_missing_socket_is_survived() {
    let registry = Registry::new();
    let stop = CancellationToken::new();
    let handle = Watchdog::new(&registry, "/nonexistent/supervised/notify.sock")
        .watchdog_timeout(Duration::from_secs(1))
        .spawn(stop.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!handle.is_finished());
    stop.cancel();
    handle.await.unwrap();
}

#[cfg(target_os = "linux")]
#[tokio::test(start_paused = true)]
async fn abstract_sockets_work() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("supervised-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_nonblocking(true).unwrap();

    let registry = Registry::new();
    let stop = CancellationToken::new();
    let watchdog = Watchdog::new(&registry, format!("@{name}"));
    assert_eq!(watchdog.socket(), format!("@{name}").as_str());
    let handle = watchdog.spawn(stop.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    handle.await.unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1\nSTATUS=0/0 healthy\n");
}

#[tokio::test(start_paused = true)]
async fn ready_is_sent_again_until_the_socket_takes_it() {
    let (dir, path) = NotifySocket::unbound("late");
    let registry = Registry::new();
    let stop = CancellationToken::new();
    beating(&registry, "a", Arc::new(AtomicBool::new(false)), &stop);
    let t0 = Instant::now();
    let handle = Watchdog::new(&registry, path.clone())
        .watchdog_timeout(Duration::from_secs(10))
        .spawn(stop.clone());
    // The socket appears after 2 s: every notification sent before is lost.
    sleep_until(t0 + Duration::from_millis(2_000)).await;
    let notify = NotifySocket::bind(dir, path);
    // READY=1, the current status and the due ping arrive within one retry.
    sleep_until(t0 + Duration::from_millis(2_150)).await;
    assert_eq!(
        notify.drain(),
        ["READY=1\nWATCHDOG=1\nSTATUS=1/1 healthy\n"]
    );
    // Then on schedule: the next ping 5 s after the one delivered.
    sleep_until(t0 + Duration::from_millis(7_000)).await;
    assert_eq!(notify.drain(), Vec::<String>::new());
    sleep_until(t0 + Duration::from_millis(7_200)).await;
    assert_eq!(notify.drain(), ["WATCHDOG=1\n"]);
    stop.cancel();
    handle.await.unwrap();
    assert_eq!(notify.drain(), ["STOPPING=1\nSTATUS=stopping\n"]);
}

#[tokio::test(start_paused = true)]
async fn while_every_task_is_fresh_no_gap_between_pings_exceeds_half_the_timeout() {
    let notify = NotifySocket::new("gaps");
    let registry = Registry::new();
    let stop = CancellationToken::new();
    let stuck = Arc::new(AtomicBool::new(false));
    beating(&registry, "a", stuck.clone(), &stop);
    let t0 = Instant::now();
    let handle = Watchdog::new(&registry, notify.path.clone())
        .watchdog_timeout(Duration::from_secs(2))
        .spawn(stop.clone());
    // Sample every 10 ms for 60 s; `a` stalls from 20 s to 27 s (stale from
    // about 23 s: its stale_after is 3 s) and then beats again.
    let mut pings = Vec::new();
    let mut fresh_since = Some(t0);
    let mut worst = Duration::ZERO;
    let mut at = t0;
    while at < t0 + Duration::from_secs(60) {
        at += Duration::from_millis(10);
        sleep_until(at).await;
        let since = at - t0;
        stuck.store(
            since >= Duration::from_secs(20) && since < Duration::from_secs(27),
            Ordering::Relaxed,
        );
        let healthy = !registry.status("a").unwrap().stale;
        if !healthy {
            fresh_since = None;
        } else if fresh_since.is_none() {
            fresh_since = Some(at);
        }
        for message in notify.drain() {
            if message.contains("WATCHDOG=1") {
                pings.push(at);
            }
        }
        // While fresh, the last ping (or the moment it became fresh) is
        // never older than WATCHDOG_USEC / 2 plus one retry.
        if let Some(since_fresh) = fresh_since {
            let last = pings.last().copied().unwrap_or(t0).max(since_fresh);
            worst = worst.max(at - last);
        }
    }
    assert!(
        worst <= Duration::from_millis(1_000 + 100 + 10),
        "a gap of {worst:?} while every task was fresh"
    );
    // Pings were withheld during the stall and resumed after it.
    let stale_window = |p: &&Instant| {
        let s = **p - t0;
        s > Duration::from_millis(23_200) && s < Duration::from_secs(27)
    };
    assert_eq!(pings.iter().filter(stale_window).count(), 0);
    assert!(pings.iter().any(|p| *p - t0 > Duration::from_secs(27)));
    stop.cancel();
    handle.await.unwrap();
}
