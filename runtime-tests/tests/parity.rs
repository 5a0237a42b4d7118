//! berth where runc 1.1.5 (Debian's) or the spec decides, checked with real containers and,
//! where runc's behaviour is the rule, against runc in the same test: `kill` of an exited
//! container (what containerd's shim parses), the loopback of a new network namespace,
//! supplementary groups as a set, the state and the timeout of hooks, output errors, and range
//! checks of command-line numbers. Every test checks that nothing leaked, also when it fails.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime_tests::{Bundle, Runtime};
use serde_json::{json, Value};

use common::{runtime_name as name, with_runtimes as checked};

/// Create and start `bundle` as `tag`, returning the id; `wait` for status `stopped` if asked.
fn started(rt: &Runtime, b: &Bundle, tag: &str, stop: bool) -> String {
    let id = rt.new_id(tag);
    let out = rt.create(&id, b);
    assert!(out.success(), "{}: {}", name(rt), out.describe());
    let out = rt.start(&id);
    assert!(out.success(), "{}: {}", name(rt), out.describe());
    if stop {
        rt.wait_stopped(&id);
    }
    id
}

/// (exit code, whether stderr says `want`).
fn outcome(out: &runtime_tests::RunOutput, want: &str) -> (Option<i32>, bool) {
    (out.code(), out.stderr.contains(want))
}

#[test]
fn kill_of_an_exited_container_is_runcs_not_running() {
    checked(true, |rts, b| {
        b.set_args(&["true"]);
        let mut seen = Vec::new();
        for rt in rts {
            let id = started(rt, b, "killstop", true);
            let log = rt.root.with_file_name(format!("{}-kill.json", name(rt)));
            let log = log.to_str().unwrap();
            let plain = rt.kill(&id, "KILL");
            let zero = rt.kill(&id, "0");
            let all = rt.kill_all(&id, "KILL");
            let all_term = rt.kill_all(&id, "TERM");
            let json = rt.cmd(&["--log", log, "--log-format", "json", "kill", &id, "KILL"]);
            let last: Value = std::fs::read_to_string(log)
                .ok()
                .and_then(|t| t.lines().last().map(str::to_owned))
                .and_then(|l| serde_json::from_str(&l).ok())
                .unwrap_or_default();
            let pause = rt.pause(&id);
            let row = (
                outcome(&plain, "container not running"),
                outcome(&zero, "container not running"),
                all.code(),
                all_term.code(),
                (json.code(), last["level"].clone(), last["msg"].clone()),
                outcome(&pause, "container not running"),
            );
            seen.push((name(rt), row));
            let del = rt.delete(&id);
            assert!(del.success(), "{}: {}", name(rt), del.describe());
            // A container that is gone: the shim matches "does not exist".
            for verb in [
                &["state", &id][..],
                &["kill", &id, "KILL"],
                &["delete", &id],
            ] {
                let out = rt.cmd(verb);
                assert_eq!(out.code(), Some(1), "{}: {}", name(rt), out.describe());
                assert!(
                    out.stderr.contains("does not exist"),
                    "{}: {}",
                    name(rt),
                    out.describe()
                );
            }
        }
        let want = (
            (Some(1), true),
            (Some(1), true),
            Some(0),
            Some(0),
            (
                Some(1),
                Value::from("error"),
                Value::from("container not running"),
            ),
            (Some(1), true),
        );
        for (who, row) in &seen {
            assert_eq!(row, &want, "{who}: {seen:?}");
        }
    });
}

#[test]
fn kill_signal_0_and_sigkill_of_a_paused_container_as_runc() {
    checked(true, |rts, b| {
        b.set_args(&["sleep", "100"]);
        for rt in rts {
            let id = started(rt, b, "killrun", false);
            let out = rt.kill(&id, "0");
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            let out = rt.kill_all(&id, "0");
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            assert_eq!(rt.status(&id).as_deref(), Some("running"), "{}", name(rt));
            // SIGKILL to a paused container's init ends it (the freezer is thawed for it).
            let out = rt.pause(&id);
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            let out = rt.kill(&id, "KILL");
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            rt.wait_stopped(&id);
            assert!(rt.delete(&id).success(), "{}", name(rt));
        }
    });
}

