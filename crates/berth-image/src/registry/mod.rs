//! Pulling images from registries speaking the OCI distribution API.
//!
//! The HTTP side lives in the private modules `transfer` (auth challenges answered wherever
//! they come, retries, resumed blobs, size caps), `auth` (challenges and tokens) and
//! `credentials` (docker's config and credential helpers, [`docker_credentials`]). tokio lives only inside [`pull`], on a current-thread
//! runtime built per call, so nothing else pays for it. The runtime thread only moves bytes:
//! each layer streams through a bounded channel to scoped threads that verify, decompress and
//! write it (see [`Store::unpack_layer_stream`]).

mod auth;
mod credentials;
mod transfer;

use std::io::Read;
use std::path::PathBuf;

use futures_util::StreamExt as _;

pub use credentials::{docker_credentials, Credentials, IDENTITY_TOKEN_USER};
pub use transfer::{MAX_CONFIG, MAX_MANIFEST, MAX_TOKEN_RESPONSE};

use crate::digest::Digest;
use crate::image::{
    descriptor_digest, select_platform, Image, ImageError, Layer, Manifest, Platform,
};
use crate::reference::Reference;
use crate::store::{Store, StoreError};
use crate::unpack::{Progress, ProgressEvent, UnpackError};
use transfer::Session;

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
    /// Building the HTTP client failed.
    #[error("building the http client")]
    HttpClient(#[source] reqwest::Error),
    /// A request failed without an answer (connection refused, reset, timed out), after
    /// retries.
    #[error("request to {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error message.
        message: String,
    },
    /// The registry refused the request after its challenge was answered (or could not be).
    #[error("not authorized for {url}: {message}")]
    Unauthorized {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The registry's challenge names no scheme berth speaks.
    #[error("{url} asks for authentication berth does not speak ({header})")]
    Challenge {
        /// The URL.
        url: String,
        /// The schemes offered.
        header: String,
    },
    /// The token server refused or answered nonsense.
    #[error("getting a token from {realm}{}: {message}", status.map(|s| format!(" (status {s})")).unwrap_or_default())]
    Token {
        /// The token server's realm URL.
        realm: String,
        /// Its HTTP status, if it answered.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
    /// A response without a known digest exceeded its size cap.
    #[error("{what} from {url} is larger than the {limit} bytes allowed")]
    TooLarge {
        /// Manifest, index, config, token response.
        what: &'static str,
        /// The URL.
        url: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// A descriptor declares a size above the cap for its kind.
    #[error("{what} {digest} declares {size} bytes, more than the {limit} allowed")]
    DeclaredTooLarge {
        /// Manifest or config.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// The declared size.
        size: u64,
        /// The cap in bytes.
        limit: u64,
    },
    /// A blob kept coming after the size its descriptor declares.
    #[error("blob {digest} is larger than the {size} bytes its descriptor declares")]
    BlobTooLarge {
        /// The blob.
        digest: Digest,
        /// The declared size.
        size: u64,
    },
    /// A blob download was cut too many times.
    #[error("download of blob {digest} stopped at {received} of {size} bytes after {attempts} dropped connections: {reason}")]
    Interrupted {
        /// The blob.
        digest: Digest,
        /// Bytes received.
        received: u64,
        /// Its size.
        size: u64,
        /// Connections that dropped.
        attempts: u32,
        /// The last drop's cause.
        reason: String,
    },
    /// A foreign (non-distributable) layer could be fetched neither from the registry nor from
    /// its URLs.
    #[error("foreign layer {digest} (urls {urls}): {reason}")]
    ForeignLayer {
        /// The layer blob.
        digest: Digest,
        /// Its URLs.
        urls: String,
        /// What each source answered.
        reason: String,
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
    /// A docker credential helper failed.
    #[error("credential helper {helper} for {registry}: {reason}")]
    Helper {
        /// The program, `docker-credential-NAME`.
        helper: String,
        /// The registry asked about.
        registry: String,
        /// What went wrong.
        reason: String,
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
    /// Platform to pick from indexes; [`Platform::host`] when `None` (whose amd64 accepts
    /// the x86-64 levels this CPU has, see [`crate::platform`]).
    pub platform: Option<Platform>,
    /// Credentials as (user, secret), user `<token>` for an identity token; when `None`,
    /// looked up in the docker config ([`docker_credentials`]) when the registry first
    /// challenges, else anonymous. They are sent only in answer to a challenge.
    pub auth: Option<(String, String)>,
    /// Only store the blobs; don't unpack the layers into the layer store while pulling.
    pub no_unpack: bool,
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// Pull `reference` into `store` and point the reference at it; returns the image.
///
/// Layers download concurrently; unless [`PullOptions::no_unpack`] is set, each is unpacked into
/// the layer store on its own thread while it streams (download, decompression and file
/// writes overlap), with its digest and diff id verified as the bytes flow. A layer that fails
/// verification leaves neither blob nor directory behind, and the reference is set only once
/// every blob is in the store.
///
/// The registry is reached over https, or plain http for loopback hosts and
/// [`PullOptions::insecure`]. A 401 on any request is answered once with its challenge
/// (Basic: the credentials; Bearer: a token for the challenge's scope and this repository)
/// and the request retried. Connection failures, 429 and 5xx are retried with backoff; a blob
/// whose connection drops resumes with a `Range` request from the first missing byte (or, where the registry ignores
/// ranges, from the start, skipping what it has), and a
/// foreign layer missing from the registry is fetched from its descriptor's `urls`. An index
/// entry is chosen with [`crate::platform::select_platform`]. Manifests and indexes are read
/// up to [`MAX_MANIFEST`] bytes, configs up to [`MAX_CONFIG`], token responses up to
/// [`MAX_TOKEN_RESPONSE`] ([`RegistryError::TooLarge`], [`RegistryError::DeclaredTooLarge`]).
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
    session: Session,
    store: &'a Store,
    progress: Progress<'a>,
}

impl<'env> Ctx<'env> {
    /// Download a blob into the store (no unpacking).
    async fn fetch_blob(
        &self,
        d: &Digest,
        size: u64,
        urls: Vec<String>,
        is_layer: bool,
    ) -> Result<(), RegistryError> {
        let mut dl = self.session.blob(d, size, urls);
        let mut w = self.store.blob_writer()?;
        while let Some(chunk) = dl.next().await? {
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
        urls: Vec<String>,
    ) -> Result<(), RegistryError> {
        let mut dl = self.session.blob(&l.digest, l.size, urls);
        // Open the download before the unpacker starts, so that a missing blob costs nothing.
        let first = dl.next().await?;
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
        let mut next = first;
        loop {
            let Some(c) = next else { break };
            (self.progress)(ProgressEvent::Bytes(c.len() as u64));
            batch.extend_from_slice(&c);
            if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.send(Ok(full)).await.is_err() {
                    // The unpacker stopped on an error; it reports it below.
                    break;
                }
            }
            next = match dl.next().await {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx
                        .send(Err(std::io::Error::other(format!("download failed: {e}"))))
                        .await;
                    download_err = Some(e);
                    break;
                }
            };
        }
        if download_err.is_none() && !batch.is_empty() {
            let _ = tx.send(Ok(batch)).await;
        }
        drop(tx);
        let unpacked = done_rx
            .await
            .map_err(|_| RegistryError::UnpackThread(digest))?;
        if let Some(e) = download_err {
            return Err(e);
        }
        unpacked?;
        Ok(())
    }

    async fn fetch_layer<'scope>(
        &self,
        s: &'scope std::thread::Scope<'scope, 'env>,
        l: Layer,
        urls: Vec<String>,
        unpack: bool,
    ) -> Result<(), RegistryError> {
        let have_blob = self.store.has_blob(&l.digest);
        let have_dir = !unpack || self.store.layer_path(&l.diff_id).is_dir();
        match (have_blob, have_dir) {
            (true, true) => (self.progress)(ProgressEvent::Bytes(l.size)),
            (false, true) => self.fetch_blob(&l.digest, l.size, urls, true).await?,
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
            (false, false) => self.fetch_and_unpack(s, l, urls).await?,
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
    let plain_http = opts.insecure || is_loopback(&r.registry);
    let given = opts.auth.clone().map(|(u, p)| Credentials::from_pair(u, p));
    let session = Session::new(&r.registry, &r.repository, plain_http, given)?;
    let name = r.to_string();
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let accept = ACCEPT.join(", ");

    let mut want = r.digest.clone();
    let mut fetched = None;
    for _ in 0..4 {
        let target = match (&want, &r.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        };
        let url = session.url("manifests", &target);
        let (data, _) = session
            .get_small(&url, Some(&accept), MAX_MANIFEST, "manifest")
            .await?;
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
                let digest = descriptor_digest(d, "index").map_err(StoreError::from)?;
                if d.size() > MAX_MANIFEST {
                    return Err(RegistryError::DeclaredTooLarge {
                        what: "manifest",
                        digest,
                        size: d.size(),
                        limit: MAX_MANIFEST,
                    });
                }
                want = Some(digest);
            }
            Manifest::Image(m) => {
                fetched = Some((actual, data, m));
                break;
            }
        }
    }
    let (mdigest, mdata, manifest) = fetched.ok_or(RegistryError::Nested)?;
    let ctx = Ctx {
        session,
        store,
        progress,
    };

    // The config first (it names the layers' diff ids), then the layers concurrently.
    let cd = descriptor_digest(manifest.config(), "manifest").map_err(StoreError::from)?;
    let csize = manifest.config().size();
    if csize > MAX_CONFIG {
        return Err(RegistryError::DeclaredTooLarge {
            what: "image config",
            digest: cd,
            size: csize,
            limit: MAX_CONFIG,
        });
    }
    if !store.has_blob(&cd) {
        ctx.fetch_blob(&cd, csize, Vec::new(), false).await?;
    }
    let cdata = store.read_blob(&cd)?;
    let config = serde_json::from_slice(&cdata).map_err(|source| {
        StoreError::from(ImageError::Parse {
            what: "image config",
            digest: cd.clone(),
            source,
        })
    })?;
    let urls: Vec<Vec<String>> = manifest
        .layers()
        .iter()
        .map(|l| l.urls().clone().unwrap_or_default())
        .collect();
    let img = Image::new(mdigest.clone(), *manifest, config).map_err(StoreError::from)?;
    let layers = img.layers().map_err(StoreError::from)?;
    progress(ProgressEvent::Start {
        layers: layers.len(),
        bytes: layers.iter().map(|l| l.size).sum(),
    });
    let unpack = !opts.no_unpack;
    let ctx = &ctx;
    let results: Vec<Result<(), RegistryError>> = futures_util::stream::iter(
        layers
            .into_iter()
            .zip(urls)
            .map(|(l, u)| ctx.fetch_layer(s, l, u, unpack)),
    )
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
