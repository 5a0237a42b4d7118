//! Pulling images from registries speaking the OCI distribution API.
//!
//! The protocol (token challenge flow, basic auth, redirects) is `oci-client`'s; tokio lives
//! only inside [`pull`], on a current-thread runtime built per call, so nothing else pays for it.
//! The runtime thread only moves bytes: each layer streams through a bounded channel to scoped
//! threads that verify, decompress and write it (see [`Store::unpack_layer_stream`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use base64::Engine as _;
use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

use crate::digest::Digest;
use crate::image::{
    descriptor_digest, select_platform, Image, ImageError, Layer, Manifest, Platform,
};
use crate::reference::Reference;
use crate::store::{Store, StoreError};
use crate::unpack::{Progress, ProgressEvent, UnpackError};

const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How many blobs download at once.
const CONCURRENT: usize = 3;

/// Batches of downloaded bytes queued for each layer's unpacker.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Network reads (often a few KiB each) are gathered into batches of this size before they
/// wake the unpacker, so a layer costs a few hundred thread hand-offs instead of tens of
/// thousands.
const BATCH: usize = 512 << 10;

/// Error pulling an image.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry request failed.
    #[error("registry request for {reference} failed")]
    Client {
        /// The image.
        reference: String,
        /// The client error.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// The registry sent content that does not match its digest.
    #[error("manifest from {reference} has digest {actual}, expected {expected}")]
    ManifestDigest {
        /// The image.
        reference: String,
        /// Expected digest.
        expected: Digest,
        /// Received digest.
        actual: Digest,
    },
    /// Storing or verifying failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading `~/.docker/config.json` failed.
    #[error("reading docker credentials {path}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Starting the async runtime failed.
    #[error("starting the tokio runtime")]
    Runtime(#[source] std::io::Error),
    /// Unpacking a layer failed (nothing of it was kept).
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// A layer unpacker thread could not be started.
    #[error("spawning a layer unpacker thread")]
    Spawn(#[source] std::io::Error),
    /// A layer's unpacker thread died without a result.
    #[error("the unpacker of layer {0} stopped without a result")]
    UnpackThread(Digest),
    /// Too many nested indexes.
    #[error("too many nested image indexes")]
    Nested,
}

/// Options for [`pull`].
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Use plain http (always done for loopback registries).
    pub insecure: bool,
    /// Platform to pick from indexes; the host's when `None`.
    pub platform: Option<Platform>,
    /// Credentials; when `None`, looked up in the docker config, else anonymous.
    pub auth: Option<(String, String)>,
    /// Only store the blobs; don't unpack the layers into the layer store while pulling.
    pub no_unpack: bool,
}

/// Credentials for `registry` from `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub fn docker_credentials(registry: &str) -> Result<Option<(String, String)>, RegistryError> {
    let path = match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".docker/config.json"),
            None => return Ok(None),
        },
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RegistryError::Credentials { path, source }),
    };
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        auths: HashMap<String, Entry>,
    }
    let cfg: Config = serde_json::from_slice(&data).map_err(|e| RegistryError::Credentials {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    for (key, e) in cfg.auths {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        let matches = host == registry
            || (registry == "docker.io"
                && matches!(host, "index.docker.io" | "registry-1.docker.io"));
        if !matches {
            continue;
        }
        let Some(auth) = e.auth else { continue };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(auth.trim()) else {
            continue;
        };
        let raw = String::from_utf8_lossy(&raw).into_owned();
        if let Some((u, p)) = raw.split_once(':') {
            return Ok(Some((u.to_owned(), p.to_owned())));
        }
    }
    Ok(None)
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

fn oci_ref(r: &Reference, digest: Option<&Digest>) -> oci_client::Reference {
    match (digest.or(r.digest.as_ref()), &r.tag) {
        (Some(d), _) => oci_client::Reference::with_digest(
            r.registry.clone(),
            r.repository.clone(),
            d.to_string(),
        ),
        (None, Some(t)) => {
            oci_client::Reference::with_tag(r.registry.clone(), r.repository.clone(), t.clone())
        }
        (None, None) => oci_client::Reference::with_tag(
            r.registry.clone(),
            r.repository.clone(),
            "latest".into(),
        ),
    }
}

/// Pull `reference` into `store` and point the reference at it; returns the image.
///
/// Layers download concurrently; unless [`PullOptions::no_unpack`] is set, each is unpacked into
/// the layer store on its own thread while it streams (download, decompression and file
/// writes overlap), with its digest and diff id verified as the bytes flow. A layer that fails
/// verification leaves neither blob nor directory behind, and the reference is set only once
/// every blob is in the store.
///
/// ```no_run
/// let store = berth_image::Store::open("/var/lib/berth")?;
/// let r = "127.0.0.1:5000/busybox:latest".parse()?;
/// let img = berth_image::registry::pull(&store, &r, &Default::default(), &|_| {})?;
/// println!("{}", img.manifest_digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pull(
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
    progress: Progress<'_>,
) -> Result<Image, RegistryError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)?;
    std::thread::scope(|s| rt.block_on(pull_async(s, store, reference, opts, progress)))
}

