//! berthd against dockerd's behaviour for `docker cp` (symlinks kept as links, `SRC/.`, the
//! path-stat header, both directions), the environment (PATH, HOSTNAME, TERM), the /etc
//! files (`--add-host`, `--dns*`, the host's resolv.conf filtered), `--memory-reservation`,
//! local volumes with a device (tmpfs), `-v` with a missing host directory, failed execs,
//! `top` with ps arguments, and the kill/stop/attach/exec events. The last test runs the
//! same commands on Debian's dockerd 20.10 + runc (own roots, no bridge, no iptables) and
//! compares. Each test starts its own berthd and checks that nothing is left behind.

use std::path::Path;
use std::process::{Command, Stdio};

use runtime_tests::daemon::{docker_on as on, Dockerd, OutputExt, TestDaemon};

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    let d = TestDaemon::start().expect("start berthd");
    d.load_busybox();
    d
}

/// The `X-Docker-Container-Path-Stat` of `path` in `c` (HEAD on the archive endpoint).
fn path_stat(sock: &Path, c: &str, path: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-I", "--unix-socket"])
        .arg(sock)
        .arg(format!("http://d/containers/{c}/archive?path={path}"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let stat = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-docker-container-path-stat")
                .then(|| v.trim().to_owned())
        })
        .map(|b| {
            // coreutils' base64 (no base64 crate in the tests).
            let mut c = Command::new("base64")
                .arg("-d")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("base64");
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(b.as_bytes()).unwrap();
            let raw = c.wait_with_output().expect("base64 -d").stdout;
            serde_json::from_slice(&raw).expect("json stat")
        })
        .unwrap_or(serde_json::Value::Null);
    (status, stat)
}

/// The entry names of the archive of `path` in `c`.
fn archive_names(sock: &Path, c: &str, path: &str) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -s --unix-socket {} 'http://d/containers/{c}/archive?path={path}' | tar tf -",
            sock.display()
        ))
        .output()
        .expect("curl | tar");
    assert!(out.status.success(), "{}", out.stderr_str());
    out.stdout_str().lines().map(str::to_owned).collect()
}

const CP_SETUP: &str = "mkdir -p /d/sub; echo s>/d/sub/s; ln -s /etc/passwd /d/abs; \
                        ln -s a /d/rel; ln -s sub /d/lsub; ln -s lsub /d/l2; touch /ready; \
                        sleep 1000";

