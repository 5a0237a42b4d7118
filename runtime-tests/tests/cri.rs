//! berth under Kubernetes' container runtime interface: containerd's CRI plugin driven by
//! `crictl` (cri-tools v1.26.1) the way kubelet drives it, with two runtime handlers in one
//! containerd, `berth` (the berth under test, `BERTH_BIN`) and `runc` (Debian's runc, the check
//! of the test itself). Every scenario runs for both handlers in the same test and asserts the
//! same things; where speed matters (a container's exit reaching CRI) berth is compared with
//! runc.
//!
//! The test makes a network namespace (a `unshare --net` holder process) and runs containerd
//! and crictl inside it: CNI's bridge, veth pairs and iptables rules, the CRI streaming server
//! (exec, attach) and `hostNetwork` pods all live there and vanish with it; the host's own
//! network namespace is never touched. containerd's root, state, sockets, the runtimes' state,
//! the CNI config and IPAM data, pod logs and pod netns mounts are under the sandbox's temp dir;
//! pods' cgroups under `/<tag>/<pod>` in every hierarchy. The pause image (`pause.c`) and the
//! busybox image are built from `rootfs-fixtures` and imported with `ctr -n k8s.io images
//! import`: nothing is downloaded.
//!
//! Prerequisites (root, containerd, ctr, the runc v2 shim, runc, CNI plugins in /usr/lib/cni,
//! nsenter, unshare, script, cc, and crictl from `$CRICTL` or `../shared/tools/crictl`) are
//! failures when missing, not skips. Configs and pod/container JSON are in `runtime-tests/cri/`.

#[path = "../engines/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::{call, call_in_pty, shell_line, strs, Checks, Daemon, Out, Sandbox, Under};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use runtime_tests::wait_for;
use serde_json::{json, Value};

/// The busybox image as containerd names it after the import.
const BUSYBOX: &str = "docker.io/library/busybox:latest";
/// The sandbox image (`containerd.toml`'s `sandbox_image`).
const PAUSE: &str = "docker.io/library/berth-pause:1";
/// The subnet of the CNI bridge (`10-berth-cri.conflist`).
const POD_SUBNET: &str = "10.88.77.";
/// How long a container may take to reach a state it was driven to.
const STATE_TIMEOUT: Duration = Duration::from_secs(15);
/// One crictl call (crictl's own `--timeout` is 30 s in its config).
const CRICTL_TIMEOUT: Duration = Duration::from_secs(45);

/// crictl: `$CRICTL`, else `../shared/tools/crictl` beside the repository.
fn crictl_path() -> PathBuf {
    let p = match std::env::var_os("CRICTL") {
        Some(p) => PathBuf::from(p),
        None => runtime_tests::workspace_dir().join("../shared/tools/crictl"),
    };
    assert!(
        p.is_file(),
        "crictl not found at {} (set CRICTL, or see ../shared/tools/README.md)",
        p.display()
    );
    p
}

/// Fails the test, with what to install, when something the CRI suite needs is missing.
fn require_prerequisites() {
    harness::require_bins(
        "cri",
        &[
            "containerd",
            "ctr",
            "containerd-shim-runc-v2",
            "runc",
            "nsenter",
            "unshare",
            "script",
            "ip",
            "cc",
        ],
        "Debian: containerd, runc, util-linux, bsdutils, iproute2, gcc; `make deps`",
    );
    for plugin in ["bridge", "host-local", "loopback"] {
        let p = Path::new("/usr/lib/cni").join(plugin);
        assert!(
            p.is_file(),
            "CNI plugin {} missing (Debian: containernetworking-plugins)",
            p.display()
        );
    }
}

/// A config template from `runtime-tests/cri/` with its placeholders replaced, written to `dest`.
fn template(name: &str, vars: &[(&str, &str)], dest: &Path) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("cri").join(name);
    let mut text =
        fs::read_to_string(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    for (k, v) in vars {
        text = text.replace(k, v);
    }
    fs::create_dir_all(dest.parent().expect("template dest has a parent")).expect("config dir");
    fs::write(dest, text).unwrap_or_else(|e| panic!("write {}: {e}", dest.display()));
    dest.display().to_string()
}

/// containerd with the CRI plugin inside a network namespace of the test, and crictl for it.
struct Cri {
    crictl: String,
    /// crictl's config file (endpoints, timeout).
    config: String,
    /// `/proc/<holder>/ns/net`: the test's network namespace.
    netns: String,
    /// `net:[inode]` of that namespace, as containers see it in `/proc/self/ns/net`.
    netns_id: String,
    /// `uts:[inode]` of the host (hostNetwork pods share the node's UTS namespace).
    host_uts: String,
    dir: PathBuf,
    tag: String,
    /// The CNI network's name (unique to this sandbox).
    net_name: String,
}

