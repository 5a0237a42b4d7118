//! berthd driven by the real docker CLI (28.2.2 at /usr/local/bin/docker): the API basics,
//! images, `run`, `-d`/`logs -f`/`ps`/`inspect`/`stop`/`rm`, `exec`, tty sessions and the
//! HostConfig fields berthd applies. Each test starts its own berthd on a temp socket with its
//! own data and exec roots, and checks that nothing is left behind.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use runtime_tests::daemon::{LocalRegistry, OutputExt, TestDaemon};

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    TestDaemon::start().expect("start berthd")
}

#[test]
fn daemon_api_ping_version_and_errors() {
    let d = daemon();
    let (st, head, body) = d.http("HEAD", "/_ping", None).unwrap();
    assert_eq!(st, 200);
    let h = head.to_ascii_lowercase();
    assert!(h.contains("api-version: 1.50"), "{head}");
    assert!(h.contains("ostype: linux"), "{head}");
    assert!(h.contains("builder-version:"), "{head}");
    assert!(body.is_empty());
    let (st, _, body) = d.http("GET", "/_ping", None).unwrap();
    assert_eq!((st, body.as_slice()), (200, &b"OK"[..]));
    let (st, _, body) = d.http("GET", "/v1.41/version", None).unwrap();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["ApiVersion"], "1.50");
    assert_eq!(v["MinAPIVersion"], "1.41");
    // Errors: docker's shape and codes.
    let (st, _, body) = d.http("GET", "/v1.50/containers/nope/json", None).unwrap();
    assert_eq!(st, 404);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["message"], "No such container: nope");
    let (st, _, body) = d.http("GET", "/images/nope:1/json", None).unwrap();
    assert_eq!(st, 404, "{}", String::from_utf8_lossy(&body));
    let (st, _, body) = d
        .http("POST", "/containers/create", Some(b"{not json"))
        .unwrap();
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&body).contains("invalid JSON body"));
    let (st, _, _) = d
        .http("POST", "/containers/create", Some(br#"{"Image": 5}"#))
        .unwrap();
    assert_eq!(st, 400);
    let (st, _, _) = d
        .http("POST", "/containers/create", Some(br#"{"Cmd":["true"]}"#))
        .unwrap();
    assert_eq!(st, 400);
    let (st, _, _) = d.http("GET", "/no/such/endpoint", None).unwrap();
    assert_eq!(st, 404);
    let big = vec![b'['; 4 << 20];
    let (st, _, _) = d.http("POST", "/containers/create", Some(&big)).unwrap();
    assert!((400..500).contains(&st), "{st}");
    let (st, _, _) = d.http("GET", "/v1.10/info", None).unwrap();
    assert_eq!(st, 400);
    // Still alive and answering the CLI.
    let out = d.ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(out, "1.50 linux");
    let info = d.ok(&["info", "--format", "{{.Containers}} {{.LoggingDriver}}"]);
    assert_eq!(info, "0 json-file");
    d.assert_clean(&[]);
}

#[test]
fn daemon_images_load_list_tag_inspect_history_save_rmi() {
    let d = daemon();
    d.load_busybox();
    let ls = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(ls.starts_with("busybox:latest "), "{ls}");
    let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]);
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(
        d.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Os}}/{{.Architecture}} {{json .Config.Cmd}}",
            "busybox"
        ]),
        r#"linux/amd64 ["sh"]"#
    );
    d.ok(&["tag", "busybox", "localhost/mine:v1"]);
    let ls = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        ls.contains("localhost/mine:v1") && ls.contains("busybox:latest"),
        "{ls}"
    );
    // By short id, the same image.
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", &id[7..19]]), id);
    let hist = d.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "busybox",
    ]);
    assert!(hist.contains("build-image-tar.sh"), "{hist}");
    // save | rmi | load round trip, then run from the reloaded image.
    let tar = d.dir.path().join("saved.tar");
    d.ok(&["save", "-o", tar.to_str().unwrap(), "localhost/mine:v1"]);
    let rmi = d.ok(&["rmi", "localhost/mine:v1"]);
    assert!(rmi.contains("Untagged: localhost/mine:v1"), "{rmi}");
    assert!(
        !rmi.contains("Deleted"),
        "busybox:latest still refers to it: {rmi}"
    );
    let rmi = d.ok(&["rmi", "busybox"]);
    assert!(rmi.contains("Deleted: sha256:"), "{rmi}");
    assert_eq!(d.ok(&["images", "-q"]), "");
    let o = d.docker(&["image", "inspect", "busybox"]);
    assert_ne!(o.code(), 0);
    o.assert_stderr_contains("No such image");
    let out = d.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains("Loaded image: localhost/mine:v1"), "{out}");
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "localhost/mine:v1"]),
        id
    );
    assert_eq!(
        d.ok(&["run", "--rm", "localhost/mine:v1", "echo", "reloaded"]),
        "reloaded"
    );
    // An image in use by a container is not deleted without force (dockerd's wording).
    let c = d.track(&d.ok(&["create", "localhost/mine:v1", "true"]));
    let o = d.docker(&["rmi", "localhost/mine:v1"]);
    assert_ne!(o.code(), 0);
    o.assert_stderr_contains("is using its referenced image");
    d.ok(&["rm", &c]);
    d.ok(&["rmi", "localhost/mine:v1"]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_run_rm_streams_and_exit_codes() {
    let d = daemon();
    d.load_busybox();
    let cid = d.dir.path().join("cid");
    let o = d.docker(&[
        "run",
        "--rm",
        "--cidfile",
        cid.to_str().unwrap(),
        "busybox",
        "echo",
        "hi",
    ]);
    assert_eq!(
        (o.code(), o.stdout_str().as_str()),
        (0, "hi\n"),
        "{}",
        o.stderr_str()
    );
    d.track(&std::fs::read_to_string(&cid).unwrap());
    let o = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.code(), 3);
    assert_eq!(o.stdout_str(), "out\n");
    assert_eq!(o.stderr_str(), "err\n");
    // A missing program: docker's 127.
    let o = d.docker(&["run", "--rm", "busybox", "/no/such/program"]);
    assert_eq!(o.code(), 127, "{}", o.stderr_str());
    // stdin through attach (-i), closed at its end.
    let mut child = d
        .docker_cmd(&[
            "run",
            "--rm",
            "-i",
            "busybox",
            "sh",
            "-c",
            "wc -c; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&[b'x'; 100_000])
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.stdout_str().split_whitespace().collect::<Vec<_>>(),
        ["100000", "done"]
    );
    // Env, workdir, user, entrypoint, hostname, labels.
    let out = d.ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "--hostname",
        "boat",
        "--entrypoint",
        "sh",
        "busybox",
        "-c",
        "echo $FOO $(pwd) $(id -u):$(id -g) $(hostname)",
    ]);
    assert_eq!(out, "bar /tmp 1000:1000 boat");
    assert_eq!(d.ok(&["ps", "-aq"]), "", "--rm containers are removed");
    d.assert_clean(&[]);
}