#[test]
fn new_network_namespace_has_loopback_up_as_runc() {
    checked(true, |rts, b| {
        // Nothing listens on port 1: with lo up the connection is refused; with lo down
        // 127.0.0.1 is unreachable.
        b.set_args(&[
            "sh",
            "-c",
            "ip link show lo; nc 127.0.0.1 1 </dev/null; true",
        ]);
        for rt in rts {
            let id = rt.new_id("lo");
            let out = rt.run(&id, b);
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            let link = out.stdout.lines().next().unwrap_or_default().to_owned();
            assert!(
                link.contains("<LOOPBACK,UP,LOWER_UP>"),
                "{}: lo is not up: {link:?}",
                name(rt)
            );
            let said = rt.container_stderr(&id);
            assert!(
                said.contains("refused") && !said.contains("unreachable"),
                "{}: 127.0.0.1 is not reachable: {said:?}",
                name(rt)
            );
        }
    });
}

#[test]
fn additional_gids_are_a_set_as_runc() {
    checked(true, |rts, b| {
        b.set_user(1000, 1000)
            .set_additional_gids(&[1000, 29, 44, 100, 29])
            .set_args(&["sh", "-c", "grep Groups: /proc/self/status; exec sleep 100"]);
        for rt in rts {
            let id = started(rt, b, "groups", false);
            runtime_tests::wait_for(Duration::from_secs(10), || {
                rt.container_stdout(&id).contains('\n')
            });
            let groups = rt.container_stdout(&id);
            assert_eq!(
                groups.split_whitespace().collect::<Vec<_>>(),
                ["Groups:", "29", "44", "100", "1000"],
                "{}: init's groups",
                name(rt)
            );
            // exec with repeated -g: added to the configuration's groups, each once.
            let out = rt.exec_with(
                &id,
                &["-u", "1000:1000", "-g", "44", "-g", "29", "-g", "44"],
                &["grep", "Groups:", "/proc/self/status"],
            );
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            assert_eq!(
                out.stdout.split_whitespace().collect::<Vec<_>>(),
                ["Groups:", "29", "44", "100", "1000"],
                "{}: exec's groups",
                name(rt)
            );
        }
    });
}

/// A hook that saves the state it gets on stdin as `NAME.json` beside the script.
fn saving_hook(b: &Bundle, name: &str) -> Value {
    let path = b.dir().join(format!("{name}.json"));
    let script = b
        .write_script(
            &format!("{name}.sh"),
            &format!(
                "#!/bin/sh\ncat > {}.tmp && mv {0}.tmp {0}\n",
                path.display()
            ),
        )
        .unwrap();
    json!({"path": script})
}

#[test]
fn poststart_hook_gets_the_pid_that_was_started() {
    checked(false, |rts, b| {
        let rt = rts[0];
        // `true` has often exited (and been reaped) by the time poststart runs: the state
        // must still name the process that was started, status running.
        b.set_args(&["true"]);
        let hook = saving_hook(b, "poststart");
        b.add_hook("poststart", hook);
        let saved = b.dir().join("poststart.json");
        for _ in 0..40 {
            let _ = std::fs::remove_file(&saved);
            let id = rt.new_id("poststart");
            let out = rt.create(&id, b);
            assert!(out.success(), "{}", out.describe());
            let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
            let out = rt.start(&id);
            assert!(out.success(), "{}", out.describe());
            let st: Value =
                serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
            assert_eq!(st["status"], "running", "{st}");
            assert_eq!(st["pid"].as_i64(), Some(pid), "{st}");
            assert_eq!(st["id"], id.as_str(), "{st}");
            rt.wait_stopped(&id);
            assert!(rt.delete(&id).success());
        }
    });
}

/// Processes whose command line is exactly `cmdline` (NUL-separated).
fn processes_with_cmdline(cmdline: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if c == cmdline.as_bytes() {
                v.push(pid);
            }
        }
    }
    v
}

