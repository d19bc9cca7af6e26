//! `Watchdog::from_env`: kept in its own test binary (its own process) because
//! it sets environment variables, which are process-wide. One test function
//! runs every case in sequence.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use supervised::systemd::Watchdog;
use supervised::{CancellationToken, Registry};

#[tokio::test(start_paused = true)]
async fn from_env_follows_notify_socket_watchdog_usec_and_watchdog_pid() {
    let registry = Registry::new();
    let clear = || {
        for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(var);
        }
    };

    // Not under systemd.
    clear();
    assert!(Watchdog::from_env(&registry).is_none());
    std::env::set_var("NOTIFY_SOCKET", "");
    assert!(Watchdog::from_env(&registry).is_none());

    // Notifications but no watchdog.
    std::env::set_var("NOTIFY_SOCKET", "@supervised-env");
    let w = Watchdog::from_env(&registry).unwrap();
    assert_eq!(w.socket(), "@supervised-env");
    assert_eq!(w.ping_interval(), None);

    // WATCHDOG_USEC without WATCHDOG_PID: ping every half of it.
    std::env::set_var("WATCHDOG_USEC", "4000000");
    assert_eq!(
        Watchdog::from_env(&registry).unwrap().ping_interval(),
        Some(Duration::from_secs(2))
    );

    // WATCHDOG_PID naming this process: on.
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    assert_eq!(
        Watchdog::from_env(&registry).unwrap().ping_interval(),
        Some(Duration::from_secs(2))
    );

    // WATCHDOG_PID naming another process: off, but notifications still go.
    std::env::set_var("WATCHDOG_PID", (std::process::id() + 1).to_string());
    let w = Watchdog::from_env(&registry).unwrap();
    assert_eq!(w.ping_interval(), None);

    // Zero or garbage: off.
    std::env::remove_var("WATCHDOG_PID");
    std::env::set_var("WATCHDOG_USEC", "0");
    assert_eq!(Watchdog::from_env(&registry).unwrap().ping_interval(), None);
    std::env::set_var("WATCHDOG_USEC", "soon");
    assert_eq!(Watchdog::from_env(&registry).unwrap().ping_interval(), None);

    // End to end through a real socket named in NOTIFY_SOCKET.
    let dir = std::env::temp_dir().join(format!("supervised-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_nonblocking(true).unwrap();
    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_USEC", "1000000");
    let stop = CancellationToken::new();
    let handle = Watchdog::from_env(&registry).unwrap().spawn(stop.clone());
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    stop.cancel();
    handle.await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    assert_eq!(
        got,
        [
            "READY=1\nWATCHDOG=1\nSTATUS=0/0 healthy\n",
            "WATCHDOG=1\n",
            "WATCHDOG=1\n",
            "STOPPING=1\nSTATUS=stopping\n"
        ]
    );
    clear();
    let _ = std::fs::remove_dir_all(&dir);
}
