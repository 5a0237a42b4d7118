//! OCI hooks: run a hook program with the container state on its stdin (runtime-spec
//! config.md "POSIX-platform Hooks"): the hook's `timeout` bounds everything done with it.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use oci_spec::runtime::Hook;

use crate::state::OciState;

/// A hook that could not be run or that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The hook program could not be started.
    #[error("{kind} hook {path}: start")]
    Spawn {
        /// Which hook list it belongs to.
        kind: &'static str,
        /// The hook's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The hook exited with a non-zero status or was killed.
    #[error("{kind} hook {path}: {status}{}", if stderr.is_empty() { String::new() } else { format!(": {}", stderr.trim_end()) })]
    Failed {
        /// Which hook list it belongs to.
        kind: &'static str,
        /// The hook's path.
        path: PathBuf,
        /// How it ended.
        status: String,
        /// What it wrote to stderr, then, if it wrote to stdout, `stdout: ` and that (at most
        /// 64 KiB of each stream).
        stderr: String,
    },
    /// The hook ran past its `timeout` and was killed.
    #[error("{kind} hook {path}: timed out after {secs}s")]
    Timeout {
        /// Which hook list it belongs to.
        kind: &'static str,
        /// The hook's path.
        path: PathBuf,
        /// The timeout.
        secs: i64,
    },
}

/// Run every hook of `hooks` in order with `state` as JSON on stdin; stop at the first failure.
///
/// `kind` names the hook list in errors (`prestart`, `createRuntime`, ...). A hook's `timeout`
/// (seconds) bounds all of its run: past it, the hook's process group is killed and the result
/// is [`HookError::Timeout`], whatever the hook does with its stdin, stdout and stderr. A
/// failing hook is [`HookError::Failed`] with the first 64 KiB of its stderr and stdout.
pub fn run_hooks(kind: &'static str, hooks: &[Hook], state: &OciState) -> Result<(), HookError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let input = serde_json::to_vec(state).expect("state serialises");
    for hook in hooks {
        run_hook(kind, hook, &input)?;
    }
    Ok(())
}

/// Run the hooks of a list whose failures must not stop the lifecycle (poststart, poststop):
/// each failure is logged as a warning and the next hook still runs.
pub fn run_hooks_warn(kind: &'static str, hooks: &[Hook], state: &OciState) {
    let input = serde_json::to_vec(state).expect("state serialises");
    for hook in hooks {
        if let Err(e) = run_hook(kind, hook, &input) {
            tracing::warn!("{e}");
        }
    }
}

/// How much of a hook's stdout and of its stderr is kept for the error message; the rest is
/// read and dropped, so that a chatty hook never blocks on a full pipe.
const OUTPUT_KEEP: usize = 64 * 1024;

/// Run one hook with `input` on its stdin.
///
/// Everything is bounded by the hook's `timeout` (seconds; none or 0 means no bound): the hook
/// runs in a process group of its own, its stdin is written and its stdout and stderr are read
/// in one poll loop with the hook's exit (a pidfd), so a hook that does not read its stdin,
/// fills its output pipes, or leaves a child holding them open never stalls the runtime. At
/// the deadline the whole process group is killed. After the hook exits, only output that is
/// already there is read: a background child that keeps the pipes open is not waited for (it
/// is left running when the hook succeeds, as a hook may start a daemon on purpose).
fn run_hook(kind: &'static str, hook: &Hook, input: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let mut cmd = Command::new(&path);
    if let Some(args) = hook.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let spawn_err = |source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let timeout = hook.timeout().filter(|t| *t > 0);
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t as u64));
    let outcome = supervise(&mut child, input, deadline);
    let (stdout, stderr) = match outcome {
        Ok(Supervised::Exited { stdout, stderr }) => (stdout, stderr),
        Ok(Supervised::TimedOut) => {
            kill_group(&mut child);
            return Err(HookError::Timeout {
                kind,
                path,
                secs: timeout.unwrap_or_default(),
            });
        }
        Err(e) => {
            kill_group(&mut child);
            return Err(spawn_err(e));
        }
    };
    // The hook has exited (its pidfd said so): this only reaps it.
    let status = child.wait().map_err(spawn_err)?;
    if status.success() {
        return Ok(());
    }
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    };
    let mut stderr = String::from_utf8_lossy(&stderr).into_owned();
    if !stdout.is_empty() {
        if !stderr.is_empty() && !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        stderr.push_str("stdout: ");
        stderr.push_str(&String::from_utf8_lossy(&stdout));
    }
    Err(HookError::Failed {
        kind,
        path,
        status,
        stderr,
    })
}