#[test]
fn hook_output_and_stdin_never_block_create_and_timeout_holds() {
    checked(false, |rts, b| {
        let rt = rts[0];
        b.set_args(&["true"]);
        let base = b.spec().clone();
        let with_hook = |b: &mut Bundle, body: &str, timeout: Option<u64>| {
            *b.spec_mut() = base.clone();
            let script = b.write_script("hook.sh", body).unwrap();
            let mut hook = json!({"path": script});
            if let Some(t) = timeout {
                hook["timeout"] = json!(t);
            }
            b.add_hook("prestart", hook);
        };

        // 1 MiB to stderr, then success, no timeout: its output is read while it runs.
        with_hook(
            b,
            "#!/bin/sh\nhead -c 1048576 /dev/zero | tr '\\0' x >&2\nexit 0\n",
            None,
        );
        let id = rt.new_id("hookbig");
        let out = rt.create(&id, b);
        assert!(out.success(), "{}", out.describe());
        assert!(rt.delete_force(&id).success());

        // 1 MiB to stdout and stderr, then failure: the error says so, with the start of it.
        with_hook(
            b,
            "#!/bin/sh\nhead -c 1048576 /dev/zero | tr '\\0' y\nhead -c 1048576 /dev/zero | tr '\\0' x >&2\nexit 3\n",
            None,
        );
        let out = rt.create(&rt.new_id("hookfail"), b);
        assert!(!out.success() && !out.timed_out, "{}", out.describe());
        assert!(
            out.stderr.contains("exit status 3") && out.stderr.contains("xxxx"),
            "{}",
            out.describe()
        );
        assert!(out.stderr.len() < 512 * 1024, "the whole output was kept");

        // A hook that never reads its stdin, with a state bigger than a pipe (annotations),
        // and a child that keeps every pipe open: the 1 s timeout still ends it all.
        let marker = format!("{}", 7000 + std::process::id() % 1000);
        with_hook(
            b,
            &format!("#!/bin/sh\nsleep {marker} &\nexec sleep {marker}\n"),
            Some(1),
        );
        b.set_annotation("big", &"a".repeat(256 * 1024));
        let start = Instant::now();
        let out = rt.create(&rt.new_id("hookslow"), b);
        let took = start.elapsed();
        assert!(!out.success() && !out.timed_out, "{}", out.describe());
        assert!(out.stderr.contains("timed out"), "{}", out.describe());
        assert!(took < Duration::from_secs(8), "create took {took:?}");
        let left = processes_with_cmdline(&format!("sleep\0{marker}\0"));
        assert!(left.is_empty(), "the hook's processes are left: {left:?}");

        // A hook that fills stderr and never exits: the timeout holds too.
        with_hook(b, "#!/bin/sh\nexec tr '\\0' x < /dev/zero >&2\n", Some(1));
        let start = Instant::now();
        let out = rt.create(&rt.new_id("hookspin"), b);
        assert!(!out.success() && !out.timed_out, "{}", out.describe());
        assert!(out.stderr.contains("timed out"), "{}", out.describe());
        assert!(start.elapsed() < Duration::from_secs(8));

        // A hook that succeeds but leaves a child holding its pipes: create goes on.
        let pidfile = b.dir().join("bg.pid");
        with_hook(
            b,
            &format!(
                "#!/bin/sh\nsleep {marker} &\necho $! > {}\nexit 0\n",
                pidfile.display()
            ),
            None,
        );
        let id = rt.new_id("hookbg");
        let out = rt.create(&id, b);
        let bg: i32 = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if bg > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(bg),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert!(out.success(), "{}", out.describe());
        assert!(out.elapsed < Duration::from_secs(8), "{}", out.describe());
        assert!(rt.delete_force(&id).success());
    });
}

