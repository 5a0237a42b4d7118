//! berthd's container lifecycle where it meets pause, restart policies and its own death, as
//! Debian's dockerd 20.10 + runc behave (each compared live: the expected words and states
//! below are dockerd's): stop/restart/rm -f of a paused container thaw and end it, exec into a
//! paused one is a 409; a stop cancels a pending restart, the backoff is reported as
//! `restarting`, the daemon's start applies the policies as dockerd's restore does; the paused
//! state is restored from the freezer; `--rm` containers are removed at restore; a second
//! daemon on the same roots or pid file refuses to start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime_tests::daemon::{berthd_bin, OutputExt, TestDaemon};

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    TestDaemon::start().expect("start berthd")
}

fn inspect(d: &TestDaemon, fmt: &str, name: &str) -> String {
    d.ok(&["inspect", "-f", fmt, name])
}

/// The container's v1 freezer cgroup directory.
fn freezer(id: &str) -> PathBuf {
    runtime_tests::cgroup_dirs(&[id.to_owned()])
        .into_iter()
        .find(|p| p.join("freezer.state").exists())
        .unwrap_or_else(|| panic!("no freezer cgroup for {id}"))
}

fn freezer_state(id: &str) -> String {
    std::fs::read_to_string(freezer(id).join("freezer.state"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn daemon_paused_container_stop_restart_rm_and_exec() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&["run", "-d", "--name", "pz", "busybox", "sleep", "1000"]));
    d.ok(&["pause", "pz"]);
    assert_eq!(freezer_state(&id), "FROZEN");
    // exec: dockerd's 409 at create, naming the container as the client did.
    let o = d.docker(&["exec", "pz", "true"]);
    assert_ne!(o.code(), 0);
    o.assert_stderr_contains("Container pz is paused, unpause the container before exec");
    let (status, _, body) = d
        .http(
            "POST",
            "/containers/pz/exec",
            Some(br#"{"Cmd":["true"],"AttachStdout":true}"#),
        )
        .unwrap();
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    // rm without -f: 409.
    let o = d.docker(&["rm", "pz"]);
    o.assert_stderr_contains("You cannot remove a paused container");
    // A signal to a paused container without a stop signal of its own thaws it (dockerd).
    d.ok(&["kill", "-s", "USR1", "pz"]);
    assert_eq!(inspect(&d, "{{.State.Status}}", "pz"), "running");
    assert_eq!(freezer_state(&id), "THAWED");
    d.ok(&["pause", "pz"]);
    // stop: SIGTERM (ignored by sleep as pid 1), the container thawed, SIGKILL after 1 s.
    let t0 = Instant::now();
    d.ok(&["stop", "-t", "1", "pz"]);
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert_eq!(
        inspect(
            &d,
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Paused}}",
            "pz"
        ),
        "exited 137 false"
    );
    // restart of a paused container: stopped, then running again.
    d.ok(&["start", "pz"]);
    d.ok(&["pause", "pz"]);
    let pid1 = inspect(&d, "{{.State.Pid}}", "pz");
    d.ok(&["restart", "-t", "1", "pz"]);
    assert_eq!(
        inspect(
            &d,
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Paused}}",
            "pz"
        ),
        "running 0 false"
    );
    assert_ne!(inspect(&d, "{{.State.Pid}}", "pz"), pid1);
    assert_eq!(d.ok(&["exec", "pz", "echo", "in"]), "in");
    // start of a paused container: dockerd's 409.
    d.ok(&["pause", "pz"]);
    let o = d.docker(&["start", "pz"]);
    o.assert_stderr_contains("cannot start a paused container");
    // rm -f of a paused container removes it.
    d.ok(&["rm", "-f", "pz"]);
    assert!(!d.docker(&["inspect", "pz"]).status.success());
    d.assert_clean(&[]);
}