#[test]
fn daemon_cp_keeps_symlinks_and_copies_dir_contents() {
    let d = daemon();
    let id = d.track(&d.ok(&[
        "run", "-d", "--name", "cpc", "busybox", "sh", "-c", CP_SETUP,
    ]));
    d.wait_until("the setup", 20, || {
        d.docker(&["exec", "cpc", "test", "-e", "/ready"])
            .status
            .success()
    });
    let out = d.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = |p: &str| out.join(p).to_str().unwrap().to_owned();
    // A symlink named as the source is copied as the link; -L copies its target.
    d.ok(&["cp", "cpc:/d/abs", &o("abs")]);
    assert_eq!(
        std::fs::read_link(out.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    d.ok(&["cp", "cpc:/d/rel", &o("rel")]);
    assert_eq!(std::fs::read_link(out.join("rel")).unwrap(), Path::new("a"));
    d.ok(&["cp", "-L", "cpc:/d/abs", &o("passwd")]);
    assert!(std::fs::read_to_string(out.join("passwd"))
        .unwrap()
        .starts_with("root:"));
    d.ok(&["cp", "cpc:/d/lsub", &o("lsub")]);
    assert!(std::fs::symlink_metadata(out.join("lsub"))
        .unwrap()
        .file_type()
        .is_symlink());
    // `-L` through two links, and a trailing `/` follows the link.
    d.ok(&["cp", "-L", "cpc:/d/l2", &o("l2")]);
    assert_eq!(std::fs::read_to_string(out.join("l2/s")).unwrap(), "s\n");
    d.ok(&["cp", "cpc:/d/lsub/", &o("lsub2")]);
    assert_eq!(std::fs::read_to_string(out.join("lsub2/s")).unwrap(), "s\n");
    // `SRC/.`: the contents, into an existing directory too.
    d.ok(&["cp", "cpc:/d/sub/.", &o("contents")]);
    assert_eq!(
        std::fs::read_to_string(out.join("contents/s")).unwrap(),
        "s\n"
    );
    std::fs::create_dir(out.join("existing")).unwrap();
    d.ok(&["cp", "cpc:/d/sub/.", &format!("{}/", o("existing"))]);
    assert_eq!(
        std::fs::read_to_string(out.join("existing/s")).unwrap(),
        "s\n"
    );
    assert!(!out.join("existing/sub").exists());
    // What dockerd sends: names and stat headers.
    assert_eq!(archive_names(&d.sock, "cpc", "/d/sub/."), ["./", "./s"]);
    assert_eq!(archive_names(&d.sock, "cpc", "/d/abs"), ["abs"]);
    assert_eq!(
        archive_names(&d.sock, "cpc", "/d/lsub/"),
        ["lsub/", "lsub/s"]
    );
    for (path, name, target, dir) in [
        ("/d/abs", "abs", "/etc/passwd", false),
        ("/d/rel", "rel", "/d/a", false),
        ("/d/l2", "l2", "/d/sub", false),
        ("/d/lsub/", "lsub", "", true),
        ("/d/sub/.", ".", "", true),
        ("/d/./sub", "sub", "", true),
        ("/", "/", "", true),
    ] {
        let (st, stat) = path_stat(&d.sock, "cpc", path);
        assert_eq!(st, 200, "{path}");
        assert_eq!(stat["name"], name, "{path}: {stat}");
        assert_eq!(stat["linkTarget"], target, "{path}: {stat}");
        let mode = stat["mode"].as_u64().unwrap();
        assert_eq!(mode & (1 << 31) != 0, dir, "{path}: {stat}");
        assert_eq!(mode & (1 << 27) != 0, !target.is_empty(), "{path}: {stat}");
    }
    // The whole root, named from `/` as dockerd's (the CLI rebases it onto the target).
    d.ok(&["cp", "cpc:/", &o("root")]);
    assert!(out.join("root/d/sub/s").exists());
    assert!(out.join("root/bin/busybox").exists());
    // Into the container: a directory through a chain of links, local links kept as links,
    // and `SRC/.` as the contents.
    let src = d.dir.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("dir/f"), "f\n").unwrap();
    std::os::unix::fs::symlink("/nowhere", src.join("dir/ln")).unwrap();
    d.ok(&["cp", src.join("dir").to_str().unwrap(), "cpc:/d/l2"]);
    assert_eq!(d.ok(&["exec", "cpc", "cat", "/d/sub/dir/f"]), "f");
    assert_eq!(
        d.ok(&["exec", "cpc", "readlink", "/d/sub/dir/ln"]),
        "/nowhere"
    );
    d.ok(&["cp", &format!("{}/.", src.join("dir").display()), "cpc:/d"]);
    assert_eq!(d.ok(&["exec", "cpc", "cat", "/d/f"]), "f");
    d.ok(&["rm", "-f", "cpc"]);
    d.assert_clean(&[id]);
}

#[test]
fn daemon_environment_has_path_hostname_and_term() {
    let d = daemon();
    let env = d.ok(&["run", "--rm", "--hostname", "box", "busybox", "env"]);
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(
        lines,
        [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=box",
            "HOME=/root"
        ],
        "{env}"
    );
    let env = d.ok(&["run", "--rm", "-t", "busybox", "env"]);
    assert!(env.contains("TERM=xterm\r\n"), "{env:?}");
    assert!(env.contains("HOSTNAME="), "{env:?}");
    // The container's Env wins; an image without PATH still gets dockerd's.
    let env = d.ok(&[
        "run",
        "--rm",
        "-e",
        "PATH=/x:/bin",
        "-e",
        "TERM=t",
        "-t",
        "busybox",
        "env",
    ]);
    assert!(
        env.contains("PATH=/x:/bin\r\n") && env.contains("TERM=t\r\n"),
        "{env:?}"
    );
    // exec: the container's environment with the exec's own TERM.
    let id = d.track(&d.ok(&[
        "run", "-d", "--name", "en", "-e", "A=1", "busybox", "sleep", "1000",
    ]));
    let short = &id[..12];
    let env = d.ok(&["exec", "-t", "en", "env"]);
    assert!(env.contains("TERM=xterm\r\n"), "{env:?}");
    assert!(env.contains(&format!("HOSTNAME={short}\r\n")), "{env:?}");
    assert!(env.contains("A=1\r\n"), "{env:?}");
    let env = d.ok(&["exec", "-e", "B=2", "en", "env"]);
    assert!(!env.contains("TERM="), "{env}");
    assert!(
        env.contains("B=2") && env.contains(&format!("HOSTNAME={short}")),
        "{env}"
    );
    d.ok(&["rm", "-f", "en"]);
    d.assert_clean(&[id]);
}

#[test]
fn daemon_etc_files_dns_and_extra_hosts() {
    let d = daemon();
    let out = d.ok(&[
        "run",
        "--rm",
        "--dns",
        "1.1.1.1",
        "--dns",
        "9.9.9.9",
        "--dns-search",
        "example.com",
        "--dns-option",
        "ndots:2",
        "--add-host",
        "foo:1.2.3.4",
        "--add-host",
        "v6:::1",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf; echo --; cat /etc/hosts",
    ]);
    let (resolv, hosts) = out.split_once("--\n").unwrap();
    assert_eq!(
        resolv,
        "search example.com\nnameserver 1.1.1.1\nnameserver 9.9.9.9\noptions ndots:2\n"
    );
    let hosts: Vec<&str> = hosts.lines().collect();
    assert_eq!(hosts[0], "127.0.0.1\tlocalhost");
    assert_eq!(hosts[6..8], ["1.2.3.4\tfoo", "::1\tv6"], "{hosts:?}");
    // The default network: the host's resolv.conf without loopback nameservers.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    let want = if host
        .lines()
        .any(|l| l.starts_with("nameserver") && !l.contains(" 127.") && !l.contains(" ::1"))
    {
        host.lines()
            .filter(|l| !(l.starts_with("nameserver 127.") || l.starts_with("nameserver ::1")))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    } else {
        String::new()
    };
    let got = d.ok(&["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]);
    if want.is_empty() {
        assert!(got.contains("nameserver 8.8.8.8"), "{got}");
    } else {
        assert_eq!(format!("{got}\n"), want);
    }
    assert!(!got.trim().is_empty(), "empty resolv.conf");
    // The host network: the host's files, unless the container names entries of its own.
    let got = d.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(got, host.trim_end());
    let got = d.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--add-host",
        "foo:1.2.3.4",
        "--dns-search",
        "x.org",
        "busybox",
        "sh",
        "-c",
        "grep foo /etc/hosts; grep search /etc/resolv.conf",
    ]);
    assert_eq!(got, "1.2.3.4\tfoo\nsearch x.org");
    // A bad entry is a 400 and nothing is left.
    let o = d.docker(&[
        "create",
        "--add-host",
        "foo:host-gateway",
        "busybox",
        "true",
    ]);
    assert_ne!(o.code(), 0, "{}", o.stderr_str());
    o.assert_stderr_contains("host-gateway");
    d.assert_clean(&[]);
}

#[test]
fn daemon_memory_reservation_tmpfs_volume_and_missing_bind_source() {
    let d = daemon();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--memory-reservation",
        "10m",
        "busybox",
        "sleep",
        "1000",
    ]));
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", &id]);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mem = cg
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            ctrl.split(',')
                .any(|c| c == "memory")
                .then(|| path.to_owned())
        })
        .expect("memory cgroup (v1)");
    let soft = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{mem}/memory.soft_limit_in_bytes"
    ))
    .unwrap();
    assert_eq!(soft.trim(), "10485760");
    d.ok(&["rm", "-f", &id]);
    // A local volume with a device: mounted from it (tmpfs with its size), not a directory.
    d.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=10m",
        "tv",
    ]);
    let m = d.ok(&[
        "run",
        "--rm",
        "-v",
        "tv:/t",
        "busybox",
        "grep",
        " /t ",
        "/proc/mounts",
    ]);
    assert!(
        m.starts_with("tmpfs /t tmpfs rw") && m.contains("size=10240k"),
        "{m}"
    );
    d.ok(&["volume", "rm", "tv"]);
    // `-v` creates a missing host directory (0755); `--mount` refuses it.
    let src = d.dir.path().join("made/here");
    let v = format!("{}:/h", src.display());
    d.ok(&[
        "run",
        "--rm",
        "-v",
        &v,
        "busybox",
        "sh",
        "-c",
        "echo x >/h/f",
    ]);
    assert_eq!(std::fs::read_to_string(src.join("f")).unwrap(), "x\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&src).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
    // Made at each start, as dockerd's (not at create).
    let later = d.dir.path().join("later");
    let v = format!("{}:/h", later.display());
    let c = d.track(&d.ok(&["create", "-v", &v, "busybox", "true"]));
    assert!(!later.exists());
    d.ok(&["start", "-a", &c]);
    assert!(later.is_dir());
    std::fs::remove_dir(&later).unwrap();
    d.ok(&["start", "-a", &c]);
    assert!(later.is_dir());
    d.ok(&["rm", &c]);
    let missing = d.dir.path().join("nope");
    let o = d.docker(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={},dst=/h", missing.display()),
        "busybox",
        "true",
    ]);
    assert_eq!(o.code(), 125);
    o.assert_stderr_contains("bind source path does not exist");
    assert!(!missing.exists());
    d.assert_clean(&[id, c]);
}

