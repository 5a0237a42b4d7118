//! `docker cp`: files of a container read and written as tar streams, every path resolved
//! inside the container's root (`openat2` with `RESOLVE_IN_ROOT`: a symlink in the container
//! never leads out of it) and every entry below it opened relative to its directory's fd
//! without following symlinks.
//!
//! Paths follow dockerd's archive rules (`container.ResolvePath`): the path is cleaned as an
//! absolute path; its last component is not followed (a symlink is copied as a link) unless
//! the path ends with `/` or `/.`; `SRC/.` names the directory's contents (entries `./...`).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use crate::error::Error;

/// At most this many symlinks are followed in one path (as Go's `FollowSymlinkInScope`).
const MAX_LINKS: usize = 255;

/// What docker's `X-Docker-Container-Path-Stat` header says of a path.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathStat {
    /// The last component of the cleaned path (`.` for `DIR/.`, `/` for the root).
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// Go's `os.FileMode` bits: permissions plus type flags (dir 1<<31, symlink 1<<27).
    pub mode: u32,
    /// RFC 3339.
    pub mtime: String,
    /// For a symlink, the absolute path in the container it leads to, every link on the way
    /// followed (dockerd's `linkTarget`); else empty.
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

/// dockerd's init layer (`daemon/initlayer`): what every container has even when its image
/// lacks it, made in the container's writable layer at create: the mount points `/dev/pts`,
/// `/dev/shm` (directories, 0755) and `/dev/console` (an empty file, 0755), an empty
/// `/.dockerenv` (0755) and the symlink `/etc/mtab -> /proc/mounts`. Whatever is already at
/// one of these paths (even a dangling symlink) is kept; missing parents are made (0755).
/// Each parent is resolved inside `root` and the last component created with `mkdirat`,
/// `O_CREAT|O_EXCL|O_NOFOLLOW` or `symlinkat`, so nothing is written through a symlink of
/// the image; an entry whose parent is not a directory in the image is skipped.
/// Errors: making a parent or an entry for another reason than "exists" or "not a directory".
pub fn init_layer(root: &Path) -> Result<(), Error> {
    enum Kind {
        Dir,
        File,
        Link(&'static str),
    }
    let rfd = open_root(root)?;
    for (path, kind) in [
        ("dev/pts", Kind::Dir),
        ("dev/shm", Kind::Dir),
        ("dev/console", Kind::File),
        (".dockerenv", Kind::File),
        ("etc/mtab", Kind::Link("/proc/mounts")),
    ] {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let dir = match mkdir_all_in(rfd.as_fd(), parent) {
            Ok(d) => d,
            Err(Error::NoSuchPath(_)) => continue,
            Err(e) => return Err(e),
        };
        let mode = Mode::from_raw_mode(0o755);
        let made = match kind {
            Kind::Dir => rustix::fs::mkdirat(&dir, name, mode),
            Kind::File => rustix::fs::openat(
                &dir,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                mode,
            )
            // The daemon's umask aside: dockerd's files are 0755.
            .and_then(|fd| rustix::fs::fchmod(&fd, mode)),
            Kind::Link(target) => rustix::fs::symlinkat(target, &dir, name),
        };
        match made {
            Ok(()) | Err(rustix::io::Errno::EXIST) | Err(rustix::io::Errno::NOTDIR) => {}
            Err(e) => return Err(io_err("create", &format!("/{path}"))(e)),
        }
    }
    Ok(())
}

/// The directory `path` of `root` (resolved inside it) as an `O_PATH` fd, its missing
/// components made (0755) one by one. Errors: `NoSuchPath` when something other than a
/// directory is in the way; creating or resolving a component.
fn mkdir_all_in(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Error> {
    let mut dir = resolve(root, "/")?;
    let mut done = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        let next = format!("{done}/{comp}");
        dir = match resolve(root, &next) {
            Ok(fd) => fd,
            Err(Error::NoSuchPath(_)) => {
                match rustix::fs::mkdirat(&dir, comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(io_err("create", &next)(e)),
                }
                resolve(root, &next)?
            }
            Err(e) => return Err(e),
        };
        done = next;
    }
    Ok(dir)
}

/// `path` as docker's archive endpoints take it: cleaned as an absolute path (Go's
/// `filepath.Clean`: `.` dropped, `..` lexical), with a trailing `/` or `/.` of the original
/// kept (`archive.PreserveTrailingDotOrSeparator`).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    let base_is_dot = path == "." || path.ends_with("/.");
    if base_is_dot {
        if !out.ends_with('/') {
            out.push('/');
        }
        out.push('.');
    } else if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Go's `filepath.Base` of a normalized path: its last element, trailing slashes aside
/// (`.` for `/d/.`, `/` for the root).
fn base_name(abs: &str) -> &str {
    let t = abs.trim_end_matches('/');
    if t.is_empty() {
        return "/";
    }
    t.rsplit('/').next().unwrap_or(t)
}

/// A path of the container, located as dockerd does: the directory part resolved (links
/// followed, in the root); the last component followed only when the path ends with `/` or
/// `/.` (then `name` is `None` and `dir` is the path itself).
struct Located {
    dir: OwnedFd,
    name: Option<std::ffi::OsString>,
}

impl Located {
    fn find(root: BorrowedFd<'_>, abs: &str) -> Result<Located, Error> {
        let (dir, base) = abs.rsplit_once('/').unwrap_or(("", abs));
        if base.is_empty() || base == "." {
            return Ok(Located {
                dir: resolve(root, abs)?,
                name: None,
            });
        }
        Ok(Located {
            dir: resolve(root, dir)?,
            name: Some(base.into()),
        })
    }

    /// `lstat` of the path (its last component not followed).
    fn lstat(&self, shown: &str) -> Result<rustix::fs::Stat, Error> {
        match &self.name {
            Some(n) => rustix::fs::statat(&self.dir, n.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io_err("stat", shown)),
            None => rustix::fs::fstat(&self.dir).map_err(io_err("stat", shown)),
        }
    }
}

/// The absolute path `abs` leads to inside the root, every symlink on the way followed in its
/// scope (an absolute target restarts at the root, `..` never climbs above it); components
/// that do not exist are taken as they are (Go's `symlink.FollowSymlinkInScope`, which
/// dockerd's `linkTarget` comes from). Errors: more than 255 links.
fn follow_in_scope(root: BorrowedFd<'_>, abs: &str) -> Result<String, Error> {
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut todo: VecDeque<Vec<u8>> = abs
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_slice() {
            b"." => continue,
            b".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut cand = done.join(&b'/');
        if !cand.is_empty() {
            cand.push(b'/');
        }
        cand.extend_from_slice(&c);
        let fd = rustix::fs::openat2(
            root,
            OsStr::from_bytes(&cand),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        );
        let link = fd.ok().and_then(|fd| {
            let st = rustix::fs::fstat(&fd).ok()?;
            (FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
                .then(|| rustix::fs::readlinkat(&fd, "", Vec::new()).ok())
                .flatten()
        });
        match link {
            Some(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Error::BadParameter(format!(
                        "too many links in {abs} (more than {MAX_LINKS})"
                    )));
                }
                let t = target.as_bytes();
                if t.starts_with(b"/") {
                    done.clear();
                }
                for part in t.split(|b| *b == b'/').rev().filter(|p| !p.is_empty()) {
                    todo.push_front(part.to_vec());
                }
            }
            None => done.push(c),
        }
    }
    let mut out = b"/".to_vec();
    out.extend(done.join(&b'/'));
    Ok(String::from_utf8_lossy(&out).into_owned())
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

/// The stat dockerd reports for `path` in the container's root `root`: the last component
/// not followed (as `lstat`) unless the path ends with `/` or `/.`; for a symlink, the path
/// it resolves to in the container. Errors: a missing path is [`Error::NoSuchPath`].
pub fn stat(root: &Path, path: &str) -> Result<PathStat, Error> {
    let rfd = open_root(root)?;
    let abs = normalize(path);
    let loc = Located::find(rfd.as_fd(), &abs)?;
    let st = loc.lstat(path)?;
    let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        follow_in_scope(rfd.as_fd(), &abs)?
    } else {
        String::new()
    };
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
    Ok(PathStat {
        name: base_name(&abs).to_owned(),
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

/// Write `path` of the container (a file, a symlink, or a directory and everything below
/// it) as a tar stream to `out`, as dockerd's `GET /containers/{id}/archive`: the entries
/// are named from the path's last component (`./...` for `DIR/.`, `/...` for the root).
pub fn export(root: &Path, path: &str, out: &mut dyn Write) -> Result<(), Error> {
    let abs = normalize(path);
    export_as(root, path, OsStr::new(base_name(&abs)), out)
}

/// [`export`] with the top entry named `name` (`.` for a directory's contents). An empty
/// `name` (for a directory) writes no entry for the directory itself and names what is below
/// it relative to it (`bin/`, `bin/sh`), as `docker export` does.
pub fn export_as(root: &Path, path: &str, name: &OsStr, out: &mut dyn Write) -> Result<(), Error> {
    let rfd = open_root(root)?;
    let abs = normalize(path);
    let loc = Located::find(rfd.as_fd(), &abs)?;
    let st = loc.lstat(path)?;
    let mut ar = tar::Builder::new(out);
    ar.follow_symlinks(false);
    add(
        &mut ar,
        loc.dir.as_fd(),
        loc.name.as_deref(),
        name.as_bytes(),
        &st,
    )?;
    ar.into_inner()
        .and_then(|w| w.flush())
        .map_err(|e| Error::internal("write the archive", e))
}

/// Append one entry named `name` and, for a symlink, pointing at `link`, both written as
/// they are (dockerd's `./x` and `/bin` names, which the tar crate's path setters would
/// rewrite or refuse); a name or target past the header's 100 bytes goes first in a GNU
/// `././@LongLink` record, as Go's archive/tar writes it.
fn append(
    ar: &mut tar::Builder<&mut dyn Write>,
    h: &mut tar::Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl io::Read,
) -> io::Result<()> {
    let long = |ar: &mut tar::Builder<&mut dyn Write>, kind: u8, value: &[u8]| {
        let mut lh = tar::Header::new_gnu();
        lh.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        lh.set_entry_type(tar::EntryType::new(kind));
        lh.set_mode(0o644);
        lh.set_size(value.len() as u64 + 1);
        lh.set_cksum();
        ar.append(&lh, [value, b"\0"].concat().as_slice())
    };
    if name.len() > 100 {
        long(ar, b'L', name)?;
    }
    let old = h.as_old_mut();
    old.name.fill(0);
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    if let Some(l) = link {
        if l.len() > 100 {
            long(ar, b'K', l)?;
        }
        let old = h.as_old_mut();
        old.linkname.fill(0);
        let n = l.len().min(100);
        old.linkname[..n].copy_from_slice(&l[..n]);
    }
    h.set_cksum();
    ar.append(h, data)
}

/// Whether the directory `fd` is on a kernel pseudo filesystem (proc, sysfs, cgroup, devpts,
/// mqueue, and the like) whose entries are no files of the container.
fn pseudo_fs(fd: BorrowedFd<'_>) -> bool {
    const PSEUDO: [i64; 10] = [
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0x1cd1,      // devpts
        0x1980_0202, // mqueue
        0x7363_6673, // securityfs
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0xcafe_4a11, // bpf
    ];
    rustix::fs::fstatfs(fd).is_ok_and(|s| PSEUDO.contains(&{ s.f_type }))
}

fn add(
    ar: &mut tar::Builder<&mut dyn Write>,
    dir: BorrowedFd<'_>,
    name: Option<&OsStr>,
    shown: &[u8],
    st: &rustix::fs::Stat,
) -> Result<(), Error> {
    let w = |e: io::Error| Error::internal("write the archive", e);
    let here = String::from_utf8_lossy(shown).into_owned();
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
            let mut dname = shown.to_vec();
            // An empty name: the contents only (`docker export`), no entry of its own.
            if !dname.is_empty() {
                if !dname.ends_with(b"/") {
                    dname.push(b'/');
                }
                let mut h = header_for(st, tar::EntryType::Directory);
                append(ar, &mut h, &dname, None, io::empty()).map_err(w)?;
            }
            if pseudo_fs(fd.as_fd()) {
                // The live root of a running container holds its /proc, /sys and the like:
                // kernel views, not its files (dockerd reads the rootfs, where they are
                // empty directories).
                return Ok(());
            }
            let mut names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(&fd)
                .map_err(io_err("read", &here))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_bytes().to_vec())
                .filter(|n| n != b"." && n != b"..")
                .collect();
            names.sort();
            for n in names {
                let child = [dname.as_slice(), &n].concat();
                let n = OsStr::from_bytes(&n);
                let cst = match rustix::fs::statat(&fd, n, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                match add(ar, fd.as_fd(), Some(n), &child, &cst) {
                    // Gone meanwhile (or a magic link with nothing behind it): skipped.
                    Err(Error::NoSuchPath(_)) => {}
                    r => r?,
                }
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
            append(
                ar,
                &mut h,
                shown,
                None,
                io::Read::take(f, fst.st_size as u64),
            )
            .map_err(w)?;
        }
        FileType::Symlink => {
            let target = match name {
                Some(n) => rustix::fs::readlinkat(dir, n, Vec::new()),
                None => rustix::fs::readlinkat(dir, "", Vec::new()),
            }
            .map_err(io_err("readlink", &here))?;
            let mut h = header_for(st, tar::EntryType::Symlink);
            append(ar, &mut h, shown, Some(target.as_bytes()), io::empty()).map_err(w)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_dockerd_cleans_them() {
        for (given, abs, base) in [
            ("/d/abs", "/d/abs", "abs"),
            ("d/sub/.", "/d/sub/.", "."),
            ("/d/lsub/", "/d/lsub/", "lsub"),
            ("/d/./sub", "/d/sub", "sub"),
            ("/d/../d/sub", "/d/sub", "sub"),
            ("/../..", "/", "/"),
            ("/", "/", "/"),
            ("/.", "/.", "."),
            ("/d//x/", "/d/x/", "x"),
        ] {
            assert_eq!(normalize(given), abs, "{given}");
            assert_eq!(base_name(&normalize(given)), base, "{given}");
        }
    }
}