#[test]
fn daemon_restart_backoff_is_reported_and_cancelled_by_stop() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "bo",
        "--restart",
        "always",
        "busybox",
        "false",
    ]));
    // A backoff long enough to look at (100 ms doubling: 3.2 s before the sixth restart;
    // RestartCount counts it from the exit that starts the backoff, as dockerd's), and during
    // it dockerd's state: running, restarting, no pid, the last exit code.
    d.wait_until("the backoff after a few restarts", 30, || {
        d.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Restarting}} {{.State.Running}} {{.State.Pid}} {{.State.ExitCode}} {{.RestartCount}}",
            "bo",
        ])
        .stdout_str()
        .trim()
        .strip_prefix("restarting true true 0 1 ")
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n >= 6)
    });
    // ps (without -a) lists it as dockerd does, and plain rm is refused.
    let ps = d.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("bo Restarting (1) "), "{ps}");
    let o = d.docker(&["rm", "bo"]);
    o.assert_stderr_contains(&format!("You cannot remove a restarting container {id}"));
    let o = d.docker(&["exec", "bo", "true"]);
    o.assert_stderr_contains("is restarting");
    // stop cancels the pending restart: the container stays exited with its count.
    let state = |d: &TestDaemon| {
        inspect(
            d,
            "{{.State.Status}} {{.State.Restarting}} {{.RestartCount}}",
            "bo",
        )
    };
    let restarting_at_least = |d: &TestDaemon, n: u32| {
        state(d)
            .strip_prefix("restarting true ")
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| c >= n)
    };
    let count = state(&d).rsplit(' ').next().unwrap().to_owned();
    d.ok(&["stop", "bo"]);
    assert_eq!(state(&d), format!("exited false {count}"));
    d.wait_until("the cancelled restart's wake-up", 30, || {
        d.log().matches("pending restart cancelled").count() == 1
    });
    assert_eq!(state(&d), format!("exited false {count}"));
    assert_eq!(
        d.ok(&["ps", "-a", "--format", "{{.Status}}"])
            .split(' ')
            .take(2)
            .collect::<Vec<_>>(),
        ["Exited", "(1)"]
    );
    // docker kill of a restarting container cancels it too.
    d.ok(&["start", "bo"]);
    d.wait_until("a long backoff again", 30, || restarting_at_least(&d, 6));
    d.ok(&["kill", "bo"]);
    let count = state(&d).rsplit(' ').next().unwrap().to_owned();
    assert_eq!(state(&d), format!("exited false {count}"));
    d.wait_until("the second cancelled wake-up", 30, || {
        d.log().matches("pending restart cancelled").count() == 2
    });
    assert_eq!(state(&d), format!("exited false {count}"));
    d.ok(&["rm", "bo"]);

    // After a restart by policy, a running container's exit code is 0 (dockerd's
    // SetRunning); FinishedAt keeps the previous run's end.
    d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "once",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "test -f /ran && exec sleep 1000; touch /ran; exit 3",
    ]));
    d.wait_until("the restart", 30, || {
        d.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.RestartCount}}",
            "once",
        ])
        .stdout_str()
        .trim()
            == "running 1"
    });
    let f = inspect(
        &d,
        "{{.State.ExitCode}} {{.State.FinishedAt}} {{.State.StartedAt}}",
        "once",
    );
    let f: Vec<&str> = f.split(' ').collect();
    assert_eq!(f[0], "0", "{f:?}");
    assert!(
        !f[1].starts_with("0001-"),
        "FinishedAt of the first run: {f:?}"
    );
    d.ok(&["rm", "-f", "once"]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_start_applies_restart_policies_as_dockerd() {
    let mut d = daemon();
    d.load_busybox();
    for (name, policy) in [
        ("ra", "always"),
        ("us", "unless-stopped"),
        ("of", "on-failure"),
        ("np", "no"),
    ] {
        d.track(&d.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "busybox",
            "sleep",
            "1000",
        ]));
        d.ok(&["stop", "-t", "0", name]);
    }
    // on-failure:1 that already used its retry.
    d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "of1",
        "--restart",
        "on-failure:1",
        "busybox",
        "false",
    ]));
    d.wait_until("of1's one restart", 30, || {
        d.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.RestartCount}}",
            "of1",
        ])
        .stdout_str()
        .trim()
            == "exited 1"
    });
    let finished = inspect(&d, "{{.State.FinishedAt}}", "ra");
    d.restart();
    let st = |n: &str| {
        inspect(
            &d,
            "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}",
            n,
        )
    };
    // always: started again even though stopped by hand; its count starts over.
    assert_eq!(st("ra"), "running 0 0");
    assert_eq!(inspect(&d, "{{.State.FinishedAt}}", "ra"), finished);
    // unless-stopped: not after a stop by hand.
    assert_eq!(st("us"), "exited 137 0");
    // on-failure: the stop's 137 is a failure.
    assert_eq!(st("of"), "running 0 0");
    assert_eq!(st("np"), "exited 137 0");
    assert_eq!(st("of1"), "exited 1 1");
    d.remove_all();
    d.assert_clean(&[]);
}

#[test]
fn daemon_paused_state_restored_from_the_freezer() {
    let mut d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&["run", "-d", "--name", "pk", "busybox", "sleep", "1000"]));
    // A daemon killed in a pause after the freezer was written, before the record was.
    d.kill9();
    std::fs::write(freezer(&id).join("freezer.state"), "FROZEN").unwrap();
    d.wait_until("the freeze", 20, || freezer_state(&id) == "FROZEN");
    d.restart();
    assert_eq!(
        inspect(&d, "{{.State.Status}} {{.State.Paused}}", "pk"),
        "paused true"
    );
    let o = d.docker(&["exec", "pk", "true"]);
    o.assert_stderr_contains("is paused");
    d.ok(&["unpause", "pk"]);
    assert_eq!(freezer_state(&id), "THAWED");
    assert_eq!(d.ok(&["exec", "pk", "echo", "thawed"]), "thawed");
    // And killed in an unpause after the thaw, before the record.
    d.ok(&["pause", "pk"]);
    d.kill9();
    std::fs::write(freezer(&id).join("freezer.state"), "THAWED").unwrap();
    d.restart();
    assert_eq!(
        inspect(&d, "{{.State.Status}} {{.State.Paused}}", "pk"),
        "running false"
    );
    d.ok(&["pause", "pk"]);
    assert_eq!(freezer_state(&id), "FROZEN");
    // Even a record that disagrees with the freezer while the daemon runs: pause and
    // unpause go by the freezer.
    std::fs::write(freezer(&id).join("freezer.state"), "THAWED").unwrap();
    d.ok(&["pause", "pk"]);
    assert_eq!(freezer_state(&id), "FROZEN");
    d.ok(&["rm", "-f", "pk"]);
    d.assert_clean(&[]);
}

