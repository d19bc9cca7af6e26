//! The panic hook: it keeps the application's own hook, records the location of
//! panics in supervised code, and a backtrace when the environment asks for one.
//! One test in its own binary, because hooks and the environment are global.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use supervised_core::{CancellationToken, Context, Exit, Registry, RestartPolicy, Spec};

fn fail(message: &str) {
    panic!("{message}")
}

#[tokio::test]
async fn application_hook_is_kept_and_locations_and_backtraces_are_recorded() {
    // Backtraces are captured when the environment asks; decided on first use.
    std::env::set_var("RUST_LIB_BACKTRACE", "1");

    let app_hook_calls = Arc::new(AtomicU32::new(0));
    let calls = app_hook_calls.clone();
    std::panic::set_hook(Box::new(move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
    }));
    // An error reporter that must see supervised panics asks for them.
    supervised_core::forward_supervised_panics(true);

    let registry = Registry::new();
    let exit = Spec::new("hooked")
        .registry(&registry)
        .restart(RestartPolicy::Never)
        .run(CancellationToken::new(), |_ctx: Context| async {
            fail("with a hook in place")
        })
        .await;
    let Exit::Failed { failure, .. } = exit else {
        panic!("{exit:?}")
    };
    assert_eq!(
        app_hook_calls.load(Ordering::SeqCst),
        1,
        "the application's hook ran"
    );
    let location = failure.location.clone().expect("location");
    assert!(location.starts_with(file!()), "{location}");
    let backtrace = failure.backtrace.as_ref().expect("backtrace").to_string();
    assert!(backtrace.contains("fail"), "{backtrace}");

    // A hook installed after the first task replaces ours: failures are still
    // caught, without location, until `install_panic_hook` chains again.
    std::panic::set_hook(Box::new(|_| {}));
    let exit = Spec::new("rehooked")
        .registry(&registry)
        .restart(RestartPolicy::Never)
        .run(CancellationToken::new(), |_ctx: Context| async {
            fail("no location")
        })
        .await;
    let Exit::Failed { failure, .. } = exit else {
        panic!("{exit:?}")
    };
    assert_eq!(failure.message, "no location");
    assert_eq!(failure.location, None);

    supervised_core::install_panic_hook();
    let exit = Spec::new("chained-again")
        .registry(&registry)
        .restart(RestartPolicy::Never)
        .run(CancellationToken::new(), |_ctx: Context| async {
            fail("located")
        })
        .await;
    let Exit::Failed { failure, .. } = exit else {
        panic!("{exit:?}")
    };
    assert!(failure.location.is_some());

    // Panics outside supervised code are not recorded anywhere.
    let _ = std::panic::catch_unwind(|| fail("outside"));

    // With forwarding off (the default), supervised panics stop at our hook;
    // others still reach the application's hook.
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    std::panic::set_hook(Box::new(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    }));
    supervised_core::install_panic_hook();
    supervised_core::forward_supervised_panics(false);
    let exit = Spec::new("quiet")
        .registry(&registry)
        .restart(RestartPolicy::Never)
        .run(CancellationToken::new(), |_ctx: Context| async {
            fail("quiet")
        })
        .await;
    let Exit::Failed { failure, .. } = exit else {
        panic!("{exit:?}")
    };
    assert!(failure.location.is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let _ = std::panic::catch_unwind(|| fail("outside"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let _ = std::panic::take_hook();
}
