//! A berthd of a test's own: its socket, data root and exec root in a tempdir, driven by the
//! real docker CLI (`$DOCKER_CLI`, else `/usr/local/bin/docker`, else Debian's `/usr/bin/docker`)
//! and docker-py, and torn down (daemon, monitors, containers, mounts) when dropped.
//!
//! ```no_run
//! use runtime_tests::daemon::OutputExt;
//!
//! let d = runtime_tests::daemon::TestDaemon::start().unwrap();
//! d.load_busybox();
//! let out = d.docker(&["run", "--rm", "busybox", "echo", "hi"]);
//! assert_eq!(out.stdout_str(), "hi\n");
//! d.assert_clean(&[]);
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::SupportError;

mod dockerd;

pub use dockerd::Dockerd;

/// The docker CLI the tests drive.
pub fn docker_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCKER_CLI") {
        return PathBuf::from(p);
    }
    // The docker CLI 28 these machines carry, else Debian's docker.io CLI.
    ["/usr/local/bin/docker", "/usr/bin/docker"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/docker"))
}

/// The docker CLI ([`docker_cli`]) run to its end against the daemon listening on `sock`
/// (`DOCKER_HOST=unix://SOCK`), with `DOCKER_CONFIG` in `cfg` beside the socket and stdin
/// empty: for commands sent alike to berthd and to a [`Dockerd`].
pub fn docker_on(sock: &Path, args: &[&str]) -> Output {
    let cfg = sock.parent().unwrap_or(Path::new("/")).join("cfg");
    Command::new(docker_cli())
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("DOCKER_CONFIG", cfg)
        .stdin(Stdio::null())
        .output()
        .expect("run the docker CLI")
}

/// The berthd binary: `$BERTHD_BIN`, else the workspace's build output.
pub fn berthd_bin() -> Result<PathBuf, SupportError> {
    if let Some(p) = std::env::var_os("BERTHD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_dir().join("target"));
    let tried: Vec<PathBuf> = ["debug", "release"]
        .iter()
        .map(|p| root.join("x86_64-unknown-linux-gnu").join(p).join("berthd"))
        .collect();
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(SupportError::NotFound {
            what: "berthd binary (cargo build -p berthd)",
            env: "BERTHD_BIN",
            tried,
        })
}

/// The busybox docker-archive (`busybox:latest`), built once with
/// `rootfs-fixtures/build-image-tar.sh` from the test rootfs; nothing is downloaded.
pub fn busybox_archive() -> PathBuf {
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_dir().join("target"));
    let out = root.join("berthd-test-busybox.tar");
    if out.is_file() {
        return out;
    }
    let rootfs = crate::rootfs_dir().expect("the busybox rootfs");
    let script = crate::workspace_dir().join("rootfs-fixtures/build-image-tar.sh");
    let st = Command::new("sh")
        .arg(&script)
        .arg(&out)
        .arg(&rootfs)
        .env("IMAGE_NAME", "busybox:latest")
        .stderr(Stdio::null())
        .status()
        .expect("run build-image-tar.sh");
    assert!(st.success(), "build-image-tar.sh failed");
    out
}

