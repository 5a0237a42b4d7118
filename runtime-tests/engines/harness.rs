//! The harness of `tests/engines.rs`: running engine commands under a timeout, starting and
//! stopping daemons, and a [`Sandbox`] that keeps everything an engine writes under one temp
//! dir and checks afterwards that the host was left as it was found.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// How long any one engine command may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Engine tests take this lock: they share containerd's hard-coded shim socket dir
/// (/run/containerd/s) and the machine has two cores.
const LOCK_PATH: &str = "/tmp/berth-engines.lock";

/// Paths engines create on the host whatever their configuration says. They are removed when
/// they did not exist before (and are empty, for directories), without counting as a leak:
/// containerd 1.6 puts shim sockets in /run/containerd/s, dockerd 20.10 makes
/// /run/docker/plugins and /etc/docker/key.json; podman runs the runtime with its default
/// `--root` (/run/berth, /run/runc), whose emptiness the podman test checks itself; CNI (under
/// containerd's CRI plugin) keeps its result cache in /var/lib/cni/results, whatever the config
/// says (the CRI test checks that no entry of its network is left there).
const ENGINE_LITTER: &[&str] = &[
    "/run/berth",
    "/run/runc",
    "/run/containerd/s",
    "/run/containerd",
    "/run/docker/plugins",
    "/run/docker",
    "/etc/docker/key.json",
    "/var/lib/cni/results",
    "/var/lib/cni",
];

/// Host paths that a well-configured engine run must not create: their appearance is a leak.
const HOST_WATCH: &[&str] = &[
    "/run/containerd/runc",
    "/run/containerd/fifo",
    "/run/containers",
    "/run/libpod",
    "/run/netns",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/etc/containers/networks",
    "/etc/cni/net.d/cni.lock",
];

/// The runtime an engine drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Under {
    /// The berth binary under test (`BERTH_BIN`).
    Berth,
    /// Debian's runc: the sanity check of the test itself.
    Runc,
}

impl Under {
    /// The runtime binary, or `None` with the reason to skip.
    pub fn bin(self) -> Result<PathBuf, String> {
        match self {
            Under::Berth => runtime_tests::berth_bin()
                .map_err(|e| format!("berth binary not found (set BERTH_BIN): {e}")),
            Under::Runc => which("runc").ok_or_else(|| "runc is not installed".to_string()),
        }
    }
}

impl std::fmt::Display for Under {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Under::Berth => "berth",
            Under::Runc => "runc",
        })
    }
}

/// An executable on PATH (or in the sbin dirs, which root's PATH may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        });
    found
}

/// Fails the test (a missing prerequisite is a failure, not a skip) unless it runs as root
/// with every one of `bins` installed; `who` names the suite and `hint` the packages.
pub fn require_bins(who: &str, bins: &[&str], hint: &str) {
    runtime_tests::require_root();
    let missing: Vec<&str> = bins
        .iter()
        .copied()
        .filter(|b| which(b).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{who}: {} not installed ({hint})",
        missing.join(", ")
    );
}

/// Why an engine test cannot run here (not root, binaries missing), or the runtime to use.
pub fn prerequisites(engine: &str, bins: &[&str], under: Under) -> Option<PathBuf> {
    require_bins(
        &format!("{engine}/{under}"),
        bins,
        "Debian packages containerd, docker.io, podman; script is in bsdutils",
    );
    match under.bin() {
        Ok(p) => Some(p),
        Err(why) => panic!("{engine}/{under}: {why}"),
    }
}

/// What one command did.
#[derive(Debug, Clone)]
pub struct Out {
    /// The command line, for messages.
    pub cmd: String,
    /// Exit code (`None` when killed by a signal or timed out).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether the timeout killed it.
    pub timed_out: bool,
}

