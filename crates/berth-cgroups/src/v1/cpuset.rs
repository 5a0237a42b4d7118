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

/// Applies `cpus` and `mems`.
pub(crate) fn apply(dir: &Path, cpus: Option<&str>, mems: Option<&str>) -> Result<(), CgroupError> {
    if let Some(c) = cpus.filter(|c| !c.is_empty()) {
        fsutil::write(dir, "cpuset.cpus", c)?;
    }
    if let Some(m) = mems.filter(|m| !m.is_empty()) {
        fsutil::write(dir, "cpuset.mems", m)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, read, take_writes};

    #[test]
    fn cpus_and_mems() {
        let d = fake_dir(&[("cpuset.cpus", ""), ("cpuset.mems", "")]);
        apply(d.path(), Some("0-1"), Some("0")).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[("cpuset.cpus", "0-1"), ("cpuset.mems", "0")])
        );
        apply(d.path(), Some(""), None).unwrap();
        assert!(take_writes(d.path()).is_empty());
    }

    #[test]
    fn inherits_empty_values() {
        let d = fake_dir(&[
            ("cpuset.cpus", "0-3\n"),
            ("cpuset.mems", "0\n"),
            ("c/cpuset.cpus", "\n"),
            ("c/cpuset.mems", "1\n"),
        ]);
        inherit_from_parent(d.path(), &d.path().join("c")).unwrap();
        assert_eq!(take_writes(d.path()), pairs(&[("c/cpuset.cpus", "0-3")]));
        assert_eq!(read(&d.path().join("c"), "cpuset.cpus"), "0-3");
    }
}
