//! Clients of the engines under test: starting containerd and dockerd inside a [`Sandbox`],
//! and thin `ctr`, `docker` and `podman` command builders that put every piece of engine and
//! runtime state where the sandbox wants it.

use std::path::Path;
use std::time::Duration;

use crate::harness::{call, strs, Daemon, Out, Sandbox, CALL_TIMEOUT};

/// The image `build-image-tar.sh` makes, as containerd names it.
pub const IMAGE: &str = "docker.io/library/busybox:latest";
/// The containerd namespace `ctr` uses.
pub const CTR_NS: &str = "berth-eng";

/// Polling a condition with a deadline: the one helper of the runtime-tests library.
pub use runtime_tests::wait_for;

/// Starts containerd with the sandbox's config; returns its socket and daemon index.
pub fn start_containerd(sb: &mut Sandbox) -> String {
    let dir = sb.path("containerd");
    let cfg = sb.config("containerd.toml", &dir, &[]);
    let sock = format!("{dir}/containerd.sock");
    let mut d = Daemon::start(
        "containerd",
        "containerd",
        &strs(&["--config", &cfg]),
        Path::new(&format!("{dir}/containerd.log")),
    );
    d.wait_ready(|| {
        Path::new(&sock).exists()
            && call(
                "ctr",
                &strs(&["--address", &sock, "version"]),
                &[],
                Duration::from_secs(5),
            )
            .ok()
    });
    sb.add_daemon(d);
    sock
}

/// `ctr` against the sandbox's containerd, in the test namespace.
pub struct Ctr {
    /// containerd's socket.
    pub sock: String,
    /// The runtime binary (`--runc-binary`).
    pub runtime: String,
    /// The runtime's state dir (`--runc-root`).
    pub runc_root: String,
    /// Where ctr makes its fifos (`--fifo-dir`).
    pub fifo_dir: String,
    /// The sandbox's cgroup tag: containers go in `/<tag>/<id>`.
    pub tag: String,
}

impl Ctr {
    pub fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v = strs(&["--address", &self.sock, "--namespace", CTR_NS]);
        v.extend(strs(args));
        v
    }

    pub fn run(&self, args: &[&str]) -> Out {
        call("ctr", &self.args(args), &[], CALL_TIMEOUT)
    }

    /// `ctr run` flags that put the runtime, its state, the fifos and the cgroup where the
    /// sandbox wants them.
    pub fn run_flags(&self, id: &str) -> Vec<String> {
        let cgroup = format!("/{}/{id}", self.tag);
        strs(&[
            "run",
            "--runc-binary",
            &self.runtime,
            "--runc-root",
            &self.runc_root,
            "--fifo-dir",
            &self.fifo_dir,
            "--cgroup",
            &cgroup,
        ])
    }

    /// `ctr run FLAGS [extra] IMAGE ID ARGS`.
    pub fn run_container(&self, extra: &[&str], id: &str, cmd: &[&str]) -> Out {
        let mut a = self.run_flags(id);
        a.extend(strs(extra));
        a.push(IMAGE.to_string());
        a.push(id.to_string());
        a.extend(strs(cmd));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.run(&a)
    }

    /// The `ctr task ls` row of `id`: (pid, status).
    pub fn task(&self, id: &str) -> Option<(String, String)> {
        let out = self.run(&["task", "ls"]);
        out.stdout.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0] == id).then(|| (f[1].to_string(), f[2].to_string()))
        })
    }
}

/// `docker` against the sandbox's dockerd.
pub struct Docker {
    /// dockerd's API socket (`-H`).
    pub host: String,
}

impl Docker {
    pub fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v = strs(&["-H", &self.host]);
        v.extend(strs(args));
        v
    }

    pub fn run(&self, args: &[&str]) -> Out {
        call("docker", &self.args(args), &[], CALL_TIMEOUT)
    }

    pub fn inspect(&self, id: &str, format: &str) -> String {
        self.run(&["inspect", "-f", format, id])
            .stdout
            .trim()
            .to_string()
    }
}

/// Starts containerd and dockerd (over it) with `runtime` registered as `under-test`.
pub fn start_docker(sb: &mut Sandbox, runtime: &str) -> Docker {
    let sock = start_containerd(sb);
    let dir = sb.path("docker");
    let cfg = sb.config("daemon.json", &dir, &[]);
    let host = format!("unix://{dir}/docker.sock");
    let runtime_arg = format!("under-test={runtime}");
    let cgroup_parent = format!("/{}", sb.tag);
    let args = strs(&[
        "--config-file",
        &cfg,
        "--data-root",
        &format!("{dir}/data"),
        "--exec-root",
        &format!("{dir}/exec"),
        "--pidfile",
        &format!("{dir}/docker.pid"),
        "-H",
        &host,
        "--containerd",
        &sock,
        "--add-runtime",
        &runtime_arg,
        "--cgroup-parent",
        &cgroup_parent,
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        // On an aborted test, don't wait 10 s per container that ignores SIGTERM.
        "--shutdown-timeout",
        "2",
        "--storage-driver=overlay2",
        // Root here lacks CAP_SYS_RESOURCE: docker's default of 1048576 open files can't be set.
        "--default-ulimit",
        "nofile=1024:1024",
    ]);
    let mut d = Daemon::start(
        "dockerd",
        "dockerd",
        &args,
        Path::new(&format!("{dir}/dockerd.log")),
    );
    let docker = Docker { host };
    d.wait_ready(|| {
        call(
            "docker",
            &docker.args(&["version"]),
            &[],
            Duration::from_secs(5),
        )
        .ok()
    });
    sb.add_daemon(d);
    docker
}

/// `docker run` with the runtime under test and no network, then `extra`.
pub fn docker_run<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let run = ["run", "--runtime", "under-test", "--network", "none"];
    run.iter().chain(extra).copied().collect()
}

/// `podman` with its config, storage and runtime state under the sandbox.
pub struct Podman {
    global: Vec<String>,
    /// CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and TMPDIR for every podman call.
    pub envs: Vec<(String, String)>,
    cgroup_parent: String,
}

impl Podman {
    pub fn new(sb: &Sandbox, runtime: &str) -> Podman {
        let dir = sb.path("podman");
        let vars = [("@RUNTIME@", runtime)];
        let conf = sb.config("containers.conf", &dir, &vars);
        let storage = sb.config("storage.conf", &dir, &[]);
        let global = strs(&[
            "--root",
            &format!("{dir}/root"),
            "--runroot",
            &format!("{dir}/run"),
            "--tmpdir",
            &format!("{dir}/tmp"),
            "--runtime",
            runtime,
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--network-config-dir",
            &format!("{dir}/net"),
            "--storage-driver",
            "overlay",
        ]);
        let envs = vec![
            ("CONTAINERS_CONF".to_string(), conf),
            ("CONTAINERS_STORAGE_CONF".to_string(), storage),
            ("TMPDIR".to_string(), format!("{dir}/tmp")),
        ];
        std::fs::create_dir_all(format!("{dir}/tmp")).expect("podman tmp dir");
        Podman {
            global,
            envs,
            cgroup_parent: format!("/{}", sb.tag),
        }
    }

    pub fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v = self.global.clone();
        v.extend(strs(args));
        v
    }

    pub fn run(&self, args: &[&str]) -> Out {
        call("podman", &self.args(args), &self.envs, CALL_TIMEOUT)
    }

    /// `podman run` flags: the sandbox's cgroup parent, no network, rlimits this host allows.
    pub fn run_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let base = [
            "run",
            "--cgroup-parent",
            self.cgroup_parent.as_str(),
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ];
        base.iter().chain(extra).copied().collect()
    }
}