impl Out {
    /// Exit code 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Everything about the call, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "$ {}\n  exit: {}{} after {:.2?}\n  stdout: {}\n  stderr: {}",
            self.cmd,
            self.code.map_or("signal".to_string(), |c| c.to_string()),
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.elapsed,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command line as a shell would read it.
pub fn shell_line(prog: &str, args: &[String]) -> String {
    std::iter::once(prog.to_string())
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs `prog args` with stdin from /dev/null in its own process group, killing the group after
/// `timeout`.
pub fn call(prog: &str, args: &[String], envs: &[(String, String)], timeout: Duration) -> Out {
    let cmd = shell_line(prog, args);
    let start = Instant::now();
    let mut c = Command::new(prog);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = match c.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Out {
                cmd,
                code: None,
                stdout: String::new(),
                stderr: format!("spawn failed: {e}"),
                elapsed: start.elapsed(),
                timed_out: false,
            }
        }
    };
    let out_rx = drain(child.stdout.take().expect("piped stdout"));
    let err_rx = drain(child.stderr.take().expect("piped stderr"));
    let deadline = start + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    // A daemonised grandchild may hold the pipes: don't wait for it for long.
    let grace = Duration::from_secs(2);
    let text = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(grace)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| "<pipe still open>".to_string())
    };
    Out {
        cmd,
        code: status.and_then(|s| s.code()),
        stdout: text(out_rx),
        stderr: text(err_rx),
        elapsed: start.elapsed(),
        timed_out,
    }
}

