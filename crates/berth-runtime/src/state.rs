//! The state directory of a container: `<root>/<id>/` with `state.json`, the exec fifo and a
//! copy of the configuration, and the lock that serialises operations on one container.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

/// Name of the state file inside the container's state directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the exec fifo: `start` opens it to let the init process exec the user's program.
pub const EXEC_FIFO: &str = "exec.fifo";
/// Name of the configuration copy kept for `start`, `exec` and `delete`.
pub const CONFIG_FILE: &str = "config.json";

/// An error of the state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file of the state directory could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another command held the container's lock for longer than the wait allowed.
    #[error(
        "container is busy: timed out after {waited:?} waiting for the lock of {path}, held \
         by another berth command (BERTH_LOCK_TIMEOUT sets the wait, in seconds)"
    )]
    Busy {
        /// The state directory.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The lock was let go for hooks ([`StateDir::relock`]) and, when it was taken again,
    /// another command had removed the directory (or put another container's at the id).
    #[error(
        "the container {path} was deleted by another command while the lock was shared for \
         its hooks"
    )]
    Lost {
        /// The state directory.
        path: PathBuf,
    },
    /// `state.json` is corrupt (`the container state /run/berth/c1/state.json is corrupt:
    /// EOF while parsing a value at line 1 column 0`).
    #[error("the container state {path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The status of a container, as the runtime spec names it (plus runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Being created.
    Creating,
    /// Created: the init process waits for `start`.
    Created,
    /// The user's program runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The container process has exited.
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime remembers of a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// The container id.
    pub id: String,
    /// Host pid of the container's init process.
    pub pid: i32,
    /// Start time of the init process (field 22 of /proc/PID/stat), to detect pid reuse.
    pub pid_start_time: u64,
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 with nanoseconds, UTC.
    pub created: String,
    /// The annotations of the configuration.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// What is needed to reopen the container's cgroup.
    pub cgroup: berth_cgroups::CgroupSaved,
    /// Whether the container has its own pid namespace (then killing init kills all).
    pub own_pid_ns: bool,
    /// Whether the configuration has poststart hooks (so that `start` reads it only then).
    #[serde(default)]
    pub has_poststart_hooks: bool,
    /// Whether the configuration has poststop hooks (so that `delete` reads it only then).
    #[serde(default)]
    pub has_poststop_hooks: bool,
    /// Whether the status was set to stopped explicitly (after a failed start).
    #[serde(default)]
    pub stopped: bool,
    /// Whether `create` had not finished when this was written: `create` saves the state
    /// before each step it could not take back (cgroup, init), so that a `delete` after a
    /// crash knows what to undo. Seen by a command holding the lock, it means the create died.
    #[serde(default)]
    pub creating: bool,
    /// The namespaces made for this container (not joined), as init had them: the
    /// processes that are the container's, as opposed to others in a shared cgroup.
    #[serde(default)]
    pub namespaces: Vec<NsIdentity>,
}

