//! Loading images from `docker save` archives and OCI image layouts (directories or tars).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use serde::Deserialize;

use crate::digest::Digest;
use crate::image::{descriptor_digest, select_platform, Manifest, Platform};
use crate::layer::{safe, Compression};
use crate::reference::Reference;
use crate::store::{kind_name, Store, StoreError, MAX_DOCUMENT_SIZE};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Error loading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading the archive failed.
    #[error("reading archive")]
    Read(#[source] io::Error),
    /// The store failed (including blob verification).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The archive has neither `manifest.json` nor `index.json`.
    #[error("not a docker-archive or OCI layout: no manifest.json or index.json")]
    Unrecognised,
    /// A JSON document in the archive is malformed.
    #[error("parsing {file}")]
    Json {
        /// Which file.
        file: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// `manifest.json` names a file the archive lacks.
    #[error("archive lacks {0} named by its manifest")]
    MissingFile(String),
    /// A blob under `blobs/sha256/` does not hash to its name, or has another size than its
    /// descriptor says.
    #[error("blob {path} does not match its name")]
    BadBlob {
        /// Path in the archive.
        path: String,
        /// The error.
        #[source]
        source: Box<StoreError>,
    },
    /// An input file could not be opened: missing, or reached through a symlink (which are
    /// not followed inside an OCI layout), or outside the layout.
    #[error("opening {path}")]
    Open {
        /// The path (the archive or layout, joined with the file in it).
        path: PathBuf,
        /// The OS error (`ELOOP` for a symlink, `EXDEV` for a path leaving the layout).
        #[source]
        source: io::Error,
    },
    /// An input is a FIFO, device, socket or symlink where a regular file must be.
    #[error("{path} is a {kind}, not a regular file")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A JSON document (index.json, manifest.json, oci-layout, a manifest or config blob) is
    /// larger than [`crate::store::MAX_DOCUMENT_SIZE`].
    #[error("{path} is too large: {size} bytes, at most {limit}")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Image indexes nest deeper than four levels.
    #[error("image indexes in {0} nest too deeply")]
    Nested(PathBuf),
}

/// Options for loading.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Platform picked from image indexes.
    pub platform: Platform,
    /// Repository name for OCI layouts whose ref names are bare tags.
    pub name: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            name: None,
        }
    }
}

/// An image loaded into the store.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Its manifest digest.
    pub manifest: Digest,
    /// References now pointing at it (may be empty: then it is known by digest).
    pub names: Vec<String>,
}

#[derive(Default)]
struct Staged {
    /// Archive path -> (digest, size) of regular files stored as blobs.
    files: HashMap<String, (Digest, u64)>,
    /// Archive path -> symlink target path (normalised, archive-relative).
    links: HashMap<String, String>,
    manifest_json: Option<Vec<u8>>,
    index_json: Option<Vec<u8>>,
}

