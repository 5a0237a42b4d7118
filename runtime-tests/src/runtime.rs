//! Driving a runtime through its command line, with a timeout and a call log.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write as _};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::{Bundle, SupportError};

/// How long one runtime call may take before it is killed and reported as timed out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// What one runtime call produced.
///
/// A runtime that could not be started or that hung is a result like any other: `status` is
/// `None` and `stderr` says why (`timed_out` tells the two apart).
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The full argument list, runtime binary first.
    pub args: Vec<String>,
    /// Exit status, `None` if the runtime could not be spawned or was killed by the timeout.
    pub status: Option<ExitStatus>,
    /// Everything written to stdout (for `create`/`run`, also the container's output so far).
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// Whether the timeout guard killed the call.
    pub timed_out: bool,
    /// Wall time of the call.
    pub elapsed: Duration,
}

impl RunOutput {
    /// Whether the call exited with status 0.
    ///
    /// ```no_run
    /// # let rt = runtime_tests::Runtime::new("/usr/sbin/runc").unwrap();
    /// assert!(rt.features().success());
    /// ```
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The exit code, `None` when killed by a signal, timed out or not spawned.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// stdout parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(self.stdout.trim()).ok()
    }

    /// A multi-line description for failure messages: command, status, stdout, stderr.
    pub fn describe(&self) -> String {
        let status = match (self.status, self.timed_out) {
            (_, true) => "TIMED OUT (killed)".to_string(),
            (Some(s), _) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (_, Some(sig)) => format!("signal {sig}"),
                _ => format!("{s}"),
            },
            (None, _) => "not started".to_string(),
        };
        let mut s = format!(
            "$ {}\n  -> {} in {:?}\n",
            self.args.join(" "),
            status,
            self.elapsed
        );
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if !text.trim().is_empty() {
                let _ = writeln!(s, "  {name}: {}", text.trim_end().replace('\n', "\n    "));
            }
        }
        s
    }
}

/// An OCI runtime driven through its runc-compatible command line.
///
/// Each `Runtime` gets its own state directory (`--root`) in a temp dir, so tests never see each
/// other's containers. Every call is logged; when a test panics while the `Runtime` is alive,
/// dropping it prints the log and the state of every container it created, then kills and
/// force-deletes them.
///
/// ```no_run
/// use runtime_tests::{Bundle, Runtime};
///
/// let rt = Runtime::new(runtime_tests::berth_bin().unwrap()).unwrap();
/// let mut bundle = Bundle::new().unwrap();
/// bundle.set_args(&["echo", "hello"]);
/// let id = rt.new_id("hello");
/// let out = rt.run(&id, &bundle);
/// assert!(out.success(), "{}", out.describe());
/// assert_eq!(out.stdout, "hello\n");
/// ```
pub struct Runtime {
    /// The runtime binary.
    pub bin: PathBuf,
    /// The state directory passed as `--root`.
    pub root: PathBuf,
    /// Extra global flags put before the sub-command (after `--root`).
    pub global_args: Vec<String>,
    /// Per-call timeout; a call running longer is killed.
    pub timeout: Duration,
    io_dir: PathBuf,
    _dir: Option<TempDir>,
    log: Mutex<Vec<RunOutput>>,
    ids: Mutex<Vec<String>>,
    pids: Mutex<Vec<(i32, u64)>>,
    seq: AtomicU32,
}

static ID_SEQ: AtomicU32 = AtomicU32::new(0);

impl Runtime {
    /// A runtime with a fresh state directory in a temp dir.
    pub fn new(bin: impl Into<PathBuf>) -> Result<Runtime, SupportError> {
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-")
            .tempdir()
            .map_err(|e| SupportError::io("create temp dir", std::env::temp_dir(), e))?;
        let root = dir.path().join("root");
        let mut rt = Runtime::with_root(bin, root)?;
        rt._dir = Some(dir);
        Ok(rt)
    }

