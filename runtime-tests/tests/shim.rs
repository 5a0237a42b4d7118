//! containerd's `io.containerd.runc.v2` shim driving berth (as `BinaryName`) against tasks
//! whose process has exited or whose runtime state is gone: the shim reads the runtime's exit
//! status and its message ("container not running", "does not exist") to tell "not found" from
//! a failure, and CRI (kubelet's stop/remove) depends on it. Each scenario runs with berth and
//! with runc, the sanity check of the test itself; containerd, ctr and the shim are
//! prerequisites (Debian's containerd package): missing, the test fails. The harness is
//! `runtime-tests/engines/{harness,clients}.rs`.

#[path = "../engines/harness.rs"]
#[allow(dead_code)]
mod harness;

#[path = "../engines/clients.rs"]
#[allow(dead_code)]
mod clients;

use std::path::Path;
use std::time::Duration;

use clients::{wait_for, Ctr, CTR_NS};
use harness::{call, strs, which, Checks, Sandbox, Under, CALL_TIMEOUT};

/// The runtime binary for `under`; root and the engine binaries are required.
fn prerequisites(under: Under) -> std::path::PathBuf {
    assert!(runtime_tests::is_root(), "the shim tests need root");
    for b in ["containerd", "ctr", "containerd-shim-runc-v2"] {
        assert!(
            which(b).is_some(),
            "{b} is not installed (Debian package containerd)"
        );
    }
    under.bin().unwrap_or_else(|e| panic!("{e}"))
}

fn shim_scenario(under: Under) {
    let runtime = prerequisites(under);
    let mut sb = Sandbox::new("shim");
    let sock = clients::start_containerd(&mut sb);
    let runc_root = sb.path("runc-root");
    let ns_root = Path::new(&runc_root).join(CTR_NS);
    sb.add_runtime_root(&runtime, &ns_root);
    let ctr = Ctr {
        sock,
        runtime: runtime.display().to_string(),
        runc_root,
        fifo_dir: sb.path("fifo"),
        tag: sb.tag.clone(),
    };
    let mut c = Checks::new(format!("shim/{under}"));
    let tar = sb.image_tar();
    let out = ctr.run(&["images", "import", &tar]);
    c.expect("ctr images import", &out, 0, &[]);

    // A task whose process has exited: `true`.
    let id = "exited";
    sb.register(id);
    let out = ctr.run_container(&["-d"], id, &["true"]);
    c.expect("ctr run -d true", &out, 0, &[]);
    let stopped = wait_for(Duration::from_secs(10), || {
        ctr.task(id).is_some_and(|t| t.1 == "STOPPED")
    });
    c.check("task of `true` STOPPED", stopped, || {
        format!("task: {:?}", ctr.task(id))
    });
    // The shim runs `kill` on the runtime and maps "container not running" to not found;
    // anything else is "unknown error after kill" (containerd's checkKillError).
    for (what, args) in [
        ("ctr task kill", &["task", "kill", id][..]),
        ("ctr task kill -s KILL", &["task", "kill", "-s", "KILL", id]),
    ] {
        let out = ctr.run(args);
        c.check(
            &format!("{what} of an exited task: not found, not unknown"),
            !out.ok() && out.stderr.contains("not found") && !out.stderr.contains("unknown"),
            || out.describe(),
        );
    }
    // --all reaches the runtime's `kill --all`, which succeeds on a stopped container.
    let out = ctr.run(&["task", "kill", "--all", "-s", "KILL", id]);
    c.expect("ctr task kill --all of an exited task", &out, 0, &[]);
    let out = ctr.run(&["task", "delete", id]);
    c.expect("ctr task delete of the exited task", &out, 0, &[]);
    let out = ctr.run(&["container", "delete", id]);
    c.expect("ctr container delete (exited)", &out, 0, &[]);

    // A task whose runtime state is gone (deleted behind the shim's back): the shim matches
    // "does not exist" for kill (not found), state (stopped) and delete (nothing to do).
    let id = "gone";
    sb.register(id);
    let out = ctr.run_container(&["-d"], id, &["sleep", "1000"]);
    c.expect("ctr run -d sleep", &out, 0, &[]);
    let running = wait_for(Duration::from_secs(10), || {
        ctr.task(id).is_some_and(|t| t.1 == "RUNNING")
    });
    c.check("task RUNNING", running, || {
        format!("task: {:?}", ctr.task(id))
    });
    let root = ns_root.display().to_string();
    let out = call(
        &ctr.runtime,
        &strs(&["--root", &root, "delete", "--force", id]),
        &[],
        CALL_TIMEOUT,
    );
    c.expect("runtime delete --force behind the shim", &out, 0, &[]);
    let out = ctr.run(&["task", "kill", "-s", "KILL", id]);
    c.check(
        "ctr task kill of a gone container: not found, not unknown",
        !out.ok() && out.stderr.contains("not found") && !out.stderr.contains("unknown"),
        || out.describe(),
    );
    let stopped = wait_for(Duration::from_secs(10), || {
        ctr.task(id).is_some_and(|t| t.1 == "STOPPED")
    });
    c.check("gone task STOPPED", stopped, || {
        format!("task: {:?}", ctr.task(id))
    });
    let out = ctr.run(&["task", "delete", id]);
    c.expect("ctr task delete of a gone container", &out, 0, &[]);
    let out = ctr.run(&["container", "delete", id]);
    c.expect("ctr container delete (gone)", &out, 0, &[]);

    let out = ctr.run(&["task", "ls", "-q"]);
    c.check(
        "no tasks left",
        out.ok() && out.stdout.trim().is_empty(),
        || out.describe(),
    );
    sb.finish(c);
}

#[test]
fn shim_kill_of_exited_and_gone_tasks_with_berth() {
    shim_scenario(Under::Berth);
}

#[test]
fn shim_kill_of_exited_and_gone_tasks_with_runc() {
    shim_scenario(Under::Runc);
}