#[test]
fn daemon_detached_logs_ps_inspect_stop_rm() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run", "-d", "--name", "web", "--label", "tier=front", "--log-opt", "max-size=2k",
        "--log-opt", "max-file=3", "busybox", "sh", "-c",
        "trap 'echo bye; exit 0' TERM; i=0; while true; do echo line $i; echo e$i >&2; i=$((i+1)); sleep 0.05; done",
    ]));
    assert_eq!(id.len(), 64);
    // logs -f streams until we have 40 lines (the log rotates on the way: 2k x 3 files).
    let mut child = d
        .docker_cmd(&["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while got.lines().count() < 40 {
        assert!(Instant::now() < deadline, "logs -f gave only {got:?}");
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0, "logs -f ended early: {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = child.kill();
    let _ = child.wait();
    let nums: Vec<u32> = got
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "lines out of order or lost: {nums:?}"
    );
    // --tail counts the records of both streams, as docker's.
    let logs = d.docker(&["logs", "--tail", "4", "-t", "web"]);
    let (out, err) = (logs.stdout_str(), logs.stderr_str());
    assert_eq!(out.lines().count() + err.lines().count(), 4, "{out}{err}");
    assert!(
        out.lines()
            .chain(err.lines())
            .all(|l| l.starts_with("20") && l.contains("Z ")),
        "timestamps: {out}{err}"
    );
    assert!(err.lines().all(|l| l.contains(" e")), "stderr apart: {err}");
    let files: Vec<_> = std::fs::read_dir(d.data.join("containers").join(&id))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("-json.log"))
        .collect();
    assert!(files.len() <= 3, "max-file=3: {files:?}");
    // ps: running, filters, format.
    assert_eq!(
        d.ok(&["ps", "--format", "{{.Names}} {{.Status}}"])
            .split(' ')
            .next(),
        Some("web")
    );
    assert_eq!(
        d.ok(&["ps", "-q", "--no-trunc", "--filter", "label=tier=front"]),
        id
    );
    assert_eq!(d.ok(&["ps", "-q", "--filter", "label=tier=back"]), "");
    assert_eq!(
        d.ok(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "name=we",
            "--filter",
            "status=running"
        ]),
        id
    );
    assert_eq!(d.ok(&["ps", "-q", "--filter", "status=exited"]), "");
    // inspect fields.
    let st = d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.Name}} {{.Config.Labels.tier}} {{.HostConfig.LogConfig.Type}}", "web"]);
    assert_eq!(st, "running true /web front json-file");
    let pid: i32 = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", "web"])
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // A second container by the same name: 409.
    let o = d.docker(&["create", "--name", "web", "busybox"]);
    o.assert_stderr_contains("is already in use");
    let o = d.docker(&["rm", "web"]);
    o.assert_stderr_contains("container is running");
    // stop: TERM runs the trap.
    d.ok(&["stop", "web"]);
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}",
            "web"
        ]),
        "exited 0 false"
    );
    assert!(d.ok(&["logs", "--tail", "1", "web"]).ends_with("bye"));
    assert_eq!(
        d.ok(&["ps", "-aq", "--no-trunc", "--filter", "status=exited"]),
        id
    );
    let finished = d.ok(&["inspect", "-f", "{{.State.FinishedAt}}", "web"]);
    assert!(
        finished.starts_with("20") && finished.ends_with('Z'),
        "{finished}"
    );
    // start again, kill with a signal, restart, rm -f.
    d.ok(&["start", "web"]);
    d.ok(&["kill", "-s", "KILL", "web"]);
    assert_eq!(d.ok(&["wait", "web"]), "137");
    d.ok(&["restart", "-t", "1", "web"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "web"]),
        "true"
    );
    d.ok(&["rm", "-f", "web"]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    d.assert_clean(&[]);
}

