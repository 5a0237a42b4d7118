//! Unit tests of the lifecycle's parts that need no root: refusals before anything is made,
//! the console socket, pid files, how a setup death is explained, the hook state.

use std::os::unix::fs::symlink;
use std::process::Command;

use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::*;

fn spec(json: serde_json::Value) -> Spec {
    serde_json::from_value(json).unwrap()
}

fn bundle_with(dir: &Path, process: serde_json::Value) -> Bundle {
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": process,
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
    }));
    Bundle::from_spec(dir, s).unwrap()
}

#[test]
fn refusals_come_before_anything_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let no_args = bundle_with(
        &tmp.path().join("b1"),
        serde_json::json!({"cwd": "/", "args": [], "user": {"uid": 0, "gid": 0}}),
    );
    let e = ContainerBuilder::new("c1", "/unused")
        .root(&root)
        .create_from(no_args)
        .unwrap_err();
    assert!(e.to_string().contains("process.args"), "{e}");
    let relative_cwd = bundle_with(
        &tmp.path().join("b2"),
        serde_json::json!({"cwd": "tmp", "args": ["true"], "user": {"uid": 0, "gid": 0}}),
    );
    let e = ContainerBuilder::new("c1", "/unused")
        .root(&root)
        .create_from(relative_cwd)
        .unwrap_err();
    assert!(e.to_string().contains("process.cwd"), "{e}");
    let ok = bundle_with(
        &tmp.path().join("b3"),
        serde_json::json!({"cwd": "/", "args": ["true"], "user": {"uid": 0, "gid": 0}}),
    );
    let e = ContainerBuilder::new("../evil", "/unused")
        .root(&root)
        .create_from(ok)
        .unwrap_err();
    assert!(matches!(e, ContainerError::InvalidId { .. }), "{e}");
    assert!(!root.exists(), "a refused create made the runtime root");
}

#[test]
fn a_terminal_needs_a_console_socket() {
    let e = connect_console(None, true).unwrap_err();
    assert!(e.to_string().contains("process.terminal"), "{e}");
    assert!(connect_console(None, false).unwrap().is_none());
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no.sock");
    let e = connect_console(Some(&missing), true).unwrap_err();
    assert!(
        e.to_string().starts_with("connect to console socket"),
        "{e}"
    );
    let listener = std::os::unix::net::UnixListener::bind(tmp.path().join("c.sock")).unwrap();
    assert!(connect_console(Some(&tmp.path().join("c.sock")), true)
        .unwrap()
        .is_some());
    drop(listener);
}

#[test]
fn pid_files_are_never_written_through_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("pid");
    write_pid_file(&file, 42).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "42");
    write_pid_file(&file, 43).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "43");
    let target = tmp.path().join("target");
    let link = tmp.path().join("link");
    symlink(&target, &link).unwrap();
    assert!(write_pid_file(&link, 44).is_err());
    assert!(!target.exists(), "written through the symlink");
}

// process_death reaps the children (what is tested); clippy cannot see that.
#[allow(clippy::zombie_processes)]
#[test]
fn a_setup_death_says_how_it_ended_and_the_likely_cause() {
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "linux": {"resources": {"memory": {"limit": 4194304}}}
    }));
    let child = Command::new("/bin/sh")
        .args(["-c", "exit 3"])
        .spawn()
        .unwrap();
    let e = process_death(Pid::from_raw(child.id() as i32), &s, "init");
    assert_eq!(e.to_string(), "init exited with status 3 during setup");
    let child = Command::new("/bin/sh")
        .args(["-c", "kill -KILL $$"])
        .spawn()
        .unwrap();
    let e = process_death(Pid::from_raw(child.id() as i32), &s, "init");
    assert_eq!(
        e.to_string(),
        "init was killed by SIGKILL during setup (memory limit 4 MiB reached?)"
    );
    assert_eq!(human_bytes(512 << 10), "512 KiB");
    assert_eq!(human_bytes(1 << 30), "1 GiB");
    assert_eq!(human_bytes(1000), "1000 B");
}

#[test]
fn hooks_get_the_state_with_the_spec_annotations() {
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "annotations": {"org.example": "yes"}
    }));
    let st = hook_state("c1", Status::Creating, 7, Path::new("/b"), &s);
    let v = serde_json::to_value(&st).unwrap();
    assert_eq!(v["id"], "c1");
    assert_eq!(v["pid"], 7);
    assert_eq!(v["status"], "creating");
    assert_eq!(v["bundle"], "/b");
    assert_eq!(v["annotations"]["org.example"], "yes");
}

#[test]
fn only_a_leaf_berth_made_is_its_cgroup() {
    let saved = |created: Vec<&str>| berth_cgroups::CgroupSaved {
        layout: berth_cgroups::Layout::V1,
        hierarchies: vec![serde_json::from_value(serde_json::json!({
            "fs_type": "v1",
            "mount_point": "/sys/fs/cgroup/pids",
            "controllers": ["pids"],
            "super_options": "rw,pids",
            "path": "/a/c1",
            "dir": "/sys/fs/cgroup/pids/a/c1",
            "created": created,
        }))
        .unwrap()],
    };
    assert!(created_cgroup(&saved(vec![
        "/sys/fs/cgroup/pids/a",
        "/sys/fs/cgroup/pids/a/c1"
    ])));
    assert!(!created_cgroup(&saved(vec![])));
}

