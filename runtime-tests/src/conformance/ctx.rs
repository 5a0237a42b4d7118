//! What a case gets: the runtime, bundles in a per-case dir, and helpers that turn runtime
//! calls into findings.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::{not_ok, skip, Finding};
use crate::{Bundle, Leak, RunOutput, Runtime, SupportError};

/// The context of one case.
pub struct Ctx<'a> {
    /// The runtime under test, with a state dir of its own.
    pub rt: &'a Runtime,
    /// The host's namespace links (`/proc/self/ns/*` of the suite), by type.
    pub host_ns: BTreeMap<String, String>,
    dir: TempDir,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(rt: &'a Runtime) -> Result<Ctx<'a>, SupportError> {
        let dir = tempfile::Builder::new()
            .prefix("berth-conf-")
            .tempdir()
            .map_err(|e| SupportError::io("create temp dir", std::env::temp_dir(), e))?;
        let mut host_ns = BTreeMap::new();
        if let Ok(rd) = fs::read_dir("/proc/self/ns") {
            for e in rd.flatten() {
                if let Ok(t) = fs::read_link(e.path()) {
                    host_ns.insert(
                        e.file_name().to_string_lossy().into_owned(),
                        t.to_string_lossy().into_owned(),
                    );
                }
            }
        }
        Ok(Ctx { rt, host_ns, dir })
    }

    /// The per-case directory all bundles live in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A bundle with the probe, args `["/probe"]` and a writable root.
    pub fn bundle(&self) -> Result<Bundle, Finding> {
        let mut b =
            Bundle::with_probe_in(self.dir.path()).map_err(|e| not_ok(format!("harness: {e}")))?;
        b.set_args(&["/probe"]).set_readonly_root(false);
        Ok(b)
    }

    /// A fresh container id.
    pub fn id(&self, tag: &str) -> String {
        self.rt.new_id(tag)
    }

    /// `out` if it succeeded, else a not-ok finding saying `what` failed.
    pub fn must(&self, out: RunOutput, what: &str) -> Result<RunOutput, Finding> {
        if out.success() {
            Ok(out)
        } else {
            Err(not_ok(format!("{what} failed: {}", brief(&out))))
        }
    }

    /// A not-ok finding if `out` succeeded (the operation had to give an error).
    pub fn must_fail(&self, out: &RunOutput, what: &str) -> Result<(), Finding> {
        if out.timed_out {
            return Err(not_ok(format!("{what} hung")));
        }
        if out.success() {
            Err(not_ok(format!("{what} succeeded but must give an error")))
        } else {
            Ok(())
        }
    }

    /// Creates the container, requiring success; returns the id.
    pub fn create(&self, b: &Bundle, tag: &str) -> Result<String, Finding> {
        let id = self.id(tag);
        self.must(self.rt.create(&id, b), "create")?;
        Ok(id)
    }

    /// Create, start, wait for it to stop; returns the container's stdout. Deletes it after.
    /// Uses only the operations of runtime.md.
    pub fn observe_output(&self, b: &Bundle) -> Result<String, Finding> {
        let id = self.create(b, "obs")?;
        self.must(self.rt.start(&id), "start")?;
        let st = self.rt.wait_status(&id, "stopped", Duration::from_secs(10));
        let status = st
            .as_ref()
            .and_then(|v| v["status"].as_str())
            .unwrap_or("?");
        if status != "stopped" {
            return Err(not_ok(format!("container did not stop (status {status})")));
        }
        let out = self.rt.container_stdout(&id);
        self.rt.delete(&id);
        Ok(out)
    }

    /// Like [`observe_output`](Self::observe_output) and parses the probe's report.
    pub fn observe(&self, b: &Bundle) -> Result<Value, Finding> {
        let out = self.observe_output(b)?;
        crate::probe::parse(&out).ok_or_else(|| {
            not_ok(format!(
                "probe printed no report; stdout {out:?}, stderr {:?}",
                self.rt
                    .ids()
                    .last()
                    .map(|i| self.rt.container_stderr(i))
                    .unwrap_or_default()
            ))
        })
    }

    /// The host pid of a created/running container.
    pub fn pid(&self, id: &str) -> Result<i32, Finding> {
        self.rt
            .state_json(id)
            .and_then(|v| v["pid"].as_i64())
            .filter(|&p| p > 0)
            .map(|p| p as i32)
            .ok_or_else(|| not_ok("state gives no pid"))
    }

    /// Skips unless the runtime's `features` lists `value` under the JSON pointer `ptr`; passes
    /// when the runtime has no `features` command (the case then judges by behaviour).
    pub fn require_feature(&self, ptr: &str, value: &str) -> Result<(), Finding> {
        let out = self.rt.features();
        let Some(doc) = out.json().filter(|_| out.success()) else {
            return Ok(());
        };
        match doc.pointer(ptr).and_then(Value::as_array) {
            Some(a) if a.iter().any(|v| v == value) => Ok(()),
            Some(_) => Err(skip(format!("features does not list {value} in {ptr}"))),
            None => Ok(()),
        }
    }
}

