//! Pulling images from registries speaking the OCI distribution API.
//!
//! The HTTP side lives in the private modules `transfer` (auth challenges answered wherever
//! they come, retries, resumed blobs, size caps), `auth` (challenges and tokens) and
//! `credentials` (docker's config and credential helpers, [`docker_credentials`]).
//!
//! Why our own HTTP client over `reqwest` and not the `oci-client` crate: oci-client takes its
//! auth challenge from `GET /v2/` only and attaches cached tokens, with no way to answer a
//! `401` that a repository endpoint sends (per-repository auth, which real registries use);
//! it does not read docker's credential helpers and does not fetch foreign layers from their
//! `urls`. Those are what `berth image pull` must do as docker and containerd do, so the
//! distribution protocol (a handful of GETs) is ours, with its retries, redirects and size
//! caps, and everything below HTTP (TLS, connection pooling) is reqwest's and rustls's.
//!
//! [`pull`] is an async function for the caller's tokio runtime (a daemon's);
//! [`pull_blocking`] runs it for callers without one (the CLI). The runtime's workers only
//! move bytes: each layer streams through a bounded channel to a blocking-pool thread that
//! verifies, decompresses and writes it (see [`Store::unpack_layer_stream`]). Progress comes
//! as [`PullEvent`]s, per layer ([`progress`]).

mod auth;
mod credentials;
pub mod progress;
mod transfer;

use std::io::Read;
use std::path::PathBuf;

use futures_util::StreamExt as _;

pub use credentials::{docker_credentials, Credentials, IDENTITY_TOKEN_USER};
pub use progress::{LayerProgress, LayerState, PullEvent, PullProgress};
pub use transfer::{MAX_CONFIG, MAX_MANIFEST, MAX_TOKEN_RESPONSE};