/// `script` gives the docker CLI a terminal; its input comes from a pipe we hold open.
fn in_pty(d: &TestDaemon, cmdline: &str, input: &[u8]) -> (i32, String) {
    let mut child = d
        .script_cmd(cmdline)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn daemon_tty_run_and_exec() {
    let d = daemon();
    d.load_busybox();
    let (code, out) = in_pty(
        &d,
        "stty rows 31 cols 91; docker run --rm -it busybox sh -c 'tty; stty size; exit 4'",
        b"",
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    assert!(
        out.contains("31 91"),
        "the console size is set before the start: {out:?}"
    );
    let id = d.track(&d.ok(&["run", "-d", "--name", "tty", "busybox", "sleep", "1000"]));
    let (code, out) = in_pty(
        &d,
        "stty rows 22 cols 77; docker exec -it tty sh",
        b"stty size; echo $((6*7)); exit 7\n",
    );
    assert_eq!(code, 7, "{out}");
    assert!(out.contains("22 77") && out.contains("42"), "{out:?}");
    // exec without a tty: streams, exit code, -u/-w/-e, stdin.
    let o = d.docker(&["exec", "tty", "sh", "-c", "echo o; echo e >&2; exit 5"]);
    assert_eq!(
        (o.code(), o.stdout_str().as_str(), o.stderr_str().as_str()),
        (5, "o\n", "e\n")
    );
    assert_eq!(
        d.ok(&[
            "exec",
            "-u",
            "1000",
            "-w",
            "/tmp",
            "-e",
            "X=y",
            "tty",
            "sh",
            "-c",
            "echo $(id -u) $(pwd) $X"
        ]),
        "1000 /tmp y"
    );
    let mut child = d
        .docker_cmd(&["exec", "-i", "tty", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin")
        .unwrap();
    assert_eq!(
        child.wait_with_output().unwrap().stdout_str(),
        "through stdin"
    );
    // exec -d, then its process is in the container.
    d.ok(&["exec", "-d", "tty", "sh", "-c", "echo detached > /tmp/d"]);
    d.wait_until("the detached exec", 10, || {
        d.docker(&["exec", "tty", "cat", "/tmp/d"]).stdout_str() == "detached\n"
    });
    let o = d.docker(&["exec", "nope", "true"]);
    o.assert_stderr_contains("No such container");
    d.ok(&["rm", "-f", &id]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_host_config_applied() {
    let d = daemon();
    d.load_busybox();
    let host_dir = d.dir.path().join("share");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("in"), "from host").unwrap();
    let bind = format!("{}:/share", host_dir.display());
    let bind_ro = format!("{}:/ro:ro", host_dir.display());
    let out = d.ok(&[
        "run", "--rm", "-v", &bind, "-v", &bind_ro, "--tmpfs", "/scratch:size=1m", "--read-only",
        "busybox", "sh", "-c",
        "cat /share/in; echo; echo w > /share/out; touch /ro/x 2>/dev/null || echo ro-refused; \
         touch /etc/x 2>/dev/null || echo rootfs-ro; grep ' /scratch ' /proc/mounts | cut -d' ' -f3",
    ]);
    assert_eq!(out, "from host\nro-refused\nrootfs-ro\ntmpfs");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("out")).unwrap(),
        "w\n"
    );
    // Memory and pids limits in the container's cgroup, capabilities, network modes.
    let out = d.ok(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cap-drop",
        "CHOWN",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; \
         chown 1 /tmp 2>/dev/null || echo no-chown; ls /sys/class/net",
    ]);
    assert_eq!(out, "67108864\n50\nno-chown\nlo");
    let host_if = std::fs::read_dir("/sys/class/net").unwrap().count();
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net | wc -l",
    ]);
    assert_eq!(out.trim().parse::<usize>().unwrap(), host_if);
    // --privileged: every capability berthd itself has.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_owned();
    let out = d.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status",
    ]);
    assert_eq!(out.split_whitespace().nth(1), Some(bnd.as_str()), "{out}");
    // Bad parameters are 400s naming the problem.
    // (`-v` makes a missing source as dockerd; `--mount` refuses it.)
    let o = d.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/does/not/exist,dst=/x",
        "busybox",
        "true",
    ]);
    o.assert_stderr_contains("bind source path does not exist");
    let o = d.docker(&["run", "--rm", "-p", "8080:80", "busybox", "true"]);
    o.assert_stderr_contains("publishing ports");
    let o = d.docker(&["run", "--rm", "--cap-add", "BOGUS", "busybox", "true"]);
    o.assert_stderr_contains("unknown capability");
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    d.assert_clean(&[]);
}

#[test]
fn daemon_pause_top_rename_events() {
    use std::io::BufRead;
    let d = daemon();
    d.load_busybox();
    let mut ev = d
        .docker_cmd(&[
            "events",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
            "--filter",
            "type=container",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = ev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // The subscription is live once a probe container's events come through.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    'probe: for n in 0.. {
        assert!(
            Instant::now() < deadline,
            "docker events showed nothing: {seen:?}"
        );
        let name = format!("probe{n}");
        let id = d.ok(&["create", "--name", &name, "busybox", "true"]);
        d.ok(&["rm", &id]);
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
            let hit = l == format!("destroy {name}") || l == "destroy <no value>";
            seen.push(l);
            if hit {
                break 'probe;
            }
        }
    }
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "pz",
        "busybox",
        "sh",
        "-c",
        "while true; do sleep 0.05; done",
    ]));
    d.ok(&["pause", "pz"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "pz"]),
        "paused true"
    );
    assert!(d
        .ok(&["ps", "--format", "{{.Status}}"])
        .ends_with("(Paused)"));
    // A second pause is refused.
    let o = d.docker(&["pause", "pz"]);
    o.assert_stderr_contains("already paused");
    d.ok(&["unpause", "pz"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "pz"]),
        "running"
    );
    let top = d.ok(&["top", "pz"]);
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.contains("sh -c while true"), "{top}");
    d.ok(&["rename", "pz", "renamed"]);
    assert_eq!(d.ok(&["ps", "--format", "{{.Names}}"]), "renamed");
    let o = d.docker(&["rename", "renamed", "-bad"]);
    assert_ne!(o.code(), 0);
    d.ok(&["rm", "-f", "renamed"]);
    let mut actions = Vec::new();
    while !actions.iter().any(|a: &String| a.starts_with("destroy")) {
        actions.push(
            rx.recv_timeout(Duration::from_secs(10))
                .expect("more events"),
        );
    }
    let _ = ev.kill();
    let _ = ev.wait();
    let kinds: Vec<&str> = actions
        .iter()
        .map(|a| a.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["create", "start", "pause", "unpause", "rename", "kill", "die", "destroy"],
        "{actions:?}"
    );
    assert!(
        actions[0].ends_with(" pz") && actions[4].ends_with(" renamed"),
        "{actions:?}"
    );
    let _ = id;
    d.assert_clean(&[]);
}

