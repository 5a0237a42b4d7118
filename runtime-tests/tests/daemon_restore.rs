//! berthd's live restore and crash safety: kill -9 of the daemon while containers run and log,
//! while a container exits, and in the middle of creates. The per-container monitors keep the
//! containers, their logs and exit statuses; the restarted daemon finds all of it.

use std::time::{Duration, Instant};

use runtime_tests::daemon::{OutputExt, TestDaemon};

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    TestDaemon::start().expect("start berthd")
}

fn log_lines(d: &TestDaemon, id: &str) -> usize {
    std::fs::read_to_string(
        d.data
            .join("containers")
            .join(id)
            .join(format!("{id}-json.log")),
    )
    .map(|s| s.lines().count())
    .unwrap_or(0)
}

#[test]
fn daemon_live_restore_after_kill9() {
    let mut d = daemon();
    d.load_busybox();
    let share = d.dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let logger = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "logger",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo $i; i=$((i+1)); sleep 0.01; done",
    ]));
    let sleeper = d.track(&d.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "1000"]));
    let bind = format!("{}:/share", share.display());
    let short = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "while [ ! -f /share/go ]; do sleep 0.02; done; echo leaving; exit 3",
    ]));
    let idle = d.track(&d.ok(&["create", "--name", "idle", "busybox", "true"]));
    let pid_before = d.ok(&["inspect", "-f", "{{.State.Pid}}", "sleeper"]);
    d.wait_until("20 log lines", 20, || log_lines(&d, &logger) >= 20);
    let monitors = d.monitor_pids();
    assert_eq!(monitors.len(), 3, "one monitor per running container");
    // An exec session that outlives the daemon: its monitor dir goes at a later start.
    d.ok(&["exec", "-d", "sleeper", "sleep", "999"]);
    d.wait_until("the detached exec", 20, || d.monitor_pids().len() == 4);

    d.kill9();
    // Without a daemon: the container keeps logging, and `short` exits when told to.
    let n = log_lines(&d, &logger);
    d.wait_until("logging without the daemon", 20, || {
        log_lines(&d, &logger) >= n + 20
    });
    std::fs::write(share.join("go"), "").unwrap();
    let exit_file = d.data.join("containers").join(&short).join("exit.json");
    d.wait_until("short's monitor to record its exit", 20, || {
        exit_file.exists()
    });

    d.restart();
    let running = d.ok(&["ps", "-q", "--no-trunc"]);
    let mut got: Vec<&str> = running.lines().collect();
    got.sort();
    let mut want = vec![logger.as_str(), sleeper.as_str()];
    want.sort();
    assert_eq!(got, want, "the running containers after the restart");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Pid}}", "sleeper"]),
        pid_before
    );
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "short"
        ]),
        "exited 3",
        "an exit while the daemon was away"
    );
    assert_eq!(d.ok(&["logs", "short"]), "leaving");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "idle"]),
        "created"
    );
    // exec and wait work on a restored container.
    assert_eq!(d.ok(&["exec", "sleeper", "echo", "restored"]), "restored");
    // The log is whole: consecutive numbers from 0, across the daemon's death.
    let n = log_lines(&d, &logger);
    d.wait_until("more lines after the restart", 20, || {
        log_lines(&d, &logger) > n + 5
    });
    d.ok(&["stop", "-t", "1", "logger"]);
    let logs = d.ok(&["logs", "logger"]);
    let nums: Vec<u64> = logs
        .lines()
        .map(|l| l.parse().expect("a number a line"))
        .collect();
    assert!(nums.len() > 60, "{}", nums.len());
    assert!(
        nums.iter().enumerate().all(|(i, n)| *n == i as u64),
        "a line was lost: {:?}",
        &nums[..nums.len().min(200)]
    );
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.ExitCode}}",
            "logger"
        ]),
        "false 137"
    );
    // docker wait on a restored container returns at its exit.
    let waiter = d
        .docker_cmd(&["wait", "sleeper"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    d.ok(&["kill", "sleeper"]);
    assert_eq!(
        waiter.wait_with_output().unwrap().stdout_str().trim(),
        "137"
    );
    d.ok(&["rm", "-f", "logger", "sleeper", "short", "idle"]);
    // The exec's monitor ended with its container; the next daemon start removes its dir.
    d.wait_until("the exec's monitor to end", 20, || {
        d.monitor_pids().is_empty()
    });
    d.restart();
    for pid in monitors {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || runtime_tests::is_zombie(pid),
            "monitor {pid} still runs"
        );
    }
    let _ = idle;
    d.assert_clean(&[]);
}