/// A copy of the busybox docker-archive ([`busybox_archive`]) tagged `name`, written to
/// `dir/NAME.tar` (`:` and `/` made `-`) from a work directory `dir/img-NAME`,, whose config's `config` gets `extra`
/// merged in, key by key
/// (so a new image id; the OCI layout part is dropped, so the docker-archive part is what loads).
pub fn busybox_archive_with_config(dir: &Path, name: &str, extra: serde_json::Value) -> PathBuf {
    let work = dir.join(format!("img-{}", name.replace([':', '/'], "-")));
    std::fs::create_dir_all(&work).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(busybox_archive())
        .arg("-C")
        .arg(&work)
        .status()
        .unwrap();
    assert!(st.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("manifest.json")).unwrap()).unwrap();
    let old_cfg = manifest[0]["Config"].as_str().unwrap().to_owned();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join(&old_cfg)).unwrap()).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        cfg["config"][k] = v.clone();
    }
    let bytes = serde_json::to_vec(&cfg).unwrap();
    let tmp = work.join("new-config");
    std::fs::write(&tmp, &bytes).unwrap();
    let sum = Command::new("sha256sum").arg(&tmp).output().unwrap();
    let hex = sum
        .stdout_str()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    std::fs::remove_file(&tmp).unwrap();
    std::fs::remove_file(work.join(&old_cfg)).unwrap();
    std::fs::write(work.join(format!("{hex}.json")), &bytes).unwrap();
    let mut m = manifest.clone();
    m[0]["Config"] = format!("{hex}.json").into();
    m[0]["RepoTags"] = serde_json::json!([name]);
    std::fs::write(work.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    for f in ["index.json", "oci-layout", "repositories", "blobs"] {
        let p = work.join(f);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else if p.exists() {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let out = dir.join(format!("{}.tar", name.replace([':', '/'], "-")));
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&out)
        .arg("-C")
        .arg(&work)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// A child process killed (SIGKILL) and reaped when dropped, for a helper a test starts and
/// must not outlive it (a registry, a `docker events` reader).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command's output with helpers.
pub trait OutputExt {
    /// stdout as a string.
    fn stdout_str(&self) -> String;
    /// stderr as a string.
    fn stderr_str(&self) -> String;
    /// The exit code (-1 for a signal).
    fn code(&self) -> i32;
    /// Assert that stderr contains `needle`, showing the whole stderr when it does not (the
    /// exit code is not checked: a test that expects a failure asserts that itself).
    #[track_caller]
    fn assert_stderr_contains(&self, needle: &str) {
        let err = self.stderr_str();
        assert!(err.contains(needle), "{}", err);
    }
}

impl OutputExt for Output {
    fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// A running berthd.
pub struct TestDaemon {
    /// The tempdir holding everything.
    pub dir: tempfile::TempDir,
    /// The socket.
    pub sock: PathBuf,
    /// `--data-root`.
    pub data: PathBuf,
    /// `--exec-root`.
    pub exec: PathBuf,
    child: Option<Child>,
    /// Container ids seen (for the cgroup leak check).
    pub ids: std::cell::RefCell<BTreeSet<String>>,
    extra: Vec<String>,
    own_netns: bool,
}

impl TestDaemon {
    /// Start berthd and wait until `/_ping` answers.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// [`start_with`](Self::start_with) in a new network namespace (for `--bridge`).
    pub fn start_in_netns(extra: &[&str]) -> anyhow::Result<Self> {
        let mut d = Self::start_with_mode(extra, true)?;
        d.spawn()?;
        Ok(d)
    }

    /// [`start`](Self::start) with more berthd flags (`-H tcp://...`, `--group`, `--pidfile`).
    pub fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        let mut d = Self::start_with_mode(extra, false)?;
        d.spawn()?;
        Ok(d)
    }

    fn start_with_mode(extra: &[&str], own_netns: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bd").tempdir_in("/tmp")?;
        let d = TestDaemon {
            sock: dir.path().join("d.sock"),
            data: dir.path().join("data"),
            exec: dir.path().join("exec"),
            dir,
            child: None,
            ids: Default::default(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            own_netns,
        };
        Ok(d)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))?;
        // In a network namespace of the test's own (`unshare --net`, which execs berthd): a
        // bridge it makes never touches the host's network.
        let mut cmd = if self.own_netns {
            let mut c = Command::new("unshare");
            c.arg("--net").arg("--").arg(berthd_bin()?);
            c
        } else {
            Command::new(berthd_bin()?)
        };
        let child = cmd
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .arg("--data-root")
            .arg(&self.data)
            .arg("--exec-root")
            .arg(&self.exec)
            .arg("--log-level")
            .arg("debug")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((status, _, _)) = self.http("GET", "/_ping", None) {
                if status == 200 {
                    return Ok(());
                }
            }
            if let Some(c) = &mut self.child {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("berthd exited at start ({st}): {}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not answer: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// kill -9 the daemon (its monitors and containers go on).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start a new daemon on the same roots.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn().expect("restart berthd");
    }

    /// One HTTP/1.1 request over the socket ([`http_on`] it, 30 s for the answer).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<(u16, String, Vec<u8>)> {
        http_on(&self.sock, Duration::from_secs(30), method, path, body)
    }

    /// `script -qefc <cmdline> /dev/null` with the environment of [`TestDaemon::docker_cmd`]:
    /// `cmdline` (a shell command line, e.g. `docker run -it ...`) runs on a pseudo-terminal of
    /// its own, so the docker CLI sees a TTY; the caller sets stdio and spawns it.
    pub fn script_cmd(&self, cmdline: &str) -> Command {
        let mut c = Command::new("script");
        c.args(["-qefc", cmdline, "/dev/null"])
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"));
        c
    }

    /// [`TestDaemon::script_cmd`] spawned with stdin and stdout piped, as a person at a
    /// terminal: the child, the keys (its stdin) and a [`Screen`] on what the terminal shows.
    ///
    /// # Panics
    /// When `script` (Debian's bsdutils) can't be spawned.
    pub fn tty_session(&self, cmdline: &str) -> (Child, std::process::ChildStdin, Screen) {
        let mut child = self
            .script_cmd(cmdline)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script (apt-get install bsdutils)");
        let keys = child.stdin.take().unwrap();
        let screen = Screen::new(child.stdout.take().unwrap());
        (child, keys, screen)
    }

    /// A docker CLI command against this daemon.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(docker_cli());
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null());
        c
    }

    /// Run the docker CLI and return its output; a command still running after 120 s is
    /// killed and the test fails with the daemon's log (a hang is a bug, not a wait).
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut child = self
            .docker_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the docker CLI");
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let t_out = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let t_err = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait for the docker CLI") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("docker {args:?} hung\n--- daemon log ---\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Output {
            status,
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
        }
    }

    /// Run the docker CLI and require success; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({}): {}\n--- daemon log ---\n{}",
            o.status,
            o.stderr_str(),
            self.log()
        );
        o.stdout_str().trim_end().to_owned()
    }

    /// `docker rm -f` every container the daemon lists (`docker ps -aq`), requiring success.
    pub fn remove_all(&self) {
        let all = self.ok(&["ps", "-aq"]);
        let mut args = vec!["rm", "-f"];
        args.extend(all.lines());
        self.ok(&args);
    }

    /// `docker load` the busybox fixture.
    pub fn load_busybox(&self) {
        let archive = busybox_archive();
        let out = self.ok(&["load", "-i", archive.to_str().expect("utf-8 path")]);
        assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    }

    /// Remember a container id (for the leak check); returns it.
    pub fn track(&self, id: &str) -> String {
        let id = id.trim().to_owned();
        self.ids.borrow_mut().insert(id.clone());
        id
    }

    /// Nothing of the daemon's containers left: no monitors, runtime states, mounts under the
    /// tempdir, cgroups named by a seen id, container directories.
    pub fn assert_clean(&self, extra_ids: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leaks = self.leaks(extra_ids);
            if leaks.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "berthd left resources behind:\n  {}\n--- daemon log ---\n{}",
                    leaks.join("\n  "),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn leaks(&self, extra_ids: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let prefix = self.dir.path().display().to_string();
        for l in fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
        {
            if l.contains(&prefix) {
                out.push(format!("mount: {l}"));
            }
        }
        for (what, d) in [
            ("monitor dir", self.exec.join("m")),
            ("runtime state", self.exec.join("runtime")),
            ("container dir", self.data.join("containers")),
        ] {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                // berth's cache of compiled seccomp filters belongs to the runtime root.
                if e.file_name() == crate::SECCOMP_CACHE {
                    continue;
                }
                out.push(format!("{what}: {}", e.path().display()));
            }
        }
        // Processes: monitors (their argv names their directory under the exec root) and
        // containers' processes (their root is under the data root), berthd itself aside.
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == self.pid() {
                continue;
            }
            let root = fs::read_link(e.path().join("root")).unwrap_or_default();
            let argv = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
            let under = |d: &Path| argv.contains(&*d.to_string_lossy());
            if root.starts_with(self.dir.path()) || under(&self.exec) || under(&self.data) {
                out.push(format!("process {pid}: {}", argv.trim()));
            }
        }
        let mut ids: Vec<String> = self.ids.borrow().iter().cloned().collect();
        ids.extend(extra_ids.iter().cloned());
        // Every container the daemon created (it logs their ids).
        for l in self
            .log()
            .lines()
            .filter(|l| l.contains("container created"))
        {
            if let Some(i) = l.find("id=") {
                let id: String = l[i + 3..]
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .collect();
                if id.len() == 64 && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        if !ids.is_empty() {
            for c in crate::cgroup_dirs(&ids) {
                out.push(format!("cgroup: {}", c.display()));
            }
        }
        out
    }

    /// Pids of live monitors (from their pid files).
    pub fn monitor_pids(&self) -> Vec<i32> {
        let mut v = Vec::new();
        for e in fs::read_dir(self.exec.join("m"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(p) = fs::read_to_string(e.path().join("pid")) {
                if let Ok(pid) = p.trim().parse::<i32>() {
                    if Path::new(&format!("/proc/{pid}")).exists() {
                        v.push(pid);
                    }
                }
            }
        }
        v
    }

    /// Wait for `cond` with a deadline, panicking with `what` and the daemon log.
    pub fn wait_until(&self, what: &str, secs: u64, cond: impl FnMut() -> bool) {
        assert!(
            crate::wait_for(Duration::from_secs(secs), cond),
            "timed out waiting for {what}\n--- daemon log ---\n{}",
            self.log()
        );
    }
}

/// One HTTP/1.1 request (`Connection: close`, `Content-Type: application/json`) to the daemon
/// listening on the unix socket `sock` (berthd's or a [`Dockerd`]'s), waiting at most
/// `timeout` between reads of the answer: (status, the header block as text, the body, with
/// `Transfer-Encoding: chunked` undone).
///
/// # Errors
/// The socket's connect, write or read error (a read error only if nothing was read), or
/// "no header end" for an answer without one.
pub fn http_on(
    sock: &Path,
    timeout: Duration,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(timeout))?;
    let body = body.unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    // berthd reads bodies of up to 1 MiB before answering (as dockerd drains 256 KiB), so
    // writing one never fails; a larger one may be refused before it is read.
    match s.write_all(body) {
        Err(e) if body.len() <= 1 << 20 => return Err(e),
        _ => {}
    }
    let mut resp = Vec::new();
    if let Err(e) = s.read_to_end(&mut resp) {
        if resp.is_empty() {
            return Err(e);
        }
    }
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut raw = resp[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        raw = dechunk(&raw);
    }
    Ok((status, head, raw))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let start = eol + 2;
        if b.len() < start + n {
            out.extend_from_slice(&b[start..]);
            break;
        }
        out.extend_from_slice(&b[start..start + n]);
        b = &b[(start + n + 2).min(b.len())..];
    }
    out
}

