//! systemd readiness and watchdog notifications (feature `systemd`, on
//! [sd-notify](sd_notify)).
//!
//! A [`Watchdog`] is a small task that tells systemd how the supervised tasks
//! are doing, over the `sd_notify` datagram protocol:
//!
//! * `READY=1` once every supervised task has beaten at least once by itself
//!   (starting is not a heartbeat; tasks declared without heartbeats and
//!   tasks that have ended are not waited for; use `Type=notify` in the unit);
//! * `WATCHDOG=1` every `WATCHDOG_USEC / 2`, **only while every task is
//!   healthy** (not stale, not blocking its thread, not given up), so that
//!   with `WatchdogSec=` systemd restarts a process whose loops are stuck,
//!   which a ping from an independent timer would hide. A withheld ping goes
//!   out as soon as every task is fresh again, not half a period later: a
//!   stall that `on_stale = "restart"` heals in time does not get the service
//!   killed;
//! * `STATUS=` with a one-line summary whenever it changes: `4/4 healthy`, or
//!   `3/4 healthy; stale: relay`, shown by `systemctl status`;
//! * `STOPPING=1` when its shutdown token is cancelled.
//!
//! ```no_run
//! use supervised_core::systemd::Watchdog;
//! use supervised_core::{CancellationToken, Registry};
//!
//! # async fn demo() {
//! let shutdown = CancellationToken::new();
//! // `None` when the process does not run under systemd (no NOTIFY_SOCKET).
//! if let Some(watchdog) = Watchdog::from_env(Registry::global()) {
//!     watchdog.spawn(shutdown.clone());
//! }
//! # }
//! ```
//!
//! Sending never blocks: the socket is non-blocking. A failed send is logged
//! once per streak and retried every [`RETRY`]: `READY=1` until it is
//! delivered (the socket may not exist yet), the current `STATUS=`, pings, and
//! `STOPPING=1` a few times.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::{Registry, TaskState, TaskStatus};

/// How often the registry is read before `READY=1` has been sent.
pub const STARTING_POLL: Duration = Duration::from_millis(100);

/// How often the registry is read for `STATUS=` changes after `READY=1`.
pub const RUNNING_POLL: Duration = Duration::from_secs(1);

/// How soon a notification that could not be sent is sent again, and how
/// often the tasks are looked at while a watchdog ping is withheld.
pub const RETRY: Duration = Duration::from_millis(100);

/// How many times `STOPPING=1` is tried at shutdown, [`RETRY`] apart.
pub const STOPPING_RETRIES: u32 = 5;

/// How many names a `STATUS=` line lists before "and N more".
const MAX_NAMES: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// A Linux abstract socket name (`@name` in `NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

/// Notifies systemd of readiness, health and shutdown; see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct Watchdog {
    registry: Registry,
    target: Target,
    ping_every: Option<Duration>,
}

