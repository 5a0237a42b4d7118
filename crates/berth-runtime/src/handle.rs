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

use crate::error::ContainerError;

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
            .map_err(|e| ContainerError::sys(format!("pidfd_open {pid}"), e))?;
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
        crate::sys::pidfd_send_signal(self.pidfd.as_fd(), signal as i32)
            .map_err(|e| ContainerError::sys(format!("signal {} with {signal}", self.pid), e))
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
                        format!("poll pidfd of {}", self.pid),
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
                        format!("waitid(P_PIDFD) for {}", self.pid),
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
