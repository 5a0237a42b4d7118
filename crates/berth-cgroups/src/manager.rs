//! The filesystem cgroup manager: one cgroup directory in every mounted hierarchy.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::CgroupError;
use crate::fsutil;
use crate::hierarchy::{own_path, FsType, Hierarchies, Layout, ProcCgroup};
use crate::path::resolve;
use crate::stats::Stats;
use crate::CgroupManager;

/// How long `destroy` keeps retrying `rmdir` while the last processes exit.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `freeze`/`thaw` wait for the state to be reached.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// The container's cgroup in one hierarchy, as saved in the runtime's state file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SavedHierarchy {
    /// `cgroup` or `cgroup2`.
    pub fs_type: FsType,
    /// Where the hierarchy is mounted on the host.
    pub mount_point: PathBuf,
    /// v1 subsystems (incl. `name=...`), or the v2 controllers available at detection time.
    pub controllers: Vec<String>,
    /// Superblock options of the hierarchy's mount.
    pub super_options: String,
    /// The cgroup path inside the hierarchy (as `/proc/<pid>/cgroup` shows it).
    pub path: PathBuf,
    /// The host directory of the cgroup.
    pub dir: PathBuf,
    /// The directories `create` made, outermost first. Only these are ever removed.
    pub created: Vec<PathBuf>,
}

/// What the runtime saves in its state file to re-open the same cgroup in a later process.
///
/// ```
/// let json = r#"{"layout":"v2","hierarchies":[]}"#;
/// let saved: berth_cgroups::CgroupSaved = serde_json::from_str(json).unwrap();
/// assert_eq!(saved.layout, berth_cgroups::Layout::V2);
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CgroupSaved {
    /// The host layout when the cgroup was resolved.
    pub layout: Layout,
    /// One entry per hierarchy the container's cgroup lives in.
    pub hierarchies: Vec<SavedHierarchy>,
}

impl CgroupSaved {
    /// This cgroup with `created` set, in every hierarchy, to the directories of its path
    /// (below the mount point, outermost first) that do not exist yet: what
    /// [`CgroupManager::create`](crate::CgroupManager::create) is about to make. A runtime
    /// saves it before creating, so that after a crash in between it removes those, and only
    /// those ([`CgroupManager::destroy`](crate::CgroupManager::destroy) takes a missing one
    /// as removed).
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # std::fs::create_dir(root.path().join("pids")).unwrap();
    /// # let h = berth_cgroups::Hierarchies::from_root(root.path()).unwrap();
    /// use berth_cgroups::CgroupManager;
    /// let m = berth_cgroups::FsManager::new(&h, &[], Some("/a/b"), "c1").unwrap();
    /// let planned = m.saved().with_missing_as_created();
    /// let dirs = &planned.hierarchies[0].created;
    /// assert_eq!(dirs, &[root.path().join("pids/a"), root.path().join("pids/a/b")]);
    /// ```
    pub fn with_missing_as_created(&self) -> CgroupSaved {
        let mut out = self.clone();
        for h in &mut out.hierarchies {
            let Ok(rel) = h.dir.strip_prefix(&h.mount_point) else {
                continue;
            };
            let mut cur = h.mount_point.clone();
            h.created.clear();
            for comp in rel.components() {
                cur.push(comp);
                if !h.created.is_empty() || fs::symlink_metadata(&cur).is_err() {
                    h.created.push(cur.clone());
                }
            }
        }
        out
    }
}

