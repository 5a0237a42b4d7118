//! Applying tar entries to a directory, one entry at a time, confined to the root.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use super::safe::{self, IN_ROOT};
use super::sparse;

mod whiteout;
use super::{ApplyOptions, LayerError, Whiteouts};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Split a tar path into its components with chroot semantics: a leading `/` means the root
/// of the layer (distroless images write `/usr/bin/...`), `.` and empty components are
/// dropped and `a/..` cancels lexically, as docker and umoci clean names. A `..` that would
/// climb above the root is refused (docker refuses it as a breakout), as are NUL bytes.
pub(crate) fn components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("path climbs above the root with `..`");
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Check a name derived from an entry (a whiteout's target once `.wh.` is stripped, a final
/// component) before it is used in a `*at` call: it must name one entry of its directory,
/// so `.`, `..`, the empty name and names with `/` or NUL are refused.
pub(crate) fn check_name(name: &[u8]) -> Result<(), &'static str> {
    match name {
        b"" => Err("derived name is empty"),
        b"." | b".." => Err("derived name is `.` or `..`"),
        n if n.contains(&b'/') => Err("derived name contains `/`"),
        n if n.contains(&0) => Err("derived name contains a NUL byte"),
        _ => Ok(()),
    }
}

/// Whether the entry is AUFS metadata: `.wh..wh.aufs`, `.wh..wh.orph/...`,
/// `.wh..wh.plnk/...` at the layer's root, which layers exported by docker's aufs driver
/// carry. docker skips them (containerd removes the nothing they name); so does berth. Every
/// name derived by stripping `.wh.` prefixes is checked first, so a `.wh..wh..wh...` is
/// still refused.
fn aufs_metadata(comps: &[&[u8]]) -> Result<bool, &'static str> {
    let Some(first) = comps.first() else {
        return Ok(false);
    };
    if !first.starts_with(b".wh..wh.") || comps == [OPAQUE] {
        return Ok(false);
    }
    let mut name: &[u8] = first;
    while let Some(rest) = name.strip_prefix(WHITEOUT) {
        check_name(rest).map_err(|_| "AUFS metadata name: a derived name is not a name")?;
        name = rest;
    }
    Ok(true)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(crate) struct Applier<'a> {
    root: OwnedFd,
    root_path: &'a Path,
    opts: &'a ApplyOptions,
    cache: Option<(Vec<u8>, OwnedFd)>,
    dirs: Vec<(Vec<u8>, Timespec)>,
    written: BTreeSet<Vec<u8>>,
    /// Overlay mode: directories this layer needed but has no entry for (path -> the entry
    /// that needed it). Their attributes, and whether a lower symlink stands there, come from
    /// the lower layers (see `LayerStats::implicit_dirs`).
    /// The flag: made only for whiteouts (no real entry of the layer below it), so it must
    /// exist in a lower layer for the layer to stand alone.
    implicit: std::collections::BTreeMap<Vec<u8>, (String, bool)>,
    /// Overlay mode: directories holding whiteout devices of this layer. overlayfs hides a
    /// whiteout only in a directory merged with a lower one, so each must exist below.
    whiteout_dirs: BTreeSet<Vec<u8>>,
    buf: Vec<u8>,
    entry: String,
}

fn is_escape(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc_exdev) if libc_exdev == Errno::XDEV.raw_os_error())
        || e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
}

impl<'a> Applier<'a> {
    pub(crate) fn new(root: OwnedFd, root_path: &'a Path, opts: &'a ApplyOptions) -> Self {
        Self {
            root,
            root_path,
            opts,
            cache: None,
            dirs: Vec::new(),
            written: BTreeSet::new(),
            implicit: Default::default(),
            whiteout_dirs: BTreeSet::new(),
            buf: vec![0; 256 << 10],
            entry: String::new(),
        }
    }

    fn fs_err(&self, op: &'static str, source: impl Into<io::Error>) -> LayerError {
        let source = source.into();
        if is_escape(&source) {
            return self.unsafe_err(format!(
                "{op}: path resolves through a magic link or too many symlinks"
            ));
        }
        LayerError::Fs {
            op,
            entry: self.entry.clone(),
            root: self.root_path.to_owned(),
            source,
        }
    }

