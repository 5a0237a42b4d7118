//! No crash of `berth` leaves an id that cannot be deleted or reused: `berth` is killed (SIGKILL)
//! at every step of create, start, exec and delete, then `delete --force` must leave no mount,
//! cgroup, process or state directory, and the same id must be creatable again.
//!
//! The steps are named crash points that a debug build of berth honours through
//! `BERTH_TEST_CRASH_AT=STEP` (it kills itself there); one test needs no crash point at all (a
//! prestart hook that kills `berth create`).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use common::setup;
use runtime_tests::{assert_no_leaks, start_time, Bundle, LeakSnapshot, RunOutput, Runtime};
use serde_json::json;

/// Every crash point of `create`, in the order they are passed.
const CREATE_STEPS: &[&str] = &[
    "create:mkdir",
    "create:state",
    "create:cgroup",
    "create:clone",
    "create:pid",
    "create:cgroup-joined",
    "create:go",
    "create:hooks",
    "create:ready",
    "create:saved",
];
const START_STEPS: &[&str] = &["start:opened", "start:removed", "start:read"];
const EXEC_STEPS: &[&str] = &["exec:clone", "exec:joined", "exec:go", "exec:ready"];
const DELETE_STEPS: &[&str] = &[
    "delete:killed",
    "delete:cgroup",
    "delete:hooks",
    "delete:state-file",
    "delete:emptied",
];

/// Runs `f` (one berth call) with `BERTH_TEST_CRASH_AT=step` and checks that berth died there.
fn crash_at(step: &str, rt: &Runtime, f: impl FnOnce() -> RunOutput) -> RunOutput {
    // One test per process (nextest), and this thread is the only one calling berth.
    std::env::set_var("BERTH_TEST_CRASH_AT", step);
    let out = f();
    std::env::remove_var("BERTH_TEST_CRASH_AT");
    assert_eq!(
        out.status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "berth did not stop at crash point {step} (a debug build honours BERTH_TEST_CRASH_AT)\n{}",
        rt.dump_log()
    );
    out
}