impl Cri {
    /// Makes the network namespace, starts containerd in it with both handlers, and imports the
    /// pause and busybox images.
    fn start(sb: &mut Sandbox) -> Cri {
        let crictl = crictl_path().display().to_string();
        let berth = Under::Berth.bin().expect("berth binary");
        let runc = Under::Runc.bin().expect("runc binary");
        let dir = sb.dir.join("cri");
        fs::create_dir_all(&dir).expect("cri dir");

        // The namespace lives as long as this holder (stopped last: daemons stop in reverse).
        let holder = Daemon::start(
            "netns-holder",
            "unshare",
            &strs(&["--net", "sleep", "infinity"]),
            &dir.join("holder.log"),
        );
        let netns = format!("/proc/{}/ns/net", holder.pid());
        let own = fs::read_link("/proc/self/ns/net").expect("own netns");
        let ready = wait_for(Duration::from_secs(10), || {
            fs::read_link(&netns).is_ok_and(|l| l != own)
        });
        assert!(ready, "unshare --net did not make a network namespace");
        let netns_id = fs::read_link(&netns)
            .expect("holder netns")
            .display()
            .to_string();
        sb.add_daemon(holder);
        let out = call(
            "nsenter",
            &strs(&[&format!("--net={netns}"), "ip", "link", "set", "lo", "up"]),
            &[],
            Duration::from_secs(10),
        );
        assert!(out.ok(), "lo up in the test netns:\n{}", out.describe());

        let d = dir.display().to_string();
        let net_name = format!(
            "berth-cri-{}",
            sb.tag.rsplit('-').take(2).collect::<Vec<_>>().join("-")
        );
        let cfg = template(
            "containerd.toml",
            &[
                ("@DIR@", &d),
                ("@BERTH@", &berth.display().to_string()),
                ("@RUNC@", &runc.display().to_string()),
            ],
            &dir.join("containerd.toml"),
        );
        template(
            "10-berth-cri.conflist",
            &[("@DIR@", &d), ("@NET@", &net_name)],
            &dir.join("net.d/10-berth-cri.conflist"),
        );
        let sock = format!("{d}/containerd.sock");
        let config = dir.join("crictl.yaml");
        fs::write(
            &config,
            format!(
                "runtime-endpoint: unix://{sock}\nimage-endpoint: unix://{sock}\ntimeout: 30\n"
            ),
        )
        .expect("crictl config");
        let cri = Cri {
            crictl,
            config: config.display().to_string(),
            netns: netns.clone(),
            netns_id,
            host_uts: fs::read_link("/proc/self/ns/uts")
                .expect("own uts ns")
                .display()
                .to_string(),
            dir: dir.clone(),
            tag: sb.tag.clone(),
            net_name,
        };

        let mut daemon = Daemon::start(
            "containerd",
            "nsenter",
            &strs(&[&format!("--net={netns}"), "containerd", "--config", &cfg]),
            &dir.join("containerd.log"),
        );
        daemon.wait_ready(|| Path::new(&sock).exists() && cri.run(&["version"]).ok());
        sb.add_daemon(daemon);
        for h in ["berth-root", "runc-root"] {
            fs::create_dir_all(dir.join(h).join("k8s.io")).expect("runtime root");
        }
        sb.add_runtime_root(&berth, &dir.join("berth-root/k8s.io"));
        sb.add_runtime_root(&runc, &dir.join("runc-root/k8s.io"));

        // The images: pause from pause.c, busybox from the rootfs fixture.
        let fixtures = runtime_tests::workspace_dir().join("rootfs-fixtures");
        let pause_tar = dir.join("pause.tar").display().to_string();
        let out = call(
            "sh",
            &[
                fixtures.join("build-pause-image.sh").display().to_string(),
                pause_tar.clone(),
            ],
            &[],
            Duration::from_secs(120),
        );
        assert!(out.ok(), "build the pause image:\n{}", out.describe());
        let busybox_tar = sb.image_tar();
        for tar in [&pause_tar, &busybox_tar] {
            let out = call(
                "ctr",
                &strs(&["--address", &sock, "-n", "k8s.io", "images", "import", tar]),
                &[],
                Duration::from_secs(120),
            );
            assert!(out.ok(), "ctr images import:\n{}", out.describe());
        }
        cri
    }

    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v = strs(&[
            &format!("--net={}", self.netns),
            &self.crictl,
            "--config",
            &self.config,
        ]);
        v.extend(strs(args));
        v
    }

    /// `crictl ARGS` inside the test's network namespace (the streaming server listens there).
    fn run(&self, args: &[&str]) -> Out {
        call("nsenter", &self.args(args), &[], CRICTL_TIMEOUT)
    }

    /// `crictl ARGS` as a shell command line.
    fn line(&self, args: &[&str]) -> String {
        shell_line("nsenter", &self.args(args))
    }

    /// A command in the test's network namespace (the node, for the pods).
    fn in_netns(&self, prog: &str, args: &[&str]) -> Out {
        let mut a = vec![format!("--net={}", self.netns), prog.to_string()];
        a.extend(strs(args));
        call("nsenter", &a, &[], CRICTL_TIMEOUT)
    }

    /// `crictl inspect -o json ID` (or `inspectp`), parsed; Null when it failed.
    fn inspect(&self, verb: &str, id: &str) -> Value {
        let out = self.run(&[verb, "-o", "json", id]);
        if !out.ok() {
            return Value::Null;
        }
        serde_json::from_str(&out.stdout).unwrap_or(Value::Null)
    }

    /// (state, exit code, reason) of a container.
    fn state(&self, id: &str) -> (String, i64, String) {
        let v = self.inspect("inspect", id);
        let s = &v["status"];
        (
            s["state"].as_str().unwrap_or("?").to_string(),
            s["exitCode"].as_i64().unwrap_or(-1),
            s["reason"].as_str().unwrap_or("").to_string(),
        )
    }

    /// Polls until the container is in `want`; returns the time it took.
    fn wait_state(&self, id: &str, want: &str, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        wait_for(timeout, || self.state(id).0 == want).then(|| start.elapsed())
    }

    /// A pod from `template` (pod.json or pod-secure.json) named `name`: writes its config
    /// into the sandbox and returns its path.
    fn pod_config(&self, template_name: &str, name: &str) -> String {
        let logdir = self.dir.join("logs").join(name);
        fs::create_dir_all(&logdir).expect("pod log dir");
        template(
            template_name,
            &[
                ("@NAME@", name),
                ("@UID@", &format!("uid-{name}")),
                ("@LOGDIR@", &logdir.display().to_string()),
                ("@CGROUP@", &format!("/{}/{name}", self.tag)),
            ],
            &self.dir.join(format!("{name}.pod.json")),
        )
    }

    /// A container config: busybox running `cmd`, with `linux` as its `linux` section and, as
    /// kubelet sends without shareProcessNamespace, a pid namespace of its own.
    fn container_config(&self, name: &str, attempt: u32, cmd: &[&str], mut linux: Value) -> String {
        linux["security_context"] = json!({
            "namespace_options": { "network": 0, "pid": 1, "ipc": 0 },
            "seccomp": { "profile_type": 0 },
        });
        let c = json!({
            "metadata": { "name": name, "attempt": attempt },
            "image": { "image": BUSYBOX },
            "command": cmd,
            "log_path": format!("{name}_{attempt}.log"),
            "linux": linux,
        });
        let p = self.dir.join(format!("{name}-{attempt}.json"));
        fs::write(&p, serde_json::to_string_pretty(&c).expect("json")).expect("container json");
        p.display().to_string()
    }

    /// Removes a pod's cgroup from every hierarchy, as kubelet does after `rmp`; a container
    /// cgroup still inside it makes that fail, and is returned.
    fn remove_pod_cgroup(&self, pod: &str) -> Vec<String> {
        let mut left = Vec::new();
        let Ok(rd) = fs::read_dir(runtime_tests::CGROUP_ROOT) else {
            return left;
        };
        for h in rd.flatten() {
            let d = h.path().join(&self.tag).join(pod);
            if !d.is_dir() {
                continue;
            }
            if let Err(e) = fs::remove_dir(&d) {
                let inner: Vec<String> = fs::read_dir(&d)
                    .map(|rd| {
                        rd.flatten()
                            .filter(|e| e.path().is_dir())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                left.push(format!("{}: {e} (holds {inner:?})", d.display()));
            }
        }
        left
    }

    /// containerd shims serving this containerd (their command line names its socket).
    fn shims(&self) -> Vec<String> {
        let sock = self.dir.join("containerd.sock").display().to_string();
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cmd = fs::read(e.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            if cmd.contains("containerd-shim") && cmd.contains(&sock) {
                out.push(cmd);
            }
        }
        out
    }
}

/// CNI's result cache is on the host (/var/lib/cni/results, whatever the config says): after a
/// failed run whose pods were never torn down, remove this network's entries and their
/// loopback twins, so that the sandbox can remove the directory it did not find.
/// ([`nothing_left`] reports them first.)
impl Drop for Cri {
    fn drop(&mut self) {
        let dir = Path::new("/var/lib/cni/results");
        let prefix = format!("{}-", self.net_name);
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(sandbox) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix("-eth0"))
            else {
                continue;
            };
            let _ = fs::remove_file(dir.join(format!("cni-loopback-{sandbox}-lo")));
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The first line of a crictl answer (an id).
fn first_line(out: &Out) -> String {
    out.stdout.lines().next().unwrap_or("").trim().to_string()
}

/// `crictl logs -f`: waits until it prints a `line N` with N > `after`, then stops it.
fn follow_logs(cri: &Cri, id: &str, after: u64) -> Result<u64, String> {
    let mut child = Command::new("nsenter")
        .args(cri.args(&["logs", "-f", id]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn crictl logs -f: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let n = l
                    .strip_prefix("line ")
                    .and_then(|n| n.trim().parse::<u64>().ok());
                seen.push(l);
                if let Some(n) = n.filter(|n| *n > after) {
                    break Ok(n);
                }
            }
            Err(_) => break Err(format!("no line after {after} within 10 s; saw {seen:?}")),
        }
    };
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
    result
}

/// The highest `line N` in a log text.
fn last_line_number(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("line ")?.trim().parse().ok())
        .max()
}

