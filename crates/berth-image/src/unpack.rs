//! Turning stored images into directories: per-layer dirs, flattened rootfs, overlay mounts.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::image::{Image, Layer};
use crate::layer::{self, ApplyOptions, LayerError, LayerStats, Whiteouts};
use crate::store::{Store, StoreError};

/// Progress reports from long operations.
#[derive(Debug, Clone, Copy)]
pub enum ProgressEvent {
    /// Work begins: this many layers and blob bytes.
    Start {
        /// Layers to process.
        layers: usize,
        /// Total blob bytes.
        bytes: u64,
    },
    /// This many more blob bytes were processed.
    Bytes(u64),
    /// One more layer is done.
    LayerDone,
}

/// A progress sink; `&|_| {}` ignores everything.
pub type Progress<'a> = &'a (dyn Fn(ProgressEvent) + Sync);

/// Error unpacking an image.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer failed to apply (the target was removed).
    #[error("layer {digest}")]
    Layer {
        /// The layer blob.
        digest: crate::Digest,
        /// Why.
        #[source]
        source: LayerError,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The destination already exists.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// A path can't be used in overlayfs options.
    #[error("path {0} contains characters overlayfs options can't carry (',' ':' '\\\\')")]
    OverlayPath(PathBuf),
}

fn apply_blob(
    store: &Store,
    l: &Layer,
    dest: &Path,
    whiteouts: Whiteouts,
    progress: Progress<'_>,
) -> Result<LayerStats, UnpackError> {
    let fd = rustix::fs::open(
        dest,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Io {
        op: "opening",
        path: dest.to_owned(),
        source: e.into(),
    })?;
    apply_blob_at(store, l, fd.as_fd(), dest, whiteouts, progress)
}

fn apply_blob_at(
    store: &Store,
    l: &Layer,
    dest: BorrowedFd<'_>,
    shown: &Path,
    whiteouts: Whiteouts,
    progress: Progress<'_>,
) -> Result<LayerStats, UnpackError> {
    let blob = store.open_blob(&l.digest, l.size)?;
    let mut opts = ApplyOptions::new(whiteouts);
    opts.expect_blob_size = Some(l.size);
    opts.media_type = Some(l.media_type.clone());
    // Every path that assembles a rootfs checks the diff id, as containerd does: the config
    // (verified through the manifest) names it, so it authenticates what is written. A
    // flattened rootfs also re-checks the blob digest (hashed on the reader thread, beside
    // the decompression), so a damaged store blob is noticed even where the decompressor
    // does not check (gzip CRCs are not computed).
    opts.expect_diff_id = Some(l.diff_id.clone());
    if whiteouts == Whiteouts::Apply {
        opts.expect_blob = Some(l.digest.clone());
    }
    let last = AtomicU64::new(0);
    let cb = |n: u64| {
        let prev = last.swap(n, Ordering::Relaxed);
        progress(ProgressEvent::Bytes(n.saturating_sub(prev)));
    };
    let stats =
        layer::apply_at(blob, dest, shown, &opts, &cb).map_err(|source| UnpackError::Layer {
            digest: l.digest.clone(),
            source,
        })?;
    progress(ProgressEvent::LayerDone);
    Ok(stats)
}

/// The xattr on a layer directory that lists (one per line) the directories the layer
/// needed without entries (`LayerStats::implicit_dirs`); `*` when the list is too long for an
/// xattr. `trusted.` (root only), and never visible through an overlay mount, whose root is
/// the upper directory's.
const IMPLICIT_XATTR: &str = "trusted.berth.implicit";

/// Note the `implicit` directories on the layer directory `dir` (before it is renamed into
/// place, so a directory is never seen without its note).
fn write_implicit_note(dir: &Path, implicit: &[String]) -> Result<(), UnpackError> {
    if implicit.is_empty() {
        return Ok(());
    }
    let mut text = implicit.join("\n");
    if text.len() > 3000 {
        text = "*".into();
    }
    rustix::fs::setxattr(
        dir,
        IMPLICIT_XATTR,
        text.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| UnpackError::Io {
        op: "noting implicit directories on",
        path: dir.to_owned(),
        source: e.into(),
    })
}

