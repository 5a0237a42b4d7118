//! `docker cp`: files of a container read and written as tar streams, every path resolved
//! inside the container's root (`openat2` with `RESOLVE_IN_ROOT`: a symlink in the container
//! never leads out of it) and every entry below it opened relative to its directory's fd
//! without following symlinks.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::error::Error;

/// What docker's `X-Docker-Container-Path-Stat` header says of a path.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathStat {
    /// The last component.
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// Go's `os.FileMode` bits: permissions plus type flags (dir 1<<31, symlink 1<<27).
    pub mode: u32,
    /// RFC 3339.
    pub mtime: String,
    /// The link's target for a symlink (else empty).
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

fn io_err(what: &str, path: &str) -> impl FnOnce(rustix::io::Errno) -> Error {
    let (what, path) = (what.to_owned(), path.to_owned());
    move |e| match e {
        rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => Error::NoSuchPath(path),
        e => Error::internal(format!("{what} {path}"), io::Error::from(e)),
    }
}

fn open_root(root: &Path) -> Result<OwnedFd, Error> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::internal(format!("open {}", root.display()), io::Error::from(e)))
}

/// Resolve `path` inside `root` (following symlinks, never out of it) to an `O_PATH` fd.
fn resolve(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Error> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(
        root,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(io_err("resolve", path))
}

fn go_mode(st: &rustix::fs::Stat) -> u32 {
    let perm = st.st_mode & 0o7777;
    let t = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => 1 << 31,
        FileType::Symlink => 1 << 27,
        FileType::Fifo => 1 << 25,
        FileType::Socket => 1 << 24,
        FileType::CharacterDevice => (1 << 26) | (1 << 21),
        FileType::BlockDevice => 1 << 26,
        _ => 0,
    };
    t | (perm & 0o777) | if perm & 0o4000 != 0 { 1 << 23 } else { 0 }
}

/// The stat docker reports for `path` in the container's root `root` (the last component
/// not followed, as `lstat`).
pub fn stat(root: &Path, path: &str) -> Result<PathStat, Error> {
    let rfd = open_root(root)?;
    let p = Path::new(path);
    let parent = p
        .parent()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let name = p.file_name().map(|n| n.to_os_string());
    let (dir, name) = match name {
        Some(n) => (resolve(rfd.as_fd(), &parent)?, n),
        None => (resolve(rfd.as_fd(), "/")?, ".".into()),
    };
    let st = rustix::fs::statat(&dir, &name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .map_err(io_err("stat", path))?;
    let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        rustix::fs::readlinkat(&dir, &name, Vec::new())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
    Ok(PathStat {
        name: if name == "." {
            "/".into()
        } else {
            name.to_string_lossy().into_owned()
        },
        size: st.st_size,
        mode: go_mode(&st),
        mtime: crate::util::rfc3339_nano(mtime),
        link_target,
    })
}

fn header_for(st: &rustix::fs::Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Write `path` of the container (a file, or a directory and everything below it) as a tar
/// stream to `out`, its entries named from the path's last component.
pub fn export(root: &Path, path: &str, out: &mut dyn Write) -> Result<(), Error> {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| ".".into());
    export_as(root, path, &name, out)
}

/// [`export`] with the top entry named `name` (`.` for a directory's contents).
pub fn export_as(root: &Path, path: &str, name: &OsStr, out: &mut dyn Write) -> Result<(), Error> {
    let rfd = open_root(root)?;
    let target = resolve(rfd.as_fd(), path)?;
    let mut ar = tar::Builder::new(out);
    ar.follow_symlinks(false);
    let st = rustix::fs::fstat(&target).map_err(io_err("stat", path))?;
    add(&mut ar, target.as_fd(), None, &PathBuf::from(name), &st)?;
    ar.into_inner()
        .and_then(|w| w.flush())
        .map_err(|e| Error::internal("write the archive", e))
}

fn add(
    ar: &mut tar::Builder<&mut dyn Write>,
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
    shown: &Path,
    st: &rustix::fs::Stat,
) -> Result<(), Error> {
    let w = |e: io::Error| Error::internal("write the archive", e);
    let here = shown.to_string_lossy().into_owned();
    let open = |flags: OFlags| -> Result<OwnedFd, Error> {
        match name {
            Some(n) => rustix::fs::openat(
                dir,
                n,
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err("open", &here)),
            // The top: reopen the resolved O_PATH fd.
            None => rustix::fs::openat(dir, ".", flags | OFlags::CLOEXEC, Mode::empty())
                .or_else(|_| {
                    rustix::fs::open(
                        format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir)),
                        flags | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                })
                .map_err(io_err("open", &here)),
        }
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            let fd = open(OFlags::RDONLY | OFlags::DIRECTORY)?;
            let mut h = header_for(st, tar::EntryType::Directory);
            ar.append_data(&mut h, format!("{here}/"), io::empty())
                .map_err(w)?;
            let mut names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(&fd)
                .map_err(io_err("read", &here))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_bytes().to_vec())
                .filter(|n| n != b"." && n != b"..")
                .collect();
            names.sort();
            for n in names {
                let n = OsStr::from_bytes(&n);
                let child = shown.join(n);
                let cst = match rustix::fs::statat(&fd, n, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                add(ar, fd.as_fd(), Some(n), &child, &cst)?;
            }
        }
        FileType::RegularFile => {
            // Non-blocking: a FIFO swapped in meanwhile must not hang the daemon.
            let fd = open(OFlags::RDONLY | OFlags::NONBLOCK)?;
            let fst = rustix::fs::fstat(&fd).map_err(io_err("stat", &here))?;
            if FileType::from_raw_mode(fst.st_mode) != FileType::RegularFile {
                return Ok(());
            }
            let mut h = header_for(&fst, tar::EntryType::Regular);
            h.set_size(fst.st_size as u64);
            let f = File::from(fd);
            ar.append_data(&mut h, &here, io::Read::take(f, fst.st_size as u64))
                .map_err(w)?;
        }
        FileType::Symlink => {
            let Some(n) = name else { return Ok(()) };
            let target =
                rustix::fs::readlinkat(dir, n, Vec::new()).map_err(io_err("readlink", &here))?;
            let mut h = header_for(st, tar::EntryType::Symlink);
            ar.append_link(&mut h, &here, OsStr::from_bytes(target.as_bytes()))
                .map_err(w)?;
        }
        // Devices, FIFOs and sockets: skipped (docker copies device nodes as entries; berthd
        // does not recreate them on the host side).
        _ => {}
    }
    Ok(())
}

/// Extract the tar stream `tar` into directory `path` of the container (docker's
/// `PUT /containers/{id}/archive`), with berth-image's layer applier (safe against entries
/// that climb out of the directory, hard links out, and device nodes).
pub fn import(root: &Path, path: &str, tar: impl io::Read + Send) -> Result<(), Error> {
    let rfd = open_root(root)?;
    let dir = resolve(rfd.as_fd(), path)?;
    let st = rustix::fs::fstat(&dir).map_err(io_err("stat", path))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(Error::BadParameter(format!(
            "extraction point is not a directory: {path}"
        )));
    }
    let opts = berth_image::layer::ApplyOptions::new(berth_image::layer::Whiteouts::Apply);
    berth_image::layer::apply_at(tar, dir.as_fd(), Path::new(path), &opts, &|_| {}).map_err(
        |e| {
            Error::BadParameter(format!(
                "extracting into {path}: {}",
                crate::images::chain(&e)
            ))
        },
    )?;
    Ok(())
}
