//! Mount options and mounting safely inside the container's rootfs.
//!
//! Every destination is resolved with `openat2(RESOLVE_IN_ROOT)` beneath the rootfs, then the
//! mount is made on `/proc/self/fd/N` of the resolved `O_PATH` descriptor. A symlink planted in
//! the rootfs (or swapped in while we work, CVE-2021-30465) can therefore never send a mount to
//! the host.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{fstatvfs, FsFlags};

use crate::error::SetupError;
use crate::sys;

/// A mount's `options` list split into flags, propagation and filesystem data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags to set.
    pub flags: MsFlags,
    /// Flags the options explicitly clear (`rw`, `suid`, ...), for remounts.
    pub clear: MsFlags,
    /// Propagation flags (`rprivate`, `slave`, ...), applied after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data (`mode=755`, `size=65536k`, ...), comma-joined.
    pub data: String,
    /// `bind` or `rbind` was given.
    pub bind: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
        }
    }
}

impl MountOptions {
    /// Parse an OCI mount `options` list.
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Self {
        let mut o = MountOptions::default();
        let mut data = Vec::new();
        for opt in options {
            let opt = opt.as_ref();
            let (set, clear) = match opt {
                "defaults" => (MsFlags::empty(), MsFlags::empty()),
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
                "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
                "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
                "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
                "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
                "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
                "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
                "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
                "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
                "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
                "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
                "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
                "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
                "bind" => {
                    o.bind = true;
                    (MsFlags::MS_BIND, MsFlags::empty())
                }
                "rbind" => {
                    o.bind = true;
                    (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
                }
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                | "unbindable" | "runbindable" => {
                    o.propagation
                        .push(propagation_flags(opt).expect("listed above"));
                    continue;
                }
                // Options of other runtimes' extensions that need nothing from us.
                "tmpcopyup" | "idmap" | "ridmap" | "rro" | "rrw" | "nosymfollow" => continue,
                other => {
                    data.push(other);
                    continue;
                }
            };
            o.flags = (o.flags - clear) | set;
            o.clear = (o.clear - set) | clear;
        }
        o.data = data.join(",");
        o
    }
}

/// The mount flags of a propagation keyword (`rslave` = `MS_SLAVE|MS_REC`).
pub fn propagation_flags(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// What to create at a mount destination that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A directory.
    Dir,
    /// An empty regular file (for bind mounts of files).
    File,
}

/// The path of an fd as a mount(2) target: `/proc/self/fd/N`.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn relative_cstring(path: &Path) -> CString {
    let rel: std::path::PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let bytes = if rel.as_os_str().is_empty() {
        b".".to_vec()
    } else {
        rel.as_os_str().as_bytes().to_vec()
    };
    CString::new(bytes).expect("paths have no NUL")
}

/// Open `path` (container-absolute) beneath `root`, creating it and its missing parents as
/// `kind`; returns an `O_PATH` fd of the final object. Every step is resolved inside `root`.
pub fn open_or_create_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    kind: TargetKind,
) -> Result<OwnedFd, SetupError> {
    let step = "mounts";
    let full = relative_cstring(path);
    match sys::openat_in_root(root, &full, libc::O_PATH, 0) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(SetupError::sys(step, format!("open {}", path.display()), e)),
    }
    if !create_last_in_root(root, path, kind)? {
        create_in_root(root, path, kind)?;
    }
    sys::openat_in_root(root, &full, libc::O_PATH, 0)
        .map_err(|e| SetupError::sys(step, format!("open {}", path.display()), e))
}

/// The common case, in a few system calls: the parent of `path` exists (resolved inside
/// `root`) and only the last component is missing; create it. `false` when that is not the
/// case (a missing parent, a dangling symlink, `..`), for [`create_in_root`] to handle.
fn create_last_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    kind: TargetKind,
) -> Result<bool, SetupError> {
    let names = normal_or_parent_components(path);
    let Some((name, parents)) = names.split_last() else {
        return Ok(false);
    };
    if names.iter().any(|n| n == "..") {
        return Ok(false);
    }
    let parent: std::path::PathBuf = parents.iter().collect();
    let Ok(dir) = sys::openat_in_root(
        root,
        &relative_cstring(&parent),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    ) else {
        return Ok(false);
    };
    match make_entry(dir.as_fd(), name, kind) {
        Ok(()) => Ok(true),
        // Something is there after all (a dangling symlink): the careful way.
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(SetupError::sys(
            "mounts",
            format!("create {}", path.display()),
            e,
        )),
    }
}

/// Create `name` in `dir` (which may be an `O_PATH` fd) as `kind`.
fn make_entry(dir: BorrowedFd<'_>, name: &std::ffi::OsStr, kind: TargetKind) -> Result<(), Errno> {
    match kind {
        TargetKind::File => nix::fcntl::openat(
            dir,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
        TargetKind::Dir => nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755)),
    }
}

