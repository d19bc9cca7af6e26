//! One name in the registry: its heartbeats and, for a supervised task, its
//! supervision data.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use once_cell::race::OnceBox;
use smol_str::SmolStr;
use tokio_util::sync::CancellationToken;

use super::status::{Failure, FailureCounts, FailureKind, LeaseStatus, TaskState, TaskStatus};
use crate::clock::{decode_wall, Clock, HotClock};
use crate::context::{AttemptCell, Scope};
use crate::isolate::{IsolatedCounts, Policy, Quarantine};

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

    /// The heartbeat hot path: a coarse clock read and three relaxed atomic
    /// operations; no lock, no system call. A lost increment under a race
    /// between two threads beating the same task is harmless: the counter
    /// still changes, which is all the watchdog looks for.
    #[inline]
    fn beat(&self) {
        let now = self.hot.now();
        self.beat_mono.store(now, Ordering::Relaxed);
        self.count_beat();
    }

    /// The first beat ever: wakes whoever waits for the task to be ready.
    #[cold]
    fn first_beat(&self) {
        self.wake_watchers();
    }

    fn wake_watchers(&self) {
        if let Some(watch) = self.supervision.as_ref().and_then(Supervision::watch) {
            watch.notify_waiters();
        }
    }

    /// What wakes on the first heartbeat and on every change of state.
    pub(crate) fn watch(&self) -> &tokio::sync::Notify {
        self.sup().extras().watch.get_or_init(Default::default)
    }

    /// Ready as an ordered group means it: beaten at least once (in any
    /// attempt so far), or running and heartbeat-less, or completed.
    pub(crate) fn is_ready(&self) -> bool {
        let Some(state) = self.state() else {
            return false;
        };
        self.beats() > 0
            || state == TaskState::Completed
            || state == TaskState::Standby
            || (state == TaskState::Running && !self.sup().settings.expects_heartbeat)
    }

    /// Moves a singleton task to [`TaskState::Standby`] for `reason`;
    /// `true` when the reason changed.
    pub(crate) fn stand_by(&self, reason: String) -> bool {
        let Some(slot) = self.lease() else {
            return false;
        };
        slot.leader.store(false, Ordering::Relaxed);
        slot.stood_by.store(true, Ordering::Relaxed);
        let changed = {
            let mut current = lock(&slot.reason);
            let changed = current.as_deref() != Some(reason.as_str());
            *current = Some(reason);
            changed
        };
        self.set_state(TaskState::Standby);
        changed
    }

    /// The singleton task holds grant `fencing_token` from now on.
    pub(crate) fn lease_acquired(&self, fencing_token: u64) {
        if let Some(slot) = self.lease() {
            *lock(&slot.reason) = None;
            slot.fencing.store(fencing_token, Ordering::Relaxed);
            slot.resumed_mono
                .store(self.hot.now().max(1), Ordering::Relaxed);
            slot.leader.store(true, Ordering::Relaxed);
        }
    }

    /// The singleton task no longer holds its lease.
    pub(crate) fn lease_released(&self) {
        if let Some(slot) = self.lease() {
            slot.leader.store(false, Ordering::Relaxed);
        }
    }

    /// The task's quarantined keys (made on first use).
    pub(crate) fn quarantine(&self) -> &Quarantine {
        self.sup().extras().quarantine.get_or_init(Default::default)
    }

    /// How the task quarantines its failing keys.
    pub(crate) fn quarantine_policy(&self) -> Policy {
        self.sup().settings.quarantine
    }

    /// The path of the group tasks this task is a member of, outermost
    /// first, joined by `/`.
    pub(crate) fn parent_path(&self) -> Option<String> {
        let mut names: Vec<&str> = Vec::new();
        let mut at = self.supervision.as_ref()?.parent();
        // Links only point to entries registered earlier, so there is no
        // cycle; the bound is a guard all the same.
        while let Some(parent) = at {
            if names.len() == 64 {
                break;
            }
            names.push(parent.name());
            at = parent.supervision.as_ref().and_then(Supervision::parent);
        }
        if names.is_empty() {
            return None;
        }
        names.reverse();
        Some(names.join("/"))
    }

    /// Records the group task this task is a member of; the first one
    /// given stays.
    pub(crate) fn set_parent(&self, parent: &Arc<Entry>) {
        if let Some(sup) = &self.supervision {
            if !std::ptr::eq(self, &**parent) {
                let _ = sup.extras().parent.set(parent.clone());
            }
        }
    }

    /// A heartbeat through the `Context` of `attempt`: counts only while that
    /// attempt is the current one (one more relaxed load).
    #[inline]
    pub(crate) fn beat_for(&self, attempt: u32) {
        if self.live_attempt.load(Ordering::Relaxed) == attempt {
            self.beat();
        }
    }

    /// A heartbeat by name at `wall`, encoded by
    /// [`encode_wall`](crate::clock::encode_wall).
    pub(super) fn beat_named(&self, wall: i64) {
        self.beat_named_stamped(wall, self.hot.now());
    }

    /// [`Entry::beat_named`] with the monotonic stamp `now`, read by the
    /// caller.
    #[inline]
    fn beat_named_stamped(&self, wall: i64, now: u64) {
        self.named_wall.store(wall, Ordering::Relaxed);
        // Never back: a beat whose thread was held up between its clock
        // read and this write would otherwise leave an older stamp than
        // another thread's, which beats that keep the stamp then keep. One
        // read-modify-write per stamp, which repeated beats take once per
        // window.
        self.named_mono.fetch_max(now, Ordering::Relaxed);
        self.count_beat();
    }

    /// A heartbeat by name at `wall` that keeps the name's monotonic stamp,
    /// because the caller's thread took one less than a
    /// [`stamp_reuse_window`](crate::clock::Clock::stamp_reuse_window) ago
    /// (the stamp kept may be another thread's, later).
    /// Declines (`false`) when a `Context` beat is later than that stamp:
    /// the exact wall time is then the latest only with a new stamp.
    #[inline]
    pub(super) fn beat_named_reusing_stamp(&self, wall: i64) -> bool {
        if self.beat_mono.load(Ordering::Relaxed) > self.named_mono.load(Ordering::Relaxed) {
            return false;
        }
        self.named_wall.store(wall, Ordering::Relaxed);
        self.count_beat();
        true
    }

    /// Counts a heartbeat of either kind; the first wakes whoever waits for
    /// the task to be ready.
    #[inline]
    fn count_beat(&self) {
        let n = self.beats.load(Ordering::Relaxed);
        self.beats.store(n.wrapping_add(1), Ordering::Relaxed);
        if n == 0 {
            self.first_beat();
        }
    }

    pub(crate) fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    /// Monotonic stamp of the latest heartbeat of either kind, 0 if none.
    fn last_mono(&self) -> u64 {
        self.beat_mono
            .load(Ordering::Relaxed)
            .max(self.named_mono.load(Ordering::Relaxed))
    }

    pub(super) fn last_tick(&self, clock: &Clock) -> Option<SystemTime> {
        let beat = self.beat_mono.load(Ordering::Relaxed);
        let named = self.named_mono.load(Ordering::Relaxed);
        if named == 0 && beat == 0 {
            None
        } else if named >= beat {
            Some(decode_wall(self.named_wall.load(Ordering::Relaxed)))
        } else {
            Some(clock.wall_of(beat))
        }
    }

    /// Stale by `threshold` for a by-name health check: never beat, or
    /// silent for longer, counted for a singleton from its last grant; never
    /// while a standby.
    pub(super) fn stale_by(&self, now_mono: u64, threshold: Duration) -> bool {
        // The last `Context` beat is one of the stamps the exact answer
        // below takes the latest of, and it sits next to the end stamp:
        // recent enough alone is recent enough, read in the same cache line.
        let beat = self.beat_mono.load(Ordering::Relaxed);
        if beat != 0 && Duration::from_nanos(now_mono.saturating_sub(beat)) <= threshold {
            return false;
        }
        let slot = self.lease();
        if slot.is_some() && self.state() == Some(TaskState::Standby) {
            return false;
        }
        match self.last_mono().max(self.resumed_mono()) {
            0 => true,
            since => Duration::from_nanos(now_mono.saturating_sub(since)) > threshold,
        }
    }

    /// Registry-clock stamp of a singleton's last grant, 0 for other
    /// tasks: a singleton's silence counts from no earlier than this, not
    /// from before its standby.
    fn resumed_mono(&self) -> u64 {
        self.lease()
            .map_or(0, |slot| slot.resumed_mono.load(Ordering::Relaxed))
    }

    pub(super) fn age(&self, now_mono: u64) -> Option<Duration> {
        match self.last_mono() {
            0 => None,
            last => Some(Duration::from_nanos(now_mono.saturating_sub(last))),
        }
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

    /// Records the start of an attempt. Not a heartbeat: the task has done
    /// nothing yet.
    pub(crate) fn start_attempt(&self, attempt: u32) {
        let sup = self.sup();
        sup.attempt.store(attempt, Ordering::Relaxed);
        if attempt > 1 {
            bump(&sup.restarts);
        }
        sup.attempt_cell.open(attempt);
        self.live_attempt.store(attempt, Ordering::Relaxed);
        self.set_state(TaskState::Running);
    }

    /// The attempt is over: its `Context` no longer beats, and no longer
    /// starts children; those it started are aborted. Returns their scope,
    /// if any, for the caller to wait for.
    pub(crate) fn end_attempt(&self) -> Option<Arc<Scope>> {
        self.live_attempt.store(0, Ordering::Relaxed);
        self.supervision
            .as_ref()
            .and_then(|sup| sup.attempt_cell.close())
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

    /// The running attempt's failure slot and children.
    pub(crate) fn attempt_cell(&self) -> &AttemptCell {
        &self.sup().attempt_cell
    }

    /// The task's own cancellation token, once made (see
    /// [`Entry::own_token_or_make`]).
    pub(crate) fn own_token(&self) -> Option<&CancellationToken> {
        self.supervision.as_ref()?.own_token.get()
    }

    /// The task's own cancellation token, made on the first call as a child
    /// of `parent`, the token the task was started on. The supervisor, which
    /// waits on `parent` until then, is woken to wait on the new token
    /// instead: cancelling it stops the task.
    pub(crate) fn own_token_or_make(&self, parent: &CancellationToken) -> &CancellationToken {
        let sup = self.sup();
        let mut made = false;
        let token = sup.own_token.get_or_init(|| {
            made = true;
            parent.child_token()
        });
        if made {
            sup.attempt_cell.wake();
        }
        token
    }

    /// The token whose cancellation stops the task: its own once made,
    /// otherwise `started_on`, the token it was started on.
    pub(crate) fn task_token<'a>(
        &'a self,
        started_on: &'a CancellationToken,
    ) -> &'a CancellationToken {
        self.own_token().unwrap_or(started_on)
    }

    /// The current (or last) attempt, 0 before the first.
    pub(crate) fn attempt(&self) -> u32 {
        self.supervision
            .as_ref()
            .map_or(0, |s| s.attempt.load(Ordering::Relaxed))
    }

    /// The last failure recorded.
    pub(crate) fn last_failure(&self) -> Option<Failure> {
        self.supervision.as_ref()?.attempt_cell.last_failure()
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.sup().restarts.load(Ordering::Relaxed).into()
    }

    pub(crate) fn set_stale(&self, stale: bool) {
        debug_assert!(self.supervision.is_some(), "a heartbeat-only name");
        self.stale.store(stale, Ordering::Relaxed);
    }

    pub(crate) fn record_failure(&self, failure: &Failure) {
        let sup = self.sup();
        let counter = match failure.kind {
            FailureKind::Panic => &sup.panics,
            FailureKind::Error => &sup.errors,
            FailureKind::Stalled => &sup.stalls,
            FailureKind::NameTaken | FailureKind::InvalidName | FailureKind::NoLease => return,
        };
        bump(counter);
        sup.attempt_cell.set_last_failure(failure);
    }

    /// Called before each poll of the attempt: one coarse clock read and one
    /// relaxed store. Returns the stamp for [`Entry::poll_end`].
    #[inline]
    pub(crate) fn poll_begin(&self) -> u64 {
        let now = self.hot.now();
        self.poll_started.store(now, Ordering::Relaxed);
        now
    }

    /// A poll in progress since `stamp`, for tests of what a status read
    /// makes of it.
    #[cfg(all(test, feature = "http"))]
    pub(crate) fn set_poll_started(&self, stamp: u64) {
        self.poll_started.store(stamp, Ordering::Relaxed);
    }

    /// Called after each poll of the attempt: one relaxed store and one
    /// relaxed load; a poll that a status read saw blocking is then logged
    /// and counted.
    #[inline]
    pub(crate) fn poll_end(&self, started: u64) {
        self.poll_started.store(0, Ordering::Relaxed);
        if self.blocked_seen.load(Ordering::Relaxed) == started {
            self.blocked_poll_ended(started);
        }
    }

    #[cold]
    fn blocked_poll_ended(&self, started: u64) {
        self.blocked_seen.store(0, Ordering::Relaxed);
        let took = Duration::from_nanos(self.hot.now().saturating_sub(started));
        if let Some(sup) = &self.supervision {
            bump(&sup.blocked);
            tracing::warn!(
                task = %self.name,
                attempt = sup.attempt.load(Ordering::Relaxed),
                blocked_for = %crate::format::Rounded(took),
                blocking_after = %crate::format::Rounded(sup.settings.blocking_after),
                "supervised task blocked its worker thread: one poll ran for {}",
                crate::format::Rounded(took),
            );
        }
    }

    /// How long the poll in progress has run, when longer than `threshold`;
    /// marks it so that it reports itself when it ends.
    fn blocked_for(&self, now_mono: u64, threshold: Duration) -> Option<Duration> {
        let started = self.poll_started.load(Ordering::Relaxed);
        if started == 0 {
            return None;
        }
        let running = Duration::from_nanos(now_mono.saturating_sub(started));
        if running <= threshold {
            return None;
        }
        if self.blocked_seen.load(Ordering::Relaxed) != started {
            self.blocked_seen.store(started, Ordering::Relaxed);
        }
        Some(running)
    }

    /// Looks at the poll in progress on behalf of the stall watchdog.
    pub(crate) fn check_blocked(&self) {
        if let Some(sup) = &self.supervision {
            self.blocked_for(self.hot.now(), sup.settings.blocking_after);
        }
    }

    /// What a supervised task's health is judged on, at `now_mono`; `None`
    /// for a heartbeat-only name.
    fn health(&self, now_mono: u64) -> Option<Health> {
        let sup = self.supervision.as_ref()?;
        let state = TaskState::from_u8(self.state.load(Ordering::Acquire));
        // Silence counts from the last beat, or from the start when there
        // was none, and for a singleton not from before its last grant.
        let quiet_since = match self.last_mono() {
            0 => sup.started_mono,
            last => last,
        }
        .max(self.resumed_mono());
        let quiet = Duration::from_nanos(now_mono.saturating_sub(quiet_since));
        let late = sup.settings.stale_after.is_some_and(|limit| quiet > limit);
        let stale = !state.is_final()
            && state != TaskState::Standby
            && (self.stale.load(Ordering::Relaxed) || late);
        let blocked_for = if state.is_final() {
            None
        } else {
            self.blocked_for(now_mono, sup.settings.blocking_after)
        };
        Some(Health {
            state,
            stale,
            blocked_for,
        })
    }

    /// [`TaskStatus::healthy`] of a supervised task at `now_mono`, without
    /// the rest of its status; `None` for a heartbeat-only name.
    pub(crate) fn is_healthy(&self, now_mono: u64) -> Option<bool> {
        self.health(now_mono).map(|health| health.is_healthy())
    }

    pub(super) fn status(&self, clock: &Clock, now_mono: u64) -> Option<TaskStatus> {
        self.status_named(&self.name, clock, now_mono)
    }

    /// [`Entry::status`] for a caller that holds a copy of the entry's name
    /// (a view's sorted handles): the name is the entry's last field, on a
    /// cache line that nothing else a status reads is on.
    pub(super) fn status_named(
        &self,
        name: &str,
        clock: &Clock,
        now_mono: u64,
    ) -> Option<TaskStatus> {
        debug_assert_eq!(name, self.name.as_str());
        let sup = self.supervision.as_ref()?;
        let health = self.health(now_mono)?;
        let Health {
            state,
            stale,
            blocked_for,
        } = health;
        let since_last_tick = self.age(now_mono);
        let failures = FailureCounts {
            panics: sup.panics.load(Ordering::Relaxed).into(),
            errors: sup.errors.load(Ordering::Relaxed).into(),
            stalls: sup.stalls.load(Ordering::Relaxed).into(),
            blocked: sup.blocked.load(Ordering::Relaxed).into(),
        };
        // Only a counted failure is recorded as the last one (after its
        // count): a task that never failed has none, and its cell's lock,
        // a cache miss and an atomic write, is not taken to learn it.
        let failed = failures.panics + failures.errors + failures.stalls > 0;
        Some(TaskStatus {
            name: String::from(name),
            state,
            restarts: sup.restarts.load(Ordering::Relaxed).into(),
            attempt: sup.attempt.load(Ordering::Relaxed),
            last_tick: self.last_tick(clock),
            since_last_tick,
            stale_after: sup.settings.stale_after,
            stale,
            blocked_for,
            expects_heartbeat: sup.settings.expects_heartbeat,
            healthy: health.is_healthy(),
            failures,
            last_failure: if failed {
                sup.attempt_cell.last_failure()
            } else {
                None
            },
            parent: self.parent_path(),
            quarantined: sup.quarantine().map(|q| q.list()).unwrap_or_default(),
            isolated: sup
                .quarantine()
                .map_or_else(IsolatedCounts::default, |q| IsolatedCounts {
                    panics: q.panics.load(Ordering::Relaxed),
                    errors: q.errors.load(Ordering::Relaxed),
                    evicted: q.evicted.load(Ordering::Relaxed),
                }),
            lease: self.lease().map(|slot| LeaseStatus {
                leader: slot.leader.load(Ordering::Relaxed),
                fencing_token: match slot.fencing.load(Ordering::Relaxed) {
                    0 => None,
                    token => Some(token),
                },
                standby_reason: lock(&slot.reason).clone(),
                has_stood_by: slot.stood_by.load(Ordering::Relaxed),
            }),
        })
    }
}

