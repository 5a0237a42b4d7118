//! Resource limits enforced by the kernel on this host's cgroup v1 controllers, through the berth
//! CLI: memory (OOM kill and the `events` report), pids, cpu quota, devices, pause/resume,
//! `update`, `ps` and `kill --all`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cgroup_dirs_named, leak_checked, wait_for};
use serde_json::json;

fn v1(controller: &str, id: &str) -> Option<std::path::PathBuf> {
    cgroup_dirs_named(id)
        .into_iter()
        .find(|p| p.starts_with(format!("/sys/fs/cgroup/{controller}/")))
}

/// A container limited to 32 MiB that, once /tmp/go exists, grows a shell variable by
/// doubling until the OOM killer ends it.
fn memory_hog(b: &mut runtime_tests::Bundle) {
    b.set_resources(json!({"memory": {"limit": 32 << 20, "swap": 32 << 20}}));
    b.set_args(&[
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; \
         x=0123456789abcdef; while :; do x=$x$x; done",
    ]);
    b.set_readonly_root(false);
}

/// `berth events --interval 1s ID` with its output piped.
fn spawn_events(rt: &runtime_tests::Runtime, id: &str) -> std::process::Child {
    Command::new(&rt.bin)
        .args([
            "--root",
            rt.root.to_str().unwrap(),
            "events",
            "--interval",
            "1s",
            id,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn memory_limit_oom_kills_and_events_reports_it() {
    leak_checked(|rt, b| {
        memory_hog(b);
        let id = rt.new_id("oom");
        assert!(
            rt.run_with(&id, b, &["--detach"]).success(),
            "{}",
            rt.dump_log()
        );
        let mut events = spawn_events(rt, &id);
        let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
        // The first stats line: the OOM watcher is registered.
        let first = lines.next().unwrap().unwrap();
        assert!(first.contains("\"stats\""), "{first}");
        std::fs::write(b.rootfs().join("tmp/go"), "").unwrap();
        rt.wait_stopped(&id);
        let mut saw_oom = false;
        let reader = std::thread::spawn(move || {
            let mut oom = false;
            for line in lines.map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v["type"] == "oom" {
                    oom = true;
                    break;
                }
            }
            oom
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !reader.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if reader.is_finished() {
            saw_oom = reader.join().unwrap();
        }
        let _ = events.kill();
        let _ = events.wait();
        assert!(saw_oom, "events did not report the OOM");
        // The kernel's own count.
        let oom_control = v1("memory", &id)
            .map(|d| std::fs::read_to_string(d.join("memory.oom_control")).unwrap());
        let kills = oom_control
            .as_deref()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("oom_kill ")))
            .and_then(|n| n.trim().parse::<u64>().ok());
        assert!(
            kills.is_some_and(|n| n >= 1),
            "memory.oom_control counts no OOM kill: {oom_control:?}"
        );
        assert!(rt.delete(&id).success());
    });
}

/// A child that is stopped at times: continued and killed whatever happens to the test.
struct ContinueAndKill(std::process::Child);

impl Drop for ContinueAndKill {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn events_reports_an_oom_even_when_the_container_is_deleted_first() {
    leak_checked(|rt, b| {
        memory_hog(b);
        let id = rt.new_id("oomdel");
        assert!(
            rt.run_with(&id, b, &["--detach"]).success(),
            "{}",
            rt.dump_log()
        );
        let mut events = spawn_events(rt, &id);
        let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
        let mut events = ContinueAndKill(events);
        // The first stats line: the OOM watcher is registered.
        let first = lines.next().unwrap().unwrap();
        assert!(first.contains("\"stats\""), "{first}");
        // The worst order for the watcher: it sleeps through the OOM kill and the removal of
        // the cgroup, and only then reads its eventfd.
        // Stop it between two looks at the container, not while it holds the container's lock.
        let pid = nix::unistd::Pid::from_raw(events.0.id() as i32);
        let state_dir = std::fs::File::open(rt.root.join(&id)).unwrap();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
            let free = nix::fcntl::Flock::lock(
                state_dir.try_clone().unwrap(),
                nix::fcntl::FlockArg::LockExclusiveNonblock,
            );
            if free.is_ok() {
                break;
            }
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        }
        std::fs::write(b.rootfs().join("tmp/go"), "").unwrap();
        rt.wait_stopped(&id);
        assert!(rt.delete(&id).success());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !reader.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = events.0.kill();
        let _ = events.0.wait();
        let seen = reader.join().unwrap();
        assert!(
            seen.iter().any(|l| l.contains("\"oom\"")),
            "events did not report the OOM: {seen:?}"
        );
    });
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    leak_checked(|rt, b| {
        b.set_resources(json!({"pids": {"limit": 16}}));
        b.set_args(&[
            "sh",
            "-c",
            "sh -c 'n=0; while [ $n -lt 40 ]; do sleep 30 & n=$((n+1)); done' 2>/dev/null; \
             exec sleep 100",
        ]);
        let id = rt.new_id("pids");
        assert!(rt.run_with(&id, b, &["--detach"]).success());
        let dir = v1("pids", &id).expect("pids cgroup");
        assert_eq!(
            std::fs::read_to_string(dir.join("pids.max"))
                .unwrap()
                .trim(),
            "16"
        );
        // Wait until the kernel has refused a fork (v1 pids.events counts them).
        let refused = || -> u64 {
            std::fs::read_to_string(dir.join("pids.events"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("max "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && refused() == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(refused() > 0, "no fork was refused");
        let procs = rt.cmd(&["ps", "--format", "json", &id]).json().unwrap();
        let n = procs.as_array().unwrap().len();
        assert!((10..=16).contains(&n), "pids.max 16 but {n} processes");

        assert!(rt.kill_all(&id, "KILL").success());
        rt.wait_stopped(&id);
        assert!(rt.delete(&id).success());
    });
}

#[test]
fn cpu_quota_throttles() {
    leak_checked(|rt, b| {
        b.set_resources(json!({"cpu": {"quota": 10000, "period": 100000, "shares": 512}}));
        b.set_args(&["sh", "-c", "while :; do :; done"]);
        let id = rt.new_id("cpu");
        assert!(rt.run_with(&id, b, &["--detach"]).success());
        let dir = v1("cpu", &id).expect("cpu cgroup");
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim(),
            "10000"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.shares"))
                .unwrap()
                .trim(),
            "512"
        );
        let throttled = || -> u64 {
            std::fs::read_to_string(dir.join("cpu.stat"))
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("nr_throttled "))
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        assert!(
            wait_for(Duration::from_secs(10), || throttled() > 0),
            "a busy loop limited to 10% of a cpu was never throttled"
        );
        // And `events --stats` shows it.
        let ev = rt
            .cmd(&["events", "--stats", &id])
            .json()
            .expect("stats json");
        assert_eq!(ev["type"], "stats");
        assert!(
            ev["data"]["cpu"]["throttling"]["throttledPeriods"]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "{ev}"
        );
        assert!(rt.delete_force(&id).success());
    });
}

#[test]
fn denied_device_cannot_be_opened_allowed_one_can() {
    leak_checked(|rt, b| {
        // /dev/fuse and /dev/loop-control open for root without capabilities; neither is in
        // the default allow list, so only the spec's rule can allow one of them.
        b.add_device(
            json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}),
        );
        b.add_device(json!({"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 438}));
        b.set_resources(json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}
        ]}));
        b.set_args(&[
            "sh",
            "-c",
            "(exec 3<>/dev/fuse) && echo fuse-open; \
             (exec 3<>/dev/loop-control) 2>/dev/null && echo loop-open || echo loop-denied",
        ]);
        let out = rt.run(&rt.new_id("dev"), b);
        assert!(out.stdout.contains("fuse-open"), "{}", out.describe());
        assert!(out.stdout.contains("loop-denied"), "{}", out.describe());
    });
}

fn utime(pid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(11).unwrap().parse().unwrap()
}

#[test]
fn pause_freezes_and_resume_thaws() {
    leak_checked(|rt, b| {
        b.set_args(&["sh", "-c", "while :; do :; done"]);
        let id = rt.new_id("pause");
        assert!(rt.run_with(&id, b, &["--detach"]).success());
        let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
        assert!(rt.pause(&id).success(), "{}", rt.dump_log());
        assert_eq!(rt.status(&id).as_deref(), Some("paused"));
        let list = rt.cmd(&["list", "--format", "json"]).json().unwrap();
        assert_eq!(list[0]["status"], "paused");
        let t0 = utime(pid);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(utime(pid), t0, "a frozen process kept running");
        assert!(
            !rt.pause(&id).success(),
            "pausing a paused container must fail"
        );
        assert!(rt.resume(&id).success());
        assert_eq!(rt.status(&id).as_deref(), Some("running"));
        assert!(
            wait_for(Duration::from_secs(10), || utime(pid) > t0),
            "a thawed process did not run"
        );
        assert!(
            !rt.resume(&id).success(),
            "resuming a running container must fail"
        );
        // delete --force of a paused container works too.
        assert!(rt.pause(&id).success());
        assert!(rt.delete_force(&id).success(), "{}", rt.dump_log());
    });
}

#[test]
fn update_changes_live_limits_and_ps_lists_processes() {
    leak_checked(|rt, b| {
        b.set_resources(json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 100}}));
        b.set_args(&["sh", "-c", "sleep 100 & sleep 100"]);
        let id = rt.new_id("upd");
        assert!(rt.run_with(&id, b, &["--detach"]).success());
        let out = rt.cmd(&[
            "update",
            "--memory",
            "48m",
            "--pids-limit",
            "50",
            "--cpu-shares",
            "256",
            &id,
        ]);
        assert!(out.success(), "{}", out.describe());
        let mem = v1("memory", &id).unwrap();
        assert_eq!(
            std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            (48u64 << 20).to_string()
        );
        let pids = v1("pids", &id).unwrap();
        assert_eq!(
            std::fs::read_to_string(pids.join("pids.max"))
                .unwrap()
                .trim(),
            "50"
        );
        let res = b.dir().join("res.json");
        std::fs::write(&res, r#"{"pids": {"limit": 77}}"#).unwrap();
        assert!(rt
            .cmd(&["update", "-r", res.to_str().unwrap(), &id])
            .success());
        assert_eq!(
            std::fs::read_to_string(pids.join("pids.max"))
                .unwrap()
                .trim(),
            "77"
        );

        // sh execs its last command: one sleep in the background, one exec'd.
        let count = || {
            rt.cmd(&["ps", "--format", "json", &id])
                .json()
                .unwrap()
                .as_array()
                .unwrap()
                .len()
        };
        assert!(
            wait_for(Duration::from_secs(10), || count() == 2),
            "ps does not list the two sleeps: {}",
            rt.cmd(&["ps", &id]).stdout
        );
        let table = rt.cmd(&["ps", &id]);
        assert!(table.stdout.starts_with("UID"), "{}", table.stdout);
        assert_eq!(
            table
                .stdout
                .lines()
                .filter(|l| l.contains("sleep 100"))
                .count(),
            2
        );

        assert!(rt.kill_all(&id, "KILL").success());
        rt.wait_stopped(&id);
        assert!(rt.delete(&id).success());
    });
}

