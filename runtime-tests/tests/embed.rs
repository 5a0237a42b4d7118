//! The library embedded in a multithreaded async host (issue 12): berth-runtime's
//! `examples/embed_tokio.rs` runs containers from a tokio multi-thread runtime whose other
//! threads allocate all the time, and must finish with every container's own status and
//! output and nothing left; and a setup that never completes is a timeout naming the step,
//! with the process killed and everything removed, on both spawn paths.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use runtime_tests::{assert_no_leaks, LeakSnapshot};
use serde_json::json;

/// The example's binary, as `make build` (`cargo build --workspace --all-targets`) leaves it:
/// `$BERTH_EMBED_TOKIO` if set, else `examples/embed_tokio` in the profile directory this test
/// binary runs from (`target/<triple>/debug/deps/..`), else in the workspace's target. The
/// test never runs cargo itself: a missing example is a failure that says how to build it.
fn embed_tokio() -> PathBuf {
    const ENV: &str = "BERTH_EMBED_TOKIO";
    if let Some(p) = std::env::var_os(ENV) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{ENV}={} is not a file", p.display());
        return p;
    }
    let mut tried = Vec::new();
    if let Some(profile) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(PathBuf::from))
    {
        tried.push(profile.join("examples/embed_tokio"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| runtime_tests::workspace_dir().join("target"));
    tried.push(target.join("x86_64-unknown-linux-gnu/debug/examples/embed_tokio"));
    tried.push(target.join("debug/examples/embed_tokio"));
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => p.clone(),
        None => panic!(
            "the embed_tokio example is not built (looked for {tried:?}): run `make build` \
             (or `cargo build -p berth-runtime --example embed_tokio`), or name it in {ENV}"
        ),
    }
}

fn run_example(extra: &[&str]) {
    let Some((rt, bundle)) = common::setup() else {
        return;
    };
    bundle.save().expect("write config.json");
    let exe = embed_tokio();
    let before = LeakSnapshot::take(&rt, &bundle);
    let t0 = Instant::now();
    let out = Command::new(&exe)
        .args(["--bundle", &bundle.dir().display().to_string()])
        .args(["--root", &rt.root.join("embed").display().to_string()])
        .args(["--containers", "24", "--concurrency", "6"])
        .args(extra)
        .output()
        .expect("run embed_tokio");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "embed_tokio {extra:?} failed ({:?}, {:?}):\n{stdout}\n{stderr}",
        out.status,
        t0.elapsed()
    );
    assert!(
        stdout.starts_with("24 of 24 containers ran and exited with their own status"),
        "{stdout}\n{stderr}"
    );
    assert!(!rt.root.join("embed").exists(), "the example left its root");
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

#[test]
fn containers_run_from_a_multithreaded_tokio_host() {
    run_example(&[]);
}

#[test]
fn containers_with_an_exec_each_run_from_a_multithreaded_tokio_host() {
    run_example(&["--exec"]);
}

/// Each container runs a short exec'd process whose handle the host drops without waiting:
/// the library reaps it (in the background), so init can finish exiting and be deleted.
/// Unreaped, it stayed a zombie in the container's pid namespace and init's exit hung for
/// good (the example gives init 30 seconds).
#[test]
fn an_exec_whose_handle_is_dropped_does_not_keep_init_from_exiting() {
    run_example(&["--exec-dropped"]);
}

/// A createContainer hook runs inside init during its setup: one that never ends keeps init
/// from answering. With `BERTH_SETUP_TIMEOUT=1`, create gives up after a second, names the
/// step it waited for, and kills and removes everything (the hook's process dies with init's
/// pid namespace).
fn setup_that_hangs_times_out(helper: bool) {
    common::leak_checked(|rt, b| {
        b.set_args(&["true"]);
        b.add_hook(
            "createContainer",
            json!({"path": "/bin/sleep", "args": ["sleep", "60"]}),
        );
        b.save().expect("write config.json");
        let id = rt.new_id("hang");
        let mut cmd = Command::new(&rt.bin);
        cmd.env("BERTH_SETUP_TIMEOUT", "1")
            .args(["--root", &rt.root.display().to_string()])
            .args(["create", "--bundle", &b.dir().display().to_string(), &id]);
        if helper {
            cmd.env("BERTH_SPAWN_HELPER", "1");
        }
        let t0 = Instant::now();
        let out = cmd.output().expect("run berth create");
        let took = t0.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "create succeeded: {stderr}");
        assert!(
            stderr.contains(
                "timed out after 1s waiting for the container's init to finish its setup"
            ),
            "{stderr}"
        );
        assert!(took < Duration::from_secs(20), "create took {took:?}");
        assert!(rt.state_json(&id).is_none(), "the container is left");
    });
}