/// One namespace of a container: its kind (as `/proc/PID/ns/` names it) and identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsIdentity {
    /// `mnt`, `pid`, `net`, ...
    pub kind: String,
    /// Device of the nsfs inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl NsIdentity {
    /// The namespace `kind` of process `pid`, `None` if it cannot be read.
    pub fn of(pid: i32, kind: &str) -> Option<Self> {
        let st = nix::sys::stat::stat(format!("/proc/{pid}/ns/{kind}").as_str()).ok()?;
        Some(NsIdentity {
            kind: kind.to_owned(),
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// The state of a container in the JSON shape `runc state` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    /// Version of the runtime spec.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Pid of init (0 once stopped).
    pub pid: i32,
    /// Status.
    pub status: Status,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root filesystem.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// Owner (empty for root, like runc).
    pub owner: String,
    /// Annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

/// How long a command waits for another command to release a container's lock before it
/// gives up with [`StateError::Busy`], unless `BERTH_LOCK_TIMEOUT` (seconds) says otherwise.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The lock wait in force: `BERTH_LOCK_TIMEOUT` (seconds, fractions allowed) or
/// [`LOCK_TIMEOUT`].
pub fn lock_timeout() -> Duration {
    std::env::var("BERTH_LOCK_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .unwrap_or(LOCK_TIMEOUT)
}

/// How a state directory is locked: commands that change a container take it exclusively,
/// readers (`state`, `list`, `ps`, `events`) shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockMode {
    /// Several readers at once, no writer.
    Shared,
    /// One command alone.
    Exclusive,
}

/// The state directory of one container, locked for the lifetime of this value.
///
/// Every file in it is opened relative to the locked directory's fd (never by a path that
/// could have been swapped), created with `O_EXCL | O_NOFOLLOW` and renamed into place.
/// The directory is `0700`: nothing in it is reachable by other users.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    id: String,
    root: OwnedFd,
    lock: Flock<File>,
    /// The directory's (device, inode) when it was locked.
    identity: (u64, u64),
}

/// Files of the state directory larger than this are refused as corrupt.
const MAX_STATE_FILE: u64 = 16 << 20;

impl StateDir {
    /// Create `<root>/<id>` (mode 0700, failing with `EEXIST` if it exists) and lock it
    /// exclusively. The runtime root is made (mode 0700) if missing.
    pub fn create(root: &Path, id: &str) -> Result<Self, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io("create runtime root", root))?;
        let root_fd = open_root(root)?.ok_or_else(|| StateError::Io {
            op: "open runtime root",
            path: root.to_owned(),
            source: Errno::ENOENT.into(),
        })?;
        let path = root.join(id);
        nix::sys::stat::mkdirat(&root_fd, id, Mode::from_bits_truncate(0o700))
            .map_err(|e| errno("create state directory", &path, e))?;
        match Self::lock_at(root_fd, root, id, LockMode::Exclusive, lock_timeout())? {
            Locked::Dir(d) => Ok(d),
            // Removed or replaced between our mkdir and our lock: someone else's now.
            Locked::Gone | Locked::Replaced => {
                Err(errno("lock state directory", &path, Errno::EEXIST))
            }
        }
    }

    /// Open and lock an existing `<root>/<id>`; `Ok(None)` if it does not exist.
    ///
    /// After the lock is taken, the directory is checked to still be the one named
    /// `<root>/<id>` (device and inode): one removed meanwhile is `None`, one replaced by a new
    /// container of the same id is locked afresh. Waits for the lock at most [`lock_timeout`].
    pub fn open(root: &Path, id: &str, mode: LockMode) -> Result<Option<Self>, StateError> {
        Self::open_within(root, id, mode, lock_timeout())
    }

    /// [`open`](Self::open), waiting for a busy lock at most `wait` (zero: not at all) before
    /// [`StateError::Busy`]. Readers that must never block take it with zero and fall back to
    /// [`peek`] (`list`, `state`: a create holds its lock while its hooks run).
    pub fn open_within(
        root: &Path,
        id: &str,
        mode: LockMode,
        wait: Duration,
    ) -> Result<Option<Self>, StateError> {
        for _ in 0..8 {
            let Some(root_fd) = open_root(root)? else {
                return Ok(None);
            };
            match Self::lock_at(root_fd, root, id, mode, wait)? {
                Locked::Dir(d) => return Ok(Some(d)),
                Locked::Gone => return Ok(None),
                Locked::Replaced => continue,
            }
        }
        Err(errno("lock state directory", &root.join(id), Errno::EAGAIN))
    }

    fn lock_at(
        root: OwnedFd,
        root_path: &Path,
        id: &str,
        mode: LockMode,
        wait: Duration,
    ) -> Result<Locked, StateError> {
        let path = root_path.join(id);
        let fd = match nix::fcntl::openat(
            &root,
            id,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(Locked::Gone),
            Err(e) => return Err(errno("open state directory", &path, e)),
        };
        let lock = lock_with_timeout(File::from(fd), mode, wait, &path)?;
        let locked = nix::sys::stat::fstat(lock.as_fd())
            .map_err(|e| errno("fstat state directory", &path, e))?;
        match nix::sys::stat::fstatat(&root, id, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(now) if now.st_dev == locked.st_dev && now.st_ino == locked.st_ino => {
                Ok(Locked::Dir(StateDir {
                    path,
                    id: id.to_owned(),
                    root,
                    lock,
                    identity: (locked.st_dev, locked.st_ino),
                }))
            }
            Ok(_) => Ok(Locked::Replaced),
            Err(Errno::ENOENT) => Ok(Locked::Gone),
            Err(e) => Err(errno("stat state directory", &path, e)),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's (device, inode), as it was when locked: which container this is, as
    /// opposed to a later one made at the same id.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Path of the exec fifo (for messages; open it with [`open_fifo`](Self::open_fifo)).
    pub fn fifo(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    /// Change how this directory is locked, waiting at most [`lock_timeout`]: a command
    /// holding it exclusively goes down to [`LockMode::Shared`] while it runs hooks, which may
    /// call back into the runtime (`berth state`), and back up afterwards. Linux converts a
    /// `flock` by releasing and re-taking it: another command may get the lock in between, so
    /// once it is taken the directory is checked to still be the one at the id (device and
    /// inode), else [`StateError::Lost`] (a `delete --force` that came in while the hooks ran).
    pub fn relock(&self, mode: LockMode) -> Result<(), StateError> {
        self.relock_only(mode)?;
        let locked = nix::sys::stat::fstat(self.fd()).map_err(|e| errno("fstat", &self.path, e))?;
        match nix::sys::stat::fstatat(&self.root, self.id.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(now) if now.st_dev == locked.st_dev && now.st_ino == locked.st_ino => Ok(()),
            Ok(_) | Err(Errno::ENOENT) => Err(StateError::Lost {
                path: self.path.clone(),
            }),
            Err(e) => Err(errno("stat state directory", &self.path, e)),
        }
    }

    fn relock_only(&self, mode: LockMode) -> Result<(), StateError> {
        let arg = match mode {
            LockMode::Shared => FlockArg::LockSharedNonblock,
            LockMode::Exclusive => FlockArg::LockExclusiveNonblock,
        };
        let timeout = lock_timeout();
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(1);
        loop {
            match self.lock.relock(arg) {
                Ok(()) => return Ok(()),
                Err(Errno::EWOULDBLOCK) | Err(Errno::EINTR) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(StateError::Busy {
                            path: self.path.clone(),
                            waited: timeout,
                        });
                    }
                    std::thread::sleep(delay.min(deadline - now));
                    delay = (delay * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(errno("lock state directory", &self.path, e)),
            }
        }
    }

    /// The locked directory's fd (for `fstat`-style checks).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.lock.as_fd()
    }

    /// Make the exec fifo: mode 0622 (the container's user, maybe not root, reopens it for
    /// writing through the fd the runtime hands it), in this 0700 directory that no other user
    /// can enter. Returns an `O_PATH` fd of it for the init process.
    pub fn make_fifo(&self) -> Result<OwnedFd, StateError> {
        let path = self.fifo();
        nix::unistd::mkfifoat(self.fd(), EXEC_FIFO, Mode::from_bits_truncate(0o622))
            .map_err(|e| errno("mkfifo", &path, e))?;
        let fd = nix::fcntl::openat(
            self.fd(),
            EXEC_FIFO,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno("open", &path, e))?;
        // Whatever our umask: through /proc/self/fd only the inode's own mode counts.
        nix::sys::stat::fchmodat(
            self.fd(),
            EXEC_FIFO,
            Mode::from_bits_truncate(0o622),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| errno("chmod", &path, e))?;
        Ok(fd)
    }

    /// Whether the exec fifo exists (the container has not been started).
    pub fn has_fifo(&self) -> bool {
        self.fifo_id().is_some()
    }

    /// The exec fifo's (device, inode), if it exists.
    pub fn fifo_id(&self) -> Option<(u64, u64)> {
        nix::sys::stat::fstatat(self.fd(), EXEC_FIFO, AtFlags::AT_SYMLINK_NOFOLLOW)
            .ok()
            .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
            .map(|st| (st.st_dev, st.st_ino))
    }

    /// Open the exec fifo for reading without blocking (what `start` does).
    pub fn open_fifo(&self) -> Result<OwnedFd, StateError> {
        nix::fcntl::openat(
            self.fd(),
            EXEC_FIFO,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno("open", &self.fifo(), e))
    }

    /// Remove the exec fifo (once started).
    pub fn remove_fifo(&self) -> Result<(), StateError> {
        match nix::unistd::unlinkat(
            self.fd(),
            EXEC_FIFO,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno("remove", &self.fifo(), e)),
        }
    }

    /// Read file `name` of the directory (not following a symlink), `None` if it is missing.
    pub fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        read_at(self.fd(), &self.path, name)
    }

    /// Write file `name` of the directory atomically: a new file (`O_EXCL | O_NOFOLLOW`,
    /// mode 0600) renamed over it.
    pub fn write_file(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        write_new_file_at(self.fd(), &self.path, name, data, 0o600).map_err(|(op, p, e)| {
            StateError::Io {
                op,
                path: p,
                source: e,
            }
        })
    }

    /// Read `state.json`; `Ok(None)` if there is none (a create that died before writing it).
    pub fn load(&self) -> Result<Option<ContainerState>, StateError> {
        let Some(data) = self.read_file(STATE_FILE)? else {
            return Ok(None);
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|source| StateError::Corrupt {
                path: self.path.join(STATE_FILE),
                source,
            })
    }

    /// Write `state.json` atomically (a new file renamed over the old one).
    pub fn save(&self, state: &ContainerState) -> Result<(), StateError> {
        let data = serde_json::to_vec(state).map_err(|source| StateError::Corrupt {
            path: self.path.join(STATE_FILE),
            source,
        })?;
        self.write_file(STATE_FILE, &data)
    }

    /// Remove the whole directory: every other file first, `state.json` last (so that a
    /// removal cut short leaves what a later `delete` needs), then the directory itself.
    pub fn remove(self) -> Result<(), StateError> {
        let path = self.path.clone();
        remove_contents(self.fd(), &path, true)?;
        crash_point("delete:emptied");
        match nix::unistd::unlinkat(
            &self.root,
            self.id.as_str(),
            nix::unistd::UnlinkatFlags::RemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno("remove state directory", &path, e)),
        }
    }
}

