//! config.md: root, mounts, process, hostname, domainname, hooks.

use std::time::Duration;

use serde_json::{json, Value};

use super::{ensure, not_ok, Case, Ctx, Level, Verdict};
use crate::probe;

fn mount_at<'v>(report: &'v Value, dest: &str) -> Option<&'v Value> {
    report["mountinfo"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["mount_point"] == dest)
}

fn has_opt(m: &Value, opt: &str) -> bool {
    let in_list = |k: &str| {
        m[k].as_array()
            .map(|a| a.iter().any(|o| o == opt))
            .unwrap_or(false)
    };
    in_list("options") || in_list("super_options")
}

/// Runs `/probe ARGS` in a fresh bundle changed by `f` and returns the probe's output.
fn probe_with(
    ctx: &Ctx,
    args: &[&str],
    f: impl FnOnce(&mut crate::Bundle),
) -> Result<Value, super::Finding> {
    let mut b = ctx.bundle()?;
    let mut full = vec!["/probe"];
    full.extend_from_slice(args);
    b.set_args(&full);
    f(&mut b);
    ctx.observe(&b)
}

fn hook(path: &str, script: &str) -> Value {
    json!({"path": path, "args": [path, "-c", script]})
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new("config.root.readonly", "config.md#root", Level::Must,
            "root.readonly true makes the root filesystem read-only inside the container",
            |ctx| {
                let r = probe_with(ctx, &["write", "/x", "y"], |b| { b.set_readonly_root(true); })?;
                ensure(r["ok"] == false && r["errno"] == libc::EROFS, || format!("write to / gave {r}"))
            }),
        Case::new("config.root.writable", "config.md#root", Level::Must,
            "root.readonly false leaves the root filesystem writable",
            |ctx| {
                let r = probe_with(ctx, &["write", "/x", "y"], |b| { b.set_readonly_root(false); })?;
                ensure(r["ok"] == true, || format!("write to / gave {r}"))
            }),
        Case::new("config.mounts.tmpfs-options", "config.md#mounts", Level::Must,
            "each mount is made at its destination with its type and options",
            |ctx| {
                let r = probe_with(ctx, &[], |b| {
                    b.add_mount(json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "nodev", "noexec", "ro", "size=1m"]}));
                })?;
                let m = mount_at(&r, "/data").ok_or_else(|| not_ok("/data is not a mount point"))?;
                ensure(m["fstype"] == "tmpfs", || format!("/data is {}", m["fstype"]))?;
                for o in ["nosuid", "nodev", "noexec", "ro"] {
                    ensure(has_opt(m, o), || format!("/data lacks option {o}: {m}"))?;
                }
                ensure(has_opt(m, "size=1024k"), || format!("/data size is not 1m: {m}"))
            }),
        Case::new("config.mounts.order", "config.md#mounts", Level::Must,
            "mounts are made in the order of the array: a later mount over an earlier one hides it",
            |ctx| {
                let r = probe_with(ctx, &[], |b| {
                    b.add_mount(json!({"destination": "/m/inner", "type": "tmpfs", "source": "first"}));
                    b.add_mount(json!({"destination": "/m", "type": "tmpfs", "source": "second"}));
                    b.add_mount(json!({"destination": "/m/after", "type": "tmpfs", "source": "third"}));
                })?;
                let list = r["mountinfo"].as_array().cloned().unwrap_or_default();
                let pos = |src: &str| list.iter().position(|m| m["source"] == src);
                let (a, b2, c) = (pos("first"), pos("second"), pos("third"));
                ensure(b2.is_some() && c.is_some(), || format!("mounts missing: second {b2:?} third {c:?}"))?;
                ensure(a.is_none_or(|a| a < b2.unwrap_or(0)) && b2 < c, || {
                    format!("mount order wrong: first {a:?}, second {b2:?}, third {c:?}")
                })?;
                let top = mount_at(&r, "/m").map(|m| m["source"].clone());
                ensure(top == Some(json!("second")), || format!("/m shows {top:?}"))
            }),
        Case::new("config.mounts.bind-ro", "config.md#mounts", Level::Must,
            "a bind mount shows the host directory; with ro it cannot be written",
            |ctx| {
                let host = ctx.dir().join("shared");
                std::fs::create_dir_all(&host).map_err(|e| not_ok(format!("harness: {e}")))?;
                std::fs::write(host.join("f"), "from-host").map_err(|e| not_ok(format!("harness: {e}")))?;
                let h = host.display().to_string();
                let r = probe_with(ctx, &["read", "/shared/f"], |b| {
                    b.add_mount(json!({"destination": "/shared", "type": "bind", "source": h,
                        "options": ["rbind", "ro"]}));
                })?;
                ensure(r["data"] == "from-host", || format!("read /shared/f: {r}"))?;
                let r = probe_with(ctx, &["write", "/shared/g", "x"], |b| {
                    b.add_mount(json!({"destination": "/shared", "type": "bind", "source": h,
                        "options": ["rbind", "ro"]}));
                })?;
                ensure(r["errno"] == libc::EROFS, || format!("write to ro bind mount gave {r}"))
            }),
        Case::new("config.process.args", "config.md#process", Level::Must,
            "args are passed to the program exactly (argv[0] included, spaces kept)",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["sh", "-c", "printf '[%s]' \"$0\" \"$@\"", "zero", "a b", "", "--c"]);
                let out = ctx.observe_output(&b)?;
                ensure(out == "[zero][a b][][--c]", || format!("argv seen as {out:?}"))
            }),
        Case::new("config.process.env", "config.md#process", Level::Must,
            "env is the process environment",
            |ctx| {
                let r = probe_with(ctx, &[], |b| { b.set_env(&["PATH=/bin", "A=1", "SPACED=x y", "EMPTY="]); })?;
                let env = &r["env"];
                ensure(env["A"] == "1" && env["SPACED"] == "x y" && env["EMPTY"] == "" && env["PATH"] == "/bin", || {
                    format!("env seen: {env}")
                })
            }),
        Case::new("config.process.cwd", "config.md#process", Level::Must,
            "cwd is the working directory of the process",
            |ctx| {
                let r = probe_with(ctx, &[], |b| { b.set_cwd("/tmp"); })?;
                ensure(r["cwd"] == "/tmp", || format!("cwd {}", r["cwd"]))
            }),
        Case::new("config.process.user", "config.md#user", Level::Must,
            "user.uid, user.gid and additionalGids are the process's ids and groups",
            |ctx| {
                let r = probe_with(ctx, &[], |b| { b.set_user(1000, 1000).set_additional_gids(&[29, 44]); })?;
                ensure(r["uid"] == 1000 && r["euid"] == 1000 && r["gid"] == 1000 && r["egid"] == 1000, || {
                    format!("ids uid {} euid {} gid {} egid {}", r["uid"], r["euid"], r["gid"], r["egid"])
                })?;
                let groups: Vec<u64> = serde_json::from_value(r["groups"].clone()).unwrap_or_default();
                ensure(groups.contains(&29) && groups.contains(&44), || format!("groups {groups:?}"))
            }),
        Case::new("config.process.umask", "config.md#user", Level::Must,
            "user.umask is the process's umask",
            |ctx| {
                let r = probe_with(ctx, &[], |b| { b.set_umask(0o027); })?;
                ensure(r["umask"] == 0o027, || format!("umask {}", r["umask"]))
            }),
        Case::new("config.process.capabilities", "config.md#linux-process", Level::Must,
            "the capability sets are exactly those given (bounding, effective, permitted, inheritable, ambient)",
            |ctx| {
                let caps = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_CHROOT"];
                let r = probe_with(ctx, &[], |b| { b.set_caps(&caps); })?;
                let want: Vec<String> = { let mut v: Vec<String> = caps.iter().map(|s| s.to_string()).collect(); v.sort(); v };
                for set in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
                    let got = probe::caps(&r, set);
                    ensure(got == want, || format!("{set} is {got:?}, want {want:?}"))?;
                }
                Ok(())
            }),
        Case::new("config.process.capabilities-nonroot", "config.md#linux-process", Level::Must,
            "a non-root process gets the effective capabilities it is given only through ambient; with none it has none",
            |ctx| {
                let r = probe_with(ctx, &[], |b| {
                    b.set_user(1000, 1000).set_caps(&[]).set_cap_set("bounding", &["CAP_KILL"]);
                })?;
                let eff = probe::caps(&r, "CapEff");
                let bnd = probe::caps(&r, "CapBnd");
                ensure(eff.is_empty(), || format!("CapEff {eff:?}"))?;
                ensure(bnd == vec!["CAP_KILL".to_string()], || format!("CapBnd {bnd:?}"))
            }),
        Case::new("config.process.rlimits", "config.md#posix-process", Level::Must,
            "each rlimit is set with its soft and hard values",
            |ctx| {
                let r = probe_with(ctx, &[], |b| {
                    b.set_rlimits(&[("RLIMIT_NOFILE", 256, 512), ("RLIMIT_CORE", 0, 0), ("RLIMIT_NPROC", 300, 400)]);
                })?;
                let l = &r["rlimits"];
                ensure(l["RLIMIT_NOFILE"] == json!({"soft": 256, "hard": 512}), || format!("NOFILE {}", l["RLIMIT_NOFILE"]))?;
                ensure(l["RLIMIT_CORE"] == json!({"soft": 0, "hard": 0}), || format!("CORE {}", l["RLIMIT_CORE"]))?;
                ensure(l["RLIMIT_NPROC"] == json!({"soft": 300, "hard": 400}), || format!("NPROC {}", l["RLIMIT_NPROC"]))
            }),
        Case::new("config.process.rlimits-invalid", "config.md#posix-process", Level::Must,
            "an rlimit type the runtime cannot map to the kernel gives an error",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_rlimits(&[("RLIMIT_NOSUCH", 1, 1)]);
                let id = ctx.id("rlim");
                let c = ctx.rt.create(&id, &b);
                if !c.success() { return Ok(()); }
                let s = ctx.rt.start(&id);
                ensure(!s.success(), || "an unknown rlimit was accepted".into())
            }),
        Case::new("config.process.no-new-privileges", "config.md#linux-process", Level::Must,
            "noNewPrivileges true sets no_new_privs; false leaves it clear",
            |ctx| {
                let r = probe_with(ctx, &[], |b| { b.set_no_new_privileges(true); })?;
                ensure(r["no_new_privs"] == 1, || format!("NoNewPrivs {} with true", r["no_new_privs"]))?;
                let r = probe_with(ctx, &[], |b| { b.set_no_new_privileges(false); })?;
                ensure(r["no_new_privs"] == 0, || format!("NoNewPrivs {} with false", r["no_new_privs"]))
            }),
        Case::new("config.process.oom-score-adj", "config.md#linux-process", Level::Must,
            "oomScoreAdj is written to the process's oom_score_adj",
            |ctx| {
                let r = probe_with(ctx, &[], |b| { b.set_oom_score_adj(432); })?;
                ensure(r["oom_score_adj"] == 432, || format!("oom_score_adj {}", r["oom_score_adj"]))
            }),
        Case::new("config.process.no-terminal-stdio", "config.md#process", Level::Must,
            "with terminal false the process's stdio are the runtime's, passed through",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["sh", "-c", "echo out; echo err >&2"]);
                let out = ctx.observe_output(&b)?;
                let id = ctx.rt.ids().last().cloned().unwrap_or_default();
                let err = ctx.rt.container_stderr(&id);
                ensure(out == "out\n" && err.contains("err"), || format!("stdout {out:?}, stderr {err:?}"))
            }),
        Case::new("config.process.terminal", "config.md#process", Level::Must,
            "terminal true gives the process a pseudo-terminal as stdio, whose master is sent to --console-socket",
            terminal_case),
        Case::new("config.hostname", "config.md#hostname", Level::Must,
            "hostname is the container's hostname",
            |ctx| {
                let r = probe_with(ctx, &[], |b| { b.set_hostname("conf-host"); })?;
                ensure(r["hostname"] == "conf-host", || format!("hostname {}", r["hostname"]))
            }),
        Case::new("config.hostname.without-uts", "config-linux.md#namespaces", Level::Must,
            "setting hostname without a new uts namespace gives an error (it would change the host's)",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_hostname("must-not-leak").remove_namespace("uts");
                let id = ctx.id("uts");
                let c = ctx.rt.create(&id, &b);
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                ensure(host.trim() != "must-not-leak", || "the host's hostname was changed".into())?;
                ctx.must_fail(&c, "create with hostname and no uts namespace")
            }),
        Case::new("config.domainname", "config.md#domainname", Level::Must,
            "domainname is the container's NIS domain name",
            |ctx| {
                let r = probe_with(ctx, &[], |b| { b.set_domainname("conf.example"); })?;
                ensure(r["domainname"] == "conf.example", || format!("domainname {}", r["domainname"]))
            }),
        Case::new("config.hooks.create-phase", "config.md#posix-platform-hooks", Level::Must,
            "prestart, createRuntime and createContainer hooks run during create, createRuntime before createContainer, startContainer not yet",
            |ctx| hooks_case(ctx, false)),
        Case::new("config.hooks.start-phase", "config.md#posix-platform-hooks", Level::Must,
            "startContainer runs in the container before the program, poststart after start; poststop on delete",
            |ctx| hooks_case(ctx, true)),
        Case::new("config.hooks.state-stdin", "config.md#posix-platform-hooks", Level::Must,
            "hooks get the container's state JSON on stdin",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["sleep", "100"]);
                let log = ctx.dir().join("state.json");
                b.add_hook("createRuntime", hook("/bin/sh", &format!("cat > {}", log.display())));
                let id = ctx.create(&b, "hstate")?;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let st: Value = serde_json::from_str(&text).map_err(|_| not_ok(format!("hook stdin was not JSON: {text:?}")))?;
                ensure(st["id"] == id.as_str() && st["pid"].as_i64().unwrap_or(0) > 0 && st["bundle"].is_string(), || {
                    format!("hook state {st}")
                })
            }),
        Case::new("config.hooks.env-args", "config.md#posix-platform-hooks", Level::Must,
            "hooks run with the args and env of their entry",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["sleep", "100"]);
                let log = ctx.dir().join("env.txt");
                b.add_hook("createRuntime", json!({"path": "/bin/sh",
                    "args": ["sh", "-c", format!("echo \"$0 $1 $HOOKVAR\" > {}", log.display()), "arg-one"],
                    "env": ["HOOKVAR=hook-value"]}));
                ctx.create(&b, "henv")?;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                ensure(text.trim() == "arg-one  hook-value" || text.trim() == "arg-one hook-value", || format!("hook saw {text:?}"))
            }),
        Case::new("config.hooks.create-failure", "config.md#posix-platform-hooks", Level::Must,
            "a failing createRuntime hook makes create fail and leaves no container",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["sleep", "100"]);
                b.add_hook("createRuntime", hook("/bin/sh", "exit 1"));
                let id = ctx.id("hfail");
                let c = ctx.rt.create(&id, &b);
                ctx.must_fail(&c, "create with a failing createRuntime hook")?;
                let st = ctx.rt.status(&id);
                ensure(st.is_none() || st.as_deref() == Some("stopped"), || format!("container left in state {st:?}"))
            }),
        Case::new("config.hooks.poststop-failure", "config.md#posix-platform-hooks", Level::Must,
            "a failing poststop hook is only a warning: delete succeeds",
            |ctx| {
                let mut b = ctx.bundle()?;
                b.set_args(&["true"]);
                b.add_hook("poststop", hook("/bin/sh", "exit 1"));
                let id = ctx.create(&b, "hpost")?;
                ctx.must(ctx.rt.start(&id), "start")?;
                ctx.rt.wait_status(&id, "stopped", Duration::from_secs(5));
                ctx.must(ctx.rt.delete(&id), "delete with a failing poststop hook")?;
                Ok(())
            }),
    ]
}