/// How to present one hierarchy inside the container (`/sys/fs/cgroup/...`).
///
/// ```
/// # let m = berth_cgroups::HierarchyMount { destination: "memory".into(),
/// #   fs_type: berth_cgroups::FsType::V1, options: "memory".into(), controllers: vec![],
/// #   symlinks: vec![], host_dir: "/sys/fs/cgroup/memory/c1".into(), path: "/c1".into() };
/// let target = std::path::Path::new("/sys/fs/cgroup").join(&m.destination);
/// assert_eq!(target, std::path::Path::new("/sys/fs/cgroup/memory"));
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HierarchyMount {
    /// Mount point relative to `/sys/fs/cgroup`: `memory`, `cpu,cpuacct`, `systemd`,
    /// `unified`, or `""` for pure v2 (the cgroup2 fs is mounted on `/sys/fs/cgroup` itself).
    pub destination: String,
    /// `cgroup` or `cgroup2`.
    pub fs_type: FsType,
    /// Data for `mount(2)` of a fresh cgroup fs of this hierarchy: the subsystems for v1
    /// (`cpu,cpuacct`, `name=systemd`), empty for v2.
    pub options: String,
    /// The controllers of the hierarchy.
    pub controllers: Vec<String>,
    /// Symlink names under `/sys/fs/cgroup` that point to `destination` when controllers are
    /// co-mounted (`cpu` and `cpuacct` for `cpu,cpuacct`).
    pub symlinks: Vec<String>,
    /// The host directory of the container's cgroup (to bind mount without a cgroup ns).
    pub host_dir: PathBuf,
    /// The container's cgroup path inside the hierarchy.
    pub path: PathBuf,
}

/// Manages one container cgroup across all the host's hierarchies (v1, v2 or hybrid).
///
/// Most callers use [`crate::new_manager`]; this type is public for embedders that need
/// a fake cgroupfs ([`crate::Hierarchies::from_root`]).
///
/// ```
/// use berth_cgroups::{CgroupManager, FsManager, Hierarchies};
/// let root = tempfile::tempdir().unwrap();
/// std::fs::create_dir(root.path().join("pids")).unwrap();
/// let h = Hierarchies::from_root(root.path()).unwrap();
/// let mut m = FsManager::new(&h, &[], Some("/c1"), "c1").unwrap();
/// m.create().unwrap();
/// assert!(root.path().join("pids/c1").is_dir());
/// ```
#[derive(Debug, Clone)]
pub struct FsManager {
    saved: CgroupSaved,
}

impl FsManager {
    /// Resolves the container's cgroup in every hierarchy of `hierarchies` with runc's
    /// `cgroupsPath` rules, `proc_cgroup` being the parsed `/proc/self/cgroup` of the caller
    /// (hierarchies missing from it count as the caller sitting at the mount root).
    pub fn new(
        hierarchies: &Hierarchies,
        proc_cgroup: &[ProcCgroup],
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Self, CgroupError> {
        let mut out = Vec::new();
        for h in hierarchies.v1().iter().chain(hierarchies.unified()) {
            let own = own_path(h, proc_cgroup).unwrap_or(&h.mount_root);
            let path = resolve(own, cgroups_path, container_id)?;
            let dir = h.dir_of(&path)?;
            out.push(SavedHierarchy {
                fs_type: h.fs_type,
                mount_point: h.mount_point.clone(),
                controllers: h.controllers.clone(),
                super_options: h.super_options.clone(),
                path,
                dir,
                created: Vec::new(),
            });
        }
        Ok(FsManager {
            saved: CgroupSaved {
                layout: hierarchies.layout(),
                hierarchies: out,
            },
        })
    }

    /// Re-opens a cgroup from what [`CgroupManager::saved`] returned.
    ///
    /// The saved paths are checked first: every directory must lie below its hierarchy's
    /// mount point without `..`, and the recorded created directories must be the cgroup
    /// itself or its ancestors, so that a damaged state file cannot make
    /// [`CgroupManager::destroy`] remove anything else.
    pub fn from_saved(saved: CgroupSaved) -> Result<Self, CgroupError> {
        for h in &saved.hierarchies {
            let bad = |p: &Path, reason: &str| CgroupError::InvalidPath {
                path: p.display().to_string(),
                reason: reason.to_string(),
            };
            let clean = |p: &Path| {
                p.is_absolute()
                    && p.components()
                        .all(|c| !matches!(c, std::path::Component::ParentDir))
            };
            if !clean(&h.mount_point)
                || !clean(&h.dir)
                || !h.dir.starts_with(&h.mount_point)
                || h.dir == h.mount_point
            {
                return Err(bad(&h.dir, "saved cgroup is not inside its hierarchy"));
            }
            for c in &h.created {
                if !clean(c)
                    || !h.dir.starts_with(c)
                    || !c.starts_with(&h.mount_point)
                    || *c == h.mount_point
                {
                    return Err(bad(
                        c,
                        "saved created directory is not the cgroup or one of its parents",
                    ));
                }
            }
        }
        Ok(FsManager { saved })
    }

    /// The layout the manager works with.
    pub fn layout(&self) -> Layout {
        self.saved.layout
    }

    /// The container's directory in the v1 hierarchy carrying `controller`.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.saved
            .hierarchies
            .iter()
            .find(|h| h.fs_type == FsType::V1 && h.controllers.iter().any(|c| c == controller))
            .map(|h| h.dir.as_path())
    }