/// Run berth with stdout as given and stderr captured: (status, stderr).
fn berth_to(rt: &Runtime, stdout: Stdio, args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = Command::new(&rt.bin)
        .arg("--root")
        .arg(&rt.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("run berth");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A pipe whose reading end is already closed.
fn closed_pipe() -> Stdio {
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    Stdio::from(w)
}

#[test]
fn output_errors_are_errors_not_aborts() {
    checked(false, |rts, b| {
        let rt = rts[0];
        b.set_args(&["sleep", "100"]);
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(started(rt, b, "out", false));
        }
        let id = ids[0].as_str();
        let bundle = b.dir().to_str().unwrap().to_owned();
        let images = b.dir().join("images").to_str().unwrap().to_owned();
        let commands: Vec<Vec<&str>> = vec![
            vec!["state", id],
            vec!["list"],
            vec!["list", "-q"],
            vec!["list", "--format", "json"],
            vec!["ps", "--format", "json", id],
            vec!["ps", id],
            vec!["events", "--stats", id],
            vec!["features"],
            vec!["validate", "--bundle", &bundle],
            vec!["--help"],
            vec!["--version"],
            vec!["kill", "--help"],
            // `berth image` runs the berth-image binary beside berth.
            vec!["image", "--image-root", &images, "ls"],
            vec!["image", "--help"],
        ];
        for args in &commands {
            // The reader went away (`berth state ID | true`): quiet, no abort.
            let (st, err) = berth_to(rt, closed_pipe(), args);
            assert_eq!(st.signal(), None, "{args:?}: killed by a signal; {err}");
            assert_eq!(st.code(), Some(141), "{args:?}: {err}");
            assert_eq!(err, "", "{args:?}");
            // A full disk: an error exit that says so.
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            let (st, err) = berth_to(rt, Stdio::from(full), args);
            assert_eq!(st.code(), Some(1), "{args:?}: {st:?} {err}");
            assert!(
                err.contains("write to stdout") && err.contains("No space left on device"),
                "{args:?}: {err}"
            );
        }
        // An error to a full stderr: still exit 1, not an abort.
        let out = Command::new(&rt.bin)
            .args(["--root", rt.root.to_str().unwrap(), "state", "no-such-id"])
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            ))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    });
}

#[test]
fn command_line_numbers_are_range_checked() {
    checked(false, |rts, b| {
        let rt = rts[0];
        b.set_args(&["sleep", "100"]);
        let id = started(rt, b, "nums", false);
        let res = b.dir().join("res.json");
        std::fs::write(&res, r#"{"cpu": {"shares": 1}}"#).unwrap();
        let res = res.to_str().unwrap().to_owned();
        // (create_with remembers the ids: were they created after all, cleanup removes them.)
        let (x1, x2) = (rt.new_id("x1"), rt.new_id("x2"));
        let mut outs = vec![
            (
                rt.create_with(&x1, b, &["--preserve-fds", "4294967295"]),
                "--preserve-fds",
            ),
            (
                rt.create_with(&x2, b, &["--preserve-fds=-1"]),
                "--preserve-fds",
            ),
        ];
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (
                vec!["exec", "--preserve-fds", "99999999", &id, "true"],
                "--preserve-fds",
            ),
            (vec!["exec", "-u", "4294967295", &id, "true"], "--user"),
            (vec!["exec", "-u", "0:-1", &id, "true"], "--user"),
            (
                vec!["exec", "-g", "4294967295", &id, "true"],
                "--additional-gids",
            ),
            (vec!["kill", &id, "65"], "signal"),
            (vec!["kill", &id, "4294967305"], "signal"),
            (vec!["update", "--cpu-shares", "1", &id], "--cpu-shares"),
            (vec!["update", "--cpu-period", "10", &id], "--cpu-period"),
            (vec!["update", "--blkio-weight", "5", &id], "--blkio-weight"),
            (
                vec!["update", "--blkio-weight", "70000", &id],
                "--blkio-weight",
            ),
            (vec!["update", "--memory", "99999999999t", &id], "--memory"),
            (
                vec!["update", "--pids-limit", "99999999999", &id],
                "--pids-limit",
            ),
            (vec!["update", "-r", &res, &id], "cpu.shares"),
            (
                vec!["events", "--interval", "99999999999999999999999h", &id],
                "--interval",
            ),
        ];
        outs.extend(cases.iter().map(|(args, flag)| (rt.cmd(args), *flag)));
        for (out, flag) in &outs {
            let args = &out.args;
            assert!(
                !out.success() && out.code().is_some(),
                "{args:?} must be refused: {}",
                out.describe()
            );
            assert_ne!(out.code(), Some(134), "{}", out.describe());
            assert!(
                out.stderr.contains(flag) && !out.stderr.contains("panicked"),
                "{args:?}: the error must name {flag}: {}",
                out.describe()
            );
        }
        // Nothing was created, and the container is unchanged.
        assert!(!rt.root.join(&x1).exists() && !rt.root.join(&x2).exists());
        assert_eq!(rt.status(&id).as_deref(), Some("running"));
        // In range is fine.
        let out = rt.cmd(&["update", "--cpu-shares", "512", "--pids-limit", "100", &id]);
        assert!(out.success(), "{}", out.describe());
        let out = rt.cmd(&["kill", &id, "0"]);
        assert!(out.success(), "{}", out.describe());
    });
}
