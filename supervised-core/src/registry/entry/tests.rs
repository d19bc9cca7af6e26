use std::time::SystemTime;

use super::*;
use crate::clock::ManualClock;
use crate::isolate::Policy;

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
