//! config-linux.md: namespaces, id mappings, devices, cgroups, sysctl, seccomp, propagation,
//! masked and read-only paths, personality, time offsets.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{ensure, not_ok, skip, Case, Ctx, Finding, Level, Verdict};

const NS: &str = "config-linux.md#namespaces";

/// /proc/self/ns names by spec namespace type.
fn ns_file(ty: &str) -> &'static str {
    match ty {
        "pid" => "pid",
        "network" => "net",
        "mount" => "mnt",
        "ipc" => "ipc",
        "uts" => "uts",
        "user" => "user",
        "cgroup" => "cgroup",
        "time" => "time",
        _ => "?",
    }
}

fn probe(ctx: &Ctx, args: &[&str], f: impl FnOnce(&mut crate::Bundle)) -> Result<Value, Finding> {
    let mut b = ctx.bundle()?;
    let mut full = vec!["/probe"];
    full.extend_from_slice(args);
    b.set_args(&full);
    f(&mut b);
    ctx.observe(&b)
}

fn new_ns_case(ty: &'static str) -> Case {
    Case::new(
        format!("linux.namespace.{ty}.new"),
        NS,
        Level::Must,
        format!("a {ty} namespace without path is new: the process's differs from the runtime's"),
        move |ctx| {
            let file = ns_file(ty);
            if !Path::new(&format!("/proc/self/ns/{file}")).exists() {
                return Err(skip(format!("kernel has no {ty} namespaces")));
            }
            let r = probe(ctx, &[], |b| {
                b.set_namespace(ty, None);
            })?;
            let inside = r["namespaces"][file].as_str().unwrap_or("");
            let host = ctx.host_ns.get(file).map(String::as_str).unwrap_or("");
            ensure(!inside.is_empty() && inside != host, || {
                format!("{file} namespace {inside} is the host's {host}")
            })?;
            if ty == "pid" {
                ensure(r["pid"] == 1, || {
                    format!("pid in a new pid namespace is {}", r["pid"])
                })?;
            }
            Ok(())
        },
    )
}

fn absent_ns_case(ty: &'static str) -> Case {
    Case::new(
        format!("linux.namespace.{ty}.absent"),
        NS,
        Level::Must,
        format!("without a {ty} entry the process shares the runtime's {ty} namespace"),
        move |ctx| {
            let file = ns_file(ty);
            let r = probe(ctx, &[], |b| {
                b.remove_namespace(ty);
                if ty == "uts" {
                    b.spec_mut().as_object_mut().map(|o| o.remove("hostname"));
                }
            })?;
            let inside = r["namespaces"][file].as_str().unwrap_or("");
            let host = ctx.host_ns.get(file).map(String::as_str).unwrap_or("");
            ensure(inside == host, || {
                format!("{file} namespace {inside}, host's {host}")
            })
        },
    )
}

fn join_ns_case(ty: &'static str) -> Case {
    Case::new(
        format!("linux.namespace.{ty}.join"),
        NS,
        Level::Must,
        format!(
            "a {ty} namespace with a path is joined: the process is in the namespace at that path"
        ),
        move |ctx| {
            let file = ns_file(ty);
            let mut a = ctx.bundle()?;
            a.set_args(&["sleep", "100"]);
            let first = ctx.create(&a, "nsowner")?;
            let pid = ctx.pid(&first)?;
            let path = format!("/proc/{pid}/ns/{file}");
            let want = fs::read_link(&path)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let r = probe(ctx, &[], |b| {
                b.set_namespace(ty, Some(&path));
            })?;
            let got = r["namespaces"][file].as_str().unwrap_or("");
            ensure(got == want, || {
                format!("{file} namespace {got}, want {want} of {path}")
            })
        },
    )
}

/// The host cgroup directory of `pid` for `controller` (v1) or the unified one (v2).
fn cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctls, path) = (it.next()?, it.next()?, it.next()?);
        if ctls.split(',').any(|c| c == controller) {
            let d = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/'));
            if d.exists() {
                return Some(d);
            }
        }
    }
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("0::") {
            for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let d = Path::new(base).join(path.trim_start_matches('/'));
                let enabled = fs::read_to_string(Path::new(base).join("cgroup.controllers"))
                    .unwrap_or_default();
                if d.exists() && enabled.split_whitespace().any(|c| c == controller) {
                    return Some(d);
                }
            }
        }
    }
    None
}

fn controller_available(controller: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(controller).is_dir()
        || fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == controller)
}