/// The init pid and start time a crashed command left in the state file, if any.
fn recorded_init(root: &Path, id: &str) -> Option<(i32, u64)> {
    let data = std::fs::read(root.join(id).join("state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
    let pid = v["pid"].as_i64()? as i32;
    let st = v["pid_start_time"].as_u64()?;
    (pid > 0).then_some((pid, st))
}

/// After a crash at `step`: `delete --force` succeeds and leaves nothing (state dir, cgroups,
/// processes, mounts, the recorded init); then the id can be created, started and deleted.
fn finish_and_reuse(rt: &Runtime, b: &Bundle, before: &LeakSnapshot, id: &str, step: &str) {
    let init = recorded_init(&rt.root, id);
    let out = rt.delete_force(id);
    assert!(
        out.success(),
        "after a crash at {step}: {}\n{}",
        out.describe(),
        rt.dump_log()
    );
    assert!(
        !rt.root.join(id).exists(),
        "after a crash at {step}, delete --force left {}",
        rt.root.join(id).display()
    );
    if let Some((pid, st)) = init {
        // The kernel may still be tearing the process down: wait for it with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while start_time(pid) == Some(st) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_ne!(
            start_time(pid),
            Some(st),
            "after a crash at {step}, init {pid} still runs after delete --force"
        );
    }
    assert_no_leaks(before, rt);
    let out = rt.create(id, b);
    assert!(
        out.success(),
        "after a crash at {step}, the id cannot be created again: {}",
        out.describe()
    );
    assert_eq!(rt.status(id).as_deref(), Some("created"));
    let out = rt.start(id);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(rt.status(id).as_deref(), Some("running"));
    let out = rt.delete_force(id);
    assert!(out.success(), "{}", out.describe());
    assert_no_leaks(before, rt);
}

fn sleeper(b: &mut Bundle) {
    b.set_args(&["sleep", "100"]);
}

#[test]
fn create_killed_at_every_step_leaves_an_id_that_delete_force_clears() {
    let Some((rt, mut b)) = setup() else { return };
    sleeper(&mut b);
    // A prestart hook makes the hook round trip (and its crash point) part of every create.
    b.add_hook(
        "prestart",
        json!({"path": "/bin/sh", "args": ["sh", "-c", "true"]}),
    );
    let before = LeakSnapshot::take(&rt, &b);
    for step in CREATE_STEPS {
        let id = rt.new_id("crash-create");
        crash_at(step, &rt, || rt.create(&id, &b));
        finish_and_reuse(&rt, &b, &before, &id, step);
    }
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

#[test]
fn create_killed_by_its_prestart_hook_is_cleared_by_delete_force() {
    // No crash point needed: the hook kills `berth create` (its parent) after the cgroup and
    // the init exist and before state.json said so in the old code.
    let Some((rt, mut b)) = setup() else { return };
    sleeper(&mut b);
    b.add_hook(
        "prestart",
        json!({"path": "/bin/sh", "args": ["sh", "-c", "kill -KILL $PPID"]}),
    );
    let before = LeakSnapshot::take(&rt, &b);
    let id = rt.new_id("hook-kills");
    let out = rt.create(&id, &b);
    assert_eq!(
        out.status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "{}",
        out.describe()
    );
    // Half made: status creating (or stopped once init gave up on its channel).
    let status = rt.status(&id);
    assert!(
        matches!(status.as_deref(), Some("creating") | Some("stopped")),
        "{status:?}\n{}",
        rt.dump_log()
    );
    // The hook stays for the re-create: drop it first.
    b.spec_mut()["hooks"] = json!({});
    finish_and_reuse(&rt, &b, &before, &id, "prestart hook");
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

#[test]
fn delete_killed_by_its_poststop_hook_leaves_nothing_to_finish() {
    // No crash point needed: the hook kills `berth delete` (its parent). Poststop runs after
    // the container is deleted (config.md#poststop, and runc): the state directory is gone by
    // then, so no later delete depends on the hook (the old code ran it first, and every
    // delete --force was killed again, leaving the id for ever).
    let Some((rt, mut b)) = setup() else { return };
    sleeper(&mut b);
    let marker = b.dir().join("poststop-ran");
    b.add_hook(
        "poststop",
        json!({"path": "/bin/sh", "args": ["sh", "-c",
            format!("touch {}; kill -KILL $PPID", marker.display())]}),
    );
    let before = LeakSnapshot::take(&rt, &b);
    let id = rt.new_id("poststop-kills");
    let out = rt.create(&id, &b);
    assert!(out.success(), "{}", out.describe());
    assert!(rt.start(&id).success());
    let out = rt.delete_force(&id);
    assert_eq!(
        out.status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "{}",
        out.describe()
    );
    assert!(marker.exists(), "the poststop hook did not run");
    assert!(
        !rt.root.join(&id).exists(),
        "the state directory outlived the delete its poststop hook killed\n{}",
        rt.dump_log()
    );
    b.spec_mut()["hooks"] = json!({});
    finish_and_reuse(&rt, &b, &before, &id, "poststop hook");
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

#[test]
fn start_killed_at_every_step_leaves_an_id_that_delete_force_clears() {
    let Some((rt, mut b)) = setup() else { return };
    sleeper(&mut b);
    let before = LeakSnapshot::take(&rt, &b);
    for step in START_STEPS {
        let id = rt.new_id("crash-start");
        let out = rt.create(&id, &b);
        assert!(out.success(), "{}", out.describe());
        crash_at(step, &rt, || rt.start(&id));
        // Init was let go: the container is no longer "created" (a fifo left behind does not
        // make it so), and another start says so instead of waiting for ever.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut status = rt.status(&id);
        while status.as_deref() == Some("created") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            status = rt.status(&id);
        }
        assert!(
            matches!(status.as_deref(), Some("running") | Some("stopped")),
            "after a crash at {step}: status {status:?}\n{}",
            rt.dump_log()
        );
        let out = rt.start(&id);
        assert!(!out.success() && !out.timed_out, "{}", out.describe());
        finish_and_reuse(&rt, &b, &before, &id, step);
    }
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

#[test]
fn exec_killed_at_every_step_leaves_an_id_that_delete_force_clears() {
    let Some((rt, mut b)) = setup() else { return };
    sleeper(&mut b);
    let before = LeakSnapshot::take(&rt, &b);
    for step in EXEC_STEPS {
        let id = rt.new_id("crash-exec");
        let out = rt.create(&id, &b);
        assert!(out.success(), "{}", out.describe());
        let out = rt.start(&id);
        assert!(out.success(), "{}", out.describe());
        crash_at(step, &rt, || rt.exec_with(&id, &["-d"], &["sleep", "50"]));
        // The container is still there and running.
        assert_eq!(rt.status(&id).as_deref(), Some("running"), "{step}");
        finish_and_reuse(&rt, &b, &before, &id, step);
    }
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

#[test]
fn delete_killed_at_every_step_leaves_an_id_that_delete_force_clears() {
    let Some((rt, mut b)) = setup() else { return };
    sleeper(&mut b);
    b.add_hook(
        "poststop",
        json!({"path": "/bin/sh", "args": ["sh", "-c", "true"]}),
    );
    let before = LeakSnapshot::take(&rt, &b);
    for step in DELETE_STEPS {
        let id = rt.new_id("crash-delete");
        let out = rt.create(&id, &b);
        assert!(out.success(), "{}", out.describe());
        let out = rt.start(&id);
        assert!(out.success(), "{}", out.describe());
        crash_at(step, &rt, || rt.delete_force(&id));
        finish_and_reuse(&rt, &b, &before, &id, step);
    }
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

#[test]
fn create_killed_at_any_moment_leaves_an_id_that_delete_force_clears() {
    // Without crash points (as a release build would be): SIGKILL `berth create` at delays
    // spread over a whole create, so that every window between two steps is hit.
    let Some((rt, mut b)) = setup() else { return };
    sleeper(&mut b);
    let before = LeakSnapshot::take(&rt, &b);
    b.save().unwrap();
    let spawn = |id: &str| {
        std::process::Command::new(&rt.bin)
            .args(["--root", rt.root.to_str().unwrap(), "create", "--bundle"])
            .arg(b.dir())
            .arg(id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long one create takes here.
    let id = rt.new_id("sweep");
    let t = std::time::Instant::now();
    assert!(spawn(&id).wait().unwrap().success());
    let full = t.elapsed();
    assert!(rt.delete_force(&id).success());
    const N: u32 = 24;
    for i in 0..N {
        let id = rt.new_id("sweep");
        let mut child = spawn(&id);
        std::thread::sleep(full * i / N);
        let _ = child.kill();
        let _ = child.wait();
        let init = recorded_init(&rt.root, &id);
        let out = rt.delete_force(&id);
        assert!(
            out.success(),
            "kill after {:?}: {}",
            full * i / N,
            out.describe()
        );
        assert!(!rt.root.join(&id).exists(), "kill after {:?}", full * i / N);
        if let Some((pid, st)) = init {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while start_time(pid) == Some(st) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_ne!(
                start_time(pid),
                Some(st),
                "init {pid} survived delete --force"
            );
        }
        let cgroups = runtime_tests::cgroup_dirs(std::slice::from_ref(&id));
        assert!(
            cgroups.is_empty(),
            "kill after {:?}: {cgroups:?}",
            full * i / N
        );
        let out = rt.create(&id, &b);
        assert!(out.success(), "{}", out.describe());
        assert!(rt.delete_force(&id).success());
    }
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}