use crate::digest::Digest;
use crate::image::{
    descriptor_digest, select_platform, Image, ImageError, Layer, Manifest, Platform,
};
use crate::reference::Reference;
use crate::store::{Store, StoreError};
use crate::unpack::{ProgressEvent, UnpackError};
use progress::LayerReporter;
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
    /// [`pull_blocking`], called inside a runtime, could not start its thread.
    #[error("spawning a thread to run the pull on")]
    Spawn(#[source] std::io::Error),
    /// A task of the pull on the blocking pool (unpacking a layer, storing a blob) panicked
    /// or was cancelled by the runtime's shutdown.
    #[error("{what} on the blocking pool stopped without a result")]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// Tokio's reason.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Too many nested indexes.
    #[error("too many nested image indexes")]
    Nested,
    /// The reference names a single image manifest (no index) whose config is for a platform
    /// that the platform asked for does not run (docker and containerd refuse it so).
    #[error("{reference} is an image for {actual}, not for {wanted}")]
    PlatformMismatch {
        /// The reference pulled.
        reference: String,
        /// The platform asked for.
        wanted: Platform,
        /// The config's os/architecture\[/variant\].
        actual: String,
    },
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
/// An async function for any tokio runtime, multi-thread or current-thread, that has its IO
/// and time drivers enabled (`enable_all`); the future is `Send`, so it can be
/// `tokio::spawn`ed with owned arguments moved in. Without a runtime, use [`pull_blocking`].
/// The runtime's workers only move bytes: verifying, decompressing and writing each layer, and
/// every other file system write, run on tokio's blocking pool (`spawn_blocking`).
///
/// Layers download three at a time; unless [`PullOptions::no_unpack`] is set,
/// each is unpacked into the layer store while it streams (download, decompression and file
/// writes overlap), with its digest and diff id verified as the bytes flow. A layer that
/// fails verification leaves neither blob nor directory behind, and the reference is set only
/// once every blob is in the store. Dropping the future stops the downloads; a layer being
/// unpacked then sees its stream end early, fails verification and removes what it wrote.
///
/// `progress` receives a [`PullEvent::Resolved`] once the manifest and config are in, then
/// each layer's [`PullEvent::Layer`] events: [`LayerState::Waiting`] first, then forward
/// only, ending with [`LayerState::Done`] or [`LayerState::AlreadyExists`] (see
/// [`LayerState`] and [`LayerProgress`] for what each carries). It is called from the pull's
/// task and from blocking threads, so it must be cheap and must not block: to hand events to
/// another task, send them into an unbounded channel from the closure.
///
/// The registry is reached over https, or plain http for loopback hosts and
/// [`PullOptions::insecure`]. A 401 on any request is answered once with its challenge
/// (Basic: the credentials; Bearer: a token for the challenge's scope and this repository)
/// and the request retried. Connection failures, 429 and 5xx are retried with backoff; a blob
/// whose connection drops resumes with a `Range` request from the first missing byte (or,
/// where the registry ignores ranges, from the start, skipping what it has), and a foreign
/// layer missing from the registry is fetched from its descriptor's `urls`. An index entry is
/// chosen with [`crate::platform::select_platform`]. Manifests and indexes are read up to
/// [`MAX_MANIFEST`] bytes, configs up to [`MAX_CONFIG`], token responses up to
/// [`MAX_TOKEN_RESPONSE`] ([`RegistryError::TooLarge`], [`RegistryError::DeclaredTooLarge`]).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use berth_image::registry::{pull, PullEvent};
/// let store = berth_image::Store::open("/var/lib/berth")?;
/// let r = "127.0.0.1:5000/busybox:latest".parse()?;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let show = tokio::spawn(async move {
///     while let Some(PullEvent::Layer(l)) = rx.recv().await {
///         println!("{}: {} {}/{}", l.short_id(), l.state.docker_status(), l.current, l.total);
///     }
/// });
/// let img = pull(&store, &r, &Default::default(), &move |e| {
///     let _ = tx.send(e);
/// })
/// .await?;
/// println!("{}", img.manifest_digest);
/// # drop(show);
/// # Ok(()) }
/// ```
pub async fn pull(
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
    progress: PullProgress<'_>,
) -> Result<Image, RegistryError> {
    pull_inner(store, reference, opts, progress).await
}

/// Check `auth` (user, secret; user [`IDENTITY_TOKEN_USER`] for an identity token) against
/// `registry` (`host[:port]`) as `docker login` does: `GET /v2/`, answering the registry's
/// challenge with them (a bearer token is asked for `repository` scope `""`, which token
/// servers grant without repository rights). Ok when the registry then answers 2xx, or
/// challenges nothing. Plain http when `insecure` or the host is loopback.
///
/// Errors: [`RegistryError::Unauthorized`] when the registry refuses the credentials,
/// [`RegistryError::Token`] when its token server does, [`RegistryError::Status`] for any
/// other non-2xx answer, [`RegistryError::Http`] when it cannot be reached.
pub async fn login(
    registry: &str,
    auth: (String, String),
    insecure: bool,
) -> Result<(), RegistryError> {
    let plain_http = insecure || is_loopback(registry);
    let given = Some(Credentials::from_pair(auth.0, auth.1));
    let session = Session::new(registry, "", plain_http, given)?;
    let url = session.base_url("/v2/");
    let resp = session.get(&url, None, 0).await?;
    let status = resp.status();
    if !status.is_success() {
        return Err(RegistryError::Status {
            url,
            status: status.as_u16(),
            message: status.canonical_reason().unwrap_or("refused").to_owned(),
        });
    }
    Ok(())
}

/// [`pull`] for callers without an async runtime: blocks the calling thread until the pull
/// ends.
///
/// Outside a tokio runtime it runs the pull on a current-thread runtime built for the call.
/// Inside one (a runtime cannot be entered twice on a thread, and `block_on` there panics) it
/// runs that runtime on a thread of its own and waits for it: it works and does not panic,
/// but it holds the calling worker thread for the whole pull, so async code should
/// `pull(..).await` instead. Errors are [`pull`]'s, plus [`RegistryError::Runtime`] and
/// [`RegistryError::Spawn`] when the runtime or its thread cannot be started.
///
/// ```no_run
/// let store = berth_image::Store::open("/var/lib/berth")?;
/// let r = "127.0.0.1:5000/busybox:latest".parse()?;
/// let img = berth_image::registry::pull_blocking(&store, &r, &Default::default(), &|_| {})?;
/// println!("{}", img.manifest_digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pull_blocking(
    store: &Store,
    reference: &Reference,
    opts: &PullOptions,
    progress: PullProgress<'_>,
) -> Result<Image, RegistryError> {
    let run = || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryError::Runtime)?;
        rt.block_on(pull_inner(store, reference, opts, progress))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|s| {
        let t = std::thread::Builder::new()
            .name("berth-pull".into())
            .spawn_scoped(s, run)
            .map_err(RegistryError::Spawn)?;
        t.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Feeds the batches of a download to a blocking reader (a layer unpacker or blob writer on
/// the blocking pool). The end of the channel is the end of the stream: a download stopped
/// early (the pull's future dropped) ends it short, which verification then refuses.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let avail = &self.cur[self.pos..];
            if !avail.is_empty() {
                let n = avail.len().min(buf.len());
                buf[..n].copy_from_slice(&avail[..n]);
                self.pos += n;
                return Ok(n);
            }
            match self.rx.blocking_recv() {
                Some(Ok(c)) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

/// Start `f` with a clone of `store` on the blocking pool now (not at the first poll: a
/// consumer must run while its feeder fills the channel); the future gives its result.
fn blocking<T: Send + 'static>(
    store: &Store,
    what: &'static str,
    f: impl FnOnce(Store) -> Result<T, RegistryError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, RegistryError>> + Send {
    let store = store.clone();
    let task = tokio::task::spawn_blocking(move || f(store));
    async move {
        task.await
            .map_err(|source| RegistryError::Task { what, source })?
    }
}

struct Ctx<'a> {
    session: Session,
    store: &'a Store,
}

impl Ctx<'_> {
    /// Download a blob, handing its bytes in batches to `consume` on the blocking pool, and
    /// report them to `rep`. A download error wins over what `consume` makes of the cut stream.
    async fn stream_blob<T: Send + 'static>(
        &self,
        d: &Digest,
        size: u64,
        urls: Vec<String>,
        rep: Option<&LayerReporter<'_>>,
        what: &'static str,
        consume: impl FnOnce(Store, ChunkReader) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        if let Some(r) = rep {
            r.set(LayerState::Downloading, 0);
        }
        let mut dl = self.session.blob(d, size, urls);
        // Open the download before the consumer starts, so that a missing blob costs nothing.
        let first = dl.next().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let consumer = blocking(self.store, what, move |store| {
            consume(
                store,
                ChunkReader {
                    rx,
                    cur: Vec::new(),
                    pos: 0,
                },
            )
        });
        let feed = async {
            let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
            let mut next = first;
            while let Some(c) = next {
                if let Some(r) = rep {
                    r.advance(LayerState::Downloading, c.len() as u64);
                }
                batch.extend_from_slice(&c);
                if batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Ok(full)).await.is_err() {
                        // The consumer stopped on an error; it reports it.
                        return Ok(());
                    }
                }
                next = match dl.next().await {
                    Ok(n) => n,
                    Err(e) => {
                        let cut = std::io::Error::other(format!("download failed: {e}"));
                        let _ = tx.send(Err(cut)).await;
                        return Err(e);
                    }
                };
            }
            if !batch.is_empty() {
                let _ = tx.send(Ok(batch)).await;
            }
            if let Some(r) = rep {
                r.set(LayerState::Verifying, size);
            }
            Ok(())
        };
        // The consumer runs on its own thread; this task feeds it, then waits for its verdict.
        let fed: Result<(), RegistryError> = feed.await;
        drop(tx);
        let consumed = consumer.await;
        fed?;
        consumed
    }

    async fn fetch_layer(
        &self,
        l: Layer,
        urls: Vec<String>,
        unpack: bool,
        rep: &LayerReporter<'_>,
    ) -> Result<(), RegistryError> {
        let have_blob = self.store.has_blob(&l.digest);
        let have_dir = !unpack || self.store.layer_path(&l.diff_id).is_dir();
        match (have_blob, have_dir) {
            (true, true) => {
                rep.finish(LayerState::AlreadyExists);
                return Ok(());
            }
            (false, true) => {
                let (d, size) = (l.digest.clone(), l.size);
                self.stream_blob(
                    &l.digest,
                    size,
                    urls,
                    Some(rep),
                    "storing a blob",
                    move |s, r| write_blob(&s, r, &d, size),
                )
                .await?
            }
            (true, false) => {
                // Stored but not unpacked: extract from the store on the blocking pool; its
                // byte counts come back over a channel.
                rep.set(LayerState::Extracting, 0);
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let job = blocking(self.store, "unpacking a stored layer", move |s| {
                    let report = move |e| {
                        if let ProgressEvent::Bytes(n) = e {
                            let _ = tx.send(n);
                        }
                    };
                    s.unpack_layer(&l, &report)?;
                    Ok(())
                });
                let drain = async {
                    while let Some(n) = rx.recv().await {
                        rep.advance(LayerState::Extracting, n);
                    }
                };
                let (res, ()) = futures_util::future::join(job, drain).await;
                res?
            }
            (false, false) => {
                let (d, size) = (l.digest.clone(), l.size);
                self.stream_blob(
                    &d,
                    size,
                    urls,
                    Some(rep),
                    "unpacking a layer",
                    move |s, r| {
                        s.unpack_layer_stream(&l, r)?;
                        Ok(())
                    },
                )
                .await?
            }
        }
        rep.finish(LayerState::Done);
        Ok(())
    }
}