#[test]
fn daemon_failed_exec_prints_the_oci_error() {
    let d = daemon();
    let id = d.track(&d.ok(&["run", "-d", "--name", "xx", "busybox", "sleep", "1000"]));
    let o = d.docker(&["exec", "xx", "nosuchcmd"]);
    assert_eq!(o.code(), 126);
    assert_eq!(
        o.stdout_str(),
        "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nosuchcmd\": executable file not found in $PATH: unknown\r\n"
    );
    let o = d.docker(&["exec", "-w", "/bad", "xx", "pwd"]);
    assert_eq!(o.code(), 126);
    assert_eq!(
        o.stdout_str(),
        "OCI runtime exec failed: exec failed: unable to start container process: chdir to cwd (\"/bad\") set in config.json failed: no such file or directory: unknown\r\n"
    );
    let o = d.docker(&["exec", "-t", "xx", "/etc"]);
    assert_eq!(o.code(), 126);
    assert!(
        o.stdout_str()
            .contains("exec: \"/etc\": permission denied: unknown"),
        "{}",
        o.stdout_str()
    );
    let o = d.docker(&["exec", "-d", "xx", "nosuchcmd"]);
    assert_ne!(o.code(), 0);
    o.assert_stderr_contains("OCI runtime exec failed: exec failed: unable to start container process: exec: \"nosuchcmd\"");
    d.ok(&["rm", "-f", "xx"]);
    d.assert_clean(&[id]);
}

