//! Reports what a container process sees, as JSON on stdout.
//!
//! With no arguments: the full report (ids, umask, capabilities, no_new_privs, seccomp,
//! rlimits, pids, hostname, cwd, env, mounts, namespaces, oom_score_adj, cgroup, open fds).
//! Sub-commands probe one thing each; see `usage()`. Everything is read from /proc or done with
//! std so the binary stays small and static; the few raw calls are in `sys`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::ExitCode;

use serde_json::{json, Map, Value};

fn usage() -> &'static str {
    "usage: probe [report | sysctl NAME... | stat PATH | open PATH r|w|rw | write PATH TEXT |\n\
     read PATH | mkdir PATH | ls PATH | syscall getppid|getuid|getpgrp|sync|NR [ARG...] |\n\
     syscalls NR[:ARG...]... | personality | sched | sleep SECS | exit CODE | stdin]"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = match a.as_slice() {
        [] | ["report"] => report(),
        ["sysctl", names @ ..] => sysctl(names),
        ["stat", path] => stat(path),
        ["open", path, mode] => open(path, mode),
        ["write", path, text] => result(fs::write(path, text)),
        ["read", path] => match fs::read(path) {
            Ok(d) => json!({"ok": true, "data": String::from_utf8_lossy(&d)}),
            Err(e) => err(&e),
        },
        ["mkdir", path] => result(fs::create_dir(path)),
        ["ls", path] => ls(path),
        ["syscall", name] if sys::number(name).is_none() => sys::call(name),
        ["syscall", nr, args @ ..] => match sys::parse_call(nr, args) {
            Some((nr, args)) => sys::raw_call(nr, &args),
            None => {
                json!({"ok": false, "error": format!("bad syscall number or argument in {a:?}")})
            }
        },
        ["syscalls", specs @ ..] => sys::batch(specs),
        ["personality"] => json!({"personality": sys::personality()}),
        ["sched"] => sched(),
        ["sleep", secs] => {
            let s: f64 = secs.parse().unwrap_or(0.0);
            std::thread::sleep(std::time::Duration::from_secs_f64(s));
            return ExitCode::SUCCESS;
        }
        ["exit", code] => return ExitCode::from(code.parse::<u8>().unwrap_or(1)),
        ["stdin"] => {
            let mut s = String::new();
            let r = io::stdin().read_to_string(&mut s);
            json!({"ok": r.is_ok(), "stdin": s})
        }
        _ => {
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
    };
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{out}");
    let _ = stdout.flush();
    ExitCode::SUCCESS
}

fn err(e: &io::Error) -> Value {
    json!({"ok": false, "errno": e.raw_os_error(), "error": e.to_string()})
}

fn result(r: io::Result<()>) -> Value {
    match r {
        Ok(()) => json!({"ok": true}),
        Err(e) => err(&e),
    }
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// The `Key:\tvalue` lines of /proc/self/status.
fn status() -> BTreeMap<String, String> {
    read("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn ids(s: &str) -> Vec<u64> {
    s.split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect()
}

fn report() -> Value {
    let st = status();
    let get = |k: &str| st.get(k).cloned().unwrap_or_default();
    let uids = ids(&get("Uid"));
    let gids = ids(&get("Gid"));
    let caps: Map<String, Value> = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .map(|k| (k.to_string(), json!(get(k))))
        .collect();
    let umask = u32::from_str_radix(&get("Umask"), 8).ok();
    let env: Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                json!(v.to_string_lossy().into_owned()),
            )
        })
        .collect();
    let mut ns = Map::new();
    if let Ok(rd) = fs::read_dir("/proc/self/ns") {
        for e in rd.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                ns.insert(
                    e.file_name().to_string_lossy().into_owned(),
                    json!(t.to_string_lossy()),
                );
            }
        }
    }
    json!({
        "uid": uids.first(), "euid": uids.get(1),
        "gid": gids.first(), "egid": gids.get(1),
        "groups": ids(&get("Groups")),
        "umask": umask,
        "caps": caps,
        "no_new_privs": get("NoNewPrivs").parse::<u32>().ok(),
        "seccomp": get("Seccomp").parse::<u32>().ok(),
        "rlimits": rlimits(),
        "pid": std::process::id(),
        "ppid": std::os::unix::process::parent_id(),
        "hostname": read("/proc/sys/kernel/hostname").map(|s| s.trim_end().to_string()),
        "domainname": read("/proc/sys/kernel/domainname").map(|s| s.trim_end().to_string()),
        "cwd": std::env::current_dir().ok().map(|p| p.to_string_lossy().into_owned()),
        "args": std::env::args().collect::<Vec<_>>(),
        "env": env,
        "mountinfo": mountinfo(),
        "namespaces": ns,
        "oom_score_adj": read("/proc/self/oom_score_adj").and_then(|s| s.trim().parse::<i32>().ok()),
        "cgroup": cgroup(),
        "fds": fds(),
    })
}