/// Whether a layer whose standalone directory made `implicit` directories (0755, root) shows
/// something else over `lowers` (bottom to top) than the flattened unpack: true when the
/// topmost lower layer that has one of them has a symlink, a file, or a directory of another
/// mode or owner there.
fn needs_lower_layers(dir: &Path, lowers: &[PathBuf]) -> Result<bool, UnpackError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut buf = vec![0u8; 4096];
    let n = match rustix::fs::getxattr(dir, IMPLICIT_XATTR, &mut buf[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NODATA) => return Ok(false),
        Err(e) => {
            return Err(UnpackError::Io {
                op: "reading implicit directories of",
                path: dir.to_owned(),
                source: e.into(),
            })
        }
    };
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    if text == "*" {
        return Ok(true);
    }
    for line in text.lines().filter(|l| !l.is_empty()) {
        // `?dir`: made only for whiteouts, so it must be there below (else the layer would
        // add an empty directory that the flattened unpack does not have).
        // `!dir`: holds whiteouts, so must be a directory below, whatever its attributes
        // (overlayfs lists whiteouts in a directory no lower layer has).
        let (p, must_exist, any_attrs) = match (line.strip_prefix('?'), line.strip_prefix('!')) {
            (Some(p), _) => (p, true, false),
            (_, Some(p)) => (p, true, true),
            _ => (line, false, false),
        };
        let mut found = false;
        for lower in lowers.iter().rev() {
            let Ok(m) = fs::symlink_metadata(lower.join(p)) else {
                continue;
            };
            let ft = m.file_type();
            if ft.is_char_device() && m.rdev() == 0 {
                break;
            }
            let plain = m.mode() & 0o7777 == 0o755 && m.uid() == 0 && m.gid() == 0;
            if ft.is_dir() && (any_attrs || plain) {
                found = true;
                break;
            }
            return Ok(true);
        }
        if must_exist && !found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Copies what is read through it into `w` (the blob file of a streamed layer).
struct Tee<R, W> {
    r: R,
    w: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.w
            .write_all(&buf[..n])
            .map_err(|e| io::Error::new(e.kind(), format!("storing the blob: {e}")))?;
        Ok(n)
    }
}

fn start(img: &Image, progress: Progress<'_>) -> Result<Vec<Layer>, UnpackError> {
    let layers = img.layers().map_err(StoreError::from)?;
    progress(ProgressEvent::Start {
        layers: layers.len(),
        bytes: layers.iter().map(|l| l.size).sum(),
    });
    Ok(layers)
}

impl Store {
    /// Unpack one stored layer into `layers/<diffid>` (overlayfs whiteouts) unless already
    /// there, verifying its diff id. The directory appears complete or not at all.
    ///
    /// A layer with a hard link to a file of an earlier layer (docker accepts them; the image
    /// spec leaves them debated) cannot stand alone in a directory of its own: for such a
    /// layer this returns `Ok` with the path, which does not exist, so that a pull succeeds
    /// with the blob stored; [`Store::flatten`] and [`Store::unpack_layers`] (so
    /// [`Store::mount_overlay`]) build it over the layers below it. Directories a layer
    /// writes into without entries of their own are noted on the directory (xattr
    /// `trusted.berth.implicit`) for [`Store::unpack_layers`] to check.
    pub fn unpack_layer(&self, l: &Layer, progress: Progress<'_>) -> Result<PathBuf, UnpackError> {
        match self.unpack_layer_dir(l, progress) {
            Err(UnpackError::Layer { source, .. }) if source.needs_lower_layers() => {
                progress(ProgressEvent::LayerDone);
                Ok(self.layer_path(&l.diff_id))
            }
            r => r,
        }
    }

