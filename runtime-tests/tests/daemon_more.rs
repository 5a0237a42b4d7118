//! berthd driven by the real docker CLI (28.2.2 at /usr/local/bin/docker): `docker login` and
//! pulls with `X-Registry-Auth` from an htpasswd registry, healthchecks from the image config,
//! streamed `docker stats`, and exec resize. Each test starts its own berthd on a temp socket
//! with its own data and exec roots, and checks that nothing is left behind.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use runtime_tests::daemon::{
    busybox_archive_with_config, LocalRegistry, OutputExt, Screen, TestDaemon,
};

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    TestDaemon::start().expect("start berthd")
}

#[test]
fn daemon_login_and_pull_with_registry_auth() {
    let d = daemon();
    // Debian's docker-registry on 127.0.0.1 with htpasswd auth, filled with skopeo.
    let registry = LocalRegistry::start(&d, Some(("alice", "s3cret")));
    let port = registry.port;
    let server = format!("127.0.0.1:{port}");
    let image = registry.push_busybox("library/bb:1", Some("alice:s3cret"));

    // Not logged in: the registry's 401 reaches the CLI, naming authorization.
    let o = d.docker(&["pull", &image]);
    assert_ne!(o.code(), 0, "{}", o.stdout_str());
    let msg = format!("{}{}", o.stdout_str(), o.stderr_str()).to_lowercase();
    assert!(
        msg.contains("authoriz") || msg.contains("authentication"),
        "{msg}"
    );

    // A wrong password: `docker login` fails (berthd checks it against the registry).
    let login = |user: &str, password: &str| {
        let mut c = d.docker_cmd(&["login", "-u", user, "--password-stdin", &server]);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = login("alice", "wrong");
    assert_ne!(o.code(), 0, "{}", o.stdout_str());
    assert!(
        o.stderr_str().contains("401") || o.stderr_str().to_lowercase().contains("authoriz"),
        "{}",
        o.stderr_str()
    );
    let o = login("alice", "s3cret");
    assert_eq!(o.code(), 0, "{}\n{}", o.stderr_str(), d.log());
    assert!(
        o.stdout_str().contains("Login Succeeded"),
        "{}",
        o.stdout_str()
    );

    // Logged in: the CLI sends X-Registry-Auth and berthd pulls with it. berthd's own
    // environment has no credentials for this registry (the not-logged-in pull failed).
    let out = d.ok(&["pull", &image]);
    assert!(
        out.contains("Pull complete") && out.contains("Digest: sha256:"),
        "{out}"
    );
    assert_eq!(d.ok(&["run", "--rm", &image, "echo", "pulled"]), "pulled");
    d.ok(&["rmi", &image]);

    // The header alone is what carries them: after logout the pull fails again.
    d.ok(&["logout", &server]);
    let o = d.docker(&["pull", &image]);
    assert_ne!(o.code(), 0, "{}", o.stdout_str());

    // A header that is not base64 JSON is a 400 naming it.
    let (st, _, body) = {
        let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
        write!(
            s,
            "POST /images/create?fromImage={image} HTTP/1.1\r\nHost: docker\r\nX-Registry-Auth: !!!\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let status: u16 = resp
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, (), resp)
    };
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("X-Registry-Auth"), "{body}");
    d.assert_clean(&[]);
}