/// Hooks append their names to a log; startContainer runs in the container and writes through
/// a bind mount of the log directory.
fn hooks_case(ctx: &Ctx, full: bool) -> Verdict {
    let mut b = ctx.bundle()?;
    let dir = ctx.dir().join("hooklog");
    std::fs::create_dir_all(&dir).map_err(|e| not_ok(format!("harness: {e}")))?;
    let log = dir.join("log");
    let l = log.display().to_string();
    b.set_args(&["sh", "-c", "echo program >> /hooklog/log"]);
    b.add_mount(json!({"destination": "/hooklog", "type": "bind", "source": dir.display().to_string(), "options": ["rbind", "rw"]}));
    for stage in [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ] {
        b.add_hook(stage, hook("/bin/sh", &format!("echo {stage} >> {l}")));
    }
    b.add_hook(
        "startContainer",
        hook("/bin/sh", "echo startContainer >> /hooklog/log"),
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let id = ctx.create(&b, "hooks")?;
    let after_create = read();
    let lines: Vec<&str> = after_create.lines().collect();
    let pos = |n: &str| lines.iter().position(|l| *l == n);
    if !full {
        for n in ["prestart", "createRuntime", "createContainer"] {
            ensure(pos(n).is_some(), || {
                format!("{n} did not run during create (log {lines:?})")
            })?;
        }
        ensure(pos("createRuntime") < pos("createContainer"), || {
            format!("createContainer ran before createRuntime: {lines:?}")
        })?;
        return ensure(
            pos("startContainer").is_none() && pos("program").is_none(),
            || format!("start-phase hooks or the program ran during create: {lines:?}"),
        );
    }
    ctx.must(ctx.rt.start(&id), "start")?;
    ctx.rt.wait_status(&id, "stopped", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    let after_start = read();
    let lines: Vec<&str> = after_start.lines().collect();
    let pos = |n: &str| lines.iter().position(|l| *l == n);
    ensure(pos("startContainer").is_some(), || {
        format!("startContainer did not run in the container: {lines:?}")
    })?;
    ensure(pos("startContainer") < pos("program"), || {
        format!("startContainer did not run before the program: {lines:?}")
    })?;
    ensure(pos("poststart").is_some(), || {
        format!("poststart did not run: {lines:?}")
    })?;
    ensure(pos("poststop").is_none(), || {
        format!("poststop ran before delete: {lines:?}")
    })?;
    ctx.must(ctx.rt.delete(&id), "delete")?;
    let lines = read();
    ensure(lines.lines().last() == Some("poststop"), || {
        format!("poststop did not run on delete: {lines:?}")
    })
}

/// Receives the pty master over `--console-socket` and reads what the container prints on it.
fn terminal_case(ctx: &Ctx) -> Verdict {
    use std::io::{IoSliceMut, Read};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

    let sock = ctx.dir().join("console.sock");
    let listener = UnixListener::bind(&sock).map_err(|e| not_ok(format!("harness: bind: {e}")))?;
    let receiver = std::thread::spawn(move || -> Option<OwnedFd> {
        let (conn, _) = listener.accept().ok()?;
        let mut buf = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&conn);
        let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::empty()).ok()?;
        for c in msg.cmsgs().ok()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&f) = fds.first() {
                    // SAFETY: SCM_RIGHTS installed `f` in this process just now; nothing else
                    // owns it, so wrapping it transfers that sole ownership.
                    return Some(unsafe { OwnedFd::from_raw_fd(f) });
                }
            }
        }
        None
    });
    let mut b = ctx.bundle()?;
    b.set_terminal(true).set_args(&[
        "sh",
        "-c",
        "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty-ok; sleep 0.5",
    ]);
    let id = ctx.id("tty");
    let s = sock.display().to_string();
    let created = ctx
        .rt
        .create_with(&id, &b, &["--console-socket", s.as_str()]);
    if !created.success() {
        // Unblock the receiver before failing.
        let _ = std::os::unix::net::UnixStream::connect(&sock);
        let _ = receiver.join();
        return Err(not_ok(format!(
            "create --console-socket failed: {}",
            super::ctx::brief(&created)
        )));
    }
    let master = receiver
        .join()
        .ok()
        .flatten()
        .ok_or_else(|| not_ok("no pty master received on the console socket"))?;
    ctx.must(ctx.rt.start(&id), "start")?;
    let mut file = std::fs::File::from(master);
    let (tx, rx) = std::sync::mpsc::channel();
    // A runtime that leaks the pty slave would keep this read blocked: never wait on it
    // unbounded (the thread is left behind in that case).
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.windows(6).any(|w| w == b"tty-ok") {
                break;
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&out).into_owned());
    });
    ctx.rt.wait_status(&id, "stopped", Duration::from_secs(5));
    let _ = ctx.rt.delete_force(&id);
    let out = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    ensure(out.contains("tty-ok"), || {
        format!("stdio were not a terminal; pty read {out:?}")
    })
}
