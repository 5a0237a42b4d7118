//! Pulling images from registries speaking the OCI distribution API.
//!
//! The protocol (token challenge flow, basic auth, redirects) is `oci-client`'s; tokio lives
//! only inside [`pull`], on a current-thread runtime built per call, so nothing else pays for it.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine as _;
use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_spec::image::Descriptor;

use crate::digest::Digest;
use crate::image::{descriptor_digest, select_platform, Image, Manifest, Platform};
use crate::reference::Reference;
use crate::store::{Store, StoreError};
use crate::unpack::{Progress, ProgressEvent};

const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How many blobs download at once.
const CONCURRENT: usize = 3;

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
    rt.block_on(pull_async(store, reference, opts, progress))
}

async fn pull_async(
    store: &Store,
    r: &Reference,
    opts: &PullOptions,
    progress: Progress<'_>,
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
    let oref = oci_ref(r, Some(&mdigest));

    // Config, then the layers, concurrently; every blob verified before it enters the store.
    let config_desc = manifest.config().clone();
    let mut blobs: Vec<Descriptor> = vec![config_desc];
    let layers = manifest.layers().clone();
    progress(ProgressEvent::Start {
        layers: layers.len(),
        bytes: layers.iter().map(|l| l.size()).sum(),
    });
    blobs.extend(layers);
    let fetch = |desc: Descriptor| {
        let client = &client;
        let oref = &oref;
        let name = &name;
        async move {
            let d = descriptor_digest(&desc, "manifest").map_err(StoreError::from)?;
            let is_layer = desc.media_type().to_string().contains("layer")
                || desc.media_type().to_string().contains("rootfs");
            if store.has_blob(&d) {
                if is_layer {
                    progress(ProgressEvent::Bytes(desc.size()));
                    progress(ProgressEvent::LayerDone);
                }
                return Ok::<(), RegistryError>(());
            }
            let cerr = |source| RegistryError::Client {
                reference: name.clone(),
                source,
            };
            let dstr = d.to_string();
            let mut stream = client
                .pull_blob_stream(oref, dstr.as_str())
                .await
                .map_err(cerr)?;
            let mut w = store.blob_writer()?;
            while let Some(chunk) = stream.stream.next().await {
                let chunk = chunk.map_err(|e| cerr(e.into()))?;
                w.write(&chunk)?;
                if is_layer {
                    progress(ProgressEvent::Bytes(chunk.len() as u64));
                }
            }
            w.commit(&d, desc.size())?;
            if is_layer {
                progress(ProgressEvent::LayerDone);
            }
            Ok(())
        }
    };
    let results: Vec<Result<(), RegistryError>> =
        futures_util::stream::iter(blobs.into_iter().map(fetch))
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
    for res in results {
        res?;
    }
    let stored = store.write_blob_bytes(&mdata)?;
    debug_assert_eq!(stored, mdigest);
    let img = store.image(&mdigest)?;
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
