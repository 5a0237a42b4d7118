//! berthd under load: 50 concurrent and 1,000 sequential `docker run --rm`, with nothing left
//! behind (mounts, cgroups, processes, monitors, state) and no descriptor growth in the daemon.

use std::process::Stdio;

use runtime_tests::daemon::{OutputExt, TestDaemon};

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn daemon_concurrent_and_sequential_runs() {
    runtime_tests::require_root();
    let d = TestDaemon::start().expect("start berthd");
    d.load_busybox();
    // Warm up, then measure the daemon's descriptors.
    assert_eq!(d.ok(&["run", "--rm", "busybox", "true"]), "");
    let fds_before = fd_count(d.pid());
    let children: Vec<_> = (0..50)
        .map(|i| {
            d.docker_cmd(&[
                "run",
                "--rm",
                "busybox",
                "sh",
                "-c",
                &format!("echo run-{i}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "run {i}: {} {}",
            o.status,
            o.stderr_str()
        );
        assert_eq!(o.stdout_str(), format!("run-{i}\n"));
    }
    // The 1,000 sequential runs.
    for i in 0..1000 {
        let o = d.docker(&["run", "--rm", "busybox", "echo", &i.to_string()]);
        assert_eq!(
            (o.code(), o.stdout_str()),
            (0, format!("{i}\n")),
            "{}",
            o.stderr_str()
        );
    }
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    d.assert_clean(&[]);
    // Connections and monitors closed: the daemon's descriptors are back where they were.
    d.wait_until("the daemon's descriptors to settle", 10, || {
        fd_count(d.pid()) <= fds_before + 2
    });
    assert!(d.monitor_pids().is_empty());
}
