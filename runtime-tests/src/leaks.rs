//! Checking that a test left nothing behind: mounts, cgroups, processes, state.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::{Bundle, Runtime};

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How deep below each hierarchy cgroup directories are searched for test ids.
const CGROUP_DEPTH: usize = 4;

/// Something a test left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leak {
    /// A mount (mountinfo line) that appeared in this process's mount namespace.
    Mount(String),
    /// A cgroup directory whose name contains a test container id.
    Cgroup(PathBuf),
    /// A live process tied to the test (root/cwd in the bundle, cgroup naming a test id, or a
    /// pid `state` reported).
    Process {
        /// Its pid.
        pid: i32,
        /// Why it counts as the test's.
        why: String,
    },
    /// A file left in the runtime's state directory.
    State(PathBuf),
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leak::Mount(m) => write!(f, "mount left: {m}"),
            Leak::Cgroup(p) => write!(f, "cgroup left: {}", p.display()),
            Leak::Process { pid, why } => write!(f, "process left: pid {pid} ({why})"),
            Leak::State(p) => write!(f, "state left: {}", p.display()),
        }
    }
}

/// What the host looked like before a test, to compare with afterwards.
///
/// ```no_run
/// use runtime_tests::{assert_no_leaks, Bundle, LeakSnapshot, Runtime};
///
/// let rt = Runtime::new(runtime_tests::berth_bin().unwrap()).unwrap();
/// let bundle = Bundle::new().unwrap();
/// let before = LeakSnapshot::take(&rt, &bundle);
/// let id = rt.new_id("t");
/// rt.run(&id, &bundle);
/// rt.delete(&id);
/// assert_no_leaks(&before, &rt);
/// ```
#[derive(Debug, Clone)]
pub struct LeakSnapshot {
    mounts: BTreeSet<String>,
    cgroups: BTreeSet<PathBuf>,
    state: BTreeSet<PathBuf>,
    bundle: PathBuf,
}

impl LeakSnapshot {
    /// Records the current mounts, cgroup dirs and state dir entries.
    pub fn take(rt: &Runtime, bundle: &Bundle) -> LeakSnapshot {
        LeakSnapshot::take_for(rt, bundle.dir())
    }

    /// Like [`take`](Self::take) for a bundle directory given by path.
    pub fn take_for(rt: &Runtime, bundle_dir: &Path) -> LeakSnapshot {
        LeakSnapshot {
            mounts: mounts(),
            cgroups: cgroup_dirs(&[]).into_iter().collect(),
            state: list_tree(&rt.root),
            bundle: bundle_dir.to_path_buf(),
        }
    }

    /// Everything that is new since the snapshot and belongs to `rt`'s containers or bundle.
    pub fn leaks(&self, rt: &Runtime) -> Vec<Leak> {
        let ids = rt.ids();
        let bundle = self.bundle.display().to_string();
        let root = rt.root.display().to_string();
        let mut out = Vec::new();
        for m in mounts().difference(&self.mounts) {
            let ours =
                m.contains(&bundle) || m.contains(&root) || ids.iter().any(|id| names_id(m, id));
            if ours {
                out.push(Leak::Mount(m.clone()));
            }
        }
        // With no ids, cgroup_dirs would list every cgroup (of every test running in parallel).
        let ours = if ids.is_empty() {
            Vec::new()
        } else {
            cgroup_dirs(&ids)
        };
        for c in ours {
            if !self.cgroups.contains(&c) {
                out.push(Leak::Cgroup(c));
            }
        }
        out.extend(processes(&self.bundle, &ids, &rt.seen_pids()));
        for p in list_tree(&rt.root).difference(&self.state) {
            // berth's cache of compiled seccomp programs is the runtime root's, no container's.
            if p.file_name().is_some_and(|n| n == SECCOMP_CACHE) {
                continue;
            }
            out.push(Leak::State(p.clone()));
        }
        out
    }
}

