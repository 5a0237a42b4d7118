//! Waiting for a condition that no event announces (a file appearing, a status changing, a
//! counter growing): polled with a deadline, never a fixed sleep. The one place the tests
//! poll: [`wait_for`] says whether it held, [`wait_until`] fails the test if not.

use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_for`] at most `timeout`, panicking with `timed out waiting for WHAT` if `cond`
/// never holds: for a test step that cannot go on without it.
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    assert!(wait_for(timeout, cond), "timed out waiting for {what}");
}

/// `/proc/PID/exe` (empty if unreadable) once `done` holds for it, or after 5 s: what a
/// container process runs, e.g. the exec stub while it waits for start.
pub fn wait_for_exe(pid: i64, done: impl Fn(&str) -> bool) -> String {
    let mut exe = String::new();
    wait_for(Duration::from_secs(5), || {
        exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        done(&exe)
    });
    exe
}
