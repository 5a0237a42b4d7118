//! Where engines depend on runc's behaviour (the `kill` outcomes containerd's shim parses, the
//! loopback of a new network namespace) and where the spec decides cases that runtimes have got
//! wrong: supplementary groups as a set, the state a poststart hook gets, and a hook's
//! timeout bounding whatever the hook does with its stdio.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{ensure, not_ok, Case, Ctx, Finding, Level, Verdict};
use crate::Bundle;

const KILL: &str = "runc CLI kill";
const HOOKS: &str = "config.md#posix-platform-hooks";
const USER: &str = "config.md#posix-platform-user";

/// A container running `args`, created and started; waits for `stopped` when asked.
fn started(ctx: &Ctx, args: &[&str], tag: &str, stop: bool) -> Result<String, Finding> {
    let mut b = ctx.bundle()?;
    b.set_args(args);
    let id = ctx.create(&b, tag)?;
    ctx.must(ctx.rt.start(&id), "start")?;
    if stop {
        let st = ctx.rt.wait_status(&id, "stopped", Duration::from_secs(10));
        ensure(
            st.as_ref().is_some_and(|v| v["status"] == "stopped"),
            || {
                format!(
                    "container running `{}` did not stop: {st:?}",
                    args.join(" ")
                )
            },
        )?;
    }
    Ok(id)
}

/// A hook running `script` with /bin/sh, with a timeout in seconds if given.
fn sh_hook(script: &str, timeout: Option<u64>) -> Value {
    let mut h = json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
    if let Some(t) = timeout {
        h["timeout"] = json!(t);
    }
    h
}

