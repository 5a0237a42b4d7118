//! berth under real engines: containerd (`ctr` and the `io.containerd.runc.v2` shim), dockerd
//! (`docker`, over its own containerd) and podman (through conmon). Each test starts the engine
//! with its config and state in a temp dir, loads a busybox image built by
//! `rootfs-fixtures/build-image-tar.sh`, drives containers through the engine's CLI and checks
//! what the container saw and what the engine reported. Afterwards the daemons are stopped and
//! the host must have no new mounts, processes, container cgroups, network interfaces, iptables
//! rules or state dirs (see `runtime-tests/engines/harness.rs`).
//!
//! Every scenario runs twice: with berth (`BERTH_BIN`), and with runc, the sanity check of the
//! test itself. A scenario runs all its steps and reports every failed one with the command,
//! its output and the engine's log. Tests skip with a message when not root or when an engine
//! is not installed (Debian: containerd, docker.io, podman). The harness is in
//! `runtime-tests/engines/{harness,clients}.rs`, the engine configs beside them.

#[path = "../engines/harness.rs"]
mod harness;

#[path = "../engines/clients.rs"]
mod clients;

use std::path::Path;
use std::time::Duration;

use clients::{docker_run, start_docker, wait_for, Ctr, Podman, CTR_NS, IMAGE};
use harness::{call_in_pty, prerequisites, shell_line, strs, Checks, Sandbox, Under};