#[test]
fn daemon_store_survives_kill9_during_creates() {
    let mut d = daemon();
    d.load_busybox();
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..8u64 {
        let mut handles: Vec<_> = (0..4)
            .map(|i| {
                d.docker_cmd(&[
                    "create",
                    "--name",
                    &format!("c{round}-{i}"),
                    "--label",
                    "round",
                    "busybox",
                    "true",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        // Kill as soon as the first create is answered (or, in odd rounds, a moment earlier):
        // the others are in flight somewhere between the request and the record.
        let deadline = Instant::now() + Duration::from_secs(30);
        let early = Duration::from_millis(if round % 2 == 1 { 10 * round } else { 0 });
        let t0 = Instant::now();
        loop {
            if handles
                .iter_mut()
                .any(|h| h.try_wait().ok().flatten().is_some())
            {
                break;
            }
            if round % 2 == 1 && t0.elapsed() >= early {
                break;
            }
            assert!(Instant::now() < deadline, "no create finished");
            std::thread::sleep(Duration::from_millis(1));
        }
        d.kill9();
        for h in handles {
            let o = h.wait_with_output().unwrap();
            if o.status.success() {
                acknowledged.push(d.track(&o.stdout_str()));
            } else {
                eprintln!(
                    "round {round}: create not acknowledged: {}",
                    o.stderr_str().trim()
                );
            }
        }
        d.restart();
        let all = d.ok(&["ps", "-aq", "--no-trunc"]);
        for id in &acknowledged {
            assert!(
                all.lines().any(|l| l == id),
                "round {round}: acknowledged {id} was lost"
            );
        }
        // Every container dir on disk is a listed container (half-made ones were removed).
        let dirs = std::fs::read_dir(d.data.join("containers"))
            .unwrap()
            .count();
        assert_eq!(
            dirs,
            all.lines().count(),
            "round {round}: stray container dirs"
        );
        for id in all.lines() {
            d.track(id);
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "no create was acknowledged in any round\n{}",
        d.log()
    );
    // All of them usable: start one, then remove everything.
    let first = acknowledged[0].clone();
    d.ok(&["start", &first]);
    assert_eq!(d.ok(&["wait", &first]), "0");
    d.remove_all();
    d.assert_clean(&[]);
}

#[test]
fn daemon_restart_policy_and_auto_remove() {
    let mut d = daemon();
    d.load_busybox();
    // on-failure:2 restarts a failing container twice, then leaves it exited.
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]));
    d.wait_until("two restarts and three runs", 30, || {
        d.docker(&["inspect", "-f", "{{.RestartCount}} {{.State.Running}}", &id])
            .stdout_str()
            .trim()
            == "2 false"
            && d.docker(&["logs", &id]).stdout_str().lines().count() == 3
    });
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", &id]), "1");
    // always: killing pid 1 brings it back (a new pid); stop ends it for good.
    let a = d.track(&d.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "1000",
    ]));
    let pid1 = d.ok(&["inspect", "-f", "{{.State.Pid}}", &a]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid1.parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.wait_until("a restart after pid 1 was killed", 30, || {
        let o = d
            .docker(&[
                "inspect",
                "-f",
                "{{.State.Running}} {{.State.Pid}} {{.RestartCount}}",
                &a,
            ])
            .stdout_str();
        let f: Vec<&str> = o.split_whitespace().collect();
        f.len() == 3 && f[0] == "true" && f[1] != pid1 && f[2] == "1"
    });
    d.ok(&["stop", "-t", "1", &a]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", &a]), "false");
    // A restart that was due while the daemon was dead happens when it comes back.
    let u = d.track(&d.ok(&[
        "run",
        "-d",
        "--restart",
        "unless-stopped",
        "busybox",
        "sleep",
        "1000",
    ]));
    let upid: i32 = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", &u])
        .parse()
        .unwrap();
    d.kill9();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(upid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit_file = d.data.join("containers").join(&u).join("exit.json");
    d.wait_until("the monitor to record the kill", 20, || exit_file.exists());
    d.restart();
    // Started by the daemon's start, which (as dockerd's restore) resets RestartCount.
    d.wait_until("the restart after the daemon's", 30, || {
        let o = d
            .docker(&[
                "inspect",
                "-f",
                "{{.State.Running}} {{.State.Pid}} {{.RestartCount}}",
                &u,
            ])
            .stdout_str();
        let f: Vec<&str> = o.split_whitespace().collect();
        f.len() == 3 && f[0] == "true" && f[1] != upid.to_string() && f[2] == "0"
    });
    // A created container is not started by the daemon's restart, whatever its policy.
    let c = d.track(&d.ok(&["create", "--restart", "always", "busybox", "true"]));
    d.restart();
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Status}}", &c]), "created");
    d.ok(&["rm", "-f", &u, &c]);
    // -d --rm: removed at its exit.
    let r = d.track(&d.ok(&["run", "-d", "--rm", "busybox", "true"]));
    d.wait_until("auto-remove", 20, || {
        !d.docker(&["inspect", &r]).status.success()
    });
    d.ok(&["rm", "-f", &id, &a]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_monitor_killed() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&["run", "-d", "busybox", "sleep", "1000"]));
    let pid: i32 = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", &id])
        .parse()
        .unwrap();
    let monitors = d.monitor_pids();
    assert_eq!(monitors.len(), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitors[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The daemon sees the monitor go, records an exit and ends the orphaned container.
    d.wait_until("the exit of a container whose monitor died", 20, || {
        d.docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.ExitCode}}",
            &id,
        ])
        .stdout_str()
        .trim()
            == "false 255"
    });
    d.wait_until("the container's process to end", 20, || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || runtime_tests::is_zombie(pid)
    });
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}