/// Create `path` beneath `root` one component at a time, following symlinks the way the
/// container will see them: an absolute target restarts at `root`, `..` stops at `root`, and a
/// dangling link has its target created (inside `root`), as runc does.
fn create_in_root(root: BorrowedFd<'_>, path: &Path, kind: TargetKind) -> Result<(), SetupError> {
    let step = "mounts";
    let err = |op: &str, e| SetupError::sys(step, format!("{op} {}", path.display()), e);
    let mut todo: Vec<std::ffi::OsString> = normal_components(path);
    todo.reverse();
    // The directories walked so far, as fds; the last one is the current directory.
    let reopen_root = || {
        nix::fcntl::openat(
            root,
            ".",
            OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let mut stack: Vec<OwnedFd> = vec![reopen_root().map_err(|e| err("open root for", e))?];
    let mut links = 0;
    while let Some(comp) = todo.pop() {
        let cur = stack.last().expect("root stays").as_fd();
        if comp == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let last = todo.is_empty();
        match nix::fcntl::openat(
            cur,
            comp.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| err("stat in", e))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                    links += 1;
                    if links > 40 {
                        return Err(err("resolve", Errno::ELOOP));
                    }
                    let target = nix::fcntl::readlinkat(cur, comp.as_os_str())
                        .map_err(|e| err("readlink in", e))?;
                    let target = Path::new(&target);
                    if target.is_absolute() {
                        stack.truncate(1);
                    }
                    let mut more = normal_or_parent_components(target);
                    more.reverse();
                    todo.extend(more);
                    continue;
                }
                if last {
                    return Ok(());
                }
                stack.push(fd);
            }
            Err(Errno::ENOENT) => {
                let made = if last {
                    make_entry(cur, &comp, kind)
                } else {
                    make_entry(cur, &comp, TargetKind::Dir)
                };
                match made {
                    Ok(()) | Err(Errno::EEXIST) => todo.push(comp),
                    Err(e) => return Err(err("create", e)),
                }
            }
            Err(e) => return Err(err("open", e)),
        }
    }
    Ok(())
}

fn normal_components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .collect()
}

fn normal_or_parent_components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Like [`open_or_create_in_root`] for a directory, returning a real (not `O_PATH`) directory
/// fd for `*at` calls.
pub fn open_dir_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, SetupError> {
    let opath = open_or_create_in_root(root, path, TargetKind::Dir)?;
    nix::fcntl::openat(
        opath.as_fd(),
        ".",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::sys("mounts", format!("open {}", path.display()), e))
}

/// The flags of the mount an fd lives on that a bind remount must keep (`nosuid`, `nodev`,
/// `noexec`, `ro` and the atime flags are locked in user namespaces).
pub fn locked_flags(fd: BorrowedFd<'_>) -> MsFlags {
    let Ok(st) = fstatvfs(fd) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// Remount the bind mount at `target` with `flags` (adds `MS_BIND | MS_REMOUNT`). On `EPERM`
/// retries with the flags the mount already has, which a user namespace may not drop.
pub fn bind_remount(target: &str, fd: BorrowedFd<'_>, flags: MsFlags) -> Result<(), Errno> {
    let f = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(None::<&str>, target, None::<&str>, f, None::<&str>) {
        Err(Errno::EPERM) => mount(
            None::<&str>,
            target,
            None::<&str>,
            f | locked_flags(fd),
            None::<&str>,
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_default_spec_options() {
        let o = MountOptions::parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.bind);

        let o = MountOptions::parse(&["rbind", "rprivate", "ro", "rw", "nodev"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NODEV
        );
        assert!(o.clear.contains(MsFlags::MS_RDONLY));
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(o.bind);
    }

    #[test]
    fn create_in_root_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        // An absolute symlink and a .. symlink that would both leave the root if followed
        // on the host.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::fs::create_dir_all(root.join(outside.strip_prefix("/").unwrap())).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("dotdot")).unwrap();
        let rootfd =
            nix::fcntl::open(&root, OFlag::O_DIRECTORY | OFlag::O_PATH, Mode::empty()).unwrap();
        open_or_create_in_root(rootfd.as_fd(), Path::new("/abs/a/b"), TargetKind::Dir).unwrap();
        open_or_create_in_root(rootfd.as_fd(), Path::new("/dotdot/f"), TargetKind::File).unwrap();
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // What was created landed inside: /abs resolved to <root><outside path>.
        assert!(root
            .join(outside.strip_prefix("/").unwrap())
            .join("a/b")
            .is_dir());
        assert!(root.join("outside/f").is_file());
    }
}
