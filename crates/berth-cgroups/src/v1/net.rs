//! v1 net_cls and net_prio controllers.

use std::path::Path;

use oci_spec::runtime::LinuxInterfacePriority;

use crate::error::CgroupError;
use crate::fsutil;

/// Writes `net_cls.classid`.
pub(crate) fn apply_class_id(dir: &Path, class_id: u32) -> Result<(), CgroupError> {
    fsutil::write(dir, "net_cls.classid", class_id.to_string())
}

/// Writes one `net_prio.ifpriomap` line per interface.
pub(crate) fn apply_priorities(
    dir: &Path,
    prios: &[LinuxInterfacePriority],
) -> Result<(), CgroupError> {
    for p in prios {
        if p.name().is_empty() || p.name().contains(char::is_whitespace) {
            return Err(CgroupError::invalid(
                "network.priorities.name",
                format!("{:?}", p.name()),
            ));
        }
        fsutil::write(
            dir,
            "net_prio.ifpriomap",
            format!("{} {}", p.name(), p.priority()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};
    use oci_spec::runtime::LinuxInterfacePriorityBuilder;

    #[test]
    fn classid_and_priorities() {
        let d = fake_dir(&[("net_cls.classid", ""), ("net_prio.ifpriomap", "")]);
        apply_class_id(d.path(), 0x100001).unwrap();
        let p = |n: &str, v: u32| {
            LinuxInterfacePriorityBuilder::default()
                .name(n)
                .priority(v)
                .build()
                .unwrap()
        };
        apply_priorities(d.path(), &[p("eth0", 5), p("lo", 1)]).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("net_cls.classid", "1048577"),
                ("net_prio.ifpriomap", "eth0 5"),
                ("net_prio.ifpriomap", "lo 1"),
            ])
        );
        assert!(apply_priorities(d.path(), &[p("a b", 1)]).is_err());
    }
}
