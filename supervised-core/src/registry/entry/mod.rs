//! One name in the registry: the entry, its state and, for a supervised
//! task, its supervision data. Heartbeats are in `beat`, a task's life in
//! `task`, its health and status in `health`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use once_cell::race::OnceBox;
use smol_str::SmolStr;
use tokio_util::sync::CancellationToken;

use super::status::TaskState;
use crate::clock::{Clock, HotClock};
use crate::context::AttemptCell;
use crate::isolate::Quarantine;

mod beat;
mod health;
mod task;
#[cfg(test)]
mod tests;

/// What a supervised task declares about its health when it registers:
/// shared by its entry and its policy (and by every task of that policy).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) stale_after: Option<Duration>,
    pub(crate) blocking_after: Duration,
    pub(crate) expects_heartbeat: bool,
    pub(crate) quarantine: crate::isolate::Policy,
}

/// A singleton task's view of its lease.
#[derive(Debug, Default)]
pub(crate) struct LeaseSlot {
    leader: AtomicBool,
    /// The last grant's fencing token, 0 before the first.
    fencing: AtomicU64,
    /// Registry-clock stamp of the last grant: the task's silence counts
    /// from here, not from before its standby.
    resumed_mono: AtomicU64,
    /// Why the task is a standby.
    reason: Mutex<Option<String>>,
    /// Set once the task has been a standby: it was ready then, and a
    /// takeover does not make it unready until its first beat.
    stood_by: AtomicBool,
}

/// Supervision data of an entry; absent for heartbeat-only names.
///
/// In declaration order (`repr(C)`): what a health check reads of every
/// task comes first, right after the entry's beat stamps, so that checking
/// 100,000 tasks touches one or two cache lines of each entry, not three.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Supervision {
    settings: Arc<Settings>,
    /// Registry-clock stamp of the registration: staleness of a task that
    /// never beat counts from here.
    started_mono: u64,
    attempt: AtomicU32,
    /// Restarts and failure counts, saturating (see [`bump`]).
    restarts: AtomicU32,
    panics: AtomicU32,
    errors: AtomicU32,
    stalls: AtomicU32,
    blocked: AtomicU32,
    /// The task's own cancellation token, for a task started on a token it
    /// does not own (not a group member, not a singleton): made by the
    /// first [`Context::token`](crate::Context::token) or
    /// [`Context::cancelled`](crate::Context::cancelled), as a child of that
    /// token. A task that never asks for it does not pay for it (112 bytes).
    own_token: OnceLock<CancellationToken>,
    /// What only some tasks use, made when one of them is first set: one
    /// word while it is not.
    extras: OnceBox<Extras>,
    /// The running attempt's failure slot and children, and the task's
    /// last failure.
    attempt_cell: AttemptCell,
}

/// What only some supervised tasks use, in one box: an empty slot costs
/// every task one word, not ten. (An entry larger than 216 bytes costs
/// about 125 bytes of RSS a task where glibc places it between tokio's
/// 128-byte-aligned tasks: see BENCHMARKS.md.)
#[derive(Debug, Default)]
struct Extras {
    /// The group task this task is a member of.
    parent: OnceLock<Arc<Entry>>,
    /// Woken on the first heartbeat and on every change of state, once
    /// someone waits for the task to be ready (an ordered group).
    watch: OnceLock<tokio::sync::Notify>,
    /// The keys the task isolates: made when it first isolates one. Boxed
    /// again: most tasks with extras are group members, which need only
    /// the parent link.
    quarantine: OnceLock<Box<Quarantine>>,
    /// Only for singleton tasks, set when the entry is made.
    lease: Option<Box<LeaseSlot>>,
}

impl Supervision {
    fn extras(&self) -> &Extras {
        self.extras.get_or_init(Box::default)
    }

    fn parent(&self) -> Option<&Arc<Entry>> {
        self.extras.get()?.parent.get()
    }