/// What a supervised task's health is judged on.
#[derive(Clone, Copy)]
struct Health {
    state: TaskState,
    /// Silent for longer than its `stale_after`, or found stalled by its
    /// watchdog, while it should be running.
    stale: bool,
    /// How long the poll in progress has blocked its thread, past the
    /// task's threshold.
    blocked_for: Option<Duration>,
}

impl Health {
    fn is_healthy(self) -> bool {
        !self.stale && self.blocked_for.is_none() && self.state != TaskState::Failed
    }
}

/// Locks a mutex, ignoring poisoning: every value kept under these locks is
/// valid after any panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn a_by_name_stamp_written_late_does_not_move_the_stamp_back() {
        let (_, _, entry) = on_manual_clock(false);
        let ms = |n: u64| n * 1_000_000;
        // A beat stamped at 20 ms, then one whose thread read the clock at
        // 10 ms and was held up until after it.
        entry.beat_named_stamped(2, ms(20));
        entry.beat_named_stamped(1, ms(10));
        assert_eq!(entry.age(ms(25)), Some(Duration::from_millis(5)));
        assert_eq!(entry.beats(), 2);
    }

    #[test]
    fn failure_counts_saturate_instead_of_wrapping() {
        let count = AtomicU32::new(u32::MAX - 1);
        bump(&count);
        assert_eq!(count.load(Ordering::Relaxed), u32::MAX);
        bump(&count);
        assert_eq!(count.load(Ordering::Relaxed), u32::MAX);
    }

    fn settings() -> Arc<Settings> {
        Arc::new(Settings {
            stale_after: None,
            blocking_after: Duration::from_secs(1),
            expects_heartbeat: true,
            quarantine: Policy::default(),
        })
    }

    /// A supervised entry (a singleton's with `singleton`) on a manual
    /// clock, and the clock, as a handle and as the registry reads it.
    fn on_manual_clock(singleton: bool) -> (ManualClock, Clock, Entry) {
        let manual = ManualClock::new();
        let clock = Clock::Manual(manual.clone());
        let entry = Entry::new("a", &clock, Some((settings(), singleton)));
        (manual, clock, entry)
    }

    const THRESHOLD: Duration = Duration::from_secs(10);

    /// Every supervised task and every heartbeat-only name holds one entry
    /// for its life. With the `Arc`'s two counts, 216 bytes make a 232-byte
    /// allocation, which glibc serves from a 240-byte block; 8 bytes more
    /// would take a 256-byte one, which cost about 125 bytes of RSS a task
    /// at 100,000 tasks (BENCHMARKS.md, "A task's own token on demand").
    #[test]
    fn an_entry_fits_a_240_byte_block() {
        assert!(
            std::mem::size_of::<Entry>() <= 216,
            "{} bytes",
            std::mem::size_of::<Entry>()
        );
    }

    /// A `Context` of a task started on a shared token makes the task's own
    /// token only when asked for it (`token`, `cancelled`): not for a
    /// heartbeat, `is_cancelled` or its `Debug`. Every attempt then gets the
    /// same one, a child of the shared token.
    #[test]
    fn a_context_makes_the_tasks_token_only_when_asked() {
        use crate::Context;
        use std::future::Future;
        let (_, _, entry) = on_manual_clock(false);
        let entry = Arc::new(entry);
        let shared = CancellationToken::new();
        let first = Context::started_on(entry.clone(), shared.clone(), 1);
        first.heartbeat();
        assert!(!first.is_cancelled());
        let _ = format!("{first:?}");
        assert!(entry.own_token().is_none());

        let mut waiting = std::pin::pin!(first.cancelled());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        let own = entry.own_token().expect("made by the wait").clone();

        let second = Context::started_on(entry.clone(), shared.clone(), 2);
        second.token().cancel();
        assert!(own.is_cancelled());
        assert!(first.is_cancelled());
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
        assert!(
            !shared.is_cancelled(),
            "the task's token is not the shared one"
        );
    }

    /// A group member's or a singleton's `Context` has its attempt's own
    /// token, and makes none in the entry.
    #[test]
    fn a_context_with_its_own_token_makes_none() {
        use crate::Context;
        let (_, _, entry) = on_manual_clock(true);
        let entry = Arc::new(entry);
        let attempt = CancellationToken::new();
        let ctx = Context::new(entry.clone(), attempt.clone(), 1, Some(7));
        ctx.token().cancel();
        assert!(attempt.is_cancelled());
        assert!(ctx.is_cancelled());
        assert!(entry.own_token().is_none());
    }

    /// The health alone (what a group's `is_healthy` reads) says what the
    /// whole status says: silent, blocking its thread, failed.
    #[test]
    fn health_alone_agrees_with_the_status() {
        let manual = ManualClock::new();
        let clock = Clock::Manual(manual.clone());
        let settings = Arc::new(Settings {
            stale_after: Some(THRESHOLD),
            ..*settings()
        });
        let entry = Entry::new("a", &clock, Some((settings, false)));
        let check = |expected: bool| {
            let now = clock.now_mono();
            let status = entry.status(&clock, now).expect("supervised");
            assert_eq!(status.healthy, expected, "{status:?}");
            assert_eq!(entry.is_healthy(now), Some(expected));
        };
        check(true);
        manual.advance(THRESHOLD + Duration::from_secs(1));
        check(false);
        entry.beat();
        check(true);
        let started = entry.poll_begin();
        manual.advance(Duration::from_secs(2));
        check(false);
        entry.poll_end(started);
        entry.beat();
        check(true);
        entry.set_state(TaskState::Failed);
        check(false);
        let named = Entry::new("b", &clock, None);
        assert_eq!(named.is_healthy(clock.now_mono()), None);
    }

    /// What a health check of a live task that beats through its `Context`
    /// reads is the entry's first 16 bytes: with the allocation's 16-byte
    /// alignment, one cache line.
    #[test]
    fn the_health_check_fields_come_first() {
        assert_eq!(std::mem::offset_of!(Entry, ended_mono), 0);
        assert_eq!(std::mem::offset_of!(Entry, beat_mono), 8);
    }

    /// The quick answer from the first 16 bytes agrees with the exact one.
    #[test]
    fn staleness_and_the_end_read_quickly_as_exactly() {
        let (manual, clock, entry) = on_manual_clock(false);
        let now = || clock.now_mono();
        assert!(entry.stale_by(now(), THRESHOLD), "never beat");
        entry.beat();
        assert!(!entry.stale_by(now(), THRESHOLD));
        manual.advance(Duration::from_secs(11));
        assert!(entry.stale_by(now(), THRESHOLD), "silent for 11 s");
        entry.beat_named(crate::clock::encode_wall(SystemTime::now()));
        assert!(!entry.stale_by(now(), THRESHOLD), "a by-name beat counts");

        assert_eq!(entry.ended_mono(), None);
        entry.set_state(TaskState::Stopping);
        assert_eq!(entry.ended_mono(), None);
        entry.finish(TaskState::Completed);
        assert_eq!(entry.ended_mono(), Some(now()));
        // Heartbeat-only names never end.
        let named = Entry::new("b", &clock, None);
        named.beat_named(crate::clock::encode_wall(SystemTime::now()));
        assert_eq!(named.ended_mono(), None);
    }

    /// A singleton's silence counts from its last grant; a standby is
    /// never stale by name.
    #[test]
    fn a_singleton_counts_from_its_grant() {
        let (manual, clock, entry) = on_manual_clock(true);
        let now = || clock.now_mono();
        assert!(!entry.stale_by(now(), THRESHOLD), "a standby");
        manual.advance(Duration::from_secs(60));
        entry.lease_acquired(1);
        entry.set_state(TaskState::Running);
        assert!(!entry.stale_by(now(), THRESHOLD), "just granted");
        manual.advance(Duration::from_secs(11));
        assert!(entry.stale_by(now(), THRESHOLD), "silent since its grant");
    }
}
