//! The content-addressed store: verified blobs, references and unpacked layers.
//!
//! ```text
//! ROOT/blobs/sha256/<hex>     blobs (manifests, configs, layers), verified before rename
//! ROOT/layers/<diffid hex>/   layers unpacked once, whiteouts in overlayfs format
//! ROOT/layers/chain-<hex>/    layers that depend on the ones below (by chain id), applied
//!                             over them (see Store::unpack_layers)
//! ROOT/refs.json              reference -> manifest digest
//! ROOT/tmp/                   staging for atomic writes (same filesystem)
//! ```
//!
//! Every directory above is 0700 (see [`STORE_DIR_MODE`]): unpacked layers hold device
//! nodes and setuid files that no other user may reach.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Digest, DigestError, HashWriter};
use crate::image::{descriptor_digest, Image, ImageError, Manifest};
use crate::reference::{Reference, ReferenceError};

/// Default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

/// Error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    /// A blob failed verification.
    #[error("blob {digest} failed verification")]
    Verify {
        /// The blob.
        digest: Digest,
        /// The mismatch.
        #[source]
        source: DigestError,
    },
    /// A blob is not in the store.
    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),
    /// No image has that reference.
    #[error("no image {0} in the store")]
    UnknownImage(String),
    /// A reference could not be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A manifest or config was invalid.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The refs file is corrupt.
    #[error("parsing {path}")]
    Refs {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A reference names an index rather than an image manifest.
    #[error("{0} is an image index; pull or load it for one platform")]
    IsIndex(Digest),
    /// A manifest, index or config blob is larger than [`MAX_DOCUMENT_SIZE`].
    #[error("blob {digest} is too large for a manifest or config: {size} bytes, at most {limit}")]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// A path in the store is not what the store puts there (a symlink, a FIFO, ...).
    #[error("{path} in the store is a {kind}, not a {expected}")]
    Unexpected {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
        /// What it should be.
        expected: &'static str,
    },
}

/// The largest manifest, index or image config read whole into memory, in bytes (16 MiB;
/// containerd caps manifests at 4 MiB, image configs with long histories run to a few MiB).
pub const MAX_DOCUMENT_SIZE: u64 = 16 << 20;

/// The mode of the store's directories: private to the owner (root), so that device nodes and
/// setuid files of unpacked layers are reachable by no other user (docker and containerd keep
/// their roots 0710/0711 and the layer dirs below private in the same way).
pub const STORE_DIR_MODE: u32 = 0o700;

/// What a file type is called in errors.
pub(crate) fn kind_name(ft: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType as T;
    match ft {
        T::RegularFile => "regular file",
        T::Directory => "directory",
        T::Symlink => "symlink",
        T::Fifo => "fifo",
        T::Socket => "socket",
        T::CharacterDevice => "character device",
        T::BlockDevice => "block device",
        T::Unknown => "file of unknown type",
    }
}

/// Create `p` as a private directory, or make an existing one private (an older berth made
/// them 0755). Symlinks are followed only for the store root the caller names.
fn private_dir(p: &Path, follow: bool) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match fs::DirBuilder::new().mode(STORE_DIR_MODE).create(p) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("creating", p)(e)),
    }
    let m = if follow {
        fs::metadata(p)
    } else {
        fs::symlink_metadata(p)
    }
    .map_err(io_err("stat", p))?;
    if !m.is_dir() {
        return Err(StoreError::Unexpected {
            path: p.to_owned(),
            kind: kind_name(rustix::fs::FileType::from_raw_mode(m.mode())),
            expected: "directory",
        });
    }
    if m.mode() & 0o077 != 0 {
        fs::set_permissions(p, fs::Permissions::from_mode(STORE_DIR_MODE))
            .map_err(io_err("making private", p))?;
    }
    Ok(())
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { op, path, source }
}

