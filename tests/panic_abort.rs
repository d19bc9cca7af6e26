//! A program built with `panic = "abort"` cannot catch panics: supervision says
//! so loudly at startup, and the process then aborts on the first panic. This
//! builds a small crate with that profile, so it is slow and `#[ignore]`d;
//! `.ci/run` runs it.

use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "builds a separate crate; run by .ci/run"]
fn panic_abort_builds_warn_at_startup_and_abort_on_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("tests/fixtures/panic-abort/Cargo.toml");
    let target = root.join("target/panic-abort-fixture");
    let out = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("panics_are_caught=false"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("WARNING: supervised: this program is built with panic = \"abort\""),
        "{stderr}"
    );
    assert!(!stdout.contains("unreachable"), "{stdout}");
    assert!(!out.status.success(), "{:?}", out.status);
}