/// /proc/self/limits as `{"RLIMIT_NOFILE": {"soft": n|null, "hard": n|null}}` (null =
/// unlimited).
fn rlimits() -> Value {
    const NAMES: &[(&str, &str)] = &[
        ("Max cpu time", "RLIMIT_CPU"),
        ("Max file size", "RLIMIT_FSIZE"),
        ("Max data size", "RLIMIT_DATA"),
        ("Max stack size", "RLIMIT_STACK"),
        ("Max core file size", "RLIMIT_CORE"),
        ("Max resident set", "RLIMIT_RSS"),
        ("Max processes", "RLIMIT_NPROC"),
        ("Max open files", "RLIMIT_NOFILE"),
        ("Max locked memory", "RLIMIT_MEMLOCK"),
        ("Max address space", "RLIMIT_AS"),
        ("Max file locks", "RLIMIT_LOCKS"),
        ("Max pending signals", "RLIMIT_SIGPENDING"),
        ("Max msgqueue size", "RLIMIT_MSGQUEUE"),
        ("Max nice priority", "RLIMIT_NICE"),
        ("Max realtime priority", "RLIMIT_RTPRIO"),
        ("Max realtime timeout", "RLIMIT_RTTIME"),
    ];
    let text = read("/proc/self/limits").unwrap_or_default();
    let mut out = Map::new();
    for line in text.lines().skip(1) {
        let Some(&(prefix, name)) = NAMES.iter().find(|(p, _)| line.starts_with(p)) else {
            continue;
        };
        let mut rest = line[prefix.len()..].split_whitespace();
        let val = |s: Option<&str>| match s {
            Some("unlimited") | None => Value::Null,
            Some(n) => n.parse::<u64>().map(Value::from).unwrap_or(Value::Null),
        };
        let soft = val(rest.next());
        let hard = val(rest.next());
        out.insert(name.to_string(), json!({"soft": soft, "hard": hard}));
    }
    Value::Object(out)
}

/// /proc/self/mountinfo, one object a line.
fn mountinfo() -> Value {
    let text = read("/proc/self/mountinfo").unwrap_or_default();
    let mounts: Vec<Value> = text
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(json!({
                "id": f.first()?.parse::<u64>().ok(),
                "parent": f.get(1)?.parse::<u64>().ok(),
                "root": unescape(f.get(3)?),
                "mount_point": unescape(f.get(4)?),
                "options": f.get(5)?.split(',').collect::<Vec<_>>(),
                "optional": f.get(6..).unwrap_or(&[]),
                "fstype": p.first()?,
                "source": p.get(1).map(|s| unescape(s)),
                "super_options": p.get(2).map(|s| s.split(',').collect::<Vec<_>>()),
            }))
        })
        .collect();
    json!(mounts)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(n) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
            {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// /proc/self/cgroup as `[{"id", "controllers", "path"}]`.
fn cgroup() -> Value {
    let text = read("/proc/self/cgroup").unwrap_or_default();
    let v: Vec<Value> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let id = it.next()?;
            let ctl = it.next()?;
            let path = it.next()?;
            Some(json!({"id": id.parse::<u32>().ok(), "controllers": ctl, "path": path}))
        })
        .collect();
    json!(v)
}

/// Open fds with their link targets (the fd of the directory listing itself excluded).
fn fds() -> Value {
    let mut out = Map::new();
    let Ok(rd) = fs::read_dir("/proc/self/fd") else {
        return Value::Object(out);
    };
    let entries: Vec<_> = rd.flatten().collect();
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(t) = fs::read_link(e.path()) {
            out.insert(name, json!(t.to_string_lossy()));
        }
    }
    // The read_dir handle was open while listing; it is gone now, so drop dangling entries.
    out.retain(|k, _| fs::symlink_metadata(format!("/proc/self/fd/{k}")).is_ok());
    Value::Object(out)
}

fn sysctl(names: &[&str]) -> Value {
    let m: Map<String, Value> = names
        .iter()
        .map(|n| {
            let path = format!("/proc/sys/{}", n.replace('.', "/"));
            let v = read(&path).map(|s| s.trim_end().to_string());
            (n.to_string(), json!(v))
        })
        .collect();
    json!({"sysctl": m})
}

fn stat(path: &str) -> Value {
    match fs::symlink_metadata(path) {
        Ok(m) => {
            let ft = m.file_type();
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else {
                "file"
            };
            let rdev = m.rdev();
            let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
            let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
            json!({
                "ok": true, "kind": kind, "mode": m.permissions().mode() & 0o7777,
                "uid": m.uid(), "gid": m.gid(), "size": m.size(), "ino": m.ino(),
                "dev": m.dev(), "rdev_major": major, "rdev_minor": minor,
            })
        }
        Err(e) => err(&e),
    }
}

