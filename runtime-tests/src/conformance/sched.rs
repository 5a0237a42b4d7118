//! How the container's processes are scheduled: `process.ioPriority`, `process.scheduler`,
//! `process.execCPUAffinity` (config.md#linux-process) and `linux.memoryPolicy`
//! (config-linux.md#memory-policy). A runtime applies each, or refuses the config at create
//! (runtime.md#create: a property that cannot be applied MUST be an error); running the
//! process without it is not ok. What the process got is read inside the container by
//! `probe sched` (ioprio_get, sched_getattr, get_mempolicy, /proc/self/status).

use std::time::Duration;

use serde_json::{json, Value};

use super::{ensure, not_ok, skip, Case, Ctx, Finding, Level, Verdict};

/// Runs `/probe sched` in the bundle changed by `edit`. `Ok(None)` when create refused the
/// config (allowed by runtime.md#create, and then no container may exist), else the report.
fn sched_or_refused(
    ctx: &Ctx,
    tag: &str,
    edit: impl FnOnce(&mut crate::Bundle),
) -> Result<Option<Value>, Finding> {
    let mut b = ctx.bundle()?;
    b.set_args(&["/probe", "sched"]);
    edit(&mut b);
    let id = ctx.id(tag);
    let out = ctx.rt.create(&id, &b);
    if !out.success() {
        ensure(!ctx.rt.state(&id).success(), || {
            "create failed but the container exists".into()
        })?;
        return Ok(None);
    }
    ctx.must(ctx.rt.start(&id), "start")?;
    let st = ctx.rt.wait_status(&id, "stopped", Duration::from_secs(10));
    if st.as_ref().and_then(|v| v["status"].as_str()) != Some("stopped") {
        return Err(not_ok("the container did not stop"));
    }
    let text = ctx.rt.container_stdout(&id);
    ctx.rt.delete(&id);
    crate::probe::parse(&text)
        .map(Some)
        .ok_or_else(|| not_ok(format!("probe printed no report: {text:?}")))
}

/// Create must fail (and leave no container) for the bundle changed by `edit`.
fn create_must_fail(ctx: &Ctx, tag: &str, edit: impl FnOnce(&mut crate::Bundle)) -> Verdict {
    let mut b = ctx.bundle()?;
    edit(&mut b);
    let id = ctx.id(tag);
    let out = ctx.rt.create(&id, &b);
    let refused = ctx.must_fail(&out, "create");
    if refused.is_err() {
        let _ = ctx.rt.delete_force(&id);
        return refused;
    }
    ensure(!ctx.rt.state(&id).success(), || {
        "create failed but the container exists".into()
    })
}

/// A running container whose init sleeps; returns its id.
fn sleeper(
    ctx: &Ctx,
    edit: impl FnOnce(&mut crate::Bundle),
) -> Result<(crate::Bundle, String), Finding> {
    let mut b = ctx.bundle()?;
    b.set_args(&["/probe", "sleep", "600"]);
    edit(&mut b);
    let id = ctx.create(&b, "sleeper")?;
    ctx.must(ctx.rt.start(&id), "start")?;
    Ok((b, id))
}

