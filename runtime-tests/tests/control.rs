//! What controls a container is berth's alone: other users can neither reach the exec fifo nor
//! the state, files berth writes are never written through a link, a lock guards the container
//! it was taken for (readers share it, waits are bounded), teardown touches only the
//! container's own processes and cgroups (compared with runc), and a container process that
//! dies during setup is explained.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{leak_checked, setup};
use runtime_tests::{
    assert_no_leaks, berth_bin, require_path, require_root, wait_until, Bundle, Bystander,
    LeakSnapshot, Runtime,
};
use serde_json::json;

const NOBODY: u32 = 65534;

/// Runs `args` as user and group `nobody` (no supplementary groups); (success, stderr).
fn as_nobody(args: &[&str]) -> (bool, String) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv (util-linux)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A berth runtime whose root sits in a directory every user may traverse (as /run is), so
/// that only berth's own modes keep other users out.
fn public_runtime() -> Option<(tempfile::TempDir, Runtime, Bundle)> {
    // A missing prerequisite is a failure, not a skip.
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("berth-ctl-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let rt = Runtime::with_root(berth_bin().expect("berth binary"), dir.path().join("root"))
        .expect("runtime");
    let b = Bundle::with_probe().expect("bundle");
    Some((dir, rt, b))
}

#[test]
fn exec_fifo_and_state_are_out_of_reach_of_other_users() {
    let Some((_dir, rt, mut b)) = public_runtime() else {
        return;
    };
    let before = LeakSnapshot::take(&rt, &b);
    b.set_args(&["sh", "-c", "echo started; exec sleep 100"]);
    let id = rt.new_id("fifo");
    let out = rt.create(&id, &b);
    assert!(out.success(), "{}", out.describe());
    let state_dir = rt.root.join(&id);
    let mode = fs::metadata(&state_dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "state directory {}", state_dir.display());
    let fifo = state_dir.join("exec.fifo");
    // Writing a byte into the fifo while start runs killed the container. Non-blocking, so
    // that the open fails at once when it is allowed but nobody reads (ENXIO) instead of
    // waiting: only a permission error proves it out of reach.
    let (ok, err) = as_nobody(&[
        "dd",
        "if=/dev/null",
        &format!("of={}", fifo.display()),
        "oflag=nonblock",
        "conv=notrunc",
        "status=none",
    ]);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    let (ok, err) = as_nobody(&["cat", &state_dir.join("state.json").display().to_string()]);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    // Nor through init's open fds.
    let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
    let (ok, err) = as_nobody(&["ls", &format!("/proc/{pid}/fd")]);
    assert!(!ok && err.contains("Permission denied"), "{err}");
    // And start still works.
    let out = rt.start(&id);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    wait_until("the container's program", Duration::from_secs(10), || {
        rt.container_stdout(&id).contains("started")
    });
    let out = rt.delete_force(&id);
    assert!(out.success(), "{}", out.describe());
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

#[test]
fn a_user_namespace_init_starts_with_a_private_state_dir() {
    // Init's root in a user namespace is not host root: it cannot enter the 0700 state
    // directory, and gets the fifo as an fd from berth.
    leak_checked(|rt, b| {
        b.set_namespace("user", None);
        b.linux_mut()["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        b.linux_mut()["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        b.set_args(&["sh", "-c", "echo in-userns; exec sleep 100"]);
        let id = rt.new_id("userns");
        let out = rt.create(&id, b);
        assert!(out.success(), "{}", out.describe());
        let mode = fs::metadata(rt.root.join(&id))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o700);
        let out = rt.start(&id);
        assert!(out.success(), "{}", out.describe());
        wait_until("the container's program", Duration::from_secs(10), || {
            rt.container_stdout(&id).contains("in-userns")
        });
        assert!(rt.delete_force(&id).success());
    });
}

#[test]
fn pid_files_are_never_written_through_a_symlink() {
    leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]);
        // A directory that another user owns (and so can plant links in).
        let dir = b.dir().join("pids");
        fs::create_dir(&dir).unwrap();
        nix::unistd::chown(&dir, Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
        let victim = b.dir().join("victim");
        fs::write(&victim, "keep").unwrap();
        // The old code's predictable temporary names, for create and exec.
        for name in [".pid.tmp", ".epid.tmp", ".pid", ".epid"] {
            std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
        }
        let id = rt.new_id("pidfile");
        let pid_file = dir.join("pid");
        let out = rt.create_with(&id, b, &["--pid-file", pid_file.to_str().unwrap()]);
        assert!(out.success(), "{}", out.describe());
        let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
        assert_eq!(fs::read_to_string(&pid_file).unwrap(), pid.to_string());
        assert!(!pid_file.is_symlink());
        assert!(rt.start(&id).success());
        let epid = dir.join("epid");
        let out = rt.exec_with(
            &id,
            &["-d", "--pid-file", epid.to_str().unwrap()],
            &["sleep", "50"],
        );
        assert!(out.success(), "{}", out.describe());
        assert!(fs::read_to_string(&epid).unwrap().parse::<i32>().is_ok());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");

        // A symlink where the file itself goes is refused, as runc refuses to write through
        // one: create fails and leaves nothing; exec fails and its process does not run on.
        let linked = dir.join("linked");
        std::os::unix::fs::symlink(&victim, &linked).unwrap();
        let id2 = rt.new_id("pidlink");
        let out = rt.create_with(&id2, b, &["--pid-file", linked.to_str().unwrap()]);
        assert!(!out.success(), "{}", out.describe());
        assert!(out.stderr.contains("symlink"), "{}", out.describe());
        assert!(!rt.root.join(&id2).exists());
        let out = rt.exec_with(
            &id,
            &["-d", "--pid-file", linked.to_str().unwrap()],
            &["sleep", "51"],
        );
        assert!(!out.success(), "{}", out.describe());
        assert!(out.stderr.contains("symlink"), "{}", out.describe());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(linked.is_symlink());
        let ps = rt.ps(&id);
        assert!(!ps.stdout.contains("sleep 51"), "{}", ps.stdout);
        assert!(rt.delete_force(&id).success());
    });
}