    /// The container's directory in the unified hierarchy.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.saved
            .hierarchies
            .iter()
            .find(|h| h.fs_type == FsType::V2)
            .map(|h| h.dir.as_path())
    }

    fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.saved.hierarchies.iter().map(|h| h.dir.as_path())
    }

    fn create_in(h: &mut SavedHierarchy, v2_controllers: bool) -> Result<(), CgroupError> {
        let rel = h
            .dir
            .strip_prefix(&h.mount_point)
            .map_err(|_| CgroupError::InvalidPath {
                path: h.dir.display().to_string(),
                reason: "not under its mount point".into(),
            })?
            .to_path_buf();
        let mut cur = h.mount_point.clone();
        let is_cpuset = h.fs_type == FsType::V1 && h.controllers.iter().any(|c| c == "cpuset");
        for comp in rel.components() {
            let parent = cur.clone();
            cur.push(comp);
            if v2_controllers {
                // The parent's controllers must be enabled before a child is made.
                if cur.is_dir() {
                    continue;
                }
                enable_subtree_controllers(&parent);
            }
            match fs::create_dir(&cur) {
                Ok(()) => {
                    tracing::debug!(dir = %cur.display(), "created cgroup");
                    h.created.push(cur.clone());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(CgroupError::Create { path: cur, source }),
            }
            // Also a directory that was there: one without cpus or mems takes no process, and
            // runc fills it the same way (cpusetEnsureParent), from the top down.
            if is_cpuset {
                crate::v1::cpuset::inherit_from_parent(&parent, &cur)?;
            }
        }
        Ok(())
    }

    fn wait_freezer(&self, dir: &Path, v1: bool, frozen: bool) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut n: u32 = 0;
        loop {
            let reached = if v1 {
                let s = fsutil::read(dir, "freezer.state")?;
                s.trim() == if frozen { "FROZEN" } else { "THAWED" }
            } else {
                v2_frozen(dir)? == frozen
            };
            if reached {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(CgroupError::Timeout {
                    what: if frozen { "FROZEN" } else { "THAWED" },
                    path: dir.to_path_buf(),
                });
            }
            n += 1;
            // A v1 freeze can stall in FREEZING when a task is in an uninterruptible
            // sleep; writing FROZEN again retries the transition.
            if v1 && frozen && n % 50 == 0 {
                fsutil::write(dir, "freezer.state", "FROZEN")?;
            }
            std::thread::sleep(Duration::from_millis(if n < 100 { 1 } else { 10 }));
        }
    }

    /// Which freezer to use: (dir, is_v1).
    fn freezer(&self) -> Result<(&Path, bool), CgroupError> {
        if let Some(d) = self.v1_dir("freezer") {
            return Ok((d, true));
        }
        if let Some(d) = self.unified_dir() {
            if d.join("cgroup.freeze").exists() {
                return Ok((d, false));
            }
        }
        Err(CgroupError::Unsupported {
            operation: "freeze",
            reason: "no v1 freezer hierarchy and no cgroup.freeze in the unified cgroup".into(),
        })
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let (dir, v1) = self.freezer()?;
        if v1 {
            fsutil::write(
                dir,
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            )?;
        } else {
            fsutil::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
        }
        let res = self.wait_freezer(dir, v1, frozen);
        if res.is_err() && frozen {
            // Never leave a half-frozen container behind.
            let _ = if v1 {
                fsutil::write(dir, "freezer.state", "THAWED")
            } else {
                fsutil::write(dir, "cgroup.freeze", "0")
            };
        }
        res
    }
}