/// What one handler's lifecycle run measured, compared across handlers afterwards.
#[derive(Default)]
struct Measured {
    /// From `crictl start` returning to CRI reporting EXITED, for a container that exits at once.
    exit_seen: Option<Duration>,
    /// From `crictl stop` of a container that exits on SIGTERM to it returning.
    stop: Option<Duration>,
}

/// kubelet's pod lifecycle with `handler`: pod, containers, exec, logs, update, stats, a peer
/// container, exits, OOM, stop, restart, `crictl run`, removal, and nothing left.
fn lifecycle(cri: &Cri, sb: &mut Sandbox, c: &mut Checks, h: &str) -> Measured {
    let mut m = Measured::default();
    let pod_name = format!("life-{h}");
    let pod_cfg = cri.pod_config("pod.json", &pod_name);

    // runp: READY, an IP from the bridge, the handler recorded.
    let out = cri.run(&["runp", "--runtime", h, &pod_cfg]);
    let pod = first_line(&out);
    c.check(&format!("{h}: runp"), out.ok() && pod.len() == 64, || {
        out.describe()
    });
    sb.register(&pod);
    let p = cri.inspect("inspectp", &pod);
    let ip = p["status"]["network"]["ip"]
        .as_str()
        .unwrap_or("")
        .to_string();
    c.check(
        &format!("{h}: pod READY with an IP from the bridge, handler {h}, the local pause image"),
        p["status"]["state"] == "SANDBOX_READY"
            && ip.starts_with(POD_SUBNET)
            && p["status"]["runtimeHandler"] == h
            && p["info"]["runtimeHandler"] == h
            && p["info"]["image"] == PAUSE,
        || format!("{p:#}"),
    );
    let out = cri.run(&["pods", "--id", &pod, "-q"]);
    c.check(
        &format!("{h}: pods lists it"),
        out.stdout.trim() == pod,
        || out.describe(),
    );

    // create/start a container that writes a line every 0.2 s and exits 0 on SIGTERM.
    let main_cfg = cri.container_config(
        "main",
        0,
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; i=0; while :; do echo line $i; i=$((i+1)); sleep 0.2; done",
        ],
        json!({}),
    );
    let out = cri.run(&["create", &pod, &main_cfg, &pod_cfg]);
    let main = first_line(&out);
    sb.register(&main);
    c.check(
        &format!("{h}: create"),
        out.ok() && main.len() == 64,
        || out.describe(),
    );
    let st = cri.state(&main);
    c.check(
        &format!("{h}: CREATED after create"),
        st.0 == "CONTAINER_CREATED",
        || format!("{st:?}"),
    );
    let out = cri.run(&["start", &main]);
    c.expect(&format!("{h}: start"), &out, 0, &[]);
    let running = cri
        .wait_state(&main, "CONTAINER_RUNNING", STATE_TIMEOUT)
        .is_some();
    c.check(&format!("{h}: RUNNING after start"), running, || {
        format!("{:?}", cri.state(&main))
    });

    // ps and inspect: the pid is a live process in the pod's cgroup.
    let out = cri.run(&["ps", "--pod", &pod, "-o", "json"]);
    let listed: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    let row = listed["containers"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == main.as_str()).cloned())
        .unwrap_or(Value::Null);
    c.check(
        &format!("{h}: ps lists the container RUNNING"),
        row["state"] == "CONTAINER_RUNNING" && row["metadata"]["name"] == "main",
        || out.describe(),
    );
    let info = cri.inspect("inspect", &main);
    let pid = info["info"]["pid"].as_i64().unwrap_or(0);
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let want_cg = format!("/{}/{pod_name}/{main}", cri.tag);
    c.check(
        &format!("{h}: inspect: pid {pid} runs in {want_cg}"),
        pid > 0 && cgroup.lines().any(|l| l.ends_with(&want_cg)),
        || format!("/proc/{pid}/cgroup:\n{cgroup}\n{info:#}"),
    );

    // exec -s: output and exit status.
    let out = cri.run(&[
        "exec",
        "-s",
        &main,
        "sh",
        "-c",
        "echo sync-out; hostname; ip -o link show lo",
    ]);
    c.check(
        &format!("{h}: exec -s: output, pod hostname, lo up (CNI loopback)"),
        out.ok()
            && out.stdout.contains("sync-out")
            && out.stdout.contains(&pod_name)
            && out.stdout.contains("LOWER_UP"),
        || out.describe(),
    );
    let out = cri.run(&["exec", "-s", &main, "sh", "-c", "exit 3"]);
    c.check(
        &format!("{h}: exec -s: exit status 3"),
        !out.ok() && out.stderr.contains("exited with 3"),
        || out.describe(),
    );
    // Streaming exec: stdout, stderr, the exit status, stdin.
    let out = cri.run(&[
        "exec",
        &main,
        "sh",
        "-c",
        "echo s-out; echo s-err >&2; exit 4",
    ]);
    c.check(
        &format!("{h}: exec: stdout, stderr, exit 4"),
        out.code == Some(1)
            && out.stdout.contains("s-out")
            && out.stderr.contains("s-err")
            && out.stderr.contains("command terminated with exit code 4"),
        || out.describe(),
    );
    let line = format!(
        "echo through-stdin | {}",
        cri.line(&["exec", "-i", &main, "sh", "-c", "cat; exit 0"])
    );
    let out = call("sh", &strs(&["-c", &line]), &[], CRICTL_TIMEOUT);
    c.expect(&format!("{h}: exec -i: stdin"), &out, 0, &["through-stdin"]);
    let out = call_in_pty(
        &cri.line(&[
            "exec",
            "-it",
            &main,
            "sh",
            "-c",
            "tty; [ -t 0 ] && echo stdin-tty; exit 5",
        ]),
        &[],
    );
    // crictl exits 1 and names the status (script merges the terminal's output).
    c.expect(
        &format!("{h}: exec -it: a terminal, exit 5"),
        &out,
        1,
        &[
            "/dev/pts/",
            "stdin-tty",
            "command terminated with exit code 5",
        ],
    );

    // logs, and logs -f while the container writes.
    let out = cri.run(&["logs", &main]);
    let last = last_line_number(&out.stdout);
    c.check(
        &format!("{h}: logs"),
        out.ok() && out.stdout.starts_with("line 0\n") && last.is_some(),
        || out.describe(),
    );
    let followed = follow_logs(cri, &main, last.unwrap_or(0));
    c.check(
        &format!("{h}: logs -f shows lines written later"),
        followed.is_ok(),
        || format!("{followed:?}"),
    );

    // update: limits reach the cgroup, seen from inside and from the host.
    let out = cri.run(&[
        "update",
        "--memory",
        "134217728",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "50000",
        "--cpu-share",
        "512",
        &main,
    ]);
    c.expect(&format!("{h}: update"), &out, 0, &[]);
    let out = cri.run(&[
        "exec",
        "-s",
        &main,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu/cpu.shares",
    ]);
    let host_mem = fs::read_to_string(format!(
        "{}/memory{want_cg}/memory.limit_in_bytes",
        runtime_tests::CGROUP_ROOT
    ))
    .unwrap_or_default();
    c.check(
        &format!("{h}: update: 128 MiB, 50000/100000, 512 shares inside and on the host"),
        out.ok()
            && out.stdout.split_whitespace().collect::<Vec<_>>() == ["134217728", "50000", "512"]
            && host_mem.trim() == "134217728",
        || {
            format!(
                "host memory.limit_in_bytes {host_mem:?}\n{}",
                out.describe()
            )
        },
    );
    let spec = cri.inspect("inspect", &main);
    let mem = &spec["info"]["runtimeSpec"]["linux"]["resources"]["memory"]["limit"];
    c.check(
        &format!("{h}: inspect shows the updated limit"),
        mem == 134217728,
        || format!("{mem}"),
    );

    // stats and statsp.
    let out = cri.run(&["stats", "-o", "json", "--id", &main]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    let s = &v["stats"][0];
    let ws = s["memory"]["workingSetBytes"]["value"]
        .as_str()
        .and_then(|x| x.parse::<u64>().ok())
        .or_else(|| s["memory"]["workingSetBytes"]["value"].as_u64())
        .unwrap_or(0);
    let cpu = s["cpu"]["usageCoreNanoSeconds"]["value"]
        .as_str()
        .and_then(|x| x.parse::<u64>().ok())
        .or_else(|| s["cpu"]["usageCoreNanoSeconds"]["value"].as_u64())
        .unwrap_or(0);
    c.check(
        &format!("{h}: stats: memory working set and cpu usage"),
        out.ok() && ws > 0 && cpu > 0,
        || out.describe(),
    );
    let out = cri.run(&["statsp", "-o", "json", "--id", &pod]);
    c.check(
        &format!("{h}: statsp: the pod's stats"),
        out.ok() && out.stdout.contains(&pod),
        || out.describe(),
    );

    // A second container in the pod: same network (localhost), IPC and UTS namespaces; the
    // node reaches it at the pod IP.
    let peer_cfg = cri.container_config(
        "peer",
        0,
        &[
            "sh",
            "-c",
            "mkdir -p /tmp/www && echo hello-peer > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        ],
        json!({}),
    );
    let out = cri.run(&["create", &pod, &peer_cfg, &pod_cfg]);
    let peer = first_line(&out);
    sb.register(&peer);
    let out2 = cri.run(&["start", &peer]);
    c.check(
        &format!("{h}: second container created and started"),
        out.ok() && out2.ok(),
        || format!("{}\n{}", out.describe(), out2.describe()),
    );
    let mut got = None;
    let served = wait_for(Duration::from_secs(10), || {
        let o = cri.run(&[
            "exec",
            "-s",
            &main,
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/",
        ]);
        let ok = o.ok() && o.stdout.contains("hello-peer");
        got = Some(o);
        ok
    });
    c.check(
        &format!("{h}: localhost between the pod's containers"),
        served,
        || got.map(|o| o.describe()).unwrap_or_default(),
    );
    let ns = |id: &str| {
        cri.run(&[
            "exec",
            "-s",
            id,
            "sh",
            "-c",
            "for n in net ipc uts; do readlink /proc/self/ns/$n; done; hostname",
        ])
        .stdout
        .trim_end()
        .to_string()
    };
    let (a, b) = (ns(&main), ns(&peer));
    c.check(
        &format!("{h}: same net, ipc and uts namespaces and hostname"),
        a.lines().count() == 4 && a == b && a.ends_with(&pod_name),
        || format!("main:\n{a}peer:\n{b}"),
    );
    let url = format!("http://{ip}:8080/");
    let out = cri.in_netns("/bin/busybox", &["wget", "-q", "-O", "-", &url]);
    c.expect(
        &format!("{h}: the node reaches the pod IP"),
        &out,
        0,
        &["hello-peer"],
    );

    // A container that exits: EXITED with its code, promptly.
    let exit_cfg = cri.container_config("exits", 0, &["sh", "-c", "exit 7"], json!({}));
    let out = cri.run(&["create", &pod, &exit_cfg, &pod_cfg]);
    let exits = first_line(&out);
    sb.register(&exits);
    let out = cri.run(&["start", &exits]);
    c.expect(
        &format!("{h}: start of a container that exits 7"),
        &out,
        0,
        &[],
    );
    m.exit_seen = cri.wait_state(&exits, "CONTAINER_EXITED", STATE_TIMEOUT);
    let st = cri.state(&exits);
    c.check(
        &format!(
            "{h}: EXITED with code 7, reason Error (after {:?})",
            m.exit_seen
        ),
        m.exit_seen.is_some() && st.1 == 7 && st.2 == "Error",
        || format!("{st:?}\n{:#}", cri.inspect("inspect", &exits)["status"]),
    );

    // An OOM kill: EXITED 137, reason OOMKilled.
    let oom_cfg = cri.container_config(
        "oom",
        0,
        &["sh", "-c", "echo filling; tail /dev/zero"],
        json!({ "resources": { "memory_limit_in_bytes": 16777216 } }),
    );
    let out = cri.run(&["create", &pod, &oom_cfg, &pod_cfg]);
    let oom = first_line(&out);
    sb.register(&oom);
    let out = cri.run(&["start", &oom]);
    c.expect(
        &format!("{h}: start of a container that runs out of memory"),
        &out,
        0,
        &[],
    );
    let exited = cri.wait_state(&oom, "CONTAINER_EXITED", Duration::from_secs(30));
    let st = cri.state(&oom);
    c.check(
        &format!("{h}: OOM: EXITED 137, reason OOMKilled"),
        exited.is_some() && st.1 == 137 && st.2 == "OOMKilled",
        || format!("{st:?}"),
    );

    // Restart in the same pod, as kubelet does for restartPolicy Always: a crashed container
    // is followed by attempt 1 of the same name, which runs.
    let r0_cfg = cri.container_config(
        "crashy",
        0,
        &["sh", "-c", "echo started; exit 1"],
        json!({}),
    );
    let out = cri.run(&["create", &pod, &r0_cfg, &pod_cfg]);
    let r0 = first_line(&out);
    sb.register(&r0);
    let _ = cri.run(&["start", &r0]);
    let crashed = cri
        .wait_state(&r0, "CONTAINER_EXITED", STATE_TIMEOUT)
        .is_some();
    c.check(
        &format!("{h}: crashy attempt 0 EXITED"),
        crashed && cri.state(&r0).1 == 1,
        || format!("{:?}", cri.state(&r0)),
    );
    let r1_cfg = cri.container_config(
        "crashy",
        1,
        &["sh", "-c", "echo started; exit 1"],
        json!({}),
    );
    let out = cri.run(&["create", &pod, &r1_cfg, &pod_cfg]);
    let r1 = first_line(&out);
    sb.register(&r1);
    let out2 = cri.run(&["start", &r1]);
    let again = cri
        .wait_state(&r1, "CONTAINER_EXITED", STATE_TIMEOUT)
        .is_some();
    let log1 = fs::read_to_string(cri.dir.join("logs").join(&pod_name).join("crashy_1.log"))
        .unwrap_or_default();
    let r1info = cri.inspect("inspect", &r1);
    c.check(
        &format!("{h}: restart: attempt 1 ran in the same pod"),
        out.ok()
            && out2.ok()
            && again
            && log1.contains("started")
            && r1info["status"]["metadata"]["attempt"] == 1
            && cri.inspect("inspectp", &pod)["status"]["network"]["ip"] == ip.as_str(),
        || {
            format!(
                "{}\n{}\nlog: {log1:?}\n{r1info:#}",
                out.describe(),
                out2.describe()
            )
        },
    );
    let out = cri.run(&["rm", &r0]);
    c.expect(&format!("{h}: rm of the crashed attempt"), &out, 0, &[]);

    // stop (SIGTERM, the trap exits 0) and rm.
    let t = Instant::now();
    let out = cri.run(&["stop", "--timeout", "10", &main]);
    m.stop = out.ok().then(|| t.elapsed());
    let st = cri.state(&main);
    c.check(
        &format!("{h}: stop: EXITED 0 on SIGTERM (in {:?})", m.stop),
        out.ok() && st.0 == "CONTAINER_EXITED" && st.1 == 0,
        || format!("{st:?}\n{}", out.describe()),
    );
    let out = cri.run(&["logs", "--tail", "1", &main]);
    c.check(
        &format!("{h}: the trap ran"),
        out.stdout.contains("bye"),
        || out.describe(),
    );
    let out = cri.run(&["rm", &main]);
    let gone = cri.run(&["ps", "-a", "-q", "--id", &main]);
    c.check(
        &format!("{h}: rm"),
        out.ok() && gone.ok() && gone.stdout.trim().is_empty(),
        || format!("{}\n{}", out.describe(), gone.describe()),
    );

    // stopp with containers still running (peer) and exited ones; then rmp.
    let out = cri.run(&["stopp", &pod]);
    c.expect(
        &format!("{h}: stopp of a pod with containers"),
        &out,
        0,
        &[],
    );
    let p = cri.inspect("inspectp", &pod);
    let peer_state = cri.state(&peer);
    c.check(
        &format!("{h}: after stopp: pod NOTREADY, containers EXITED"),
        p["status"]["state"] == "SANDBOX_NOTREADY" && peer_state.0 == "CONTAINER_EXITED",
        || format!("{peer_state:?}\n{:#}", p["status"]),
    );
    let out = cri.run(&["rmp", &pod]);
    let left = cri.run(&["ps", "-a", "-q", "--pod", &pod]);
    c.check(
        &format!("{h}: rmp removes the pod and its containers"),
        out.ok() && left.ok() && left.stdout.trim().is_empty(),
        || format!("{}\n{}", out.describe(), left.describe()),
    );
    let leftover = cri.remove_pod_cgroup(&pod_name);
    c.check(
        &format!("{h}: no container cgroup left in the pod's"),
        leftover.is_empty(),
        || leftover.join("\n"),
    );

    // A pod without containers: runp, stopp, rmp.
    let empty_name = format!("empty-{h}");
    let empty_cfg = cri.pod_config("pod.json", &empty_name);
    let out = cri.run(&["runp", "--runtime", h, &empty_cfg]);
    let empty = first_line(&out);
    sb.register(&empty);
    let o2 = cri.run(&["stopp", &empty]);
    let o3 = cri.run(&["rmp", &empty]);
    let o4 = cri.run(&["pods", "-q", "--id", &empty]);
    c.check(
        &format!("{h}: runp, stopp, rmp of a pod without containers"),
        out.ok() && o2.ok() && o3.ok() && o4.ok() && o4.stdout.trim().is_empty(),
        || {
            [out, o2, o3, o4]
                .iter()
                .map(Out::describe)
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    let leftover = cri.remove_pod_cgroup(&empty_name);
    c.check(
        &format!("{h}: empty pod's cgroup removable"),
        leftover.is_empty(),
        || leftover.join("\n"),
    );

    // crictl run (pod and container in one go), then rmp -f of the running pod.
    let run_name = format!("run-{h}");
    let run_pod_cfg = cri.pod_config("pod.json", &run_name);
    let run_cfg = cri.container_config(
        "runner",
        0,
        &["sh", "-c", "echo from-crictl-run; exec sleep 3600"],
        json!({}),
    );
    let out = cri.run(&["run", "--no-pull", "--runtime", h, &run_cfg, &run_pod_cfg]);
    let runner = first_line(&out);
    sb.register(&runner);
    let running = cri
        .wait_state(&runner, "CONTAINER_RUNNING", STATE_TIMEOUT)
        .is_some();
    let info = cri.inspect("inspect", &runner);
    let run_pod = info["info"]["sandboxID"].as_str().unwrap_or("").to_string();
    sb.register(&run_pod);
    let has_output = wait_for(Duration::from_secs(10), || {
        cri.run(&["logs", &runner])
            .stdout
            .contains("from-crictl-run")
    });
    c.check(
        &format!("{h}: crictl run: container RUNNING in a new pod"),
        out.ok() && running && has_output && run_pod.len() == 64,
        || format!("{}\n{info:#}", out.describe()),
    );
    let out = cri.run(&["rmp", "-f", &run_pod]);
    let o2 = cri.run(&["ps", "-a", "-q", "--pod", &run_pod]);
    let o3 = cri.run(&["pods", "-q", "--id", &run_pod]);
    c.check(
        &format!("{h}: rmp -f of a pod with a running container"),
        out.ok() && o2.stdout.trim().is_empty() && o3.stdout.trim().is_empty(),
        || {
            [out, o2, o3]
                .iter()
                .map(Out::describe)
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    let leftover = cri.remove_pod_cgroup(&run_name);
    c.check(
        &format!("{h}: crictl run pod's cgroup removable"),
        leftover.is_empty(),
        || leftover.join("\n"),
    );
    m
}

/// The pod kubelet makes from a securityContext: runAsUser, readOnlyRootFilesystem,
/// capabilities drop ALL, seccomp RuntimeDefault, allowPrivilegeEscalation false, sysctls,
/// hostNetwork (the test's network namespace) and shareProcessNamespace. Returns what the
/// container saw, to compare across handlers.
fn secure_pod(cri: &Cri, sb: &mut Sandbox, c: &mut Checks, h: &str) -> String {
    let name = format!("secure-{h}");
    let pod_cfg = cri.pod_config("pod-secure.json", &name);
    let out = cri.run(&["runp", "--runtime", h, &pod_cfg]);
    let pod = first_line(&out);
    sb.register(&pod);
    c.check(
        &format!("{h}: runp of the secure pod"),
        out.ok() && pod.len() == 64,
        || out.describe(),
    );
    let ctr_cfg = cri.dir.join(format!("secure-{h}.json"));
    template("container-secure.json", &[], &ctr_cfg);
    let out = cri.run(&["create", &pod, &ctr_cfg.display().to_string(), &pod_cfg]);
    let id = first_line(&out);
    sb.register(&id);
    let o2 = cri.run(&["start", &id]);
    let running = cri
        .wait_state(&id, "CONTAINER_RUNNING", STATE_TIMEOUT)
        .is_some();
    c.check(
        &format!("{h}: secure container RUNNING"),
        out.ok() && o2.ok() && running,
        || {
            format!(
                "{}\n{}\n{:?}",
                out.describe(),
                o2.describe(),
                cri.state(&id)
            )
        },
    );

    let script = "id -u; id -G; touch /x 2>/dev/null && echo rw || echo ro; \
        grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; \
        cat /proc/sys/kernel/shm_rmid_forced; for n in net uts; do readlink /proc/self/ns/$n; done; \
        tr '\\0' ' ' < /proc/1/cmdline; echo; \
        cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares \
        /proc/$(pidof sleep)/oom_score_adj; \
        cat /proc/kcore 2>/dev/null | wc -c";
    let out = cri.run(&["exec", "-s", &id, "sh", "-c", script]);
    let want = [
        "1000".to_string(),
        "1000 29 44 100 3000".to_string(),
        "ro".to_string(),
        "CapEff:\t0000000000000000".to_string(),
        "CapBnd:\t0000000000000000".to_string(),
        "NoNewPrivs:\t1".to_string(),
        "Seccomp:\t2".to_string(),
        "1".to_string(),
        cri.netns_id.clone(),
        cri.host_uts.clone(),
        "/pause ".to_string(),
        "67108864".to_string(),
        "256".to_string(),
        "1000".to_string(),
        "0".to_string(),
    ];
    // crictl prints stdout and stderr each with a newline of its own.
    let lines: Vec<&str> = out.stdout.trim_end().lines().collect();
    c.check(
        &format!(
            "{h}: uid 1000, gid 1000, groups from the image's /etc/group and \
             supplementalGroups, read-only root, no capabilities, seccomp filter, no_new_privs, \
             sysctl, the test's netns (hostNetwork), node UTS, pause as pid 1 \
             (shareProcessNamespace), memory limit, cpu shares, oom_score_adj, masked \
             /proc/kcore"
        ),
        out.ok() && lines == want.iter().map(String::as_str).collect::<Vec<_>>(),
        || format!("wanted {want:#?}\n{}", out.describe()),
    );
    let out_ps = cri.run(&["exec", "-s", &id, "ps", "-o", "pid,user,args"]);
    c.check(
        &format!("{h}: one pid namespace for the pod: ps sees pause and sleep"),
        out_ps.stdout.contains("/pause") && out_ps.stdout.contains("sleep 3600"),
        || out_ps.describe(),
    );
    // An orphan of an exec is reparented to the pod's pid 1, pause, which must reap it.
    let spawn = cri.run(&["exec", "-s", &id, "sh", "-c", "sleep 0.3 & echo $!"]);
    let orphan = spawn.stdout.trim().to_string();
    let mut last = String::new();
    let reaped = !orphan.is_empty()
        && wait_for(Duration::from_secs(10), || {
            last = cri
                .run(&["exec", "-s", &id, "ps", "-o", "pid,stat,args"])
                .stdout;
            !last
                .lines()
                .any(|l| l.split_whitespace().next() == Some(orphan.as_str()))
        });
    c.check(
        &format!("{h}: pause reaps an orphan of the pod"),
        reaped,
        || format!("orphan {orphan:?}\n{}\n{last}", spawn.describe()),
    );
    let o1 = cri.run(&["stopp", &pod]);
    let o2 = cri.run(&["rmp", &pod]);
    c.check(
        &format!("{h}: stopp, rmp of the secure pod"),
        o1.ok() && o2.ok(),
        || format!("{}\n{}", o1.describe(), o2.describe()),
    );
    let leftover = cri.remove_pod_cgroup(&name);
    c.check(
        &format!("{h}: secure pod's cgroup removable"),
        leftover.is_empty(),
        || leftover.join("\n"),
    );
    out.stdout
}

/// After everything: containerd knows no pod or container, no shim runs, the runtimes' state
/// dirs are empty, CNI's cache has nothing of this network, the bridge lives in the test's
/// namespace only. (The sandbox then checks processes, mounts, cgroups, host links and
/// iptables after stopping containerd.)
fn nothing_left(cri: &Cri, c: &mut Checks, bridged: bool) {
    let pods = cri.run(&["pods", "-q"]);
    let ctrs = cri.run(&["ps", "-a", "-q"]);
    c.check(
        "containerd lists no pod and no container",
        pods.ok() && ctrs.ok() && pods.stdout.trim().is_empty() && ctrs.stdout.trim().is_empty(),
        || format!("{}\n{}", pods.describe(), ctrs.describe()),
    );
    let shims = cri.shims();
    c.check("no shim left", shims.is_empty(), || shims.join("\n"));
    for root in ["berth-root", "runc-root"] {
        let d = cri.dir.join(root).join("k8s.io");
        let left: Vec<_> = fs::read_dir(&d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name())
                    .filter(|n| n != runtime_tests::SECCOMP_CACHE)
                    .collect()
            })
            .unwrap_or_default();
        c.check(
            &format!("{root}: no runtime state left"),
            left.is_empty(),
            || format!("{}: {left:?}", d.display()),
        );
    }
    let cached: Vec<String> = fs::read_dir("/var/lib/cni/results")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&cri.net_name))
                .collect()
        })
        .unwrap_or_default();
    c.check(
        "no CNI result of this network cached",
        cached.is_empty(),
        || format!("/var/lib/cni/results: {cached:?}"),
    );
    let host_bridge = Path::new("/sys/class/net/berthcri0").exists();
    let out = cri.in_netns("ip", &["-o", "link", "show", "berthcri0"]);
    c.check(
        "the CNI bridge is in the test's netns (if pods had one), never on the host",
        !host_bridge && out.ok() == bridged,
        || format!("on the host: {host_bridge}\n{}", out.describe()),
    );
}