#[test]
fn spec_never_writes_through_a_planted_symlink() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("berth-spec-")
        .tempdir()
        .expect("temp dir");
    let config = dir.path().join("config.json");
    let spec = |expect_ok: bool| {
        let out = Command::new(berth_bin().expect("berth binary"))
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run berth spec");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.success(), expect_ok, "berth spec: {err}");
        err
    };
    // A dangling link (the old code checked exists(), which follows it, then wrote through
    // it) and a link to a file that exists: both refused, neither target touched.
    let absent = dir.path().join("absent");
    std::os::unix::fs::symlink(&absent, &config).unwrap();
    let err = spec(false);
    assert!(err.contains("exists"), "{err}");
    assert!(
        !absent.exists(),
        "berth spec wrote through a dangling symlink"
    );
    fs::remove_file(&config).unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    std::os::unix::fs::symlink(&victim, &config).unwrap();
    spec(false);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    // Without a link, a fresh regular file.
    fs::remove_file(&config).unwrap();
    spec(true);
    let meta = fs::symlink_metadata(&config).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    serde_json::from_slice::<serde_json::Value>(&fs::read(&config).unwrap()).expect("json");
}

#[test]
fn a_terminal_run_makes_a_missing_runtime_root_private() {
    // `run` with process.terminal makes its console socket in the root before `create` does:
    // the root it makes must be the same 0700 (runc's too) whichever comes first.
    leak_checked(|rt, b| {
        b.spec_mut()["process"]["terminal"] = json!(true);
        b.set_args(&["true"]);
        let fresh = Runtime::with_root(rt.bin.clone(), rt.root.with_file_name("fresh-root"))
            .expect("runtime");
        fs::remove_dir(&fresh.root).expect("remove the fresh root: berth makes it");
        let id = fresh.new_id("ttyroot");
        let out = fresh.run(&id, b);
        assert!(out.success(), "{}", out.describe());
        let mode = fs::metadata(&fresh.root).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "runtime root {}", fresh.root.display());
        fresh.cleanup();
        assert!(fresh.ids().iter().all(|id| !fresh.root.join(id).exists()));
        fs::remove_dir(&fresh.root).expect("the fresh root is empty");
    });
}

