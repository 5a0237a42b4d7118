//! The container's terminal: a pty created inside the container (after `pivot_root`, so its
//! slave lives in the container's devpts), whose master is sent to the caller's console socket
//! over `SCM_RIGHTS`, as containerd, conmon and docker expect.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

use crate::error::SetupError;
use crate::sys;

/// Create the pty, send its master to `socket`, and make the slave our stdio and controlling
/// terminal.
pub fn setup_console(
    socket: BorrowedFd<'_>,
    size: Option<oci_spec::runtime::Box>,
) -> Result<(), SetupError> {
    let step = "terminal";
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| SetupError::sys(step, "open /dev/ptmx", e))?;
    grantpt(&master).map_err(|e| SetupError::sys(step, "grantpt", e))?;
    unlockpt(&master).map_err(|e| SetupError::sys(step, "unlockpt", e))?;
    let name = ptsname_r(&master).map_err(|e| SetupError::sys(step, "ptsname", e))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::sys(step, format!("open {name}"), e))?;
    if let Some(size) = size {
        let ws = Winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        sys::set_winsize(slave.as_fd(), &ws)
            .map_err(|e| SetupError::sys(step, "set console size", e))?;
    }
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| SetupError::sys(step, "send pty master to console socket", e))?;
    drop(master);
    for target in 0..3 {
        sys::dup_onto(slave.as_fd(), target)
            .map_err(|e| SetupError::sys(step, format!("dup2 pty slave to fd {target}"), e))?;
    }
    sys::set_controlling_tty(slave.as_fd())
        .map_err(|e| SetupError::sys(step, "set controlling terminal", e))?;
    Ok(())
}

/// Receive a pty master sent over a console socket connection (the counterpart of what the
/// container process does in [`setup_console`]), for callers that relay the terminal
/// themselves.
pub fn receive_master(stream: BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, nix::errno::Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::io::IoSliceMut;
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut master = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: SCM_RIGHTS just installed this fd in our table and nothing else owns
                // it; ownership is taken exactly once.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                master.get_or_insert(owned);
            }
        }
    }
    master.ok_or(nix::errno::Errno::EBADMSG)
}

/// Give terminal `to` the window size of terminal `from` (for relaying SIGWINCH); does nothing
/// if `from` is not a terminal.
pub fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    if let Ok(ws) = sys::get_winsize(from) {
        if ws.ws_row > 0 {
            let _ = sys::set_winsize(to, &ws);
        }
    }
}

/// Set the window size of terminal `fd` to `rows` x `cols` character cells (`TIOCSWINSZ`,
/// the pixel sizes zero), as a caller that relays a container's terminal does on a resize
/// request (docker's `POST /containers/{id}/resize?h=ROWS&w=COLS`, runc's console socket
/// users). `fd` is normally the pty master received from the console socket
/// ([`receive_master`]); setting the size on the master changes it for the slave inside the
/// container, and the kernel sends `SIGWINCH` to the slave's foreground process group when it
/// changes.
///
/// Errors are the `ioctl`'s errno: `ENOTTY` when `fd` is not a terminal, `EBADF`/`EINVAL`
/// for a bad descriptor.
///
/// ```
/// use std::os::fd::AsFd;
/// use berth_runtime::process::console::{set_window_size, window_size};
/// let master = nix::pty::posix_openpt(nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY)?;
/// set_window_size(master.as_fd(), 40, 132)?;
/// assert_eq!(window_size(master.as_fd()), Some((40, 132)));
/// // Not a terminal:
/// let (r, _w) = nix::unistd::pipe()?;
/// assert_eq!(set_window_size(r.as_fd(), 40, 132), Err(nix::errno::Errno::ENOTTY));
/// # Ok::<(), nix::errno::Errno>(())
/// ```
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), nix::errno::Errno> {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    sys::set_winsize(fd, &ws)
}

/// The window size of terminal `fd` as (rows, columns), if it is a terminal with a size.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    sys::get_winsize(fd)
        .ok()
        .filter(|ws| ws.ws_row > 0)
        .map(|ws| (ws.ws_row, ws.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size set on the master is what the slave (the container's side) reads.
    #[test]
    fn set_window_size_on_the_master_is_seen_on_the_slave() {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname_r(&master).unwrap();
        let slave = nix::fcntl::open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        set_window_size(master.as_fd(), 24, 80).unwrap();
        assert_eq!(window_size(slave.as_fd()), Some((24, 80)));
        set_window_size(master.as_fd(), 50, 200).unwrap();
        assert_eq!(window_size(slave.as_fd()), Some((50, 200)));
        // Both ends of a pipe: not terminals.
        let (r, w) = nix::unistd::pipe().unwrap();
        assert_eq!(
            set_window_size(w.as_fd(), 1, 1),
            Err(nix::errno::Errno::ENOTTY)
        );
        assert_eq!(window_size(r.as_fd()), None);
    }
}