impl Staged {
    fn get(&self, path: &str) -> Option<&(Digest, u64)> {
        let mut p = normalise(Path::new(path))?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

fn normalise(p: &Path) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(out.join("/"))
}

fn stage_blob(
    store: &Store,
    staged: &mut Staged,
    path: String,
    r: &mut dyn Read,
    size: u64,
) -> Result<(), ArchiveError> {
    let expect = path
        .strip_prefix("blobs/sha256/")
        .and_then(|h| format!("sha256:{h}").parse::<Digest>().ok());
    let res = match &expect {
        Some(d)
            if store.has_blob(d)
                && fs::metadata(store.blob_path(d)).map(|m| m.len()).ok() == Some(size) =>
        {
            io::copy(r, &mut io::sink()).map_err(ArchiveError::Read)?;
            Ok((d.clone(), size))
        }
        Some(d) => store.write_blob(r, Some((d, size))),
        None => store.write_blob(r, None),
    };
    let got = res.map_err(|source| match source {
        StoreError::Verify { .. } => ArchiveError::BadBlob {
            path: path.clone(),
            source: Box::new(source),
        },
        e => e.into(),
    })?;
    staged.files.insert(path, got);
    Ok(())
}

/// Load a docker-archive or OCI-layout tar stream (from a file or stdin) into the store.
///
/// ```no_run
/// let store = berth_image::Store::open("/var/lib/berth")?;
/// let f = std::fs::File::open("busybox.tar")?;
/// for img in berth_image::archive::load_tar(&store, f, &Default::default())? {
///     println!("{} {:?}", img.manifest, img.names);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_tar(
    store: &Store,
    r: impl Read,
    opts: &LoadOptions,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let mut staged = Staged::default();
    let mut ar = tar::Archive::new(r);
    for e in ar.entries().map_err(ArchiveError::Read)? {
        let mut e = e.map_err(ArchiveError::Read)?;
        let Some(path) = normalise(&e.path().map_err(ArchiveError::Read)?) else {
            continue;
        };
        match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if path == "manifest.json" || path == "index.json" {
                    if e.size() > MAX_DOCUMENT_SIZE {
                        return Err(ArchiveError::TooLarge {
                            path: PathBuf::from(&path),
                            size: e.size(),
                            limit: MAX_DOCUMENT_SIZE,
                        });
                    }
                    let mut buf = Vec::new();
                    e.by_ref()
                        .take(MAX_DOCUMENT_SIZE)
                        .read_to_end(&mut buf)
                        .map_err(ArchiveError::Read)?;
                    if path == "manifest.json" {
                        staged.manifest_json = Some(buf);
                    } else {
                        staged.index_json = Some(buf);
                    }
                } else if path == "oci-layout"
                    || path == "repositories"
                    || path.ends_with("/json")
                    || path == "VERSION"
                {
                    // Metadata we don't need.
                } else {
                    let size = e.size();
                    stage_blob(store, &mut staged, path, &mut e, size)?;
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(t) = e.link_name().map_err(ArchiveError::Read)? {
                    let base = if e.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&path).parent().unwrap_or(Path::new("")).join(t)
                    } else {
                        t.into_owned()
                    };
                    if let Some(t) = normalise(&base) {
                        staged.links.insert(path, t);
                    }
                }
            }
            _ => {}
        }
    }
    finish(store, &staged, opts)
}

/// Load an OCI image layout directory into the store.
///
/// Only what the layout's `index.json` reaches is read: each top-level manifest, and below an
/// index the manifest for `opts.platform`, its config and its layers. Every file is opened
/// beneath `dir` without following any symlink, must be a regular file of the size its
/// descriptor gives (documents at most [`MAX_DOCUMENT_SIZE`]), and is digest-verified while it
/// is copied into the store; a FIFO, device or symlink is refused without being opened.
///
/// ```no_run
/// let store = berth_image::Store::open("/var/lib/berth")?;
/// let opts = berth_image::archive::LoadOptions { name: Some("localhost/app".into()), ..Default::default() };
/// berth_image::archive::load_oci_dir(&store, "/tmp/layout".as_ref(), &opts)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_oci_dir(
    store: &Store,
    dir: &Path,
    opts: &LoadOptions,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let fd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::Open {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    load_oci_fd(store, fd.as_fd(), dir, opts)
}

/// A checked input file: open for reading, regular, with its size.
fn open_input(dir: BorrowedFd<'_>, rel: &str, shown: &Path) -> Result<(File, u64), ArchiveError> {
    let path = shown.join(rel);
    let (fd, st) = safe::open_path(dir, OsStr::new(rel), safe::NO_LINKS).map_err(|source| {
        ArchiveError::Open {
            path: path.clone(),
            source,
        }
    })?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != FileType::RegularFile {
        return Err(ArchiveError::NotRegular {
            path,
            kind: kind_name(ft),
        });
    }
    let f = safe::reopen_read(&fd, &st).map_err(|source| ArchiveError::Open {
        path: path.clone(),
        source,
    })?;
    Ok((f, st.st_size as u64))
}

