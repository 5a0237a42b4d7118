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
/// Dropping a handle whose process was not waited for reaps it all the same: at once if it
/// has exited (`waitid(P_PIDFD, WNOHANG)`), else in the background, by a reaper thread that
/// this library starts the first time it is needed and that polls the pidfds it was given
/// and reaps only those (never `waitpid(-1)`). Unreaped, an exec'd process would stay a
/// zombie in the container's pid namespace, and the container's init could never finish
/// exiting (the kernel waits for every process of the namespace to be reaped): `wait` and
/// `delete` would hang. To reap the process yourself by pid instead (`waitpid(pid)`, e.g. a
/// single-threaded program that waits for all its children), give the handle up with
/// [`into_pid`](Self::into_pid): no reaper is involved then.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: Pid,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
    /// Reap the process (at once or in the background) when the handle drops unreaped.
    reap_on_drop: bool,
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
            reap_on_drop: true,
        })
    }

    /// Whether dropping the handle unreaped reaps the process (see the type's docs): off for
    /// a handle kept inside a [`crate::Container`], whose init outlives the value (a later
    /// `load` and the CLI wait for it by pid).
    pub(crate) fn set_reap_on_drop(&mut self, reap: bool) {
        self.reap_on_drop = reap;
    }

    /// Give up the handle and take over reaping: the caller waits for the process by pid
    /// (`waitpid(pid)`), which it must do (or exit) or the process stays a zombie once it
    /// exits, and keeps a container's init from finishing its exit if it is an exec'd
    /// process. Nothing is reaped in the background. What [`crate::Container::exec`]
    /// returns.
    pub fn into_pid(mut self) -> Pid {
        self.reap_on_drop = false;
        self.pid
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

impl Drop for ProcessHandle {
    /// Reap the process if it has exited, else hand its pidfd to the background reaper
    /// (unless [`into_pid`](ProcessHandle::into_pid) gave it up).
    fn drop(&mut self) {
        if !self.reap_on_drop || self.status.is_some() {
            return;
        }
        // An error (ECHILD: not, or no longer, our child) leaves nothing to reap.
        if let Ok(None) = self.try_wait() {
            if let Ok(fd) = self.pidfd.try_clone() {
                reaper::adopt(fd);
            }
        }
    }
}

/// The background reaper of processes whose handles were dropped while they ran: one thread,
/// started by the first such drop (a program that waits for its processes, like the CLI,
/// never starts it), that polls their pidfds and a wake pipe and reaps each with
/// `waitid(P_PIDFD, WNOHANG)` once it has exited. It ends, closing its pipe, once it has
/// nothing left to reap; the next drop starts another.
mod reaper {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::{Mutex, MutexGuard};

    use nix::errno::Errno;
    use nix::fcntl::OFlag;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};

    /// The running reaper's inbox.
    struct Inbox {
        /// Pidfds handed over and not yet taken by the thread.
        queue: Vec<OwnedFd>,
        /// The wake pipe's write end: a byte tells the thread to take the queue.
        wake: File,
    }

    /// `None` while no reaper thread runs.
    static INBOX: Mutex<Option<Inbox>> = Mutex::new(None);

    fn inbox() -> MutexGuard<'static, Option<Inbox>> {
        INBOX.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reap the process of `pidfd` (our child) in the background once it exits. If no
    /// thread can be started (no memory, thread limit), the process stays unreaped, as it
    /// would without this.
    pub(super) fn adopt(pidfd: OwnedFd) {
        let mut guard = inbox();
        if guard.is_none() {
            *guard = start();
        }
        if let Some(inbox) = guard.as_mut() {
            inbox.queue.push(pidfd);
            // A full pipe (O_NONBLOCK) already holds a wake-up.
            let _ = (&inbox.wake).write(&[1]);
        }
    }

    fn start() -> Option<Inbox> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()?;
        let read = File::from(read);
        std::thread::Builder::new()
            .name("berth-reaper".into())
            .spawn(move || run(read))
            .ok()?;
        Some(Inbox {
            queue: Vec::new(),
            wake: File::from(write),
        })
    }

    fn run(mut wake: File) {
        let mut held: Vec<OwnedFd> = Vec::new();
        loop {
            {
                let mut guard = inbox();
                if let Some(inbox) = guard.as_mut() {
                    held.append(&mut inbox.queue);
                }
                let mut buf = [0u8; 64];
                while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
                held.retain(still_running);
                if held.is_empty() {
                    // Under the lock: no drop can hand us a pidfd meanwhile.
                    *guard = None;
                    return;
                }
            }
            let mut fds = Vec::with_capacity(held.len() + 1);
            fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
            fds.extend(
                held.iter()
                    .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                // Not expected with valid fds; do not spin.
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }

    /// Reap the pidfd's process if it has exited: whether it still runs.
    fn still_running(fd: &OwnedFd) -> bool {
        loop {
            match waitid(
                Id::PIDFd(fd.as_fd()),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            ) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::StillAlive) => return true,
                // Reaped, or not ours to reap (ECHILD): done with it either way.
                _ => return false,
            }
        }
    }

    /// Whether a reaper thread runs now (for tests).
    #[cfg(test)]
    pub(super) fn running() -> bool {
        inbox().is_some()
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

    /// Whether `pid` is still our (zombie or live) child, within `limit` of it not being.
    fn still_our_child_after(pid: Pid, limit: Duration) -> bool {
        let me = std::process::id() as i32;
        let deadline = Instant::now() + limit;
        loop {
            let ours = crate::procfs::ProcStat::of(pid.as_raw()).is_some_and(|s| s.ppid == me);
            if !ours || Instant::now() > deadline {
                return ours;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    // The dropped handle reaps it (what is tested); clippy cannot see that.
    #[allow(clippy::zombie_processes)]
    fn a_dropped_handle_of_a_running_process_reaps_it_once_it_exits() {
        let mut c = std::process::Command::new("/bin/sh")
            .args(["-c", "read x"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = c.stdin.take().unwrap();
        let h = ProcessHandle::of_child(Pid::from_raw(c.id() as i32)).unwrap();
        let pid = h.pid();
        drop(h);
        assert!(reaper::running(), "no reaper took the running process");
        drop(stdin); // `read` returns: it exits
        assert!(
            !still_our_child_after(pid, Duration::from_secs(10)),
            "the process was left a zombie"
        );
        // With nothing left to reap, the thread ends (and closes its pipe).
        let deadline = Instant::now() + Duration::from_secs(10);
        while reaper::running() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!reaper::running(), "the reaper thread outlived its work");
    }

    #[test]
    fn a_dropped_handle_of_an_exited_process_reaps_it_at_once() {
        let h = child("exit 0");
        let mut fds = [PollFd::new(h.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(10_000u16)).unwrap(), 1);
        let pid = h.pid();
        drop(h);
        assert!(!still_our_child_after(pid, Duration::ZERO), "left a zombie");
    }

    #[test]
    fn into_pid_leaves_reaping_to_the_caller() {
        let h = child("exit 5");
        let pid = h.into_pid();
        assert_eq!(
            nix::sys::wait::waitpid(pid, None).unwrap(),
            WaitStatus::Exited(pid, 5)
        );
    }

    #[test]
    fn the_fd_is_readable_once_the_process_exits() {
        let mut h = child("exit 0");
        let mut fds = [PollFd::new(h.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(10_000u16)).unwrap(), 1);
        assert!(h.try_wait().unwrap().unwrap().success());
    }
}