    /// An error resolving an entry's parent directory. In overlay mode, a parent that leads
    /// through one of the layer's own symlinks to what only lower layers have (`ENOENT`,
    /// `ENOTDIR`) means that the layer cannot stand alone, not that it is broken: the store
    /// then applies it over its lower layers, where the flattened unpack's outcome decides.
    fn parent_err(&self, op: &'static str, source: io::Error) -> LayerError {
        let lower_only = [Errno::NOENT, Errno::NOTDIR]
            .iter()
            .any(|e| source.raw_os_error() == Some(e.raw_os_error()));
        if self.opts.whiteouts == Whiteouts::Overlay && lower_only {
            return LayerError::NeedsLowerLayers {
                entry: self.entry.clone(),
                reason: format!("{op}: {source}"),
            };
        }
        self.fs_err(op, source)
    }

    fn unsafe_err(&self, reason: impl Into<String>) -> LayerError {
        LayerError::Unsafe {
            entry: self.entry.clone(),
            reason: reason.into(),
        }
    }

    /// Apply every entry of the tar stream `r`, then read it to its end.
    /// Returns the number of entries and, in overlay mode, the directories the layer needed
    /// without having entries for them.
    pub(crate) fn run<R: Read>(&mut self, mut r: R) -> Result<(u64, Vec<String>), LayerError> {
        let mut count = 0;
        {
            let mut ar = tar::Archive::new(&mut r);
            for e in ar.entries().map_err(LayerError::Tar)? {
                let mut e = e.map_err(LayerError::Tar)?;
                self.entry(&mut e)?;
                count += 1;
            }
        }
        io::copy(&mut r, &mut io::sink()).map_err(LayerError::Tar)?;
        self.entry.clear();
        self.finish()?;
        let implicit = self
            .implicit
            .iter()
            .map(|(d, (_, wo))| {
                let d = String::from_utf8_lossy(d);
                if *wo {
                    format!("?{d}")
                } else {
                    d.into_owned()
                }
            })
            .chain(
                self.whiteout_dirs
                    .iter()
                    .map(|d| format!("!{}", String::from_utf8_lossy(d))),
            )
            .collect();
        Ok((count, implicit))
    }

    fn record(&mut self, comps: &[&[u8]]) {
        if self.opts.whiteouts == Whiteouts::Apply {
            for i in 1..=comps.len() {
                if !self.written.insert(join(&comps[..i])) && i < comps.len() {
                    continue;
                }
            }
        }
    }

