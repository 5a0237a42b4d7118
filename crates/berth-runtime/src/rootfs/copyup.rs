//! `tmpcopyup` (runc's and crun's mount extension): a tmpfs mounted over a directory of the
//! image starts with a copy of what that directory held.
//!
//! The copy is read through an fd of the covered directory opened before the mount, so it needs
//! no scratch mount on the host (runc mounts the tmpfs in the host's /tmp first, then moves
//! it). Everything is resolved relative to directory fds with `O_NOFOLLOW`: a symlink in the
//! image is copied as a symlink, never followed.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchown, fchownat, Gid, Uid};

use crate::error::SetupError;

/// How deep the copied tree may be (a guard against a pathological image).
const MAX_DEPTH: usize = 128;

/// Copy the content of directory `lower` (a readable directory fd) into directory `upper`:
/// directories, regular files, symlinks, device nodes, fifos and sockets, with their mode and
/// owner. Hard links become copies; timestamps and extended attributes are not kept (neither
/// does runc's copy). `dest` names the mount in errors.
pub fn copy_tree(lower: OwnedFd, upper: BorrowedFd<'_>, dest: &Path) -> Result<(), SetupError> {
    copy_dir(lower, upper, dest, 0)
}

fn err(dest: &Path, op: &str, name: &Path, e: Errno) -> SetupError {
    SetupError::sys(
        "mounts",
        format!("tmpcopyup of {}: {op} {}", dest.display(), name.display()),
        e,
    )
}

fn copy_dir(
    lower: OwnedFd,
    upper: BorrowedFd<'_>,
    path: &Path,
    depth: usize,
) -> Result<(), SetupError> {
    if depth > MAX_DEPTH {
        return Err(err(path, "copy (too deep)", path, Errno::ELOOP));
    }
    // A duplicate of the fd itself: a lookup of "." could cross into the new mount.
    let lower_fd = nix::unistd::dup(lower.as_fd()).map_err(|e| err(path, "dup", path, e))?;
    let mut dir = Dir::from_fd(lower_fd).map_err(|e| err(path, "read", path, e))?;
    let names: Vec<std::ffi::OsString> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    for name in names {
        let here = path.join(&name);
        let st = fstatat(
            lower.as_fd(),
            name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err(path, "stat", &here, e))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let (uid, gid) = (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid));
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(upper, name.as_os_str(), Mode::from_bits_truncate(0o700))
                    .map_err(|e| err(path, "mkdir", &here, e))?;
                let sub_lower = open_nofollow(lower.as_fd(), &name, OFlag::O_DIRECTORY)
                    .map_err(|e| err(path, "open", &here, e))?;
                let sub_upper = open_nofollow(upper, &name, OFlag::O_DIRECTORY)
                    .map_err(|e| err(path, "open", &here, e))?;
                copy_dir(sub_lower, sub_upper.as_fd(), &here, depth + 1)?;
                fchown(sub_upper.as_fd(), Some(uid), Some(gid))
                    .map_err(|e| err(path, "chown", &here, e))?;
                fchmod(sub_upper.as_fd(), perm).map_err(|e| err(path, "chmod", &here, e))?;
            }
            SFlag::S_IFREG => {
                let src = open_nofollow(lower.as_fd(), &name, OFlag::O_RDONLY)
                    .map_err(|e| err(path, "open", &here, e))?;
                let dst = nix::fcntl::openat(
                    upper,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| err(path, "create", &here, e))?;
                let mut from = std::fs::File::from(src);
                let mut to = std::fs::File::from(dst);
                std::io::copy(&mut from, &mut to).map_err(|e| {
                    err(
                        path,
                        "copy",
                        &here,
                        Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    )
                })?;
                // Owner first: chown clears set-id bits that chmod then restores.
                fchown(to.as_fd(), Some(uid), Some(gid))
                    .map_err(|e| err(path, "chown", &here, e))?;
                fchmod(to.as_fd(), perm).map_err(|e| err(path, "chmod", &here, e))?;
            }
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(lower.as_fd(), name.as_os_str())
                    .map_err(|e| err(path, "readlink", &here, e))?;
                nix::unistd::symlinkat(target.as_os_str(), upper, name.as_os_str())
                    .map_err(|e| err(path, "symlink", &here, e))?;
                fchownat(
                    upper,
                    name.as_os_str(),
                    Some(uid),
                    Some(gid),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| err(path, "chown", &here, e))?;
            }
            _ => {
                // Device nodes, fifos, sockets.
                mknodat(upper, name.as_os_str(), kind, perm, st.st_rdev)
                    .map_err(|e| err(path, "mknod", &here, e))?;
                fchownat(
                    upper,
                    name.as_os_str(),
                    Some(uid),
                    Some(gid),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| err(path, "chown", &here, e))?;
                fchmodat(upper, name.as_os_str(), perm, FchmodatFlags::FollowSymlink)
                    .map_err(|e| err(path, "chmod", &here, e))?;
            }
        }
    }
    Ok(())
}

fn open_nofollow(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag) -> Result<OwnedFd, Errno> {
    nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
}