/// Read a whole small document of the layout (`index.json`, `oci-layout`); `None` if absent.
fn read_document(
    dir: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let (f, size) = match open_input(dir, rel, shown) {
        Ok(f) => f,
        Err(ArchiveError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    if size > MAX_DOCUMENT_SIZE {
        return Err(ArchiveError::TooLarge {
            path: shown.join(rel),
            size,
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    let mut data = Vec::with_capacity(size as usize);
    f.take(MAX_DOCUMENT_SIZE)
        .read_to_end(&mut data)
        .map_err(|source| ArchiveError::Open {
            path: shown.join(rel),
            source,
        })?;
    Ok(Some(data))
}

/// Copy the blob `d` of `size` bytes from the layout into the store (unless already there),
/// verifying size and digest; `document` caps it at [`MAX_DOCUMENT_SIZE`].
fn copy_blob(
    store: &Store,
    dir: BorrowedFd<'_>,
    shown: &Path,
    d: &Digest,
    size: u64,
    document: bool,
) -> Result<(), ArchiveError> {
    let rel = format!("blobs/sha256/{}", d.hex());
    if document && size > MAX_DOCUMENT_SIZE {
        return Err(ArchiveError::TooLarge {
            path: shown.join(&rel),
            size,
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    if store.has_blob(d) && fs::metadata(store.blob_path(d)).map(|m| m.len()).ok() == Some(size) {
        return Ok(());
    }
    let (f, actual) = match open_input(dir, &rel, shown) {
        Err(ArchiveError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Err(ArchiveError::MissingFile(rel))
        }
        r => r?,
    };
    let bad = |source| ArchiveError::BadBlob {
        path: rel.clone(),
        source: Box::new(source),
    };
    if actual != size {
        return Err(bad(StoreError::Verify {
            digest: d.clone(),
            source: crate::digest::DigestError::Size {
                digest: d.clone(),
                expected: size,
                actual,
            },
        }));
    }
    match store.write_blob(&mut f.take(size), Some((d, size))) {
        Ok(_) => Ok(()),
        Err(e @ StoreError::Verify { .. }) => Err(bad(e)),
        Err(e) => Err(e.into()),
    }
}

/// Copy a manifest (or index, then the platform's manifest below it), its config and its
/// layers from the layout into the store.
fn copy_manifest(
    store: &Store,
    dir: BorrowedFd<'_>,
    shown: &Path,
    desc: &oci_spec::image::Descriptor,
    opts: &LoadOptions,
    depth: usize,
) -> Result<(), ArchiveError> {
    if depth > 4 {
        return Err(ArchiveError::Nested(shown.to_owned()));
    }
    let d = descriptor_digest(desc, "index").map_err(StoreError::from)?;
    copy_blob(store, dir, shown, &d, desc.size(), true)?;
    let data = store.read_blob(&d)?;
    match Manifest::parse(&data, &d).map_err(StoreError::from)? {
        Manifest::Index(i) => {
            let sel = select_platform(&i, &d, &opts.platform).map_err(StoreError::from)?;
            copy_manifest(store, dir, shown, sel, opts, depth + 1)
        }
        Manifest::Image(m) => {
            let cd = descriptor_digest(m.config(), "manifest config").map_err(StoreError::from)?;
            copy_blob(store, dir, shown, &cd, m.config().size(), true)?;
            for l in m.layers() {
                let ld = descriptor_digest(l, "layer descriptor").map_err(StoreError::from)?;
                copy_blob(store, dir, shown, &ld, l.size(), false)?;
            }
            Ok(())
        }
    }
}

fn load_oci_fd(
    store: &Store,
    dir: BorrowedFd<'_>,
    shown: &Path,
    opts: &LoadOptions,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    if let Some(layout) = read_document(dir, "oci-layout", shown)? {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct OciLayout {
            image_layout_version: String,
        }
        serde_json::from_slice::<OciLayout>(&layout).map_err(|source| ArchiveError::Json {
            file: "oci-layout".into(),
            source,
        })?;
    }
    let index = read_document(dir, "index.json", shown)?.ok_or(ArchiveError::Unrecognised)?;
    let idx: Index = serde_json::from_slice(&index).map_err(|source| ArchiveError::Json {
        file: "index.json".into(),
        source,
    })?;
    for desc in &idx.manifests {
        copy_manifest(store, dir, shown, desc, opts, 0)?;
    }
    let staged = Staged {
        index_json: Some(index),
        ..Default::default()
    };
    finish(store, &staged, opts)
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<oci_spec::image::Descriptor>,
}

/// Load a path: a directory is an OCI layout (see [`load_oci_dir`]), a regular file a tar of
/// either format. The path itself may be a symlink (the caller named it); a FIFO or device is
/// refused with [`ArchiveError::NotRegular`] without being opened (stream through
/// [`load_tar`] instead, as `berth image load -` does with stdin).
pub fn load_path(
    store: &Store,
    path: &Path,
    opts: &LoadOptions,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let open_err = |source: io::Error| ArchiveError::Open {
        path: path.to_owned(),
        source,
    };
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| open_err(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| open_err(e.into()))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => load_oci_fd(store, fd.as_fd(), path, opts),
        FileType::RegularFile => {
            let f = safe::reopen_read(&fd, &st).map_err(open_err)?;
            load_tar(store, io::BufReader::with_capacity(256 << 10, f), opts)
        }
        ft => Err(ArchiveError::NotRegular {
            path: path.to_owned(),
            kind: kind_name(ft),
        }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn layer_media_type(store: &Store, d: &Digest) -> Result<&'static str, ArchiveError> {
    let mut magic = [0u8; 4];
    let p = store.blob_path(d);
    let mut f = File::open(&p).map_err(ArchiveError::Read)?;
    let n = f.read(&mut magic).map_err(ArchiveError::Read)?;
    Ok(match Compression::detect(&magic[..n]) {
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
    })
}

fn finish(
    store: &Store,
    staged: &Staged,
    opts: &LoadOptions,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let mut out = Vec::new();
    let mut refs = Vec::new();
    if let Some(mj) = &staged.manifest_json {
        let ms: Vec<DockerManifest> =
            serde_json::from_slice(mj).map_err(|source| ArchiveError::Json {
                file: "manifest.json".into(),
                source,
            })?;
        for m in ms {
            let get = |p: &str| {
                staged
                    .get(p)
                    .cloned()
                    .ok_or_else(|| ArchiveError::MissingFile(p.to_owned()))
            };
            let (cd, cs) = get(&m.config)?;
            let mut layers = Vec::new();
            for l in &m.layers {
                let (d, s) = get(l)?;
                layers.push(serde_json::json!({"mediaType": layer_media_type(store, &d)?, "digest": d, "size": s}));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                "layers": layers,
            });
            let md = store.write_blob_bytes(&serde_json::to_vec(&manifest).expect("json"))?;
            let names = m
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| t.parse::<Reference>().map(|r| r.to_string()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)?;
            refs.push((md, names));
        }
    } else if let Some(ij) = &staged.index_json {
        let idx: Index = serde_json::from_slice(ij).map_err(|source| ArchiveError::Json {
            file: "index.json".into(),
            source,
        })?;
        for desc in &idx.manifests {
            let mut d = descriptor_digest(desc, "index.json").map_err(StoreError::from)?;
            // Follow nested indexes down to the platform's manifest.
            for _ in 0..4 {
                let data = store.read_blob(&d)?;
                match Manifest::parse(&data, &d).map_err(StoreError::from)? {
                    Manifest::Image(_) => break,
                    Manifest::Index(i) => {
                        d = descriptor_digest(
                            select_platform(&i, &d, &opts.platform).map_err(StoreError::from)?,
                            "index",
                        )
                        .map_err(StoreError::from)?;
                    }
                }
            }
            let name = desc
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned();
            let names = match name {
                Some(n) if n.contains(['/', ':', '@']) => vec![n
                    .parse::<Reference>()
                    .map_err(StoreError::from)?
                    .to_string()],
                Some(tag) => match &opts.name {
                    Some(repo) => vec![format!("{repo}:{tag}")
                        .parse::<Reference>()
                        .map_err(StoreError::from)?
                        .to_string()],
                    None => Vec::new(),
                },
                None => Vec::new(),
            };
            refs.push((d, names));
        }
    } else {
        return Err(ArchiveError::Unrecognised);
    }
    // Check everything before making any reference visible.
    for (d, _) in &refs {
        let img = store.image(d)?;
        store.check_complete(&img)?;
    }
    for (d, names) in refs {
        if names.is_empty() {
            store.set_ref(&d.to_string(), &d)?;
        }
        for n in &names {
            store.set_ref(n, &d)?;
        }
        out.push(LoadedImage { manifest: d, names });
    }
    Ok(out)
}
