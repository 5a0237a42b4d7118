//! runtime.md: the state document and every operation in every state.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{ensure, not_ok, Case, Ctx, Level, Verdict};

const STATE: &str = "runtime.md#state";
const CREATE: &str = "runtime.md#create";
const START: &str = "runtime.md#start";
const KILL: &str = "runtime.md#kill";
const DELETE: &str = "runtime.md#delete";
const QUERY: &str = "runtime.md#query-state";

/// Waits up to `t` for `p` to exist.
fn wait_file(p: &Path, t: Duration) -> bool {
    crate::wait_for(t, || p.exists())
}

/// A created container running `sleep 100` after touching /ran.
fn sleeper(ctx: &Ctx) -> Result<(crate::Bundle, String), super::Finding> {
    let mut b = ctx.bundle()?;
    b.set_args(&["sh", "-c", "touch /ran; exec sleep 100"]);
    let id = ctx.create(&b, "life")?;
    Ok((b, id))
}

fn stopped(ctx: &Ctx) -> Result<(crate::Bundle, String), super::Finding> {
    let mut b = ctx.bundle()?;
    b.set_args(&["true"]);
    let id = ctx.create(&b, "stopped")?;
    ctx.must(ctx.rt.start(&id), "start")?;
    let st = ctx.rt.wait_status(&id, "stopped", Duration::from_secs(10));
    ensure(
        st.as_ref()
            .map(|v| v["status"] == "stopped")
            .unwrap_or(false),
        || format!("container running `true` is not stopped: {st:?}"),
    )?;
    Ok((b, id))
}