    /// A runtime using `root` as its state directory (created if missing, not removed).
    pub fn with_root(
        bin: impl Into<PathBuf>,
        root: impl Into<PathBuf>,
    ) -> Result<Runtime, SupportError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| SupportError::io("create dir", &root, e))?;
        let io_dir = root.with_file_name(format!(
            "{}.io",
            root.file_name().and_then(|n| n.to_str()).unwrap_or("root")
        ));
        fs::create_dir_all(&io_dir).map_err(|e| SupportError::io("create dir", &io_dir, e))?;
        Ok(Runtime {
            bin: bin.into(),
            root,
            global_args: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            io_dir,
            _dir: None,
            log: Mutex::new(Vec::new()),
            ids: Mutex::new(Vec::new()),
            pids: Mutex::new(Vec::new()),
            seq: AtomicU32::new(0),
        })
    }

    /// A container id unique in this process: `<tag>-<pid>-<n>`.
    ///
    /// ```no_run
    /// # let rt = runtime_tests::Runtime::new("/usr/sbin/runc").unwrap();
    /// let a = rt.new_id("t");
    /// assert_ne!(a, rt.new_id("t"));
    /// ```
    pub fn new_id(&self, tag: &str) -> String {
        let n = ID_SEQ.fetch_add(1, Ordering::Relaxed);
        format!("{tag}-{}-{n}", std::process::id())
    }

    /// Container ids this runtime was asked to create or run, in order.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.ids).clone()
    }

    /// Pids seen in `state` output, with their start times (to tell reuse apart).
    pub fn seen_pids(&self) -> Vec<(i32, u64)> {
        lock(&self.pids).clone()
    }

    fn remember_id(&self, id: &str) {
        let mut ids = lock(&self.ids);
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }

    /// Where the stdout of the container `id` goes (for `create` and `run`).
    pub fn stdout_path(&self, id: &str) -> PathBuf {
        self.io_dir.join(format!("{id}.stdout"))
    }

    /// Where the stderr of the container `id` goes (for `create` and `run`).
    pub fn stderr_path(&self, id: &str) -> PathBuf {
        self.io_dir.join(format!("{id}.stderr"))
    }

    /// What the container `id` has written to stdout so far (its stdio is a file).
    pub fn container_stdout(&self, id: &str) -> String {
        fs::read_to_string(self.stdout_path(id)).unwrap_or_default()
    }

    /// What the container `id` (and the runtime during `create`) wrote to stderr so far.
    pub fn container_stderr(&self, id: &str) -> String {
        fs::read_to_string(self.stderr_path(id)).unwrap_or_default()
    }

    /// Runs the runtime with `args` after the global flags; stdio to fresh files, stdin null.
    ///
    /// ```no_run
    /// # let rt = runtime_tests::Runtime::new("/usr/sbin/runc").unwrap();
    /// let out = rt.cmd(&["list", "--format", "json"]);
    /// ```
    pub fn cmd(&self, args: &[&str]) -> RunOutput {
        self.call(args, None, None)
    }

    /// Like [`cmd`](Self::cmd) with `input` on stdin.
    pub fn cmd_stdin(&self, args: &[&str], input: &[u8]) -> RunOutput {
        self.call(args, None, Some(input))
    }

    fn full_args(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            self.bin.display().to_string(),
            "--root".into(),
            self.root.display().to_string(),
        ];
        v.extend(self.global_args.iter().cloned());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// The core: spawn, wait with the timeout guard, collect, log.
    fn call(&self, args: &[&str], container: Option<&str>, input: Option<&[u8]>) -> RunOutput {
        let full = self.full_args(args);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let result = self.spawn_and_wait(&full, n, container, input);
        let out = match result {
            Ok((status, timed_out, stdout, stderr)) => RunOutput {
                args: full,
                status,
                stdout,
                stderr,
                timed_out,
                elapsed: start.elapsed(),
            },
            Err(e) => RunOutput {
                args: full,
                status: None,
                stdout: String::new(),
                stderr: format!("could not run the runtime: {e}"),
                timed_out: false,
                elapsed: start.elapsed(),
            },
        };
        lock(&self.log).push(out.clone());
        out
    }

    #[allow(clippy::type_complexity)]
    fn spawn_and_wait(
        &self,
        full: &[String],
        n: u32,
        container: Option<&str>,
        input: Option<&[u8]>,
    ) -> std::io::Result<(Option<ExitStatus>, bool, String, String)> {
        let (out_path, err_path, append) = match container {
            Some(id) => (self.stdout_path(id), self.stderr_path(id), true),
            None => (
                self.io_dir.join(format!("call-{n}.stdout")),
                self.io_dir.join(format!("call-{n}.stderr")),
                false,
            ),
        };
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(append)
                .write(true)
                .truncate(!append)
                .read(true)
                .open(p)
        };
        let stdout = open(&out_path)?;
        let stderr = open(&err_path)?;
        let out_start = stdout.metadata()?.len();
        let err_start = stderr.metadata()?.len();
        let stdin = match input {
            Some(bytes) => {
                let mut f = tempfile::tempfile()?;
                f.write_all(bytes)?;
                f.rewind()?;
                Stdio::from(f)
            }
            None => Stdio::null(),
        };
        let mut child = Command::new(&full[0])
            .args(&full[1..])
            .stdin(stdin)
            .stdout(Stdio::from(stdout.try_clone()?))
            .stderr(Stdio::from(stderr.try_clone()?))
            .process_group(0)
            .spawn()?;
        let deadline = Instant::now() + self.timeout;
        let mut sleep = Duration::from_micros(200);
        let mut timed_out = false;
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break Some(st);
            }
            if Instant::now() >= deadline {
                timed_out = true;
                // The runtime was put in its own process group: kill all of it.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_millis(10));
        };
        let read_from = |mut f: File, from: u64| -> String {
            let mut s = Vec::new();
            let _ = f.seek(std::io::SeekFrom::Start(from));
            let _ = f.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        };
        let out = read_from(stdout, if append { out_start } else { 0 });
        let err = read_from(stderr, if append { err_start } else { 0 });
        if container.is_none() {
            let _ = fs::remove_file(&out_path);
            let _ = fs::remove_file(&err_path);
        }
        Ok((status, timed_out, out, err))
    }

    /// `create --bundle DIR ID`; the container's stdio goes to [`stdout_path`](Self::stdout_path)
    /// and [`stderr_path`](Self::stderr_path). Saves the bundle's config.json first.
    ///
    /// ```no_run
    /// # use runtime_tests::{Bundle, Runtime};
    /// # let rt = Runtime::new("/usr/sbin/runc").unwrap();
    /// let mut bundle = Bundle::new().unwrap();
    /// bundle.set_args(&["sleep", "100"]);
    /// let id = rt.new_id("c");
    /// assert!(rt.create(&id, &bundle).success());
    /// assert_eq!(rt.status(&id).as_deref(), Some("created"));
    /// rt.start(&id);
    /// rt.kill(&id, "KILL");
    /// rt.wait_status(&id, "stopped", std::time::Duration::from_secs(5));
    /// rt.delete(&id);
    /// ```
    pub fn create(&self, id: &str, bundle: &Bundle) -> RunOutput {
        self.create_with(id, bundle, &[])
    }

    /// `create` with extra flags (e.g. `--pid-file P`, `--no-pivot`) before the id.
    pub fn create_with(&self, id: &str, bundle: &Bundle, flags: &[&str]) -> RunOutput {
        self.remember_id(id);
        bundle.save().expect("write config.json");
        let dir = bundle.dir().display().to_string();
        let mut args = vec!["create", "--bundle", dir.as_str()];
        args.extend_from_slice(flags);
        args.push(id);
        self.call(&args, Some(id), None)
    }

    /// `start ID`.
    pub fn start(&self, id: &str) -> RunOutput {
        self.cmd(&["start", id])
    }

    /// `state ID`; remembers the pid it reports (for leak checks and cleanup).
    pub fn state(&self, id: &str) -> RunOutput {
        let out = self.cmd(&["state", id]);
        if let Some(pid) = out.json().and_then(|v| v["pid"].as_i64()) {
            if pid > 0 {
                let pid = pid as i32;
                let st = crate::leaks::start_time(pid).unwrap_or(0);
                let mut pids = lock(&self.pids);
                if !pids.iter().any(|&(p, _)| p == pid) {
                    pids.push((pid, st));
                }
            }
        }
        out
    }

    /// The parsed state document, `None` if `state` failed or printed no JSON.
    pub fn state_json(&self, id: &str) -> Option<Value> {
        let out = self.state(id);
        if out.success() {
            out.json()
        } else {
            None
        }
    }

    /// The `status` field of `state ID` (`creating`, `created`, `running`, `stopped`, ...).
    pub fn status(&self, id: &str) -> Option<String> {
        self.state_json(id)
            .and_then(|v| v["status"].as_str().map(str::to_string))
    }

    /// Polls `state` until the status is `want` or `timeout` passes; returns the last state.
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Option<Value> {
        let mut st = None;
        crate::wait_for(timeout, || {
            st = self.state_json(id);
            st.as_ref().and_then(|v| v["status"].as_str()) == Some(want)
        });
        st
    }

    /// Waits (at most 10 s) for status `stopped`; panics with the call log if it never comes.
    pub fn wait_stopped(&self, id: &str) {
        let st = self.wait_status(id, "stopped", Duration::from_secs(10));
        assert_eq!(
            st.as_ref().and_then(|v| v["status"].as_str()),
            Some("stopped"),
            "{} {id}: {st:?}\n{}",
            self.bin.display(),
            self.dump_log()
        );
    }

    /// `kill ID SIGNAL` (signal as the runtime takes it: `KILL`, `SIGTERM`, `9`).
    pub fn kill(&self, id: &str, signal: &str) -> RunOutput {
        self.cmd(&["kill", id, signal])
    }

    /// `kill --all ID SIGNAL`.
    pub fn kill_all(&self, id: &str, signal: &str) -> RunOutput {
        self.cmd(&["kill", "--all", id, signal])
    }

    /// `delete ID`.
    pub fn delete(&self, id: &str) -> RunOutput {
        self.cmd(&["delete", id])
    }

    /// `delete --force ID`.
    pub fn delete_force(&self, id: &str) -> RunOutput {
        self.cmd(&["delete", "--force", id])
    }

    /// `run --bundle DIR ID` in the foreground; stdout of the result is the container's.
    pub fn run(&self, id: &str, bundle: &Bundle) -> RunOutput {
        self.run_with(id, bundle, &[])
    }

    /// `run` with extra flags (e.g. `--detach`) before the id.
    pub fn run_with(&self, id: &str, bundle: &Bundle, flags: &[&str]) -> RunOutput {
        self.remember_id(id);
        bundle.save().expect("write config.json");
        let dir = bundle.dir().display().to_string();
        let mut args = vec!["run", "--bundle", dir.as_str()];
        args.extend_from_slice(flags);
        args.push(id);
        self.call(&args, Some(id), None)
    }

    /// `exec ID ARGS...` in the foreground; stdout of the result is the process's.
    pub fn exec(&self, id: &str, args: &[&str]) -> RunOutput {
        self.exec_with(id, &[], args)
    }

    /// `exec` with flags (`--user 1000:1000`, `--env K=V`, `--cwd /`, `--detach`,
    /// `--process FILE`) before the id.
    pub fn exec_with(&self, id: &str, flags: &[&str], args: &[&str]) -> RunOutput {
        let mut v = vec!["exec"];
        v.extend_from_slice(flags);
        v.push(id);
        v.extend_from_slice(args);
        self.cmd(&v)
    }

    /// `pause ID`.
    pub fn pause(&self, id: &str) -> RunOutput {
        self.cmd(&["pause", id])
    }

    /// `resume ID`.
    pub fn resume(&self, id: &str) -> RunOutput {
        self.cmd(&["resume", id])
    }

    /// `ps --format json ID`.
    pub fn ps(&self, id: &str) -> RunOutput {
        self.cmd(&["ps", "--format", "json", id])
    }

    /// `list --format json`.
    pub fn list(&self) -> RunOutput {
        self.cmd(&["list", "--format", "json"])
    }

    /// `features` (the OCI features document, runtime-spec features.md).
    pub fn features(&self) -> RunOutput {
        self.cmd(&["features"])
    }

    /// The log of every call so far, formatted with [`RunOutput::describe`].
    pub fn dump_log(&self) -> String {
        lock(&self.log).iter().map(RunOutput::describe).collect()
    }

    /// The raw call log.
    pub fn calls(&self) -> Vec<RunOutput> {
        lock(&self.log).clone()
    }

    /// Forgets the call log (the conformance suite does this between cases).
    pub fn clear_log(&self) {
        lock(&self.log).clear();
    }

    /// Kills and force-deletes every container this runtime created, then SIGKILLs any pid it saw
    /// in `state` that is still the same process. Quiet: nothing is logged.
    pub fn cleanup(&self) {
        let ids = self.ids();
        for id in ids.iter().rev() {
            let _ = self.quiet(&["kill", id, "KILL"]);
            let _ = self.quiet(&["delete", "--force", id]);
        }
        for (pid, st) in self.seen_pids() {
            if crate::leaks::start_time(pid) == Some(st) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    fn quiet(&self, args: &[&str]) -> RunOutput {
        let out = self.call(args, None, None);
        lock(&self.log).pop();
        out
    }

    /// The state documents of all containers created, for failure reports.
    pub fn dump_states(&self) -> String {
        let mut s = String::new();
        for id in self.ids() {
            let out = self.quiet(&["state", &id]);
            let _ = writeln!(s, "state {id}: {}", out.stdout.trim());
            let so = self.container_stdout(&id);
            let se = self.container_stderr(&id);
            if !so.is_empty() {
                let _ = writeln!(s, "  container stdout: {}", so.trim_end());
            }
            if !se.is_empty() {
                let _ = writeln!(s, "  container stderr: {}", se.trim_end());
            }
        }
        s
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- runtime calls ({}) ----\n{}---- container states ----\n{}",
                self.bin.display(),
                self.dump_log(),
                self.dump_states()
            );
        }
        self.cleanup();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{assert_no_leaks, LeakSnapshot};

    const RUNC: &str = "/usr/sbin/runc";

    fn runc() -> Option<Runtime> {
        crate::require_root();
        crate::require_path(RUNC, "runc");
        Some(Runtime::new(RUNC).unwrap())
    }

    #[test]
    fn run_echo_with_runc() {
        let Some(rt) = runc() else { return };
        let mut b = Bundle::new().unwrap();
        b.set_args(&["echo", "hello"]);
        let before = LeakSnapshot::take(&rt, &b);
        let id = rt.new_id("echo");
        let out = rt.run(&id, &b);
        assert!(out.success(), "{}", out.describe());
        assert_eq!(out.stdout, "hello\n");
        assert_no_leaks(&before, &rt);
    }

    #[test]
    fn lifecycle_with_runc() {
        let Some(rt) = runc() else { return };
        let mut b = Bundle::new().unwrap();
        b.set_args(&["sleep", "100"]);
        let before = LeakSnapshot::take(&rt, &b);
        let id = rt.new_id("life");
        assert!(rt.create(&id, &b).success(), "{}", rt.dump_log());
        assert_eq!(rt.status(&id).as_deref(), Some("created"));
        assert!(rt.start(&id).success());
        assert_eq!(rt.status(&id).as_deref(), Some("running"));
        assert!(
            !before.leaks(&rt).is_empty(),
            "a running container is a leak"
        );
        assert!(rt.kill(&id, "KILL").success());
        let st = rt.wait_status(&id, "stopped", Duration::from_secs(5));
        assert_eq!(st.unwrap()["status"], "stopped");
        assert!(rt.delete(&id).success());
        assert_no_leaks(&before, &rt);
    }

    #[test]
    fn timeout_kills_a_hung_call() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hang");
        fs::write(&script, "#!/bin/sh\nsleep 30\n").unwrap();
        fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut rt = Runtime::new(&script).unwrap();
        rt.timeout = Duration::from_millis(300);
        let out = rt.state("x");
        assert!(out.timed_out, "{}", out.describe());
        assert!(out.status.is_none());
        assert!(out.elapsed < Duration::from_secs(5), "{}", out.describe());
    }
}