/// Rewrite a stopped daemon's record of container `id` with `f`.
fn edit_record(d: &TestDaemon, id: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let p = d.data.join("containers").join(id).join("config.v2.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn daemon_auto_remove_containers_are_removed_at_restore() {
    let mut d = daemon();
    d.load_busybox();
    let share = d.dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let bind = format!("{}:/share", share.display());
    // Exits while the daemon is dead.
    let away = d.track(&d.ok(&[
        "run",
        "-d",
        "--rm",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "while [ ! -f /share/go ]; do sleep 0.02; done",
    ]));
    // Its exit recorded, the removal not done: the daemon died in between.
    let recorded = d.track(&d.ok(&["create", "--rm", "busybox", "true"]));
    // Created with --rm and never started (its client went with the daemon): dockerd's
    // restore removes it too.
    let created = d.track(&d.ok(&["create", "--rm", "--name", "cr", "busybox", "true"]));
    let kept = d.track(&d.ok(&["create", "--name", "kept", "busybox", "true"]));
    d.kill9();
    std::fs::write(share.join("go"), "").unwrap();
    let exit_file = d.data.join("containers").join(&away).join("exit.json");
    d.wait_until("the exit without a daemon", 20, || exit_file.exists());
    edit_record(&d, &recorded, |v| {
        v["state"]["status"] = "exited".into();
        v["state"]["exit_code"] = 0.into();
        v["state"]["finished_at"] = "2024-01-01T00:00:00Z".into();
    });
    d.restart();
    let all = d.ok(&["ps", "-aq", "--no-trunc"]);
    assert_eq!(all, kept, "only the container without --rm is left");
    for id in [&away, &recorded, &created] {
        assert!(
            !d.data.join("containers").join(id).exists(),
            "{id} left on disk"
        );
    }
    d.ok(&["rm", "kept"]);
    d.assert_clean(&[]);
}

/// A second berthd on `d`'s roots (another socket), waited for: Err(its output) when it
/// refused to start, Ok(()) (after killing it) when it served.
fn second_daemon(
    d: &TestDaemon,
    roots: (&Path, &Path),
    pidfile: Option<&Path>,
) -> Result<(), String> {
    let sock = d.dir.path().join("second.sock");
    let mut cmd = Command::new(berthd_bin().unwrap());
    cmd.arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-root")
        .arg(roots.0)
        .arg("--exec-root")
        .arg(roots.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = pidfile {
        cmd.arg("--pidfile").arg(p);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            let o = child.wait_with_output().unwrap();
            assert!(!o.status.success());
            return Err(o.stderr_str());
        }
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&sock);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn daemon_second_daemon_on_the_same_roots_refuses_to_start() {
    runtime_tests::require_root();
    let piddir = tempfile::Builder::new()
        .prefix("bdpid")
        .tempdir_in("/tmp")
        .unwrap();
    let pidfile = piddir.path().join("berthd.pid");
    let mut d =
        TestDaemon::start_with(&["--pidfile", pidfile.to_str().unwrap()]).expect("start berthd");
    d.load_busybox();
    let id = d.track(&d.ok(&["run", "-d", "--name", "one", "busybox", "sleep", "1000"]));
    let pid = d.pid().to_string();
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap().trim(), pid);
    let other = d.dir.path().join("other");
    // Same data root, exec root and pid file; each of them alone.
    let cases: [((PathBuf, PathBuf), Option<&Path>, &str); 4] = [
        ((d.data.clone(), d.exec.clone()), Some(&pidfile), "is using"),
        ((d.data.clone(), other.join("exec")), None, "is using"),
        ((other.join("data"), d.exec.clone()), None, "is using"),
        (
            (other.join("data"), other.join("exec")),
            Some(&pidfile),
            "pid file found",
        ),
    ];
    for ((data, exec), pf, words) in &cases {
        match second_daemon(&d, (data, exec), *pf) {
            Ok(()) => panic!("a second berthd on {data:?} {exec:?} {pf:?} started"),
            Err(e) => assert!(e.contains(words) && e.contains(&pid), "{e}"),
        }
        // The first daemon's pid file and service are untouched.
        assert_eq!(std::fs::read_to_string(&pidfile).unwrap().trim(), pid);
        assert_eq!(
            d.ok(&["inspect", "-f", "{{.State.Status}}", "one"]),
            "running"
        );
    }
    // A daemon killed with -9 leaves its locks free: the next one starts, and owns the file.
    d.restart();
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        d.pid().to_string()
    );
    assert_eq!(d.ok(&["inspect", "-f", "{{.Id}}", "one"]), id);
    d.ok(&["rm", "-f", "one"]);
    d.assert_clean(&[]);
}