/// Feeds the chunks of a download to a blocking reader (the layer unpacker's thread).
struct ChunkReader<B> {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<B>>,
    cur: Option<B>,
    pos: usize,
}

impl<B: AsRef<[u8]>> Read for ChunkReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(c) = &self.cur {
                let avail = &c.as_ref()[self.pos..];
                if !avail.is_empty() {
                    let n = avail.len().min(buf.len());
                    buf[..n].copy_from_slice(&avail[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(Ok(c)) => {
                    self.cur = Some(c);
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

struct Ctx<'a> {
    client: oci_client::Client,
    oref: oci_client::Reference,
    name: String,
    store: &'a Store,
    progress: Progress<'a>,
}

impl<'env> Ctx<'env> {
    fn cerr(&self, source: oci_client::errors::OciDistributionError) -> RegistryError {
        RegistryError::Client {
            reference: self.name.clone(),
            source,
        }
    }

    /// Download a blob into the store (no unpacking).
    async fn fetch_blob(&self, d: &Digest, size: u64, is_layer: bool) -> Result<(), RegistryError> {
        let dstr = d.to_string();
        let mut stream = self
            .client
            .pull_blob_stream(&self.oref, dstr.as_str())
            .await
            .map_err(|e| self.cerr(e))?;
        let mut w = self.store.blob_writer()?;
        while let Some(chunk) = stream.stream.next().await {
            let chunk = chunk.map_err(|e| self.cerr(e.into()))?;
            w.write(&chunk)?;
            if is_layer {
                (self.progress)(ProgressEvent::Bytes(chunk.len() as u64));
            }
        }
        w.commit(d, size)?;
        Ok(())
    }

    /// Download a layer while a scoped thread unpacks it into the layer store.
    async fn fetch_and_unpack<'scope>(
        &self,
        s: &'scope std::thread::Scope<'scope, 'env>,
        l: Layer,
    ) -> Result<(), RegistryError> {
        let dstr = l.digest.to_string();
        let mut stream = self
            .client
            .pull_blob_stream(&self.oref, dstr.as_str())
            .await
            .map_err(|e| self.cerr(e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let store = self.store;
        let digest = l.digest.clone();
        std::thread::Builder::new()
            .name("layer-unpack".into())
            .spawn_scoped(s, move || {
                let reader = ChunkReader {
                    rx,
                    cur: None,
                    pos: 0,
                };
                let _ = done_tx.send(store.unpack_layer_stream(&l, reader));
            })
            .map_err(RegistryError::Spawn)?;
        let mut download_err = None;
        let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
        while let Some(chunk) = stream.stream.next().await {
            match chunk {
                Ok(c) => {
                    (self.progress)(ProgressEvent::Bytes(c.len() as u64));
                    batch.extend_from_slice(&c);
                    if batch.len() < BATCH {
                        continue;
                    }
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Ok(full)).await.is_err() {
                        // The unpacker stopped on an error; it reports it below.
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(std::io::Error::new(e.kind(), e.to_string())))
                        .await;
                    download_err = Some(e);
                    break;
                }
            }
        }
        if download_err.is_none() && !batch.is_empty() {
            let _ = tx.send(Ok(batch)).await;
        }
        drop(tx);
        let unpacked = done_rx
            .await
            .map_err(|_| RegistryError::UnpackThread(digest))?;
        if let Some(e) = download_err {
            return Err(self.cerr(e.into()));
        }
        unpacked?;
        Ok(())
    }

    async fn fetch_layer<'scope>(
        &self,
        s: &'scope std::thread::Scope<'scope, 'env>,
        l: Layer,
        unpack: bool,
    ) -> Result<(), RegistryError> {
        let have_blob = self.store.has_blob(&l.digest);
        let have_dir = !unpack || self.store.layer_path(&l.diff_id).is_dir();
        match (have_blob, have_dir) {
            (true, true) => (self.progress)(ProgressEvent::Bytes(l.size)),
            (false, true) => self.fetch_blob(&l.digest, l.size, true).await?,
            (true, false) => {
                // Stored but not unpacked: unpack from the store, off the runtime thread.
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                let (store, progress) = (self.store, self.progress);
                let digest = l.digest.clone();
                std::thread::Builder::new()
                    .name("layer-unpack".into())
                    .spawn_scoped(s, move || {
                        let _ = done_tx.send(store.unpack_layer(&l, progress));
                    })
                    .map_err(RegistryError::Spawn)?;
                done_rx
                    .await
                    .map_err(|_| RegistryError::UnpackThread(digest))??;
                // `unpack_layer` reported the layer done itself.
                return Ok(());
            }
            (false, false) => self.fetch_and_unpack(s, l).await?,
        }
        (self.progress)(ProgressEvent::LayerDone);
        Ok(())
    }
}

async fn pull_async<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    store: &'env Store,
    r: &'env Reference,
    opts: &'env PullOptions,
    progress: Progress<'env>,
) -> Result<Image, RegistryError> {
    let protocol = if opts.insecure || is_loopback(&r.registry) {
        ClientProtocol::HttpsExcept(vec![r.registry.clone()])
    } else {
        ClientProtocol::Https
    };
    let client = oci_client::Client::new(ClientConfig {
        protocol,
        max_concurrent_download: CONCURRENT,
        ..Default::default()
    });
    let auth = match &opts.auth {
        Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        None => match docker_credentials(&r.registry)? {
            Some((u, p)) => RegistryAuth::Basic(u, p),
            None => RegistryAuth::Anonymous,
        },
    };
    let name = r.to_string();
    let cerr = |source| RegistryError::Client {
        reference: name.clone(),
        source,
    };
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);

    let mut want = r.digest.clone();
    let mut fetched = None;
    for _ in 0..4 {
        let oref = oci_ref(r, want.as_ref());
        let (data, _) = client
            .pull_manifest_raw(&oref, &auth, ACCEPT)
            .await
            .map_err(cerr)?;
        let actual = Digest::of(&data);
        if let Some(w) = &want {
            if *w != actual {
                return Err(RegistryError::ManifestDigest {
                    reference: name.clone(),
                    expected: w.clone(),
                    actual,
                });
            }
        }
        match Manifest::parse(&data, &actual).map_err(StoreError::from)? {
            Manifest::Index(idx) => {
                let d = select_platform(&idx, &actual, &platform).map_err(StoreError::from)?;
                want = Some(descriptor_digest(d, "index").map_err(StoreError::from)?);
            }
            Manifest::Image(m) => {
                fetched = Some((actual, data, m));
                break;
            }
        }
    }
    let (mdigest, mdata, manifest) = fetched.ok_or(RegistryError::Nested)?;
    let ctx = Ctx {
        client,
        oref: oci_ref(r, Some(&mdigest)),
        name,
        store,
        progress,
    };

    // The config first (it names the layers' diff ids), then the layers concurrently.
    let cd = descriptor_digest(manifest.config(), "manifest").map_err(StoreError::from)?;
    if !store.has_blob(&cd) {
        ctx.fetch_blob(&cd, manifest.config().size(), false).await?;
    }
    let cdata = store.read_blob(&cd)?;
    let config = serde_json::from_slice(&cdata).map_err(|source| {
        StoreError::from(ImageError::Parse {
            what: "image config",
            digest: cd.clone(),
            source,
        })
    })?;
    let img = Image::new(mdigest.clone(), *manifest, config).map_err(StoreError::from)?;
    let layers = img.layers().map_err(StoreError::from)?;
    progress(ProgressEvent::Start {
        layers: layers.len(),
        bytes: layers.iter().map(|l| l.size).sum(),
    });
    let unpack = !opts.no_unpack;
    let ctx = &ctx;
    let results: Vec<Result<(), RegistryError>> =
        futures_util::stream::iter(layers.into_iter().map(|l| ctx.fetch_layer(s, l, unpack)))
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
    for res in results {
        res?;
    }
    let stored = store.write_blob_bytes(&mdata)?;
    debug_assert_eq!(stored, mdigest);
    store.check_complete(&img)?;
    let key = if r.tag.is_some() {
        Reference {
            digest: None,
            ..r.clone()
        }
        .to_string()
    } else {
        r.to_string()
    };
    store.set_ref(&key, &mdigest)?;
    Ok(img)
}