    fn watch(&self) -> Option<&tokio::sync::Notify> {
        self.extras.get()?.watch.get()
    }

    fn quarantine(&self) -> Option<&Quarantine> {
        self.extras.get()?.quarantine.get().map(|q| &**q)
    }

    fn lease(&self) -> Option<&LeaseSlot> {
        self.extras.get()?.lease.as_deref()
    }
}

/// Adds one to a failure count, which stays at `u32::MAX` rather than wrap.
fn bump(count: &AtomicU32) {
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
}

/// One name in the registry.
///
/// In declaration order (`repr(C)`): a health check by name of a live task
/// that beats through its `Context` reads only the first 16 bytes (the end
/// stamp and the last beat), which the 16-byte alignment of the allocation
/// keeps within one cache line, so that checking 100,000 tasks costs one
/// cache miss per task, not three. What a task's whole health reads comes
/// right after, in one run of bytes: the by-name beat, the poll in
/// progress, the state, then the start of [`Supervision`]. Each poll of an
/// attempt writes the poll stamp and reads the one beside it, on the line
/// that its heartbeats write.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Entry {
    /// Registry-clock stamp of the move to a final state, 0 before (and
    /// always for heartbeat-only names); the retention of finished tasks
    /// counts from here.
    ended_mono: AtomicU64,
    /// Monotonic stamp of the last [`Entry::beat`], 0 if none.
    beat_mono: AtomicU64,
    /// Monotonic stamp and exact wall time of the last by-name heartbeat.
    named_mono: AtomicU64,
    /// Coarse stamp of the start of the attempt's poll in progress, 0 when it
    /// is not being polled.
    poll_started: AtomicU64,
    /// The `poll_started` of a poll that a status read found blocking; the
    /// poll logs and counts itself when it ends. Next to `poll_started`:
    /// the end of every poll reads both.
    blocked_seen: AtomicU64,
    /// The attempt whose `Context` may beat, 0 between attempts. A `Context`
    /// that outlives its attempt beats nothing.
    live_attempt: AtomicU32,
    /// Set when the registry removes this entry (forgotten, evicted or
    /// replaced): per-thread caches of by-name heartbeats then look again.
    removed: AtomicBool,
    /// A supervised task's [`TaskState`]; unused for a heartbeat-only name.
    /// Here, not in [`Supervision`], where it would take a word of its own.
    state: AtomicU8,
    /// Set by the stall watchdog, which runs on tokio's timer.
    stale: AtomicBool,
    /// A singleton task's: its lease slot is in the supervision's extras.
    /// Here, in what was padding, so that a health check of any other task
    /// does not read the extras to learn that it has none.
    singleton: bool,
    pub(super) supervision: Option<Supervision>,
    named_wall: AtomicI64,
    /// Changes on every beat; sampled by the stall watchdog on tokio's timer.
    beats: AtomicU64,
    /// The clock heartbeats stamp.
    hot: HotClock,
    /// Shared with the registry's map key.
    pub(super) name: SmolStr,
}

impl Entry {
    /// `settings` and whether the task is a singleton for a supervised
    /// task, `None` for a heartbeat-only name.
    pub(super) fn new(name: &str, clock: &Clock, settings: Option<(Arc<Settings>, bool)>) -> Self {
        let singleton = matches!(settings, Some((_, true)));
        // A singleton runs nothing before it has its lease.
        let state = match &settings {
            Some((_, true)) => TaskState::Standby,
            _ => TaskState::Running,
        };
        let supervision = settings.map(|(settings, singleton)| Supervision {
            restarts: AtomicU32::new(0),
            attempt: AtomicU32::new(0),
            settings,
            started_mono: clock.now_mono(),
            panics: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            stalls: AtomicU32::new(0),
            blocked: AtomicU32::new(0),
            own_token: OnceLock::new(),
            extras: if singleton {
                OnceBox::with_value(Box::new(Extras {
                    lease: Some(Box::new(LeaseSlot {
                        reason: Mutex::new(Some("waiting for the lease".to_owned())),
                        ..LeaseSlot::default()
                    })),
                    ..Extras::default()
                }))
            } else {
                OnceBox::new()
            },
            attempt_cell: AttemptCell::default(),
        });
        Entry {
            name: SmolStr::new(name),
            hot: clock.hot(),
            ended_mono: AtomicU64::new(0),
            beat_mono: AtomicU64::new(0),
            named_mono: AtomicU64::new(0),
            named_wall: AtomicI64::new(0),
            beats: AtomicU64::new(0),
            live_attempt: AtomicU32::new(0),
            poll_started: AtomicU64::new(0),
            blocked_seen: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            state: AtomicU8::new(state.to_u8()),
            stale: AtomicBool::new(false),
            singleton,
            supervision,
        }
    }

