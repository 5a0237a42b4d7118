//! berth's lifecycle from the CLI, checked from inside real containers, with a leak check after
//! every test (no mount, cgroup, process or state left).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{cgroup_dirs_named, leak_checked, wait_for};
use serde_json::json;

#[test]
fn run_prints_hostname_pid_1_and_id() {
    leak_checked(|rt, b| {
        b.set_hostname("demo-host")
            .set_args(&["sh", "-c", "hostname; echo $$; id"]);
        let id = rt.new_id("run");
        let out = rt.run(&id, b);
        assert!(out.success(), "{}", out.describe());
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines[0], "demo-host");
        assert_eq!(lines[1], "1");
        assert_eq!(lines[2], "uid=0(root) gid=0(root)");
        // `run` deletes the container when it exits.
        assert!(!rt.root.join(&id).exists());
    });
}

#[test]
fn run_exit_code_and_signal_death() {
    leak_checked(|rt, b| {
        b.set_args(&["sh", "-c", "exit 42"]);
        let out = rt.run(&rt.new_id("exit"), b);
        assert_eq!(out.code(), Some(42), "{}", out.describe());
        // Killed from outside (pid 1 ignores its own namespace's SIGKILL): 128 + 9.
        b.set_args(&["sleep", "30"]);
        let id = rt.new_id("sig");
        let out = std::thread::scope(|s| {
            let run = s.spawn(|| rt.run(&id, b));
            rt.wait_status(&id, "running", Duration::from_secs(10));
            assert!(rt.kill(&id, "KILL").success());
            run.join().unwrap()
        });
        assert_eq!(out.code(), Some(128 + 9), "{}", out.describe());
    });
}

#[test]
fn create_start_state_kill_delete() {
    leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("life");
        let pid_file = b.dir().join("pid");
        let out = rt.create_with(&id, b, &["--pid-file", pid_file.to_str().unwrap()]);
        assert!(out.success(), "{}", out.describe());
        let st = rt.state_json(&id).expect("state");
        assert_eq!(st["status"], "created");
        for key in [
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "owner",
        ] {
            assert!(st.get(key).is_some(), "state lacks {key}: {st}");
        }
        let pid = st["pid"].as_i64().unwrap();
        assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
        // The init process waits in the container, its cgroup exists.
        assert!(!cgroup_dirs_named(&id).is_empty());

        let again = rt.start(&id);
        assert!(again.success(), "{}", again.describe());
        assert_eq!(rt.status(&id).as_deref(), Some("running"));
        let twice = rt.start(&id);
        assert!(!twice.success());
        assert!(twice.stderr.contains("running"), "{}", twice.stderr);
        let del = rt.delete(&id);
        assert!(!del.success(), "deleting a running container must fail");
        assert!(del.stderr.contains("running"), "{}", del.stderr);

        assert!(rt.kill(&id, "KILL").success());
        rt.wait_stopped(&id);
        let st = rt.state_json(&id).unwrap();
        assert_eq!(st["pid"], 0);
        assert!(rt.delete(&id).success());
        assert!(
            cgroup_dirs_named(&id).is_empty(),
            "cgroup left after delete"
        );
        assert!(!rt.state(&id).success());
    });
}

#[test]
fn kill_takes_names_and_numbers() {
    leak_checked(|rt, b| {
        // Each trap records which signal ran it; /tmp/ready says the traps are set.
        b.set_readonly_root(false);
        b.set_args(&[
            "sh",
            "-c",
            "trap 'echo USR1 > /tmp/trap; exit 3' USR1; trap 'echo HUP > /tmp/trap; exit 4' HUP; \
             touch /tmp/ready; while :; do sleep 0.1; done",
        ]);
        let ready = b.rootfs().join("tmp/ready");
        let trap = b.rootfs().join("tmp/trap");
        for (sig, ran) in [
            ("SIGUSR1", "USR1"),
            ("HUP", "HUP"),
            ("10", "USR1"),
            ("1", "HUP"),
        ] {
            let _ = std::fs::remove_file(&ready);
            let _ = std::fs::remove_file(&trap);
            let id = rt.new_id("kill");
            assert!(rt.run_with(&id, b, &["--detach"]).success());
            assert!(
                wait_for(Duration::from_secs(10), || ready.exists()),
                "the container never set its traps"
            );
            let out = rt.kill(&id, sig);
            assert!(out.success(), "kill {sig}: {}", out.describe());
            rt.wait_stopped(&id);
            assert_eq!(
                std::fs::read_to_string(&trap).unwrap_or_default().trim(),
                ran,
                "kill {sig} ran the wrong trap"
            );
            assert!(rt.delete(&id).success());
        }
        let id = rt.new_id("kill-bad");
        assert!(rt.run_with(&id, b, &["--detach"]).success());
        let out = rt.kill(&id, "NOSUCHSIG");
        assert!(!out.success());
        assert!(out.stderr.contains("NOSUCHSIG"), "{}", out.stderr);
        assert!(rt.delete_force(&id).success());
    });
}

