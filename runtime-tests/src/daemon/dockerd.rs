//! Debian's dockerd (20.10, with Debian's runc 1.1.5) on roots of a test's own, to run the same
//! docker CLI commands against it and against berthd and compare what each answers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{busybox_archive, docker_on, OutputExt};

/// How long dockerd may take to answer `docker version` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `dockerd` with everything of its own under `DIR/dk` (`DIR` is the test's tempdir,
/// usually its berthd's):
///
/// - `DIR/dk/d.sock`: its API socket (`-H unix://...`), the only one it listens on;
/// - `DIR/dk/data` (`--data-root`), `DIR/dk/exec` (`--exec-root`), `DIR/dk/pid` (`--pidfile`);
/// - `DIR/dk/log`: its stdout and stderr;
/// - `DIR/dk/cfg`: the docker CLI's `DOCKER_CONFIG` (see [`docker_on`]).
///
/// It runs with `--iptables=false --ip6tables=false --bridge=none`: no `docker0` bridge, no
/// firewall rules, nothing added to the host's network namespace, so containers on it can use
/// only `--network none` or `--network host`.
///
/// Dropping it removes every container it has (`docker rm -f`, so that its shutdown does not
/// wait out stop timeouts), stops it with SIGTERM and waits for it, then detaches every mount
/// left under `DIR/dk`, deepest first: dockerd binds the host network's sandbox at
/// `exec/netns/default` once a container has used `--network host`, and does not unmount it
/// when it stops.
pub struct Dockerd {
    child: Child,
    /// `DIR/dk`, holding everything of this dockerd.
    pub root: PathBuf,
    /// Its API socket, `DIR/dk/d.sock`.
    pub sock: PathBuf,
}

impl Dockerd {
    /// Starts `dockerd` (from `PATH`; Debian's `docker.io` package) with its roots under
    /// `dir/dk` and waits until `docker version` answers on its socket (60 s at most).
    ///
    /// Panics (a missing prerequisite fails the test) if dockerd cannot be started, exits
    /// while starting, or does not answer in time; the message carries its log.
    pub fn start(dir: &Path) -> Dockerd {
        let root = dir.join("dk");
        fs::create_dir_all(&root).expect("create dockerd's root");
        let sock = root.join("d.sock");
        let log = fs::File::create(root.join("log")).expect("create dockerd's log");
        let mut child = Command::new("dockerd")
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("pid"))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup dockerd's log"))
            .stderr(log)
            .spawn()
            .expect("dockerd (apt-get install docker.io)");
        let mut exited = None;
        let up = crate::wait_for(START_TIMEOUT, || {
            if let Ok(Some(st)) = child.try_wait() {
                exited = Some(st);
                return true;
            }
            docker_on(&sock, &["version"]).status.success()
        });
        let k = Dockerd { child, root, sock };
        if let Some(st) = exited {
            panic!("dockerd exited at start ({st}): {}", k.log());
        }
        assert!(up, "dockerd did not answer: {}", k.log());
        k
    }

    /// The docker CLI against this dockerd ([`docker_on`] its socket).
    pub fn docker(&self, args: &[&str]) -> Output {
        docker_on(&self.sock, args)
    }

    /// `docker load` the busybox fixture ([`busybox_archive`]) into this dockerd.
    pub fn load_busybox(&self) {
        let archive = busybox_archive();
        let o = self.docker(&["load", "-i", archive.to_str().expect("utf-8 path")]);
        assert!(o.status.success(), "load into dockerd: {}", o.stderr_str());
    }

    /// Its log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let ids = self.docker(&["ps", "-aq"]).stdout_str();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let _ = self.child.wait();
        super::detach_mounts_under(&self.root);
    }
}