fn lock(path: &Path, arg: nix::fcntl::FlockArg) -> nix::fcntl::Flock<fs::File> {
    nix::fcntl::Flock::lock(fs::File::open(path).unwrap(), arg)
        .map_err(|(_, e)| e)
        .expect("flock")
}

#[test]
fn readers_share_the_lock_and_never_wait_and_a_writer_times_out_clearly() {
    leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("lock");
        assert!(rt.create(&id, b).success());
        let dir = rt.root.join(&id);
        std::env::set_var("BERTH_LOCK_TIMEOUT", "0.5");
        // Another reader holds it: readers go on.
        let shared = lock(&dir, nix::fcntl::FlockArg::LockShared);
        let out = rt.state(&id);
        assert!(out.success(), "{}", out.describe());
        let out = rt.list();
        assert!(
            out.success() && out.stdout.contains(&id),
            "{}",
            out.describe()
        );
        let out = rt.ps(&id);
        assert!(out.success(), "{}", out.describe());
        // A writer waits, a bounded while, and says why it gave up.
        let t = Instant::now();
        let out = rt.delete_force(&id);
        assert!(!out.success(), "{}", out.describe());
        assert!(
            out.stderr.contains("busy") && out.stderr.contains("lock"),
            "{}",
            out.describe()
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        drop(shared);
        // A writer holds it: readers do not wait (as runc's), they read the state file,
        // which is only ever replaced whole (issue 11 review).
        let exclusive = lock(&dir, nix::fcntl::FlockArg::LockExclusive);
        let t = Instant::now();
        let out = rt.state(&id);
        assert!(
            out.success() && out.json().unwrap()["status"] == "created",
            "{}",
            out.describe()
        );
        let out = rt.list();
        assert!(
            out.success() && out.stdout.contains(&id),
            "{}",
            out.describe()
        );
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
        drop(exclusive);
        std::env::remove_var("BERTH_LOCK_TIMEOUT");
        assert_eq!(rt.status(&id).as_deref(), Some("created"));
        assert!(rt.delete_force(&id).success());
    });
}

#[test]
fn a_lock_guards_the_directory_at_the_id_when_it_is_finally_taken() {
    leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("relock");
        assert!(rt.create(&id, b).success());
        let dir = rt.root.join(&id);
        let held_a = lock(&dir, nix::fcntl::FlockArg::LockExclusive);
        // `delete` opens container A's directory and waits for its lock.
        let mut delete = Command::new(&rt.bin)
            .args([
                "--root",
                rt.root.to_str().unwrap(),
                "delete",
                "--force",
                &id,
            ])
            .env("BERTH_LOCK_TIMEOUT", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until(
            "delete to open the state directory",
            Duration::from_secs(10),
            || has_open(delete.id(), &dir),
        );
        // Meanwhile A's directory moves away and a new container B gets the id, busy (its
        // lock held) when A's lock is released.
        let moved = rt.root.join(format!("{id}.moved"));
        fs::rename(&dir, &moved).unwrap();
        assert!(rt.create(&id, b).success());
        let held_b = lock(&dir, nix::fcntl::FlockArg::LockExclusive);
        drop(held_a);
        let out = wait_child(&mut delete, Duration::from_secs(20));
        // delete must not act on B without B's lock: it waits for it and gives up.
        assert!(
            !out.0,
            "delete went on without the lock of the directory now at the id"
        );
        assert!(out.1.contains("busy"), "{}", out.1);
        assert!(dir.join("state.json").exists(), "B's state was removed");
        assert!(moved.join("state.json").exists(), "A's state was removed");
        drop(held_b);
        assert!(rt.delete_force(&id).success());
        fs::rename(&moved, &dir).unwrap();
        assert!(rt.delete_force(&id).success());
    });
}

/// How many flock locks are held on `path` (from /proc/locks, by inode).
fn flocks_on(path: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let ino = fs::metadata(path).unwrap().ino();
    fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|l| l.contains("FLOCK") && l.contains(&format!(":{ino} ")))
        .count()
}

