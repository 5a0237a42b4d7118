//! Issue 11, after review: create reports success only once init really waits for start; kill
//! of a created container ends it as runc's; `kill --all` touches only the container's own
//! processes in a cgroup berth did not make; `list` and `state` never block behind a create;
//! a program that cannot be executed fails create; user-named files are regular files.
//! runc 1.1.5 (Debian's) runs in the same test where its behaviour is the rule. Every test
//! checks that nothing leaked, also when it fails.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use runtime_tests::{wait_until, Bundle, Runtime};
use serde_json::json;

use common::{runtime_name as name, with_runtimes as checked};

/// `create` must fail (with `want` in berth's message) and leave nothing: no id in `list`.
fn create_fails(rt: &Runtime, b: &Bundle, tag: &str, want: &[&str]) {
    let id = rt.new_id(tag);
    let out = rt.create(&id, b);
    let status = rt.status(&id);
    assert!(
        !out.success(),
        "{}: create of {tag} succeeded, status now {status:?}: {}",
        name(rt),
        out.describe()
    );
    if name(rt) == "berth" {
        for w in want {
            assert!(
                out.stderr.contains(w),
                "{tag}: want {w:?}: {}",
                out.describe()
            );
        }
    }
    assert_eq!(status, None, "{}: {tag} left behind", name(rt));
}

/// Issue 11 §3: "create must not report success until init is really waiting". Anything that
/// stops the exec stub from blocking on the exec fifo fails create with the real cause: an
/// RLIMIT_NOFILE that leaves no fd (runc fails too), an RLIMIT_AS too small for the stub, a
/// seccomp profile that denies the stub's openat. The old code exited 0 with the container
/// already stopped ("open exec fifo: exec failed" on the container's stderr).
#[test]
fn create_fails_unless_init_is_really_waiting_for_start() {
    checked(true, |rts, b| {
        b.set_args(&["sleep", "100"]);
        b.set_rlimits(&[("RLIMIT_NOFILE", 3, 3)]);
        for rt in rts {
            create_fails(
                rt,
                b,
                "nofile",
                &["too many open files (EMFILE)", "RLIMIT_NOFILE soft limit 3"],
            );
        }
        // A limit that still leaves a free fd works, in both.
        b.set_rlimits(&[("RLIMIT_NOFILE", 16, 16)]);
        for rt in rts {
            let id = rt.new_id("nofile16");
            let out = rt.create(&id, b);
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            assert_eq!(rt.status(&id).as_deref(), Some("created"), "{}", name(rt));
            let out = rt.delete_force(&id);
            assert!(out.success(), "{}: {}", name(rt), out.describe());
        }
    });
    checked(false, |rts, b| {
        let berth = rts[0];
        b.set_args(&["sleep", "100"]);
        // Too small for any program: the stub's exec or its first page faults.
        b.set_rlimits(&[("RLIMIT_AS", 16384, 16384)]);
        create_fails(berth, b, "as", &["RLIMIT_AS"]);
        // A seccomp profile that denies openat with EPERM, loaded (no_new_privs) just before
        // init execs the stub: the stub cannot open the fifo.
        b.set_rlimits(&[]);
        b.set_no_new_privileges(true);
        b.linux_mut()["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["openat"], "action": "SCMP_ACT_ERRNO"}]
        });
        create_fails(
            berth,
            b,
            "seccomp",
            &["operation not permitted (EPERM)", "seccomp profile"],
        );
    });
}

/// How the created container's init ended after `kill ID SIG`: the test is the child
/// subreaper, so the orphaned init is its child to reap (within 10 s).
fn reap(pid: i32) -> nix::sys::wait::WaitStatus {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut status = WaitStatus::StillAlive;
    runtime_tests::wait_for(Duration::from_secs(10), || {
        status = waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            .unwrap_or_else(|e| panic!("waitpid {pid}: {e}"));
        status != WaitStatus::StillAlive
    });
    status
}