enum Locked {
    Dir(StateDir),
    Gone,
    Replaced,
}

fn errno(op: &'static str, path: &Path, e: Errno) -> StateError {
    StateError::Io {
        op,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// The runtime root, `None` if it does not exist.
fn open_root(root: &Path) -> Result<Option<OwnedFd>, StateError> {
    match nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(errno("open runtime root", root, e)),
    }
}

/// `name` in the directory `dir` (`dir_path` names it in errors), at most [`MAX_STATE_FILE`]
/// bytes, never through a symlink; `None` if it does not exist.
fn read_at(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &str,
) -> Result<Option<Vec<u8>>, StateError> {
    let path = dir_path.join(name);
    let fd = match nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(errno("open", &path, e)),
    };
    let mut data = Vec::new();
    File::from(fd)
        .take(MAX_STATE_FILE + 1)
        .read_to_end(&mut data)
        .map_err(io("read", &path))?;
    if data.len() as u64 > MAX_STATE_FILE {
        return Err(errno("read", &path, Errno::EFBIG));
    }
    Ok(Some(data))
}

/// What a reader sees of `<root>/<id>` without its lock: `state.json` (written only by
/// rename, so always whole; `None` while the create that holds the lock has not written it
/// yet) and the exec fifo's identity. `Ok(None)` if the directory does not exist.
#[derive(Debug)]
pub struct Peek {
    /// The saved state, if written yet.
    pub state: Option<ContainerState>,
    /// The exec fifo's (device, inode), while there is one.
    pub fifo: Option<(u64, u64)>,
}

