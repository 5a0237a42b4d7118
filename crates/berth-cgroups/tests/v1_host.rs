//! Resources, freezer, kill, OOM events and devices on the host's real v1 hierarchies
//! (root only). Every test makes its own /berth-test-<pid>-<n> cgroup and removes it.

mod common;

use std::fs;
use std::time::Duration;

use berth_cgroups::{new_manager, CgroupError, OomEvent};
use common::*;
use oci_spec::runtime::{
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

fn manager() -> TestCgroup {
    let mut cg = new_manager(Some(&unique_path()), "x").unwrap();
    cg.create().unwrap();
    TestCgroup::new(cg)
}

fn cleanup(cg: TestCgroup) {
    cg.finish();
}

macro_rules! need_root {
    () => {
        require_root_cgroups();
    };
}

#[test]
fn memory_limit_written_and_read_back() {
    need_root!();
    let cg = manager();
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .swap(96 << 20)
                .reservation(32 << 20)
                .swappiness(0u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
    let dir = dir_of(&cg.saved(), "memory");
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap().trim().to_string();
    assert_eq!(read("memory.limit_in_bytes"), (64u64 << 20).to_string());
    assert_eq!(
        read("memory.memsw.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
    assert_eq!(
        read("memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(read("memory.swappiness"), "0");
    // Raising both goes through in the order the kernel accepts.
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(256 << 20)
                .swap(512 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
    assert_eq!(read("memory.limit_in_bytes"), (256u64 << 20).to_string());
    assert_eq!(
        read("memory.memsw.limit_in_bytes"),
        (512u64 << 20).to_string()
    );
    let st = cg.stats().unwrap();
    assert_eq!(st.memory.usage.limit, 256 << 20);
    cleanup(cg);
}

#[test]
fn missing_hugetlb_is_a_clear_error() {
    need_root!();
    if std::path::Path::new("/sys/fs/cgroup/hugetlb").exists() {
        return;
    }
    let cg = manager();
    let res = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(0)
            .build()
            .unwrap()])
        .build()
        .unwrap();
    match cg.apply(&res) {
        Err(CgroupError::ControllerMissing { controller }) => assert_eq!(controller, "hugetlb"),
        other => panic!("{other:?}"),
    }
    cg.apply(&LinuxResources::default()).unwrap();
    cleanup(cg);
}

#[test]
fn pids_max_enforced() {
    need_root!();
    let cg = manager();
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(4).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
    let mut child = Gated::spawn(
        "n=0; for i in 1 2 3 4 5 6 7 8; do sleep 30 & n=$((n+1)); done; sleep 0.2; \
         echo started; wait",
    );
    cg.add_task(child.pid()).unwrap();
    child.release();
    std::thread::sleep(Duration::from_millis(500));
    // sh itself plus at most 3 sleeps: the other forks failed.
    let st = cg.stats().unwrap();
    assert_eq!(st.pids.limit, 4);
    assert!(st.pids.current <= 4, "{st:?}");
    let n = cg.procs().unwrap().len();
    assert!((2..=4).contains(&n), "{n} processes");
    let events = fs::read_to_string(dir_of(&cg.saved(), "pids").join("pids.events")).unwrap();
    let max: u64 = events.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(max >= 1, "no fork was refused: {events}");
    cg.kill_all(libc::SIGKILL).unwrap();
    let (_, _, err) = child.finish(Duration::from_secs(5));
    assert!(err.to_lowercase().contains("fork"), "stderr: {err}");
    cleanup(cg);
}

#[test]
fn freeze_stops_and_thaw_resumes() {
    need_root!();
    let cg = manager();
    let mut child = Gated::spawn("while :; do :; done");
    cg.add_task(child.pid()).unwrap();
    child.release();
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.pid();
    assert!(!cg.is_frozen().unwrap());
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    let a = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(500));
    let b = cpu_ticks(pid);
    assert_eq!(a, b, "a frozen child advanced");
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    assert!(cpu_ticks(pid) > b, "a thawed child did not advance");
    let st = cg.stats().unwrap();
    assert!(
        st.cpu.usage.total > 0 && st.cpu.usage.user > 0,
        "{:?}",
        st.cpu
    );
    cleanup(cg);
    drop(child);
}

#[test]
fn kill_all_signals_every_process() {
    need_root!();
    let cg = manager();
    let mut child = Gated::spawn("trap 'exit 7' TERM; sleep 100 & sleep 100 & wait");
    cg.add_task(child.pid()).unwrap();
    child.release();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cg.procs().unwrap().len(), 3);
    cg.kill_all(libc::SIGTERM).unwrap();
    let (status, _, _) = child.finish(Duration::from_secs(5));
    assert_eq!(status.code(), Some(7));
    // the sleeps got SIGTERM too
    for _ in 0..100 {
        if cg.procs().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cg.procs().unwrap().is_empty());
    cleanup(cg);
}

#[test]
fn oom_watcher_fires() {
    need_root!();
    let cg = manager();
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(32 << 20)
                .swap(32 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
    let mut watcher = cg.oom_events().unwrap();
    assert_eq!(
        watcher.wait_timeout(Duration::from_millis(50)).unwrap(),
        None
    );
    let waiter = std::thread::spawn(move || watcher.wait_timeout(Duration::from_secs(20)));
    let mut child = Gated::spawn("dd if=/dev/zero of=/dev/null bs=100M count=1");
    cg.add_task(child.pid()).unwrap();
    child.release();
    assert_eq!(waiter.join().unwrap().unwrap(), Some(OomEvent::Oom));
    let (status, _, _) = child.finish(Duration::from_secs(10));
    assert!(!status.success());
    let oc = fs::read_to_string(dir_of(&cg.saved(), "memory").join("memory.oom_control")).unwrap();
    assert!(oc.contains("oom_kill 1"), "{oc}");
    let st = cg.stats().unwrap();
    assert_eq!(st.memory.usage.max, 32 << 20, "{:?}", st.memory);
    cleanup(cg);
}

#[test]
fn oom_watcher_sees_removal() {
    need_root!();
    let cg = manager();
    let mut watcher = cg.oom_events().unwrap();
    cleanup(cg);
    assert_eq!(
        watcher.wait_timeout(Duration::from_secs(5)).unwrap(),
        Some(OomEvent::CgroupRemoved)
    );
}

#[test]
fn device_deny_blocks_dev_null() {
    need_root!();
    let cg = manager();
    let rule = |allow: bool, t: LinuxDeviceType, maj: Option<i64>, min: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .access("rwm");
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().unwrap()
    };
    let res = LinuxResourcesBuilder::default()
        .devices(vec![
            rule(true, LinuxDeviceType::A, None, None),
            rule(false, LinuxDeviceType::C, Some(1), Some(3)),
        ])
        .build()
        .unwrap();
    cg.apply(&res).unwrap();
    let list = fs::read_to_string(dir_of(&cg.saved(), "devices").join("devices.list")).unwrap();
    assert!(!list.contains("c 1:3"), "{list}");
    let mut child = Gated::spawn(
        "head -c 1 /dev/null && echo NULL_OK; head -c 1 /dev/zero > /dev/zero && echo ZERO_OK; true",
    );
    cg.add_task(child.pid()).unwrap();
    child.release();
    let (_, out, err) = child.finish(Duration::from_secs(5));
    assert!(!out.contains("NULL_OK"), "out: {out} err: {err}");
    assert!(out.contains("ZERO_OK"), "out: {out} err: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    cleanup(cg);
}

/// A cpuset cgroup on the path that exists without cpus or mems (made by someone else, as
/// v1 makes them empty) takes no process: it gets its parent's values, as runc fills it
/// (`cpusetEnsureParent`), and the container's cgroup below it takes a process. It stays (not
/// made by the manager).
#[test]
fn an_existing_empty_cpuset_on_the_path_is_filled_from_its_parent_as_runc_does() {
    need_root!();
    struct Own(std::path::PathBuf);
    impl Drop for Own {
        fn drop(&mut self) {
            let _ = fs::remove_dir(&self.0);
        }
    }
    let outer = unique_path();
    let root = std::path::Path::new("/sys/fs/cgroup/cpuset");
    let own = Own(root.join(outer.trim_start_matches('/')));
    fs::create_dir(&own.0).unwrap();
    let read = |d: &std::path::Path, f: &str| fs::read_to_string(d.join(f)).unwrap();
    assert_eq!(read(&own.0, "cpuset.cpus").trim(), "", "v1 makes it empty");
    let mut m = new_manager(Some(&format!("{outer}/c")), "x").unwrap();
    m.create().unwrap();
    let cg = TestCgroup::new(m);
    for f in ["cpuset.cpus", "cpuset.mems"] {
        assert_eq!(read(&own.0, f), read(root, f), "{f} of the existing cgroup");
        assert_eq!(
            read(&own.0.join("c"), f),
            read(root, f),
            "{f} of the new one"
        );
    }
    let mut child = Gated::spawn("exit 0");
    cg.add_task(child.pid()).unwrap();
    child.release();
    child.finish(Duration::from_secs(5));
    cleanup(cg);
    assert!(own.0.is_dir(), "the existing cgroup stays");
}