#[test]
fn daemon_cpu_limits_logs_since_until_and_wait_conditions() {
    let d = daemon();
    d.load_busybox();
    let out = d.ok(&[
        "run",
        "--rm",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
         /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus \
         /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
    ]);
    assert_eq!(out, "50000\n100000\n512\n0\n134217728");
    // logs --since/--until split a container's output by the records' times.
    let share = d.dir.path().join("gate");
    std::fs::create_dir(&share).unwrap();
    let bind = format!("{}:/gate", share.display());
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "echo before; while [ ! -f /gate/go ]; do sleep 0.02; done; echo after; exec sleep 1000",
    ]));
    d.wait_until("the first line", 20, || {
        d.docker(&["logs", &id]).stdout_str() == "before\n"
    });
    let mid = {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
    };
    std::fs::write(share.join("go"), "").unwrap();
    d.wait_until("the second line", 20, || {
        d.docker(&["logs", &id]).stdout_str() == "before\nafter\n"
    });
    assert_eq!(d.ok(&["logs", "--since", &mid, &id]), "after");
    assert_eq!(d.ok(&["logs", "--until", &mid, &id]), "before");
    // wait conditions over the API: headers at once, the body at the exit.
    let (st, _, _) = d
        .http(
            "POST",
            &format!("/containers/{id}/wait?condition=bogus"),
            None,
        )
        .unwrap();
    assert_eq!(st, 400);
    // The headers come at once (the CLI waits for them before it starts the container), the
    // body at the condition.
    let next = wait_request(
        &d,
        &format!("/v1.50/containers/{id}/wait?condition=next-exit"),
    );
    let removed = wait_request(
        &d,
        &format!("/v1.50/containers/{id}/wait?condition=removed"),
    );
    d.ok(&["kill", &id]);
    assert_eq!(wait_body(next)["StatusCode"], 137);
    d.ok(&["rm", &id]);
    assert_eq!(wait_body(removed)["StatusCode"], 137);
    // not-running on a stopped container answers at once with its last code.
    let c = d.track(&d.ok(&["run", "-d", "busybox", "sh", "-c", "exit 9"]));
    assert_eq!(d.ok(&["wait", &c]), "9");
    let (st, _, body) = d
        .http("POST", &format!("/containers/{c}/wait"), None)
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["StatusCode"],
        9
    );
    d.ok(&["rm", &c]);
    d.assert_clean(&[]);
}

/// Send a wait request and read its response headers (which must come before the exit).
fn wait_request(d: &TestDaemon, path: &str) -> std::os::unix::net::UnixStream {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "headers cut short: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// The JSON body of a wait response (chunked).
fn wait_body(mut s: std::os::unix::net::UnixStream) -> serde_json::Value {
    use std::io::Read;
    let mut body = String::new();
    let mut buf = [0u8; 256];
    while !body.contains('}') {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "wait body cut short: {body:?}");
        body.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    serde_json::from_str(json).unwrap()
}

#[test]
fn daemon_init_ulimits_sysctls_namespaces_and_oom() {
    let d = daemon();
    d.load_busybox();
    let out = d.ok(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline",
    ]);
    assert!(out.starts_with("/sbin/docker-init -- sh"), "{out}");
    let out = d.ok(&[
        "run", "--rm", "--ulimit", "nofile=512:1024", "--sysctl", "net.ipv4.ip_forward=1",
        "--shm-size", "8m", "--oom-score-adj", "500", "--group-add", "123", "busybox", "sh", "-c",
        "ulimit -n; ulimit -Hn; cat /proc/sys/net/ipv4/ip_forward; grep ' /dev/shm ' /proc/mounts | \
         grep -o 'size=[0-9a-z]*'; cat /proc/self/oom_score_adj; id -G",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        ["512", "1024", "1", "size=8192k", "500"],
        "{out}"
    );
    assert!(lines[5].split(' ').any(|g| g == "123"), "{out}");
    // Host namespaces.
    let host_uts = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(
        d.ok(&["run", "--rm", "--uts", "host", "busybox", "hostname"]),
        host_uts
    );
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--ipc",
            "host",
            "busybox",
            "readlink",
            "/proc/self/ns/ipc"
        ]),
        host_ipc.to_str().unwrap()
    );
    let host_pid = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--pid",
            "host",
            "busybox",
            "readlink",
            "/proc/self/ns/pid"
        ]),
        host_pid.to_str().unwrap()
    );
    // --pids-limit and --memory are enforced; the OOM kill shows in the state.
    let o = d.docker(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 30 & done 2>&1; echo spawned",
    ]);
    assert!(
        o.stdout_str().contains("can't fork") || o.stderr_str().contains("can't fork"),
        "{} {}",
        o.stdout_str(),
        o.stderr_str()
    );
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 64000000 /dev/zero | tr '\\000' a); echo survived",
    ]));
    assert_eq!(d.ok(&["wait", &id]), "137");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            &id
        ]),
        "true 137"
    );
    assert_eq!(d.ok(&["logs", &id]), "");
    d.ok(&["rm", &id]);
    let o = d.docker(&["run", "--rm", "--ulimit", "bogus=1", "busybox", "true"]);
    assert_ne!(o.code(), 0);
    d.assert_clean(&[]);
}

