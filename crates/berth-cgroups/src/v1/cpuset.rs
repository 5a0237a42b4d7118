//! v1 cpuset controller.

use std::path::Path;

use crate::error::CgroupError;
use crate::fsutil;

/// A new v1 cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems` (unless the parent
/// has `cgroup.clone_children`), and no task can join it then: copy the parent's values.
pub(crate) fn inherit_from_parent(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let Some(own) = fsutil::read_opt(dir, file)? else {
            continue;
        };
        if own.trim().is_empty() {
            let p = fsutil::read(parent, file)?;
            fsutil::write(dir, file, p.trim())?;
        }
    }
    Ok(())
}