    fn unpack_layer_dir(&self, l: &Layer, progress: Progress<'_>) -> Result<PathBuf, UnpackError> {
        let dest = self.layer_path(&l.diff_id);
        if dest.is_dir() {
            progress(ProgressEvent::Bytes(l.size));
            progress(ProgressEvent::LayerDone);
            return Ok(dest);
        }
        let tmp = self.tmp_path("layer");
        fs::create_dir(&tmp).map_err(|source| UnpackError::Io {
            op: "creating",
            path: tmp.clone(),
            source,
        })?;
        let res = apply_blob(self, l, &tmp, Whiteouts::Overlay, progress).and_then(|stats| {
            write_implicit_note(&tmp, &stats.implicit_dirs)?;
            match fs::rename(&tmp, &dest) {
                Ok(()) => Ok(()),
                // Another process unpacked the same layer meanwhile.
                Err(_) if dest.is_dir() => {
                    let _ = layer::remove_tree(&tmp);
                    Ok(())
                }
                Err(source) => Err(UnpackError::Io {
                    op: "renaming layer to",
                    path: dest.clone(),
                    source,
                }),
            }
        });
        if res.is_err() {
            let _ = layer::remove_tree(&tmp);
        }
        res.map(|()| dest)
    }

    /// Unpack layer `l` from a stream of its blob (a download) into `layers/<diffid>`, storing
    /// the blob under `blobs/` as it passes. Digest, size and diff id are verified as the bytes
    /// flow; the blob and the directory become visible only once both are verified, and a
    /// failed layer leaves nothing behind. Returns the layer directory; a layer that
    /// hard-links into an earlier layer is stored as a blob only, as [`Store::unpack_layer`]
    /// explains (the rest of the stream is stored and the whole blob verified).
    ///
    /// ```no_run
    /// # fn f(store: &berth_image::Store, l: &berth_image::image::Layer) -> Result<(), Box<dyn std::error::Error>> {
    /// let body = std::fs::File::open("/tmp/download.tar.gz")?;
    /// let dir = store.unpack_layer_stream(l, body)?;
    /// println!("{}", dir.display());
    /// # Ok(()) }
    /// ```
    pub fn unpack_layer_stream(
        &self,
        l: &Layer,
        blob: impl Read + Send,
    ) -> Result<PathBuf, UnpackError> {
        let dest = self.layer_path(&l.diff_id);
        let tmp = self.tmp_path("layer");
        let blob_tmp = self.tmp_path("blob");
        let res = (|| {
            fs::create_dir(&tmp).map_err(|source| UnpackError::Io {
                op: "creating",
                path: tmp.clone(),
                source,
            })?;
            let file = fs::File::create(&blob_tmp).map_err(|source| UnpackError::Io {
                op: "creating",
                path: blob_tmp.clone(),
                source,
            })?;
            let mut tee = Tee {
                r: blob,
                w: io::BufWriter::with_capacity(256 << 10, file),
            };
            let mut opts = ApplyOptions::new(Whiteouts::Overlay);
            opts.expect_blob_size = Some(l.size);
            opts.expect_blob = Some(l.digest.clone());
            opts.expect_diff_id = Some(l.diff_id.clone());
            opts.media_type = Some(l.media_type.clone());
            let mut standalone = true;
            let mut implicit = Vec::new();
            match layer::apply(&mut tee, &tmp, &opts, &|_| {}) {
                Ok(stats) => implicit = stats.implicit_dirs,
                Err(e) if e.needs_lower_layers() => standalone = false,
                Err(source) => {
                    return Err(UnpackError::Layer {
                        digest: l.digest.clone(),
                        source,
                    })
                }
            }
            let werr = |source| UnpackError::Io {
                op: "writing",
                path: blob_tmp.clone(),
                source,
            };
            if !standalone {
                // Keep the whole blob (the tee stores what is read), then verify it whole.
                io::copy(&mut tee, &mut io::sink()).map_err(werr)?;
            }
            tee.w.flush().map_err(werr)?;
            drop(tee);
            if !standalone {
                let mut f = fs::File::open(&blob_tmp).map_err(werr)?;
                let (digest, size) = crate::digest::HashReader::new(&mut f)
                    .finish()
                    .map_err(werr)?;
                let bad = |source| {
                    UnpackError::Store(StoreError::Verify {
                        digest: l.digest.clone(),
                        source,
                    })
                };
                if digest != l.digest {
                    return Err(bad(crate::digest::DigestError::Mismatch {
                        expected: l.digest.clone(),
                        actual: digest,
                    }));
                }
                if size != l.size {
                    return Err(bad(crate::digest::DigestError::Size {
                        digest,
                        expected: l.size,
                        actual: size,
                    }));
                }
                let _ = layer::remove_tree(&tmp);
            }
            let bdest = self.blob_path(&l.digest);
            fs::rename(&blob_tmp, &bdest).map_err(|source| UnpackError::Io {
                op: "renaming blob to",
                path: bdest,
                source,
            })?;
            if !standalone {
                return Ok(());
            }
            write_implicit_note(&tmp, &implicit)?;
            match fs::rename(&tmp, &dest) {
                Ok(()) => Ok(()),
                Err(_) if dest.is_dir() => {
                    let _ = layer::remove_tree(&tmp);
                    Ok(())
                }
                Err(source) => Err(UnpackError::Io {
                    op: "renaming layer to",
                    path: dest.clone(),
                    source,
                }),
            }
        })();
        if res.is_err() {
            let _ = layer::remove_tree(&tmp);
            let _ = fs::remove_file(&blob_tmp);
        }
        res.map(|()| dest)
    }

