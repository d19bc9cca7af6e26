//! What a person reads when a task panics: one report per panic by default,
//! with a backtrace trimmed to the task's own frames. The scenario runs in a
//! child process of this test binary, with `RUST_BACKTRACE=1` and Rust's
//! default panic hook, and the test reads everything the child printed.

use std::process::Command;

use supervised_core::{CancellationToken, Context, Exit, Registry, RestartPolicy, Spec};

const CHILD: &str = "SUPERVISED_FAILURE_REPORT_CHILD";

#[inline(never)]
fn parse_row(row: &str) -> u32 {
    row.parse().expect("a numeric row")
}

#[inline(never)]
fn sync_tenant(rows: &[&str]) -> u32 {
    rows.iter().map(|r| parse_row(r)).sum()
}

/// The child: a task that panics two user fns deep, logged to stderr.
fn child() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = Registry::new();
    let exit = rt.block_on(
        Spec::new("tenant-sync")
            .registry(&registry)
            .restart(RestartPolicy::Never)
            .run(CancellationToken::new(), |_ctx: Context| async {
                std::hint::black_box(sync_tenant(&["1", "two"]));
            }),
    );
    let Exit::Failed { failure, .. } = exit else {
        panic!("{exit:?}")
    };
    // The failure's own backtrace, as the API gives it.
    println!("BACKTRACE-START");
    println!(
        "{}",
        failure.backtrace.expect("RUST_BACKTRACE=1 asks for one")
    );
    println!("BACKTRACE-END");
}

#[test]
fn one_report_per_panic_with_the_tasks_own_frames() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "one_report_per_panic_with_the_tasks_own_frames",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // One report: the supervisor's ERROR event, and nothing from the default
    // panic hook.
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("task=\"tenant-sync\""), "{}", errors[0]);
    assert!(errors[0].contains("a numeric row"), "{}", errors[0]);
    assert!(
        !stderr.contains("panicked at"),
        "the default hook printed:\n{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "ANSI escapes in:\n{stderr}");

    // The backtrace starts at the panicking fn and holds the caller, and
    // nothing of the panic machinery, this crate's or tokio's.
    let backtrace = stdout
        .split("BACKTRACE-START\n")
        .nth(1)
        .and_then(|rest| rest.split("BACKTRACE-END").next())
        .unwrap_or_else(|| panic!("no backtrace in\n{stdout}"));
    let frames: Vec<&str> = backtrace
        .lines()
        .filter(|l| !l.trim_start().starts_with("at "))
        .collect();
    assert!(
        frames[0].starts_with("   0: ") && frames[0].contains("failure_report::parse_row"),
        "{backtrace}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.contains("failure_report::sync_tenant")),
        "{backtrace}"
    );
    for unwanted in [
        "tokio::",
        "supervised_core::",
        "rust_begin_unwind",
        "panic_fmt",
    ] {
        assert!(!backtrace.contains(unwanted), "{unwanted} in:\n{backtrace}");
    }
    assert!(frames.len() < 20, "{} frames:\n{backtrace}", frames.len());
    // The log shows the same trimmed text.
    assert!(stderr.contains(frames[0].trim()), "{stderr}");
    assert!(!stderr.contains("tokio::runtime"), "{stderr}");
}
