//! Container processes by pidfd: a [`ProcessHandle`] refers to one process (a container's
//! init, or a process started by [`crate::Container::exec`]) and never to a later process that
//! reuses its pid, and waits for it with `waitid(P_PIDFD)`, so a long-lived host never reaps
//! an unrelated child by mistake.
//!
//! The handle is pollable ([`AsFd`]): its fd becomes readable when the process exits, so an
//! async runtime can wait for it without a thread, e.g. with tokio's `AsyncFd`:
//!
//! ```ignore
//! let fd = tokio::io::unix::AsyncFd::new(handle.as_fd())?;
//! let _ready = fd.readable().await?;
//! let status = handle.try_wait()?.expect("readable means exited");
//! ```

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{ContainerError, SysOp};

/// How a container process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It called `exit` with this code (0 to 255).
    Exited(i32),
    /// It was killed by this signal.
    Signaled(Signal),
}

impl ExitStatus {
    /// The code a shell (and `berth run`) reports: the exit code, or 128 + the signal number.
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s as i32,
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited with status {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by {}", s.as_str()),
        }
    }
}

/// A container process the caller started (and is the parent of), held by a pidfd.
///
/// Dropping the handle does not reap the process: wait for it ([`wait`](Self::wait),
/// [`try_wait`](Self::try_wait)) or it stays a zombie once it exits, until this program
/// exits.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: Pid,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
}

impl ProcessHandle {
    /// A handle of `pid`, which must be an unreaped child of the caller (so that its pid
    /// cannot have been reused yet).
    pub(crate) fn of_child(pid: Pid) -> Result<Self, ContainerError> {
        let pidfd = crate::sys::pidfd_open(pid)
            .map_err(|e| ContainerError::sys(SysOp::PidfdOpen { pid: pid.as_raw() }, e))?;
        Ok(ProcessHandle {
            pid,
            pidfd,
            status: None,
        })
    }

    /// The process's pid in the caller's pid namespace.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Send `signal` to the process through its pidfd (`pidfd_send_signal`): never to another
    /// process that reused the pid. `ESRCH` once it has exited.
    pub fn signal(&self, signal: Signal) -> Result<(), ContainerError> {
        crate::sys::pidfd_send_signal(self.pidfd.as_fd(), signal as i32).map_err(|e| {
            ContainerError::sys(
                SysOp::PidfdSendSignal {
                    pid: self.pid.as_raw(),
                    signal: signal as i32,
                },
                e,
            )
        })
    }

    /// The exit status if the process has exited (and reap it), `None` while it runs. Once
    /// reaped, the same status is returned again.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ContainerError> {
        self.wait_flags(WaitPidFlag::WNOHANG)
    }

    /// Block until the process exits; its exit status.
    pub fn wait(&mut self) -> Result<ExitStatus, ContainerError> {
        loop {
            if let Some(s) = self.wait_flags(WaitPidFlag::empty())? {
                return Ok(s);
            }
        }
    }

    /// [`wait`](Self::wait) at most `limit`: `None` if it still runs then.
    pub fn wait_timeout(&mut self, limit: Duration) -> Result<Option<ExitStatus>, ContainerError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            let mut fds = [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    return Err(ContainerError::sys(
                        SysOp::PollPidfd {
                            pid: self.pid.as_raw(),
                        },
                        e,
                    ))
                }
            }
        }
    }

    fn wait_flags(&mut self, flags: WaitPidFlag) -> Result<Option<ExitStatus>, ContainerError> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let status = loop {
            match waitid(Id::PIDFd(self.pidfd.as_fd()), WaitPidFlag::WEXITED | flags) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::Exited(_, code)) => break ExitStatus::Exited(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => break ExitStatus::Signaled(sig),
                Ok(_) => return Ok(None),
                Err(e) => {
                    return Err(ContainerError::sys(
                        SysOp::Waitid {
                            pid: self.pid.as_raw(),
                        },
                        e,
                    ))
                }
            }
        };
        self.status = Some(status);
        Ok(Some(status))
    }
}

impl AsFd for ProcessHandle {
    /// The pidfd: readable (`POLLIN`) once the process has exited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}

impl std::os::fd::AsRawFd for ProcessHandle {
    /// The pidfd's number (what tokio's `AsyncFd` wants).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.pidfd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The handle reaps it (what is tested); clippy cannot see that.
    #[allow(clippy::zombie_processes)]
    fn child(script: &str) -> ProcessHandle {
        let c = std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .spawn()
            .unwrap();
        ProcessHandle::of_child(Pid::from_raw(c.id() as i32)).unwrap()
    }

    #[test]
    fn wait_gives_the_exit_status_once_and_keeps_it() {
        let mut h = child("exit 7");
        assert_eq!(h.wait().unwrap(), ExitStatus::Exited(7));
        // Reaped: asking again gives the same status, and never waits for another process.
        assert_eq!(h.try_wait().unwrap(), Some(ExitStatus::Exited(7)));
        assert_eq!(h.wait().unwrap().code(), 7);
    }

    #[test]
    fn a_running_process_is_none_until_signalled() {
        let mut h = child("exec sleep 100");
        assert_eq!(h.try_wait().unwrap(), None);
        assert_eq!(
            h.wait_timeout(Duration::from_millis(30)).unwrap(),
            None,
            "sleep 100 exited"
        );
        h.signal(Signal::SIGKILL).unwrap();
        let st = h.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(st, Some(ExitStatus::Signaled(Signal::SIGKILL)));
        assert_eq!(st.unwrap().code(), 137);
        assert_eq!(st.unwrap().to_string(), "killed by SIGKILL");
    }

    #[test]
    fn the_fd_is_readable_once_the_process_exits() {
        let mut h = child("exit 0");
        let mut fds = [PollFd::new(h.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(10_000u16)).unwrap(), 1);
        assert!(h.try_wait().unwrap().unwrap().success());
    }
}
