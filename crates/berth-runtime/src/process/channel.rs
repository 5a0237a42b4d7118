//! The parent/child synchronisation channel: one `SOCK_SEQPACKET` socketpair carrying typed
//! messages (JSON-encoded, one message per packet), and file descriptors where needed.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::SetupError;

/// Messages from the container's init process to the runtime.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    /// The container process is not our direct child (a pid namespace was joined): its pid.
    Pid(i32),
    /// From the spawn helper: the process it cloned (our child too, `CLONE_PARENT`).
    Cloned {
        /// Its pid.
        pid: i32,
        /// It started in the container's unified cgroup (`clone3(CLONE_INTO_CGROUP)`).
        in_unified_cgroup: bool,
    },
    /// The mounts are done: run the prestart and createRuntime hooks now.
    RunCreateRuntimeHooks,
    /// The seccomp notify fd is attached: send it to the spec's listener.
    SeccompFd,
    /// Setup is complete; init now waits for `start`.
    Ready,
    /// Setup failed.
    Failed(SetupError),
}

/// Messages from the runtime to the container's init process.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// The cgroup is joined and the id mappings are written: go on.
    Go,
    /// The createRuntime hooks have run: go on.
    HooksDone,
    /// The seccomp notify fd has been passed on.
    SeccompDone,
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl std::os::fd::AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }
}

/// The largest message: a `SetupError` with a long path fits easily.
const MAX_MESSAGE: usize = 64 * 1024;

impl Channel {
    /// One end received from elsewhere (the spawn helper's, see [`crate::spawn`]).
    pub(crate) fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// A connected pair (both ends close-on-exec).
    pub fn pair() -> Result<(Channel, Channel), Errno> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// The raw descriptor (to keep it open across the child's fd clean-up).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Send one message.
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), Errno> {
        let data = serde_json::to_vec(msg).map_err(|_| Errno::EINVAL)?;
        self.send_raw(&data, None)
    }

    /// Send a message with a file descriptor attached.
    pub fn send_with_fd<T: Serialize>(&self, msg: &T, fd: RawFd) -> Result<(), Errno> {
        let data = serde_json::to_vec(msg).map_err(|_| Errno::EINVAL)?;
        self.send_raw(&data, Some(fd))
    }

    fn send_raw(&self, data: &[u8], fd: Option<RawFd>) -> Result<(), Errno> {
        let iov = [IoSlice::new(data)];
        let fds = fd.map(|f| [f]);
        let cmsgs: Vec<ControlMessage<'_>> = fds
            .as_ref()
            .map(|f| vec![ControlMessage::ScmRights(f)])
            .unwrap_or_default();
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(Errno::EINTR) => continue,
                other => return other.map(drop),
            }
        }
    }

    /// Receive one message; `Ok(None)` when the other end has closed.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<Option<T>, Errno> {
        Ok(self.recv_with_fd()?.map(|(m, _)| m))
    }

    /// Receive one message and the descriptor attached to it, if any.
    pub fn recv_with_fd<T: DeserializeOwned>(&self) -> Result<Option<(T, Option<OwnedFd>)>, Errno> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                // SAFETY: SCM_RIGHTS just installed this fd in our table and
                                // nothing else owns it; we take ownership exactly once.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (msg.bytes, fd);
                }
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len]).map_err(|_| Errno::EBADMSG)?;
        Ok(Some((msg, fd)))
    }
}