    /// Unpack every layer of `img` into the layer store; returns the dirs bottom to top.
    ///
    /// A layer that stands alone goes to `layers/<diffid>`, shared by every image that has
    /// it. One that does not in this image (a hard link into an earlier layer; an entry under
    /// its own symlink to a directory of a lower layer; an opaque marker at its root, which
    /// overlayfs ignores there; a directory it writes into without an entry, where a lower
    /// layer has a symlink such as
    /// `var/run -> /run` or a directory of another mode than 0755) is applied as the
    /// flattened unpack applies it, onto an overlayfs mount of the layers below it, as
    /// containerd applies every layer: the kernel turns what it removes into whiteouts,
    /// follows lower symlinks and copies up hard-link targets, and the upper directory
    /// becomes `layers/chain-<chainid>` ([`Store::chain_layer_path`]), specific to what lies
    /// below.
    pub fn unpack_layers(
        &self,
        img: &Image,
        progress: Progress<'_>,
    ) -> Result<Vec<PathBuf>, UnpackError> {
        let layers = start(img, progress)?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut chain: Option<crate::Digest> = None;
        for l in &layers {
            let c = crate::store::chain_id(chain.as_ref(), &l.diff_id);
            chain = Some(c.clone());
            let chained = self.chain_layer_path(&c);
            if chained.is_dir() {
                progress(ProgressEvent::Bytes(l.size));
                progress(ProgressEvent::LayerDone);
                dirs.push(chained);
                continue;
            }
            match self.unpack_layer_dir(l, progress) {
                Ok(d) if !needs_lower_layers(&d, &dirs)? => dirs.push(d),
                Ok(_) => dirs.push(self.unpack_layer_over(l, &dirs, &c, progress)?),
                Err(UnpackError::Layer { source, .. }) if source.needs_lower_layers() => {
                    dirs.push(self.unpack_layer_over(l, &dirs, &c, progress)?)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(dirs)
    }

    /// Apply layer `l` onto an overlayfs mount of `lowers` (bottom to top) and keep the upper
    /// directory as `layers/chain-<chain>`; appears complete or not at all.
    fn unpack_layer_over(
        &self,
        l: &Layer,
        lowers: &[PathBuf],
        chain: &crate::Digest,
        progress: Progress<'_>,
    ) -> Result<PathBuf, UnpackError> {
        let dest = self.chain_layer_path(chain);
        let tmp = self.tmp_path("chain");
        let (upper, work, merged) = (tmp.join("upper"), tmp.join("work"), tmp.join("merged"));
        let io = |op, path: &Path| {
            let path = path.to_owned();
            move |source| UnpackError::Io { op, path, source }
        };
        let res = (|| {
            for d in [&tmp, &upper, &work, &merged] {
                fs::create_dir(d).map_err(io("creating", d))?;
            }
            // No index, metacopy or redirects: the upper directory must hold whole files and
            // plain whiteouts, to serve as a lower layer of other mounts.
            let opts = format!(
                "lowerdir={},upperdir={},workdir={},index=off,metacopy=off,redirect_dir=off",
                lower_option(lowers)?,
                overlay_path(&upper)?,
                overlay_path(&work)?
            );
            if lowers.is_empty() {
                // A first layer: nothing below, so applied as the flattened unpack does (its
                // whiteouts hide nothing and are dropped).
                apply_blob(self, l, &upper, Whiteouts::Apply, progress)?;
            } else {
                mount_overlayfs(&merged, opts)?;
                let applied = apply_blob(self, l, &merged, Whiteouts::Apply, progress);
                let unmounted =
                    rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty())
                        .map_err(|e| io("unmounting", &merged)(e.into()));
                applied?;
                unmounted?;
            }
            match fs::rename(&upper, &dest) {
                Ok(()) => Ok(()),
                Err(_) if dest.is_dir() => Ok(()),
                Err(source) => Err(UnpackError::Io {
                    op: "renaming layer to",
                    path: dest.clone(),
                    source,
                }),
            }
        })();
        let _ = rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH);
        let _ = layer::remove_tree(&tmp);
        res.map(|()| dest)
    }

    /// Build a flattened rootfs of `img` at `dest` (which must not exist), applying layers in
    /// order with their whiteouts and verifying each blob's digest; `dest` appears complete or
    /// not at all. The parent of `dest` may be reached through symlinks (the caller named it);
    /// see [`Store::flatten_at`] for the rest.
    pub fn flatten(
        &self,
        img: &Image,
        dest: &Path,
        progress: Progress<'_>,
    ) -> Result<(), UnpackError> {
        let (parent, name) = match (dest.parent(), dest.file_name()) {
            (Some(p), Some(n)) => (
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                },
                n,
            ),
            _ => return Err(UnpackError::Exists(dest.to_owned())),
        };
        let dir = rustix::fs::open(
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| UnpackError::Io {
            op: "opening",
            path: parent.to_owned(),
            source: e.into(),
        })?;
        self.flatten_at(img, dir.as_fd(), name, dest, progress)
    }

