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

impl Bystander {
    /// Make the cgroups and start the `sleep` in them (panics when it cannot: a missing
    /// prerequisite is a failure).
    pub fn start() -> Bystander {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "bystander-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut b = Bystander {
            name,
            dirs: Vec::new(),
            child,
        };
        let root = Path::new(crate::CGROUP_ROOT);
        let hierarchies: Vec<PathBuf> = if root.join("cgroup.procs").exists() {
            vec![root.to_path_buf()] // pure v2: one hierarchy, mounted right there
        } else {
            fs::read_dir(root)
                .unwrap()
                .flatten()
                .map(|h| h.path())
                .filter(|p| !p.is_symlink() && p.join("cgroup.procs").exists())
                .collect()
        };
        for p in hierarchies {
            let d = p.join(&b.name);
            fs::create_dir(&d).unwrap();
            b.dirs.push(d.clone());
            // A new cpuset cgroup (v1) takes tasks only once it has cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = fs::read_to_string(p.join(f)) {
                    fs::write(d.join(f), v.trim()).unwrap();
                }
            }
            fs::write(d.join("cgroup.procs"), b.child.id().to_string()).unwrap();
        }
        assert!(
            !b.dirs.is_empty(),
            "no cgroup hierarchy under /sys/fs/cgroup"
        );
        b
    }

    /// Whether the `sleep` still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
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
