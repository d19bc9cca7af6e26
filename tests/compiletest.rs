//! Compile errors of `#[supervised]` and `spawn_all!`: each case in `tests/ui/`
//! must fail with exactly the message in its `.stderr` file.
//!
//! The messages come from the macros (stable across compilers) except for the
//! few cases checked by rustc in the expanded code (a non-`Clone` argument, a
//! non-`Display` error, a value that is not a task). Regenerate with
//! `TRYBUILD=overwrite cargo test --test compiletest` and review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