/// `create` of `b` must fail (the hook timed out) within `limit`, not hang.
fn create_fails_within(ctx: &Ctx, b: &Bundle, tag: &str, limit: Duration) -> Verdict {
    let id = ctx.id(tag);
    let start = Instant::now();
    let out = ctx.rt.create(&id, b);
    let took = start.elapsed();
    ctx.must_fail(&out, "create with a hook past its timeout")?;
    ensure(took < limit, || {
        format!("create took {took:?}: the hook's timeout did not bound it")
    })
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new("parity.kill.stopped", KILL, Level::RuncCli,
            "kill of a container whose process has exited fails with \"container not running\"; kill --all of it succeeds (containerd's shim maps the message to not found)",
            |ctx| {
                let id = started(ctx, &["true"], "kstop", true)?;
                let plain = ctx.rt.kill(&id, "KILL");
                ctx.must_fail(&plain, "kill of a stopped container")?;
                ensure(plain.stderr.contains("container not running"), || {
                    format!("kill of a stopped container said {:?}", plain.stderr.trim())
                })?;
                ctx.must(ctx.rt.kill_all(&id, "KILL"), "kill --all of a stopped container")?;
                Ok(())
            }),
        Case::new("parity.kill.signal-zero", KILL, Level::RuncCli,
            "kill ID 0 (a liveness probe) succeeds on a running container and leaves it running",
            |ctx| {
                let id = started(ctx, &["sleep", "100"], "kzero", false)?;
                ctx.must(ctx.rt.kill(&id, "0"), "kill ID 0")?;
                let st = ctx.rt.status(&id);
                ensure(st.as_deref() == Some("running"), || format!("status after kill 0: {st:?}"))
            }),
        Case::new("parity.kill.paused", KILL, Level::RuncCli,
            "SIGKILL to a paused container ends it (the freezer does not hold the signal)",
            |ctx| {
                let id = started(ctx, &["sleep", "100"], "kpause", false)?;
                ctx.must(ctx.rt.pause(&id), "pause")?;
                ctx.must(ctx.rt.kill(&id, "KILL"), "kill KILL of a paused container")?;
                let st = ctx.rt.wait_status(&id, "stopped", Duration::from_secs(10));
                ensure(st.as_ref().is_some_and(|v| v["status"] == "stopped"), || {
                    format!("a paused container did not stop on SIGKILL: {st:?}")
                })
            }),
        Case::new("parity.network.loopback-up", "runc: libcontainer loopback network", Level::RuncCli,
            "a network namespace the runtime creates has its loopback up, so 127.0.0.1 is reachable",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["sh", "-c", "ip link show lo; nc 127.0.0.1 1 </dev/null 2>&1; true"]);
                let out = ctx.observe_output(&b)?;
                ensure(out.contains("<LOOPBACK,UP,LOWER_UP>"), || format!("lo is not up: {out:?}"))?;
                ensure(out.contains("refused") && !out.contains("unreachable"), || {
                    format!("127.0.0.1 is not reachable: {out:?}")
                })
            }),
        Case::new("parity.user.additional-gids-set", USER, Level::Should,
            "additionalGids with repeats ([1000, 29, 44, 100, 29]) give the process each group once",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_user(1000, 1000)
                    .set_additional_gids(&[1000, 29, 44, 100, 29])
                    .set_args(&["grep", "Groups:", "/proc/self/status"]);
                let out = ctx.observe_output(&b)?;
                let groups: Vec<&str> = out.split_whitespace().skip(1).collect();
                ensure(groups == ["29", "44", "100", "1000"], || format!("Groups: {groups:?}"))
            }),
        Case::new("parity.hooks.poststart-pid", HOOKS, Level::Must,
            "a poststart hook gets the state of the started container: status running with the pid of its process (also when it has already exited)",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["true"]);
                let saved = ctx.dir().join("poststart.json");
                b.add_hook("poststart", sh_hook(&format!("cat > {0}.tmp && mv {0}.tmp {0}", saved.display()), None));
                for _ in 0..10 {
                    let _ = std::fs::remove_file(&saved);
                    let id = ctx.create(&b, "hpost")?;
                    let pid = ctx.pid(&id)?;
                    ctx.must(ctx.rt.start(&id), "start")?;
                    let text = std::fs::read_to_string(&saved).unwrap_or_default();
                    let st: Value = serde_json::from_str(&text)
                        .map_err(|_| not_ok(format!("poststart stdin was not JSON: {text:?}")))?;
                    ensure(st["status"] == "running" && st["pid"].as_i64() == Some(pid.into()), || {
                        format!("poststart got {st}, the started pid was {pid}")
                    })?;
                    ctx.rt.wait_status(&id, "stopped", Duration::from_secs(10));
                    ctx.rt.delete(&id);
                }
                Ok(())
            }),
        Case::new("parity.hooks.timeout-output", HOOKS, Level::Must,
            "a hook that writes to stderr without end is aborted at its timeout, and create fails",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["true"]);
                b.add_hook("createRuntime", sh_hook("exec tr '\\0' x < /dev/zero >&2", Some(1)));
                create_fails_within(ctx, &b, "hspin", Duration::from_secs(10))
            }),
        Case::new("parity.hooks.timeout-stdin", HOOKS, Level::Must,
            "a hook that never reads a state bigger than a pipe (large annotations) is aborted at its timeout, and create fails",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["true"]);
                b.set_annotation("big", &"a".repeat(256 * 1024));
                b.add_hook("createRuntime", sh_hook("exec sleep 30", Some(1)));
                create_fails_within(ctx, &b, "hstdin", Duration::from_secs(10))
            }),
        Case::new("parity.hooks.big-output", HOOKS, Level::Should,
            "a hook that writes more than a pipe holds (1 MiB to stderr) and exits 0 does not stall create",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["true"]);
                b.add_hook("createRuntime", sh_hook("head -c 1048576 /dev/zero | tr '\\0' x >&2; exit 0", None));
                let id = ctx.id("hbig");
                let start = Instant::now();
                let out = ctx.rt.create(&id, &b);
                ensure(!out.timed_out && start.elapsed() < Duration::from_secs(10), || {
                    format!("create with a chatty hook hung ({:?})", start.elapsed())
                })?;
                ctx.must(out, "create with a hook writing 1 MiB to stderr")?;
                Ok(())
            }),
    ]
}
