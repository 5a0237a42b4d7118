//! cgroup v1: one directory per hierarchy, one module per controller.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::stats::Stats;

pub(crate) mod blkio;
pub(crate) mod cpu;
pub(crate) mod cpuset;
pub(crate) mod devices;
pub(crate) mod hugetlb;
pub(crate) mod memory;
pub(crate) mod net;
pub(crate) mod pids;
pub(crate) mod rdma;

/// Maps a v1 controller name to the container's directory in its hierarchy.
pub(crate) type Dirs<'a> = dyn Fn(&str) -> Option<&'a Path> + 'a;

fn need<'a>(dirs: &Dirs<'a>, controller: &str) -> Result<&'a Path, CgroupError> {
    dirs(controller).ok_or_else(|| CgroupError::ControllerMissing {
        controller: controller.to_string(),
    })
}

/// Writes the spec's resources to the v1 hierarchies, in runc's controller order. Every
/// controller the resources need is checked before anything is written.
pub(crate) fn apply(dirs: &Dirs<'_>, res: &LinuxResources) -> Result<(), CgroupError> {
    let cpu = res.cpu().as_ref();
    let w = crate::Wants::of(res);
    let (wants_cpuset, wants_cpu) = (w.cpuset, w.cpu || w.cpu_realtime);
    let net = res.network().as_ref();
    let wants: [(bool, &str); 10] = [
        (w.cpuset, "cpuset"),
        (w.devices, "devices"),
        (w.memory, "memory"),
        (wants_cpu, "cpu"),
        (w.pids, "pids"),
        (w.block_io, "blkio"),
        (w.hugetlb, "hugetlb"),
        (w.net_cls, "net_cls"),
        (w.net_prio, "net_prio"),
        (w.rdma, "rdma"),
    ];
    for (wanted, controller) in wants {
        if wanted {
            need(dirs, controller)?;
        }
    }
    if let Some(c) = cpu.filter(|_| wants_cpuset) {
        cpuset::apply(
            need(dirs, "cpuset")?,
            c.cpus().as_deref(),
            c.mems().as_deref(),
        )?;
    }
    if let Some(d) = res.devices().as_ref().filter(|d| !d.is_empty()) {
        devices::apply(need(dirs, "devices")?, d)?;
    }
    if let Some(m) = res.memory() {
        memory::apply(need(dirs, "memory")?, m)?;
    }
    if let Some(c) = cpu.filter(|_| wants_cpu) {
        cpu::apply(need(dirs, "cpu")?, c)?;
    }
    if let Some(p) = res.pids() {
        pids::apply(need(dirs, "pids")?, p.limit())?;
    }
    if let Some(b) = res.block_io() {
        blkio::apply(need(dirs, "blkio")?, b)?;
    }
    if let Some(h) = res.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
        hugetlb::apply(need(dirs, "hugetlb")?, h)?;
    }
    if let Some(n) = net {
        if let Some(id) = n.class_id() {
            net::apply_class_id(need(dirs, "net_cls")?, id)?;
        }
        if let Some(p) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
            net::apply_priorities(need(dirs, "net_prio")?, p)?;
        }
    }
    if let Some(r) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
        rdma::apply(need(dirs, "rdma")?, r)?;
    }
    Ok(())
}

/// Reads the statistics of every mounted controller; absent controllers give zeroes.
pub(crate) fn stats(dirs: &Dirs<'_>) -> Result<Stats, CgroupError> {
    let existing = |c: &str| dirs(c).filter(|d| d.is_dir());
    Ok(Stats {
        cpu: cpu::stats(existing("cpuacct"), existing("cpu"))?,
        memory: existing("memory")
            .map(memory::stats)
            .transpose()?
            .unwrap_or_default(),
        pids: existing("pids")
            .map(pids::stats)
            .transpose()?
            .unwrap_or_default(),
        blkio: existing("blkio")
            .map(blkio::stats)
            .transpose()?
            .unwrap_or_default(),
        hugetlb: existing("hugetlb")
            .map(hugetlb::stats)
            .transpose()?
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, take_writes};
    use oci_spec::runtime::{
        LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    #[test]
    fn missing_controller_is_named_and_nothing_written() {
        let d = fake_dir(&[
            ("memory/memory.limit_in_bytes", "0\n"),
            ("pids/pids.max", ""),
        ]);
        let root = d.path().to_path_buf();
        let dirs = move |c: &str| -> Option<&Path> {
            match c {
                "memory" => Some(Box::leak(root.join("memory").into_boxed_path())),
                "pids" => Some(Box::leak(root.join("pids").into_boxed_path())),
                _ => None,
            }
        };
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(1)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        match apply(&dirs, &res) {
            Err(CgroupError::ControllerMissing { controller }) => assert_eq!(controller, "hugetlb"),
            other => panic!("{other:?}"),
        }
        assert!(take_writes(d.path()).is_empty());
        // Without hugepage limits the same host works.
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .build()
            .unwrap();
        apply(&dirs, &res).unwrap();
        assert_eq!(take_writes(d.path()).len(), 2);
    }
}
