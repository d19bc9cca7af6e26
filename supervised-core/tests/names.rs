//! Task names every view can show: a name with a newline, whitespace or a
//! control character, an empty one or one over 253 bytes never runs and is
//! never registered, so no endpoint, metric or `STATUS=` line can be fed it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use supervised_core::{
    CancellationToken, Context, Exit, FailureKind, GaveUp, Registry, Spec, MAX_NAME_LEN,
};

#[tokio::test(start_paused = true)]
async fn an_invalid_name_fails_the_task_without_running_or_registering_it() {
    let registry = Registry::new();
    let long = "n".repeat(MAX_NAME_LEN + 1);
    for name in [
        "",
        "two words",
        "evil\nlivez check passed",
        "tab\there",
        "bell\u{7}",
        long.as_str(),
    ] {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let exit = Spec::new(name)
            .registry(&registry)
            .run(CancellationToken::new(), move |_ctx: Context| {
                flag.store(true, Ordering::SeqCst);
                async {}
            })
            .await;
        match exit {
            Exit::Failed {
                reason, failure, ..
            } => {
                assert_eq!(reason, GaveUp::InvalidName, "{name:?}");
                assert_eq!(failure.kind, FailureKind::InvalidName, "{name:?}");
                assert_eq!(failure.attempt, 0);
            }
            other => panic!("{name:?}: {other:?}"),
        }
        assert!(!ran.load(Ordering::SeqCst), "{name:?} ran");
    }
    assert!(registry.tasks().is_empty());

    // The longest valid name runs.
    let longest = "n".repeat(MAX_NAME_LEN);
    let exit = Spec::new(longest.as_str())
        .registry(&registry)
        .run(CancellationToken::new(), |_ctx: Context| async {})
        .await;
    assert_eq!(exit, Exit::Completed);
    assert_eq!(registry.tasks().len(), 1);
}

#[test]
fn a_heartbeat_for_an_invalid_name_is_not_recorded() {
    let registry = Registry::new();
    registry.heartbeat("ok-name");
    registry.heartbeat("forged\n[+]ok");
    registry.heartbeat("");
    let names: Vec<String> = registry.snapshot().into_keys().collect();
    assert_eq!(names, ["ok-name"]);
}
