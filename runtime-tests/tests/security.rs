//! Security regressions: the runtime binary cannot be written through /proc/PID/exe
//! (CVE-2019-5736), no host fd or directory reaches the container (CVE-2024-21626), seccomp
//! and no_new_privs are observed from inside.

mod common;

use std::os::fd::AsRawFd;

use common::leak_checked;
use serde_json::json;

/// What an attacker in the container would do: hold the init process's exe while the runtime
/// runs, and reopen it for writing once the runtime is gone. Here init runs runtime code after
/// `start` (a startContainer hook), so berth re-executes itself from a read-only bind mount
/// first, and the exe it exposes is that mount's.
#[test]
fn runtime_binary_is_not_writable_through_proc_exe() {
    with_private_berth(|rt, b| {
        b.set_args(&["sleep", "100"]);
        b.add_hook("startContainer", json!({"path": "/bin/true"}));
        let id = rt.new_id("exe");
        assert!(rt.create(&id, b).success(), "{}", rt.dump_log());
        // Until start, init runs the berth binary itself.
        let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
        let held = std::fs::File::options()
            .custom_flags_path()
            .open(format!("/proc/{pid}/exe"))
            .expect("open exe O_PATH");
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/exe"));
        assert!(direct.is_err(), "the runtime binary opened for writing");
        assert!(rt.delete_force(&id).success());
        // Every berth process is gone: the file is no longer busy, only the mount protects it.
        let reopened = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", held.as_raw_fd()));
        let err = reopened.expect_err("the runtime binary was writable after the runtime exited");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        // And the binary on disk still runs (and is intact: checked by the helper).
        assert!(rt.cmd(&["--version"]).success());
    });
}

/// Without runtime code to run after `start`, init waits in the exec stub: a sealed memfd,
/// which cannot be written, and which a process of the container (here one exec'd before
/// start) cannot even open.
#[test]
fn created_init_exposes_only_the_sealed_exec_stub() {
    with_private_berth(|rt, b| {
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("stub");
        assert!(rt.create(&id, b).success(), "{}", rt.dump_log());
        let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
        // create returns once init is ready, just before it execs the stub.
        let exe = runtime_tests::wait_for_exe(pid, |e| e.starts_with("/memfd:berth-exec"));
        assert!(
            exe.starts_with("/memfd:berth-exec"),
            "init's exe before start: {exe}"
        );
        // From inside, a process exec'd into the created container cannot even look: the
        // waiting stub is not dumpable (its fifo fd is a host file).
        for path in ["/proc/1/exe", "/proc/1/fd/0"] {
            let out = rt.exec(&id, &["readlink", path]);
            assert!(!out.success(), "{path}: {}", out.describe());
        }
        // Opening it for writing may work; writing to it does not.
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/exe"))
        {
            let err = f
                .write_all(b"\x7fELF")
                .expect_err("wrote into the exec stub");
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        }
        assert!(rt.start(&id).success(), "{}", rt.dump_log());
        // Started: the stub becomes the container's program (start returns once the stub has
        // said go, just before its exec).
        let exe = runtime_tests::wait_for_exe(pid, |e| e.ends_with("busybox"));
        assert!(exe.ends_with("busybox"), "init's exe after start: {exe}");
        assert!(rt.delete_force(&id).success());
    });
}