/// How [`supervise`] ended.
enum Supervised {
    /// The hook exited (not yet reaped); what it wrote, up to [`OUTPUT_KEEP`] bytes each.
    Exited { stdout: Vec<u8>, stderr: Vec<u8> },
    /// The deadline passed first.
    TimedOut,
}

/// Kill the hook's process group (the hook leads it) and reap the hook.
fn kill_group(child: &mut Child) {
    // The group id is the hook's pid, which stays ours until it is reaped below.
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// A pipe end of the hook, or `None` once closed.
struct Pipe<T> {
    end: Option<T>,
    kept: Vec<u8>,
}

impl<T: AsFd> Pipe<T> {
    fn new(end: Option<T>) -> std::io::Result<Self> {
        if let Some(e) = &end {
            let flags = fcntl(e, FcntlArg::F_GETFL)?;
            let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
            fcntl(e, FcntlArg::F_SETFL(flags))?;
        }
        Ok(Pipe {
            end,
            kept: Vec::new(),
        })
    }
}

impl<T: AsFd + Read> Pipe<T> {
    /// Read what is there without blocking; close at end of file or on an error.
    fn drain(&mut self) {
        let Some(end) = self.end.as_mut() else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match end.read(&mut buf) {
                Ok(0) => {
                    self.end = None;
                    return;
                }
                Ok(n) => {
                    let room = OUTPUT_KEEP.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.end = None;
                    return;
                }
            }
        }
    }
}

