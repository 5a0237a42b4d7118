//! Whiteouts and opaque markers: applied to the lower layers of a flattened rootfs, or
//! converted to overlayfs's format (0/0 character devices, `trusted.overlay.opaque`) in a
//! layer directory of its own.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::{check_name, join, Applier, OPAQUE, WHITEOUT};
use crate::layer::safe;
use crate::layer::{LayerError, Whiteouts};

impl Applier<'_> {
    pub(super) fn whiteout(
        &mut self,
        parent: &[&[u8]],
        name: &[u8],
        target: &[u8],
    ) -> Result<(), LayerError> {
        if name == OPAQUE {
            match self.opts.whiteouts {
                Whiteouts::Overlay => {
                    if parent.is_empty() {
                        // overlayfs ignores trusted.overlay.opaque on a layer's root.
                        return Err(LayerError::NeedsLowerLayers {
                            entry: self.entry.clone(),
                            reason: "the layer's root is opaque".into(),
                        });
                    }
                    let mut made = Vec::new();
                    let dir = safe::open_or_create_dirs(self.root.as_fd(), parent, &mut |n| {
                        made.push(join(&parent[..n]))
                    })
                    .map_err(|e| self.parent_err("creating opaque directory", e))?;
                    for m in made {
                        let e = self.entry.clone();
                        self.implicit.entry(m).or_insert((e, false));
                    }
                    let fd = rustix::fs::openat(
                        &dir,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.fs_err("opening opaque directory", e))?;
                    rustix::fs::fsetxattr(&fd, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                        .map_err(|e| self.fs_err("setting trusted.overlay.opaque", e))?;
                    let p = join(parent);
                    self.clean_opaque(fd.as_fd(), &p)?;
                }
                Whiteouts::Apply => {
                    // Clear the lower content now, where the marker's directory is now
                    // (a later entry may replace a parent with a symlink), keeping what this
                    // layer wrote before the marker; what it writes after is added later.
                    self.cache = None;
                    let path = join(parent);
                    match safe::open_dir(self.root.as_fd(), &path) {
                        Ok(fd) => self
                            .clear_opaque(fd.as_fd(), &path)
                            .map_err(|e| self.fs_err("clearing opaque directory", e))?,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(self.fs_err("opening opaque directory", e)),
                    }
                    self.record(parent);
                }
            }
            return Ok(());
        }
        check_name(target).map_err(|r| self.unsafe_err(format!("whiteout: {r}")))?;
        if target.starts_with(WHITEOUT) {
            return Err(self.unsafe_err("whiteout of a whiteout name"));
        }
        // A whiteout applies to the lower layers only: "files that are present in the same
        // layer as a whiteout file can only be hidden by whiteout files in subsequent
        // layers" (image-spec layer.md, as umoci does). What this layer wrote at or below
        // the name stays; below a directory of this layer, the lower content goes (the
        // directory becomes opaque).
        let target_os = OsStr::from_bytes(target);
        let mut path = join(parent);
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(target);
        match self.opts.whiteouts {
            Whiteouts::Overlay => {
                // Below an opaque directory of this layer nothing lower shows, and a whiteout
                // device there would only be listed as a broken entry: nothing to do.
                if self.under_opaque(parent)? {
                    return Ok(());
                }
                self.ensure_parent_for(parent, true)?;
                let dir = self.dir();
                // The layer's own directory holds only what this layer wrote, and the
                // directories it made for entries without their own.
                let mut ft =
                    safe::file_type_at(dir, target_os).map_err(|e| self.fs_err("statat", e))?;
                if ft == Some(FileType::Directory) && self.made_for_whiteouts(&path) {
                    // Nothing of the layer there: the whiteout replaces it.
                    safe::remove_all_at(dir, target_os)
                        .map_err(|e| self.fs_err("removing whited-out path", e))?;
                    let mut below = path.clone();
                    below.push(b'/');
                    self.implicit
                        .retain(|k, _| *k != path && !k.starts_with(&below));
                    ft = None;
                }
                let dir = self.dir();
                match ft {
                    None => {
                        rustix::fs::mknodat(
                            dir,
                            target_os,
                            FileType::CharacterDevice,
                            Mode::empty(),
                            rustix::fs::makedev(0, 0),
                        )
                        .map_err(|e| self.fs_err("creating whiteout device", e))?;
                        if !parent.is_empty() {
                            self.whiteout_dirs.insert(join(parent));
                        }
                    }
                    Some(FileType::Directory) => {
                        let fd = rustix::fs::openat(
                            dir,
                            target_os,
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(|e| self.fs_err("opening whited-out directory", e))?;
                        rustix::fs::fsetxattr(
                            &fd,
                            "trusted.overlay.opaque",
                            b"y",
                            XattrFlags::empty(),
                        )
                        .map_err(|e| self.fs_err("setting trusted.overlay.opaque", e))?;
                        self.clean_opaque(fd.as_fd(), &path)?;
                    }
                    Some(_) => {}
                }
            }
            Whiteouts::Apply => {
                self.cache = None;
                let dir = match safe::open_dir(self.root.as_fd(), &join(parent)) {
                    Ok(d) => d,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(self.fs_err("opening whiteout directory", e)),
                };
                let mut below = path.clone();
                below.push(b'/');
                let wrote_below = self
                    .written
                    .range(below.clone()..)
                    .next()
                    .is_some_and(|k| k.starts_with(&below));
                if wrote_below || self.written.contains(&path) {
                    let ft = safe::file_type_at(dir.as_fd(), target_os)
                        .map_err(|e| self.fs_err("statat", e))?;
                    if ft == Some(FileType::Directory) {
                        let sub = safe::open_child_dir(dir.as_fd(), target)
                            .map_err(|e| self.fs_err("opening whited-out directory", e))?;
                        self.clear_opaque(sub.as_fd(), &path)
                            .map_err(|e| self.fs_err("removing whited-out path", e))?;
                    }
                } else {
                    safe::remove_all_at(dir.as_fd(), target_os)
                        .map_err(|e| self.fs_err("removing whited-out path", e))?;
                }
            }
        }
        Ok(())
    }

    /// Whether the directory `parent` or one above it (up to the layer's root) is opaque in
    /// this layer's own directory (overlay mode).
    pub(super) fn under_opaque(&self, parent: &[&[u8]]) -> Result<bool, LayerError> {
        for i in 0..=parent.len() {
            let fd = match safe::open_dir(self.root.as_fd(), &join(&parent[..i])) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(self.fs_err("opening whiteout directory", e)),
            };
            let fd = rustix::fs::openat(
                &fd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.fs_err("opening whiteout directory", e))?;
            let mut v = [0u8; 2];
            if let Ok(1) = rustix::fs::fgetxattr(&fd, "trusted.overlay.opaque", &mut v) {
                if v[0] == b'y' {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Whether `path` and everything the layer made below it were made only for whiteouts.
    pub(super) fn made_for_whiteouts(&self, path: &[u8]) -> bool {
        let mut below = path.to_vec();
        below.push(b'/');
        self.implicit.get(path).is_some_and(|v| v.1)
            && self
                .implicit
                .range(below.clone()..)
                .take_while(|(k, _)| k.starts_with(&below))
                .all(|(_, v)| v.1)
    }

    /// Overlay mode: the directory `fd` (path `path`) has just become opaque. Whiteouts
    /// below it hide nothing any more, and directories made only for them would show as
    /// empty directories: remove both.
    pub(super) fn clean_opaque(
        &mut self,
        fd: BorrowedFd<'_>,
        path: &[u8],
    ) -> Result<(), LayerError> {
        drop_whiteouts(fd).map_err(|e| self.fs_err("dropping whiteouts", e))?;
        let mut below = path.to_vec();
        below.push(b'/');
        let gone: Vec<Vec<u8>> = self
            .implicit
            .range(below.clone()..)
            .take_while(|(k, _)| k.starts_with(&below))
            .filter(|(_, v)| v.1)
            .map(|(k, _)| k.clone())
            .collect();
        // Deepest first, each only if it is empty by now.
        for k in gone.iter().rev() {
            let rel = &k[below.len()..];
            match rustix::fs::unlinkat(fd, OsStr::from_bytes(rel), AtFlags::REMOVEDIR) {
                Ok(()) => {
                    self.implicit.remove(k);
                }
                Err(Errno::NOENT | Errno::NOTEMPTY | Errno::NOTDIR) => {}
                Err(e) => return Err(self.fs_err("removing an empty directory", e)),
            }
        }
        self.cache = None;
        Ok(())
    }

    /// Remove what lower layers left in the opaque directory `fd` (path `path`).
    pub(super) fn clear_opaque(&self, fd: BorrowedFd<'_>, path: &[u8]) -> io::Result<()> {
        for name in safe::list_dir(fd)? {
            let mut child = path.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(&name);
            let name_os = OsStr::from_bytes(&name);
            if !self.written.contains(&child) {
                safe::remove_all_at(fd, name_os)?;
            } else if safe::file_type_at(fd, name_os)? == Some(FileType::Directory) {
                let sub = safe::open_child_dir(fd, &name)?;
                self.clear_opaque(sub.as_fd(), &child)?;
            }
        }
        Ok(())
    }
}

/// Remove the whiteout devices (char 0:0) in the tree of the open directory `dir`, an opaque
/// directory of a layer unpacked for overlayfs. Below an opaque directory nothing of the lower
/// layers is visible, so they hide nothing; and overlayfs lists the entries of a directory
/// that exists in one layer only as they are, so each would show as a broken entry
/// (`c?????????`) in the container.
fn drop_whiteouts(dir: BorrowedFd<'_>) -> io::Result<()> {
    for name in safe::list_dir(dir)? {
        let name_os = OsStr::from_bytes(&name);
        let st = match rustix::fs::statat(dir, name_os, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::CharacterDevice if st.st_rdev == 0 => {
                rustix::fs::unlinkat(dir, name_os, AtFlags::empty())?;
            }
            FileType::Directory => {
                let sub = safe::open_child_dir(dir, &name)?;
                drop_whiteouts(sub.as_fd())?;
            }
            _ => {}
        }
    }
    Ok(())
}