#[test]
fn daemon_named_volumes() {
    let d = daemon();
    d.load_busybox();
    assert_eq!(
        d.ok(&["volume", "create", "--label", "app=x", "data"]),
        "data"
    );
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "data");
    assert_eq!(
        d.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Driver}} {{.Labels.app}}",
            "data"
        ]),
        "local x"
    );
    // Written by one container, read by the next (and a volume created on first use).
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "-v",
        "auto:/auto",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f; echo a > /auto/g",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "data:/d:ro",
            "busybox",
            "sh",
            "-c",
            "cat /d/f; touch /d/x 2>/dev/null || echo ro"
        ]),
        "kept\nro"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,source=auto,target=/m",
            "busybox",
            "cat",
            "/m/g"
        ]),
        "a"
    );
    let mut vols: Vec<String> = d
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_owned)
        .collect();
    vols.sort();
    assert_eq!(vols, ["auto", "data"]);
    // In use: refused; Mounts in inspect.
    let c = d.track(&d.ok(&["create", "-v", "data:/data", "busybox", "true"]));
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}",
            &c
        ]),
        "volume data /data"
    );
    let o = d.docker(&["volume", "rm", "data"]);
    o.assert_stderr_contains("volume is in use");
    d.ok(&["rm", &c]);
    d.ok(&["volume", "rm", "data"]);
    let o = d.docker(&["volume", "inspect", "data"]);
    o.assert_stderr_contains("no such volume");
    let pruned = d.ok(&["volume", "prune", "-af"]);
    assert!(pruned.contains("auto"), "{pruned}");
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    // --mount tmpfs with a size.
    let out = d.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1048576",
        "busybox",
        "sh",
        "-c",
        "grep ' /t ' /proc/mounts",
    ]);
    assert!(out.contains("tmpfs") && out.contains("size=1024k"), "{out}");
    d.assert_clean(&[]);
}

#[test]
fn daemon_pull_from_a_local_registry() {
    let d = daemon();
    // Debian's docker-registry on 127.0.0.1, filled with skopeo from the busybox archive.
    let registry = LocalRegistry::start(&d, None);
    let port = registry.port;
    let image = registry.push_busybox("library/bb:1", None);
    let out = d.ok(&["pull", &image]);
    assert!(out.contains("Pulling from library/bb"), "{out}");
    assert!(
        out.contains("Pull complete") && out.contains("Digest: sha256:"),
        "{out}"
    );
    assert_eq!(d.ok(&["run", "--rm", &image, "echo", "pulled"]), "pulled");
    assert_eq!(
        d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        format!("127.0.0.1:{port}/library/bb:1")
    );
    // A missing image: the error comes in the stream, the CLI fails.
    let o = d.docker(&["pull", &format!("127.0.0.1:{port}/library/nope:1")]);
    assert_ne!(o.code(), 0, "{}", o.stdout_str());
    d.assert_clean(&[]);
}

#[test]
fn daemon_container_namespace_modes() {
    let d = daemon();
    d.load_busybox();
    let a = d.track(&d.ok(&["run", "-d", "--name", "ns-a", "busybox", "sleep", "1000"]));
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", "ns-a"]);
    let want: Vec<String> = ["net", "pid", "ipc"]
        .iter()
        .map(|n| {
            std::fs::read_link(format!("/proc/{pid}/ns/{n}"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:ns-a",
        "--pid",
        "container:ns-a",
        "--ipc",
        "container:ns-a",
        "busybox",
        "sh",
        "-c",
        "for n in net pid ipc; do readlink /proc/self/ns/$n; done; pidof sleep",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..3],
        want.iter().map(String::as_str).collect::<Vec<_>>()[..],
        "{out}"
    );
    assert_eq!(
        lines[3], "1",
        "ns-a's sleep is pid 1 in the shared pid namespace: {out}"
    );
    d.ok(&["stop", "-t", "0", "ns-a"]);
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "container:ns-a",
        "busybox",
        "true",
    ]);
    o.assert_stderr_contains("not running");
    d.ok(&["rm", &a]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_stats_update_prune() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]));
    let out = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}|{{.PIDs}}|{{.CPUPerc}}",
        "busy",
    ]);
    let f: Vec<&str> = out.split('|').collect();
    assert!(f[0].ends_with("/ 64MiB"), "{out}");
    assert_eq!(f[1], "1", "{out}");
    let cpu: f64 = f[2].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 1.0, "a busy loop uses the CPU: {out}");
    // One sample over the API, in docker's shape.
    let (st, _, body) = d
        .http(
            "GET",
            &format!("/containers/{id}/stats?stream=false&one-shot=true"),
            None,
        )
        .unwrap();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["memory_stats"]["limit"], 64 << 20);
    assert!(v["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap() > 0);
    // update: the running container's cgroup and the record.
    d.ok(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--pids-limit",
        "33",
        "--cpus",
        "0.25",
        "--restart",
        "on-failure:3",
        "busy",
    ]);
    assert_eq!(
        d.ok(&["exec", "busy", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us"]),
        "134217728\n33\n25000"
    );
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}",
            "busy"
        ]),
        "134217728 33 on-failure"
    );
    // Kept across a restart of the container.
    d.ok(&["restart", "-t", "0", "busy"]);
    assert_eq!(
        d.ok(&["exec", "busy", "cat", "/sys/fs/cgroup/pids/pids.max"]),
        "33"
    );
    d.ok(&["rm", "-f", "busy"]);
    // prune: stopped containers, then unused images.
    let keep = d.track(&d.ok(&["run", "-d", "busybox", "sleep", "1000"]));
    let gone = d.track(&d.ok(&["run", "-d", "busybox", "true"]));
    assert_eq!(d.ok(&["wait", &gone]), "0");
    let out = d.ok(&["container", "prune", "-f"]);
    assert!(out.contains(&gone) && !out.contains(&keep), "{out}");
    assert_eq!(d.ok(&["ps", "-aq", "--no-trunc"]), keep);
    let out = d.ok(&["image", "prune", "-af"]);
    assert!(
        !out.contains("deleted: sha256"),
        "the image is in use: {out}"
    );
    d.ok(&["rm", "-f", &keep]);
    let out = d.ok(&["image", "prune", "-af"]);
    assert!(
        out.contains("untagged: busybox:latest") && out.contains("deleted: sha256:"),
        "{out}"
    );
    assert_eq!(d.ok(&["images", "-q"]), "");
    d.assert_clean(&[]);
}