/// Issue 11 review: "kill of a created container". runc's waiting init (Go) dies of any
/// signal whose default action terminates; berth's exec stub, the init of the container's pid
/// namespace, ignored them (the kernel skips default actions for a namespace's init), so
/// `kill ID TERM` left the container created and a CRI stop took the whole grace period.
/// Now both end; the status is `stopped` in both. The exit status differs, deliberately: runc's
/// Go runtime exits 2, berth's stub exits 128 + the signal (a shell's report of a signal
/// death), and without a pid namespace of its own it dies of the signal itself.
#[test]
fn kill_of_a_created_container_ends_it_as_runc() {
    checked(true, |rts, b| {
        b.set_args(&["sleep", "100"]);
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        // (signal, number, whether runc's Go init dies of it: Go kills on HUP, INT and TERM
        // only, and merely notes USR1, USR2, ALRM, PIPE...).
        let signals = [
            ("TERM", 15, true),
            ("INT", 2, true),
            ("HUP", 1, true),
            ("USR1", 10, false),
            ("ALRM", 14, false),
            ("34", 34, false),
        ];
        for (sig, num, runc_ends) in signals {
            for rt in rts {
                let id = rt.new_id("killcreated");
                let out = rt.create(&id, b);
                assert!(out.success(), "{}: {}", name(rt), out.describe());
                let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap() as i32;
                let out = rt.kill(&id, sig);
                assert!(out.success(), "{} {sig}: {}", name(rt), out.describe());
                if name(rt) == "runc" && !runc_ends {
                    // Deliberately different: berth follows the signal's default action.
                    assert_eq!(rt.status(&id).as_deref(), Some("created"), "runc {sig}");
                    assert!(rt.delete_force(&id).success());
                    assert!(matches!(
                        reap(pid),
                        nix::sys::wait::WaitStatus::Signaled(..)
                    ));
                    continue;
                }
                let status = reap(pid);
                rt.wait_stopped(&id);
                let want = if name(rt) == "runc" { 2 } else { 128 + num };
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), want),
                    "{} {sig}",
                    name(rt)
                );
                let out = rt.delete(&id);
                assert!(out.success(), "{}: {}", name(rt), out.describe());
            }
        }
        // Without a pid namespace of its own, berth's init dies of the signal itself.
        b.remove_namespace("pid");
        let berth = rts[0];
        let id = berth.new_id("killcreated-nopidns");
        let out = berth.create(&id, b);
        assert!(out.success(), "{}", out.describe());
        let pid = berth.state_json(&id).unwrap()["pid"].as_i64().unwrap() as i32;
        assert!(berth.kill(&id, "TERM").success());
        assert_eq!(
            reap(pid),
            nix::sys::wait::WaitStatus::Signaled(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
                false
            )
        );
        assert!(berth.delete(&id).success());
        b.set_namespace("pid", None);
        // With a startContainer hook, init itself (not the exec stub) waits: the same.
        b.add_hook("startContainer", json!({"path": "/bin/true"}));
        let id = berth.new_id("killcreated-hook");
        let out = berth.create(&id, b);
        assert!(out.success(), "{}", out.describe());
        let pid = berth.state_json(&id).unwrap()["pid"].as_i64().unwrap() as i32;
        assert!(berth.kill(&id, "TERM").success());
        assert_eq!(
            reap(pid),
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 128 + 15)
        );
        assert!(berth.delete(&id).success());
        b.spec_mut()["hooks"] = json!({});
        // Signals whose default is to ignore or stop leave it created, as in runc.
        for rt in rts {
            let id = rt.new_id("killcreated-winch");
            assert!(rt.create(&id, b).success());
            assert!(rt.kill(&id, "WINCH").success());
            assert!(rt.kill(&id, "0").success());
            assert_eq!(rt.status(&id).as_deref(), Some("created"), "{}", name(rt));
            assert!(rt.delete_force(&id).success());
        }
    });
}