#[test]
fn daemon_healthcheck_from_the_image() {
    let d = daemon();
    let archive = busybox_archive_with_config(
        d.dir.path(),
        "hc:1",
        serde_json::json!({"Healthcheck": {
            "Test": ["CMD-SHELL", "test -f /tmp/ok && echo image-check"],
            "Interval": 100_000_000u64,
            "Retries": 2
        }}),
    );
    let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("hc:1"), "{out}");
    let status = |name: &str| {
        d.docker(&["inspect", "-f", "{{.State.Health.Status}}", name])
            .stdout_str()
            .trim()
            .to_owned()
    };
    // No --health-cmd: the image's check runs and the container turns healthy.
    let a = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "img",
        "hc:1",
        "sh",
        "-c",
        "touch /tmp/ok; sleep 1000",
    ]));
    // Its own check replaces the image's (which would pass here).
    let b = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "own",
        "--health-cmd",
        "echo own-check; false",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "hc:1",
        "sh",
        "-c",
        "touch /tmp/ok; sleep 1000",
    ]));
    // --no-healthcheck: none runs.
    let c = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        "hc:1",
        "sh",
        "-c",
        "touch /tmp/ok; sleep 1000",
    ]));
    d.wait_until("the image's check to pass", 20, || {
        status("img") == "healthy"
    });
    let log = d.ok(&[
        "inspect",
        "-f",
        "{{range .State.Health.Log}}{{.Output}}{{end}}",
        "img",
    ]);
    assert!(log.contains("image-check"), "{log}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .Config.Healthcheck.Test}}", "img"]),
        r#"["CMD-SHELL","test -f /tmp/ok && echo image-check"]"#
    );
    d.wait_until("the container's own check to fail", 20, || {
        status("own") == "unhealthy"
    });
    let log = d.ok(&[
        "inspect",
        "-f",
        "{{range .State.Health.Log}}{{.Output}}{{end}}",
        "own",
    ]);
    assert!(
        log.contains("own-check") && !log.contains("image-check"),
        "{log}"
    );
    // By now the image's check has run several times in the others; never in this one.
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .State.Health}}", "none"]),
        "null"
    );
    assert!(d
        .ok(&["ps", "--filter", "name=none", "--format", "{{.Status}}"])
        .starts_with("Up"));
    assert!(!d
        .ok(&["ps", "--filter", "name=none", "--format", "{{.Status}}"])
        .contains("health"));
    d.ok(&["rm", "-f", &a, &b, &c]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_stats_streamed() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run", "-d", "--name", "st", "--memory", "64m", "busybox", "sleep", "1000",
    ]));
    let mut child = d
        .docker_cmd(&[
            "stats",
            "--format",
            "{{.Name}}|{{.MemUsage}}|{{.PIDs}}",
            "st",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut screen = Screen::new(child.stdout.take().unwrap());
    // Each update is a frame with the container's line; wait for two with real numbers.
    let frames = |s: &str| {
        s.lines()
            .filter(|l| {
                let l = l.rsplit('\x1b').next().unwrap_or(l);
                let l = l.trim_start_matches(|c: char| c != 's');
                l.starts_with("st|") && l.contains("/ 64MiB|1")
            })
            .count()
    };
    if !screen.wait_for(Duration::from_secs(30), |seen| frames(seen) >= 2) {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "fewer than two stats updates: {:?}\n{}",
            screen.text(),
            d.log()
        );
    }
    // Still streaming: nothing ended it but us.
    assert!(child.try_wait().unwrap().is_none(), "{:?}", screen.text());
    child.kill().unwrap();
    child.wait().unwrap();
    d.ok(&["rm", "-f", &id]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_exec_tty_resize() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&["run", "-d", "--name", "er", "busybox", "sleep", "1000"]));
    let (mut child, mut keys, mut screen) =
        d.tty_session("stty rows 24 cols 80; docker exec -it er sh");
    screen.expect("/ # ");
    // The CLI sized the exec's terminal from its own.
    keys.write_all(b"echo size-$(stty size | tr ' ' x)\n")
        .unwrap();
    screen.expect("size-24x80");
    screen.expect("/ # ");
    // Resize over the API (`POST /exec/{id}/resize`) reaches the exec's terminal.
    let execs = d.ok(&["inspect", "-f", "{{range .ExecIDs}}{{.}} {{end}}", "er"]);
    let exec = execs
        .split_whitespace()
        .next()
        .expect("an exec id")
        .to_owned();
    let (st, _, body) = d
        .http("POST", &format!("/exec/{exec}/resize?h=33&w=99"), None)
        .unwrap();
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    keys.write_all(b"echo size-$(stty size | tr ' ' x)\n")
        .unwrap();
    screen.expect("size-33x99");
    screen.expect("/ # ");
    let (st, _, _) = d.http("POST", "/exec/nope/resize?h=1&w=1", None).unwrap();
    assert_eq!(st, 404);
    keys.write_all(b"exit 4\n").unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(4), "{}", screen.text());
    d.ok(&["rm", "-f", &id]);
    d.assert_clean(&[]);
}