#[test]
fn daemon_top_runs_ps_with_its_arguments() {
    let d = daemon();
    let id = d.track(&d.ok(&["run", "-d", "--name", "tp", "busybox", "sleep", "1000"]));
    let (st, _, body) = d.http("GET", "/containers/tp/top", None).unwrap();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["Titles"],
        serde_json::json!(["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"])
    );
    let row = &v["Processes"][0];
    assert_eq!(row[0], "root", "{v}");
    assert_eq!(row[7], "sleep 1000", "{v}");
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "tp"]);
    assert_eq!(row[1], pid.as_str());
    let out = d.ok(&["top", "tp", "-o", "pid,args"]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["PID", "COMMAND"]);
    assert_eq!(lines[1], [pid.as_str(), "sleep", "1000"]);
    let o = d.docker(&["top", "tp", "-o", "pid,nosuchcol"]);
    assert_ne!(o.code(), 0);
    o.assert_stderr_contains("ps: error: unknown user-defined format specifier \"nosuchcol\"");
    d.ok(&["rm", "-f", "tp"]);
    d.assert_clean(&[id]);
}

#[test]
fn daemon_events_kill_stop_attach_and_exec() {
    let d = daemon();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let id = d.track(&d.ok(&["run", "-d", "--name", "ev", "busybox", "sleep", "1000"]));
    assert_eq!(d.docker(&["exec", "ev", "sh", "-c", "exit 3"]).code(), 3);
    let o = d.docker(&["exec", "ev", "nosuch"]);
    assert_eq!(o.code(), 126);
    d.ok(&["kill", "-s", "USR1", "ev"]);
    d.ok(&["stop", "-t", "1", "ev"]);
    let o = d.docker(&["stop", "ev"]);
    assert!(o.status.success());
    let a = d.track(&d.ok(&["create", "--name", "at", "-i", "busybox", "cat"]));
    let mut att = d
        .docker_cmd(&["start", "-a", "-i", "at"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(att.stdin.take());
    assert!(att.wait().unwrap().success());
    let events = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1;
        d.ok(&[
            "events",
            "--filter",
            "type=container",
            "--since",
            &start.to_string(),
            "--until",
            &now.to_string(),
            "--format",
            "{{.Actor.Attributes.name}} {{.Action}} {{index .Actor.Attributes \"signal\"}}{{index .Actor.Attributes \"exitCode\"}}",
        ])
    };
    let mut all = String::new();
    d.wait_until("the die of `at`", 20, || {
        all = events();
        all.contains("at die")
    });
    let got: Vec<&str> = all
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.ends_with(" create") && !l.ends_with(" start"))
        .collect();
    assert_eq!(
        got,
        [
            "ev exec_create: sh -c exit 3",
            "ev exec_start: sh -c exit 3",
            "ev exec_die 3",
            "ev exec_create: nosuch",
            "ev exec_start: nosuch",
            "ev kill 10",
            "ev kill 15",
            "ev kill 9",
            "ev die 137",
            "ev stop",
            "at attach",
            "at die 0",
        ],
        "{all}"
    );
    d.ok(&["rm", "-f", "ev", "at"]);
    d.assert_clean(&[id, a]);
}