#[test]
fn cri_pod_lifecycle_berth_and_runc() {
    require_prerequisites();
    let mut sb = Sandbox::new("cri");
    let cri = Cri::start(&mut sb);
    let mut c = Checks::new("cri".to_string());
    let mut measured = BTreeMap::new();
    for h in ["runc", "berth"] {
        measured.insert(h, lifecycle(&cri, &mut sb, &mut c, h));
    }
    let (r, b) = (&measured["runc"], &measured["berth"]);
    // Within twice runc's time plus a few polls (one crictl call is 30-60 ms, more under load).
    let as_fast = |x: Option<Duration>, y: Option<Duration>| match (x, y) {
        (Some(b), Some(r)) => b <= r * 2 + Duration::from_millis(500),
        _ => false,
    };
    c.check(
        &format!(
            "an exit reaches CRI as fast with berth ({:?}) as with runc ({:?})",
            b.exit_seen, r.exit_seen
        ),
        as_fast(b.exit_seen, r.exit_seen),
        String::new,
    );
    c.check(
        &format!(
            "stop as fast with berth ({:?}) as with runc ({:?})",
            b.stop, r.stop
        ),
        as_fast(b.stop, r.stop),
        String::new,
    );
    nothing_left(&cri, &mut c, true);
    drop(cri);
    sb.finish(c);
}

#[test]
fn cri_security_context_berth_and_runc() {
    require_prerequisites();
    let mut sb = Sandbox::new("cri-sec");
    let cri = Cri::start(&mut sb);
    let mut c = Checks::new("cri-sec".to_string());
    let runc = secure_pod(&cri, &mut sb, &mut c, "runc");
    let berth = secure_pod(&cri, &mut sb, &mut c, "berth");
    c.check(
        "berth's container saw what runc's saw",
        berth == runc,
        || format!("runc:\n{runc}\nberth:\n{berth}"),
    );
    nothing_left(&cri, &mut c, false);
    drop(cri);
    sb.finish(c);
}