/// Write a blob from `r` into the store, verified against `d` and `size` (blocking).
fn write_blob(
    store: &Store,
    mut r: ChunkReader,
    d: &Digest,
    size: u64,
) -> Result<(), RegistryError> {
    let mut w = store.blob_writer()?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => w.write(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The download failed; the downloading task returns its error.
            Err(_) => return Ok(()),
        }
    }
    w.commit(d, size)?;
    Ok(())
}

/// A single image manifest (no index to choose from) is checked against the platform asked
/// for, with [`crate::platform::runs_on`]'s compatibility: refused when `--platform` was
/// given (docker and containerd refuse), only a warning for the host's default (docker pulls
/// it with one).
fn check_platform(
    reference: &str,
    wanted: Option<&Platform>,
    config: &oci_spec::image::ImageConfiguration,
) -> Result<(), RegistryError> {
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    let variant = config.variant().clone();
    let target = wanted.cloned().unwrap_or_else(Platform::host);
    if crate::platform::runs_on(&target, &os, &arch, variant.as_deref()) {
        return Ok(());
    }
    let actual = match &variant {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    };
    if wanted.is_none() {
        tracing::warn!(reference, image = %actual, host = %target, "the image is for another platform than this host");
        return Ok(());
    }
    Err(RegistryError::PlatformMismatch {
        reference: reference.to_owned(),
        wanted: target,
        actual,
    })
}

