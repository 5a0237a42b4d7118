//! Errors of the container lifecycle.
//!
//! [`ContainerError`] is what the public API returns. Errors that happen inside the container's
//! init process during setup travel back to the parent as a [`SetupError`], which keeps the step,
//! the operation, the path and the errno, so that `berth create` can say exactly what failed.

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use crate::hooks::HookError;
use crate::spec::SpecError;
use crate::state::{StateError, Status};

/// An error of a container lifecycle operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// No container with this id exists under the runtime root.
    #[error("container {id} does not exist")]
    NotFound {
        /// The container id asked for.
        id: String,
    },
    /// A container with this id already exists.
    #[error("container with id {id} already exists")]
    AlreadyExists {
        /// The container id asked for.
        id: String,
    },
    /// The id is empty or has characters that are not allowed.
    #[error("invalid container id {id:?}: {why}")]
    InvalidId {
        /// The rejected id.
        id: String,
        /// Why it was rejected.
        why: &'static str,
    },
    /// The operation is not allowed in the container's current status.
    #[error("cannot {op} container {id}: container is {status}")]
    BadStatus {
        /// The operation that was refused (`start`, `delete`, ...).
        op: &'static str,
        /// The container id.
        id: String,
        /// The status that forbids it.
        status: Status,
    },
    /// The container's process has exited, so it cannot be signalled (or paused). The text is
    /// runc's `ErrNotRunning` word for word: containerd's shim matches "container not running"
    /// to tell an exited task (not found) from a failure.
    #[error("container not running")]
    NotRunning {
        /// The operation that was refused (`kill`, `pause`).
        op: &'static str,
        /// The container id.
        id: String,
    },
    /// The bundle's configuration is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The state directory could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A cgroup operation failed: what, and why (`cgroup: write "max" to .../pids.max:
    /// permission denied`).
    #[error("cgroup: {}", with_causes(.0))]
    Cgroup(#[from] berth_cgroups::CgroupError),
    /// Setting up the container failed inside its init process (`container init: mounts:
    /// mount proc on /proc: permission denied`).
    #[error("container init: {0}")]
    Setup(#[from] SetupError),
    /// The seccomp notify fd could not be passed to the listener.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// A system call made by the runtime (not the container's init) failed (`pidfd_open of
    /// process 1234: ESRCH: No such process`): which call, on what ([`SysOp`]), and the errno.
    #[error("{op}: {source}")]
    Sys {
        /// The call and what it was made on.
        op: SysOp,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// `kill` was given a number that is not a signal.
    #[error(
        "invalid signal {signal}: a signal is 0 (only a check) or a number from 1 to SIGRTMAX \
         ({})",
        libc::SIGRTMAX()
    )]
    InvalidSignal {
        /// The number given.
        signal: i32,
    },
    /// A file operation made by the runtime failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The container's init process exited or broke the setup protocol before it was ready.
    #[error("container init exited before it was ready: {0}")]
    InitDied(String),
    /// A container process died during setup: how it ended (exit status or signal) and the
    /// likely cause, e.g. "init was killed by SIGKILL during setup (memory limit 4 MiB
    /// reached?)".
    #[error("{0}")]
    DiedDuringSetup(String),
    /// A container-side process (or the spawn helper) did not answer within the setup
    /// timeout ([`crate::spawn::setup_timeout`]); it has been killed and reaped.
    #[error("timed out after {limit:?} waiting for {step}")]
    Timeout {
        /// The step that did not complete, e.g. `init's ready` or `the spawn helper`.
        step: &'static str,
        /// How long the runtime waited.
        limit: std::time::Duration,
    },
    /// A container-side process sent something the setup protocol does not allow at this
    /// step.
    #[error("{step} broke the setup protocol: it sent {got}")]
    Protocol {
        /// The step that was waited for.
        step: &'static str,
        /// What came instead.
        got: String,
    },
    /// Only the process that created a container (init's parent) can wait for its status.
    #[error(
        "cannot wait for container {id}: its init is not a child of this process (it was \
         created by another)"
    )]
    NotOurChild {
        /// The container id.
        id: String,
    },
    /// The runtime binary could not be shielded from the container (CVE-2019-5736).
    #[error(transparent)]
    Exe(#[from] crate::exe::ExeError),
    /// Runtime code would run where the container can see it, but the running binary is not
    /// protected: call [`crate::exe::protect`] first (at the start of `main`).
    #[error("{0}: the runtime binary must be protected first (berth_runtime::exe::protect)")]
    ExeNotProtected(&'static str),
    /// A container process must be started through the spawn helper (the caller is
    /// multithreaded), which re-executes `/proc/self/exe` and needs berth-runtime's
    /// constructor in that executable; it is not there (the constructor did not run, or
    /// berth-runtime lives in a shared object loaded with `dlopen`, not in the program).
    #[error(
        "cannot start the spawn helper: {0}; link berth-runtime into the executable (not a \
         dlopen'ed shared object), or call from a single-threaded process"
    )]
    SpawnHelperMissing(&'static str),
}

