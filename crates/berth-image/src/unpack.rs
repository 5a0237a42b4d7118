//! Turning stored images into directories: per-layer dirs, flattened rootfs, overlay mounts.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::image::{Image, Layer};
use crate::layer::{self, ApplyOptions, LayerError, Whiteouts};
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
) -> Result<(), UnpackError> {
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
) -> Result<(), UnpackError> {
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
    layer::apply_at(blob, dest, shown, &opts, &cb).map_err(|source| UnpackError::Layer {
        digest: l.digest.clone(),
        source,
    })?;
    progress(ProgressEvent::LayerDone);
    Ok(())
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
    /// Hard links to a file of an earlier layer (docker accepts them; the image spec leaves
    /// them debated) make a layer that cannot stand alone in a directory of its own: for such
    /// a layer this returns `Ok` with the path, which does not exist, so that a pull succeeds
    /// with the blob stored. [`Store::flatten`] builds such images (the earlier layers are
    /// present there); [`Store::unpack_layers`] and so [`Store::mount_overlay`] refuse them
    /// with [`LayerError::ExternalHardlink`].
    pub fn unpack_layer(&self, l: &Layer, progress: Progress<'_>) -> Result<PathBuf, UnpackError> {
        match self.unpack_layer_dir(l, progress) {
            Err(UnpackError::Layer {
                source: LayerError::ExternalHardlink { .. },
                ..
            }) => {
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
        let res = apply_blob(self, l, &tmp, Whiteouts::Overlay, progress).and_then(|()| {
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
            match layer::apply(&mut tee, &tmp, &opts, &|_| {}) {
                Ok(_) => {}
                Err(LayerError::ExternalHardlink { .. }) => standalone = false,
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
    /// A layer that hard-links into an earlier layer is refused
    /// ([`LayerError::ExternalHardlink`]; see [`Store::unpack_layer`]).
    pub fn unpack_layers(
        &self,
        img: &Image,
        progress: Progress<'_>,
    ) -> Result<Vec<PathBuf>, UnpackError> {
        start(img, progress)?
            .iter()
            .map(|l| self.unpack_layer_dir(l, progress))
            .collect()
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
                apply_blob_at(self, l, fd.as_fd(), &tmp, Whiteouts::Apply, progress)
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
    /// `tests/layers_chroot.rs` compares both with umoci) for layers written as docker writes
    /// them, with two documented exceptions that come from unpacking each layer on its own
    /// (shared by diff id): a hard link to a file of an earlier layer is refused
    /// ([`LayerError::ExternalHardlink`]), and an entry whose parent directory has no entry
    /// in its own layer while a lower layer has a symlink there (`var/run -> /run` below
    /// `var/run/app.pid`) lands in a directory of that name, as with docker's overlay2,
    /// where the flattened unpack and containerd follow the link (`run/app.pid`).
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
        let check = |p: &Path| -> Result<String, UnpackError> {
            let s = p
                .to_str()
                .ok_or_else(|| UnpackError::OverlayPath(p.to_owned()))?;
            if s.contains([',', ':', '\\']) {
                return Err(UnpackError::OverlayPath(p.to_owned()));
            }
            Ok(s.to_owned())
        };
        // Top layer first. overlayfs refuses a directory that appears twice ("conflicting
        // lowerdir path"), which an image that repeats a layer (same diff id) asks for; the
        // topmost occurrence subsumes the lower ones (the same entries, whiteouts and opaque
        // markers, above them), so only it is kept.
        let mut lower: Vec<String> = Vec::new();
        for d in dirs.iter().rev() {
            let s = check(d)?;
            if !lower.contains(&s) {
                lower.push(s);
            }
        }
        if lower.is_empty() {
            let empty = state.join("empty");
            fs::create_dir_all(&empty).map_err(|source| UnpackError::Io {
                op: "creating",
                path: empty.clone(),
                source,
            })?;
            lower.push(check(&empty)?);
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            check(&upper)?,
            check(&work)?
        );
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
