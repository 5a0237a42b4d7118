//! Layer blobs: decompression and safe application of tar entries with OCI whiteouts.
//!
//! [`apply`] streams a (possibly compressed) layer into a directory: one thread reads and hashes
//! the blob, one decompresses, and the calling thread hashes the tar stream, parses it and
//! writes the files; bounded channels of reusable buffers join them, so memory stays flat
//! whatever the layer size.

mod apply;
mod pipe;
pub(crate) mod safe;
mod sparse;

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

pub use safe::remove_tree;

use crate::digest::{Digest, DigestError};

/// Error unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// An entry would write outside the target, or is otherwise refused.
    #[error("unsafe layer entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's path in the tar stream.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// A hard link in a layer unpacked on its own (for overlayfs) names a file that is not in
    /// that layer: a file of an earlier layer. Such a layer is kept as a blob and built only
    /// into a flattened rootfs, where the earlier layers are present (see
    /// [`crate::Store::unpack_layer`]).
    #[error("layer entry {entry:?} hard-links to {target:?}, which is not in its layer (a file of an earlier layer): the layer can only be unpacked flattened")]
    ExternalHardlink {
        /// The entry's path in the tar stream.
        entry: String,
        /// The link target.
        target: String,
    },
    /// In a layer unpacked on its own (for overlayfs), an entry's parent cannot be resolved
    /// without the earlier layers: it leads through a symlink of the layer to a directory
    /// that only they have (`d -> /usr` then `d/x`), or the layer makes its root opaque
    /// (which overlayfs ignores on a layer's root). Such a layer is applied over its lower
    /// layers instead (see [`crate::Store::unpack_layers`]).
    #[error("layer entry {entry:?} cannot be unpacked without the earlier layers: {reason}")]
    NeedsLowerLayers {
        /// The entry's path in the tar stream.
        entry: String,
        /// What needs them.
        reason: String,
    },
    /// A filesystem operation for an entry failed.
    #[error("{op} for layer entry {entry:?} in {root}")]
    Fs {
        /// The operation (`mkdirat`, `openat`, ...).
        op: &'static str,
        /// The entry's path in the tar stream.
        entry: String,
        /// The target root.
        root: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The tar stream is malformed or truncated.
    #[error("reading layer tar stream")]
    Tar(#[source] io::Error),
    /// The compressed stream could not be read or decompressed.
    #[error("reading or decompressing layer blob")]
    Decompress(#[source] io::Error),
    /// The target directory could not be opened.
    #[error("opening layer target {path}")]
    Target {
        /// The target.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The blob had another size than its descriptor says.
    #[error("layer blob has {actual} bytes, expected {expected}")]
    BlobSize {
        /// Size from the descriptor.
        expected: u64,
        /// Bytes read.
        actual: u64,
    },
    /// The layer's media type names a format that cannot be read.
    #[error("layer media type {media_type:?}: {reason}")]
    MediaType {
        /// The media type.
        media_type: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// The blob's digest or the uncompressed diff id did not match.
    #[error("layer verification failed")]
    Verify(#[from] DigestError),
}

impl LayerError {
    /// Whether the layer was refused only because a directory of its own cannot hold it
    /// ([`LayerError::ExternalHardlink`], [`LayerError::NeedsLowerLayers`]): it is then
    /// applied over its lower layers, as the flattened unpack applies it.
    ///
    /// ```
    /// use berth_image::layer::LayerError;
    /// let e = LayerError::NeedsLowerLayers {
    ///     entry: "x/y".into(),
    ///     reason: "x is a symlink to a lower directory".into(),
    /// };
    /// assert!(e.needs_lower_layers());
    /// ```
    pub fn needs_lower_layers(&self) -> bool {
        matches!(
            self,
            Self::ExternalHardlink { .. } | Self::NeedsLowerLayers { .. }
        )
    }
}

/// Compression of a layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detect from the first bytes of a blob: gzip (`1f 8b`, RFC 1952), a zstd frame
    /// (`28 b5 2f fd`) or a zstd skippable frame (`5?  2a 4d 18`, RFC 8878 section 3.1.2;
    /// the decoder skips it), anything else a plain tar.
    ///
    /// ```
    /// use berth_image::layer::Compression;
    /// assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
    /// assert_eq!(Compression::detect(&[0x50, 0x2a, 0x4d, 0x18]), Compression::Zstd);
    /// assert_eq!(Compression::detect(b"etc/"), Compression::None);
    /// ```
    pub fn detect(magic: &[u8]) -> Self {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            || (magic.len() >= 4 && magic[0] & 0xf0 == 0x50 && magic[1..4] == [0x2a, 0x4d, 0x18])
        {
            Self::Zstd
        } else {
            Self::None
        }
    }

    /// The compression a layer media type declares: `Ok(Some(..))` for the OCI
    /// (`...layer.v1.tar`, `+gzip`, `+zstd`, also `nondistributable`) and docker
    /// (`...rootfs.diff.tar`, `.tar.gzip`, foreign) layer types, `Ok(None)` for a type that
    /// says nothing (then the magic number alone decides), and an error for what no
    /// decompressor here reads (`+encrypted`, another `+suffix`).
    ///
    /// ```
    /// use berth_image::layer::Compression;
    /// let c = Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd");
    /// assert_eq!(c, Ok(Some(Compression::Zstd)));
    /// assert!(Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip+encrypted").is_err());
    /// ```
    pub fn from_media_type(media_type: &str) -> Result<Option<Self>, String> {
        let mt = media_type.trim();
        if mt.contains("+encrypted") {
            return Err("encrypted layers are not supported".into());
        }
        if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
            Ok(Some(Self::Gzip))
        } else if mt.ends_with("+zstd") || mt.ends_with(".tar.zstd") {
            Ok(Some(Self::Zstd))
        } else if mt.ends_with(".tar") {
            Ok(Some(Self::None))
        } else if let Some((_, suffix)) = mt.rsplit_once('+') {
            Err(format!("unsupported layer compression {suffix:?}"))
        } else {
            Ok(None)
        }
    }

    /// Decide from the media type's declaration (if any) and the blob's first bytes. The
    /// magic number wins when it names a format (docker and containerd decompress by magic
    /// alone, and mislabelled layers exist: a docker-archive layer typed `.tar.gzip` that is
    /// a plain tar); a declared compression the content does not start with is read as a
    /// plain tar, as they do, with a warning.
    pub fn decide(declared: Option<Self>, magic: &[u8]) -> Self {
        let found = Self::detect(magic);
        match declared {
            Some(d) if d != found => {
                tracing::warn!(declared = ?d, found = ?found, "layer media type and content disagree; using the content's format");
            }
            _ => {}
        }
        found
    }
}

/// How whiteout entries are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whiteouts {
    /// Convert to overlayfs's format in a per-layer directory: `.wh.NAME` becomes a 0/0 char
    /// device `NAME`, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.
    Overlay,
    /// Apply to the target (a flattened rootfs): remove what they name from lower layers.
    Apply,
}

/// Options for [`apply`].
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Whiteout handling.
    pub whiteouts: Whiteouts,
    /// Set owners from the tar headers (needs root); when false, owners are left as created.
    pub chown: bool,
    /// Expected size of the (compressed) blob.
    pub expect_blob_size: Option<u64>,
    /// Expected digest of the blob; the blob is hashed only when this is set.
    pub expect_blob: Option<Digest>,
    /// Expected digest of the uncompressed tar (the layer's diff id); the tar stream is hashed
    /// only when this is set.
    pub expect_diff_id: Option<Digest>,
    /// The layer descriptor's media type, checked with [`Compression::from_media_type`] and
    /// weighed against the blob's magic number ([`Compression::decide`]).
    pub media_type: Option<String>,
}

impl ApplyOptions {
    /// Options for `whiteouts`, chowning when running as root, verifying nothing.
    pub fn new(whiteouts: Whiteouts) -> Self {
        Self {
            whiteouts,
            chown: rustix::process::geteuid().is_root(),
            expect_blob_size: None,
            expect_blob: None,
            expect_diff_id: None,
            media_type: None,
        }
    }
}

/// What [`apply`] did.
#[derive(Clone, Debug)]
pub struct LayerStats {
    /// Digest of the blob as read (when [`ApplyOptions::expect_blob`] asked for it).
    pub blob_digest: Option<Digest>,
    /// Size of the blob as read.
    pub blob_size: u64,
    /// Digest of the uncompressed tar stream (when [`ApplyOptions::expect_diff_id`] asked).
    pub diff_id: Option<Digest>,
    /// Size of the uncompressed tar stream.
    pub tar_size: u64,
    /// Number of tar entries applied.
    pub entries: u64,
    /// Overlay mode: what the layer's own directory assumes of the layers below it, one
    /// path per item: `dir` for a directory it writes into without an entry of its own (as
    /// tar tools, unlike docker, make layers; made 0755 and root-owned, where a lower layer
    /// may have another mode or a symlink such as `var/run -> /run`), `?dir` for one made
    /// only for whiteouts, `!dir` for a directory holding whiteouts (overlayfs hides them
    /// only in directories merged with a lower one). [`crate::Store::unpack_layers`] checks
    /// them against the lower layers.
    pub implicit_dirs: Vec<String>,
}

/// Apply the layer blob read from `blob` onto the directory `root`.
///
/// The caller owns atomicity: on error the directory may hold part of the layer, so unpack into
/// a fresh directory and remove it on error (as [`crate::Store`] does). `progress` is called
/// with the number of blob bytes read so far. Digests are computed only for what `opts` asks
/// to verify: a sha256 of the blob or of the (larger) tar stream each costs real time.
///
/// ```no_run
/// use berth_image::layer::{apply, ApplyOptions, Whiteouts};
/// let blob = std::fs::File::open("layer.tar.gz")?;
/// let stats = apply(blob, "/tmp/rootfs".as_ref(), &ApplyOptions::new(Whiteouts::Apply), &|_| {})?;
/// println!("{} entries, {} bytes of tar", stats.entries, stats.tar_size);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn apply<R: Read + Send>(
    blob: R,
    root: &Path,
    opts: &ApplyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<LayerStats, LayerError> {
    let root_fd = rustix::fs::open(
        root,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| LayerError::Target {
        path: root.to_owned(),
        source: e.into(),
    })?;
    apply_at(blob, root_fd.as_fd(), root, opts, progress)
}

/// [`apply`] onto the open directory `root` (any fd of it; `O_PATH` will do), with `shown`
/// naming it in errors. Nothing is resolved by path outside `root`, so a caller that holds
/// the directory open is safe from a concurrent rename or a symlink planted in its place.
pub fn apply_at<R: Read + Send>(
    blob: R,
    root: BorrowedFd<'_>,
    shown: &Path,
    opts: &ApplyOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<LayerStats, LayerError> {
    let root_fd = rustix::io::fcntl_dupfd_cloexec(root, 0).map_err(|e| LayerError::Target {
        path: shown.to_owned(),
        source: e.into(),
    })?;
    let root = shown;
    let declared = match &opts.media_type {
        Some(mt) => Compression::from_media_type(mt).map_err(|reason| LayerError::MediaType {
            media_type: mt.clone(),
            reason,
        })?,
        None => None,
    };
    let hash_blob = opts.expect_blob.is_some();
    let hash_tar = opts.expect_diff_id.is_some();
    let (entries, hashes) = std::thread::scope(|s| {
        let mut pipeline = pipe::spawn(s, blob, progress, declared, hash_blob, hash_tar);
        let mut applier = apply::Applier::new(root_fd, root, opts);
        // The applier reads the stream to its end even when the tar ends early, so the
        // digests cover all of it; on error, finishing stops the threads.
        let res = applier.run(&mut pipeline.reader);
        (res, pipeline.finish())
    });
    let (entries, implicit_dirs) = entries?;
    let h = hashes.map_err(LayerError::Decompress)?;
    if let (Some(want), Some(actual)) = (&opts.expect_blob, &h.blob_digest) {
        if want != actual {
            return Err(DigestError::Mismatch {
                expected: want.clone(),
                actual: actual.clone(),
            }
            .into());
        }
    }
    if let Some(size) = opts.expect_blob_size {
        if size != h.blob_size {
            return Err(LayerError::BlobSize {
                expected: size,
                actual: h.blob_size,
            });
        }
    }
    if let (Some(want), Some(actual)) = (&opts.expect_diff_id, &h.diff_id) {
        if want != actual {
            return Err(DigestError::Mismatch {
                expected: want.clone(),
                actual: actual.clone(),
            }
            .into());
        }
    }
    Ok(LayerStats {
        blob_digest: h.blob_digest,
        blob_size: h.blob_size,
        diff_id: h.diff_id,
        tar_size: h.tar_size,
        entries,
        implicit_dirs,
    })
}