    /// [`Store::flatten`] into the entry `name` of the open directory `dir` (`shown` names it
    /// in errors). The rootfs is built in a fresh `.NAME.berth-tmp-PID` beside it, made with
    /// `mkdirat` and used only through its fd, then renamed to `name` with
    /// `RENAME_NOREPLACE`: nothing planted in `dir` (a symlink at either name) is followed.
    /// Errors: [`UnpackError::Exists`] when `name` exists (whatever it is), layer errors
    /// (the partial tree is removed).
    pub fn flatten_at(
        &self,
        img: &Image,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        shown: &Path,
        progress: Progress<'_>,
    ) -> Result<(), UnpackError> {
        if rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Err(UnpackError::Exists(shown.to_owned()));
        }
        let layers = start(img, progress)?;
        let tmp_name = format!(
            ".{}.berth-tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        );
        let tmp = shown.with_file_name(&tmp_name);
        let io = |op, source: rustix::io::Errno| UnpackError::Io {
            op,
            path: tmp.clone(),
            source: source.into(),
        };
        let _ = layer::safe::remove_all_at(dir, OsStr::new(&tmp_name));
        rustix::fs::mkdirat(dir, tmp_name.as_str(), Mode::from_raw_mode(0o755))
            .map_err(|e| io("creating", e))?;
        let res = rustix::fs::openat(
            dir,
            tmp_name.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io("opening", e))
        .and_then(|fd| {
            layers.iter().try_for_each(|l| {
                apply_blob_at(self, l, fd.as_fd(), &tmp, Whiteouts::Apply, progress).map(|_| ())
            })
        })
        .and_then(|()| {
            rustix::fs::renameat_with(dir, tmp_name.as_str(), dir, name, RenameFlags::NOREPLACE)
                .map_err(|e| match e {
                    rustix::io::Errno::EXIST => UnpackError::Exists(shown.to_owned()),
                    e => UnpackError::Io {
                        op: "renaming to",
                        path: shown.to_owned(),
                        source: e.into(),
                    },
                })
        });
        if res.is_err() {
            let _ = layer::safe::remove_all_at(dir, OsStr::new(&tmp_name));
        }
        res
    }