/// Issue 11 review: "`kill --all` touches only the container's processes". In a cgroup named
/// by `linux.cgroupsPath` that existed before (shared with a process that is not the
/// container's), `kill --all` signalled the whole cgroup; containerd runs it at teardown.
/// Now berth signals only the container's own processes. runc 1.1 kills the bystander too:
/// a deliberate difference (issue 11: "a container's teardown touches only what is the
/// container's").
#[test]
fn kill_all_spares_a_process_sharing_the_named_cgroup() {
    checked(true, |rts, b| {
        b.set_args(&["sh", "-c", "sleep 100 & exec sleep 100"]);
        for rt in rts {
            let mut by = runtime_tests::Bystander::start();
            b.linux_mut()["cgroupsPath"] = json!(format!("/{}", by.name));
            let id = rt.new_id("killall-shared");
            let out = rt.create(&id, b);
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            assert!(rt.start(&id).success());
            let procs = by.dirs[0].join("cgroup.procs");
            let count = || {
                std::fs::read_to_string(&procs)
                    .map(|p| p.lines().count())
                    .unwrap_or(0)
            };
            wait_until(
                "the container's two processes",
                Duration::from_secs(10),
                || count() >= 3,
            );
            let out = rt.kill_all(&id, "KILL");
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            rt.wait_stopped(&id);
            if name(rt) == "berth" {
                wait_until(
                    "the container's processes to be gone",
                    Duration::from_secs(10),
                    || count() == 1,
                );
                by.assert_untouched("berth kill --all");
            } else {
                wait_until(
                    "runc to kill the bystander",
                    Duration::from_secs(10),
                    || !by.alive(),
                );
            }
            let out = rt.delete(&id);
            assert!(out.success(), "{}: {}", name(rt), out.describe());
        }
    });
}

/// Issue 11 review: "readers never block". `berth list` waited for as long as another
/// container's create held its lock (a createContainer hook of 4 s blocked it 3.5 s; after 60 s
/// it silently left the container out), and so did `berth state`. runc's never wait. Now both
/// answer at once while a createContainer hook holds the create (until the test releases it),
/// and show the container as `creating`.
#[test]
fn list_and_state_do_not_wait_for_a_create_running_its_hooks() {
    checked(true, |rts, b| {
        b.set_args(&["sleep", "100"]);
        // The hook blocks until the test writes a line into this fifo (a host path: berth's
        // createContainer hooks run before the pivot, runc's too).
        let release = b.dir().join("release");
        nix::unistd::mkfifo(&release, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let hooked = b.dir().join("hooked");
        let script = format!(": > {}; read x < {}", hooked.display(), release.display());
        b.add_hook(
            "createContainer",
            json!({"path": "/bin/sh", "args": ["sh", "-c", script]}),
        );
        for rt in rts {
            let id = rt.new_id("busylock");
            let _ = std::fs::remove_file(&hooked);
            std::thread::scope(|s| {
                let creating = s.spawn(|| rt.create(&id, b));
                // Whatever happens, the hook is let go in the end (a reader in the fifo takes
                // a non-blocking write; none there refuses it).
                let _release = Release(&release);
                wait_until(
                    "the createContainer hook to run",
                    Duration::from_secs(10),
                    || hooked.exists(),
                );
                let t = Instant::now();
                let list = rt.cmd(&["list", "--format", "json"]);
                let list_took = t.elapsed();
                let t = Instant::now();
                let state = rt.state(&id);
                let state_took = t.elapsed();
                drop(_release);
                let created = creating.join().unwrap();
                assert!(created.success(), "{}: {}", name(rt), created.describe());
                assert!(list.success(), "{}: {}", name(rt), list.describe());
                assert!(
                    list_took < Duration::from_secs(1),
                    "{}: list took {list_took:?}",
                    name(rt)
                );
                assert!(
                    state_took < Duration::from_secs(1),
                    "{}: state took {state_took:?}",
                    name(rt)
                );
                if name(rt) == "berth" {
                    let listed: serde_json::Value = list.json().unwrap();
                    let row = listed
                        .as_array()
                        .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
                        .unwrap_or_else(|| panic!("{id} not listed: {}", list.describe()));
                    assert_eq!(row["status"], "creating", "{}", list.describe());
                    let st = state.json().unwrap();
                    assert_eq!(st["status"], "creating", "{}", state.describe());
                    assert!(st["pid"].as_i64().unwrap() > 0, "{}", state.describe());
                }
                assert_eq!(rt.status(&id).as_deref(), Some("created"), "{}", name(rt));
                assert!(rt.delete_force(&id).success());
            });
        }
    });
}

/// Writes a line into the fifo at `.0` when dropped, if a reader waits in it.
struct Release<'a>(&'a Path);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // The hook's shell opens the fifo before reading: give it a bounded while.
        runtime_tests::wait_for(Duration::from_secs(10), || {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(self.0)
                .and_then(|mut f| f.write_all(b"go\n"))
                .is_ok()
        });
    }
}