#[test]
fn errors_for_unknown_and_duplicate_ids() {
    leak_checked(|rt, b| {
        for verb in [
            &["state", "nope"][..],
            &["start", "nope"],
            &["kill", "nope"],
            &["delete", "nope"],
        ] {
            let out = rt.cmd(verb);
            assert!(!out.success(), "{verb:?} succeeded");
            assert!(
                out.stderr.contains("does not exist"),
                "{verb:?}: {}",
                out.stderr
            );
        }
        assert!(rt.cmd(&["delete", "--force", "nope"]).success());
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("dup");
        assert!(rt.create(&id, b).success());
        let out = rt.create(&id, b);
        assert!(!out.success());
        assert!(out.stderr.contains("already exists"), "{}", out.stderr);
        assert!(
            rt.delete(&id).success(),
            "a created container can be deleted"
        );
    });
}

#[test]
fn concurrent_creates_of_one_id_one_wins() {
    leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]);
        b.save().unwrap();
        let id = rt.new_id("race");
        let dir = b.dir().display().to_string();
        let outs: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| rt.cmd(&["create", "--bundle", &dir, &id])))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = outs.iter().filter(|o| o.success()).count();
        assert_eq!(won, 1, "{outs:#?}");
        for o in outs.iter().filter(|o| !o.success()) {
            assert!(o.stderr.contains("already exists"), "{}", o.stderr);
        }
        assert!(rt.delete(&id).success());
        assert!(cgroup_dirs_named(&id).is_empty(), "cgroup left");
    });
}

#[test]
fn missing_executable_is_a_clear_error_and_leaves_nothing() {
    leak_checked(|rt, b| {
        b.set_args(&["/bin/no-such-program", "x"]);
        let id = rt.new_id("noexec");
        let out = rt.create(&id, b);
        assert!(!out.success());
        assert!(
            out.stderr.contains("/bin/no-such-program")
                && out.stderr.to_lowercase().contains("no such file"),
            "{}",
            out.stderr
        );
        assert!(!rt.root.join(&id).exists(), "state directory left");
        assert!(cgroup_dirs_named(&id).is_empty(), "cgroup left");
    });
}

#[test]
fn bad_config_names_the_field() {
    leak_checked(|rt, b| {
        b.spec_mut()["process"]["user"]["uid"] = json!("root");
        let out = rt.create(&rt.new_id("badcfg"), b);
        assert!(!out.success());
        assert!(out.stderr.contains("process.user.uid"), "{}", out.stderr);
        b.spec_mut()["process"]["user"]["uid"] = json!(0);
        b.spec_mut()["ociVersion"] = json!("2.0.0");
        let out = rt.create(&rt.new_id("badver"), b);
        assert!(out.stderr.contains("ociVersion"), "{}", out.stderr);
    });
}

#[test]
fn rlimit_above_hard_limit_is_a_clear_error() {
    leak_checked(|rt, b| {
        let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .unwrap()
            .1;
        if hard == u64::MAX {
            eprintln!("skipped: RLIMIT_NOFILE is unlimited here");
            return;
        }
        b.set_rlimits(&[("RLIMIT_NOFILE", hard + 1, hard + 1)]);
        let id = rt.new_id("rlimit");
        let out = rt.create(&id, b);
        if out.success() {
            // This host lets root raise it (CAP_SYS_RESOURCE): nothing to check.
            return;
        }
        assert!(out.stderr.contains("RLIMIT_NOFILE"), "{}", out.stderr);
        assert!(
            out.stderr.contains("operation not permitted"),
            "{}",
            out.stderr
        );
    });
}

#[test]
fn only_stdio_reaches_the_container() {
    leak_checked(|rt, b| {
        b.set_args(&["/probe"]);
        let out = rt.run(&rt.new_id("fds"), b);
        assert!(out.success(), "{}", out.describe());
        let report = out.json().expect("probe json");
        let fds = report["fds"].as_object().expect("fds").clone();
        let mut numbers: Vec<i64> = fds.keys().filter_map(|k| k.parse().ok()).collect();
        numbers.sort();
        assert_eq!(numbers, [0, 1, 2], "{fds:?}");
        // And they are what the caller gave berth: /dev/null and the harness's files.
        assert_eq!(fds["0"], "/dev/null");
    });
}

