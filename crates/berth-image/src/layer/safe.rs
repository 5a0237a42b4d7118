//! Filesystem operations confined to a root directory.
//!
//! Every path in a rootfs being built is resolved with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from the root's fd: as if chrooted, so
//! an absolute symlink or a `..` means "inside the root" and no symlink can take a write
//! outside it; final components are created with `O_EXCL`/`O_NOFOLLOW` or `*at` calls that
//! never follow them. Untrusted input trees (OCI layouts) are read with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` instead: no symlink at all.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// Resolution used for every lookup inside a root.
pub(crate) const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// Resolution of paths in a root filesystem being built: as if chrooted into it.
pub(crate) const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Resolution for files of an untrusted input tree (an OCI layout): beneath its directory and
/// through no symlink at all.
pub(crate) const NO_LINKS: ResolveFlags = BENEATH.union(ResolveFlags::NO_SYMLINKS);

/// Open `path` under `dir` (resolved with `resolve`) as an `O_PATH` fd, without following a
/// final symlink and without opening what it names (a FIFO or a device is not opened for
/// real, so opening it can neither block nor have a device's side effects). Returns the fd
/// and its `fstat`.
pub(crate) fn open_path(
    dir: BorrowedFd<'_>,
    path: &OsStr,
    resolve: ResolveFlags,
) -> io::Result<(OwnedFd, rustix::fs::Stat)> {
    // A final symlink is opened as itself (and then refused as not a regular file) unless
    // the resolution confines symlinks to a root (`RESOLVE_IN_ROOT`).
    let nofollow = if resolve.contains(ResolveFlags::IN_ROOT) {
        OFlags::empty()
    } else {
        OFlags::NOFOLLOW
    };
    let fd = rustix::fs::openat2(
        dir,
        path,
        OFlags::PATH | nofollow | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )?;
    let st = rustix::fs::fstat(&fd)?;
    Ok((fd, st))
}

/// Open for reading the file that the `O_PATH` fd `fd` (from [`open_path`], whose stat is
/// `st`) refers to, through `/proc/self/fd`, so that what is read is exactly what was checked
/// (no second path lookup an attacker could redirect). Fails if the inode changed.
pub(crate) fn reopen_read(fd: &OwnedFd, st: &rustix::fs::Stat) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let now = rustix::fs::fstat(&f)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(io::Error::other("the file changed while it was opened"));
    }
    Ok(std::fs::File::from(f))
}

/// Open the directory at `path` under `root` as an `O_PATH` fd, resolved as if `root` were
/// the root directory (`RESOLVE_IN_ROOT`): absolute symlinks and `..` stay inside it, so a
/// lower layer's `var/run -> /run` leads to `root/run`, never to the host's `/run`. Magic
/// links (`/proc/self/...`) are refused (`ELOOP`).
pub(crate) fn open_dir(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    let path = if path.is_empty() {
        b".".as_slice()
    } else {
        path
    };
    Ok(rustix::fs::openat2(
        root,
        OsStr::from_bytes(path),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT,
    )?)
}

/// Open the directory entry `name` of `dir` itself, never following a symlink there.
pub(crate) fn open_child_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open (creating missing components as 0755 directories) the directory `comps` under
/// `root`, each existing prefix resolved as [`open_dir`] does (inside the root); a missing
/// component is made with `mkdirat` in its resolved parent and opened without following, so
/// a dangling symlink in the way is an error (`ENOTDIR`/`ELOOP`), as for docker.
/// `created(n)` is called for each directory it makes (the first `n` components name it).
pub(crate) fn open_or_create_dirs(
    root: BorrowedFd<'_>,
    comps: &[&[u8]],
    created: &mut dyn FnMut(usize),
) -> io::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    for i in 0..comps.len() {
        let next = match open_dir(root, &comps[..=i].join(&b'/')) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = cur.as_ref().map_or(root, |f| f.as_fd());
                let name = OsStr::from_bytes(comps[i]);
                match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => created(i + 1),
                    Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_child_dir(dir, comps[i])?
            }
            Err(e) => return Err(e),
        };
        cur = Some(next);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => open_dir(root, b"."),
    }
}

/// The type of `name` in `dir` without following it, or `None` when absent.
pub(crate) fn file_type_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Remove `name` in `dir`, recursively when it is a directory; never follows symlinks.
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    clear_dir(sub.as_fd())?;
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Remove every entry of the open directory `dir`, keeping those `keep` accepts.
pub(crate) fn clear_dir_except(
    dir: BorrowedFd<'_>,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> io::Result<()> {
    let names = list_dir(dir)?;
    for name in names {
        if !keep(&name) {
            remove_all_at(dir, OsStr::from_bytes(&name))?;
        }
    }
    Ok(())
}

fn clear_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    clear_dir_except(dir, |_| false)
}

/// Names in the directory `dir` (a readable fd or an `O_PATH` one), without `.` and `..`.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = rustix::fs::Dir::new(fd)?;
    let mut names = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// Remove a directory tree given by an absolute host path, without following symlinks in it.
pub fn remove_tree(path: &std::path::Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to remove a root",
        ));
    };
    let p = rustix::fs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    remove_all_at(p.as_fd(), name)
}