    /// The registry no longer holds this entry.
    pub(super) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Relaxed);
    }

    /// `false` once the registry has removed this entry.
    #[inline]
    pub(super) fn is_held(&self) -> bool {
        !self.removed.load(Ordering::Relaxed)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn sup(&self) -> &Supervision {
        self.supervision
            .as_ref()
            .expect("runtime calls are only made on supervised entries")
    }

    pub(crate) fn state(&self) -> Option<TaskState> {
        self.supervision
            .as_ref()
            .map(|_| TaskState::from_u8(self.state.load(Ordering::Acquire)))
    }

    pub(crate) fn set_state(&self, state: TaskState) {
        debug_assert!(self.supervision.is_some(), "a heartbeat-only name");
        if state.is_final() {
            self.ended_mono
                .store(self.hot.now().max(1), Ordering::Release);
        }
        self.state.store(state.to_u8(), Ordering::Release);
        self.wake_watchers();
    }

    /// `false` while the task has certainly not reached a final state (one
    /// load, for the by-name heartbeat's cache); [`Entry::ended_mono`] says
    /// for sure.
    #[inline]
    pub(super) fn may_have_ended(&self) -> bool {
        self.ended_mono.load(Ordering::Relaxed) != 0
    }

    /// When the task reached its final state (registry-clock stamp); `None`
    /// while it has not, and for heartbeat-only names.
    pub(crate) fn ended_mono(&self) -> Option<u64> {
        // 0 until the final state is recorded: not ended, without reading
        // the supervision data.
        let at = self.ended_mono.load(Ordering::Acquire);
        if at == 0 {
            return None;
        }
        self.supervision.as_ref()?;
        TaskState::from_u8(self.state.load(Ordering::Acquire))
            .is_final()
            .then_some(at)
    }

    /// Moves to a final state unless one was already recorded.
    pub(crate) fn finish(&self, state: TaskState) {
        debug_assert!(self.supervision.is_some(), "a heartbeat-only name");
        self.live_attempt.store(0, Ordering::Relaxed);
        // A supervisor that waited for the task's own token (in a backoff)
        // leaves its waker in the cell: it would keep the supervisor's task
        // allocated for as long as the entry is kept.
        self.sup().attempt_cell.forget_waiter();
        let mut current = self.state.load(Ordering::Acquire);
        while !TaskState::from_u8(current).is_final() {
            match self.state.compare_exchange(
                current,
                state.to_u8(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.ended_mono
                        .store(self.hot.now().max(1), Ordering::Release);
                    break;
                }
                Err(actual) => current = actual,
            }
        }
        self.stale.store(false, Ordering::Relaxed);
        self.wake_watchers();
    }

    /// A singleton task's lease slot; `None` for other tasks, without
    /// reading the supervision's extras.
    fn lease(&self) -> Option<&LeaseSlot> {
        if self.singleton {
            self.supervision.as_ref()?.lease()
        } else {
            None
        }
    }
}

/// Locks a mutex, ignoring poisoning: every value kept under these locks is
/// valid after any panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