/// Containers created without a name get distinct generated names, however many there are
/// (the generator drew from a few thousand names and a create could fail with 409 at about the
/// twentieth container).
#[test]
fn daemon_generated_names_never_collide() {
    let d = daemon();
    d.load_busybox();
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let id = d.ok(&["create", "busybox", "true"]);
        let name = d.ok(&["inspect", "-f", "{{.Name}}", id.trim()]);
        assert!(names.insert(name.trim().to_owned()), "{name} given twice");
    }
    let ids: Vec<String> = d.ok(&["ps", "-aq"]).lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 300);
    let mut rm = vec!["rm"];
    rm.extend(ids.iter().map(String::as_str));
    d.ok(&rm);
    d.assert_clean(&[]);
}

/// Concurrent creates asking for one name: exactly one gets it, the others a 409 (the name
/// was checked before the slow part of a create and taken after it, so several won).
#[test]
fn daemon_concurrent_creates_of_one_name_one_wins() {
    let d = daemon();
    d.load_busybox();
    // All eight started before any is waited for.
    let children: Vec<std::process::Child> = (0..8)
        .map(|_| {
            d.docker_cmd(&["create", "--name", "same", "busybox", "true"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<std::process::Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{} creates of one name succeeded", won);
    for o in outs.iter().filter(|o| !o.status.success()) {
        o.assert_stderr_contains("is already in use");
    }
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1);
    d.ok(&["rm", "same"]);
    d.assert_clean(&[]);
}

/// `docker update` changes only what it is given: the CLI sends every resource field, zeros
/// for those not on its command line, and dockerd takes a zero as "unchanged".
#[test]
fn daemon_update_keeps_what_it_is_not_given() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "upd",
        "--cpus",
        "1.5",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--restart",
        "on-failure:3",
        "busybox",
        "sleep",
        "1000",
    ]));
    let fmt = "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} \
               {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}";
    assert_eq!(
        d.ok(&["inspect", "-f", fmt, "upd"]),
        "1500000000 67108864 134217728 on-failure:3"
    );
    let quota = || {
        let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "upd"]);
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let path = cg
            .lines()
            .find_map(|l| l.split_once(":cpu:").map(|(_, p)| p.to_owned()))
            .expect("the cpu hierarchy (v1)");
        std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{path}/cpu.cfs_quota_us"))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(quota(), "150000");
    // Memory only: CPUs, swap and the restart policy stay.
    d.ok(&["update", "--memory", "96m", "upd"]);
    assert_eq!(
        d.ok(&["inspect", "-f", fmt, "upd"]),
        "1500000000 100663296 134217728 on-failure:3"
    );
    assert_eq!(quota(), "150000");
    // Memory above the swap limit without a new swap limit: refused as dockerd does.
    let o = d.docker(&["update", "--memory", "256m", "upd"]);
    o.assert_stderr_contains("smaller than already set memoryswap");
    // CPU quota when NanoCpus is set: a conflict.
    let o = d.docker(&["update", "--cpu-quota", "50000", "upd"]);
    o.assert_stderr_contains("Conflicting options");
    // The restart policy alone.
    d.ok(&["update", "--restart", "always", "upd"]);
    assert_eq!(
        d.ok(&["inspect", "-f", fmt, "upd"]),
        "1500000000 100663296 134217728 always:0"
    );
    // And the next start keeps the CPU limit too.
    d.ok(&["restart", "-t", "0", "upd"]);
    assert_eq!(quota(), "150000");
    d.ok(&["rm", "-f", &id]);
    d.assert_clean(&[]);
}

/// Container names as dockerd takes them: two characters at least.
#[test]
fn daemon_one_character_names_are_refused() {
    let d = daemon();
    d.load_busybox();
    let o = d.docker(&["create", "--name", "x", "busybox", "true"]);
    assert_ne!(o.code(), 0);
    o.assert_stderr_contains("Invalid container name (x)");
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    d.assert_clean(&[]);
}

