//! config.md "Linux mount options": the option strings a runtime MUST/SHOULD implement, the
//! `idmap` error rule, unknown options as filesystem data, and `features.md`'s promise that
//! the listed `mountOptions` are supported.

use serde_json::{json, Value};

use super::{ensure, not_ok, skip, Case, Ctx, Finding, Level};
use crate::Bundle;

const SECTION: &str = "config.md#linux-mount-options";

/// The topmost mount at `dest` in the probe's report.
fn mount_at<'v>(report: &'v Value, dest: &str) -> Option<&'v Value> {
    report["mountinfo"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["mount_point"] == dest)
}

/// Whether the mount has `opt` among its per-mount or superblock options.
fn has_opt(m: &Value, opt: &str) -> bool {
    ["options", "super_options"]
        .iter()
        .any(|k| m[*k].as_array().is_some_and(|a| a.iter().any(|o| o == opt)))
}

/// Runs `/probe ARGS` in a fresh bundle changed by `f`; the probe's report.
fn probe_with(ctx: &Ctx, args: &[&str], f: impl FnOnce(&mut Bundle)) -> Result<Value, Finding> {
    let mut b = ctx.bundle()?;
    let mut full = vec!["/probe"];
    full.extend_from_slice(args);
    b.set_args(&full);
    f(&mut b);
    ctx.observe(&b)
}

fn tmpfs(dest: &str, options: &[&str]) -> Value {
    json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options})
}