#[test]
fn a_create_whose_lock_was_lost_while_its_hooks_ran_fails() {
    // createRuntime hooks run with the lock shared (a hook may call `berth state`). Taking it
    // back exclusively is a flock conversion: while another reader still holds it shared, the
    // non-blocking upgrade fails and leaves create with no lock at all, so another command can
    // take it and delete the container. Here the directory moves away in that window: create
    // must fail, not report a container that is no longer at its id (the old code said ok).
    leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]);
        let entered = b.dir().join("hook-entered");
        let gate = b.dir().join("hook-gate");
        b.add_hook(
            "createRuntime",
            json!({"path": "/bin/sh", "args": ["sh", "-c", format!(
                "touch {}; while [ ! -e {} ]; do sleep 0.01; done",
                entered.display(),
                gate.display()
            )]}),
        );
        b.save().unwrap();
        let id = rt.new_id("hooklock");
        let dir = rt.root.join(&id);
        let err_file = b.dir().join("create.err");
        let mut create = Command::new(&rt.bin)
            .args(["--root", rt.root.to_str().unwrap(), "create", "--bundle"])
            .arg(b.dir())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err_file).unwrap())
            .spawn()
            .unwrap();
        wait_until(
            "the createRuntime hook to run",
            Duration::from_secs(10),
            || entered.exists(),
        );
        // Another reader (as `berth state` or `list` would be) while the hook ends.
        let reader = lock(&dir, nix::fcntl::FlockArg::LockShared);
        fs::write(&gate, "").unwrap();
        wait_until(
            "create's failed upgrade to drop its shared lock",
            Duration::from_secs(10),
            || flocks_on(&dir) == 1,
        );
        let moved = rt.root.join(format!("{id}.moved"));
        fs::rename(&dir, &moved).unwrap();
        drop(reader);
        let (ok, _) = wait_child(&mut create, Duration::from_secs(20));
        let err = fs::read_to_string(&err_file).unwrap_or_default();
        // Whatever happened, nothing of it stays: put a container left in the moved
        // directory back at its id for delete --force, else remove the emptied directory.
        if moved.join("state.json").exists() {
            fs::rename(&moved, &dir).unwrap();
            assert!(rt.delete_force(&id).success());
        } else if moved.exists() {
            fs::remove_dir(&moved).unwrap();
        }
        assert!(
            !ok,
            "create reported success for a container whose directory left the id while its \
             hooks ran"
        );
        assert!(err.contains("deleted by another command"), "{err}");
    });
}

/// Whether process `pid` has `path` open.
fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == path))
}

/// Waits for `child` at most `limit` (killing it then); (success, stderr).
fn wait_child(child: &mut Child, limit: Duration) -> (bool, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status.success(), err)
}

/// Create, start and `delete --force` a container in the bystander's cgroup with `rt`.
fn run_in_shared_cgroup(rt: &Runtime, b: &mut Bundle, by: &mut Bystander, tag: &str) {
    b.linux_mut()["cgroupsPath"] = json!(format!("/{}", by.name));
    b.set_args(&["sh", "-c", "sleep 100 & exec sleep 100"]);
    let id = rt.new_id(tag);
    let out = rt.create(&id, b);
    assert!(out.success(), "{}", out.describe());
    assert!(rt.start(&id).success());
    let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap() as i32;
    let init_start = runtime_tests::start_time(pid);
    let out = rt.delete_force(&id);
    // runc 1.1 warns that it could not remove the busy cgroup, and succeeds.
    assert!(out.success(), "{tag}: {}", out.describe());
    by.assert_untouched(tag);
    // Dead (a zombie until its reaper gets to it counts).
    wait_until(
        &format!("{tag}: init to die"),
        Duration::from_secs(10),
        || {
            runtime_tests::start_time(pid) != init_start
                || fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                })
        },
    );
    assert!(!rt.root.join(&id).exists(), "{tag}: state left");
}

#[test]
fn teardown_spares_a_process_sharing_the_named_cgroup_as_runc_does() {
    let Some((rt, mut b)) = setup() else { return };
    let before = LeakSnapshot::take(&rt, &b);
    let mut by = Bystander::start();
    run_in_shared_cgroup(&rt, &mut b, &mut by, "berth");
    rt.cleanup();
    assert_no_leaks(&before, &rt);
    // The same with runc, in the same cgroup.
    require_path("/usr/sbin/runc", "runc");
    let runc = Runtime::new("/usr/sbin/runc").unwrap();
    let before = LeakSnapshot::take(&runc, &b);
    run_in_shared_cgroup(&runc, &mut b, &mut by, "runc");
    runc.cleanup();
    assert_no_leaks(&before, &runc);
}