/// Detaches (`umount2(MNT_DETACH)`) every mount of this process's mount namespace at or below
/// `dir`, deepest first, ignoring failures: what a daemon left mounted under a test's roots.
fn detach_mounts_under(dir: &Path) {
    let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    mounts.sort();
    for m in mounts.iter().rev() {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
        // Monitors (they own the containers): kill, then delete what the runtime left.
        for pid in self.monitor_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Ok(berth) = crate::berth_bin() {
            for e in fs::read_dir(self.exec.join("runtime"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = Command::new(&berth)
                    .arg("--root")
                    .arg(self.exec.join("runtime"))
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        detach_mounts_under(self.dir.path());
    }
}

/// What a program under a terminal (`script`) prints, read on a thread of its own, for tests
/// that type and wait for text: [`Screen::expect`] waits for a string after what it already
/// matched.
pub struct Screen {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: String,
    pos: usize,
}

impl Screen {
    /// Starts reading `out` (a child's stdout).
    pub fn new(mut out: impl std::io::Read + Send + 'static) -> Screen {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Screen {
            rx,
            seen: String::new(),
            pos: 0,
        }
    }

    /// Waits (20 s at most, else panics with the screen) for `what` after the last match.
    pub fn expect(&mut self, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(i) = self.seen[self.pos..].find(what) {
                self.pos += i + what.len();
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let chunk = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what:?} on the screen: {:?}", self.seen));
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads until `cond` holds for everything read so far, for `timeout` at most: whether it
    /// came to hold (the caller decides how to fail, e.g. after killing the writer).
    pub fn wait_for(&mut self, timeout: Duration, mut cond: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !cond(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => return false,
            }
        }
        true
    }

    /// Everything read so far.
    pub fn text(&self) -> &str {
        &self.seen
    }
}

/// A Debian `docker-registry` (distribution 2.x) serving on `127.0.0.1:port`, its storage and
/// config under `<test daemon's tempdir>/registry`, killed when dropped.
pub struct LocalRegistry {
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    _child: KillOnDrop,
}

impl LocalRegistry {
    /// Start a registry for `d` on a free port and wait (20 s at most, through
    /// [`TestDaemon::wait_until`]) until it takes connections. With `auth = Some((user,
    /// password))` it asks for htpasswd basic auth (the file made with `htpasswd -Bbc`, realm
    /// `berth`).
    ///
    /// # Panics
    /// When `docker-registry` or `htpasswd` is missing (a missing prerequisite fails the test),
    /// or a file of the registry can't be written.
    pub fn start(d: &TestDaemon, auth: Option<(&str, &str)>) -> LocalRegistry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let reg = d.dir.path().join("registry");
        fs::create_dir(&reg).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            reg.join("data").display()
        );
        if let Some((user, password)) = auth {
            let htpasswd = reg.join("htpasswd");
            let st = Command::new("htpasswd")
                .arg("-Bbc")
                .arg(&htpasswd)
                .args([user, password])
                .stderr(Stdio::null())
                .status()
                .expect("htpasswd (apt-get install apache2-utils)");
            assert!(st.success());
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth\n    path: {}\n",
                htpasswd.display()
            ));
        }
        fs::write(reg.join("config.yml"), config).unwrap();
        let child = KillOnDrop(
            Command::new("docker-registry")
                .arg("serve")
                .arg(reg.join("config.yml"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry (apt-get install docker-registry)"),
        );
        d.wait_until("the registry", 20, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        LocalRegistry {
            port,
            _child: child,
        }
    }

    /// Push [`busybox_archive`] to `127.0.0.1:port/<repo_tag>` with `skopeo copy` (no TLS;
    /// `creds` as skopeo's `--dest-creds user:password`), asserting that skopeo succeeded.
    /// Returns the image reference (`127.0.0.1:port/<repo_tag>`).
    pub fn push_busybox(&self, repo_tag: &str, creds: Option<&str>) -> String {
        let image = format!("127.0.0.1:{}/{repo_tag}", self.port);
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(creds) = creds {
            c.args(["--dest-creds", creds]);
        }
        let st = c
            .arg(format!("docker-archive:{}", busybox_archive().display()))
            .arg(format!("docker://{image}"))
            .status()
            .expect("skopeo");
        assert!(st.success());
        image
    }
}