/// `--privileged` gives the container every device of the host's /dev (as dockerd: runc's
/// HostDevices), a `--device` mapping still applies, and without it only the default nodes.
#[test]
fn daemon_privileged_gets_the_host_devices() {
    let d = daemon();
    d.load_busybox();
    // The host's devices, walked as dockerd walks them.
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        use std::os::unix::fs::FileTypeExt;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if ft.is_dir() {
                if ![".lxc", ".lxd-mounts", ".udev", "fd", "mqueue", "pts", "shm"]
                    .contains(&name.as_str())
                {
                    walk(&e.path(), out);
                }
            } else if (ft.is_char_device() || ft.is_block_device())
                && e.path() != std::path::Path::new("/dev/console")
            {
                out.push(e.path().display().to_string());
            }
        }
    }
    let mut host = Vec::new();
    walk(std::path::Path::new("/dev"), &mut host);
    // /dev/ptmx is the link to pts/ptmx the runtime makes (as runc), whatever the host has.
    host.retain(|p| p != "/dev/ptmx");
    host.sort();
    assert!(host.len() > 20, "{host:?}");
    let list = "find /dev -path /dev/pts -prune -o -path /dev/shm -prune -o -path /dev/mqueue \
                -prune -o \\( -type c -o -type b \\) -print | sort";
    let inside = d.ok(&["run", "--rm", "--privileged", "busybox", "sh", "-c", list]);
    let inside: Vec<&str> = inside.lines().filter(|l| *l != "/dev/console").collect();
    assert_eq!(inside, host.iter().map(String::as_str).collect::<Vec<_>>());
    // Numbers as the host's: /dev/null inside is 1,3 and a host device with a subdirectory
    // path keeps it.
    let nested = host.iter().find(|p| p.matches('/').count() > 2).cloned();
    if let Some(n) = nested {
        let want = std::fs::metadata(&n).unwrap();
        use std::os::unix::fs::MetadataExt;
        let got = d.ok(&[
            "run",
            "--rm",
            "--privileged",
            "busybox",
            "stat",
            "-c",
            "%t:%T",
            &n,
        ]);
        assert_eq!(
            got,
            format!(
                "{:x}:{:x}",
                (want.rdev() >> 8) & 0xfff,
                (want.rdev() & 0xff) | ((want.rdev() >> 12) & 0xfff00)
            )
        );
    }
    // Unprivileged: the default nodes only.
    let plain = d.ok(&["run", "--rm", "busybox", "sh", "-c", list]);
    assert!(plain.lines().count() < 12, "{plain}");
    d.assert_clean(&[]);
}

/// `logs --tail` as dockerd reads it (a count, else everything: `all`, negative, not a
/// number), and `info`'s paused count and swarm state.
#[test]
fn daemon_logs_tail_forms_and_info_as_dockerd() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "tl",
        "busybox",
        "sh",
        "-c",
        "echo a; echo b; echo c; exec sleep 1000",
    ]));
    d.wait_until("three lines logged", 10, || {
        d.docker(&["logs", "tl"]).stdout_str() == "a\nb\nc\n"
    });
    for (tail, want) in [
        ("1", "c\n"),
        ("0", ""),
        ("all", "a\nb\nc\n"),
        ("-1", "a\nb\nc\n"),
        ("abc", "a\nb\nc\n"),
    ] {
        let o = d.docker(&["logs", "--tail", tail, "tl"]);
        assert_eq!(
            (o.code(), o.stdout_str()),
            (0, want.to_owned()),
            "--tail {tail}"
        );
    }
    d.ok(&["pause", "tl"]);
    assert_eq!(
        d.ok(&[
            "info",
            "-f",
            "{{.ContainersRunning}} {{.ContainersPaused}} {{.Swarm.LocalNodeState}}"
        ]),
        "0 1 inactive"
    );
    d.ok(&["unpause", "tl"]);
    d.ok(&["rm", "-f", &id]);
    d.assert_clean(&[]);
}