#[test]
fn kill_all_without_pid_namespace_reaches_every_process() {
    leak_checked(|rt, b| {
        b.remove_namespace("pid");
        b.set_args(&["sh", "-c", "sleep 101 & sleep 102 & sleep 103"]);
        let id = rt.new_id("killall");
        assert!(rt.run_with(&id, b, &["--detach"]).success());
        // sh and two sleeps (sh execs the last one).
        let count = || {
            rt.cmd(&["ps", "--format", "json", &id])
                .json()
                .unwrap()
                .as_array()
                .unwrap()
                .len()
        };
        assert!(
            wait_for(Duration::from_secs(10), || count() == 3),
            "ps does not list sh and its sleeps: {}",
            rt.cmd(&["ps", &id]).stdout
        );
        assert!(rt.kill_all(&id, "KILL").success());
        rt.wait_stopped(&id);
        assert!(rt.delete(&id).success());
        // No sleep survived (SIGKILLed processes may linger a moment as they exit).
        let survivors = || {
            let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
            String::from_utf8_lossy(&ps.stdout)
                .lines()
                .filter(|l| *l == "sleep 101" || *l == "sleep 102")
                .count()
        };
        assert!(
            wait_for(Duration::from_secs(10), || survivors() == 0),
            "a sleep of the container survived kill --all"
        );
    });
}

