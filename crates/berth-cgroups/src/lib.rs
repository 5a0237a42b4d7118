//! Cgroup v1, v2 and hybrid management for OCI containers.
//!
//! One [`CgroupManager`] drives a container's cgroup in every hierarchy of the host:
//! create it, move processes in, apply the spec's `linux.resources`, freeze, kill, read
//! statistics, watch OOM events and remove it again. The manager can be saved
//! ([`CgroupSaved`], serde) and re-opened by a later process.
//!
//! ```no_run
//! use berth_cgroups::{new_manager, open_saved, CgroupManager};
//! use oci_spec::runtime::LinuxResources;
//!
//! let mut cg = new_manager(Some("/berth/c1"), "c1")?;
//! cg.create()?;
//! cg.apply(&LinuxResources::default())?;
//! cg.add_task(std::process::id() as i32)?;
//! let saved = serde_json::to_string(&cg.saved()).unwrap();
//! // ... later, in another process:
//! let cg = open_saved(&serde_json::from_str(&saved).unwrap())?;
//! cg.kill_all(libc::SIGKILL)?;
//! cg.destroy()?;
//! # Ok::<(), berth_cgroups::CgroupError>(())
//! ```

mod error;
mod fsutil;
mod hierarchy;
mod join;
mod manager;
mod oom;
mod path;
mod stats;
mod sys;
#[cfg(test)]
mod testutil;
mod v1;
mod v2;
mod wants;

use oci_spec::runtime::LinuxResources;

pub use error::CgroupError;
pub use hierarchy::{parse_proc_cgroup, FsType, Hierarchies, Hierarchy, Layout, ProcCgroup};
pub use join::{OpenedPath, SelfJoin};
pub use manager::{CgroupSaved, FsManager, HierarchyMount, SavedHierarchy};
pub use oom::{OomEvent, OomWatcher};
pub use stats::{
    Blkio, BlkioEntry, Cpu, CpuUsage, Hugetlb, Memory, MemoryEntry, Pids, Stats, Throttling,
};
pub use v2::cpu::shares_to_weight;
pub use v2::devices::{attach_device_filter, DeviceFilter, Insn, ACC_MKNOD, ACC_READ, ACC_WRITE};
pub use v2::io::blkio_weight_to_io_weight;
pub use wants::Wants;

/// Operations on one container's cgroup, whatever the host layout.
///
/// Obtain one with [`new_manager`] or [`open_saved`].
///
/// ```no_run
/// use berth_cgroups::CgroupManager;
/// fn stop(cg: &dyn CgroupManager) -> Result<(), berth_cgroups::CgroupError> {
///     cg.kill_all(libc::SIGKILL)?;
///     cg.destroy()
/// }
/// ```
pub trait CgroupManager: Send + Sync + std::fmt::Debug {
    /// Creates the cgroup in every hierarchy (each v1 hierarchy including `name=systemd`,
    /// and the unified one), recording which directories were made so that [`destroy`]
    /// removes only those.
    ///
    /// [`destroy`]: CgroupManager::destroy
    fn create(&mut self) -> Result<(), CgroupError>;
    /// Moves process `pid` into the cgroup (`cgroup.procs` of every hierarchy).
    fn add_task(&self, pid: i32) -> Result<(), CgroupError>;
    /// Opens what a process needs to enter the cgroup by itself, sparing the kernel's
    /// global lock that [`add_task`](CgroupManager::add_task) takes (see [`SelfJoin`]):
    /// each v1 hierarchy's `tasks` file and the unified hierarchy's directory.
    fn self_join(&self) -> Result<SelfJoin, CgroupError>;
    /// Moves process `pid` into the cgroup of the unified hierarchy only (`cgroup.procs`),
    /// where a `clone3(CLONE_INTO_CGROUP)` with [`SelfJoin::unified`] could not be used;
    /// nothing on a v1-only host.
    fn add_task_unified(&self, pid: i32) -> Result<(), CgroupError>;
    /// Writes the spec's resources. A controller the resources need but the host lacks is
    /// [`CgroupError::ControllerMissing`].
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// The processes in the cgroup (union over the hierarchies), sorted.
    fn procs(&self) -> Result<Vec<i32>, CgroupError>;
    /// Freezes the cgroup and returns once it is frozen.
    fn freeze(&self) -> Result<(), CgroupError>;
    /// Thaws the cgroup and returns once it is thawed.
    fn thaw(&self) -> Result<(), CgroupError>;
    /// True when the cgroup is frozen.
    fn is_frozen(&self) -> Result<bool, CgroupError>;
    /// Sends `signal` to every process of the cgroup (`cgroup.kill` on v2 for SIGKILL;
    /// otherwise freeze, signal each pid, thaw).
    fn kill_all(&self, signal: i32) -> Result<(), CgroupError>;
    /// Reads the statistics of every controller.
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// Removes the directories [`create`](CgroupManager::create) made (and cgroups the
    /// container made below its own), retrying with a bound while processes exit.
    fn destroy(&self) -> Result<(), CgroupError>;
    /// Starts watching for OOM events (v2 `memory.events` when the unified hierarchy owns
    /// the memory controller, else the v1 memory cgroup's eventfd).
    fn oom_events(&self) -> Result<OomWatcher, CgroupError>;
    /// What to store to re-open this cgroup with [`open_saved`].
    fn saved(&self) -> CgroupSaved;
    /// How to present the cgroup hierarchies inside the container.
    fn container_mounts(&self) -> Vec<HierarchyMount>;
}

/// A manager for the container's cgroup following runc's `cgroupsPath` rules: an absolute
/// path is relative to each hierarchy root; a relative path is relative to the calling
/// process's own cgroup (from `/proc/self/cgroup`); `None` means `<own cgroup>/<id>`.
///
/// Nothing is created until [`CgroupManager::create`].
pub fn new_manager(
    cgroups_path: Option<&str>,
    container_id: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let hierarchies = Hierarchies::detect()?;
    let p = std::path::Path::new("/proc/self/cgroup");
    let text = std::fs::read_to_string(p).map_err(|e| CgroupError::read(p, e))?;
    let own = parse_proc_cgroup(&text)?;
    Ok(Box::new(FsManager::new(
        &hierarchies,
        &own,
        cgroups_path,
        container_id,
    )?))
}

/// Re-opens a cgroup saved with [`CgroupManager::saved`].
///
/// ```
/// let saved = berth_cgroups::CgroupSaved { layout: berth_cgroups::Layout::V1, hierarchies: vec![] };
/// let cg = berth_cgroups::open_saved(&saved).unwrap();
/// assert_eq!(cg.saved(), saved);
/// ```
pub fn open_saved(saved: &CgroupSaved) -> Result<Box<dyn CgroupManager>, CgroupError> {
    Ok(Box::new(FsManager::from_saved(saved.clone())?))
}