/// Read `<root>/<id>` without taking its lock, for readers that must not wait for a
/// command that holds it (see [`StateDir::open_within`]).
pub fn peek(root: &Path, id: &str) -> Result<Option<Peek>, StateError> {
    let Some(root_fd) = open_root(root)? else {
        return Ok(None);
    };
    let path = root.join(id);
    let dir = match nix::fcntl::openat(
        &root_fd,
        id,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(errno("open state directory", &path, e)),
    };
    let state = match read_at(dir.as_fd(), &path, STATE_FILE)? {
        Some(data) => {
            Some(
                serde_json::from_slice(&data).map_err(|source| StateError::Corrupt {
                    path: path.join(STATE_FILE),
                    source,
                })?,
            )
        }
        None => None,
    };
    let fifo = nix::sys::stat::fstatat(&dir, EXEC_FIFO, AtFlags::AT_SYMLINK_NOFOLLOW)
        .ok()
        .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
        .map(|st| (st.st_dev, st.st_ino));
    Ok(Some(Peek { state, fifo }))
}

/// `flock` in `mode`, retrying a busy lock until `timeout` has passed.
fn lock_with_timeout(
    file: File,
    mode: LockMode,
    timeout: Duration,
    path: &Path,
) -> Result<Flock<File>, StateError> {
    let arg = match mode {
        LockMode::Shared => FlockArg::LockSharedNonblock,
        LockMode::Exclusive => FlockArg::LockExclusiveNonblock,
    };
    let deadline = Instant::now() + timeout;
    let mut file = file;
    let mut delay = Duration::from_millis(1);
    loop {
        match Flock::lock(file, arg) {
            Ok(l) => return Ok(l),
            Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(StateError::Busy {
                        path: path.to_owned(),
                        waited: timeout,
                    });
                }
                file = f;
                std::thread::sleep(delay.min(deadline - now));
                delay = (delay * 2).min(Duration::from_millis(20));
            }
            Err((_, e)) => return Err(errno("lock state directory", path, e)),
        }
    }
}