/// Every line of a `/proc/PID/cgroup` names `want`; the unified hierarchy (`0::`) among them.
fn assert_all_in(cgroup_file: &str, want: &str, what: &str) {
    let lines: Vec<&str> = cgroup_file.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("0::")),
        "{what}: no unified hierarchy in\n{cgroup_file}"
    );
    for l in lines {
        assert_eq!(
            l.splitn(3, ':').nth(2),
            Some(want),
            "{what}: {l} in\n{cgroup_file}"
        );
    }
}

/// An executable `dir/name` that runs `bin` with its arguments through `prefix`, a command
/// that runs its own arguments (`env BERTH_SPAWN_HELPER=1`, `chrt -f 1`).
fn wrapped(
    dir: &std::path::Path,
    name: &str,
    prefix: &str,
    bin: &std::path::Path,
) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join(name);
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {prefix} {} \"$@\"\n", bin.display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// berth with `BERTH_SPAWN_HELPER=1` (the path a multithreaded embedder such as berthd
/// takes), in `dir`.
fn berth_through_helper(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = runtime_tests::berth_bin().expect("berth binary (BERTH_BIN)");
    wrapped(dir, "berth-helper", "env BERTH_SPAWN_HELPER=1", &bin)
}

/// Init joins the v1 hierarchies itself (writing 0 to `tasks`) and is cloned into the unified
/// one (clone3 CLONE_INTO_CGROUP), sparing the kernel's global cgroup lock, which berth's
/// `--debug` output says for each create. Whatever the path (the direct clone, the spawn
/// helper's, a new user namespace whose id maps come after the join, the second fork of a new
/// time namespace, a cgroup namespace or none), init ends in the container's cgroup in every
/// hierarchy, and so does an exec'd process, cloned into the unified cgroup by berth's first
/// exec child (unless an initial CPU affinity must hold until it is in the cgroup).
#[test]
fn init_and_exec_processes_enter_the_cgroup_of_every_hierarchy() {
    let Some((_, mut b)) = common::setup() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let helper = berth_through_helper(dir.path());
    let bin = runtime_tests::berth_bin().unwrap();
    for (variant, through_helper) in [
        ("plain", false),
        ("userns", false),
        ("timens", false),
        ("no-cgroupns", false),
        ("plain", true),
        ("userns", true),
    ] {
        let mut rt =
            runtime_tests::Runtime::new(if through_helper { &helper } else { &bin }).unwrap();
        rt.global_args = vec!["--debug".into()];
        let before = runtime_tests::LeakSnapshot::take(&rt, &b);
        let what = format!("{variant} (spawn helper: {through_helper})");
        b.set_namespaces(&["pid", "network", "ipc", "uts", "mount", "cgroup"]);
        b.linux_mut().as_object_mut().unwrap().remove("uidMappings");
        b.linux_mut().as_object_mut().unwrap().remove("gidMappings");
        match variant {
            "userns" => {
                b.set_namespace("user", None);
                b.set_id_mappings(100000, 100000, 65536);
            }
            "timens" => {
                b.set_namespace("time", None);
            }
            "no-cgroupns" => {
                b.remove_namespace("cgroup");
            }
            _ => {}
        }
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("selfjoin");
        let path = format!("/{id}");
        b.set_cgroups_path(&path);
        let out = rt.create(&id, &b);
        assert!(out.success(), "{what}: {}", out.describe());
        let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
        let init = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert_all_in(&init, &path, &format!("{what}: init after create"));
        assert!(rt.start(&id).success(), "{what}");
        // From inside: the cgroup namespace's root is the container's cgroup.
        let inside = if variant == "no-cgroupns" { &path } else { "/" };
        let out = rt.exec(&id, &["cat", "/proc/self/cgroup"]);
        assert!(out.success(), "{what}: {}", out.describe());
        assert_all_in(&out.stdout, inside, &format!("{what}: exec"));
        assert!(
            out.stderr
                .contains("the exec'd process was cloned into its unified cgroup"),
            "{what}: the exec'd process was not cloned into its cgroup: {}",
            out.describe()
        );
        // An initial CPU affinity holds until the process is in the cgroup: berth moves that
        // one into the unified hierarchy itself.
        let pf = dir.path().join(format!("{id}.json"));
        let process = json!({"cwd": "/", "args": ["cat", "/proc/self/cgroup"],
            "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
            "execCPUAffinity": {"initial": "0"}});
        std::fs::write(&pf, process.to_string()).unwrap();
        let out = rt.exec_with(&id, &["--process", pf.to_str().unwrap()], &[]);
        assert!(out.success(), "{what}: {}", out.describe());
        assert_all_in(
            &out.stdout,
            inside,
            &format!("{what}: exec, initial affinity"),
        );
        assert!(
            out.stderr
                .contains("is moved into its unified cgroup from here"),
            "{what}: {}",
            out.describe()
        );
        assert!(rt.delete_force(&id).success(), "{what}");
        let create = &rt.calls()[0];
        assert!(
            create.stderr.contains("was cloned into its unified cgroup")
                && !create.stderr.contains("CLONE_INTO_CGROUP"),
            "{what}: init was not cloned into its cgroup: {}",
            create.describe()
        );
        rt.cleanup();
        runtime_tests::assert_no_leaks(&before, &rt);
    }
}