/// One line about a failed call.
pub fn brief(out: &RunOutput) -> String {
    if out.timed_out {
        return "timed out".into();
    }
    let code = out
        .code()
        .map(|c| format!("exit {c}"))
        .unwrap_or_else(|| "no exit status".into());
    let err = out.stderr.trim();
    let err: String = err.lines().last().unwrap_or("").chars().take(300).collect();
    format!("{code}: {err}")
}

/// Removes what a faulty runtime left: kills processes, kills cgroup members and removes the
/// cgroup dirs (deepest first), detaches mounts, removes state.
pub fn reap(leaks: &[Leak]) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for l in leaks {
        if let Leak::Process { pid, .. } = l {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
    let mut cgroups: Vec<&Path> = leaks
        .iter()
        .filter_map(|l| match l {
            Leak::Cgroup(p) => Some(p.as_path()),
            _ => None,
        })
        .collect();
    cgroups.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for cg in &cgroups {
        for file in ["cgroup.procs", "tasks"] {
            for pid in fs::read_to_string(cg.join(file))
                .unwrap_or_default()
                .lines()
            {
                if let Ok(p) = pid.trim().parse::<i32>() {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
        }
    }
    for cg in &cgroups {
        // A frozen cgroup's members cannot die: thaw first (v1 freezer, v2 cgroup.freeze).
        let _ = fs::write(cg.join("freezer.state"), "THAWED");
        let _ = fs::write(cg.join("cgroup.freeze"), "0");
        for _ in 0..50 {
            if fs::remove_dir(cg).is_ok() || !cg.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for l in leaks {
        match l {
            Leak::Mount(m) => {
                if let Some(mp) = m.split(' ').nth(1) {
                    let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
                }
            }
            Leak::State(p) => {
                let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup with a live member, as a runtime that crashed mid-create would leave it, is
    /// found by id and removed.
    #[test]
    fn reap_removes_attributed_cgroups_and_their_processes() {
        let base = Path::new(crate::CGROUP_ROOT).join("pids");
        crate::require_root();
        if !base.is_dir() {
            // A pure v2 host has no v1 pids hierarchy: there is nothing to reap there.
            eprintln!("not applicable: no v1 pids hierarchy on this host");
            return;
        }
        let id = format!("reap-test-{}", std::process::id());
        let dir = base.join(&id);
        fs::create_dir(&dir).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        let leaks: Vec<Leak> = crate::cgroup_dirs(&[id])
            .into_iter()
            .map(Leak::Cgroup)
            .collect();
        assert_eq!(leaks, vec![Leak::Cgroup(dir.clone())]);
        reap(&leaks);
        let status = child.wait().unwrap();
        assert!(!status.success(), "member was not killed");
        assert!(!dir.exists(), "cgroup not removed");
    }
}
