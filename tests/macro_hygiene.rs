//! The expansion of `#[supervised]` and `spawn_all!` uses absolute paths only:
//! local items named like the runtime's, a `core` module and a `supervised`
//! that is really `std` change nothing.
#![allow(
    dead_code,
    non_camel_case_types,
    unused_imports,
    clippy::disallowed_names
)]

mod core {}

use std as supervised;

struct Task;
struct Spec;
struct Group;
struct Duration;
struct Clone;
struct Send;
struct Future;
type Result<T> = ::std::result::Result<T, ()>;
fn attempt() {}
fn spawn_member() {}
mod __private {}

/// Only the real crate's `Context` (by its full path) is the task's context.
#[::supervised::supervised(stale_after = "5s", on_stale = "restart", backoff_max = "2s")]
async fn shadowed(
    ctx: ::supervised::Context,
    label: ::std::string::String,
) -> ::std::result::Result<(), ::std::string::String> {
    // A local of the generated code's favourite name.
    let __supervised_ctx = 1;
    let _ = (__supervised_ctx, &label);
    loop {
        ::tokio::time::sleep(::std::time::Duration::from_secs(1)).await;
        if ctx.is_cancelled() {
            return ::std::result::Result::Ok(());
        }
    }
}

mod inner {
    mod supervised {}

    #[::supervised::supervised(name = "inner")]
    pub(crate) async fn in_a_module() {}
}

#[::tokio::test(start_paused = true)]
async fn expands_with_shadowed_names() {
    let registry = ::supervised::Registry::new();
    let group = ::supervised::spawn_all!(
        shadowed("x".into()).with_spec(|s| s.registry(&registry)),
        inner::in_a_module().with_spec(|s| s.registry(&registry)),
    );
    ::tokio::time::sleep(::std::time::Duration::from_secs(30)).await;
    let status = registry.status("shadowed").unwrap();
    assert_eq!((status.restarts, status.failures.stalls), (0, 0));
    let exits = group.shutdown(::std::time::Duration::from_secs(1)).await;
    assert_eq!(exits.len(), 2);
}
