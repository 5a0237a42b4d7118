//! CVE-2019-5736 on the spawn helper's path (issue 12): a multithreaded embedder's container
//! processes are cloned by a re-exec of the runtime binary (see berth_runtime::spawn). The
//! protections of security.rs must hold there too. `BERTH_SPAWN_HELPER=1` makes `berth` take
//! that path although it is single-threaded, and `--debug` shows that it did.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use serde_json::json;

/// As security.rs's test of the same name: init runs runtime code after `start` (a
/// startContainer hook), here cloned by the helper; its exe is the read-only mount of the
/// protected binary, not writable now nor once every berth process is gone.
#[test]
fn helper_path_runtime_binary_is_not_writable_through_proc_exe() {
    with_private_berth_through_helper(|rt, b| {
        b.set_args(&["sleep", "100"]);
        b.add_hook("startContainer", json!({"path": "/bin/true"}));
        let id = rt.new_id("exe");
        let out = rt.create(&id, b);
        assert!(out.success(), "{}", rt.dump_log());
        assert_helper_used(&out);
        let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
        let held = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(format!("/proc/{pid}/exe"))
            .expect("open exe O_PATH");
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/exe"));
        assert!(direct.is_err(), "the runtime binary opened for writing");
        assert!(rt.delete_force(&id).success());
        let reopened = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", held.as_raw_fd()));
        let err = reopened.expect_err("the runtime binary was writable after the runtime exited");
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    });
}

/// Cloned by the helper, a created init waits for start in the sealed exec stub, which a
/// process exec'd into the container (through the helper too) cannot look at.
#[test]
fn helper_path_created_init_exposes_only_the_sealed_exec_stub() {
    with_private_berth_through_helper(|rt, b| {
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("stub");
        let out = rt.create(&id, b);
        assert!(out.success(), "{}", rt.dump_log());
        assert_helper_used(&out);
        let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
        let exe = runtime_tests::wait_for_exe(pid, |e| e.starts_with("/memfd:berth-exec"));
        assert!(
            exe.starts_with("/memfd:berth-exec"),
            "init's exe before start: {exe}"
        );
        for path in ["/proc/1/exe", "/proc/1/fd/0"] {
            let out = rt.exec(&id, &["readlink", path]);
            assert_helper_used(&out);
            assert!(!out.success(), "{path}: {}", out.describe());
        }
        assert!(rt.start(&id).success(), "{}", rt.dump_log());
        let exe = runtime_tests::wait_for_exe(pid, |e| e.ends_with("busybox"));
        assert!(exe.ends_with("busybox"), "init's exe after start: {exe}");
        // An exec'd process through the helper runs its own program, not the runtime.
        let out = rt.exec(&id, &["readlink", "/proc/self/exe"]);
        assert!(out.success(), "{}", out.describe());
        assert!(out.stdout.contains("busybox"), "{}", out.describe());
        assert!(rt.delete_force(&id).success());
    });
}

/// A `#!/proc/self/exe` program, started by an init the helper cloned, gets the stub.
#[test]
fn helper_path_a_proc_self_exe_program_gets_the_stub_not_the_runtime() {
    with_private_berth_through_helper(|rt, b| {
        let script = b.rootfs().join("exe.sh");
        std::fs::write(&script, "#!/proc/self/exe\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        b.set_args(&["/exe.sh", "--version"]);
        let out = rt.run(&rt.new_id("selfexe"), b);
        assert_helper_used(&out);
        assert_eq!(out.code(), Some(126), "{}", out.describe());
        assert!(
            out.stderr.contains("exec stub, not a program"),
            "{}",
            out.describe()
        );
    });
}

fn assert_helper_used(out: &runtime_tests::RunOutput) {
    assert!(
        out.stderr.contains("through the spawn helper"),
        "the helper path was not taken: {}",
        out.describe()
    );
}

/// Runs `f` with a private copy of berth behind a wrapper that sets `BERTH_SPAWN_HELPER=1`
/// (and `--debug`, to see the path taken); then checks that the copy is intact and that
/// nothing leaked.
fn with_private_berth_through_helper(
    f: impl FnOnce(&runtime_tests::Runtime, &mut runtime_tests::Bundle),
) {
    let Some((_, mut b)) = common::setup() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("berth");
    std::fs::copy(runtime_tests::berth_bin().unwrap(), &bin).unwrap();
    let original = std::fs::read(&bin).unwrap();
    let wrapper = dir.path().join("berth-helper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nBERTH_SPAWN_HELPER=1 exec {} \"$@\"\n",
            bin.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut rt = runtime_tests::Runtime::new(&wrapper).unwrap();
    rt.global_args.push("--debug".into());
    let before = runtime_tests::LeakSnapshot::take(&rt, &b);
    f(&rt, &mut b);
    assert!(
        std::fs::read(&bin).unwrap() == original,
        "the berth binary changed"
    );
    rt.cleanup();
    runtime_tests::assert_no_leaks(&before, &rt);
}

/// `exe::protect` on a kernel without `mount_setattr` (before 5.12; forced here with
/// `BERTH_TEST_PROTECT_FALLBACK=1`): the read-only bind mount is made in a helper's mount
/// namespace, and the protected process stays in the caller's mount namespace (a daemon's
/// later mounts must reach the host). Its exe is still not writable.
#[test]
fn protect_fallback_keeps_the_caller_in_its_mount_namespace() {
    with_private_berth_through_helper(|rt, b| {
        b.set_args(&["sleep", "100"]);
        b.add_hook("startContainer", json!({"path": "/bin/true"}));
        b.save().unwrap();
        let id = rt.new_id("fallback");
        let child = std::process::Command::new(&rt.bin)
            .env("BERTH_TEST_PROTECT_FALLBACK", "1")
            .args(["--root", &rt.root.display().to_string(), "--debug", "run"])
            .args(["--bundle", &b.dir().display().to_string(), &id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let running = rt.wait_status(&id, "running", std::time::Duration::from_secs(10));
        let berth = child.id();
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
        let same_ns = ns(&berth.to_string()) == ns("self");
        let held = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(format!("/proc/{berth}/exe"))
            .expect("open berth's exe O_PATH");
        assert!(rt.delete_force(&id).success(), "{}", rt.dump_log());
        let out = child.wait_with_output().unwrap();
        // Every berth process is gone (the file is no longer busy): only the mount protects it.
        let exe_write = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", held.as_raw_fd()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(running.is_some(), "never running: {stderr}");
        assert!(
            stderr.contains("read-only bind mount made in a helper's mount namespace"),
            "the fallback was not taken: {stderr}"
        );
        assert!(same_ns, "berth moved into a mount namespace of its own");
        let err = exe_write.expect_err("the runtime binary opened for writing");
        assert!(err.raw_os_error() == Some(libc::EROFS), "{err}");
    });
}
