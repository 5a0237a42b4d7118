//! cgroup v2: one directory in the unified hierarchy, one module per controller.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::Stats;
use crate::v1::{pids, rdma};

pub(crate) mod cpu;
pub(crate) mod devices;
pub(crate) mod hugetlb;
pub(crate) mod io;
pub(crate) mod memory;
pub(crate) mod unified;

/// The controllers enabled for the cgroup `dir` (its `cgroup.controllers`).
fn controllers(dir: &Path) -> Result<Vec<String>, CgroupError> {
    Ok(fsutil::read(dir, "cgroup.controllers")?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Writes the spec's resources to the unified cgroup `dir`. Every controller the resources
/// need must be enabled for the cgroup; this is checked before anything is written.
pub(crate) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), CgroupError> {
    let have = controllers(dir)?;
    let cpu = res.cpu().as_ref();
    let w = crate::Wants::of(res);
    let wants: [(bool, &str); 7] = [
        (w.cpuset, "cpuset"),
        (w.cpu, "cpu"),
        (w.memory_limits, "memory"),
        (w.pids, "pids"),
        (w.block_io, "io"),
        (w.hugetlb, "hugetlb"),
        (w.rdma, "rdma"),
    ];
    for (wanted, c) in wants {
        if wanted && !have.iter().any(|h| h == c) {
            return Err(CgroupError::ControllerMissing {
                controller: c.to_string(),
            });
        }
    }
    if let Some(m) = res.memory() {
        memory::apply(dir, m)?;
    }
    if let Some(c) = cpu {
        cpu::apply(dir, c)?;
    }
    if let Some(p) = res.pids() {
        pids::apply(dir, p.limit())?;
    }
    if let Some(b) = res.block_io() {
        io::apply(dir, b)?;
    }
    if let Some(h) = res.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
        hugetlb::apply(dir, h)?;
    }
    if let Some(r) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
        rdma::apply(dir, r)?;
    }
    if let Some(n) = res.network() {
        if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            tracing::warn!("network classID/priorities have no cgroup v2 equivalent, ignored");
        }
    }
    if let Some(d) = res.devices().as_ref().filter(|d| !d.is_empty()) {
        devices::apply(dir, d)?;
    }
    if let Some(u) = res.unified().as_ref().filter(|u| !u.is_empty()) {
        unified::apply(dir, u)?;
    }
    Ok(())
}

/// Reads the statistics of the unified cgroup `dir`; controllers not enabled give zeroes.
pub(crate) fn stats(dir: &Path) -> Result<Stats, CgroupError> {
    let have = controllers(dir)?;
    let on = |c: &str| have.iter().any(|h| h == c);
    Ok(Stats {
        cpu: cpu::stats(dir)?,
        memory: if on("memory") {
            memory::stats(dir)?
        } else {
            Default::default()
        },
        pids: if on("pids") {
            pids::stats(dir)?
        } else {
            Default::default()
        },
        blkio: if on("io") {
            io::stats(dir)?
        } else {
            Default::default()
        },
        hugetlb: if on("hugetlb") {
            hugetlb::stats(dir)?
        } else {
            Default::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, take_writes};
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    #[test]
    fn controllers_must_be_enabled() {
        let d = fake_dir(&[
            ("cgroup.controllers", "cpu pids\n"),
            ("pids.max", ""),
            ("memory.max", ""),
        ]);
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(3).build().unwrap())
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        match apply(d.path(), &res) {
            Err(CgroupError::ControllerMissing { controller }) => assert_eq!(controller, "memory"),
            other => panic!("{other:?}"),
        }
        assert!(take_writes(d.path()).is_empty());
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(3).build().unwrap())
            .build()
            .unwrap();
        apply(d.path(), &res).unwrap();
        assert_eq!(take_writes(d.path()).len(), 1);
    }
}