#[test]
fn a_setup_that_hangs_times_out_naming_the_step() {
    setup_that_hangs_times_out(false);
}

#[test]
fn a_setup_that_hangs_times_out_naming_the_step_through_the_helper() {
    setup_that_hangs_times_out(true);
}

/// `update` is the library's (issue 12): the new limits reach the cgroup and are saved with
/// the container's configuration, field by field (what the update does not set stays).
#[test]
fn update_saves_the_new_limits_in_the_state() {
    common::leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]);
        b.linux_mut()["resources"]["memory"] = json!({"limit": 64 << 20});
        b.linux_mut()["resources"]["pids"] = json!({"limit": 50});
        let id = rt.new_id("update");
        assert!(rt.create(&id, b).success(), "{}", rt.dump_log());
        let out = rt.cmd(&["update", "--memory", "96m", &id]);
        assert!(out.success(), "{}", out.describe());
        let saved: serde_json::Value = serde_json::from_slice(
            &std::fs::read(rt.root.join(&id).join("config.json")).expect("saved config"),
        )
        .unwrap();
        let res = &saved["linux"]["resources"];
        assert_eq!(res["memory"]["limit"], json!(96 << 20), "{res}");
        assert_eq!(res["pids"]["limit"], json!(50), "{res}");
        assert!(rt.delete_force(&id).success());
    });
}

/// Hooks may call back into the runtime: while createRuntime and poststart hooks run, the
/// container is not locked exclusively, so `berth state` from a hook answers (with the old
/// code it waited for the lock until it gave up, here after 3 s).
#[test]
fn hooks_can_call_back_into_the_runtime() {
    common::leak_checked(|rt, b| {
        let out = tempfile::tempdir().unwrap();
        let id = rt.new_id("callback");
        let state_cmd = |file: &str| {
            format!(
                "BERTH_LOCK_TIMEOUT=3 {} --root {} state {id} > {} 2>&1",
                rt.bin.display(),
                rt.root.display(),
                out.path().join(file).display()
            )
        };
        b.set_args(&["sleep", "100"]);
        b.add_hook(
            "createRuntime",
            json!({"path": "/bin/sh", "args": ["sh", "-c", state_cmd("create")]}),
        );
        b.add_hook(
            "poststart",
            json!({"path": "/bin/sh", "args": ["sh", "-c", state_cmd("poststart")]}),
        );
        assert!(rt.create(&id, b).success(), "{}", rt.dump_log());
        assert!(rt.start(&id).success(), "{}", rt.dump_log());
        let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap_or_default();
        let created: serde_json::Value = serde_json::from_str(&read("create"))
            .unwrap_or_else(|e| panic!("createRuntime hook's state: {e}: {}", read("create")));
        assert_eq!(created["status"], "creating", "{created}");
        let started: serde_json::Value = serde_json::from_str(&read("poststart"))
            .unwrap_or_else(|e| panic!("poststart hook's state: {e}: {}", read("poststart")));
        assert_eq!(started["status"], "running", "{started}");
        assert!(rt.delete_force(&id).success());
    });
}

/// The spawn helper gets the whole configuration, however large (here a 100 KB argument,
/// more than a packet of the setup channel holds), and the process gets it intact.
#[test]
fn a_large_configuration_goes_through_the_spawn_helper() {
    common::leak_checked(|rt, b| {
        let long = "x".repeat(100_000);
        b.set_args(&["sh", "-c", "echo ${#1}", "sh", &long]);
        b.save().expect("write config.json");
        let id = rt.new_id("large");
        let out = Command::new(&rt.bin)
            .env("BERTH_SPAWN_HELPER", "1")
            .args(["--root", &rt.root.display().to_string(), "--debug", "run"])
            .args(["--bundle", &b.dir().display().to_string(), &id])
            .output()
            .expect("run berth run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("through the spawn helper"), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "100000\n");
    });
}