fn containerd_scenario(under: Under) {
    let bins = ["containerd", "ctr", "containerd-shim-runc-v2", "script"];
    let Some(runtime) = prerequisites("containerd", &bins, under) else {
        return;
    };
    let mut sb = Sandbox::new("ctrd");
    let sock = clients::start_containerd(&mut sb);
    let runc_root = sb.path("runc-root");
    sb.add_runtime_root(&runtime, &Path::new(&runc_root).join(CTR_NS));
    let ctr = Ctr {
        sock,
        runtime: runtime.display().to_string(),
        runc_root,
        fifo_dir: sb.path("fifo"),
        tag: sb.tag.clone(),
    };
    let mut c = Checks::new(format!("containerd/{under}"));
    let tar = sb.image_tar();
    let out = ctr.run(&["images", "import", &tar]);
    c.expect(
        "ctr images import",
        &out,
        0,
        &["unpacking docker.io/library/busybox"],
    );

    // Foreground run: output, the cgroup the runtime was told, the exit status, --rm.
    let id = "fg";
    sb.register(id);
    let out = ctr.run_container(
        &["--rm"],
        id,
        &["sh", "-c", "echo hi; grep memory /proc/self/cgroup; exit 3"],
    );
    let cg = format!("/{}/{id}", sb.tag);
    c.expect(
        "ctr run --rm: output, cgroup, exit 3",
        &out,
        3,
        &["hi", &cg],
    );
    let out = ctr.run(&["container", "ls", "-q"]);
    c.check(
        "ctr run --rm removed the container",
        out.ok() && out.stdout.trim().is_empty(),
        || out.describe(),
    );

    // Spec variants ctr can ask for: containerd's default seccomp profile, a privileged
    // container (host devices, no masked paths), a read-only root, a dropped capability.
    // (Not --no-pivot: ctr then replaces the runtime options, binary and root included.)
    let variants: [(&str, &[&str], &str, &str); 4] = [
        (
            "seccomp",
            &["--seccomp"],
            "grep Seccomp: /proc/self/status",
            "Seccomp:\t2",
        ),
        (
            "priv",
            &["--privileged"],
            "[ $(ls /dev | wc -l) -gt 30 ] && ! grep -q ' /proc/kcore ' /proc/self/mountinfo && echo unmasked",
            "unmasked",
        ),
        (
            "readonly",
            &["--read-only"],
            "touch /x 2>/dev/null || echo read-only",
            "read-only",
        ),
        (
            "nochown",
            &["--cap-drop", "CAP_CHOWN"],
            "chown 1 /tmp 2>/dev/null || echo no-chown",
            "no-chown",
        ),
    ];
    for (id, flags, script, want) in variants {
        sb.register(id);
        let mut extra = vec!["--rm"];
        extra.extend_from_slice(flags);
        let out = ctr.run_container(&extra, id, &["sh", "-c", script]);
        c.expect(&format!("ctr run {}", flags.join(" ")), &out, 0, &[want]);
    }

    // A failing start: the shim reads the runtime's --log (JSON) for the error it reports, and
    // nothing may be left of the half-made container.
    let id = "noexec";
    sb.register(id);
    let out = ctr.run_container(&["--rm"], id, &["/nonexistent"]);
    c.check(
        "ctr run of a missing binary fails with the runtime's message",
        !out.ok() && out.stderr.contains("/nonexistent"),
        || out.describe(),
    );
    let out = ctr.run(&["container", "rm", id]);
    let _ = out;

    // A terminal: the shim passes --console-socket; ctr sizes it like its own pty just after
    // the start, hence the pause before `stty size`.
    let id = "tty";
    sb.register(id);
    let mut a = ctr.args(&[]);
    a.extend(ctr.run_flags(id));
    a.extend(strs(&[
        "-t",
        "--rm",
        IMAGE,
        id,
        "sh",
        "-c",
        "tty; sleep 0.5; stty size; exit 2",
    ]));
    let out = call_in_pty(&shell_line("ctr", &a), &[]);
    c.expect(
        "ctr run -t: /dev/pts/0, 40x100, exit 2",
        &out,
        2,
        &["/dev/pts/0", "40 100"],
    );

    // Detached: task ls, exec, pause/resume, ps, kill, delete.
    let id = "bg";
    sb.register(id);
    let out = ctr.run_container(&["-d"], id, &["sleep", "1000"]);
    c.expect("ctr run -d", &out, 0, &[]);
    let task = ctr.task(id);
    let running = task.as_ref().is_some_and(|t| t.1 == "RUNNING");
    c.check("ctr task ls: RUNNING", running, || {
        format!("task: {task:?}")
    });
    let pid = task.map(|t| t.0).unwrap_or_default();

    let fifo = ctr.fifo_dir.clone();
    let out = ctr.run(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo exec-out; exit 5",
    ]);
    c.expect("ctr task exec: output, exit 5", &out, 5, &["exec-out"]);
    let a = ctr.args(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "-t",
        "--exec-id",
        "e2",
        id,
        "sh",
        "-c",
        "tty",
    ]);
    let out = call_in_pty(&shell_line("ctr", &a), &[]);
    c.expect("ctr task exec -t", &out, 0, &["/dev/pts/"]);

    let out = ctr.run(&["task", "pause", id]);
    c.expect("ctr task pause", &out, 0, &[]);
    let task = ctr.task(id);
    c.check(
        "ctr task ls: PAUSED",
        task.as_ref().is_some_and(|t| t.1 == "PAUSED"),
        || format!("task: {task:?}"),
    );
    let freezer = format!("/sys/fs/cgroup/freezer/{}/{id}/freezer.state", sb.tag);
    let state = std::fs::read_to_string(&freezer).unwrap_or_default();
    c.check("freezer.state FROZEN", state.trim() == "FROZEN", || {
        format!("{freezer}: {state:?}")
    });
    let out = ctr.run(&["task", "resume", id]);
    c.expect("ctr task resume", &out, 0, &[]);
    let task = ctr.task(id);
    c.check(
        "ctr task ls: RUNNING again",
        task.as_ref().is_some_and(|t| t.1 == "RUNNING"),
        || format!("task: {task:?}"),
    );

    let out = ctr.run(&["task", "ps", id]);
    c.check(
        "ctr task ps lists the init pid",
        out.ok()
            && !pid.is_empty()
            && out
                .stdout
                .lines()
                .skip(1)
                .any(|l| l.split_whitespace().next() == Some(pid.as_str())),
        || format!("pid {pid}\n{}", out.describe()),
    );

    let out = ctr.run(&["task", "kill", "-s", "9", id]);
    c.expect("ctr task kill -s 9", &out, 0, &[]);
    let stopped = wait_for(Duration::from_secs(10), || {
        ctr.task(id).is_some_and(|t| t.1 == "STOPPED")
    });
    c.check("ctr task ls: STOPPED after kill", stopped, || {
        format!("task: {:?}", ctr.task(id))
    });
    let out = ctr.run(&["task", "delete", id]);
    c.check(
        "ctr task delete reports exit code 137",
        out.ok() && out.stderr.contains("exit code 137"),
        || out.describe(),
    );
    let out = ctr.run(&["container", "delete", id]);
    c.expect("ctr container delete", &out, 0, &[]);

    // A detached task that exits by itself: its status reaches `task delete`.
    let id = "short";
    sb.register(id);
    let out = ctr.run_container(&["-d"], id, &["sh", "-c", "exit 4"]);
    c.expect("ctr run -d (exits 4)", &out, 0, &[]);
    let stopped = wait_for(Duration::from_secs(10), || {
        ctr.task(id).is_some_and(|t| t.1 == "STOPPED")
    });
    c.check("short task STOPPED", stopped, || {
        format!("task: {:?}", ctr.task(id))
    });
    let out = ctr.run(&["task", "delete", id]);
    c.check(
        "ctr task delete reports exit code 4",
        out.ok() && out.stderr.contains("exit code 4"),
        || out.describe(),
    );
    let out = ctr.run(&["container", "delete", id]);
    c.expect("ctr container delete (short)", &out, 0, &[]);

    let out = ctr.run(&["task", "ls", "-q"]);
    c.check(
        "no tasks left",
        out.ok() && out.stdout.trim().is_empty(),
        || out.describe(),
    );
    let left: Vec<_> = std::fs::read_dir(format!("{}/{CTR_NS}", ctr.runc_root))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name())
                .filter(|n| n != runtime_tests::SECCOMP_CACHE)
                .collect()
        })
        .unwrap_or_default();
    c.check("runtime state dir empty", left.is_empty(), || {
        format!("{left:?}")
    });
    sb.finish(c);
}