/// A cgroup that cannot take processes (a unified cgroup with controllers enabled for its
/// children: cgroup v2's "no internal processes" rule): clone3 into it is refused, berth
/// falls back to a plain clone and moving init from outside, which fails as runc's write
/// does, naming the file; nothing is left behind (init, cgroups of other hierarchies, state).
#[test]
fn a_unified_cgroup_that_refuses_processes_fails_the_create_naming_the_file() {
    /// The test's own unified cgroup, removed however the test ends.
    struct Own(std::path::PathBuf);
    impl Drop for Own {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let name = format!("berth-test-busy-{}", std::process::id());
    let own = Own(std::path::PathBuf::from("/sys/fs/cgroup/unified").join(&name));
    let unified = &own.0;
    std::fs::create_dir(unified).unwrap();
    let enabled = std::fs::write(unified.join("cgroup.subtree_control"), "+hugetlb");
    leak_checked(|rt, b| {
        enabled
            .as_ref()
            .expect("enable hugetlb below the test's unified cgroup");
        b.set_args(&["sleep", "100"]);
        b.set_cgroups_path(&format!("/{name}"));
        let id = rt.new_id("busy");
        b.save().unwrap();
        let out = rt.cmd(&[
            "--debug",
            "create",
            "--bundle",
            b.dir().to_str().unwrap(),
            &id,
        ]);
        assert!(!out.success(), "{}", out.describe());
        let file = unified.join("cgroup.procs");
        assert!(
            out.stderr.contains(&file.display().to_string())
                && out.stderr.contains("Device or resource busy"),
            "{}",
            out.describe()
        );
        assert!(
            out.stderr.contains("clone3(CLONE_INTO_CGROUP): EBUSY")
                && out
                    .stderr
                    .contains("moved into its unified cgroup from here"),
            "the fallback is logged: {}",
            out.describe()
        );
        assert!(rt.list().stdout.lines().all(|l| !l.contains(&id)));
        // The cgroups berth made in the v1 hierarchies are gone; the test's own stays.
        let left: Vec<_> = cgroup_dirs_named(&name)
            .into_iter()
            .filter(|p| p != unified)
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    });
    std::fs::remove_dir(unified).unwrap();
    std::mem::forget(own);
}

/// A runtime started with the real-time policy SCHED_FIFO (`chrt -f 1`): its container
/// processes inherit it, and a real-time task may join a v1 cpu cgroup only when that cgroup
/// has a real-time budget (`cpu.rt_runtime_us`). With `linux.resources.cpu.realtimeRuntime`
/// the container runs, as under runc, which writes the budget before moving the process in
/// (berth writes every limit before the process exists); without it, both runtimes fail, for
/// init and for an exec'd process, and berth's error names the file that refused the process
/// (the process's own report: it moves itself). Nothing is left either way.
#[test]
fn a_real_time_caller_needs_the_cgroups_real_time_budget_as_with_runc() {
    runtime_tests::require_root();
    runtime_tests::require_path(common::RUNC, "runc");
    runtime_tests::require_path("/usr/bin/chrt", "util-linux");
    let dir = tempfile::tempdir().unwrap();
    let berth = runtime_tests::berth_bin().expect("berth binary (BERTH_BIN)");
    let mut b = runtime_tests::Bundle::with_probe().unwrap();
    for (name, bin) in [("berth", berth.as_path()), ("runc", common::RUNC.as_ref())] {
        let plain = runtime_tests::Runtime::new(bin).unwrap();
        let fifo = wrapped(dir.path(), &format!("{name}-fifo"), "chrt -f 1", bin);
        let rt = runtime_tests::Runtime::with_root(fifo, &plain.root).unwrap();
        let before = runtime_tests::LeakSnapshot::take(&plain, &b);
        let names_the_file = |out: &runtime_tests::RunOutput, id: &str, file: &str| {
            assert!(!out.success(), "{name}: {}", out.describe());
            let file = format!("/{id}/{file}");
            assert!(
                out.stderr.to_lowercase().contains("invalid argument")
                    && (name == "runc" || out.stderr.contains(&file)),
                "{name}: the error names {file}: {}",
                out.describe()
            );
        };

        if let Some(r) = b.linux_mut()["resources"].as_object_mut() {
            r.remove("cpu");
        }
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("rt-none");
        names_the_file(&rt.run(&id, &b), &id, "tasks");
        assert!(v1("cpu", &id).is_none(), "{name}: cgroup left");
        let id = plain.new_id("rt-exec");
        let out = plain.run_with(&id, &b, &["--detach"]);
        assert!(out.success(), "{name}: {}", out.describe());
        names_the_file(&rt.exec(&id, &["true"]), &id, "tasks");
        assert!(plain.delete_force(&id).success(), "{name}");

        b.set_resources(json!({"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 10000}}));
        b.set_args(&["sh", "-c", "grep policy /proc/self/sched"]);
        let id = rt.new_id("rt-budget");
        let out = rt.run(&id, &b);
        assert!(out.success(), "{name}: {}", out.describe());
        let policy = rt.container_stdout(&id);
        assert!(
            policy.split_whitespace().last() == Some("1"),
            "{name}: SCHED_FIFO (1) inside: {policy}"
        );
        rt.cleanup();
        plain.cleanup();
        runtime_tests::assert_no_leaks(&before, &plain);
    }
}

/// `berth exec` into a container at its pids limit works (the exec'd process enters the
/// cgroup by moving there, which a limit does not refuse; only forks into it are counted): the
/// clone into the full cgroup is refused, berth moves the process instead, and the first child
/// that forks it stays outside the container's cgroup. runc 1.1 fails here.
#[test]
fn exec_into_a_container_at_its_pids_limit_works() {
    leak_checked(|rt, b| {
        b.set_resources(json!({"pids": {"limit": 1}}));
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("pids-exec");
        let out = rt.run_with(&id, b, &["--detach"]);
        assert!(out.success(), "{}", out.describe());
        let out = rt.exec(&id, &["cat", "/sys/fs/cgroup/pids/pids.max"]);
        assert!(out.success(), "{}", out.describe());
        assert_eq!(out.stdout.trim(), "1", "{}", out.describe());
        assert!(rt.delete_force(&id).success());
    });
}