/// Remove everything in the directory `dir` (`path` names it in errors), depth first; with
/// `state_last`, `state.json` goes after every other entry.
fn remove_contents(dir: BorrowedFd<'_>, path: &Path, state_last: bool) -> Result<(), StateError> {
    let mut listing = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno("open", path, e))?;
    let mut names: Vec<(std::ffi::CString, bool)> = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(|e| errno("read directory", path, e))?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let is_dir = entry.file_type() == Some(nix::dir::Type::Directory);
        names.push((name.to_owned(), is_dir));
    }
    drop(listing);
    if state_last {
        names.sort_by_key(|(n, _)| n.to_bytes() == STATE_FILE.as_bytes());
    }
    for (name, is_dir) in names {
        if state_last && name.to_bytes() == STATE_FILE.as_bytes() {
            crash_point("delete:state-file");
        }
        let sub = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        if is_dir {
            let fd = nix::fcntl::openat(
                dir,
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| errno("open", &sub, e))?;
            remove_contents(fd.as_fd(), &sub, false)?;
        }
        let flag = if is_dir {
            nix::unistd::UnlinkatFlags::RemoveDir
        } else {
            nix::unistd::UnlinkatFlags::NoRemoveDir
        };
        match nix::unistd::unlinkat(dir, name.as_c_str(), flag) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(errno("remove", &sub, e)),
        }
    }
    Ok(())
}