impl Watchdog {
    /// The watchdog systemd asks for through the environment: the socket in
    /// `NOTIFY_SOCKET`, and pings every `WATCHDOG_USEC / 2` when `WATCHDOG_USEC`
    /// is set and `WATCHDOG_PID` is unset or this process's id. `None` when
    /// `NOTIFY_SOCKET` is unset or empty (not running under systemd).
    ///
    /// The variables are read, not removed, so child processes inherit them.
    pub fn from_env(registry: &Registry) -> Option<Watchdog> {
        let socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty())?;
        let watchdog = Watchdog::new(registry, socket);
        Some(match sd_notify::watchdog_enabled() {
            Some(timeout) => watchdog.watchdog_timeout(timeout),
            None => watchdog,
        })
    }

    /// A watchdog that sends to `socket`, given as in `NOTIFY_SOCKET`: a file
    /// system path, or `@name` for a Linux abstract socket. Sends no
    /// `WATCHDOG=1` until [`Watchdog::watchdog_timeout`] is set.
    pub fn new(registry: &Registry, socket: impl Into<OsString>) -> Watchdog {
        let socket: OsString = socket.into();
        let bytes = socket.as_bytes();
        let target = match bytes.strip_prefix(b"@") {
            Some(name) => Target::Abstract(name.to_vec()),
            None => Target::Path(PathBuf::from(socket)),
        };
        Watchdog {
            registry: registry.clone(),
            target,
            ping_every: None,
        }
    }

    /// Sends `WATCHDOG=1` every `timeout / 2` while every task is fresh, for a
    /// unit with `WatchdogSec=timeout`. A zero timeout turns pings off.
    pub fn watchdog_timeout(mut self, timeout: Duration) -> Self {
        self.ping_every = Some(timeout / 2).filter(|d| !d.is_zero());
        self
    }

    /// How often `WATCHDOG=1` is sent while the tasks are fresh; `None` when
    /// the watchdog is off.
    pub fn ping_interval(&self) -> Option<Duration> {
        self.ping_every
    }

    /// The socket notifications go to, as in `NOTIFY_SOCKET`.
    pub fn socket(&self) -> OsString {
        match &self.target {
            Target::Path(p) => p.clone().into_os_string(),
            Target::Abstract(name) => {
                let mut s = OsString::from("@");
                s.push(OsStr::from_bytes(name));
                s
            }
        }
    }

    /// [`Watchdog::run`] on a new tokio task.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// Notifies until `shutdown` is cancelled, then sends `STOPPING=1` and
    /// returns.
    ///
    /// A notification that cannot be sent (the socket is not there yet, its
    /// queue is full) is sent again: `READY=1` until it is delivered,
    /// `STATUS=` until the current one is, `STOPPING=1` a few times within
    /// [`STOPPING_RETRIES`]` × `[`RETRY`]. A ping withheld because a task is
    /// unhealthy goes out as soon as every task is fresh again (the tasks are
    /// looked at every [`RETRY`] meanwhile), so a stall that heals in time
    /// never leaves systemd waiting longer than `WATCHDOG_USEC / 2` plus
    /// [`RETRY`].
    pub async fn run(self, shutdown: CancellationToken) {
        let mut sender = Sender::new(self.target.clone());
        let mut ready_sent = false;
        let mut last_status: Option<String> = None;
        let mut next_ping = self.ping_every.map(|_| Instant::now());
        let mut withheld = false;
        let mut next_poll = Instant::now();
        let mut was_fresh = true;
        loop {
            let wake = match next_ping {
                Some(ping) => ping.min(next_poll),
                None => next_poll,
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let stopping = [NotifyState::Stopping, NotifyState::Status("stopping")];
                    for _ in 0..STOPPING_RETRIES {
                        if sender.send(&stopping) {
                            break;
                        }
                        tokio::time::sleep(RETRY).await;
                    }
                    return;
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            let view = View::read(&self.registry);
            let all_beaten = view.all_beaten();
            let mut states: Vec<NotifyState<'_>> = Vec::with_capacity(3);
            let sends_ready = !ready_sent && all_beaten;
            if sends_ready {
                states.push(NotifyState::Ready);
            }
            let mut pings = false;
            if let (Some(ping), Some(every)) = (next_ping, self.ping_every) {
                if now >= ping {
                    let fresh = view.all_fresh();
                    if fresh {
                        states.push(NotifyState::Watchdog);
                        pings = true;
                        // On schedule, unless the last ping was withheld or
                        // the schedule is far behind: then from now.
                        let next = ping + every;
                        next_ping = Some(if withheld || next <= now {
                            now + every
                        } else {
                            next
                        });
                        withheld = false;
                    } else {
                        if was_fresh {
                            tracing::warn!(
                                status = %view.summary(ready_sent || all_beaten),
                                "supervised: withholding systemd watchdog pings while tasks are unhealthy"
                            );
                        }
                        withheld = true;
                        // Look again soon: the ping goes out once every task
                        // is fresh.
                        next_ping = Some(now + RETRY.min(every));
                    }
                    was_fresh = fresh;
                }
            }
            let status = view.summary(ready_sent || all_beaten);
            let status_changed = last_status.as_deref() != Some(status.as_str());
            if status_changed {
                states.push(NotifyState::Status(&status));
            }
            if now >= next_poll {
                next_poll = now
                    + if ready_sent || sends_ready {
                        RUNNING_POLL
                    } else {
                        STARTING_POLL
                    };
            }
            if states.is_empty() {
                continue;
            }
            if sender.send(&states) {
                ready_sent |= sends_ready;
                if status_changed {
                    last_status = Some(status.clone());
                }
            } else {
                // Nothing was delivered: try again soon, the ping included.
                next_poll = next_poll.min(now + RETRY);
                if pings {
                    next_ping = Some(now + RETRY);
                }
            }
        }
    }
}