#[test]
fn containerd_with_berth() {
    containerd_scenario(Under::Berth);
}

#[test]
fn containerd_with_runc() {
    containerd_scenario(Under::Runc);
}

fn docker_scenario(under: Under) {
    let bins = [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "dockerd",
        "docker",
        "script",
    ];
    let Some(runtime) = prerequisites("docker", &bins, under) else {
        return;
    };
    let mut sb = Sandbox::new("docker");
    let d = start_docker(&mut sb, &runtime.display().to_string());
    let root = sb.dir.join("docker/exec/runtime-runc/moby");
    sb.add_runtime_root(&runtime, &root);
    let mut c = Checks::new(format!("docker/{under}"));
    let tar = sb.image_tar();
    let out = d.run(&["load", "-i", &tar]);
    c.expect("docker load", &out, 0, &["busybox:latest"]);

    let out = d.run(&docker_run(&["--rm", "busybox", "echo", "hi"]));
    c.check(
        "docker run --rm echo hi",
        out.ok() && out.stdout == "hi\n",
        || out.describe(),
    );
    let out = d.run(&docker_run(&["--rm", "busybox", "sh", "-c", "exit 3"]));
    c.expect("docker run: exit 3", &out, 3, &[]);

    let mut a = d.args(&docker_run(&[
        "-it",
        "--rm",
        "busybox",
        "sh",
        "-c",
        // docker sizes the terminal just after the start: give it a moment.
        "tty; sleep 0.5; stty size; exit 2",
    ]));
    a.insert(0, "docker".into());
    let out = call_in_pty(&shell_line(&a[0], &a[1..]), &[]);
    c.expect(
        "docker run -it: /dev/pts/0, 40x100, exit 2",
        &out,
        2,
        &["/dev/pts/0", "40 100"],
    );

    let out = d.run(&docker_run(&[
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; ulimit -n",
    ]));
    c.check(
        "docker run --memory 64m --pids-limit 20: limits seen inside",
        out.ok() && out.stdout == "67108864\n20\n1024\n",
        || out.describe(),
    );

    // What docker translates into the spec: user, hostname, env, cwd, read-only root.
    let out = d.run(&docker_run(&[
        "--rm",
        "--user",
        "1000:1000",
        "--hostname",
        "hh",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "--read-only",
        "busybox",
        "sh",
        "-c",
        "id -u; id -g; hostname; echo $FOO; pwd; touch /x 2>/dev/null || echo ro",
    ]));
    c.check(
        "docker run --user --hostname -e -w --read-only",
        out.ok() && out.stdout == "1000\n1000\nhh\nbar\n/tmp\nro\n",
        || out.describe(),
    );

    // Mounts docker adds: a host bind volume, a tmpfs, and --init (docker-init bind-mounted in
    // as pid 1).
    let vol = sb.path("volume");
    std::fs::create_dir_all(&vol).expect("volume dir");
    let bind = format!("{vol}:/data");
    let out = d.run(&docker_run(&[
        "--rm",
        "-v",
        &bind,
        "--tmpfs",
        "/scratch",
        "--init",
        "busybox",
        "sh",
        "-c",
        "echo from-container > /data/f; grep -c ' /scratch tmpfs ' /proc/self/mounts; cat /proc/1/comm",
    ]));
    let written = std::fs::read_to_string(format!("{vol}/f")).unwrap_or_default();
    c.check(
        "docker run -v --tmpfs --init",
        out.ok()
            && out.stdout.starts_with("1\n")
            && out.stdout.contains("init")
            && written == "from-container\n",
        || format!("host file: {written:?}\n{}", out.describe()),
    );

    let out = d.run(&docker_run(&[
        "--rm",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares",
    ]));
    c.check(
        "docker run --cpus 0.5 --cpu-shares 512",
        out.ok() && out.stdout == "50000\n100000\n512\n",
        || out.describe(),
    );

    // Spec variants docker asks for. (Not --privileged: it asks for every capability, and root
    // here lacks CAP_SYS_RESOURCE, so runc fails as well.)
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let variants: [(&[&str], &str, &str); 7] = [
        (
            &["--pid", "host"],
            "[ $(ls /proc | grep -c '^[0-9]') -gt 10 ] && echo host-pids",
            "host-pids",
        ),
        (&["--ipc", "host"], "readlink /proc/self/ns/ipc", &host_ipc),
        (
            &["--cap-add", "SYS_ADMIN", "--cap-drop", "CHOWN"],
            "grep CapEff /proc/self/status",
            "CapEff:\t00000000a82425fa",
        ),
        (
            &["--security-opt", "no-new-privileges"],
            "grep NoNewPrivs /proc/self/status",
            "NoNewPrivs:\t1",
        ),
        (
            &["--sysctl", "net.ipv4.ip_forward=1"],
            "cat /proc/sys/net/ipv4/ip_forward",
            "1",
        ),
        (
            &["--oom-score-adj", "500"],
            "cat /proc/self/oom_score_adj",
            "500",
        ),
        (&["--shm-size", "16m"], "df -k /dev/shm | tail -1", "16384"),
    ];
    for (flags, script, want) in variants {
        let mut a = vec!["--rm"];
        a.extend_from_slice(flags);
        a.extend(["busybox", "sh", "-c", script]);
        let out = d.run(&docker_run(&a));
        c.expect(&format!("docker run {}", flags.join(" ")), &out, 0, &[want]);
    }

    // Joining another container's namespaces (paths under /proc/<pid>/ns in the spec).
    let out = d.run(&docker_run(&[
        "-d",
        "--name",
        "base",
        "--ipc",
        "shareable",
        "busybox",
        "sleep",
        "1000",
    ]));
    c.expect("docker run -d base", &out, 0, &[]);
    sb.register(out.stdout.trim());
    let out = d.run(&docker_run(&[
        "--rm",
        "--pid",
        "container:base",
        "--ipc",
        "container:base",
        "busybox",
        "ps",
    ]));
    c.expect(
        "docker run --pid/--ipc container:base sees its sleep",
        &out,
        0,
        &["sleep 1000"],
    );
    let out = d.run(&["rm", "-f", "base"]);
    c.expect("docker rm -f base", &out, 0, &[]);

    // A missing binary: docker maps the runtime's "no such file or directory" to exit 127.
    let out = d.run(&docker_run(&["--rm", "busybox", "/nonexistent"]));
    c.check(
        "docker run of a missing binary: exit 127",
        out.code == Some(127) && out.stderr.contains("/nonexistent"),
        || out.describe(),
    );

    // The kernel's OOM killer, seen by the shim in the container's memory cgroup.
    let out = d.run(&docker_run(&[
        "--name",
        "oom",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=0123456789abcdef; while :; do x=$x$x; done",
    ]));
    // (State.OOMKilled stays false here with runc too: dockerd 20.10 on this cgroup v1 host
    // misses the shim's OOM event, so only the kill itself is checked.)
    let st = d.inspect("oom", "{{.State.ExitCode}}");
    c.check(
        "docker run --memory 32m: OOM killed, exit 137",
        out.code == Some(137) && st == "137",
        || format!("inspect: {st}\n{}", out.describe()),
    );
    // Starting an exited container again (a new create/start on the same bundle).
    let out = d.run(&["rm", "oom"]);
    c.expect("docker rm oom", &out, 0, &[]);
    let out = d.run(&docker_run(&["--name", "again", "busybox", "echo", "ran"]));
    c.expect("docker run (kept)", &out, 0, &["ran"]);
    let out = d.run(&["start", "-a", "again"]);
    c.expect("docker start -a of an exited container", &out, 0, &["ran"]);
    let out = d.run(&["rm", "again"]);
    c.expect("docker rm again", &out, 0, &[]);

    // A detached container: exec, top, pause/unpause, stop (SIGTERM ignored by pid 1, so the
    // SIGKILL after the timeout ends it).
    let out = d.run(&docker_run(&["-d", "busybox", "sleep", "1000"]));
    c.expect("docker run -d", &out, 0, &[]);
    let id = out.stdout.trim().to_string();
    sb.register(&id);
    let out = d.run(&["exec", &id, "sh", "-c", "echo exec-out; exit 5"]);
    c.expect("docker exec: output, exit 5", &out, 5, &["exec-out"]);
    let mut a = d.args(&["exec", "-it", &id, "sh", "-c", "tty"]);
    a.insert(0, "docker".into());
    let out = call_in_pty(&shell_line(&a[0], &a[1..]), &[]);
    // (docker sizes an exec's terminal only after it started: no size check here.)
    c.expect("docker exec -it: /dev/pts", &out, 0, &["/dev/pts/"]);
    let out = d.run(&["update", "--memory", "128m", "--memory-swap", "256m", &id]);
    c.expect("docker update --memory 128m", &out, 0, &[]);
    let out = d.run(&[
        "exec",
        &id,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    c.check(
        "updated memory limit seen inside",
        out.ok() && out.stdout == "134217728\n",
        || out.describe(),
    );
    let out = d.run(&["top", &id]);
    c.expect("docker top", &out, 0, &["sleep 1000"]);
    let out = d.run(&["pause", &id]);
    c.expect("docker pause", &out, 0, &[]);
    let st = d.inspect(&id, "{{.State.Status}} {{.State.Paused}}");
    c.check("paused", st == "paused true", || st.clone());
    let out = d.run(&["unpause", &id]);
    c.expect("docker unpause", &out, 0, &[]);
    let st = d.inspect(&id, "{{.State.Status}} {{.State.Paused}}");
    c.check("running again", st == "running false", || st.clone());
    let out = d.run(&["stop", "-t", "2", &id]);
    let slow = out.elapsed >= Duration::from_secs(2);
    c.check(
        "docker stop -t 2: waits, then kills",
        out.ok() && slow,
        || out.describe(),
    );
    let st = d.inspect(&id, "{{.State.Status}} {{.State.ExitCode}}");
    c.check("stopped container: exited 137", st == "exited 137", || {
        st.clone()
    });
    let out = d.run(&["rm", &id]);
    c.expect("docker rm", &out, 0, &[]);

    // A process that handles SIGTERM: stop ends it with its own status, without the KILL.
    let out = d.run(&docker_run(&[
        "-d",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' TERM; touch /tmp/ready; while :; do sleep 0.1; done",
    ]));
    c.expect("docker run -d (traps TERM)", &out, 0, &[]);
    let id = out.stdout.trim().to_string();
    sb.register(&id);
    let ready = out.ok()
        && wait_for(Duration::from_secs(10), || {
            d.run(&["exec", &id, "test", "-e", "/tmp/ready"]).ok()
        });
    c.check("trap installed", ready, String::new);
    let out = d.run(&["stop", "-t", "20", &id]);
    let fast = out.elapsed < Duration::from_secs(10);
    c.check("docker stop: SIGTERM handled", out.ok() && fast, || {
        out.describe()
    });
    let st = d.inspect(&id, "{{.State.Status}} {{.State.ExitCode}}");
    c.check("stopped container: exited 7", st == "exited 7", || {
        st.clone()
    });
    let out = d.run(&["rm", &id]);
    c.expect("docker rm (trap)", &out, 0, &[]);

    let out = d.run(&["ps", "-aq"]);
    c.check(
        "no containers left",
        out.ok() && out.stdout.trim().is_empty(),
        || out.describe(),
    );
    sb.finish(c);
}

#[test]
fn docker_with_berth() {
    docker_scenario(Under::Berth);
}

#[test]
fn docker_with_runc() {
    docker_scenario(Under::Runc);
}

fn podman_scenario(under: Under) {
    let Some(runtime) = prerequisites("podman", &["podman", "conmon", "script"], under) else {
        return;
    };
    let mut sb = Sandbox::new("podman");
    let p = Podman::new(&sb, &runtime.display().to_string());
    // podman runs the runtime with its default --root, /run/<name>.
    let rt_root = format!("/run/{under}");
    sb.add_runtime_root(&runtime, Path::new(&rt_root));
    let mut c = Checks::new(format!("podman/{under}"));
    let tar = sb.image_tar();
    let out = p.run(&["load", "-i", &tar]);
    c.expect("podman load", &out, 0, &["busybox:latest"]);

    let out = p.run(&p.run_args(&["--rm", "busybox", "sh", "-c", "echo hi; ulimit -n; exit 3"]));
    c.expect(
        "podman run --rm: output, rlimit, exit 3",
        &out,
        3,
        &["hi\n1024\n"],
    );

    // podman attaches to conmon only after `start`: output of a process that exits at once
    // can be gone by then (with runc too, which is just slower to start). Give it a moment.
    let mut a = p.args(&p.run_args(&[
        "-it",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "sleep 0.5; tty; exit 2",
    ]));
    a.insert(0, "podman".into());
    let out = call_in_pty(&shell_line(&a[0], &a[1..]), &p.envs);
    c.expect(
        "podman run -it: /dev/pts/0, exit 2",
        &out,
        2,
        &["/dev/pts/0"],
    );

    let out = p.run(&p.run_args(&["--rm", "busybox", "/nonexistent"]));
    c.check(
        "podman run of a missing binary: exit 127",
        out.code == Some(127) && out.stderr.contains("/nonexistent"),
        || out.describe(),
    );

    let out = p.run(&p.run_args(&["-d", "busybox", "sleep", "1000"]));
    c.expect("podman run -d", &out, 0, &[]);
    let id = out.stdout.trim().to_string();
    sb.register(&id);
    let ids = [id.clone()];
    let out = p.run(&["exec", &id, "sh", "-c", "echo exec-out; exit 5"]);
    c.expect("podman exec: output, exit 5", &out, 5, &["exec-out"]);
    let mut a = p.args(&["exec", "-it", &id, "sh", "-c", "tty"]);
    a.insert(0, "podman".into());
    let out = call_in_pty(&shell_line(&a[0], &a[1..]), &p.envs);
    c.expect("podman exec -it: /dev/pts", &out, 0, &["/dev/pts/"]);
    let out = p.run(&["top", &id]);
    c.expect("podman top", &out, 0, &["sleep 1000"]);
    let out = p.run(&["pause", &id]);
    c.expect("podman pause", &out, 0, &[]);
    let st = p.run(&["inspect", "-f", "{{.State.Status}}", &id]);
    c.check("paused", st.stdout.trim() == "paused", || st.describe());
    let out = p.run(&["unpause", &id]);
    c.expect("podman unpause", &out, 0, &[]);
    let st = p.run(&["inspect", "-f", "{{.State.Status}}", &id]);
    c.check("running again", st.stdout.trim() == "running", || {
        st.describe()
    });
    let out = p.run(&["stop", "-t", "1", &id]);
    c.expect("podman stop -t 1", &out, 0, &[]);
    let st = p.run(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        &id,
    ]);
    c.check(
        "stopped: exited 137",
        st.stdout.trim() == "exited 137",
        || st.describe(),
    );
    let out = p.run(&["rm", &id]);
    c.expect("podman rm", &out, 0, &[]);

    let out = p.run(&["ps", "-aq"]);
    c.check(
        "no containers left",
        out.ok() && out.stdout.trim().is_empty(),
        || out.describe(),
    );
    // podman runs the runtime with its default --root (`podman container cleanup`, the exit
    // command conmon runs, drops --runtime-flag): look there for our containers' state.
    let left: Vec<String> = std::fs::read_dir(&rt_root)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| ids.iter().any(|id| id == n))
                .collect()
        })
        .unwrap_or_default();
    c.check("no runtime state left", left.is_empty(), || {
        format!("{rt_root}: {left:?}")
    });
    sb.finish(c);
}

#[test]
fn podman_with_berth() {
    podman_scenario(Under::Berth);
}

#[test]
fn podman_with_runc() {
    podman_scenario(Under::Runc);
}