/// The state directory of a stopped container `id` under `root`, as create leaves it (the
/// lock released); its `created` says which container of the id it is.
fn stopped_container(root: &Path, id: &str, created: &str) {
    let dir = StateDir::create(root, id).unwrap();
    let st = ContainerState {
        id: id.into(),
        pid: 1,
        pid_start_time: 0,
        bundle: "/unused".into(),
        rootfs: "/unused/rootfs".into(),
        created: created.into(),
        annotations: Default::default(),
        cgroup: berth_cgroups::CgroupSaved {
            layout: berth_cgroups::Layout::V1,
            hierarchies: Vec::new(),
        },
        own_pid_ns: true,
        has_poststart_hooks: false,
        has_poststop_hooks: false,
        stopped: true,
        creating: false,
        namespaces: Vec::new(),
    };
    dir.save(&st).unwrap();
}

/// Whether another command could take `<root>/<id>`'s lock exclusively right now.
fn lock_is_free(root: &Path, id: &str) -> bool {
    let f = std::fs::File::open(root.join(id)).unwrap();
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok()
}

/// Issue 12: a `Container` does not hold the container's lock while it lives; each operation
/// takes it (the old `Container::load` held it exclusively until dropped), and a container
/// deleted and made again at the same id is not the one the value was made for.
#[test]
fn a_container_holds_no_lock_between_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    stopped_container(root, "c1", "first");
    let c = Container::load(root, "c1").unwrap();
    assert!(
        lock_is_free(root, "c1"),
        "a loaded Container holds the lock"
    );
    assert_eq!(c.status().unwrap(), Status::Stopped);
    let st = c.state().unwrap();
    assert_eq!((st.pid, st.status), (0, Status::Stopped));
    assert!(lock_is_free(root, "c1"), "an operation kept the lock");
    assert_eq!(c.saved_state().created, "first");

    // Another command deletes it and makes a new container at the id.
    Container::delete_id(root, "c1", false).unwrap();
    assert!(matches!(
        c.status(),
        Err(ContainerError::NotFound { ref id }) if id == "c1"
    ));
    stopped_container(root, "c1", "second");
    assert!(
        matches!(c.state(), Err(ContainerError::NotFound { .. })),
        "a Container acted on a later container of its id"
    );
    let by_name = c.into_ref();
    assert_eq!(by_name.status().unwrap(), Status::Stopped);
    let again = by_name.load().unwrap();
    assert_eq!(again.saved_state().created, "second");
    again.delete(false).unwrap();
    assert!(!root.join("c1").exists());
    assert!(matches!(
        by_name.state(),
        Err(ContainerError::NotFound { .. })
    ));
}

/// An operation waits for another command's lock (bounded), and a reader's shared lock lets
/// other readers in while it is held.
#[test]
fn operations_take_the_lock_in_their_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    stopped_container(root, "c1", "first");
    let c = Container::load(root, "c1").unwrap();
    let reader = StateDir::open(root, "c1", LockMode::Shared)
        .unwrap()
        .unwrap();
    // Shared with another reader.
    assert_eq!(c.status().unwrap(), Status::Stopped);
    drop(reader);
    let f = std::fs::File::open(root.join("c1")).unwrap();
    let writer = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(writer);
    });
    let t0 = Instant::now();
    assert_eq!(c.status().unwrap(), Status::Stopped);
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "status did not wait for the writer's lock"
    );
    t.join().unwrap();
}

#[test]
fn a_signal_that_is_not_one_is_refused_by_number() {
    let tmp = tempfile::tempdir().unwrap();
    stopped_container(tmp.path(), "c1", "first");
    let c = Container::load(tmp.path(), "c1").unwrap();
    let e = c.kill(-3, false).unwrap_err();
    assert!(
        matches!(e, ContainerError::InvalidSignal { signal: -3 }),
        "{e}"
    );
}

#[test]
fn validation_errors_name_the_spec_for_a_configuration_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let process = serde_json::json!({"cwd": "/", "args": [], "user": {"uid": 0, "gid": 0}});
    let in_memory = bundle_with(&tmp.path().join("b1"), process.clone());
    assert!(in_memory.is_in_memory());
    let e = ContainerBuilder::new("c1", "/unused")
        .root(&root)
        .create_from(in_memory)
        .unwrap_err();
    assert!(e.to_string().starts_with("spec: process.args: "), "{e}");
    assert!(!e.to_string().contains("config.json"), "{e}");
    // The same configuration read from a bundle's config.json (the CLI's case) names it.
    let dir = tmp.path().join("b2");
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": process,
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let e = ContainerBuilder::new("c1", &dir)
        .root(&root)
        .create()
        .unwrap_err();
    assert!(
        e.to_string().starts_with("config.json: process.args: "),
        "{e}"
    );
    // Bundle::from_spec's own refusals name the spec too.
    let mut no_root = spec(serde_json::json!({"ociVersion": "1.0.2"}));
    no_root.set_root(None);
    let e = Bundle::from_spec(tmp.path(), no_root).unwrap_err();
    assert_eq!(e.to_string(), "spec: root: is required on Linux");
}