#[test]
fn daemon_exec_cp_env_match_dockerd() {
    let d = daemon();
    // Debian's dockerd 20.10 + runc on roots of its own (no bridge, no iptables).
    let k = Dockerd::start(d.dir.path());
    k.load_busybox();
    let bid = d.track(&d.ok(&[
        "run", "-d", "--name", "cmp", "busybox", "sh", "-c", CP_SETUP,
    ]));
    let o = on(
        &k.sock,
        &[
            "run", "-d", "--name", "cmp", "busybox", "sh", "-c", CP_SETUP,
        ],
    );
    assert!(o.status.success(), "{}", o.stderr_str());
    let kid = o.stdout_str().trim().to_owned();
    let ready = |sock: &Path| {
        on(sock, &["exec", "cmp", "test", "-e", "/ready"])
            .status
            .success()
    };
    d.wait_until("both setups", 20, || ready(&d.sock) && ready(&k.sock));
    // Each command's output on both, the container's short id made neutral.
    let cases: &[&[&str]] = &[
        &["exec", "cmp", "env"],
        &["exec", "-t", "cmp", "env"],
        &["exec", "cmp", "nosuchcmd"],
        &["exec", "-w", "/nonexistent", "cmp", "pwd"],
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "env | grep -v HOSTNAME",
        ],
        &[
            "run",
            "--rm",
            "-t",
            "busybox",
            "sh",
            "-c",
            "env | grep -v HOSTNAME",
        ],
        &[
            "run",
            "--rm",
            "--dns",
            "1.1.1.1",
            "--dns-search",
            "example.com",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "foo:1.2.3.4",
            "busybox",
            "cat",
            "/etc/resolv.conf",
        ],
        &[
            "run",
            "--rm",
            "--add-host",
            "foo:1.2.3.4",
            "busybox",
            "sh",
            "-c",
            "head -7 /etc/hosts",
        ],
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "--add-host",
            "foo:1.2.3.4",
            "busybox",
            "cat",
            "/etc/hosts",
        ],
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "busybox",
            "cat",
            "/etc/resolv.conf",
        ],
        &["run", "--rm", "busybox", "cat", "/etc/resolv.conf"],
    ];
    for args in cases {
        let b = d.docker(args);
        let kk = on(&k.sock, args);
        let norm = |s: String, id: &str| s.replace(&id[..12], "ID");
        assert_eq!(
            (b.code(), norm(b.stdout_str(), &bid)),
            (kk.code(), norm(kk.stdout_str(), &kid)),
            "docker {args:?}: berthd vs dockerd\nberthd stderr: {}\ndockerd stderr: {}",
            b.stderr_str(),
            kk.stderr_str()
        );
    }
    // top's titles and columns.
    let titles = |sock: &Path, args: &[&str]| {
        let mut a = vec!["top", "cmp"];
        a.extend(args);
        let o = on(sock, &a);
        assert!(o.status.success(), "{}", o.stderr_str());
        o.stdout_str()
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for args in [&[][..], &["-o", "pid,args"], &["aux"]] {
        assert_eq!(titles(&d.sock, args), titles(&k.sock, args), "top {args:?}");
    }
    // The path-stat header and the archive's names (mtimes aside).
    for path in [
        "/d/abs",
        "/d/rel",
        "/d/lsub",
        "/d/l2",
        "/d/lsub/",
        "/d/lsub/.",
        "/d/sub/.",
        "/d/sub/",
        "/d/./sub",
        "/",
        "/d/nope",
    ] {
        let (bs, mut b) = path_stat(&d.sock, "cmp", path);
        let (ks, mut kk) = path_stat(&k.sock, "cmp", path);
        for v in [&mut b, &mut kk] {
            if let Some(o) = v.as_object_mut() {
                o.remove("mtime");
                if o["mode"].as_u64().unwrap_or(0) & (1 << 31) != 0 {
                    o.remove("size");
                }
            }
        }
        assert_eq!((bs, &b), (ks, &kk), "stat {path}");
        if bs == 200 && path != "/" {
            assert_eq!(
                archive_names(&d.sock, "cmp", path),
                archive_names(&k.sock, "cmp", path),
                "archive {path}"
            );
        }
    }
    d.ok(&["rm", "-f", "cmp"]);
    drop(k);
    d.assert_clean(&[bid]);
}
