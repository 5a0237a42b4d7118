//! The user's terminal for `run` and `exec` in the foreground with `process.terminal`: receive
//! the container's pty master over a private console socket, put our terminal in raw mode and
//! relay bytes, window size and SIGWINCH until the process exits.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// A console socket of our own, in the runtime root, removed on drop.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listen on a fresh socket under `root`, which is made private to root (0700) if it is
    /// missing, as `create` makes it: this may be the first command that needs it.
    pub fn new(root: &Path, id: &str) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .with_context(|| format!("create {}", root.display()))?;
        let path = root.join(format!(".console-{id}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("listen on {}", path.display()))?;
        Ok(ConsoleSocket { path, listener })
    }

    /// The socket's path, for `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master the container process sent.
    pub fn receive(&self) -> Result<OwnedFd> {
        let (stream, _) = self.listener.accept().context("accept on console socket")?;
        berth_runtime::process::console::receive_master(stream.as_fd())
            .context("receive the pty master")
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Our terminal in raw mode; restored on drop.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    berth_runtime::process::console::copy_window_size(from, to);
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Relay between our stdio and `master`, forward signals to `pid`, and return its exit code
/// (128+signal) once it exits. `signals` must already be blocked and include SIGCHLD and
/// SIGWINCH.
pub fn relay_until_exit(pid: Pid, signals: &SigSet, master: OwnedFd) -> Result<u8> {
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let _raw = RawMode::enter();
    copy_winsize(stdout.as_fd(), master.as_fd());
    let mut stdin_open = true;
    let mut buf = [0u8; 16 * 1024];
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => {
                    drain(master.as_fd(), stdout.as_fd(), &mut buf);
                    return Ok(code as u8);
                }
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                    drain(master.as_fd(), stdout.as_fd(), &mut buf);
                    return Ok(128 + sig as u8);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (ready(0), ready(1), ready(2));
        if sig_ready {
            if let Ok(Some(info)) = sfd.read_signal() {
                match info.ssi_signo as i32 {
                    libc::SIGCHLD => {}
                    libc::SIGWINCH => copy_winsize(stdout.as_fd(), master.as_fd()),
                    sig => {
                        if let Ok(sig) = Signal::try_from(sig) {
                            let _ = kill(pid, sig);
                        }
                    }
                }
            }
        }
        if master_ready {
            match nix::unistd::read(&master, &mut buf) {
                Ok(n) if n > 0 => write_all(stdout.as_fd(), &buf[..n]),
                // EIO: every slave fd is closed; the exit comes with SIGCHLD.
                _ => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        if stdin_ready {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(n) if n > 0 => write_all(master.as_fd(), &buf[..n]),
                _ => stdin_open = false,
            }
        }
    }
}

/// Copy what is left in the pty after the process exited.
fn drain(master: BorrowedFd<'_>, out: BorrowedFd<'_>, buf: &mut [u8]) {
    loop {
        let mut fds = [PollFd::new(master, PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return;
        }
        match nix::unistd::read(master, buf) {
            Ok(n) if n > 0 => write_all(out, &buf[..n]),
            _ => return,
        }
    }
}
