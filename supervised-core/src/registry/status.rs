//! What the registry reports: states, failures and task statuses.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::backtrace::PanicBacktrace;

/// Where a supervised task is in its life.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// A singleton task waits for its lease, which another replica holds (or
    /// the lease store cannot be reached: the reason is in
    /// [`LeaseStatus::standby_reason`]). Healthy and ready: a standby is a
    /// correct state, and it is not expected to beat.
    Standby,
    /// An attempt is running.
    Running,
    /// The last attempt ended and the next one starts after a delay.
    BackingOff,
    /// An attempt was stopped (stalled, a child failed, or cancelled past its
    /// grace) and the supervisor waits for its future and its children to be
    /// dropped: nothing else of the task runs until they are. An attempt
    /// blocked in a synchronous call stays here until the call returns.
    Stopping,
    /// The task returned cleanly and its policy does not restart it.
    Completed,
    /// The task was cancelled (or its supervisor was dropped).
    Cancelled,
    /// The task gave up: its policy does not restart after a failure, or it hit its
    /// restart limit.
    Failed,
}

impl TaskState {
    /// The state in `snake_case`, as shown by the endpoints and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Standby => "standby",
            TaskState::Running => "running",
            TaskState::BackingOff => "backing_off",
            TaskState::Stopping => "stopping",
            TaskState::Completed => "completed",
            TaskState::Cancelled => "cancelled",
            TaskState::Failed => "failed",
        }
    }

    /// `true` once the task has ended for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Cancelled | TaskState::Failed
        )
    }

    /// Every state, in the order of their life.
    pub const ALL: [TaskState; 7] = [
        TaskState::Standby,
        TaskState::Running,
        TaskState::BackingOff,
        TaskState::Stopping,
        TaskState::Completed,
        TaskState::Cancelled,
        TaskState::Failed,
    ];

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            TaskState::Standby => 0,
            TaskState::Running => 1,
            TaskState::BackingOff => 2,
            TaskState::Stopping => 3,
            TaskState::Completed => 4,
            TaskState::Cancelled => 5,
            TaskState::Failed => 6,
        }
    }

    pub(crate) fn from_u8(v: u8) -> TaskState {
        match v {
            0 => TaskState::Standby,
            1 => TaskState::Running,
            2 => TaskState::BackingOff,
            3 => TaskState::Stopping,
            4 => TaskState::Completed,
            5 => TaskState::Cancelled,
            _ => TaskState::Failed,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure ended an attempt.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The attempt, or a child it spawned with [`Context::spawn`](crate::Context::spawn), panicked.
    Panic,
    /// The attempt returned `Err`.
    Error,
    /// The attempt sent no heartbeat for longer than its `stale_after` and was
    /// dropped (`on_stale = restart`).
    Stalled,
    /// The task never ran: a live task already holds its name.
    NameTaken,
    /// The task never ran: its name is empty, longer than
    /// [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes, or holds whitespace or
    /// control characters. It is not registered, so no view shows it.
    InvalidName,
    /// The task never ran: it is a singleton and was started without a
    /// lease. It is not registered, so no view shows it.
    NoLease,
}

impl FailureKind {
    /// The kind in `snake_case`, as shown by the endpoints and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Panic => "panic",
            FailureKind::Error => "error",
            FailureKind::Stalled => "stalled",
            FailureKind::NameTaken => "name_taken",
            FailureKind::InvalidName => "invalid_name",
            FailureKind::NoLease => "no_lease",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failure of a supervised task.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Failure {
    /// Panic, error return, stall, or a rejected name.
    pub kind: FailureKind,
    /// The panic message (or a note on its payload type), the error's `{:#}`
    /// rendering, or what stalled.
    pub message: String,
    /// Where the panic happened, as `file:line:column`, when known.
    pub location: Option<String>,
    /// A backtrace of the panic, captured when `RUST_BACKTRACE` (or
    /// `RUST_LIB_BACKTRACE`) asks for one, trimmed to the task's own frames
    /// (all frames with `RUST_BACKTRACE=full`).
    pub backtrace: Option<PanicBacktrace>,
    /// The attempt that failed (1 for the first run).
    pub attempt: u32,
    /// When the failure was seen (wall clock, for display).
    pub at: SystemTime,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: String, attempt: u32) -> Self {
        Failure {
            kind,
            message,
            location: None,
            backtrace: None,
            attempt,
            at: SystemTime::now(),
        }
    }
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.message == other.message
            && self.location == other.location
            && self.attempt == other.attempt
            && self.at == other.at
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(loc) = &self.location {
            write!(f, " at {loc}")?;
        }
        Ok(())
    }
}