/// `args` as owned strings.
pub fn strs(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Runs a command line inside `script`, which gives it a pseudo-terminal of `rows`x`cols`
/// (what `docker run -it` and `ctr run -t` need).
pub fn call_in_pty(line: &str, envs: &[(String, String)]) -> Out {
    let inner = format!("stty rows 40 cols 100; {line}");
    call(
        "script",
        &strs(&["-qec", &inner, "/dev/null"]),
        envs,
        CALL_TIMEOUT,
    )
}

/// A daemon the test started; stopped (TERM, then KILL) when dropped.
pub struct Daemon {
    /// Its name, for messages.
    pub name: String,
    child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `prog args` in its own process group with output to `log`.
    pub fn start(name: &str, prog: &str, args: &[String], log: &Path) -> Daemon {
        let file = File::create(log).expect("daemon log");
        let child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// Its process id (the program itself: `Daemon::start` does not go through a shell).
    #[allow(dead_code)] // tests/cri.rs uses it, tests/engines.rs does not
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `probe` until it succeeds; panics with the daemon's log if it exits or times out.
    pub fn wait_ready(&mut self, probe: impl Fn() -> bool) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "{} exited ({st}) during start:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            if probe() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready after {READY_TIMEOUT:?}:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it: SIGTERM, then SIGKILL to its group after 60 s. dockerd gives its containers
    /// 15 s and then unmounts its data root's private bind; on a loaded machine a shorter wait
    /// killed it before that unmount and the mount was reported as the test's leak.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// The last `n` lines of its log, plus every error and warning line before them.
    pub fn tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let cut = lines.len().saturating_sub(n);
        let mut out = String::new();
        let notable: Vec<&&str> = lines[..cut]
            .iter()
            .filter(|l| l.contains("level=error") || l.contains("level=warn"))
            .collect();
        for l in &notable[notable.len().saturating_sub(15)..] {
            let _ = writeln!(out, "  {l}");
        }
        for l in &lines[cut..] {
            let _ = writeln!(out, "  {l}");
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Soft assertions: every step of a scenario runs and all failures are reported together.
pub struct Checks {
    label: String,
    failures: Vec<String>,
    passed: usize,
}

impl Checks {
    /// A new list for `label` (engine/runtime).
    pub fn new(label: String) -> Checks {
        Checks {
            label,
            failures: Vec::new(),
            passed: 0,
        }
    }

    /// Records step `name` as passed or failed (with `detail` computed only on failure).
    pub fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) -> bool {
        if ok {
            self.passed += 1;
            eprintln!("[{}] ok: {name}", self.label);
        } else {
            let d = detail();
            eprintln!("[{}] FAILED: {name}\n{d}", self.label);
            self.failures.push(format!("{name}\n{d}"));
        }
        ok
    }

    /// Checks that `out` exited with `code` and that stdout contains every one of `want`.
    pub fn expect(&mut self, name: &str, out: &Out, code: i32, want: &[&str]) -> bool {
        let ok = out.code == Some(code) && want.iter().all(|w| out.stdout.contains(w));
        self.check(name, ok, || {
            format!(
                "wanted exit {code} and stdout with {want:?}\n{}",
                out.describe()
            )
        })
    }
}

/// The state of the host an engine test must leave as it found it.
struct HostSnapshot {
    shim_sockets: BTreeSet<PathBuf>,
    mounts: BTreeSet<String>,
    links: BTreeSet<String>,
    iptables: String,
    watched: BTreeSet<&'static str>,
}

impl HostSnapshot {
    fn take() -> HostSnapshot {
        HostSnapshot {
            shim_sockets: shim_sockets(),
            mounts: mount_points(),
            links: net_links(),
            iptables: iptables_rules(),
            watched: HOST_WATCH
                .iter()
                .chain(ENGINE_LITTER)
                .copied()
                .filter(|p| Path::new(p).symlink_metadata().is_ok())
                .collect(),
        }
    }
}

/// containerd 1.6 puts every shim's socket in this dir, whatever its config says.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

fn shim_sockets() -> BTreeSet<PathBuf> {
    fs::read_dir(SHIM_SOCKET_DIR)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn mount_points() -> BTreeSet<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

fn net_links() -> BTreeSet<String> {
    fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// iptables and ip6tables rules of every table, without counters and comments.
fn iptables_rules() -> String {
    let mut all = String::new();
    for prog in ["iptables-save", "ip6tables-save"] {
        if which(prog).is_none() {
            continue;
        }
        let out = call(prog, &[], &[], Duration::from_secs(20));
        for l in out.stdout.lines().filter(|l| !l.starts_with('#')) {
            let l = match l.find(" [") {
                Some(i) if l.starts_with(':') => &l[..i],
                _ => l,
            };
            all.push_str(l);
            all.push('\n');
        }
    }
    all
}

/// A process whose command line, cwd or root lies under `dir`, or whose cgroup is below
/// `/<tag>` in some hierarchy (container processes in their own mount namespace show `/` as
/// their root).
fn processes_under(dir: &str, tag: &str) -> Vec<(i32, String)> {
    let below = format!("/{tag}/");
    let at = format!("/{tag}");
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.rsplit(')').next().is_some_and(|s| s.starts_with(" Z")) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let link = |what: &str| {
            fs::read_link(format!("/proc/{pid}/{what}"))
                .map(|p| p.starts_with(dir))
                .unwrap_or(false)
        };
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let in_tag = cgroup
            .lines()
            .any(|l| l.contains(&below) || l.ends_with(&at));
        if cmdline.contains(dir) || link("root") || link("cwd") || in_tag {
            out.push((pid, cmdline.chars().take(160).collect()));
        }
    }
    out
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Everything an engine test writes lives under [`Sandbox::dir`]; cgroups go under
/// `/<tag>` in every hierarchy. Dropping it stops the daemons and force-cleans; [`finish`]
/// (Sandbox::finish) does the same and fails the test on check failures or leaks.
pub struct Sandbox {
    _lock: Flock<File>,
    tmp: Option<tempfile::TempDir>,
    /// The temp dir.
    pub dir: PathBuf,
    /// Unique name of this sandbox's parent cgroup (`/<tag>`).
    pub tag: String,
    before: HostSnapshot,
    daemons: Vec<Daemon>,
    ids: Vec<String>,
    runtime_roots: Vec<(PathBuf, PathBuf)>,
    cleaned: bool,
}

impl Sandbox {
    /// Takes the engine lock, makes the temp dir and records the host's state.
    pub fn new(name: &str) -> Sandbox {
        let lock = File::create(LOCK_PATH).expect("create engine lock");
        let lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("flock engine lock");
        let tmp = tempfile::Builder::new()
            .prefix(&format!("berth-eng-{name}-"))
            .tempdir_in("/tmp")
            .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let tag = format!(
            "berth-eng-{}-{}-{}",
            name,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Sandbox {
            _lock: lock,
            tmp: Some(tmp),
            dir,
            tag,
            before: HostSnapshot::take(),
            daemons: Vec::new(),
            ids: Vec::new(),
            runtime_roots: Vec::new(),
            cleaned: false,
        }
    }

    /// A path under the sandbox dir (as a string, for command lines).
    pub fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    /// Remembers a container id, so that cgroups named after it count as leaks.
    pub fn register(&mut self, id: &str) {
        self.ids.push(id.to_string());
    }

    /// Where the engine keeps `runtime`'s state (its `--root`): a registered container found
    /// there at teardown is a leak, and is deleted with `runtime --root ROOT delete --force`.
    pub fn add_runtime_root(&mut self, runtime: &Path, root: &Path) {
        self.runtime_roots
            .push((runtime.to_path_buf(), root.to_path_buf()));
    }

    /// Takes ownership of a started daemon (stopped in reverse order of adding).
    pub fn add_daemon(&mut self, d: Daemon) {
        self.daemons.push(d);
    }

    /// The busybox image tarball, built from the rootfs fixture into the sandbox.
    pub fn image_tar(&self) -> String {
        let rootfs = runtime_tests::rootfs_dir().expect("busybox rootfs fixture");
        let script = runtime_tests::workspace_dir().join("rootfs-fixtures/build-image-tar.sh");
        let tar = self.path("busybox.tar");
        let out = call(
            "sh",
            &[
                script.display().to_string(),
                tar.clone(),
                rootfs.display().to_string(),
            ],
            &[],
            CALL_TIMEOUT,
        );
        assert!(out.ok(), "build image tarball:\n{}", out.describe());
        tar
    }

    /// A config template from `runtime-tests/engines/` with `@DIR@` set to `dir` and the other
    /// placeholders from `vars`, written into the sandbox.
    pub fn config(&self, template: &str, dir: &str, vars: &[(&str, &str)]) -> String {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("engines")
            .join(template);
        let mut text =
            fs::read_to_string(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
        text = text.replace("@DIR@", dir);
        for (k, v) in vars {
            text = text.replace(k, v);
        }
        fs::create_dir_all(dir).expect("config dir");
        let dest = Path::new(dir).join(template);
        fs::write(&dest, text).expect("write config");
        dest.display().to_string()
    }

    /// Daemon log tails, for failure messages.
    pub fn logs(&self) -> String {
        self.daemons
            .iter()
            .map(|d| format!("--- {} log ({}):\n{}", d.name, d.log.display(), d.tail(12)))
            .collect()
    }

    /// Stops the daemons, checks the host for leftovers and removes them; returns the leaks.
    fn teardown(&mut self) -> Vec<String> {
        if self.cleaned {
            return Vec::new();
        }
        self.cleaned = true;
        let mut leaks = Vec::new();
        while let Some(mut d) = self.daemons.pop() {
            d.stop();
        }
        let dir = self.dir.display().to_string();

        // A frozen task does not die of SIGKILL until thawed.
        let freezer = Path::new(runtime_tests::CGROUP_ROOT)
            .join("freezer")
            .join(&self.tag);
        let mut frozen = Vec::new();
        if freezer.is_dir() {
            collect_dirs(&freezer, &mut frozen);
        }
        for f in frozen {
            let _ = fs::write(f.join("freezer.state"), "THAWED");
        }

        for (runtime, root) in &self.runtime_roots {
            for id in &self.ids {
                if root.join(id).exists() {
                    leaks.push(format!("runtime state left: {}", root.join(id).display()));
                    let args = vec![
                        "--root".to_string(),
                        root.display().to_string(),
                        "delete".to_string(),
                        "--force".to_string(),
                        id.clone(),
                    ];
                    call(
                        &runtime.display().to_string(),
                        &args,
                        &[],
                        Duration::from_secs(20),
                    );
                }
            }
        }

        let procs = processes_under(&dir, &self.tag);
        for (pid, cmd) in &procs {
            leaks.push(format!("process left: {pid} {cmd}"));
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !procs.is_empty()
            && !processes_under(&dir, &self.tag).is_empty()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }

        let now = mount_points();
        let mut ours: Vec<&String> = now
            .iter()
            .filter(|m| {
                m.starts_with(&dir)
                    || (!self.before.mounts.contains(*m)
                        && HOST_WATCH.iter().any(|w| m.starts_with(w)))
            })
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            leaks.push(format!("mount left: {m}"));
            let _ = umount2(m.as_str(), MntFlags::MNT_DETACH);
        }

        leaks.extend(self.remove_cgroups());

        let links = net_links();
        for l in links.difference(&self.before.links) {
            leaks.push(format!("network interface left: {l}"));
        }
        let rules = iptables_rules();
        if rules != self.before.iptables {
            leaks.push(format!(
                "iptables changed:\n--- before\n{}--- after\n{rules}",
                self.before.iptables
            ));
        }

        for p in HOST_WATCH {
            if !self.before.watched.contains(p) && Path::new(p).symlink_metadata().is_ok() {
                leaks.push(format!("host path created: {p}"));
            }
        }
        // Sockets of shims that had to be killed (engine tests hold the lock, so new ones are
        // ours).
        for p in shim_sockets().difference(&self.before.shim_sockets) {
            leaks.push(format!("shim socket left: {}", p.display()));
            let _ = fs::remove_file(p);
        }
        for p in ENGINE_LITTER {
            if !self.before.watched.contains(p) {
                // Empty dirs and the key file only: never anything another process is using.
                let _ = fs::remove_dir(p).or_else(|_| {
                    if p.ends_with(".json") {
                        fs::remove_file(p)
                    } else {
                        Ok(())
                    }
                });
            }
        }
        if let Some(t) = self.tmp.take() {
            if let Err(e) = t.close() {
                leaks.push(format!("removing {dir}: {e}"));
            }
        }
        leaks
    }

    /// Reports container cgroups left under `/<tag>` (and any named after a registered id),
    /// then removes the whole `/<tag>` tree from every hierarchy. The engines' own parent dirs
    /// (`/<tag>` itself, podman's `/<tag>/conmon`) are not leaks.
    fn remove_cgroups(&self) -> Vec<String> {
        let mut leaks = Vec::new();
        let mut dirs = Vec::new();
        if let Ok(rd) = fs::read_dir(runtime_tests::CGROUP_ROOT) {
            for h in rd.flatten() {
                let top = h.path().join(&self.tag);
                if top.is_dir() {
                    collect_dirs(&top, &mut dirs);
                }
            }
        }
        for d in &dirs {
            let rel = d
                .strip_prefix(runtime_tests::CGROUP_ROOT)
                .unwrap_or(d)
                .components()
                .count();
            let is_parent = rel <= 2 || d.file_name().is_some_and(|n| n == "conmon");
            if !is_parent {
                leaks.push(format!("cgroup left: {}", d.display()));
            }
        }
        // Elsewhere: a dir named after a registered id (or containing a long one, such as
        // podman's libpod-<id>), in case an engine ignored the cgroup parent.
        let named = if self.ids.is_empty() {
            Vec::new()
        } else {
            runtime_tests::cgroup_dirs(&self.ids)
        };
        for d in named {
            let name = d.file_name().unwrap_or_default().to_string_lossy();
            let ours = self
                .ids
                .iter()
                .any(|id| *name == **id || (id.len() >= 12 && name.contains(id.as_str())));
            if ours && !dirs.contains(&d) {
                leaks.push(format!("cgroup left: {}", d.display()));
            }
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            if let Err(e) = fs::remove_dir(&d) {
                leaks.push(format!("cannot remove cgroup {}: {e}", d.display()));
            }
        }
        leaks
    }

    /// Tears down and fails the test if any check failed or anything was left on the host.
    pub fn finish(mut self, checks: Checks) {
        let logs = self.logs();
        let leaks = self.teardown();
        let mut msg = String::new();
        if !checks.failures.is_empty() {
            let _ = writeln!(
                msg,
                "{}: {} checks failed ({} passed):\n\n{}\n\n{logs}",
                checks.label,
                checks.failures.len(),
                checks.passed,
                checks.failures.join("\n\n")
            );
        }
        if !leaks.is_empty() {
            let _ = writeln!(
                msg,
                "{}: left behind on the host:\n  {}",
                checks.label,
                leaks.join("\n  ")
            );
        }
        assert!(msg.is_empty(), "{msg}");
        eprintln!(
            "[{}] all {} checks passed, nothing left",
            checks.label, checks.passed
        );
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let leaks = self.teardown();
        if !leaks.is_empty() {
            eprintln!(
                "cleaned up after a failed engine test:\n  {}",
                leaks.join("\n  ")
            );
        }
    }
}