/// `err`'s message followed by those of its causes that it does not already include, joined
/// by `: `: a sentence that says what failed and why, for `to_string()`.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl ContainerError {
    pub(crate) fn sys(op: SysOp, source: Errno) -> Self {
        ContainerError::Sys { op, source }
    }
}

/// A system call the runtime makes itself, and what it was made on: the operation of
/// [`ContainerError::Sys`], for callers to match (`SysOp::PidfdOpen { .. }`) and to read
/// (`pidfd_open of process 1234`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SysOp {
    /// `socketpair(2)` for the channel to a container process.
    Socketpair,
    /// `clone(2)` of a container process (or of the spawn helper), with these flags.
    Clone(nix::sched::CloneFlags),
    /// `memfd_create(2)` for the request to the spawn helper.
    MemfdCreate,
    /// `sendmsg(2)` on the channel to `peer` (`init`, `the exec child`, `the spawn helper`,
    /// `the container process`).
    Send {
        /// Who the message was for.
        peer: &'static str,
    },
    /// `recvmsg(2)` on the channel, waiting for `step`.
    Receive {
        /// The step that was waited for, e.g. `init's ready`.
        step: &'static str,
    },
    /// `poll(2)` of the channel, waiting for `step`.
    PollChannel {
        /// The step that was waited for.
        step: &'static str,
    },
    /// `poll(2)` of the exec fifo, waiting for init to start the user's program (`start`).
    PollExecFifo,
    /// `read(2)` of the exec fifo (`start`).
    ReadExecFifo,
    /// `pidfd_open(2)` of process `pid`.
    PidfdOpen {
        /// The host pid.
        pid: i32,
    },
    /// `pidfd_send_signal(2)` of `signal` to process `pid`.
    PidfdSendSignal {
        /// The host pid.
        pid: i32,
        /// The signal number.
        signal: i32,
    },
    /// `poll(2)` of process `pid`'s pidfd, waiting for its exit.
    PollPidfd {
        /// The host pid.
        pid: i32,
    },
    /// `waitid(P_PIDFD)` for process `pid`'s exit status.
    Waitid {
        /// The host pid.
        pid: i32,
    },
}

impl fmt::Display for SysOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SysOp::Socketpair => f.write_str("socketpair for a container process's channel"),
            SysOp::Clone(flags) => write!(f, "clone a container process with {flags:?}"),
            SysOp::MemfdCreate => f.write_str("memfd_create for the spawn helper's request"),
            SysOp::Send { peer } => write!(f, "send to {peer}"),
            SysOp::Receive { step } => write!(f, "receive on the channel waiting for {step}"),
            SysOp::PollChannel { step } => write!(f, "poll the channel waiting for {step}"),
            SysOp::PollExecFifo => f.write_str("poll the exec fifo"),
            SysOp::ReadExecFifo => f.write_str("read the exec fifo"),
            SysOp::PidfdOpen { pid } => write!(f, "pidfd_open of process {pid}"),
            SysOp::PidfdSendSignal { pid, signal } => {
                match nix::sys::signal::Signal::try_from(signal) {
                    Ok(sig) => write!(f, "send {} to process {pid}", sig.as_str()),
                    Err(_) => write!(f, "send signal {signal} to process {pid}"),
                }
            }
            SysOp::PollPidfd { pid } => write!(f, "poll the pidfd of process {pid}"),
            SysOp::Waitid { pid } => write!(f, "waitid(P_PIDFD) for process {pid}"),
        }
    }
}

