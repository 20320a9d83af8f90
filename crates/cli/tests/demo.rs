//! `quest demo` must work offline with no API key and walk the three stops.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::{TestEnv, run};

#[test]
fn demo_walks_completion_usage_limit_and_breaker() {
    let env = TestEnv::new();
    let out = run(env.quest_bare().arg("demo").env_remove("TEST_API_KEY"), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "exit code 0; the model server received 5 request(s)",
        "Status:      complete",
        "greeting.sh is now: echo \"Hello, world!\"",
        "exit code 4; the model server received 1 request(s)",
        "Status:      usageLimited",
        "exit code 3; the model server received 3 request(s)",
        "Status:      blocked",
        "no_progress",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // The demo keeps its state in a temporary home, never in the user's.
    assert!(std::fs::read_dir(env.home()).unwrap().next().is_none());
}