/// Issue 11 review: "a program that cannot be executed is an error at create", as runc
/// refuses it there (Go's exec.LookPath, with the container's PATH, inside the rootfs): a file
/// without an execute bit (by path, and by name in PATH, where it does not count), a
/// directory, a dangling symlink, a missing file. The old code accepted the non-executable
/// file at create and the container died at start.
#[test]
fn a_program_that_cannot_be_executed_fails_create_as_runc() {
    checked(true, |rts, b| {
        use std::os::unix::fs::PermissionsExt;
        let root = b.rootfs();
        std::fs::create_dir_all(root.join("opt/bin")).unwrap();
        std::fs::write(root.join("opt/bin/plain"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(
            root.join("opt/bin/plain"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::os::unix::fs::symlink("/no/such/target", root.join("opt/bin/dangling")).unwrap();
        b.add_env("PATH=/opt/bin:/bin:/usr/bin");
        let cases: [(&str, &[&str]); 5] = [
            ("/opt/bin/plain", &["not executable", "permission denied"]),
            ("plain", &["executable file not found in $PATH"]),
            ("/opt/bin", &["not a regular file"]),
            ("/opt/bin/dangling", &["no such file or directory"]),
            ("/opt/bin/missing", &["no such file or directory"]),
        ];
        for (arg0, want) in cases {
            b.set_args(&[arg0]);
            for rt in rts {
                create_fails(rt, b, "noexec", want);
            }
        }
        // Once executable, both run it.
        std::fs::set_permissions(
            root.join("opt/bin/plain"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        b.set_args(&["plain"]);
        for rt in rts {
            let id = rt.new_id("exec-ok");
            let out = rt.run(&id, b);
            assert!(out.success(), "{}: {}", name(rt), out.describe());
            assert_eq!(out.stdout, "hi\n", "{}", name(rt));
        }
    });
}

/// Issue 11 review: `exec --process FILE` read the file with a plain read: a FIFO hung it, and
/// /dev/zero filled memory. Like config.json, a process file is a regular file of a sane size;
/// a valid one still works.
#[test]
fn exec_process_file_is_a_regular_file_of_a_sane_size() {
    checked(false, |rts, b| {
        let rt = rts[0];
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("execproc");
        assert!(rt.create(&id, b).success());
        assert!(rt.start(&id).success());
        let fifo = b.dir().join("process.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for (file, want) in [
            (fifo.to_str().unwrap(), "not a regular file but a fifo"),
            ("/dev/zero", "not a regular file but a character device"),
        ] {
            let t = Instant::now();
            let out = rt.cmd(&["exec", "--process", file, &id]);
            assert!(!out.success(), "{file}: {}", out.describe());
            assert!(out.stderr.contains(want), "{file}: {}", out.describe());
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{file}: {:?}",
                t.elapsed()
            );
        }
        let good = b.dir().join("process.json");
        std::fs::write(
            &good,
            json!({"cwd": "/", "args": ["echo", "from-file"], "user": {"uid": 0, "gid": 0}})
                .to_string(),
        )
        .unwrap();
        let out = rt.cmd(&["exec", "--process", good.to_str().unwrap(), &id]);
        assert!(out.success(), "{}", out.describe());
        assert_eq!(out.stdout, "from-file\n");
        assert!(rt.delete_force(&id).success());
    });
}

/// Issue 11 review, numbers: memory.swappiness 18446744073709551615 (uint64 -1) is "not set"
/// as runc reads it (berth refused it); cpu.quota 2^63-1 is refused by `validate`, naming the
/// kernel's range (it passed and create failed with EINVAL); `--log /dev/full` is said on
/// stderr as runc does (berth was silent).
#[test]
fn numbers_are_read_as_runc_and_the_kernel_read_them() {
    checked(true, |rts, b| {
        b.set_args(&["true"]);
        b.linux_mut()["resources"] = json!({"memory": {"swappiness": u64::MAX}});
        for rt in rts {
            let id = rt.new_id("swappiness");
            let out = rt.run(&id, b);
            assert!(out.success(), "{}: {}", name(rt), out.describe());
        }
        let berth = rts[0];
        b.linux_mut()["resources"] = json!({"cpu": {"quota": i64::MAX, "period": 100000}});
        b.save().unwrap();
        let out = berth.cmd(&["validate", "--bundle", b.dir().to_str().unwrap()]);
        assert!(!out.success(), "{}", out.describe());
        assert!(
            out.stdout.contains("linux.resources.cpu.quota")
                && out.stdout.contains("(1000..=17592186044415)"),
            "{}",
            out.describe()
        );
        b.linux_mut()["resources"] = json!({});
        for rt in rts {
            let out = rt.cmd(&["--log", "/dev/full", "state", "no-such-container"]);
            assert!(!out.success(), "{}: {}", name(rt), out.describe());
            assert!(
                out.stderr.contains("/dev/full") && out.stderr.contains("no space left on device"),
                "{}: {}",
                name(rt),
                out.describe()
            );
        }
    });
}

/// The signal handlers that end a created container's waiting init on `kill` are its own:
/// a startContainer hook that closes its stdin unread (init then writes the state into a
/// closed pipe) does not kill init, and the program starts with SIGPIPE at its default, as
/// runc's, with and without such a hook (berth resets every signal: none is ignored).
#[test]
fn the_program_starts_with_runcs_signal_dispositions() {
    checked(true, |rts, b| {
        b.set_args(&["grep", "SigIgn", "/proc/self/status"]);
        for hook in [false, true] {
            if hook {
                b.add_hook(
                    "startContainer",
                    json!({"path": "/bin/sh", "args": ["sh", "-c", "exec 0<&-; sleep 0.2"]}),
                );
            }
            for rt in rts {
                let id = rt.new_id("sigign");
                let out = rt.run(&id, b);
                assert!(
                    out.success(),
                    "{} hook={hook}: {}",
                    name(rt),
                    out.describe()
                );
                let ignored = out
                    .stdout
                    .trim()
                    .strip_prefix("SigIgn:\t")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .unwrap_or_else(|| panic!("{}: {}", name(rt), out.describe()));
                // Neither ignores SIGPIPE (the runtime's own). berth resets every signal;
                // runc's Go init passes on what its caller ignored among the signals Go does
                // not handle (glibc's 32, which this test harness ignores).
                assert_eq!(ignored & (1 << 12), 0, "{} hook={hook}: SIGPIPE", name(rt));
                if name(rt) == "berth" {
                    assert_eq!(ignored, 0, "berth hook={hook}: {}", out.stdout);
                }
            }
        }
    });
}