fn harness(e: impl std::fmt::Display) -> Finding {
    not_ok(format!("harness: {e}"))
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "config.mounts.options.must-flags",
            SECTION,
            Level::Must,
            "the MUST options noatime, nodiratime, strictatime, sync, dirsync and lazytime are \
             applied to the mount",
            |ctx| {
                let cases: &[(&str, &[&str])] = &[
                    ("noatime", &["noatime"]),
                    ("nodiratime", &["nodiratime"]),
                    ("sync", &["sync"]),
                    ("dirsync", &["dirsync"]),
                    ("lazytime", &["lazytime"]),
                    ("strictatime", &[]),
                ];
                let r = probe_with(ctx, &[], |b| {
                    for (opt, _) in cases {
                        b.add_mount(tmpfs(&format!("/o/{opt}"), &[opt]));
                    }
                })?;
                for (opt, shows) in cases {
                    let dest = format!("/o/{opt}");
                    let m = mount_at(&r, &dest)
                        .ok_or_else(|| not_ok(format!("{dest} is not a mount point")))?;
                    for s in *shows {
                        ensure(has_opt(m, s), || format!("{opt}: {dest} lacks {s}: {m}"))?;
                    }
                    if *opt == "strictatime" {
                        ensure(!has_opt(m, "relatime") && !has_opt(m, "noatime"), || {
                            format!("strictatime: {dest} is {m}")
                        })?;
                    }
                }
                Ok(())
            },
        ),
        Case::new(
            "config.mounts.options.nosymfollow",
            SECTION,
            Level::Should,
            "nosymfollow (Linux 5.10) is applied: the mount does not follow symlinks",
            |ctx| {
                let r = probe_with(ctx, &[], |b| {
                    b.add_mount(tmpfs("/nsf", &["nosymfollow"]));
                })?;
                let m = mount_at(&r, "/nsf").ok_or_else(|| not_ok("/nsf is not a mount point"))?;
                ensure(has_opt(m, "nosymfollow"), || format!("/nsf is {m}"))
            },
        ),
        Case::new(
            "config.mounts.options.rro",
            SECTION,
            Level::Should,
            "rro makes a bind mount (and every mount beneath it) read-only",
            |ctx| {
                let host = ctx.dir().join("rro-src");
                std::fs::create_dir_all(&host).map_err(harness)?;
                let h = host.display().to_string();
                let r = probe_with(ctx, &["write", "/rro/f", "x"], |b| {
                    b.add_mount(json!({"destination": "/rro", "type": "bind", "source": h,
                                       "options": ["rbind", "rro"]}));
                })?;
                ensure(r["errno"] == libc::EROFS, || {
                    format!("write under rro gave {r}")
                })
            },
        ),
        Case::new(
            "config.mounts.options.tmpcopyup",
            SECTION,
            Level::Should,
            "tmpcopyup (MAY; checked when features lists it) starts the tmpfs with the content \
             of the directory it covers",
            |ctx| {
                ctx.require_feature("/mountOptions", "tmpcopyup")?;
                let mut b = ctx.bundle()?;
                let dir = b.rootfs().join("copied");
                std::fs::create_dir_all(&dir).map_err(harness)?;
                std::fs::write(dir.join("f"), "from-image").map_err(harness)?;
                b.set_args(&["/probe", "read", "/copied/f"]);
                b.add_mount(tmpfs("/copied", &["tmpcopyup"]));
                let r = ctx.observe(&b)?;
                ensure(r["data"] == "from-image", || format!("read /copied/f: {r}"))?;
                b.set_args(&["/probe"]);
                let r = ctx.observe(&b)?;
                let m = mount_at(&r, "/copied")
                    .ok_or_else(|| not_ok("/copied is not a mount point"))?;
                ensure(m["fstype"] == "tmpfs", || format!("/copied is {m}"))
            },
        ),
        Case::new(
            "config.mounts.options.idmap-without-mappings",
            SECTION,
            Level::Must,
            "idmap on a mount without uidMappings/gidMappings in a container without a user \
             namespace is an error",
            |ctx| {
                let host = ctx.dir().join("idmap-src");
                std::fs::create_dir_all(&host).map_err(harness)?;
                let mut b = ctx.bundle()?;
                b.add_mount(json!({"destination": "/idm", "type": "bind",
                                   "source": host.display().to_string(),
                                   "options": ["rbind", "idmap"]}));
                let id = ctx.id("idmap");
                let out = ctx.rt.create(&id, &b);
                ctx.must_fail(&out, "create with an idmap mount and no mappings")
            },
        ),
        Case::new(
            "config.mounts.options.unknown-as-data",
            SECTION,
            Level::Should,
            "an option the table does not list is filesystem data: tmpfs's nr_inodes is \
             applied, and one the filesystem refuses makes create fail",
            |ctx| {
                let r = probe_with(ctx, &[], |b| {
                    b.add_mount(tmpfs("/data", &["nr_inodes=100"]));
                })?;
                let m =
                    mount_at(&r, "/data").ok_or_else(|| not_ok("/data is not a mount point"))?;
                ensure(has_opt(m, "nr_inodes=100"), || format!("/data is {m}"))?;
                let mut b = ctx.bundle()?;
                b.add_mount(tmpfs("/bad", &["no-such-tmpfs-option=1"]));
                let id = ctx.id("baddata");
                let out = ctx.rt.create(&id, &b);
                ctx.must_fail(&out, "create with a tmpfs option tmpfs refuses")
            },
        ),
        Case::new(
            "features.mount-options-apply",
            "features.md#mountoptions",
            Level::Should,
            "every option features lists in mountOptions can be used in a mount",
            |ctx| {
                let feats = ctx.rt.features();
                let Some(doc) = feats.json().filter(|_| feats.success()) else {
                    return Err(skip("the runtime has no features command"));
                };
                let Some(listed) = doc["mountOptions"].as_array() else {
                    return Err(skip("features lists no mountOptions"));
                };
                let src = ctx.dir().join("feat-src");
                std::fs::create_dir_all(&src).map_err(harness)?;
                let src = src.display().to_string();
                for opt in listed.iter().filter_map(Value::as_str) {
                    let mut b = ctx.bundle()?;
                    b.set_args(&["/probe", "exit", "0"]);
                    match opt {
                        "bind" | "rbind" => {
                            b.add_mount(json!({"destination": "/o", "type": "bind",
                                               "source": src, "options": [opt]}));
                        }
                        "remount" => {
                            b.add_mount(tmpfs("/o", &[]));
                            b.add_mount(tmpfs("/o", &["remount", "ro"]));
                        }
                        _ => {
                            b.add_mount(tmpfs("/o", &[opt]));
                        }
                    }
                    let id = ctx.id("feat");
                    let out = ctx.rt.run(&id, &b);
                    ctx.rt.delete(&id);
                    ensure(out.success(), || {
                        format!(
                            "a tmpfs (or bind) with {opt:?}: {}",
                            super::ctx::brief(&out)
                        )
                    })?;
                }
                Ok(())
            },
        ),
    ]
}