/// Write `data` to `dir/name` without ever writing through a link: a new file with a random
/// name is created with `O_CREAT | O_EXCL | O_NOFOLLOW` (mode `mode`) relative to `dir`,
/// written, then renamed over `name`. A symlink (or anything but a regular file) already at
/// `name` is refused with `ELOOP`/`EISDIR`-style errors, as runc refuses to write through one.
///
/// Errors are (operation, path, cause).
pub fn write_new_file_at(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &str,
    data: &[u8],
    mode: u32,
) -> Result<(), (&'static str, PathBuf, std::io::Error)> {
    write_file_at(dir, dir_path, name, data, mode, false)
}

/// [`write_new_file_at`], durable: the new file is `fsync`ed before the rename and the
/// directory after it, so that after a crash `name` holds either the old or the new content
/// (for files a daemon keeps across restarts, such as a bundle's `config.json`).
pub(crate) fn write_new_file_durably_at(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &str,
    data: &[u8],
    mode: u32,
) -> Result<(), (&'static str, PathBuf, std::io::Error)> {
    write_file_at(dir, dir_path, name, data, mode, true)
}

fn write_file_at(
    dir: BorrowedFd<'_>,
    dir_path: &Path,
    name: &str,
    data: &[u8],
    mode: u32,
    durable: bool,
) -> Result<(), (&'static str, PathBuf, std::io::Error)> {
    let target = dir_path.join(name);
    match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
            return Err((
                "refuse to write through the symlink",
                target,
                Errno::ELOOP.into(),
            ))
        }
        Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFREG => {
            return Err((
                "refuse to replace what is not a regular file:",
                target,
                Errno::EEXIST.into(),
            ))
        }
        Ok(_) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(("stat", target, e.into())),
    }
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut tries = 0;
    let (tmp, fd) = loop {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let tmp = format!(".{name}.{}.{n}.{nanos:08x}.tmp", std::process::id());
        match nix::fcntl::openat(
            dir,
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(fd) => break (tmp, fd),
            Err(Errno::EEXIST) if tries < 16 => tries += 1,
            Err(e) => return Err(("create", dir_path.join(&tmp), e.into())),
        }
    };
    let unlink_tmp = || {
        let _ = nix::unistd::unlinkat(dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
    };
    let mut f = File::from(fd);
    if let Err(e) = f.write_all(data) {
        unlink_tmp();
        return Err(("write", dir_path.join(&tmp), e));
    }
    if durable {
        if let Err(e) = f.sync_all() {
            unlink_tmp();
            return Err(("fsync", dir_path.join(&tmp), e));
        }
    }
    drop(f);
    if let Err(e) = nix::fcntl::renameat(dir, tmp.as_str(), dir, name) {
        unlink_tmp();
        return Err(("rename to", target, e.into()));
    }
    if durable {
        nix::unistd::fsync(dir).map_err(|e| ("fsync", dir_path.to_owned(), e.into()))?;
    }
    Ok(())
}

/// Write `data` to the file at `path` as [`write_new_file_at`] does, relative to an fd of its
/// parent directory (opened following links, as the caller named it): for pid files.
pub fn write_new_file(
    path: &Path,
    data: &[u8],
    mode: u32,
) -> Result<(), (&'static str, PathBuf, std::io::Error)> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        (
            "no file name in",
            path.to_owned(),
            std::io::Error::from(Errno::EINVAL),
        )
    })?;
    let dir = nix::fcntl::open(
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ("open directory", parent.to_owned(), std::io::Error::from(e)))?;
    write_new_file_at(dir.as_fd(), parent, name, data, mode)
}

/// A test-only crash point: in debug builds, if `BERTH_TEST_CRASH_AT` names `step`, the
/// process kills itself with `SIGKILL` right here, as a crash would. Release builds ignore it.
pub fn crash_point(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("BERTH_TEST_CRASH_AT").is_some_and(|v| v == step) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}