#[test]
fn daemon_tty_typing_ctrl_c_and_resize() {
    let d = daemon();
    d.load_busybox();
    // Typed input reaches the shell; ^C interrupts the foreground command, not the session.
    // Keys are sent as a person types them: after the shell has shown what came before.
    let (mut child, mut keys, mut screen) =
        d.tty_session("stty rows 24 cols 80; docker run --rm -it --name ti busybox sh");
    screen.expect("/ # ");
    keys.write_all(b"echo typed-$((1+1))\n").unwrap();
    screen.expect("typed-2");
    screen.expect("/ # ");
    keys.write_all(b"sleep 100\n").unwrap();
    screen.expect("sleep 100");
    d.wait_until("sleep to run", 20, || {
        d.docker(&["exec", "ti", "pidof", "sleep"]).status.success()
    });
    keys.write_all(b"\x03").unwrap();
    screen.expect("/ # ");
    keys.write_all(b"echo after-interrupt\n").unwrap();
    screen.expect("after-interrupt\r\n");
    keys.write_all(b"exit 3\n").unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(3), "{}", screen.text());
    // Resize over the API reaches the container's terminal.
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "tt",
        "busybox",
        "sh",
        "-c",
        "sleep 1000",
    ]));
    let (st, _, _) = d
        .http("POST", &format!("/containers/{id}/resize?h=40&w=120"), None)
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(
        d.ok(&["exec", "tt", "sh", "-c", "stty size < /proc/1/fd/0"]),
        "40 120"
    );
    let (st, _, _) = d
        .http("POST", "/containers/nope/resize?h=1&w=1", None)
        .unwrap();
    assert_eq!(st, 404);
    d.ok(&["rm", "-f", &id]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_debian_docker_20_10_cli() {
    // Debian's docker.io CLI speaks API 1.41: the oldest berthd supports.
    let cli = std::path::Path::new("/usr/bin/docker");
    assert!(
        cli.exists(),
        "Debian's docker.io CLI (apt-get install docker.io)"
    );
    let d = daemon();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(cli)
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "docker 20.10 {args:?}: {}",
            o.stderr_str()
        );
        o.stdout_str().trim_end().to_owned()
    };
    let archive = runtime_tests::daemon::busybox_archive();
    assert!(run(&["load", "-i", archive.to_str().unwrap()]).contains("busybox:latest"));
    assert_eq!(
        run(&["version", "--format", "{{.Client.APIVersion}}"]),
        "1.41"
    );
    assert_eq!(run(&["run", "--rm", "busybox", "echo", "hi"]), "hi");
    let id = d.track(&run(&[
        "run",
        "-d",
        "--name",
        "old",
        "busybox",
        "sh",
        "-c",
        "echo logged; sleep 1000",
    ]));
    assert_eq!(run(&["exec", "old", "echo", "exec"]), "exec");
    d.wait_until("the log line", 20, || run(&["logs", "old"]) == "logged");
    assert_eq!(run(&["ps", "-q", "--no-trunc"]), id);
    run(&["rm", "-f", "old"]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_cp_both_ways_confined_to_the_container() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "cp-c",
        "-v",
        "cpvol:/vol",
        "busybox",
        "sleep",
        "1000",
    ]));
    let src = d.dir.path().join("in");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/f"), "hello\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
    let src_s = src.to_str().unwrap();
    d.ok(&["cp", src_s, "cp-c:/tmp/"]);
    assert_eq!(
        d.ok(&[
            "exec",
            "cp-c",
            "sh",
            "-c",
            "cat /tmp/in/sub/f; readlink /tmp/in/link"
        ]),
        "hello\n/etc/passwd"
    );
    // Into a volume mounted in the running container.
    d.ok(&["cp", &format!("{src_s}/sub/f"), "cp-c:/vol/"]);
    assert_eq!(d.ok(&["exec", "cp-c", "cat", "/vol/f"]), "hello");
    // Out of the container: a file and a tree.
    let out = d.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let out_s = out.to_str().unwrap();
    d.ok(&["cp", "cp-c:/etc/hostname", out_s]);
    assert_eq!(
        std::fs::read_to_string(out.join("hostname"))
            .unwrap()
            .trim(),
        &id[..12]
    );
    d.ok(&["cp", "cp-c:/tmp/in", &format!("{out_s}/tree")]);
    assert_eq!(
        std::fs::read_to_string(out.join("tree/sub/f")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("tree/link")).unwrap(),
        std::path::Path::new("/etc/passwd")
    );
    // A symlink in the container that points "out" resolves inside it.
    let marker = d.dir.path().join("host-only-marker");
    std::fs::write(&marker, "host secret").unwrap();
    d.ok(&["exec", "cp-c", "ln", "-s", "/../../../../../..", "/tmp/esc"]);
    let o = d.docker(&["cp", &format!("cp-c:/tmp/esc{}", marker.display()), out_s]);
    assert_ne!(
        o.code(),
        0,
        "copied a host file through a container symlink"
    );
    o.assert_stderr_contains("Could not find the file");
    assert!(!out.join("host-only-marker").exists());
    // A copy into the escaping link looks for the directory inside the container: there is
    // none, and nothing is written on the host.
    let o = d.docker(&[
        "cp",
        &format!("{src_s}/sub/f"),
        &format!("cp-c:/tmp/esc{}/", d.dir.path().display()),
    ]);
    assert_ne!(o.code(), 0);
    assert!(
        !d.dir.path().join("f").exists(),
        "wrote through a container symlink onto the host"
    );
    d.ok(&[
        "exec",
        "cp-c",
        "mkdir",
        "-p",
        &format!("{}", d.dir.path().display()),
    ]);
    d.ok(&[
        "cp",
        &format!("{src_s}/sub/f"),
        &format!("cp-c:/tmp/esc{}/", d.dir.path().display()),
    ]);
    assert!(
        !d.dir.path().join("f").exists(),
        "wrote through a container symlink onto the host"
    );
    assert_eq!(
        d.ok(&[
            "exec",
            "cp-c",
            "cat",
            &format!("{}/f", d.dir.path().display())
        ]),
        "hello"
    );
    // A stopped container: its rootfs.
    d.ok(&["stop", "-t", "0", "cp-c"]);
    d.ok(&["cp", "cp-c:/tmp/in/sub/f", &format!("{out_s}/from-stopped")]);
    assert_eq!(
        std::fs::read_to_string(out.join("from-stopped")).unwrap(),
        "hello\n"
    );
    let o = d.docker(&["cp", "cp-c:/nope", out_s]);
    o.assert_stderr_contains("Could not find the file");
    d.ok(&["rm", "cp-c"]);
    d.ok(&["volume", "rm", "cpvol"]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_seccomp_default_unconfined_and_profiles() {
    let d = daemon();
    d.load_busybox();
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; unshare -m true 2>/dev/null; echo unshare=$?",
    ]);
    assert_eq!(
        out, "Seccomp:\t2\nunshare=1",
        "filtered by default, unshare refused"
    );
    // A capability re-allows its syscalls, as in docker's profile.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--cap-add",
            "SYS_ADMIN",
            "busybox",
            "sh",
            "-c",
            "unshare -m true; echo $?"
        ]),
        "0"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            "busybox",
            "grep",
            "Seccomp:",
            "/proc/self/status"
        ]),
        "Seccomp:\t0"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--privileged",
            "busybox",
            "grep",
            "Seccomp:",
            "/proc/self/status"
        ]),
        "Seccomp:\t0"
    );
    let prof = d.dir.path().join("profile.json");
    std::fs::write(&prof, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#).unwrap();
    let opt = format!("seccomp={}", prof.display());
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--security-opt",
            &opt,
            "busybox",
            "sh",
            "-c",
            "mkdir /x 2>/dev/null; echo $?"
        ]),
        "1"
    );
    let bad = d.dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let o = d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        &format!("seccomp={}", bad.display()),
        "busybox",
        "true",
    ]);
    assert_ne!(o.code(), 0);
    // no-new-privileges.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--security-opt",
            "no-new-privileges",
            "busybox",
            "grep",
            "NoNewPrivs:",
            "/proc/self/status"
        ]),
        "NoNewPrivs:\t1"
    );
    d.assert_clean(&[]);
}