async fn pull_inner(
    store: &Store,
    r: &Reference,
    opts: &PullOptions,
    progress: PullProgress<'_>,
) -> Result<Image, RegistryError> {
    let plain_http = opts.insecure || is_loopback(&r.registry);
    let given = opts.auth.clone().map(|(u, p)| Credentials::from_pair(u, p));
    let session = Session::new(&r.registry, &r.repository, plain_http, given)?;
    let name = r.to_string();
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let accept = ACCEPT.join(", ");

    let mut want = r.digest.clone();
    let mut fetched = None;
    let mut from_index = false;
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
                from_index = true;
            }
            Manifest::Image(m) => {
                fetched = Some((actual, data, m));
                break;
            }
        }
    }
    let (mdigest, mdata, manifest) = fetched.ok_or(RegistryError::Nested)?;
    let ctx = Ctx { session, store };

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
        let d = cd.clone();
        ctx.stream_blob(
            &cd,
            csize,
            Vec::new(),
            None,
            "storing the config",
            move |s, r| write_blob(&s, r, &d, csize),
        )
        .await?;
    }
    let read = cd.clone();
    let cdata = blocking(
        store,
        "reading the config",
        move |s| Ok(s.read_blob(&read)?),
    )
    .await?;
    let config = serde_json::from_slice(&cdata).map_err(|source| {
        StoreError::from(ImageError::Parse {
            what: "image config",
            digest: cd.clone(),
            source,
        })
    })?;
    if !from_index {
        check_platform(&name, opts.platform.as_ref(), &config)?;
    }
    let urls: Vec<Vec<String>> = manifest
        .layers()
        .iter()
        .map(|l| l.urls().clone().unwrap_or_default())
        .collect();
    let img = Image::new(mdigest.clone(), *manifest, config).map_err(StoreError::from)?;
    let layers = img.layers().map_err(StoreError::from)?;
    progress(PullEvent::Resolved {
        manifest: mdigest.clone(),
        layers: layers.iter().map(|l| (l.digest.clone(), l.size)).collect(),
    });
    let reporters: Vec<LayerReporter<'_>> = layers
        .iter()
        .map(|l| LayerReporter::new(progress, l.digest.clone(), l.size))
        .collect();
    for rep in &reporters {
        rep.waiting();
    }
    let unpack = !opts.no_unpack;
    let ctx = &ctx;
    // Collected first: a stream holding the closure would make the future !Send (rustc's
    // higher-ranked lifetime limitation with closures returning futures).
    let mut jobs = Vec::with_capacity(layers.len());
    for ((l, u), rep) in layers.into_iter().zip(urls).zip(&reporters) {
        jobs.push(ctx.fetch_layer(l, u, unpack, rep));
    }
    let results: Vec<Result<(), RegistryError>> = futures_util::stream::iter(jobs)
        .buffer_unordered(CONCURRENT)
        .collect()
        .await;
    for res in results {
        res?;
    }
    let key = if r.tag.is_some() {
        Reference {
            digest: None,
            ..r.clone()
        }
        .to_string()
    } else {
        r.to_string()
    };
    let done = img.clone();
    blocking(store, "recording the image", move |s| {
        let stored = s.write_blob_bytes(&mdata)?;
        debug_assert_eq!(stored, mdigest);
        s.check_complete(&done)?;
        s.set_ref(&key, &mdigest)?;
        Ok(())
    })
    .await?;
    Ok(img)
}