    fn dir(&self) -> BorrowedFd<'_> {
        self.cache
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("ensure_parent fills the cache")
    }

    fn ensure_parent(&mut self, comps: &[&[u8]]) -> Result<(), LayerError> {
        self.ensure_parent_for(comps, false)
    }

    /// [`Self::ensure_parent`]; `for_whiteout` marks directories it makes as made only for
    /// whiteouts, and a real entry clears that mark on its parents.
    fn ensure_parent_for(&mut self, comps: &[&[u8]], for_whiteout: bool) -> Result<(), LayerError> {
        if !for_whiteout && !self.implicit.is_empty() {
            for i in 1..=comps.len() {
                if let Some(v) = self.implicit.get_mut(&join(&comps[..i])) {
                    v.1 = false;
                }
            }
        }
        let key = join(comps);
        let hit = matches!(&self.cache, Some((k, _)) if *k == key);
        if !hit {
            let fd = match safe::open_dir(self.root.as_fd(), &key) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let mut made = Vec::new();
                    let fd = safe::open_or_create_dirs(self.root.as_fd(), comps, &mut |n| {
                        made.push(join(&comps[..n]))
                    })
                    .map_err(|e| self.parent_err("creating parent directories", e))?;
                    if self.opts.whiteouts == Whiteouts::Overlay {
                        for m in made {
                            let e = self.entry.clone();
                            self.implicit.entry(m).or_insert((e, for_whiteout));
                        }
                    }
                    fd
                }
                Err(e) => return Err(self.parent_err("opening parent directory", e)),
            };
            self.cache = Some((key, fd));
        }
        Ok(())
    }

    fn meta<R: Read>(&self, e: &mut tar::Entry<'_, R>) -> Result<Meta, LayerError> {
        let h = e.header();
        let bad = |what| self.unsafe_err(format!("bad {what} in tar header"));
        let mut m = Meta {
            mode: h.mode().map_err(|_| bad("mode"))? & 0o7777,
            uid: h.uid().map_err(|_| bad("uid"))? as u32,
            gid: h.gid().map_err(|_| bad("gid"))? as u32,
            mtime: Timespec {
                tv_sec: h.mtime().map_err(|_| bad("mtime"))? as i64,
                tv_nsec: 0,
            },
            xattrs: Vec::new(),
        };
        if let Some(pax) = e.pax_extensions().map_err(LayerError::Tar)? {
            for ext in pax {
                let ext = ext.map_err(LayerError::Tar)?;
                let key = ext.key_bytes();
                let val = ext.value_bytes();
                let num = || std::str::from_utf8(val).ok()?.parse::<u32>().ok();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if name.starts_with(b"trusted.overlay.") {
                        tracing::warn!(entry = %self.entry, "ignoring overlay xattr in layer");
                        continue;
                    }
                    m.xattrs.push((name.to_vec(), val.to_vec()));
                } else if key == b"uid" {
                    m.uid = num().ok_or_else(|| bad("pax uid"))?;
                } else if key == b"gid" {
                    m.gid = num().ok_or_else(|| bad("pax gid"))?;
                } else if key == b"mtime" {
                    m.mtime = parse_pax_time(val).ok_or_else(|| bad("pax mtime"))?;
                }
            }
        }
        Ok(m)
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let kind = e.header().entry_type();
        let sparse = match kind {
            EntryType::Regular => sparse::pax_sparse(e).map_err(LayerError::Tar)?,
            _ => None,
        };
        let raw = match sparse.as_ref().and_then(|s| s.name.clone()) {
            Some(name) => name,
            None => e.path_bytes().into_owned(),
        };
        self.entry = String::from_utf8_lossy(&raw).into_owned();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let comps = components(&raw).map_err(|r| self.unsafe_err(r))?;
        for c in &comps {
            check_name(c).map_err(|r| self.unsafe_err(r))?;
        }
        if aufs_metadata(&comps).map_err(|r| self.unsafe_err(r))? {
            tracing::debug!(entry = %self.entry, "skipping AUFS metadata");
            return Ok(());
        }
        let Some((name, parent)) = comps.split_last() else {
            if kind == EntryType::Directory {
                let meta = self.meta(e)?;
                let fd = self.root.try_clone().map_err(|e| self.fs_err("dup", e))?;
                let fd = rustix::fs::openat(
                    &fd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.fs_err("opening root", e))?;
                self.set_meta_fd(fd.as_fd(), &meta)?;
                self.dirs.push((Vec::new(), meta.mtime));
            }
            return Ok(());
        };
        if let Some(target) = name.strip_prefix(WHITEOUT) {
            return self.whiteout(parent, name, target);
        }
        let meta = self.meta(e)?;
        let name_os = OsStr::from_bytes(name);
        self.record(&comps);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.ensure_parent(parent)?;
                let dir = self.dir();
                let fd = create_excl(dir, name_os).or_else(|e| {
                    if e == Errno::EXIST {
                        replace(dir, name_os).and_then(|()| create_excl(dir, name_os))
                    } else {
                        Err(e)
                    }
                });
                let fd = fd.map_err(|err| self.fs_err("creating file", err))?;
                let mut f = File::from(fd);
                match &sparse {
                    Some(s) => sparse::write(s, e, &f, &mut self.buf),
                    None => copy(e, &mut f, &mut self.buf),
                }
                .map_err(|err| {
                    if err.kind() == io::ErrorKind::UnexpectedEof
                        || err.kind() == io::ErrorKind::InvalidData
                    {
                        LayerError::Tar(err)
                    } else {
                        self.fs_err("writing file", err)
                    }
                })?;
                self.set_meta_fd(f.as_fd(), &meta)?;
                rustix::fs::futimens(&f, &times(meta.mtime))
                    .map_err(|e| self.fs_err("futimens", e))?;
            }
            EntryType::Directory => {
                self.implicit.remove(&join(&comps));
                self.ensure_parent(parent)?;
                let dir = self.dir();
                // In a layer directory of its own (overlay), a non-directory already at this
                // name was written by this same layer (a whiteout, or a file or link the
                // layer then replaced): it hid whatever lower layers hold here, so the new
                // directory must keep hiding it, i.e. be opaque, as the flattened unpack
                // (which removed the lower tree) shows it.
                let mut hides_lower = false;
                match rustix::fs::mkdirat(dir, name_os, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let ft = safe::file_type_at(dir, name_os)
                            .map_err(|e| self.fs_err("statat", e))?;
                        if ft != Some(FileType::Directory) {
                            hides_lower = self.opts.whiteouts == Whiteouts::Overlay;
                            replace(dir, name_os)
                                .and_then(|()| {
                                    rustix::fs::mkdirat(dir, name_os, Mode::from_raw_mode(0o700))
                                })
                                .map_err(|e| self.fs_err("mkdirat", e))?;
                        }
                    }
                    Err(e) => return Err(self.fs_err("mkdirat", e)),
                }
                self.ensure_parent(parent)?;
                let dir = self.dir();
                let fd = rustix::fs::openat(
                    dir,
                    name_os,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.fs_err("opening directory", e))?;
                self.set_meta_fd(fd.as_fd(), &meta)?;
                if hides_lower {
                    rustix::fs::fsetxattr(&fd, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                        .map_err(|e| self.fs_err("setting trusted.overlay.opaque", e))?;
                    let p = join(&comps);
                    self.clean_opaque(fd.as_fd(), &p)?;
                }
                self.dirs.push((join(&comps), meta.mtime));
            }
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_err("symlink without target"))?
                    .into_owned();
                self.cache = None;
                self.ensure_parent(parent)?;
                let dir = self.dir();
                let target_os = OsStr::from_bytes(&target);
                retry_replace(dir, name_os, || {
                    rustix::fs::symlinkat(target_os, dir, name_os)
                })
                .map_err(|e| self.fs_err("symlinkat", e))?;
                self.set_meta_at(parent, name_os, &meta, false)?;
            }
            EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_err("hardlink without target"))?
                    .into_owned();
                let tcomps = components(&target)
                    .map_err(|r| self.unsafe_err(format!("hardlink target: {r}")))?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(self.unsafe_err("hardlink to the root"));
                };
                check_name(tname).map_err(|r| self.unsafe_err(format!("hardlink target: {r}")))?;
                let external = |this: &Self| LayerError::ExternalHardlink {
                    entry: this.entry.clone(),
                    target: String::from_utf8_lossy(&target).into_owned(),
                };
                let tdir = match safe::open_dir(self.root.as_fd(), &join(tparent)) {
                    Err(e)
                        if (e.kind() == io::ErrorKind::NotFound
                            || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()))
                            && self.opts.whiteouts == Whiteouts::Overlay =>
                    {
                        return Err(external(self));
                    }
                    r => r.map_err(|e| self.fs_err("opening hardlink target directory", e))?,
                };
                let tname = OsStr::from_bytes(tname);
                // In a layer's own directory a whited-out name is a 0/0 character device: a
                // link to it names a file that this layer removed, which the flattened unpack
                // cannot find either (ENOENT), not a second whiteout.
                if self.opts.whiteouts == Whiteouts::Overlay {
                    if let Ok(st) = rustix::fs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
                        if FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
                            && st.st_rdev == 0
                        {
                            return Err(self.fs_err("linkat", Errno::NOENT));
                        }
                    }
                }
                self.ensure_parent(parent)?;
                let dir = self.dir();
                let res = retry_replace(dir, name_os, || {
                    rustix::fs::linkat(&tdir, tname, dir, name_os, AtFlags::empty())
                });
                match res {
                    Err(Errno::NOENT) if self.opts.whiteouts == Whiteouts::Overlay => {
                        return Err(external(self));
                    }
                    r => r.map_err(|e| self.fs_err("linkat", e))?,
                }
            }
            EntryType::Fifo | EntryType::Char | EntryType::Block => {
                let (ft, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    t => {
                        let h = e.header();
                        let maj = h.device_major().ok().flatten().unwrap_or(0);
                        let min = h.device_minor().ok().flatten().unwrap_or(0);
                        let ft = if t == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, rustix::fs::makedev(maj, min))
                    }
                };
                self.ensure_parent(parent)?;
                let dir = self.dir();
                let made = retry_replace(dir, name_os, || {
                    rustix::fs::mknodat(dir, name_os, ft, Mode::from_raw_mode(0o600), dev)
                });
                match made {
                    // A 0:0 character device is what overlayfs takes for a whiteout, and it
                    // refuses to make one (EPERM) when a layer is applied over its lower
                    // layers through a mount (Store::unpack_layers): there the entry means,
                    // as in every overlay, that the name is gone.
                    Err(Errno::PERM) if ft == FileType::CharacterDevice && dev == 0 => {
                        replace(dir, name_os).map_err(|e| self.fs_err("removing", e))?;
                        return Ok(());
                    }
                    r => r.map_err(|e| self.fs_err("mknodat", e))?,
                }
                self.set_meta_at(parent, name_os, &meta, true)?;
            }
            other => {
                tracing::warn!(entry = %self.entry, kind = ?other, "skipping unsupported tar entry type");
            }
        }
        Ok(())
    }

    fn set_meta_fd(&self, fd: BorrowedFd<'_>, m: &Meta) -> Result<(), LayerError> {
        if self.opts.chown {
            rustix::fs::fchown(fd, Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)))
                .map_err(|e| self.fs_err("fchown", e))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(m.mode))
            .map_err(|e| self.fs_err("fchmod", e))?;
        for (k, v) in &m.xattrs {
            match rustix::fs::fsetxattr(fd, OsStr::from_bytes(k), v, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::NOTSUP) if !self.opts.chown => {
                    tracing::debug!(entry = %self.entry, "skipping xattr without privilege");
                }
                Err(e) => return Err(self.fs_err("fsetxattr", e)),
            }
        }
        Ok(())
    }

    fn set_meta_at(
        &mut self,
        parent: &[&[u8]],
        name: &OsStr,
        m: &Meta,
        chmod: bool,
    ) -> Result<(), LayerError> {
        let chown = self.opts.chown;
        self.ensure_parent(parent)?;
        let dir = self.dir();
        let r = (|| {
            if chown {
                rustix::fs::chownat(
                    dir,
                    name,
                    Some(Uid::from_raw(m.uid)),
                    Some(Gid::from_raw(m.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            if chmod {
                rustix::fs::chmodat(dir, name, Mode::from_raw_mode(m.mode), AtFlags::empty())?;
            }
            rustix::fs::utimensat(dir, name, &times(m.mtime), AtFlags::SYMLINK_NOFOLLOW)
        })();
        r.map_err(|e| self.fs_err("setting metadata", e))
    }

    fn finish(&mut self) -> Result<(), LayerError> {
        self.cache = None;
        for (path, mtime) in std::mem::take(&mut self.dirs).into_iter().rev() {
            let p = if path.is_empty() { b".".to_vec() } else { path };
            let fd = rustix::fs::openat2(
                &self.root,
                OsStr::from_bytes(&p),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                IN_ROOT,
            );
            match fd {
                Ok(fd) => rustix::fs::futimens(&fd, &times(mtime))
                    .map_err(|e| self.fs_err("futimens", e))?,
                // Replaced or removed by a later entry.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {}
                Err(e) => return Err(self.fs_err("opening directory", e)),
            }
        }
        Ok(())
    }
}

fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec = sec.parse::<i64>().ok()?;
    let mut nsec = 0i64;
    for (i, c) in frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .enumerate()
    {
        if !c.is_ascii_digit() {
            return None;
        }
        let _ = i;
        nsec = nsec * 10 + i64::from(c - b'0');
    }
    Some(Timespec {
        tv_sec,
        tv_nsec: nsec,
    })
}

fn create_excl(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
}

fn replace(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    safe::remove_all_at(dir, name).map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

fn retry_replace(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mut f: impl FnMut() -> Result<(), Errno>,
) -> Result<(), Errno> {
    match f() {
        Err(Errno::EXIST) => {
            replace(dir, name)?;
            f()
        }
        r => r,
    }
}

fn copy(r: &mut impl Read, w: &mut File, buf: &mut [u8]) -> io::Result<()> {
    loop {
        let n = match r.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_with_chroot_semantics() {
        assert_eq!(components(b"./a//b/").unwrap(), vec![b"a".as_slice(), b"b"]);
        assert_eq!(
            components(b"/etc/passwd").unwrap(),
            vec![b"etc".as_slice(), b"passwd"]
        );
        assert_eq!(components(b"a/../b").unwrap(), vec![b"b".as_slice()]);
        assert!(components(b"a/../../b").is_err());
        assert!(components(b"/../b").is_err());
        assert!(components(b"..").is_err());
        assert!(components(&[b'a', 0, b'b']).is_err());
        assert!(components(b"./").unwrap().is_empty());
        assert!(components(b"/").unwrap().is_empty());
    }

    #[test]
    fn derived_names() {
        for bad in [&b""[..], b".", b"..", b"a/b", &[b'a', 0]] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(b"...").is_ok());
    }

    #[test]
    fn pax_time() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
    }
}
