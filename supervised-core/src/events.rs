//! Lifecycle events: every change in a supervised task's life, published on
//! its registry for whoever subscribes.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use crate::registry::Failure;
use crate::run::Exit;

/// How many events a subscriber may fall behind before it starts losing the
/// oldest ones ([`broadcast`] semantics: its next `recv` reports
/// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged) with the count).
pub const EVENT_BUFFER: usize = 1024;

/// One change in the life of a supervised task, from
/// [`Registry::subscribe`](crate::Registry::subscribe).
///
/// For a task that fails once and is then cancelled, the events are, in
/// this order: `Started` (attempt 1), `Failed` (1), `BackingOff` (1),
/// `Started` (2), `Stopped` (2, [`Exit::Cancelled`]).
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Event {
    /// The task's name.
    pub task: String,
    /// The attempt the event concerns (0 for a task that never ran).
    pub attempt: u32,
    /// When it happened, on the registry's clock.
    pub at: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a task; see [`Event`].
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum EventKind {
    /// The attempt started.
    Started,
    /// The attempt failed (panic, `Err`, stalled, or a child's panic).
    Failed(Failure),
    /// After a failure (or a clean return under
    /// [`RestartPolicy::Always`](crate::RestartPolicy::Always)), the next
    /// attempt starts after `delay`.
    BackingOff {
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// The attempt was stopped on request and the next one starts after
    /// `delay`: not a failure of this task.
    Restarting {
        /// The wait before the next attempt (zero for
        /// [`GroupHandle::restart`](crate::GroupHandle::restart)).
        delay: Duration,
        /// Who asked.
        cause: RestartCause,
    },
    /// The task ended for good.
    Stopped(Exit),
}

impl EventKind {
    /// The kind in `snake_case`, as the events endpoint names it.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Failed(_) => "failed",
            EventKind::BackingOff { .. } => "backing_off",
            EventKind::Restarting { .. } => "restarting",
            EventKind::Stopped(_) => "stopped",
        }
    }
}

/// Why a task was restarted without failing itself.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartCause {
    /// [`GroupHandle::restart`](crate::GroupHandle::restart) asked for it.
    Requested,
    /// Its group's [`Strategy`](crate::Strategy) restarts it with the named
    /// member, which failed.
    Sibling(String),
}

impl fmt::Display for RestartCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartCause::Requested => f.write_str("requested"),
            RestartCause::Sibling(name) => write!(f, "member `{name}` of its group failed"),
        }
    }
}

/// A registry's event channel.
pub(crate) struct Events {
    sender: broadcast::Sender<Event>,
}

impl Events {
    pub(crate) fn new() -> Self {
        Events {
            sender: broadcast::Sender::new(EVENT_BUFFER),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// `true` when someone listens: publishing costs nothing otherwise.
    #[inline]
    pub(crate) fn wanted(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub(crate) fn send(&self, event: Event) {
        // An error means nobody listens any more.
        let _ = self.sender.send(event);
    }
}
