//! Tests whose prerequisite is missing (a tool, root, a mount, user xattrs): under `CI=true`
//! that is a failure, since CI installs and provides every prerequisite; elsewhere the test
//! says so on stderr and is skipped.

/// Whether the tests run under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A test cannot run because `why`: panics under `CI=true`, else prints a note. The caller
/// returns right after (the test is skipped).
pub fn missing(why: &str) {
    assert!(!in_ci(), "CI=true and a prerequisite is missing: {why}");
    eprintln!("note: {why}; test skipped (it fails under CI=true)");
}