/// `exec --process FILE` of `/probe sched` with `extra` in the process; the report.
fn exec_sched(ctx: &Ctx, b: &crate::Bundle, id: &str, extra: Value) -> Result<Value, Finding> {
    let mut p = json!({"cwd": "/", "args": ["/probe", "sched"], "user": {"uid": 0, "gid": 0}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        p[k] = v.clone();
    }
    let path = b.dir().join("sched-process.json");
    std::fs::write(&path, p.to_string())
        .map_err(|e| not_ok(format!("write {}: {e}", path.display())))?;
    let out = ctx.must(
        ctx.rt
            .exec_with(id, &["--process", &path.display().to_string()], &[]),
        "exec",
    )?;
    crate::probe::parse(&out.stdout)
        .ok_or_else(|| not_ok(format!("probe printed no report: {:?}", out.stdout)))
}

/// The host's online NUMA nodes.
fn online_nodes() -> String {
    std::fs::read_to_string("/sys/devices/system/node/online")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new("sched.io-priority", "config.md#linux-process", Level::Must,
            "process.ioPriority (IOPRIO_CLASS_BE, 6) is the I/O priority of the container process, or create fails; never ignored",
            |ctx| {
                let Some(s) = sched_or_refused(ctx, "ioprio", |b| {
                    b.spec_mut()["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
                })? else { return Ok(()) };
                ensure(s["ioprio"] == json!({"class": 2, "level": 6}), || format!("ioprio_get gives {}, expected BE level 6", s["ioprio"]))
            }),
        Case::new("sched.scheduler", "config.md#linux-process", Level::Must,
            "process.scheduler (SCHED_BATCH, nice 5, SCHED_FLAG_RESET_ON_FORK) is applied with sched_setattr, or create fails; never ignored",
            |ctx| {
                let Some(s) = sched_or_refused(ctx, "sched", |b| {
                    b.spec_mut()["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
                })? else { return Ok(()) };
                let a = &s["sched"];
                ensure(a["policy"] == 3 && a["nice"] == 5 && a["flags"].as_u64().unwrap_or(0) & 1 == 1,
                    || format!("sched_getattr gives {a}, expected policy 3 (SCHED_BATCH), nice 5, flag 0x1"))
            }),
        Case::new("sched.scheduler.fifo-without-priority", "runtime.md#create", Level::Must,
            "SCHED_FIFO with priority 0 (the default) cannot be applied (sched_setattr takes 1 to 99): create fails",
            |ctx| create_must_fail(ctx, "fifo0", |b| {
                b.spec_mut()["process"]["scheduler"] = json!({"policy": "SCHED_FIFO"});
            })),
        Case::new("sched.memory-policy", "config-linux.md#memory-policy", Level::Must,
            "linux.memoryPolicy MPOL_BIND to node 0 is the memory policy of the container process, or create fails; never ignored",
            |ctx| {
                ctx.require_feature("/linux/memoryPolicy/modes", "MPOL_BIND")?;
                let Some(s) = sched_or_refused(ctx, "mpol", |b| {
                    b.linux_mut()["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
                })? else { return Ok(()) };
                let m = &s["mempolicy"];
                ensure(m["mode"] == 2 && m["nodes"] == json!([0]), || format!("get_mempolicy gives {m}, expected mode 2 (MPOL_BIND) nodes [0]"))
            }),
        Case::new("sched.memory-policy.missing-node", "runtime.md#create", Level::Must,
            "MPOL_BIND to a NUMA node the host does not have cannot be applied: create fails",
            |ctx| {
                let online = online_nodes();
                if online != "0" {
                    return Err(skip(format!("the case needs a host whose only node is 0 (online: {online:?})")));
                }
                create_must_fail(ctx, "node5", |b| {
                    b.linux_mut()["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "5"});
                })
            }),
        Case::new("sched.memory-policy.local-with-nodes", "config-linux.md#memory-policy", Level::Must,
            "MPOL_LOCAL requires that there are no nodes: with nodes create fails",
            |ctx| create_must_fail(ctx, "local", |b| {
                b.linux_mut()["memoryPolicy"] = json!({"mode": "MPOL_LOCAL", "nodes": "0"});
            })),
        Case::new("sched.exec-cpu-affinity.final", "config.md#linux-process", Level::Should,
            "exec of a process with execCPUAffinity final 0 runs on CPU 0 only; init keeps its affinity (not applicable to init)",
            |ctx| {
                let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
                if cpus.trim() == "0" {
                    return Err(skip("the case needs more than one CPU"));
                }
                let (b, id) = sleeper(ctx, |b| {
                    b.spec_mut()["process"]["execCPUAffinity"] = json!({"final": "0"});
                })?;
                let s = exec_sched(ctx, &b, &id, json!({"execCPUAffinity": {"initial": "0", "final": "0"}}))?;
                ensure(s["cpus_allowed"] == "0", || format!("the exec'd process may run on CPUs {}, expected 0", s["cpus_allowed"]))?;
                let pid = ctx.pid(&id)?;
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let init = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim().to_owned();
                ensure(init != "0", || "init's affinity was set to execCPUAffinity.final".into())
            }),
    ]
}
