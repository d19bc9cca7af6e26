//! The supervisor's future is memory every supervised task pays for its whole
//! life, so its size is held to a bound here. (An `async` block that awaits a
//! future it captured keeps that future twice: one such wrapper once doubled
//! it to almost 2 KiB.)

use supervised_core::{CancellationToken, Context, Spec, Task};

/// A bound with room for compiler changes; the size was 960 bytes with
/// rustc 1.95 (880 before singletons: the lease in `Spec`, two boxed words
/// in the supervisor).
const MAX_SUPERVISOR_BYTES: usize = 1024;

#[test]
fn the_supervisor_future_stays_small() {
    let closure = Spec::new("footprint").run(CancellationToken::new(), |ctx: Context| async move {
        ctx.heartbeat();
    });
    let size = std::mem::size_of_val(&closure);
    assert!(
        size <= MAX_SUPERVISOR_BYTES,
        "Spec::run's future: {size} bytes"
    );

    let task = Task::new(Spec::new("footprint"), |ctx: Context| async move {
        ctx.heartbeat();
    });
    let boxed = task.run(CancellationToken::new());
    let size = std::mem::size_of_val(&boxed);
    assert!(
        size <= MAX_SUPERVISOR_BYTES,
        "Task::run's future: {size} bytes"
    );
}