/// How many failures of each kind a task has had.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureCounts {
    /// Panics, of the attempt or of a child.
    pub panics: u64,
    /// `Err` returns.
    pub errors: u64,
    /// Attempts dropped for not beating.
    pub stalls: u64,
    /// Polls of an attempt seen running longer than the task's
    /// `blocking_after` (not failures: such a poll cannot be interrupted, and
    /// the attempt goes on when it returns).
    pub blocked: u64,
}

/// A point-in-time view of one supervised task.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub struct TaskStatus {
    /// The task's name.
    pub name: String,
    /// Where the task is in its life.
    pub state: TaskState,
    /// Attempts started after the first one.
    pub restarts: u64,
    /// The current (or last) attempt, 1 for the first run.
    pub attempt: u32,
    /// The time of the task's last heartbeat, `None` until the task itself
    /// beats for the first time (starting an attempt is not a heartbeat).
    pub last_tick: Option<SystemTime>,
    /// How long ago the last heartbeat was, on the monotonic clock.
    pub since_last_tick: Option<Duration>,
    /// The task's staleness threshold, if it has one.
    pub stale_after: Option<Duration>,
    /// `true` when the task has a `stale_after`, has not ended, and has gone
    /// longer than `stale_after` without a heartbeat: counted from its last
    /// heartbeat, or from when it started if it never beat. This holds in every
    /// state that is not final (running, backing off, stopping), so a task
    /// that fails every attempt before it beats becomes stale. A
    /// [standby](TaskState::Standby) is never stale, and a singleton's
    /// silence counts from when it took its lease, not from before.
    pub stale: bool,
    /// How long the current poll of the task's attempt has been running, when
    /// that is longer than the task's `blocking_after`: the task is blocking its
    /// worker thread (a synchronous call, a loop without `.await`). `None`
    /// otherwise. Read at the time of the status, on the registry's clock, so
    /// it is right even while every worker thread of the runtime is blocked.
    pub blocked_for: Option<Duration>,
    /// `false` for a task declared without heartbeats
    /// ([`Spec::without_heartbeat`](crate::Spec::without_heartbeat)): readiness
    /// does not wait for its first beat.
    pub expects_heartbeat: bool,
    /// Not stale, not blocking its thread and not [`TaskState::Failed`].
    pub healthy: bool,
    /// Failures so far, by kind.
    pub failures: FailureCounts,
    /// The most recent failure.
    pub last_failure: Option<Failure>,
    /// The path of the group tasks this task runs in, outermost first and
    /// joined by `/` (`"platform/workers"`), when it is a member of a group
    /// made into a task with [`Group::into_task`](crate::Group::into_task);
    /// `None` for a task at the top.
    pub parent: Option<String>,
    /// The keys this task keeps in quarantine after they failed inside
    /// [`Context::isolate`](crate::Context::isolate), by key. The task
    /// itself serves every other key; a quarantined key makes it neither
    /// stale nor unhealthy.
    pub quarantined: Vec<crate::isolate::Quarantined>,
    /// Counts of the failures [`Context::isolate`](crate::Context::isolate)
    /// caught, which are the keys' and not the task's.
    pub isolated: crate::isolate::IsolatedCounts,
    /// For a singleton task ([`Spec::singleton`](crate::Spec::singleton)):
    /// whether this replica holds the lease, and why not; `None` for other
    /// tasks.
    pub lease: Option<LeaseStatus>,
}

/// The lease of a singleton task, as this replica sees it.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseStatus {
    /// `true` while this replica holds the lease (its attempt may run).
    pub leader: bool,
    /// The fencing token of the grant held, or of the last one held.
    pub fencing_token: Option<u64>,
    /// Why the task is in [`TaskState::Standby`]: who holds the lease, or the
    /// lease store's error. `None` while it is the leader.
    pub standby_reason: Option<String>,
    /// `true` once this replica has been a standby for the task. It was
    /// ready then, so readiness does not wait for its first beat after it
    /// takes over.
    pub has_stood_by: bool,
}

impl TaskStatus {
    /// `true` while readiness waits for this task: it has not ended, it is
    /// not a standby (and, for a singleton, has never been one: it was
    /// ready then), it expects heartbeats and it has not beaten yet.
    pub fn awaits_first_beat(&self) -> bool {
        self.expects_heartbeat
            && self.last_tick.is_none()
            && !self.state.is_final()
            && self.state != TaskState::Standby
            && !self.lease.as_ref().is_some_and(|l| l.has_stood_by)
    }
}