fn open(path: &str, mode: &str) -> Value {
    let mut o = fs::OpenOptions::new();
    match mode {
        "r" => o.read(true),
        "w" => o.write(true),
        _ => o.read(true).write(true),
    };
    match o.open(path) {
        Ok(_) => json!({"ok": true}),
        Err(e) => err(&e),
    }
}

fn ls(path: &str) -> Value {
    match fs::read_dir(path) {
        Ok(rd) => {
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            json!({"ok": true, "entries": names})
        }
        Err(e) => err(&e),
    }
}

/// How this process is scheduled: `ioprio` (class and level from ioprio_get), `sched`
/// (sched_getattr: policy, flags, nice, priority, runtime, deadline, period), `mempolicy`
/// (get_mempolicy: mode number, mode flags, node list), and `Cpus_allowed_list` and
/// `Mems_allowed_list` from /proc/self/status.
fn sched() -> Value {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    json!({
        "ioprio": sys::ioprio(),
        "sched": sys::sched_attr(),
        "mempolicy": sys::mempolicy(),
        "cpus_allowed": field("Cpus_allowed_list"),
        "mems_allowed": field("Mems_allowed_list"),
    })
}

/// The raw calls std does not offer.
mod sys {
    use serde_json::{json, Value};

    /// Makes one argument-less system call by name and reports its result or errno, so a test
    /// can see a seccomp filter's errno action.
    pub fn call(name: &str) -> Value {
        let nr = match name {
            "getppid" => libc::SYS_getppid,
            "getuid" => libc::SYS_getuid,
            "getpgrp" => libc::SYS_getpgrp,
            "sync" => libc::SYS_sync,
            _ => return json!({"ok": false, "error": format!("unknown syscall {name}")}),
        };
        // SAFETY: every number in the table is a system call that takes no arguments and
        // touches no user memory, so passing none is the whole contract.
        let rc = unsafe { libc::syscall(nr) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            json!({"ok": false, "errno": e.raw_os_error(), "error": e.to_string()})
        } else {
            json!({"ok": true, "result": rc})
        }
    }

    /// A number as the probe takes them: decimal (negative too) or `0x` hex, as the bits of a
    /// syscall argument.
    pub fn number(s: &str) -> Option<libc::c_long> {
        if let Some(hex) = s.strip_prefix("0x") {
            u64::from_str_radix(hex, 16).ok().map(|v| v as libc::c_long)
        } else {
            s.parse::<i64>().ok().map(|v| v as libc::c_long)
        }
    }

    /// A syscall number and up to six arguments.
    pub fn parse_call(nr: &str, args: &[&str]) -> Option<(libc::c_long, Vec<libc::c_long>)> {
        if args.len() > 6 {
            return None;
        }
        let args = args.iter().map(|a| number(a)).collect::<Option<Vec<_>>>()?;
        Some((number(nr)?, args))
    }

    /// The calls that return twice (in a new process too): clone, fork, vfork, clone3.
    const FORKING: &[libc::c_long] = &[
        libc::SYS_clone,
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_clone3,
    ];

    /// Make system call `nr` with `args` (missing ones are 0). A call that made a process
    /// ends that process at once and reaps it, so only the caller goes on.
    fn raw(nr: libc::c_long, args: &[libc::c_long]) -> libc::c_long {
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        // SAFETY: the caller chooses the call and its arguments; the probe runs inside a test
        // container (or a child made for this one call, see `batch`), and the tests pass
        // only arguments that point at nothing (0 or small invalid addresses) or are plain
        // integers, so the kernel touches no memory of ours.
        let rc = unsafe { libc::syscall(nr, a(0), a(1), a(2), a(3), a(4), a(5)) };
        if FORKING.contains(&nr) {
            if rc == 0 {
                // SAFETY: the new process leaves at once, running nothing of the parent's.
                unsafe { libc::_exit(0) };
            }
            if rc > 0 {
                let mut st = 0;
                // SAFETY: waits for the process just made; `st` is a live int.
                unsafe { libc::waitpid(rc as libc::pid_t, &mut st, libc::__WALL) };
            }
        }
        rc
    }

    /// One raw system call in this process: `{"ok": true, "result": N}` or its errno.
    pub fn raw_call(nr: libc::c_long, args: &[libc::c_long]) -> Value {
        if raw(nr, args) < 0 {
            errno_json()
        } else {
            json!({"ok": true, "result": 0})
        }
    }

