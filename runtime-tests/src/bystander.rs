//! A process that is not a container's, in cgroups a test made: what a container placed in an
//! existing cgroup (`linux.cgroupsPath`) must leave alone (issue 11: a container's teardown
//! touches only what is the container's).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A cgroup made by the test in every hierarchy, holding a `sleep` that is not a container's;
/// removed (and the sleep killed) on drop.
pub struct Bystander {
    /// The cgroup's name, the same in every hierarchy (`linux.cgroupsPath` = `/NAME`).
    pub name: String,
    /// The cgroup's directory in each hierarchy.
    pub dirs: Vec<PathBuf>,
    child: Child,
}

/// The cgroup hierarchies under /sys/fs/cgroup: each v1 controller mount (and the hybrid
/// unified one), or the v2 root itself.
pub(crate) fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new(crate::CGROUP_ROOT);
    if root.join("cgroup.procs").exists() {
        return vec![root.to_path_buf()]; // pure v2: one hierarchy, mounted right there
    }
    let Ok(rd) = fs::read_dir(root) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|h| h.path())
        .filter(|p| !p.is_symlink() && p.join("cgroup.procs").exists())
        .collect()
}

impl Bystander {
    /// Make the cgroups (named `bystander-PID-N`) and start the `sleep` in them (panics when
    /// it cannot: a missing prerequisite is a failure).
    pub fn start() -> Bystander {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "bystander-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        Bystander::try_start(&name).unwrap_or_else(|e| panic!("bystander: {e}"))
    }

    /// Make the cgroup `name` in every hierarchy and start the `sleep` in it; errors name the
    /// step that failed (there is no hierarchy, a mkdir, the move into the cgroup).
    pub fn try_start(name: &str) -> Result<Bystander, String> {
        let hierarchies = cgroup_hierarchies();
        if hierarchies.is_empty() {
            return Err(format!("no cgroup hierarchy under {}", crate::CGROUP_ROOT));
        }
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn sleep: {e}"))?;
        let mut b = Bystander {
            name: name.to_owned(),
            dirs: Vec::new(),
            child,
        };
        for p in hierarchies {
            let d = p.join(name);
            fs::create_dir(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
            b.dirs.push(d.clone());
            // A new cpuset cgroup (v1) takes tasks only once it has cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = fs::read_to_string(p.join(f)) {
                    let _ = fs::write(d.join(f), v.trim());
                }
            }
            fs::write(d.join("cgroup.procs"), b.child.id().to_string())
                .map_err(|e| format!("move the sleep into {}: {e}", d.display()))?;
        }
        Ok(b)
    }

    /// Whether the `sleep` still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics unless the `sleep` lives, in every one of its cgroups, which all exist.
    pub fn assert_untouched(&mut self, who: &str) {
        assert!(self.alive(), "{who}: the bystander was killed");
        for d in &self.dirs {
            assert!(d.is_dir(), "{who}: {} was removed", d.display());
            let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap();
            assert!(
                procs.lines().any(|l| l == self.child.id().to_string()),
                "{who}: the bystander left {}",
                d.display()
            );
        }
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in &self.dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(d).is_err() && d.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}