/// The directory in the runtime root where berth keeps compiled seccomp programs (berth's
/// `seccomp::cache::DIR_NAME`; `@` is never part of a container id).
pub const SECCOMP_CACHE: &str = "@seccomp-cache";

/// Panics with a list of leaks (and the runtime's call log) if `rt`'s containers left anything
/// behind since `before`.
pub fn assert_no_leaks(before: &LeakSnapshot, rt: &Runtime) {
    let leaks = before.leaks(rt);
    if !leaks.is_empty() {
        let list: Vec<String> = leaks.iter().map(|l| l.to_string()).collect();
        panic!("test left resources behind:\n  {}", list.join("\n  "));
    }
}

/// The mountinfo lines of this process with the mount ids stripped (fields 5.. only).
fn mounts() -> BTreeSet<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .map(|l| l.split(' ').skip(3).collect::<Vec<_>>().join(" "))
        .collect()
}

/// Cgroup directories under every hierarchy whose name contains one of `ids` (all of them up to
/// the depth limit when `ids` is empty, for the snapshot).
pub fn cgroup_dirs(ids: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hier) = fs::read_dir(CGROUP_ROOT) else {
        return found;
    };
    for h in hier.flatten() {
        let p = h.path();
        if p.is_dir() && !p.is_symlink() {
            walk_cgroups(&p, ids, CGROUP_DEPTH, &mut found);
        }
    }
    found
}

fn walk_cgroups(dir: &Path, ids: &[String], depth: usize, found: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if ids.is_empty() || ids.iter().any(|id| names_id(&name, id)) {
            found.push(p.clone());
        }
        walk_cgroups(&p, ids, depth - 1, found);
    }
}

/// Whether `text` contains `id` not followed by a digit, so that id `t-1-3` does not claim the
/// cgroup of `t-1-34`.
pub fn names_id(text: &str, id: &str) -> bool {
    !id.is_empty()
        && text.match_indices(id).any(|(i, _)| {
            !text[i + id.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
}

/// The state letter (field 3) and start time (field 22) of `/proc/PID/stat`, the suite's one
/// parser of it; `None` if the process does not exist. The command name (field 2) may hold
/// spaces and parentheses: the fields are counted after the last `)`.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After field 3, field 22 is the 19th.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` is a zombie (or dead): exited, waiting for its parent.
pub fn is_zombie(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| matches!(state, 'Z' | 'X'))
}

/// The start time (field 22 of /proc/PID/stat) of a live process, to tell pid reuse apart.
pub fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

fn processes(bundle: &Path, ids: &[String], seen: &[(i32, u64)]) -> Vec<Leak> {
    let mut out = Vec::new();
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Zombies are not resources a runtime holds; their parent will reap them.
        if is_zombie(pid) {
            continue;
        }
        let mut why = None;
        for link in ["root", "cwd"] {
            if let Ok(t) = fs::read_link(format!("/proc/{pid}/{link}")) {
                if t.starts_with(bundle) {
                    why = Some(format!("{link} is {}", t.display()));
                }
            }
        }
        if why.is_none() && !ids.is_empty() {
            let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if let Some(id) = ids.iter().find(|id| names_id(&cg, id)) {
                why = Some(format!("in a cgroup of {id}"));
            }
        }
        if why.is_none() {
            if let Some(&(_, st)) = seen.iter().find(|&&(p, _)| p == pid) {
                if start_time(pid) == Some(st) {
                    why = Some("pid reported by state".into());
                }
            }
        }
        if let Some(why) = why {
            out.push(Leak::Process { pid, why });
        }
    }
    out
}

fn list_tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut set = BTreeSet::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            set.insert(e.path());
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_do_not_claim_longer_ids() {
        assert!(names_id("/sys/fs/cgroup/pids/obs-12-3", "obs-12-3"));
        assert!(names_id("/x/obs-12-3/sub", "obs-12-3"));
        assert!(!names_id("/x/obs-12-34", "obs-12-3"));
        assert!(!names_id("/x/obs-123-3", "obs-12-3"));
    }
}
