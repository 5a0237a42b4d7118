//! On a cgroup v2 layout, the memory properties that v2 has no file for are errors naming the
//! field (runtime.md#create), not warnings: `swappiness`, `disableOOMKiller: true` and a
//! `kernelTCP` limit. Driven for real on the host's cgroup2 mount (/sys/fs/cgroup/unified on
//! this hybrid host) as a pure-v2 layout (root only).

mod common;

use berth_cgroups::{CgroupError, CgroupManager, FsManager, Hierarchies, Layout};
use common::*;
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};

#[test]
fn memory_properties_v2_cannot_apply_are_refused() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test writes the host's cgroupfs and needs root"
    );
    let host = Hierarchies::detect().unwrap();
    let unified = host
        .unified()
        .cloned()
        .expect("a cgroup2 mount (the unified hierarchy) on this host");
    let h = Hierarchies::new(Vec::new(), Some(unified)).unwrap();
    assert_eq!(h.layout(), Layout::V2);
    let mut m = FsManager::new(&h, &[], Some(&unique_path()), "x").unwrap();
    m.create().unwrap();
    let cg = TestCgroup::new(Box::new(m));
    for (mem, field) in [
        (
            LinuxMemoryBuilder::default().swappiness(30u64),
            "memory.swappiness",
        ),
        (
            LinuxMemoryBuilder::default().disable_oom_killer(true),
            "memory.disableOOMKiller",
        ),
        (
            LinuxMemoryBuilder::default().kernel_tcp(1 << 20),
            "memory.kernelTCP",
        ),
    ] {
        let res = LinuxResourcesBuilder::default()
            .memory(mem.build().unwrap())
            .build()
            .unwrap();
        let err = cg.apply(&res).unwrap_err();
        assert!(
            matches!(&err, CgroupError::InvalidResource { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
    // What v2 does anyway is accepted: the OOM killer on, no TCP limit.
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .disable_oom_killer(false)
                .kernel_tcp(-1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
}