/// Reads `frozen` from a v2 `cgroup.events`.
pub(crate) fn v2_frozen(dir: &Path) -> Result<bool, CgroupError> {
    let ev = fsutil::read(dir, "cgroup.events")?;
    Ok(fsutil::parse_flat_keyed(&ev)
        .iter()
        .any(|(k, v)| k == "frozen" && *v == 1))
}

/// Enables in `parent`'s `cgroup.subtree_control` every controller it offers that is not
/// yet enabled, so that the child gets the controller files.
fn enable_subtree_controllers(parent: &Path) {
    let available = fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
    for c in available.split_whitespace() {
        if enabled.split_whitespace().any(|e| e == c) {
            continue;
        }
        if let Err(e) = fsutil::write(parent, "cgroup.subtree_control", format!("+{c}")) {
            tracing::warn!(error = %e, controller = c, "cannot enable controller");
        }
    }
}

/// Removes `dir` and, depth first, every cgroup below it (made by the container itself).
/// EBUSY is retried until `deadline` because the kernel keeps a cgroup busy until its last
/// process has been reaped.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path(), deadline)?;
            }
        }
    }
    let mut delay = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), "removed cgroup");
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

impl CgroupManager for FsManager {
    fn create(&mut self) -> Result<(), CgroupError> {
        let v2_controllers = self.saved.layout == Layout::V2;
        let mut failed = None;
        for h in self.saved.hierarchies.iter_mut() {
            let v2 = v2_controllers && h.fs_type == FsType::V2;
            if let Err(e) = Self::create_in(h, v2) {
                failed = Some(e);
                break;
            }
        }
        if let Some(e) = failed {
            if let Err(rm) = self.destroy() {
                tracing::warn!(error = %rm, "cleanup after failed create");
            }
            for h in self.saved.hierarchies.iter_mut() {
                h.created.clear();
            }
            return Err(e);
        }
        Ok(())
    }

    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            fsutil::write(d, "cgroup.procs", pid.to_string())?;
        }
        Ok(())
    }

    fn self_join(&self) -> Result<crate::SelfJoin, CgroupError> {
        let v1 = self
            .saved
            .hierarchies
            .iter()
            .filter(|h| h.fs_type == FsType::V1)
            .map(|h| h.dir.as_path());
        crate::SelfJoin::open(v1, self.unified_dir())
    }

    fn add_task_unified(&self, pid: i32) -> Result<(), CgroupError> {
        match self.unified_dir() {
            Some(d) => fsutil::write(d, "cgroup.procs", pid.to_string()),
            None => Ok(()),
        }
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        match self.saved.layout {
            Layout::V2 => {
                let dir = self.unified_dir().ok_or(CgroupError::NotMounted)?;
                crate::v2::apply(dir, resources)
            }
            Layout::V1 | Layout::Hybrid => {
                crate::v1::apply(&|c| self.v1_dir(c), resources)?;
                if let Some(unified) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
                    let dir = self
                        .unified_dir()
                        .ok_or_else(|| CgroupError::ControllerMissing {
                            controller: "unified (cgroup2)".into(),
                        })?;
                    crate::v2::unified::apply(dir, unified)?;
                }
                Ok(())
            }
        }
    }

    fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut set = BTreeSet::new();
        for d in self.dirs() {
            if let Some(s) = fsutil::read_opt(d, "cgroup.procs")? {
                set.extend(fsutil::parse_pids(d, &s)?);
            }
        }
        Ok(set.into_iter().collect())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        let (dir, v1) = self.freezer()?;
        if v1 {
            Ok(fsutil::read(dir, "freezer.state")?.trim() == "FROZEN")
        } else {
            v2_frozen(dir)
        }
    }

    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        let sig = Signal::try_from(signal).map_err(|source| CgroupError::Signal {
            pid: 0,
            signal,
            source,
        })?;
        if sig == Signal::SIGKILL {
            if let Some(d) = self
                .unified_dir()
                .filter(|d| d.join("cgroup.kill").exists())
            {
                fsutil::write(d, "cgroup.kill", "1")?;
                // cgroup.kill also catches processes forked meanwhile; in hybrid mode a
                // process placed only in v1 hierarchies still gets a plain SIGKILL.
                for pid in self.procs()? {
                    match kill(Pid::from_raw(pid), sig) {
                        Ok(()) | Err(nix::Error::ESRCH) => {}
                        Err(source) => {
                            return Err(CgroupError::Signal {
                                pid,
                                signal,
                                source,
                            })
                        }
                    }
                }
                return Ok(());
            }
        }
        // Freeze so nothing forks between listing and signalling.
        let frozen = match self.freeze() {
            Ok(()) => true,
            Err(CgroupError::Unsupported { .. }) => false,
            Err(e) => return Err(e),
        };
        let mut res = Ok(());
        for pid in self.procs()? {
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(source) => {
                    res = Err(CgroupError::Signal {
                        pid,
                        signal,
                        source,
                    });
                }
            }
        }
        if frozen {
            self.thaw()?;
        }
        res
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        match self.saved.layout {
            Layout::V2 => crate::v2::stats(self.unified_dir().ok_or(CgroupError::NotMounted)?),
            Layout::V1 | Layout::Hybrid => crate::v1::stats(&|c| self.v1_dir(c)),
        }
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        let mut first_err = None;
        for h in &self.saved.hierarchies {
            let Some((leaf, ancestors)) = h.created.split_last() else {
                continue;
            };
            if leaf != &h.dir {
                // create was interrupted before reaching the leaf: just the ancestors below.
                for d in h.created.iter().rev() {
                    let _ = fs::remove_dir(d);
                }
                continue;
            }
            if let Err(e) = remove_tree(leaf, deadline) {
                first_err.get_or_insert(e);
                continue;
            }
            for d in ancestors.iter().rev() {
                // An ancestor we made may now hold another container's cgroup: leave it then.
                if let Err(e) = fs::remove_dir(d) {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::debug!(dir = %d.display(), error = %e, "keeping shared parent cgroup");
                        break;
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn oom_events(&self) -> Result<crate::OomWatcher, CgroupError> {
        if self.saved.layout == Layout::V2 {
            let dir = self.unified_dir().ok_or(CgroupError::NotMounted)?;
            return crate::OomWatcher::v2(dir);
        }
        match self.v1_dir("memory") {
            Some(d) => crate::OomWatcher::v1(d),
            None => Err(CgroupError::ControllerMissing {
                controller: "memory".into(),
            }),
        }
    }

    fn saved(&self) -> CgroupSaved {
        self.saved.clone()
    }

    fn container_mounts(&self) -> Vec<HierarchyMount> {
        self.saved
            .hierarchies
            .iter()
            .map(|h| {
                let destination = if h.fs_type == FsType::V2 && self.saved.layout == Layout::V2 {
                    String::new()
                } else {
                    h.mount_point
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                let symlinks = if h.fs_type == FsType::V1 && h.controllers.len() > 1 {
                    h.controllers
                        .iter()
                        .filter(|c| !c.starts_with("name=") && **c != destination)
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                };
                let options = match h.fs_type {
                    FsType::V1 => h.controllers.join(","),
                    FsType::V2 => String::new(),
                };
                HierarchyMount {
                    destination,
                    fs_type: h.fs_type,
                    options,
                    controllers: h.controllers.clone(),
                    symlinks,
                    host_dir: h.dir.clone(),
                    path: h.path.clone(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hierarchy::parse_proc_cgroup;

    fn hybrid_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for sub in ["cpu,cpuacct", "memory", "systemd", "unified"] {
            fs::create_dir(d.path().join(sub)).unwrap();
        }
        fs::write(d.path().join("unified/cgroup.controllers"), "").unwrap();
        d
    }

    #[test]
    fn path_rules_per_hierarchy() {
        let root = hybrid_root();
        let h = Hierarchies::from_root(root.path()).unwrap();
        let own = parse_proc_cgroup("3:cpu,cpuacct:/\n2:memory:/api/x\n1:name=systemd:/s\n0::/u\n")
            .unwrap();
        let m = FsManager::new(&h, &own, Some("rel/c"), "id").unwrap();
        let dirs: Vec<_> = m
            .saved
            .hierarchies
            .iter()
            .map(|h| h.path.display().to_string())
            .collect();
        assert_eq!(dirs, ["/rel/c", "/api/x/rel/c", "/s/rel/c", "/u/rel/c"]);
        let m = FsManager::new(&h, &own, None, "id").unwrap();
        assert_eq!(
            m.v1_dir("memory").unwrap(),
            root.path().join("memory/api/x/id")
        );
        let m = FsManager::new(&h, &own, Some("/abs"), "id").unwrap();
        assert_eq!(
            m.v1_dir("cpuacct").unwrap(),
            root.path().join("cpu,cpuacct/abs")
        );
        assert_eq!(m.unified_dir().unwrap(), root.path().join("unified/abs"));
        assert_eq!(m.layout(), Layout::Hybrid);
    }

    #[test]
    fn create_records_and_destroy_removes_only_ours() {
        let root = hybrid_root();
        fs::create_dir(root.path().join("memory/shared")).unwrap();
        let h = Hierarchies::from_root(root.path()).unwrap();
        let mut m = FsManager::new(&h, &[], Some("/shared/c1"), "c1").unwrap();
        m.create().unwrap();
        let saved = m.saved();
        let mem = saved
            .hierarchies
            .iter()
            .find(|h| h.controllers == ["memory"])
            .unwrap();
        assert_eq!(mem.created, vec![root.path().join("memory/shared/c1")]);
        let cpu = &saved.hierarchies[0];
        assert_eq!(
            cpu.created,
            vec![
                root.path().join("cpu,cpuacct/shared"),
                root.path().join("cpu,cpuacct/shared/c1")
            ]
        );
        // Re-opened from JSON, destroy removes exactly what create made.
        let json = serde_json::to_string(&saved).unwrap();
        let back = FsManager::from_saved(serde_json::from_str(&json).unwrap()).unwrap();
        back.destroy().unwrap();
        assert!(root.path().join("memory/shared").is_dir());
        assert!(!root.path().join("memory/shared/c1").exists());
        assert!(!root.path().join("cpu,cpuacct/shared").exists());
        assert!(!root.path().join("unified/shared").exists());
        // Destroying again is a no-op.
        back.destroy().unwrap();
    }

    #[test]
    fn damaged_saved_state_is_refused() {
        let root = hybrid_root();
        let h = Hierarchies::from_root(root.path()).unwrap();
        let m = FsManager::new(&h, &[], Some("/a/b"), "c1").unwrap();
        let good = m.saved();
        assert!(FsManager::from_saved(good.clone()).is_ok());
        let mut s = good.clone();
        s.hierarchies[0].created = vec!["/etc".into()];
        assert!(FsManager::from_saved(s).is_err());
        let mut s = good.clone();
        s.hierarchies[0].created = vec![s.hierarchies[0].dir.join("../../..")];
        assert!(FsManager::from_saved(s).is_err());
        let mut s = good.clone();
        s.hierarchies[0].dir = "/tmp/x".into();
        assert!(FsManager::from_saved(s).is_err());
        let mut s = good;
        s.hierarchies[0].created = vec![s.hierarchies[0].mount_point.clone()];
        assert!(FsManager::from_saved(s).is_err());
    }

    #[test]
    fn destroy_keeps_preexisting_leaf() {
        let root = hybrid_root();
        fs::create_dir_all(root.path().join("memory/c1")).unwrap();
        let h = Hierarchies::from_root(root.path()).unwrap();
        let mut m = FsManager::new(&h, &[], Some("/c1"), "c1").unwrap();
        m.create().unwrap();
        m.destroy().unwrap();
        assert!(root.path().join("memory/c1").is_dir());
        assert!(!root.path().join("systemd/c1").exists());
    }

    #[test]
    fn container_mounts_hybrid() {
        let root = hybrid_root();
        let h = Hierarchies::from_root(root.path()).unwrap();
        let m = FsManager::new(&h, &[], Some("/c1"), "c1").unwrap();
        let mounts = m.container_mounts();
        let cpu = &mounts[0];
        assert_eq!(cpu.destination, "cpu,cpuacct");
        assert_eq!(cpu.fs_type, FsType::V1);
        assert_eq!(cpu.options, "cpu,cpuacct");
        assert_eq!(cpu.symlinks, vec!["cpu", "cpuacct"]);
        assert_eq!(cpu.host_dir, root.path().join("cpu,cpuacct/c1"));
        let sd = mounts.iter().find(|m| m.destination == "systemd").unwrap();
        assert_eq!(sd.options, "name=systemd");
        assert!(sd.symlinks.is_empty());
        let u = mounts.iter().find(|m| m.fs_type == FsType::V2).unwrap();
        assert_eq!(u.destination, "unified");
        assert_eq!(u.path, Path::new("/c1"));
    }

    #[test]
    fn container_mounts_v2_and_subtree_control() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "cpu\n").unwrap();
        let h = Hierarchies::from_root(root.path()).unwrap();
        let mut m = FsManager::new(&h, &[], Some("/c1"), "c1").unwrap();
        crate::fsutil::WRITES.with(|w| w.borrow_mut().clear());
        m.create().unwrap();
        let writes = crate::testutil::take_writes(root.path());
        assert_eq!(
            writes,
            crate::testutil::pairs(&[("cgroup.subtree_control", "+memory")])
        );
        let mounts = m.container_mounts();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].destination, "");
        assert_eq!(mounts[0].fs_type, FsType::V2);
        m.destroy().unwrap();
        assert!(!root.path().join("c1").exists());
    }

    #[test]
    fn stats_json_shape() {
        let mut s = Stats::default();
        s.cpu.usage.total = 5;
        s.cpu.usage.percpu = vec![2, 3];
        s.cpu.throttling.throttled_periods = 1;
        s.memory.usage.limit = 10;
        s.memory.raw.insert("cache".into(), 1);
        s.pids.current = 2;
        s.blkio.io_service_bytes_recursive.push(crate::BlkioEntry {
            major: 8,
            minor: 0,
            op: "Read".into(),
            value: 1,
        });
        s.hugetlb.insert(
            "2MB".into(),
            crate::Hugetlb {
                usage: 1,
                max: 0,
                failcnt: 0,
            },
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["cpu"]["usage"]["total"], 5);
        assert_eq!(v["cpu"]["usage"]["percpu"][1], 3);
        assert_eq!(v["cpu"]["usage"]["kernel"], 0);
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 1);
        assert!(v["cpu"]["throttling"].get("periods").is_none());
        assert_eq!(v["memory"]["usage"]["limit"], 10);
        assert_eq!(v["memory"]["usage"]["failcnt"], 0);
        assert_eq!(v["memory"]["raw"]["cache"], 1);
        assert!(v["memory"].get("kernelTCP").is_some());
        assert_eq!(v["pids"]["current"], 2);
        assert_eq!(v["blkio"]["ioServiceBytesRecursive"][0]["op"], "Read");
        assert_eq!(v["hugetlb"]["2MB"]["usage"], 1);
    }
}
