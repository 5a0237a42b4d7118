//! Helpers for the root integration tests on the host's real cgroups.
#![allow(dead_code, missing_docs)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_cgroups::CgroupSaved;

static N: AtomicU32 = AtomicU32::new(0);

/// A cgroup path of our own, unique on the host: /berth-test-<pid>-<n>.
pub fn unique_path() -> String {
    format!(
        "/berth-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Panics unless we run as root with the host's v1 cgroupfs: these tests write real cgroups,
/// and a missing prerequisite is a failure, never a silent pass.
pub fn require_root_cgroups() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test writes the host's cgroupfs and needs root"
    );
    assert!(
        std::path::Path::new("/sys/fs/cgroup/memory").is_dir(),
        "no v1 memory hierarchy at /sys/fs/cgroup/memory (these tests are for v1 and hybrid hosts)"
    );
}

/// A child held at a gate (`read`) until `release`, so it can be put into a cgroup before it
/// does anything.
pub struct Gated {
    pub child: Child,
    stdin: Option<ChildStdin>,
}

impl Gated {
    pub fn spawn(script: &str) -> Gated {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read _gate; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdin = child.stdin.take();
        Gated { child, stdin }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn release(&mut self) {
        let mut s = self.stdin.take().expect("released twice");
        s.write_all(b"go\n").unwrap();
    }

    /// Waits (bounded) for the child and returns (status, stdout, stderr).
    pub fn finish(mut self, timeout: Duration) -> (std::process::ExitStatus, String, String) {
        drop(self.stdin.take());
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("child {} did not exit within {timeout:?}", self.child.id());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, out, err)
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that no directory the manager resolved or created is left on the host.
pub fn assert_nothing_left(saved: &CgroupSaved) {
    for h in &saved.hierarchies {
        assert!(!h.dir.exists(), "{} left behind", h.dir.display());
        for d in &h.created {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}

/// CPU time (utime+stime, clock ticks) of a process from /proc/<pid>/stat.
pub fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields after the comm: state is index 0, utime is field 14 of the line => index 11
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub fn dir_of(saved: &CgroupSaved, mount_suffix: &str) -> PathBuf {
    saved
        .hierarchies
        .iter()
        .find(|h| h.mount_point.ends_with(mount_suffix))
        .map(|h| h.dir.clone())
        .unwrap_or_else(|| panic!("no hierarchy {mount_suffix}"))
}

/// A cgroup of a test: killed and removed even when the test panics; `finish` does the same
/// with assertions.
pub struct TestCgroup(Option<Box<dyn berth_cgroups::CgroupManager>>);

impl TestCgroup {
    pub fn new(cg: Box<dyn berth_cgroups::CgroupManager>) -> Self {
        TestCgroup(Some(cg))
    }

    /// Kills what is left, removes the cgroup and asserts nothing is left in any hierarchy.
    pub fn finish(mut self) {
        let cg = self.0.take().unwrap();
        let saved = cg.saved();
        cg.kill_all(libc::SIGKILL).unwrap();
        cg.destroy().unwrap();
        assert_nothing_left(&saved);
    }
}

impl std::ops::Deref for TestCgroup {
    type Target = dyn berth_cgroups::CgroupManager;
    fn deref(&self) -> &Self::Target {
        self.0.as_deref().unwrap()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Some(cg) = self.0.take() {
            let _ = cg.thaw();
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
    }
}