/// Feed `input` to the hook and collect its output until it exits or `deadline` passes.
fn supervise(
    child: &mut Child,
    input: &[u8],
    deadline: Option<Instant>,
) -> std::io::Result<Supervised> {
    let pidfd = crate::sys::pidfd_open(Pid::from_raw(child.id() as i32))?;
    let mut stdin = Pipe::new(child.stdin.take())?;
    let mut stdout = Pipe::new(child.stdout.take())?;
    let mut stderr = Pipe::new(child.stderr.take())?;
    let mut written = 0;
    if input.is_empty() {
        stdin.end = None;
    }
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Supervised::TimedOut);
                }
                // Round up so that the loop does not spin in the last millisecond.
                PollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
            }
        };
        let (in_ready, out_ready, err_ready, exited) = {
            let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            fn slot<'a>(
                fds: &mut Vec<PollFd<'a>>,
                fd: Option<BorrowedFd<'a>>,
                ev: PollFlags,
            ) -> Option<usize> {
                fd.map(|fd| {
                    fds.push(PollFd::new(fd, ev));
                    fds.len() - 1
                })
            }
            let i_in = slot(
                &mut fds,
                stdin.end.as_ref().map(|e| e.as_fd()),
                PollFlags::POLLOUT,
            );
            let i_out = slot(
                &mut fds,
                stdout.end.as_ref().map(|e| e.as_fd()),
                PollFlags::POLLIN,
            );
            let i_err = slot(
                &mut fds,
                stderr.end.as_ref().map(|e| e.as_fd()),
                PollFlags::POLLIN,
            );
            match poll(&mut fds, wait) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready = |i: Option<usize>| {
                i.and_then(|i| fds[i].revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (ready(i_in), ready(i_out), ready(i_err), ready(Some(0)))
        };
        if in_ready {
            if let Some(end) = stdin.end.as_mut() {
                match end.write(&input[written..]) {
                    Ok(n) => written += n,
                    Err(e)
                        if e.kind() == ErrorKind::WouldBlock
                            || e.kind() == ErrorKind::Interrupted => {}
                    // A hook that does not read its stdin closes the pipe: not an error.
                    Err(_) => written = input.len(),
                }
                if written >= input.len() {
                    stdin.end = None;
                }
            }
        }
        if out_ready {
            stdout.drain();
        }
        if err_ready {
            stderr.drain();
        }
        if exited {
            // What the hook wrote before it exited is in the pipes now; a child of the hook
            // that keeps them open is not waited for.
            stdout.drain();
            stderr.drain();
            return Ok(Supervised::Exited {
                stdout: stdout.kept,
                stderr: stderr.kept,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::mpsc;

    use oci_spec::runtime::HookBuilder;

    use super::*;
    use crate::state::Status;

    fn state(annotation_bytes: usize) -> OciState {
        let mut annotations = HashMap::new();
        if annotation_bytes > 0 {
            annotations.insert("big".to_owned(), "a".repeat(annotation_bytes));
        }
        OciState {
            oci_version: "1.0.2".into(),
            id: "hooktest".into(),
            pid: 4242,
            status: Status::Created,
            bundle: "/tmp".into(),
            rootfs: "/tmp/rootfs".into(),
            created: String::new(),
            owner: String::new(),
            annotations,
        }
    }

    fn sh(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default().path("/bin/sh").args(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            script.to_owned(),
        ]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    /// Run `hook` on a thread, so that a hang fails the test after `limit` instead of blocking
    /// it forever; returns the result and how long it took.
    fn run_bounded(hook: Hook, st: OciState, limit: Duration) -> (Result<(), HookError>, Duration) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let start = Instant::now();
            let r = run_hooks("prestart", &[hook], &st);
            let _ = tx.send((r, start.elapsed()));
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("the hook held run_hooks for more than {limit:?}"))
    }

    #[test]
    fn state_reaches_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("state.json");
        let hook = sh(&format!("cat > {}", out.display()), None);
        let (r, _) = run_bounded(hook, state(0), Duration::from_secs(20));
        r.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["id"], "hooktest");
    }

    #[test]
    fn big_output_without_timeout_does_not_block() {
        let hook = sh(
            "head -c 1048576 /dev/zero >&2; head -c 1048576 /dev/zero",
            None,
        );
        let (r, _) = run_bounded(hook, state(0), Duration::from_secs(20));
        r.unwrap();
    }

    #[test]
    fn failure_keeps_a_bounded_part_of_the_output() {
        let hook = sh(
            "head -c 1048576 /dev/zero | tr '\\0' x >&2; echo out-said; exit 3",
            None,
        );
        let (r, _) = run_bounded(hook, state(0), Duration::from_secs(20));
        match r {
            Err(HookError::Failed { status, stderr, .. }) => {
                assert_eq!(status, "exit status 3");
                assert!(stderr.starts_with("xxxx"), "{}", &stderr[..20]);
                assert!(stderr.contains("stdout: out-said"));
                assert!(stderr.len() < 2 * OUTPUT_KEEP + 100);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_holds_when_stdin_is_never_read() {
        // The state (with a 1 MiB annotation) is bigger than a pipe.
        let hook = sh("exec sleep 30", Some(1));
        let (r, took) = run_bounded(hook, state(1 << 20), Duration::from_secs(20));
        assert!(
            matches!(r, Err(HookError::Timeout { secs: 1, .. })),
            "{r:?}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn timeout_holds_when_the_hook_fills_stderr_forever() {
        let hook = sh("exec tr '\\0' x < /dev/zero >&2", Some(1));
        let (r, took) = run_bounded(hook, state(0), Duration::from_secs(20));
        assert!(matches!(r, Err(HookError::Timeout { .. })), "{r:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn timeout_kills_children_that_hold_the_pipes() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child");
        let hook = sh(
            &format!("sleep 30 & echo $! > {}; exec sleep 30", pidfile.display()),
            Some(1),
        );
        let (r, took) = run_bounded(hook, state(0), Duration::from_secs(20));
        assert!(matches!(r, Err(HookError::Timeout { .. })), "{r:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed with its group; a zombie until init reaps it, then gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        let alive = || crate::procfs::ProcStat::of(child).is_some_and(|st| !st.is_exited());
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(), "the hook's child {child} still runs");
    }

    #[test]
    fn a_background_child_does_not_hold_a_successful_hook() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child");
        let hook = sh(
            &format!("sleep 30 & echo $! > {}; exit 0", pidfile.display()),
            Some(10),
        );
        let (r, took) = run_bounded(hook, state(0), Duration::from_secs(20));
        let child: Option<i32> = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let Some(c) = child {
            let _ = nix::sys::signal::kill(Pid::from_raw(c), Signal::SIGKILL);
        }
        r.unwrap();
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
