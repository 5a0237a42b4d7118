//! cgroup v2 operations for real on the host's cgroup2 mount (/sys/fs/cgroup/unified on
//! this hybrid host), driven as a pure-v2 layout: create, move a process, freeze through
//! cgroup.freeze, cgroup.kill, procs, the BPF device filter and removal (root only).

mod common;

use std::time::Duration;

use berth_cgroups::{
    attach_device_filter, CgroupError, CgroupManager, DeviceFilter, FsManager, Hierarchies, Layout,
};
use common::*;
use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder,
};

/// A manager over the unified hierarchy alone, or None when there is none (or no root).
fn v2_manager() -> Option<TestCgroup> {
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
    Some(TestCgroup::new(Box::new(m)))
}

fn unified_dir(cg: &TestCgroup) -> std::path::PathBuf {
    cg.saved().hierarchies[0].dir.clone()
}

#[test]
fn create_move_freeze_kill_remove() {
    let Some(cg) = v2_manager() else { return };
    let dir = unified_dir(&cg);
    assert!(dir.join("cgroup.freeze").exists());
    let mut child = Gated::spawn("while :; do :; done");
    cg.add_task(child.pid()).unwrap();
    child.release();
    assert_eq!(cg.procs().unwrap(), vec![child.pid()]);
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.pid())).unwrap();
    let rel = cg.saved().hierarchies[0].path.display().to_string();
    assert!(own.lines().any(|l| l == format!("0::{rel}")), "{own}");

    std::thread::sleep(Duration::from_millis(200));
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("cgroup.freeze"))
            .unwrap()
            .trim(),
        "1"
    );
    let a = cpu_ticks(child.pid());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a, cpu_ticks(child.pid()), "a frozen child advanced");
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    assert!(cpu_ticks(child.pid()) > a, "a thawed child did not advance");
    let st = cg.stats().unwrap();
    assert!(st.cpu.usage.total > 0, "{:?}", st.cpu);

    // SIGKILL goes through cgroup.kill.
    cg.kill_all(libc::SIGKILL).unwrap();
    let (status, _, _) = child.finish(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    cg.finish();
}

#[test]
fn kill_all_other_signal_freezes_and_signals() {
    let Some(cg) = v2_manager() else { return };
    let mut child = Gated::spawn("trap 'exit 9' USR1; while :; do sleep 0.05; done");
    cg.add_task(child.pid()).unwrap();
    child.release();
    std::thread::sleep(Duration::from_millis(200));
    cg.kill_all(libc::SIGUSR1).unwrap();
    assert!(!cg.is_frozen().unwrap());
    let (status, _, _) = child.finish(Duration::from_secs(5));
    assert_eq!(status.code(), Some(9));
    cg.finish();
}

#[test]
fn oom_events_need_the_memory_controller() {
    let Some(cg) = v2_manager() else { return };
    let has_memory = std::fs::read_to_string(unified_dir(&cg).join("cgroup.controllers"))
        .unwrap()
        .split_whitespace()
        .any(|c| c == "memory");
    if !has_memory {
        assert!(matches!(
            cg.oom_events(),
            Err(CgroupError::ControllerMissing { .. })
        ));
    }
    cg.finish();
}

fn rule(
    allow: bool,
    t: LinuxDeviceType,
    maj: Option<i64>,
    min: Option<i64>,
    acc: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(t)
        .access(acc);
    if let Some(m) = maj {
        b = b.major(m);
    }
    if let Some(m) = min {
        b = b.minor(m);
    }
    b.build().unwrap()
}

/// Runs a child in the cgroup that tries /dev/null and /dev/zero; returns its stdout.
fn probe(cg: &TestCgroup) -> String {
    let mut child = Gated::spawn(
        "head -c 1 /dev/null && echo NULL_OK; head -c 1 /dev/zero > /dev/zero && echo ZERO_OK; true",
    );
    cg.add_task(child.pid()).unwrap();
    child.release();
    let (_, out, _) = child.finish(Duration::from_secs(5));
    out
}

#[test]
fn bpf_device_filter_for_real() {
    let Some(cg) = v2_manager() else { return };
    let res = LinuxResourcesBuilder::default()
        .devices(vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(5), "rw"),
        ])
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
    let out = probe(&cg);
    assert!(!out.contains("NULL_OK"), "{out}");
    assert!(out.contains("ZERO_OK"), "{out}");

    // An update replaces the program (the old one is detached, not stacked).
    let res = LinuxResourcesBuilder::default()
        .devices(vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), None, "rw"),
            rule(false, LinuxDeviceType::C, Some(1), Some(5), "w"),
        ])
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
    let out = probe(&cg);
    assert!(out.contains("NULL_OK"), "{out}");
    assert!(!out.contains("ZERO_OK"), "{out}");
    cg.finish();
}

#[test]
fn attach_device_filter_directly() {
    let Some(cg) = v2_manager() else { return };
    let f = DeviceFilter::from_rules(&[rule(true, LinuxDeviceType::A, None, None, "rwm")]).unwrap();
    attach_device_filter(&unified_dir(&cg), &f).unwrap();
    let out = probe(&cg);
    assert!(out.contains("NULL_OK") && out.contains("ZERO_OK"), "{out}");
    cg.finish();
}