/// Creates a container with `resources`, then reads `files` (v1 name, v2 name) from its cgroup.
fn cgroup_case(
    ctx: &Ctx,
    controller: &str,
    resources: Value,
    v1: (&str, &str),
    v2: (&str, &str),
) -> Verdict {
    if !controller_available(controller) {
        return Err(skip(format!("{controller} controller not mounted")));
    }
    let mut b = ctx.bundle()?;
    b.set_args(&["sleep", "100"]).set_resources(resources);
    let id = ctx.create(&b, "cg")?;
    let pid = ctx.pid(&id)?;
    let dir = cgroup_dir(pid, controller)
        .ok_or_else(|| not_ok(format!("container process is in no {controller} cgroup")))?;
    let (file, want) = if dir.join(v1.0).exists() { v1 } else { v2 };
    let got = fs::read_to_string(dir.join(file)).unwrap_or_default();
    ensure(got.trim() == want, || {
        format!("{}/{file} is {:?}, want {want}", dir.display(), got.trim())
    })?;
    let in_root =
        dir == Path::new("/sys/fs/cgroup").join(controller) || dir == Path::new("/sys/fs/cgroup");
    ensure(!in_root, || {
        format!("container shares the root {controller} cgroup")
    })
}

pub(super) fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for ty in ["pid", "network", "ipc", "uts", "mount", "cgroup"] {
        v.push(new_ns_case(ty));
    }
    for ty in ["network", "ipc", "uts", "cgroup"] {
        v.push(absent_ns_case(ty));
    }
    for ty in ["network", "ipc", "uts", "pid"] {
        v.push(join_ns_case(ty));
    }
    v.push(Case::new(
        "linux.namespace.user.mappings",
        "config-linux.md#user-namespace-mappings",
        Level::Must,
        "with a user namespace and uid/gid mappings, container root is the mapped host id",
        |ctx| {
            if !Path::new("/proc/self/ns/user").exists() {
                return Err(skip("kernel has no user namespaces"));
            }
            let mut b = ctx.bundle()?;
            b.set_args(&[
                "sh",
                "-c",
                "cat /proc/self/uid_map /proc/self/gid_map; id -u",
            ]);
            b.set_namespace("user", None)
                .set_id_mappings(100000, 100000, 65536);
            // The rootfs must be owned by the mapped root to be usable by it.
            let root = b.rootfs();
            let st = std::process::Command::new("chown")
                .args(["-R", "100000:100000"])
                .arg(&root)
                .status();
            if !st.map(|s| s.success()).unwrap_or(false) {
                return Err(not_ok("harness: chown of the rootfs failed"));
            }
            // sysfs and cgroupfs need a network/cgroup namespace owned by the user ns: keep it simple.
            b.set_mounts(json!([{"destination": "/proc", "type": "proc", "source": "proc"}]));
            b.spec_mut()["linux"]["maskedPaths"] = json!([]);
            b.spec_mut()["linux"]["readonlyPaths"] = json!([]);
            b.spec_mut()["linux"]["resources"] = json!({});
            let out = ctx.observe_output(&b)?;
            let words: Vec<&str> = out.split_whitespace().collect();
            ensure(
                words.len() >= 7
                    && words[0..3] == ["0", "100000", "65536"]
                    && words[3..6] == ["0", "100000", "65536"]
                    && words[6] == "0",
                || format!("maps and uid seen: {out:?}"),
            )
        },
    ));
    v.push(Case::new("linux.devices.default", "config-linux.md#default-devices", Level::Must,
        "the default devices exist: null, zero, full, random, urandom, tty as char devices with their numbers; ptmx, /dev/pts; fd, stdin, stdout, stderr links",
        |ctx| {
            let mut b = ctx.bundle()?;
            b.set_args(&["sh", "-c", "for d in null zero full random urandom tty ptmx; do /probe stat /dev/$d; done; ls -l /dev/fd /dev/stdin /dev/stdout /dev/stderr; /probe stat /dev/pts"]);
            let out = ctx.observe_output(&b)?;
            let stats: Vec<Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            let want = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];
            for (i, (name, maj, min)) in want.iter().enumerate() {
                let s = stats.get(i).cloned().unwrap_or(Value::Null);
                ensure(s["kind"] == "char" && s["rdev_major"] == *maj && s["rdev_minor"] == *min, || {
                    format!("/dev/{name}: {s}")
                })?;
            }
            let ptmx = stats.get(6).cloned().unwrap_or(Value::Null);
            ensure(ptmx["ok"] == true, || format!("/dev/ptmx: {ptmx}"))?;
            for l in ["/dev/fd ->", "/dev/stdin ->", "/dev/stdout ->", "/dev/stderr ->"] {
                ensure(out.contains(l), || format!("{l} missing: {out}"))?;
            }
            Ok(())
        }));
    v.push(Case::new("linux.devices.custom", "config-linux.md#devices", Level::Must,
        "each entry of linux.devices is created with its type, numbers and fileMode",
        |ctx| {
            let r = probe(ctx, &["stat", "/dev/conf-null"], |b| {
                b.add_device(json!({"path": "/dev/conf-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 0, "gid": 0}));
            })?;
            ensure(r["kind"] == "char" && r["rdev_major"] == 1 && r["rdev_minor"] == 3 && r["mode"] == 0o640, || format!("/dev/conf-null: {r}"))
        }));
    v.push(Case::new("linux.devices.cgroup-deny", "config-linux.md#allowed-device-list", Level::Must,
        "a device node not allowed by resources.devices cannot be opened",
        |ctx| {
            if !controller_available("devices") && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                return Err(skip("no devices controller"));
            }
            let r = probe(ctx, &["open", "/dev/conf-kmsg", "w"], |b| {
                b.add_device(json!({"path": "/dev/conf-kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666}));
            })?;
            ensure(r["ok"] == false && r["errno"] == libc::EPERM, || format!("open of a denied device: {r}"))
        }));
    v.push(Case::new(
        "linux.resources.memory",
        "config-linux.md#memory",
        Level::Must,
        "memory.limit is the limit of the container's memory cgroup",
        |ctx| {
            cgroup_case(
                ctx,
                "memory",
                json!({"memory": {"limit": 67108864}}),
                ("memory.limit_in_bytes", "67108864"),
                ("memory.max", "67108864"),
            )
        },
    ));
    v.push(Case::new(
        "linux.resources.pids",
        "config-linux.md#pids",
        Level::Must,
        "pids.limit is the container's pids.max",
        |ctx| {
            cgroup_case(
                ctx,
                "pids",
                json!({"pids": {"limit": 77}}),
                ("pids.max", "77"),
                ("pids.max", "77"),
            )
        },
    ));
    v.push(Case::new(
        "linux.resources.cpu-shares",
        "config-linux.md#cpu",
        Level::Must,
        "cpu.shares is the container's cpu.shares (v1; on v2 converted to cpu.weight)",
        |ctx| {
            cgroup_case(
                ctx,
                "cpu",
                json!({"cpu": {"shares": 512}}),
                ("cpu.shares", "512"),
                ("cpu.weight", "20"),
            )
        },
    ));
    v.push(Case::new(
        "linux.resources.cgroups-path",
        "config-linux.md#cgroups-path",
        Level::Must,
        "cgroupsPath names the container's cgroup (relative to the cgroup root when absolute)",
        |ctx| {
            if !controller_available("pids") {
                return Err(skip("pids controller not mounted"));
            }
            let mut b = ctx.bundle()?;
            let name = format!("/berth-conf-{}", ctx.id("cgpath"));
            b.set_args(&["sleep", "100"]).set_cgroups_path(&name);
            let id = ctx.rt.new_id("cgp");
            // Leak checks find the dir by id: name the container like the cgroup.
            let id = format!("{id}-{}", &name[1..]);
            ctx.must(ctx.rt.create(&id, &b), "create")?;
            let pid = ctx.pid(&id)?;
            let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            ensure(cg.lines().any(|l| l.ends_with(&name)), || {
                format!("cgroups of the container: {cg}")
            })
        },
    ));
    v.push(Case::new(
        "linux.sysctl",
        "config-linux.md#sysctl",
        Level::Must,
        "each sysctl is set in the container's namespaces",
        |ctx| {
            let r = probe(
                ctx,
                &["sysctl", "net.ipv4.ip_forward", "kernel.shm_rmid_forced"],
                |b| {
                    b.set_sysctl("net.ipv4.ip_forward", "1")
                        .set_sysctl("kernel.shm_rmid_forced", "1");
                },
            )?;
            let s = &r["sysctl"];
            ensure(
                s["net.ipv4.ip_forward"] == "1" && s["kernel.shm_rmid_forced"] == "1",
                || format!("sysctls seen: {s}"),
            )
        },
    ));
    v.push(Case::new("linux.seccomp.errno", "config-linux.md#seccomp", Level::Must,
        "a syscall matched by an SCMP_ACT_ERRNO rule fails with its errnoRet; seccomp is in filter mode",
        |ctx| {
            let r = probe(ctx, &["syscall", "getppid"], |b| {
                b.set_seccomp(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                    "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}));
            })?;
            ensure(r["ok"] == false && r["errno"] == 42, || format!("getppid under the filter: {r}"))?;
            let r = probe(ctx, &[], |b| {
                b.set_seccomp(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                    "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}));
            })?;
            ensure(r["seccomp"] == 2, || format!("Seccomp mode {}", r["seccomp"]))
        }));
    for (prop, tag) in [
        ("private", None),
        ("slave", Some("master:")),
        ("shared", Some("shared:")),
    ] {
        v.push(Case::new(
            format!("linux.rootfs-propagation.{prop}"),
            "config-linux.md#rootfs-mount-propagation",
            Level::Must,
            format!("rootfsPropagation {prop} gives the container's / that propagation"),
            move |ctx| {
                let r = probe(ctx, &[], |b| {
                    b.set_rootfs_propagation(prop);
                })?;
                let root = r["mountinfo"]
                    .as_array()
                    .and_then(|a| a.iter().find(|m| m["mount_point"] == "/"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let opt: Vec<String> =
                    serde_json::from_value(root["optional"].clone()).unwrap_or_default();
                let ok = match tag {
                    None => !opt
                        .iter()
                        .any(|o| o.starts_with("shared:") || o.starts_with("master:")),
                    Some(t) => opt.iter().any(|o| o.starts_with(t)),
                };
                ensure(ok, || format!("with rootfsPropagation {prop} the container's / has propagation fields {opt:?}"))
            },
        ));
    }
    v.push(Case::new(
        "linux.masked-paths",
        "config-linux.md#masked-paths",
        Level::Must,
        "masked paths cannot be read: files read empty (or fail), directories are empty",
        |ctx| {
            let mut b = ctx.bundle()?;
            b.set_args(&[
                "sh",
                "-c",
                "/probe read /proc/kcore; /probe ls /proc/acpi; /probe read /etc/hostname",
            ]);
            let mut masked: Vec<String> = crate::DEFAULT_MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect();
            masked.push("/etc/hostname".into());
            b.spec_mut()["linux"]["maskedPaths"] = json!(masked);
            let out = ctx.observe_output(&b)?;
            let v: Vec<Value> = out
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            ensure(v.len() == 3, || format!("probe output {out:?}"))?;
            let empty = |r: &Value| r["ok"] == false || r["data"] == "";
            ensure(empty(&v[0]), || format!("/proc/kcore readable: {}", v[0]))?;
            ensure(v[1]["ok"] == false || v[1]["entries"] == json!([]), || {
                format!("/proc/acpi: {}", v[1])
            })?;
            ensure(empty(&v[2]), || format!("/etc/hostname readable: {}", v[2]))
        },
    ));
    v.push(Case::new(
        "linux.readonly-paths",
        "config-linux.md#readonly-paths",
        Level::Must,
        "readonly paths cannot be written",
        |ctx| {
            let r = probe(ctx, &["write", "/etc/conf-ro", "x"], |b| {
                b.set_readonly_root(false)
                    .set_readonly_paths(&["/proc/sys", "/etc"]);
            })?;
            ensure(r["ok"] == false && r["errno"] == libc::EROFS, || {
                format!("write under a readonly path: {r}")
            })
        },
    ));
    v.push(Case::new(
        "linux.personality",
        "config-linux.md#personality",
        Level::Must,
        "personality.domain LINUX32 sets the PER_LINUX32 execution domain",
        |ctx| {
            let r = probe(ctx, &["personality"], |b| {
                b.linux_mut()["personality"] = json!({"domain": "LINUX32"});
            })?;
            let p = r["personality"].as_i64().unwrap_or(-1);
            ensure(p & 0xff == 0x0008, || format!("personality {p:#x}"))
        },
    ));
    v.push(Case::new("linux.time-offsets", "config-linux.md#offset-for-time-namespace", Level::Must,
        "a time namespace with timeOffsets shifts CLOCK_MONOTONIC and CLOCK_BOOTTIME",
        |ctx| {
            if !Path::new("/proc/self/ns/time").exists() {
                return Err(skip("kernel has no time namespaces"));
            }
            ctx.require_feature("/linux/namespaces", "time")?;
            let mut b = ctx.bundle()?;
            b.set_args(&["cat", "/proc/self/timens_offsets"]);
            b.set_namespace("time", None);
            b.linux_mut()["timeOffsets"] = json!({"monotonic": {"secs": 86400, "nanosecs": 0}, "boottime": {"secs": 172800, "nanosecs": 0}});
            let out = ctx.observe_output(&b)?;
            ensure(out.contains("86400") && out.contains("172800"), || format!("timens_offsets {out:?}"))
        }));
    v
}