    /// Mount `img` at `target` as overlayfs over its unpacked layers, with the writable upper
    /// and work dirs under `state` (created). Undo with [`unmount_overlay`].
    ///
    /// The tree is the flattened one ([`Store::flatten`]; a random differential test in
    /// `tests/layers_chroot.rs` compares both with umoci): layers that cannot stand alone
    /// (hard links into earlier layers, entries below a lower layer's symlink such as
    /// `var/run -> /run`) are applied over their lower layers ([`Store::unpack_layers`]).
    pub fn mount_overlay(
        &self,
        img: &Image,
        target: &Path,
        state: &Path,
        progress: Progress<'_>,
    ) -> Result<(), UnpackError> {
        let dirs = self.unpack_layers(img, progress)?;
        let upper = state.join("upper");
        let work = state.join("work");
        for d in [&upper, &work] {
            fs::create_dir_all(d).map_err(|source| UnpackError::Io {
                op: "creating",
                path: d.clone(),
                source,
            })?;
        }
        let mut dirs = dirs;
        if dirs.is_empty() {
            let empty = state.join("empty");
            fs::create_dir_all(&empty).map_err(|source| UnpackError::Io {
                op: "creating",
                path: empty.clone(),
                source,
            })?;
            dirs.push(empty);
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower_option(&dirs)?,
            overlay_path(&upper)?,
            overlay_path(&work)?
        );
        mount_overlayfs(target, opts)
    }
}

/// `p` as overlayfs options can carry it.
fn overlay_path(p: &Path) -> Result<String, UnpackError> {
    let s = p
        .to_str()
        .ok_or_else(|| UnpackError::OverlayPath(p.to_owned()))?;
    if s.contains([',', ':', '\\']) {
        return Err(UnpackError::OverlayPath(p.to_owned()));
    }
    Ok(s.to_owned())
}

/// The `lowerdir=` value for layer directories given bottom to top: top layer first.
/// overlayfs refuses a directory that appears twice ("conflicting lowerdir path"), which an
/// image that repeats a layer (same diff id) asks for; the topmost occurrence subsumes the
/// lower ones (the same entries, whiteouts and opaque markers, above them), so only it is
/// kept.
fn lower_option(dirs: &[PathBuf]) -> Result<String, UnpackError> {
    let mut lower: Vec<String> = Vec::new();
    for d in dirs.iter().rev() {
        let s = overlay_path(d)?;
        if !lower.contains(&s) {
            lower.push(s);
        }
    }
    Ok(lower.join(":"))
}

fn mount_overlayfs(target: &Path, opts: String) -> Result<(), UnpackError> {
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        Some(
            std::ffi::CString::new(opts)
                .expect("no NUL in checked paths")
                .as_c_str(),
        ),
    )
    .map_err(|e| UnpackError::Io {
        op: "mounting overlay on",
        path: target.to_owned(),
        source: e.into(),
    })
}

/// Unmount an overlay made by [`Store::mount_overlay`] and remove its `state` dir.
pub fn unmount_overlay(target: &Path, state: &Path) -> Result<(), UnpackError> {
    match rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => {}
        Err(e) => {
            return Err(UnpackError::Io {
                op: "unmounting",
                path: target.to_owned(),
                source: e.into(),
            })
        }
    }
    if state.exists() {
        layer::remove_tree(state).map_err(|source| UnpackError::Io {
            op: "removing",
            path: state.to_owned(),
            source,
        })?;
    }
    Ok(())
}