fn check_state_fields(st: &Value, id: &str, bundle: &Path, status: &str) -> Verdict {
    ensure(st["ociVersion"].is_string(), || {
        format!("ociVersion missing: {st}")
    })?;
    ensure(st["id"] == id, || format!("id is {} not {id}", st["id"]))?;
    ensure(st["status"] == status, || {
        format!("status is {} not {status}", st["status"])
    })?;
    let b = st["bundle"].as_str().unwrap_or("");
    ensure(Path::new(b).is_absolute(), || {
        format!("bundle {b:?} is not absolute")
    })?;
    let same = std::fs::canonicalize(b).ok() == std::fs::canonicalize(bundle).ok();
    ensure(same, || format!("bundle {b:?} is not {}", bundle.display()))?;
    if status == "created" || status == "running" {
        let pid = st["pid"].as_i64().unwrap_or(0);
        ensure(pid > 0, || format!("pid missing in state {status}: {st}"))?;
        ensure(Path::new(&format!("/proc/{pid}")).exists(), || {
            format!("pid {pid} is not a live process")
        })?;
    }
    Ok(())
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new("lifecycle.state.created", STATE, Level::Must,
            "after create, state reports ociVersion, id, status \"created\", the pid of the container process and the absolute bundle path",
            |ctx| {
                let (b, id) = sleeper(ctx)?;
                let st = ctx.rt.state_json(&id).ok_or_else(|| not_ok("state printed no JSON"))?;
                check_state_fields(&st, &id, b.dir(), "created")
            }),
        Case::new("lifecycle.create.no-user-process", CREATE, Level::Must,
            "create must not run the user program: it runs only on start",
            |ctx| {
                let (b, id) = sleeper(ctx)?;
                std::thread::sleep(Duration::from_millis(200));
                ensure(!b.rootfs().join("ran").exists(), || "the program ran before start".into())?;
                ctx.must(ctx.rt.start(&id), "start")?;
                ensure(wait_file(&b.rootfs().join("ran"), Duration::from_secs(5)), || {
                    "the program did not run after start".into()
                })
            }),
        Case::new("lifecycle.state.running", STATE, Level::Must,
            "after start, status is \"running\" and pid is the container's process",
            |ctx| {
                let (b, id) = sleeper(ctx)?;
                ctx.must(ctx.rt.start(&id), "start")?;
                wait_file(&b.rootfs().join("ran"), Duration::from_secs(5));
                let st = ctx.rt.state_json(&id).ok_or_else(|| not_ok("state printed no JSON"))?;
                check_state_fields(&st, &id, b.dir(), "running")?;
                let pid = st["pid"].as_i64().unwrap_or(0);
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                ensure(String::from_utf8_lossy(&cmd).contains("sleep"), || {
                    format!("pid {pid} runs {:?}, not the container's sleep", String::from_utf8_lossy(&cmd))
                })
            }),
        Case::new("lifecycle.state.stopped", STATE, Level::Must,
            "when the container process has exited, status is \"stopped\"",
            |ctx| {
                let (b, id) = stopped(ctx)?;
                let st = ctx.rt.state_json(&id).ok_or_else(|| not_ok("state printed no JSON"))?;
                check_state_fields(&st, &id, b.dir(), "stopped")
            }),
        Case::new("lifecycle.state.annotations", STATE, Level::Must,
            "state carries the annotations of the config (when present, they equal the config's)",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["sleep", "100"]).set_annotation("org.opencontainers.test", "v1");
                let id = ctx.create(&b, "ann")?;
                let st = ctx.rt.state_json(&id).ok_or_else(|| not_ok("state printed no JSON"))?;
                ensure(st["annotations"]["org.opencontainers.test"] == "v1", || {
                    format!("annotations in state: {}", st["annotations"])
                })
            }),
        Case::new("lifecycle.state.unknown-id", QUERY, Level::Must,
            "state of a container that does not exist gives an error",
            |ctx| ctx.must_fail(&ctx.rt.state("no-such-container"), "state of an unknown id")),
        Case::new("lifecycle.create.duplicate-id", CREATE, Level::Must,
            "create with an id already in use gives an error and leaves the first container alone",
            |ctx| {
                let (b, id) = sleeper(ctx)?;
                let mut b2 = ctx.bundle()?;
                b2.set_args(&["true"]);
                ctx.must_fail(&ctx.rt.create(&id, &b2), "second create with the same id")?;
                let st = ctx.rt.state_json(&id).ok_or_else(|| not_ok("first container lost"))?;
                check_state_fields(&st, &id, b.dir(), "created")
            }),
        Case::new("lifecycle.create.invalid-config", CREATE, Level::Must,
            "create with a config.json that cannot be parsed gives an error and creates no container",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_raw_config(Some("{\"ociVersion\": \"1.0.2\", \"process\": "));
                let id = ctx.id("bad");
                ctx.must_fail(&ctx.rt.create(&id, &b), "create with broken JSON")?;
                ctx.must_fail(&ctx.rt.state(&id), "state after a failed create")
            }),
        Case::new("lifecycle.create.missing-rootfs", CREATE, Level::Must,
            "create whose root.path does not exist gives an error and creates no container",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.spec_mut()["root"]["path"] = "does-not-exist".into();
                let id = ctx.id("noroot");
                ctx.must_fail(&ctx.rt.create(&id, &b), "create without a rootfs")?;
                ctx.must_fail(&ctx.rt.state(&id), "state after a failed create")
            }),
        Case::new("lifecycle.create.bad-executable", CREATE, Level::Must,
            "a process whose executable does not exist is an error at create or start, never a running container",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["/no/such/binary"]);
                let id = ctx.id("noexe");
                if !ctx.rt.create(&id, &b).success() {
                    return Ok(());
                }
                let start = ctx.rt.start(&id);
                let st = ctx.rt.status(&id);
                ensure(!start.success() || st.as_deref() != Some("running"), || {
                    format!("start succeeded and status is {st:?}")
                })
            }),
        Case::new("lifecycle.start.not-created", START, Level::Must,
            "start of a running container gives an error",
            |ctx| {
                let (_b, id) = sleeper(ctx)?;
                ctx.must(ctx.rt.start(&id), "start")?;
                ctx.must_fail(&ctx.rt.start(&id), "second start")?;
                ensure(ctx.rt.status(&id).as_deref() == Some("running"), || "second start disturbed the container".into())
            }),
        Case::new("lifecycle.start.stopped", START, Level::Must,
            "start of a stopped container gives an error",
            |ctx| {
                let (_b, id) = stopped(ctx)?;
                ctx.must_fail(&ctx.rt.start(&id), "start of a stopped container")
            }),
        Case::new("lifecycle.start.unknown-id", START, Level::Must,
            "start of a container that does not exist gives an error",
            |ctx| ctx.must_fail(&ctx.rt.start("no-such-container"), "start of an unknown id")),
        Case::new("lifecycle.kill.created", KILL, Level::Must,
            "kill of a created container sends the signal (it is not an error) and the container stops",
            |ctx| {
                let (_b, id) = sleeper(ctx)?;
                ctx.must(ctx.rt.kill(&id, "KILL"), "kill in state created")?;
                let st = ctx.rt.wait_status(&id, "stopped", Duration::from_secs(5));
                ensure(st.as_ref().map(|v| v["status"] == "stopped").unwrap_or(false), || {
                    format!("not stopped after kill: {st:?}")
                })
            }),
        Case::new("lifecycle.kill.running", KILL, Level::Must,
            "kill of a running container sends the signal to the container process",
            |ctx| {
                let mut b = ctx.bundle()?;
                // sh as pid 1 ignores SIGTERM unless it installs a handler: trap it.
                b.set_args(&["sh", "-c", "trap 'echo got-term; exit 3' TERM; touch /ran; while :; do sleep 0.1; done"]);
                let id = ctx.create(&b, "term")?;
                ctx.must(ctx.rt.start(&id), "start")?;
                wait_file(&b.rootfs().join("ran"), Duration::from_secs(5));
                ctx.must(ctx.rt.kill(&id, "TERM"), "kill TERM")?;
                let st = ctx.rt.wait_status(&id, "stopped", Duration::from_secs(5));
                ensure(st.as_ref().map(|v| v["status"] == "stopped").unwrap_or(false), || {
                    format!("not stopped after SIGTERM: {st:?}")
                })?;
                let out = ctx.rt.container_stdout(&id);
                ensure(out.contains("got-term"), || format!("process did not see SIGTERM; stdout {out:?}"))
            }),
        Case::new("lifecycle.kill.stopped", KILL, Level::Must,
            "kill of a stopped container gives an error",
            |ctx| {
                let (_b, id) = stopped(ctx)?;
                ctx.must_fail(&ctx.rt.kill(&id, "KILL"), "kill of a stopped container")
            }),
        Case::new("lifecycle.kill.unknown-id", KILL, Level::Must,
            "kill of a container that does not exist gives an error",
            |ctx| ctx.must_fail(&ctx.rt.kill("no-such-container", "KILL"), "kill of an unknown id")),
        Case::new("lifecycle.delete.running", DELETE, Level::Must,
            "delete of a running container gives an error and the container keeps running",
            |ctx| {
                let (_b, id) = sleeper(ctx)?;
                ctx.must(ctx.rt.start(&id), "start")?;
                ctx.must_fail(&ctx.rt.delete(&id), "delete of a running container")?;
                ensure(ctx.rt.status(&id).as_deref() == Some("running"), || "container not running after a refused delete".into())
            }),
        Case::new("lifecycle.delete.created", DELETE, Level::Must,
            "delete of a container that is not stopped (here: created) gives an error",
            |ctx| {
                let (_b, id) = sleeper(ctx)?;
                ctx.must_fail(&ctx.rt.delete(&id), "delete of a created container")
            }),
        Case::new("lifecycle.delete.stopped", DELETE, Level::Must,
            "delete of a stopped container removes it: state then gives an error and the id can be reused",
            |ctx| {
                let (b, id) = stopped(ctx)?;
                ctx.must(ctx.rt.delete(&id), "delete")?;
                ctx.must_fail(&ctx.rt.state(&id), "state after delete")?;
                ctx.must(ctx.rt.create(&id, &b), "create again with the deleted id")?;
                Ok(())
            }),
        Case::new("lifecycle.delete.unknown-id", DELETE, Level::Must,
            "delete of a container that does not exist gives an error",
            |ctx| ctx.must_fail(&ctx.rt.delete("no-such-container"), "delete of an unknown id")),
        Case::new("lifecycle.delete.force-running", DELETE, Level::RuncCli,
            "delete --force kills and removes a running container",
            |ctx| {
                let (_b, id) = sleeper(ctx)?;
                ctx.must(ctx.rt.start(&id), "start")?;
                let pid = ctx.pid(&id)?;
                ctx.must(ctx.rt.delete_force(&id), "delete --force")?;
                ctx.must_fail(&ctx.rt.state(&id), "state after delete --force")?;
                std::thread::sleep(Duration::from_millis(100));
                let alive = crate::start_time(pid).is_some() && !crate::is_zombie(pid);
                ensure(!alive, || format!("container process {pid} still alive"))
            }),
        Case::new("lifecycle.run.exit-code", "runc CLI run", Level::RuncCli,
            "run returns the exit code of the container process",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["/probe", "exit", "7"]);
                let id = ctx.id("exit");
                let out = ctx.rt.run(&id, &b);
                ensure(out.code() == Some(7), || format!("run exited {:?}, want 7", out.code()))
            }),
        Case::new("lifecycle.exec.running", "runc CLI exec", Level::RuncCli,
            "exec runs a process in a running container and passes its output and exit code",
            |ctx| {
                let (b, id) = sleeper(ctx)?;
                ctx.must(ctx.rt.start(&id), "start")?;
                wait_file(&b.rootfs().join("ran"), Duration::from_secs(5));
                let out = ctx.must(ctx.rt.exec(&id, &["sh", "-c", "echo in-exec"]), "exec")?;
                ensure(out.stdout.contains("in-exec"), || format!("exec stdout {:?}", out.stdout))?;
                let out = ctx.rt.exec(&id, &["sh", "-c", "exit 5"]);
                ensure(out.code() == Some(5), || format!("exec exit code {:?}, want 5", out.code()))
            }),
        Case::new("lifecycle.exec.stopped", "runc CLI exec", Level::RuncCli,
            "exec into a stopped container gives an error",
            |ctx| {
                let (_b, id) = stopped(ctx)?;
                ctx.must_fail(&ctx.rt.exec(&id, &["true"]), "exec in a stopped container")
            }),
    ]
}
