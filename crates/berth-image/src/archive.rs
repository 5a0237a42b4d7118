//! Loading images from `docker save` archives and OCI image layouts (directories or tars).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path};

use serde::Deserialize;

use crate::digest::Digest;
use crate::image::{descriptor_digest, select_platform, Manifest, Platform};
use crate::layer::Compression;
use crate::reference::Reference;
use crate::store::{Store, StoreError};

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
    /// A blob under `blobs/sha256/` does not hash to its name.
    #[error("blob {path} does not match its name")]
    BadBlob {
        /// Path in the archive.
        path: String,
        /// The error.
        #[source]
        source: StoreError,
    },
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
            source,
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
                    let mut buf = Vec::new();
                    e.by_ref()
                        .take(16 << 20)
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
pub fn load_oci_dir(
    store: &Store,
    dir: &Path,
    opts: &LoadOptions,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let mut staged = Staged::default();
    let idx = dir.join("index.json");
    staged.index_json = Some(fs::read(&idx).map_err(ArchiveError::Read)?);
    let bdir = dir.join("blobs/sha256");
    for e in fs::read_dir(&bdir).map_err(ArchiveError::Read)? {
        let e = e.map_err(ArchiveError::Read)?;
        let path = format!("blobs/sha256/{}", e.file_name().to_string_lossy());
        let mut f = File::open(e.path()).map_err(ArchiveError::Read)?;
        let size = f.metadata().map_err(ArchiveError::Read)?.len();
        stage_blob(store, &mut staged, path, &mut f, size)?;
    }
    finish(store, &staged, opts)
}

/// Load a path: a directory is an OCI layout, a file a tar (either format).
pub fn load_path(
    store: &Store,
    path: &Path,
    opts: &LoadOptions,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    if path.is_dir() {
        load_oci_dir(store, path, opts)
    } else {
        let f = File::open(path).map_err(ArchiveError::Read)?;
        load_tar(store, io::BufReader::with_capacity(256 << 10, f), opts)
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
        #[derive(Deserialize)]
        struct Index {
            manifests: Vec<oci_spec::image::Descriptor>,
        }
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
