//! cgroup v2: one directory in the unified hierarchy.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::stats::Stats;

pub(crate) mod unified;

/// Writes the spec's resources to the unified cgroup `dir`.
pub(crate) fn apply(_dir: &Path, _res: &LinuxResources) -> Result<(), CgroupError> {
    Err(CgroupError::Unsupported {
        operation: "apply",
        reason: "not implemented yet".into(),
    })
}

/// Reads the statistics of the unified cgroup `dir`.
pub(crate) fn stats(_dir: &Path) -> Result<Stats, CgroupError> {
    Err(CgroupError::Unsupported {
        operation: "stats",
        reason: "not implemented yet".into(),
    })
}