/// The tasks as the watchdog sees them at one instant.
struct View {
    tasks: Vec<TaskStatus>,
}

impl View {
    fn read(registry: &Registry) -> View {
        View {
            tasks: registry.tasks(),
        }
    }

    fn waiting(&self) -> impl Iterator<Item = &TaskStatus> {
        self.tasks.iter().filter(|t| t.awaits_first_beat())
    }

    fn all_beaten(&self) -> bool {
        self.waiting().next().is_none()
    }

    fn all_fresh(&self) -> bool {
        self.tasks.iter().all(|t| t.healthy && !t.stale)
    }

    fn summary(&self, ready: bool) -> String {
        let n = self.tasks.len();
        if !ready {
            let waiting: Vec<&str> = self.waiting().map(|t| t.name.as_str()).collect();
            return format!(
                "starting: {}/{n} tasks beating; waiting for {}",
                n - waiting.len(),
                names(&waiting)
            );
        }
        let healthy = self.tasks.iter().filter(|t| t.healthy).count();
        let mut line = format!("{healthy}/{n} healthy");
        let stale: Vec<&str> = self
            .tasks
            .iter()
            .filter(|t| t.stale)
            .map(|t| t.name.as_str())
            .collect();
        let failed: Vec<&str> = self
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
            .map(|t| t.name.as_str())
            .collect();
        let blocked: Vec<&str> = self
            .tasks
            .iter()
            .filter(|t| t.blocked_for.is_some())
            .map(|t| t.name.as_str())
            .collect();
        if !stale.is_empty() {
            let _ = write!(line, "; stale: {}", names(&stale));
        }
        if !blocked.is_empty() {
            let _ = write!(line, "; blocked: {}", names(&blocked));
        }
        if !failed.is_empty() {
            let _ = write!(line, "; failed: {}", names(&failed));
        }
        line
    }
}

fn names(list: &[&str]) -> String {
    let mut out = list
        .iter()
        .take(MAX_NAMES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > MAX_NAMES {
        let _ = write!(out, " and {} more", list.len() - MAX_NAMES);
    }
    out
}

/// Sends datagrams; logs the first failure of a streak.
struct Sender {
    target: Target,
    socket: Option<UnixDatagram>,
    failing: bool,
}

impl Sender {
    fn new(target: Target) -> Sender {
        Sender {
            target,
            socket: None,
            failing: false,
        }
    }

    /// Sends one notification; `true` when it went out.
    fn send(&mut self, states: &[NotifyState<'_>]) -> bool {
        let mut message = String::new();
        for state in states {
            // A `Status` must stay on one line.
            let line = state.to_string().replace('\n', " ");
            let _ = writeln!(message, "{line}");
        }
        match self.try_send(message.as_bytes()) {
            Ok(()) => {
                self.failing = false;
                true
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(
                        %error,
                        socket = ?self.target,
                        "supervised: could not notify systemd"
                    );
                }
                self.failing = true;
                false
            }
        }
    }

    fn try_send(&mut self, message: &[u8]) -> io::Result<()> {
        if self.socket.is_none() {
            let socket = UnixDatagram::unbound()?;
            socket.set_nonblocking(true)?;
            self.socket = Some(socket);
        }
        let socket = self.socket.as_ref().expect("socket was just created");
        let sent = match &self.target {
            Target::Path(path) => socket.send_to(message, path)?,
            Target::Abstract(name) => send_abstract(socket, name, message)?,
        };
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "incomplete notification datagram",
            ))
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}