#[test]
fn teardown_without_a_pid_namespace_kills_only_the_containers_processes() {
    let Some((rt, mut b)) = setup() else { return };
    let before = LeakSnapshot::take(&rt, &b);
    let mut by = Bystander::start();
    // Init's death does not end the others here: each must be found, and only those.
    b.remove_namespace("pid");
    b.linux_mut()["cgroupsPath"] = json!(format!("/{}", by.name));
    b.set_args(&["sh", "-c", "sleep 100 & exec sleep 100"]);
    let id = rt.new_id("nopidns");
    assert!(rt.create(&id, &b).success());
    assert!(rt.start(&id).success());
    wait_until(
        "the container's two processes",
        Duration::from_secs(10),
        || {
            fs::read_to_string(by.dirs[0].join("cgroup.procs"))
                .is_ok_and(|p| p.lines().count() >= 3)
        },
    );
    let out = rt.delete_force(&id);
    assert!(out.success(), "{}", out.describe());
    by.assert_untouched("berth");
    wait_until(
        "the container's processes to be gone",
        Duration::from_secs(10),
        || {
            fs::read_to_string(by.dirs[0].join("cgroup.procs"))
                .is_ok_and(|p| p.lines().count() == 1)
        },
    );
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

#[test]
fn a_container_process_dying_during_setup_is_explained() {
    leak_checked(|rt, b| {
        // exec's E2BIG: one argument longer than the kernel takes (MAX_ARG_STRLEN, 128 KiB).
        let long = "x".repeat(200_000);
        b.set_args(&["true", &long]);
        let id = rt.new_id("e2big");
        let out = rt.create(&id, b);
        assert!(!out.success(), "{}", out.describe());
        assert!(
            out.stderr.contains("argument list too long"),
            "{}",
            out.describe()
        );
        assert!(!rt.root.join(&id).exists());

        // Killed by the OOM killer during setup. The limit is written once init has joined the
        // cgroup (create's join_cgroup_and_map_ids), while init may still be finishing what it
        // does before it waits for "go" (closing inherited fds): the pages and kernel objects
        // it touches then are charged first (tens of KiB: an 8 KiB limit was sometimes below
        // them, and the kernel refused it with EBUSY, a cgroup error instead of an OOM). 4 MiB
        // is far above that whatever the scheduling, and far below what init allocates later,
        // at a fixed step: prepare_process copies process.env (12 MiB here; a configuration may
        // have 16) before it reports ready. Swap is limited too, so no page escapes there.
        let filler: Vec<String> = (0..12)
            .map(|i| format!("FILL{i}={}", "x".repeat(1 << 20)))
            .collect();
        let filler: Vec<&str> = filler.iter().map(String::as_str).collect();
        let env = b.spec()["process"]["env"].clone();
        b.set_args(&["true"]);
        b.set_env(&filler);
        b.linux_mut()["resources"]["memory"] = json!({"limit": 4 << 20, "swap": 4 << 20});
        let id = rt.new_id("oom");
        let out = rt.create(&id, b);
        assert!(!out.success(), "{}", out.describe());
        assert!(
            out.stderr
                .contains("init was killed by SIGKILL during setup (memory limit 4 MiB reached?)"),
            "{}",
            out.describe()
        );
        assert!(!rt.root.join(&id).exists());
        b.linux_mut()["resources"]
            .as_object_mut()
            .unwrap()
            .remove("memory");
        let env: Vec<&str> = env
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        b.set_env(&env);

        // A seccomp profile whose default action kills: init dies at its next system call.
        b.linux_mut()["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_KILL",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": []
        });
        let id = rt.new_id("seccomp");
        let out = rt.create(&id, b);
        assert!(!out.success(), "{}", out.describe());
        assert!(
            out.stderr.contains("killed by SIGSYS during setup")
                && out.stderr.contains("seccomp")
                && out.stderr.contains("SCMP_ACT_KILL"),
            "{}",
            out.describe()
        );
        assert!(!rt.root.join(&id).exists());
        // The status is reported, not a signal of our own.
        assert_eq!(out.status.and_then(|s| s.signal()), None);
    });
}
