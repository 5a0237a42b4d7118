//! cgroup v1: one directory per hierarchy, one controller per concern.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::stats::Stats;

pub(crate) mod cpuset;

/// Maps a v1 controller name to the container's directory in its hierarchy.
pub(crate) type Dirs<'a> = dyn Fn(&str) -> Option<&'a Path> + 'a;

/// Writes the spec's resources to the v1 hierarchies.
pub(crate) fn apply(_dirs: &Dirs<'_>, _res: &LinuxResources) -> Result<(), CgroupError> {
    Err(CgroupError::Unsupported {
        operation: "apply",
        reason: "not implemented yet".into(),
    })
}

/// Reads the statistics of every mounted controller.
pub(crate) fn stats(_dirs: &Dirs<'_>) -> Result<Stats, CgroupError> {
    Err(CgroupError::Unsupported {
        operation: "stats",
        reason: "not implemented yet".into(),
    })
}