#[test]
fn preserve_fds_passes_exactly_those() {
    leak_checked(|rt, b| {
        b.set_args(&[
            "sh",
            "-c",
            "cat <&3; ls /proc/self/fd | sort -n | tr '\\n' ' '",
        ]);
        b.save().unwrap();
        let secret = b.dir().join("passed.txt");
        std::fs::write(&secret, "through fd 3\n").unwrap();
        let id = rt.new_id("pfd");
        // fd 3 is passed on purpose, fd 4 is open in the caller but not asked for.
        let script = format!(
            "exec 3<{} 4<{}; exec {} --root {} run --preserve-fds 1 --bundle {} {}",
            secret.display(),
            secret.display(),
            rt.bin.display(),
            rt.root.display(),
            b.dir().display(),
            id
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some("through fd 3"));
        let fds: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(&fds[..4], &["0", "1", "2", "3"], "{fds:?}");
        // Beyond them only ls's own directory fd.
        assert!(fds.len() <= 5, "{fds:?}");
        assert!(!fds.contains(&"4") || fds.len() == 5, "{fds:?}");
    });
}

#[test]
fn symlink_in_rootfs_cannot_redirect_a_mount_to_the_host() {
    leak_checked(|rt, b| {
        let outside = tempfile::tempdir().unwrap();
        let evil = b.rootfs().join("evil");
        std::os::unix::fs::symlink(outside.path(), &evil).unwrap();
        b.add_mount(
            json!({"destination": "/evil/sub", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid"]}),
        );
        b.set_args(&["sh", "-c", "touch /evil/sub/marker && echo done"]);
        b.set_readonly_root(false);
        let out = rt.run(&rt.new_id("symlink"), b);
        assert!(out.success(), "{}", out.describe());
        assert_eq!(out.stdout.trim(), "done");
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "something was created outside the rootfs"
        );
    });
}

#[test]
fn no_pivot_runs_too() {
    leak_checked(|rt, b| {
        b.set_args(&["sh", "-c", "cat /proc/self/mountinfo | wc -l"]);
        let out = rt.run_with(&rt.new_id("nopivot"), b, &["--no-pivot"]);
        assert!(out.success(), "{}", out.describe());
    });
}

#[test]
fn list_and_spec() {
    leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("list");
        assert!(rt.run_with(&id, b, &["--detach"]).success());
        let table = rt.cmd(&["list"]);
        assert!(table.success());
        let header: Vec<&str> = table
            .stdout
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        );
        assert!(table.stdout.contains(&id) && table.stdout.contains("running"));
        let json = rt.cmd(&["list", "--format", "json"]).json().unwrap();
        assert_eq!(json[0]["id"], id.as_str());
        assert_eq!(json[0]["status"], "running");
        let quiet = rt.cmd(&["list", "-q"]);
        assert_eq!(quiet.stdout.trim(), id);
        assert!(rt.delete_force(&id).success());

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        assert!(rt.cmd(&["spec", "--bundle", d]).success());
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(spec["root"]["path"], "rootfs");
        assert!(
            !rt.cmd(&["spec", "--bundle", d]).success(),
            "spec must not overwrite"
        );
    });
}

#[test]
fn log_file_gets_json_errors() {
    leak_checked(|rt, _b| {
        let log = rt.root.join("berth.log");
        let out = rt.cmd(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "state",
            "missing-one",
        ]);
        assert!(!out.success());
        let text = std::fs::read_to_string(&log).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["level"], "error");
        assert!(last["msg"].as_str().unwrap().contains("does not exist"));
        assert!(last["time"].is_string());
        let _ = std::fs::remove_file(&log);
    });
}

#[test]
fn bundle_relative_root_and_readonly() {
    leak_checked(|rt, b| {
        b.set_readonly_root(true).set_args(&[
            "sh",
            "-c",
            "touch /x 2>/dev/null && echo writable || echo readonly",
        ]);
        let out = rt.run(&rt.new_id("ro"), b);
        assert_eq!(out.stdout.trim(), "readonly", "{}", out.describe());
        // An absolute root.path works as well as the relative default.
        let abs = b.rootfs();
        b.spec_mut()["root"]["path"] = json!(abs.to_str().unwrap());
        b.set_readonly_root(false);
        let out = rt.run(&rt.new_id("abs"), b);
        assert_eq!(out.stdout.trim(), "writable", "{}", out.describe());
        assert!(Path::new(&abs).join("x").exists());
    });
}