/// Start time of process `pid` in clock ticks since boot, or `None` if it does not exist or is a
/// zombie (a zombie container process is stopped).
pub fn process_start_time(pid: i32) -> Option<u64> {
    crate::procfs::ProcStat::of(pid)
        .filter(|st| !st.is_exited())
        .map(|st| st.start_time)
}

/// Whether process `pid` has the file `(dev, ino)` open (any fd, `O_PATH` included); `None`
/// when its fds cannot be looked at (another user's non-dumpable process).
pub fn holds_file(pid: i32, file: (u64, u64)) -> Option<bool> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).ok()?;
    for e in entries.flatten() {
        if let Ok(st) = nix::sys::stat::stat(&e.path()) {
            if (st.st_dev, st.st_ino) == file {
                return Some(true);
            }
        }
    }
    Some(false)
}

/// Whether the process that was `pid` with `start_time` still runs (and is not a zombie).
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && process_start_time(pid) == Some(start_time)
}

/// Names of all container state directories under `root` (empty if `root` is missing).
pub fn list_ids(root: &Path) -> Result<Vec<String>, StateError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read runtime root", root)(e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Check that `id` is usable as a container id (runc's rule: `^[\w+-\.]+$`, not `.` or `..`).
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id == "." || id == ".." {
        return Err("must not be . or ..");
    }
    if id.len() > 1024 {
        return Err("is too long");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return Err("may only contain letters, digits, '_', '+', '-' and '.'");
    }
    Ok(())
}

/// Now as RFC 3339 with nanoseconds in UTC, like Go's `time.RFC3339Nano`.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Format a Unix time as RFC 3339 UTC with nanoseconds (trailing zeros trimmed, as Go does).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Map an errno from `mkdir` of a state directory to "already exists".
pub(crate) fn is_exists(err: &StateError) -> bool {
    matches!(err, StateError::Io { source, .. } if source.raw_os_error() == Some(Errno::EEXIST as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_go() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 120_000_000), "2000-02-29T00:00:00.12Z");
    }

    #[test]
    fn ids() {
        assert!(check_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_start_time_is_found() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).expect("own stat");
        assert!(is_alive(me, t));
        assert!(!is_alive(me, t + 1));
    }

    #[test]
    fn state_dir_create_is_exclusive() {
        let root = tempfile::tempdir().unwrap();
        let d = StateDir::create(root.path(), "x").unwrap();
        let err = StateDir::create(root.path(), "x").unwrap_err();
        assert!(is_exists(&err));
        d.remove().unwrap();
        assert!(StateDir::open(root.path(), "x", LockMode::Shared)
            .unwrap()
            .is_none());
    }

    #[test]
    fn state_dir_is_private_and_files_are_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let d = StateDir::create(root.path(), "x").unwrap();
        let mode = std::fs::metadata(d.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let victim = root.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("pid")).unwrap();
        let err = d.write_file("pid", b"1").unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        d.write_file("other", b"1").unwrap();
        assert_eq!(d.read_file("other").unwrap().unwrap(), b"1");
        d.remove().unwrap();
        assert!(!root.path().join("x").exists());
    }

    #[test]
    fn holds_file_sees_our_own_fds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x").unwrap();
        let st = nix::sys::stat::stat(&path).unwrap();
        let id = (st.st_dev, st.st_ino);
        let me = std::process::id() as i32;
        let f = File::open(&path).unwrap();
        assert_eq!(holds_file(me, id), Some(true));
        drop(f);
        assert_eq!(holds_file(me, id), Some(false));
    }

    #[test]
    fn a_held_lock_times_out_with_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let _held = StateDir::create(root.path(), "x").unwrap();
        let f = File::open(root.path().join("x")).unwrap();
        let err = lock_with_timeout(
            f,
            LockMode::Shared,
            Duration::from_millis(50),
            &root.path().join("x"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("busy"), "{err}");
    }
}