    /// Each `NR[:ARG...]` in a child process of its own (so a call that changes the process,
    /// such as `unshare` or `personality`, changes nothing else): `{"results": {SPEC: ERRNO}}`
    /// with 0 for success, or `{"signal": N}` when a filter killed the child.
    pub fn batch(specs: &[&str]) -> Value {
        let mut out = serde_json::Map::new();
        for spec in specs {
            let mut parts = spec.split(':');
            let nr = parts.next().unwrap_or_default();
            let args: Vec<&str> = parts.collect();
            let Some((nr, args)) = parse_call(nr, &args) else {
                out.insert((*spec).to_owned(), json!({"error": "bad spec"}));
                continue;
            };
            // SAFETY: the probe is single-threaded; the child only makes the call and leaves
            // with `_exit`.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let code = if raw(nr, &args) < 0 {
                    std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(255)
                } else {
                    0
                };
                // SAFETY: leaves the child without running the parent's exit handlers.
                unsafe { libc::_exit(code.clamp(0, 255)) };
            }
            if pid < 0 {
                out.insert((*spec).to_owned(), errno_json());
                continue;
            }
            let mut st = 0;
            // SAFETY: waits for the child just forked; `st` is a live int.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            let v = if libc::WIFEXITED(st) {
                json!(libc::WEXITSTATUS(st))
            } else {
                json!({"signal": libc::WTERMSIG(st)})
            };
            out.insert((*spec).to_owned(), v);
        }
        json!({ "results": out })
    }

    fn errno_json() -> Value {
        let e = std::io::Error::last_os_error();
        json!({"ok": false, "errno": e.raw_os_error(), "error": e.to_string()})
    }

    /// ioprio_get(IOPRIO_WHO_PROCESS, 0): `{"class": N, "level": N}` (class 1 RT, 2 BE, 3 IDLE,
    /// 0 none).
    pub fn ioprio() -> Value {
        // SAFETY: ioprio_get takes two integers and touches no memory; who 0 is this thread.
        let rc = unsafe { libc::syscall(libc::SYS_ioprio_get, 1 as libc::c_int, 0 as libc::c_int) };
        if rc < 0 {
            return errno_json();
        }
        json!({"class": rc >> 13, "level": rc & 7})
    }

    /// sched_getattr(0, ...) with the 56-byte `struct sched_attr` (VER1).
    pub fn sched_attr() -> Value {
        let mut buf = [0u8; 56];
        // SAFETY: `buf` is 56 writable bytes and the call is told so (size 56); the kernel writes
        // at most that many. pid 0 is this thread; flags must be 0.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0 as libc::pid_t,
                buf.as_mut_ptr(),
                56 as libc::c_uint,
                0 as libc::c_uint,
            )
        };
        if rc < 0 {
            return errno_json();
        }
        let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap_or_default());
        let u64_at = |o: usize| u64::from_ne_bytes(buf[o..o + 8].try_into().unwrap_or_default());
        json!({
            "policy": u32_at(4),
            "flags": u64_at(8),
            "nice": u32_at(16) as i32,
            "priority": u32_at(20),
            "runtime": u64_at(24),
            "deadline": u64_at(32),
            "period": u64_at(40),
        })
    }

    /// get_mempolicy(&mode, mask, 1025, 0, 0): the mode (with its MPOL_F_* flags split off)
    /// and the nodes of the mask.
    pub fn mempolicy() -> Value {
        let mut mode: libc::c_int = 0;
        let mut mask = [0 as libc::c_ulong; 16];
        // SAFETY: `mode` is a writable int and `mask` holds 16 * 64 = 1024 writable bits; maxnode
        // 1025 makes the kernel use 1024 bits (its off-by-one). addr 0 and flags 0 ask for this
        // thread's policy.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_get_mempolicy,
                &mut mode as *mut libc::c_int,
                mask.as_mut_ptr(),
                1025 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc < 0 {
            return errno_json();
        }
        let nodes: Vec<u32> = (0..1024u32)
            .filter(|n| mask[(n / 64) as usize] & (1 << (n % 64)) != 0)
            .collect();
        json!({"mode": mode & 0xff, "flags": mode & !0xff, "nodes": nodes})
    }

    /// The current execution domain (personality(0xffffffff) queries without changing it).
    pub fn personality() -> i64 {
        // SAFETY: 0xffffffff is the documented query value: the call changes nothing and
        // touches no memory.
        i64::from(unsafe { libc::personality(0xffff_ffff) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_octal() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain\\"), "/plain\\");
    }

    #[test]
    fn report_has_the_documented_keys() {
        let r = report();
        for k in [
            "uid",
            "caps",
            "rlimits",
            "mountinfo",
            "namespaces",
            "cgroup",
            "fds",
            "env",
        ] {
            assert!(!r[k].is_null(), "{k} missing");
        }
        assert!(r["rlimits"]["RLIMIT_NOFILE"].is_object());
    }
}
