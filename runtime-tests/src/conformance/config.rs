//! Values of config.json the spec decides about: an unknown capability is a warning, a
//! property the host cannot apply is an error at create, and a number the kernel cannot hold
//! is refused rather than truncated into another value.

use serde_json::json;

use super::{ensure, not_ok, skip, Case, Ctx, Finding, Level, Verdict};
use crate::probe;

/// Creates the bundle changed by `f` and requires create to fail and leave no container.
fn create_must_fail(ctx: &Ctx, tag: &str, f: impl FnOnce(&mut crate::Bundle)) -> Verdict {
    let mut b = ctx.bundle()?;
    f(&mut b);
    let id = ctx.id(tag);
    let out = ctx.rt.create(&id, &b);
    let refused = ctx.must_fail(&out, "create");
    if refused.is_err() {
        // Tell what the runtime made of it, for the report.
        let _ = ctx.rt.delete_force(&id);
        return refused;
    }
    ensure(!ctx.rt.state(&id).success(), || {
        "create failed but the container exists".into()
    })
}

fn apparmor_enabled() -> bool {
    std::path::Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|b| b.starts_with(b"Y"))
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new("config.capabilities.unknown", "config.md#linux-process", Level::Should,
            "a capability name that cannot be mapped is logged as a warning and does not fail create; the known ones still apply",
            |ctx| {
                let mut b = ctx.bundle()?;
                for set in ["bounding", "effective", "permitted"] {
                    b.set_cap_set(set, &["CAP_KILL", "CAP_CONFORMANCE_UNKNOWN"]);
                }
                let r = ctx.observe(&b).map_err(|e| match e {
                    Finding::NotOk(m) => not_ok(format!("unknown capability refused: {m}")),
                    other => other,
                })?;
                let eff = probe::caps(&r, "CapEff");
                ensure(eff == ["CAP_KILL"], || format!("effective set {eff:?}, expected [CAP_KILL]"))
            }),
        Case::new("config.apparmor.unavailable", "runtime.md#create", Level::Must,
            "process.apparmorProfile on a host without AppArmor cannot be applied: create fails and no container exists",
            |ctx| {
                if apparmor_enabled() {
                    return Err(skip("this host has AppArmor"));
                }
                create_must_fail(ctx, "aa", |b| {
                    b.spec_mut()["process"]["apparmorProfile"] = json!("conformance-profile");
                })
            }),
        Case::new("config.devices.major-range", "config-linux.md#devices", Level::Must,
            "a device major the kernel's dev_t cannot hold (4294967297) is an error at create, never truncated to another device (1:1 is /dev/mem)",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["/probe", "stat", "/dev/conf-wide"]);
                b.add_device(json!({"path": "/dev/conf-wide", "type": "c", "major": 4294967297u64, "minor": 1, "fileMode": 0o600}));
                let id = ctx.id("major");
                let out = ctx.rt.create(&id, &b);
                if !out.success() {
                    return ensure(!ctx.rt.state(&id).success(), || "create failed but the container exists".into());
                }
                ctx.rt.delete_force(&id);
                let seen = ctx.observe(&b)?;
                Err(not_ok(format!("create accepted major 4294967297; the device is {}:{}",
                    seen["rdev_major"], seen["rdev_minor"])))
            }),
        Case::new("config.process.user.invalid-uid", "runtime.md#create", Level::Must,
            "uid 4294967295 is (uid_t)-1, not a user: create fails rather than leaving the process root",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.spec_mut()["process"]["user"] = json!({"uid": 4294967295u64, "gid": 4294967295u64});
                let id = ctx.id("uid");
                let out = ctx.rt.create(&id, &b);
                if !out.success() {
                    return ensure(!ctx.rt.state(&id).success(), || "create failed but the container exists".into());
                }
                ctx.rt.delete_force(&id);
                let r = ctx.observe(&b)?;
                ensure(r["uid"] != 0 && r["euid"] != 0, || format!("the process runs as uid {} (euid {})", r["uid"], r["euid"]))
            }),
    ]
}