#[test]
fn daemon_devices_and_stop_signal() {
    let d = daemon();
    d.load_busybox();
    // --device with cgroup permissions: readable, not writable.
    let out = d.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/loop-control:/dev/lc:r",
        "busybox",
        "sh",
        "-c",
        "(exec 3</dev/lc) && echo open-r; (exec 3>/dev/lc) 2>/dev/null || echo write-refused",
    ]);
    assert_eq!(out, "open-r\nwrite-refused");
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "test -e /dev/lc || echo absent"
        ]),
        "absent"
    );
    let o = d.docker(&["run", "--rm", "--device", "/nope", "busybox", "true"]);
    o.assert_stderr_contains("/nope");
    // --stop-signal and --stop-timeout from the container's config.
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--stop-signal",
        "USR1",
        "--stop-timeout",
        "30",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.05; done",
    ]));
    let t = Instant::now();
    d.ok(&["stop", &id]);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the stop signal ended it"
    );
    assert_eq!(d.ok(&["logs", &id]), "got-usr1");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.ExitCode}} {{.Config.StopSignal}} {{.Config.StopTimeout}}",
            &id
        ]),
        "0 USR1 30"
    );
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_healthcheck() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ok && echo fine",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]));
    let status = || {
        d.docker(&["inspect", "-f", "{{.State.Health.Status}}", "hc"])
            .stdout_str()
            .trim()
            .to_owned()
    };
    d.wait_until("unhealthy after two failures", 20, || {
        status() == "unhealthy"
    });
    let streak: i64 = d
        .ok(&["inspect", "-f", "{{.State.Health.FailingStreak}}", "hc"])
        .parse()
        .unwrap();
    assert!(streak >= 2, "{streak}");
    assert!(d
        .ok(&["ps", "--format", "{{.Status}}"])
        .ends_with("(unhealthy)"));
    d.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    d.wait_until("healthy once the test passes", 20, || status() == "healthy");
    let last = d.ok(&[
        "inspect",
        "-f",
        "{{range .State.Health.Log}}{{.ExitCode}}:{{.Output}}|{{end}}",
        "hc",
    ]);
    assert!(last.ends_with("0:fine\n|"), "{last}");
    assert_eq!(
        d.ok(&["ps", "-q", "--no-trunc", "--filter", "health=healthy"]),
        id
    );
    d.ok(&["rm", "-f", "hc"]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_anonymous_volumes_and_copy_up() {
    let d = daemon();
    d.load_busybox();
    // `-v /path`: an anonymous volume, removed with a --rm container.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "echo x > /anon/f",
    ]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    let id = d.track(&d.ok(&[
        "run", "-d", "--name", "anon", "-v", "/anon", "busybox", "sleep", "1000",
    ]));
    let vol = d.ok(&["volume", "ls", "-q"]);
    assert_eq!(vol.len(), 64, "{vol}");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}",
            &id
        ]),
        format!("volume {vol} /anon")
    );
    d.ok(&["rm", "-fv", "anon"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    // A new named volume starts with what the image has at its path.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "etcvol:/etc",
            "busybox",
            "head",
            "-1",
            "/etc/passwd"
        ]),
        "root:x:0:0:root:/root:/bin/sh"
    );
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "etcvol");
    // ... but a volume that has content keeps it.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "etcvol:/data",
        "busybox",
        "sh",
        "-c",
        "rm /data/passwd",
    ]);
    let o = d.docker(&[
        "run",
        "--rm",
        "-v",
        "etcvol:/etc",
        "busybox",
        "test",
        "-e",
        "/etc/passwd",
    ]);
    assert_eq!(o.code(), 1);
    d.ok(&["volume", "rm", "etcvol"]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_tty_detach_keys() {
    let d = daemon();
    d.load_busybox();
    let (mut child, mut keys, mut screen) = d.tty_session("docker run -it --name dt busybox sh");
    screen.expect("/ # ");
    keys.write_all(b"echo marker-$((20+1))\n").unwrap();
    screen.expect("marker-21");
    // ctrl-p ctrl-q: the CLI leaves, the container (and its shell's stdin) stays.
    keys.write_all(b"\x10\x11").unwrap();
    let mut st = None;
    d.wait_until("the CLI to detach", 20, || {
        st = child.try_wait().unwrap();
        st.is_some()
    });
    assert_eq!(st.unwrap().code(), Some(0));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "dt"]), "true");
    assert_eq!(
        d.ok(&[
            "exec",
            "dt",
            "sh",
            "-c",
            "pidof sh >/dev/null && echo shell-alive"
        ]),
        "shell-alive"
    );
    d.ok(&["rm", "-f", "dt"]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_listeners_socket_group_and_roots() {
    runtime_tests::require_root();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let pidfile = std::env::temp_dir().join(format!("berthd-test-{port}.pid"));
    let d = TestDaemon::start_with(&[
        "-H",
        &tcp,
        "--group",
        "5",
        "--pidfile",
        pidfile.to_str().unwrap(),
    ])
    .unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(&d.sock).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660, "socket mode");
    assert_eq!(m.gid(), 5, "socket group");
    assert_eq!(
        std::fs::metadata(&d.data).unwrap().permissions().mode() & 0o777,
        0o710,
        "data root mode"
    );
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        d.pid().to_string()
    );
    // The same daemon over loopback TCP.
    let o = std::process::Command::new(runtime_tests::daemon::docker_cli())
        .args(["-H", &tcp, "version", "--format", "{{.Server.APIVersion}}"])
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .output()
        .unwrap();
    assert_eq!(o.stdout_str().trim(), "1.50", "{}", o.stderr_str());
    drop(d);
    let _ = std::fs::remove_file(&pidfile);
    // TCP beyond loopback without TLS is refused at start.
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(runtime_tests::daemon::berthd_bin().unwrap())
        .args(["-H", "tcp://0.0.0.0:0", "--data-root"])
        .arg(dir.path().join("data"))
        .arg("--exec-root")
        .arg(dir.path().join("exec"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    o.assert_stderr_contains("only loopback");
}

#[test]
fn daemon_attach_to_a_running_container() {
    use std::io::BufRead;
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "at",
        "busybox",
        "sh",
        "-c",
        "while read l; do echo got-$l; done; echo stdin-closed",
    ]));
    let mut att = d
        .docker_cmd(&["attach", "at"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = att.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(att.stdout.take().unwrap()).lines();
    // Attach races the first write: repeat the line until it comes back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Some(Ok(l)) = lines.next() {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    while !got.iter().any(|l: &String| l == "got-ping") {
        assert!(Instant::now() < deadline, "no echo through attach: {got:?}");
        input.write_all(b"ping\n").unwrap();
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            got.push(l);
        }
    }
    // The attached client's end of input closes the container's stdin (StdinOnce is off for
    // `run -d -i`: it stays open), and the container goes on.
    drop(input);
    let _ = att.kill();
    let _ = att.wait();
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", "at"]), "true");
    assert!(d.ok(&["logs", "at"]).lines().all(|l| l == "got-ping"));
    d.ok(&["rm", "-f", &id]);
    d.assert_clean(&[]);
}