#[test]
fn a_proc_self_exe_program_gets_the_stub_not_the_runtime() {
    leak_checked(|rt, b| {
        // CVE-2019-5736's trick: the container's program is a script whose interpreter is
        // /proc/self/exe, i.e. whatever binary execs it. That is the stub, which refuses.
        let script = b.rootfs().join("exe.sh");
        std::fs::write(&script, "#!/proc/self/exe\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        b.set_args(&["/exe.sh", "--version"]);
        let out = rt.run(&rt.new_id("selfexe"), b);
        assert_eq!(out.code(), Some(126), "{}", out.describe());
        assert!(
            out.stderr.contains("exec stub, not a program"),
            "{}",
            out.describe()
        );
        assert!(!out.stdout.contains("berth"), "{}", out.describe());
    });
}

/// Runs `f` with a private copy of berth (so that no other test's berth keeps the file busy),
/// then checks that the copy is intact and that nothing leaked.
fn with_private_berth(f: impl FnOnce(&runtime_tests::Runtime, &mut runtime_tests::Bundle)) {
    let Some((_, mut b)) = common::setup() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("berth");
    std::fs::copy(runtime_tests::berth_bin().unwrap(), &bin).unwrap();
    let original = std::fs::read(&bin).unwrap();
    let rt = runtime_tests::Runtime::new(&bin).unwrap();
    let before = runtime_tests::LeakSnapshot::take(&rt, &b);
    f(&rt, &mut b);
    assert!(
        std::fs::read(&bin).unwrap() == original,
        "the berth binary changed"
    );
    rt.cleanup();
    runtime_tests::assert_no_leaks(&before, &rt);
}

trait OpenPath {
    fn custom_flags_path(&mut self) -> &mut Self;
}

impl OpenPath for std::fs::OpenOptions {
    fn custom_flags_path(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.read(true).custom_flags(libc::O_PATH)
    }
}

#[test]
fn cwd_through_a_leaked_fd_does_not_reach_the_host() {
    leak_checked(|rt, b| {
        // runc's CVE-2024-21626: a cwd of /proc/self/fd/N where N was a host directory fd.
        for n in 3..8 {
            b.set_cwd(&format!("/proc/self/fd/{n}"));
            b.set_args(&["sh", "-c", "pwd; ls"]);
            let out = rt.run(&rt.new_id("cwd"), b);
            assert!(
                !out.success(),
                "cwd /proc/self/fd/{n} worked: {}",
                out.describe()
            );
            assert!(out.stderr.contains("cwd"), "{}", out.stderr);
        }
    });
}

#[test]
fn seccomp_errno_and_no_new_privs_are_observed() {
    leak_checked(|rt, b| {
        b.set_seccomp(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }));
        b.set_readonly_root(false);
        b.set_args(&[
            "sh",
            "-c",
            "mkdir /tmp/x 2>&1; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
        ]);
        let out = rt.run(&rt.new_id("seccomp"), b);
        assert!(
            out.stdout.contains("Operation not permitted"),
            "{}",
            out.describe()
        );
        assert!(out.stdout.contains("Seccomp:\t2"), "{}", out.describe());
        assert!(out.stdout.contains("NoNewPrivs:\t1"), "{}", out.describe());
        // Without noNewPrivileges the filter still loads (before capabilities are dropped).
        b.set_no_new_privileges(false);
        let out = rt.run(&rt.new_id("seccomp-nnp"), b);
        assert!(
            out.stdout.contains("Operation not permitted"),
            "{}",
            out.describe()
        );
        assert!(out.stdout.contains("NoNewPrivs:\t0"), "{}", out.describe());
    });
}

#[test]
fn no_new_privileges_stops_a_setuid_binary() {
    leak_checked(|rt, b| {
        // A setuid-root copy of the (static) probe run by an unprivileged user; busybox would
        // drop the privilege by itself.
        let probe = b.rootfs().join("probe-suid");
        std::fs::copy(runtime_tests::probe_bin().unwrap(), &probe).unwrap();
        std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o4755))
            .unwrap();
        b.set_user(1000, 1000);
        b.set_args(&["/probe-suid"]);
        b.set_no_new_privileges(true);
        let out = rt.run(&rt.new_id("nnp"), b);
        let euid = |o: &runtime_tests::RunOutput| o.json().map(|v| v["euid"].clone());
        assert_eq!(euid(&out), Some(json!(1000)), "{}", out.describe());
        b.set_no_new_privileges(false);
        let out = rt.run(&rt.new_id("suid"), b);
        assert_eq!(
            euid(&out),
            Some(json!(0)),
            "setuid did not work without nnp: {}",
            out.describe()
        );
    });
}

/// SCMP_ACT_NOTIFY: berth passes the notify fd with runc's ContainerProcessState JSON to the
/// spec's listenerPath. The listener here only checks what it got and closes the fd, which
/// makes the notified syscall fail with ENOSYS in the container.
#[test]
fn seccomp_notify_fd_reaches_the_listener() {
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

    leak_checked(|rt, b| {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("listener.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let got = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .unwrap();
            let mut fds = 0;
            for c in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(f) = c {
                    fds += f.len();
                    for fd in f {
                        let _ = nix::unistd::close(fd);
                    }
                }
            }
            let n = msg.bytes;
            (
                serde_json::from_slice::<serde_json::Value>(&buf[..n]).unwrap(),
                fds,
            )
        });
        b.set_seccomp(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock.to_str().unwrap(),
            "listenerMetadata": "berth-test-metadata",
            "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        b.set_readonly_root(false);
        b.set_args(&["sh", "-c", "mkdir /tmp/n 2>&1; echo after"]);
        let id = rt.new_id("notify");
        let out = rt.run(&id, b);
        let (state, fds) = got.join().unwrap();
        assert_eq!(fds, 1, "no fd attached: {state}");
        assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
        assert_eq!(state["metadata"], "berth-test-metadata", "{state}");
        assert_eq!(state["state"]["id"], id.as_str(), "{state}");
        assert!(state["pid"].as_i64().unwrap_or(0) > 0, "{state}");
        assert!(out.stdout.contains("after"), "{}", out.describe());
    });
}

#[test]
fn foreground_run_of_an_init_that_needs_protection_restarts_protected() {
    leak_checked(|rt, b| {
        // Sharing the host's pid namespace, init's setup is visible to others: berth runs
        // from a read-only copy of itself (it re-executes before creating anything), and the
        // foreground run behaves as usual: output, exit status.
        b.remove_namespace("pid");
        b.set_args(&["sh", "-c", "echo from-host-pidns; exit 7"]);
        let out = rt.run(&rt.new_id("hostpid"), b);
        assert_eq!(out.code(), Some(7), "{}", out.describe());
        assert!(out.stdout.contains("from-host-pidns"), "{}", out.describe());
    });
}