/// A failure inside the container's init process, sent back to the runtime.
///
/// It says which step failed (`mount`, `pivot_root`, `exec`, ...), the operation and the path
/// concerned, and the errno, if the cause was a system call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct SetupError {
    /// The setup step, such as `rootfs`, `mounts`, `capabilities` or `exec`.
    pub step: String,
    /// What was done, such as `mount proc on /proc` or `setrlimit RLIMIT_NOFILE`.
    pub op: String,
    /// The errno of the failed system call, 0 if the error was not one.
    pub errno: i32,
}

impl SetupError {
    /// A setup error caused by a failed system call.
    pub fn sys(step: &str, op: impl Into<String>, errno: Errno) -> Self {
        SetupError {
            step: step.to_owned(),
            op: op.into(),
            errno: errno as i32,
        }
    }

    /// A setup error that is not a system call's failure.
    pub fn msg(step: &str, op: impl Into<String>) -> Self {
        SetupError {
            step: step.to_owned(),
            op: op.into(),
            errno: 0,
        }
    }

    /// The errno of the failure, if it was a system call's.
    pub fn errno(&self) -> Option<Errno> {
        (self.errno != 0).then(|| Errno::from_raw(self.errno))
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.op)?;
        if let Some(errno) = self.errno() {
            // Lower case, as Go's (and so runc's) error strings are: engines match on them
            // (docker maps "no such file or directory" to exit code 127).
            let desc = errno.desc();
            let mut chars = desc.chars();
            if let Some(first) = chars.next() {
                write!(f, ": {}{}", first.to_lowercase(), chars.as_str())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a daemon shows its users is `to_string()`: each says what failed and why.
    #[test]
    fn errors_read_as_sentences_with_their_cause() {
        let cg = ContainerError::from(berth_cgroups::CgroupError::Write {
            path: "/sys/fs/cgroup/pids/c1/pids.max".into(),
            value: "10".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        });
        let text = cg.to_string();
        assert!(
            text.starts_with("cgroup: write \"10\" to /sys/fs/cgroup/pids/c1/pids.max"),
            "{text}"
        );
        assert!(text.contains("Permission denied"), "{text}");
        let setup = ContainerError::from(SetupError::sys(
            "mounts",
            "mount proc on /proc",
            Errno::EPERM,
        ));
        assert_eq!(
            setup.to_string(),
            "container init: mounts: mount proc on /proc: operation not permitted"
        );
        let sys = ContainerError::sys(SysOp::PidfdOpen { pid: 42 }, Errno::ESRCH);
        assert_eq!(
            sys.to_string(),
            "pidfd_open of process 42: ESRCH: No such process"
        );
        assert!(matches!(
            sys,
            ContainerError::Sys {
                op: SysOp::PidfdOpen { pid: 42 },
                source: Errno::ESRCH
            }
        ));
        let kill = ContainerError::sys(
            SysOp::PidfdSendSignal {
                pid: 7,
                signal: libc::SIGTERM,
            },
            Errno::EPERM,
        );
        assert_eq!(
            kill.to_string(),
            "send SIGTERM to process 7: EPERM: Operation not permitted"
        );
        let bad = ContainerError::InvalidSignal { signal: 99 };
        assert!(
            bad.to_string()
                .starts_with("invalid signal 99: a signal is 0"),
            "{bad}"
        );
        let io = ContainerError::Io {
            op: "connect to console socket",
            path: "/run/c.sock".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(
            io.to_string()
                .starts_with("connect to console socket /run/c.sock: No such file"),
            "{io}"
        );
    }

    #[test]
    fn with_causes_says_each_cause_once() {
        let inner = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = ContainerError::Io {
            op: "read",
            path: "/x".into(),
            source: inner,
        };
        let t = with_causes(&e);
        assert_eq!(t.matches("No such file").count(), 1, "{t}");
    }
}