/// An image store rooted at a directory. Cloning copies the root path only (a clone is the
/// same store), so a clone can move into a blocking task.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct PruneStats {
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layer directories removed.
    pub layers: usize,
    /// Bytes of blobs freed.
    pub bytes: u64,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Open (creating if needed) the store at `root`.
    ///
    /// The root and its `blobs/`, `layers/` and `tmp/` directories are created with mode
    /// [`STORE_DIR_MODE`] (0700), and an existing store whose directories are readable by
    /// others is tightened to it; missing parents of `root` are created with the default mode.
    /// Errors: [`StoreError::Io`] when a directory cannot be created or made private,
    /// [`StoreError::Unexpected`] when one of them is not a directory.
    ///
    /// ```no_run
    /// let store = berth_image::Store::open("/var/lib/berth")?;
    /// for (name, digest) in store.refs()? {
    ///     println!("{name} {digest}");
    /// }
    /// # Ok::<(), berth_image::StoreError>(())
    /// ```
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        private_dir(&root, true)?;
        for sub in ["blobs", "blobs/sha256", "layers", "tmp"] {
            private_dir(&root.join(sub), false)?;
        }
        Ok(Self { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh path under `tmp/` (not created).
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    /// Write a blob from `r`, verifying it against `expect` (digest, size) when given; the blob
    /// becomes visible only once complete and verified.
    pub fn write_blob(
        &self,
        r: &mut dyn Read,
        expect: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64), StoreError> {
        let tmp = self.tmp_path("blob");
        let res = (|| {
            let f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
            let mut w = HashWriter::new(io::BufWriter::with_capacity(256 << 10, f));
            io::copy(r, &mut w).map_err(io_err("writing", &tmp))?;
            let (bw, digest, size) = w.finish();
            let f = bw
                .into_inner()
                .map_err(|e| io_err("writing", &tmp)(e.into_error()))?;
            drop(f);
            if let Some((want, want_size)) = expect {
                if *want != digest {
                    return Err(StoreError::Verify {
                        digest: want.clone(),
                        source: DigestError::Mismatch {
                            expected: want.clone(),
                            actual: digest,
                        },
                    });
                }
                if want_size != size {
                    return Err(StoreError::Verify {
                        digest: want.clone(),
                        source: DigestError::Size {
                            digest: digest.clone(),
                            expected: want_size,
                            actual: size,
                        },
                    });
                }
            }
            let dest = self.blob_path(&digest);
            fs::rename(&tmp, &dest).map_err(io_err("renaming blob to", &dest))?;
            Ok((digest, size))
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Start writing a blob chunk by chunk (for streamed downloads).
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>, StoreError> {
        let tmp = self.tmp_path("blob");
        let f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        Ok(BlobWriter {
            store: self,
            w: Some(HashWriter::new(f)),
            tmp,
        })
    }

    /// Write a small blob held in memory.
    pub fn write_blob_bytes(&self, data: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(data);
        if !self.has_blob(&d) {
            self.write_blob(&mut &data[..], Some((&d, data.len() as u64)))?;
        }
        Ok(d)
    }

    /// Open a stored blob: a regular file, never through a symlink.
    fn open_stored(&self, d: &Digest) -> Result<(File, u64), StoreError> {
        use rustix::fs::OFlags;
        let p = self.blob_path(d);
        // O_NONBLOCK: a FIFO planted in the store must not block the open.
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let f = match rustix::fs::open(&p, flags, rustix::fs::Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(rustix::io::Errno::NOENT) => return Err(StoreError::MissingBlob(d.clone())),
            Err(e) => return Err(io_err("opening", &p)(e.into())),
        };
        let st = rustix::fs::fstat(&f).map_err(|e| io_err("stat", &p)(e.into()))?;
        let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if ft != rustix::fs::FileType::RegularFile {
            return Err(StoreError::Unexpected {
                path: p,
                kind: kind_name(ft),
                expected: "regular file",
            });
        }
        Ok((f, st.st_size as u64))
    }

    /// Read a whole blob, verifying its digest (for manifests and configs); blobs larger than
    /// [`MAX_DOCUMENT_SIZE`] are refused with [`StoreError::TooLarge`] without being read.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let (f, size) = self.open_stored(d)?;
        if size > MAX_DOCUMENT_SIZE {
            return Err(StoreError::TooLarge {
                digest: d.clone(),
                size,
                limit: MAX_DOCUMENT_SIZE,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        f.take(MAX_DOCUMENT_SIZE + 1)
            .read_to_end(&mut data)
            .map_err(io_err("reading", &self.blob_path(d)))?;
        d.verify(&data).map_err(|source| StoreError::Verify {
            digest: d.clone(),
            source,
        })?;
        Ok(data)
    }

    /// Open a blob for streaming, checking its size (the digest is checked by the consumer).
    pub fn open_blob(&self, d: &Digest, size: u64) -> Result<File, StoreError> {
        let (f, actual) = self.open_stored(d)?;
        if actual != size {
            return Err(StoreError::Verify {
                digest: d.clone(),
                source: DigestError::Size {
                    digest: d.clone(),
                    expected: size,
                    actual,
                },
            });
        }
        Ok(f)
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    /// All references, sorted by name.
    pub fn refs(&self) -> Result<BTreeMap<String, Digest>, StoreError> {
        let p = self.refs_path();
        match fs::read(&p) {
            Ok(data) => {
                serde_json::from_slice(&data).map_err(|source| StoreError::Refs { path: p, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err("reading", &p)(e)),
        }
    }

    fn update_refs(&self, f: impl FnOnce(&mut BTreeMap<String, Digest>)) -> Result<(), StoreError> {
        self.edit_refs(f)
    }

    /// Change the references as one step: `f` gets every reference (store key -> manifest
    /// digest) under the store's lock and may add, move or remove any of them; the result is
    /// written atomically (temporary file, rename) and `f`'s value returned. For changes that
    /// must see the other references, such as untagging an image and keeping it under its
    /// digest (`sha256:<hex>`, the key a nameless `load` gives) when no other name is left.
    /// Errors: [`StoreError::Io`] when the lock or the file cannot be written,
    /// [`StoreError::Refs`] when `refs.json` is corrupt.
    pub fn edit_refs<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Digest>) -> R,
    ) -> Result<R, StoreError> {
        let lock_path = self.root.join("refs.lock");
        let lock = File::create(&lock_path).map_err(io_err("creating", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("locking", &lock_path)(e.into()))?;
        let mut refs = self.refs()?;
        let out = f(&mut refs);
        let tmp = self.tmp_path("refs");
        let data = serde_json::to_vec_pretty(&refs).expect("refs serialise");
        let mut file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        file.write_all(&data).map_err(io_err("writing", &tmp))?;
        drop(file);
        let p = self.refs_path();
        fs::rename(&tmp, &p).map_err(io_err("renaming to", &p))?;
        Ok(out)
    }

    /// Point `name` at the image manifest `manifest`.
    pub fn set_ref(&self, name: &str, manifest: &Digest) -> Result<(), StoreError> {
        self.update_refs(|r| {
            r.insert(name.to_owned(), manifest.clone());
        })
    }

    /// Remove a reference (given like any user reference); false if it did not exist.
    pub fn remove_ref(&self, name: &str) -> Result<bool, StoreError> {
        let key = self.resolve(name)?.0;
        let mut found = false;
        self.update_refs(|r| found = r.remove(&key).is_some())?;
        Ok(found)
    }

    /// Resolve a user reference (`busybox`, `name@sha256:..`, a manifest digest or a unique hex
    /// prefix of one) to its stored name and manifest digest.
    pub fn resolve(&self, user: &str) -> Result<(String, Digest), StoreError> {
        let refs = self.refs()?;
        if let Ok(r) = user.parse::<Reference>() {
            let key = r.to_string();
            if let Some(d) = refs.get(&key) {
                return Ok((key, d.clone()));
            }
            // `name@digest` where the digest names the stored manifest.
            if let Some(d) = &r.digest {
                if let Some((k, _)) = refs
                    .iter()
                    .find(|(k, v)| *v == d && k.starts_with(&r.name()))
                {
                    return Ok((k.clone(), d.clone()));
                }
            }
        }
        let hex = user.strip_prefix("sha256:").unwrap_or(user);
        if hex.len() >= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: BTreeSet<_> = refs
                .iter()
                .filter(|(_, d)| d.hex().starts_with(hex))
                .map(|(_, d)| d)
                .collect();
            if hits.len() == 1 {
                let d = hits.into_iter().next().expect("one hit");
                let name = refs
                    .iter()
                    .find(|(_, v)| *v == d)
                    .map(|(k, _)| k.clone())
                    .expect("present");
                return Ok((name, d.clone()));
            }
        }
        Err(StoreError::UnknownImage(user.to_owned()))
    }

    /// Load the image whose manifest is `manifest` (verified on read).
    pub fn image(&self, manifest: &Digest) -> Result<Image, StoreError> {
        let data = self.read_blob(manifest)?;
        let m = match Manifest::parse(&data, manifest)? {
            Manifest::Image(m) => *m,
            Manifest::Index(_) => return Err(StoreError::IsIndex(manifest.clone())),
        };
        let cd = descriptor_digest(m.config(), "manifest config")?;
        let cdata = self.read_blob(&cd)?;
        let config = serde_json::from_slice(&cdata).map_err(|source| ImageError::Parse {
            what: "image config",
            digest: cd.clone(),
            source,
        })?;
        Ok(Image::new(manifest.clone(), m, config)?)
    }

    /// Check that every blob of `img` is present with the right size.
    pub fn check_complete(&self, img: &Image) -> Result<(), StoreError> {
        for l in img.layers()? {
            let p = self.blob_path(&l.digest);
            match fs::metadata(&p) {
                Ok(m) if m.len() == l.size => {}
                Ok(m) => {
                    return Err(StoreError::Verify {
                        digest: l.digest.clone(),
                        source: DigestError::Size {
                            digest: l.digest.clone(),
                            expected: l.size,
                            actual: m.len(),
                        },
                    })
                }
                Err(_) => return Err(StoreError::MissingBlob(l.digest.clone())),
            }
        }
        Ok(())
    }

    /// Where a layer that cannot stand alone is kept, unpacked over the layers below it (see
    /// [`Store::unpack_layers`]): `layers/chain-<hex>` for its chain id.
    pub fn chain_layer_path(&self, chain_id: &Digest) -> PathBuf {
        self.root
            .join("layers")
            .join(format!("chain-{}", chain_id.hex()))
    }

    /// Where the unpacked layer with this diff id lives.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    /// Remove blobs and unpacked layers no reference uses, and stale temporary files.
    pub fn prune(&self) -> Result<PruneStats, StoreError> {
        let mut keep_blobs = BTreeSet::new();
        let mut keep_layers = BTreeSet::new();
        for d in self.refs()?.values() {
            keep_blobs.insert(d.hex().to_owned());
            if let Ok(img) = self.image(d) {
                keep_blobs.insert(img.config_digest.hex().to_owned());
                let mut chain: Option<Digest> = None;
                for l in img.layers()? {
                    keep_blobs.insert(l.digest.hex().to_owned());
                    keep_layers.insert(l.diff_id.hex().to_owned());
                    let c = chain_id(chain.as_ref(), &l.diff_id);
                    keep_layers.insert(format!("chain-{}", c.hex()));
                    chain = Some(c);
                }
            }
        }
        let mut stats = PruneStats::default();
        let bdir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&bdir).map_err(io_err("reading", &bdir))? {
            let e = e.map_err(io_err("reading", &bdir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                stats.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err("removing", &e.path()))?;
                stats.blobs += 1;
            }
        }
        let ldir = self.root.join("layers");
        for e in fs::read_dir(&ldir).map_err(io_err("reading", &ldir))? {
            let e = e.map_err(io_err("reading", &ldir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep_layers.contains(&name) {
                crate::layer::remove_tree(&e.path()).map_err(io_err("removing", &e.path()))?;
                stats.layers += 1;
            }
        }
        let tdir = self.root.join("tmp");
        for e in fs::read_dir(&tdir)
            .map_err(io_err("reading", &tdir))?
            .flatten()
        {
            // Only files of processes that are gone: names carry the writer's pid.
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| {
                p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists()
            }) {
                let _ = crate::layer::remove_tree(&e.path());
            }
        }
        Ok(stats)
    }
}

/// A blob being written; it enters the store only through [`BlobWriter::commit`].
pub struct BlobWriter<'a> {
    store: &'a Store,
    w: Option<HashWriter<File>>,
    tmp: PathBuf,
}

impl BlobWriter<'_> {
    /// Append bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let w = self.w.as_mut().expect("writer present until commit");
        w.write_all(data).map_err(io_err("writing", &self.tmp))
    }

    /// Verify against `expect` (digest, size) and move into the store.
    pub fn commit(mut self, expect: &Digest, size: u64) -> Result<(), StoreError> {
        let (f, digest, actual) = self.w.take().expect("writer present until commit").finish();
        drop(f);
        if digest != *expect {
            return Err(StoreError::Verify {
                digest: expect.clone(),
                source: DigestError::Mismatch {
                    expected: expect.clone(),
                    actual: digest,
                },
            });
        }
        if actual != size {
            return Err(StoreError::Verify {
                digest: expect.clone(),
                source: DigestError::Size {
                    digest,
                    expected: size,
                    actual,
                },
            });
        }
        let dest = self.store.blob_path(expect);
        fs::rename(&self.tmp, &dest).map_err(io_err("renaming blob to", &dest))
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// The OCI chain id of a layer over the chain `below` (image-spec config.md): its diff id for
/// the first layer, else the digest of `"<chain below> <diff id>"`.
///
/// ```
/// use berth_image::{store::chain_id, Digest};
/// let a = Digest::of(b"a");
/// assert_eq!(chain_id(None, &a), a);
/// ```
pub fn chain_id(below: Option<&Digest>, diff_id: &Digest) -> Digest {
    match below {
        None => diff_id.clone(),
        Some(b) => Digest::of(format!("{b} {diff_id}").as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_and_refs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.write_blob_bytes(b"hello").unwrap();
        assert_eq!(s.read_blob(&d).unwrap(), b"hello");
        let bad = Digest::of(b"other");
        assert!(s.write_blob(&mut &b"hello"[..], Some((&bad, 5))).is_err());
        assert!(!s.has_blob(&bad));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        s.set_ref("docker.io/library/busybox:latest", &d).unwrap();
        assert_eq!(s.resolve("busybox").unwrap().1, d);
        assert_eq!(s.resolve(&d.hex()[..12]).unwrap().1, d);
        assert!(s.remove_ref("busybox:latest").unwrap());
        assert!(s.resolve("busybox").is_err());
        let st = s.prune().unwrap();
        assert_eq!(st.blobs, 1);
    }

    #[test]
    fn edit_refs_is_one_step_and_keeps_digest_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.write_blob_bytes(b"kept").unwrap();
        s.set_ref("docker.io/library/a:1", &d).unwrap();
        let n = s
            .edit_refs(|r| {
                let old = r.remove("docker.io/library/a:1").unwrap();
                r.insert(old.to_string(), old);
                r.len()
            })
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(s.refs().unwrap().get(&d.to_string()), Some(&d));
        assert_eq!(s.prune().unwrap().blobs, 0);
        assert!(s.has_blob(&d));
    }
}
