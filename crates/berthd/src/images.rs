//! The image side of the daemon over berth-image's store: docker's view of it (an image is
//! known by its config digest, `sha256:...`, and by its references, shown in their familiar
//! form `busybox:latest`). Blocking: the API calls these on tokio's blocking pool.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use berth_image::{Digest, Image, Reference, Store};

use crate::error::Error;

/// An image found by a user's name for it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The store key the name resolved through (`docker.io/library/busybox:latest`), when it
    /// was a reference.
    pub key: Option<String>,
    /// The image.
    pub image: Image,
    /// Every reference (store keys) pointing at this image.
    pub keys: Vec<String>,
}

impl Found {
    /// Docker's image id: the config digest.
    pub fn id(&self) -> String {
        self.image.config_digest.to_string()
    }
}

/// Docker's short form of a store key (`docker.io/library/busybox:latest` -> `busybox:latest`).
pub fn familiar(key: &str) -> String {
    key.parse::<Reference>()
        .map(|r| r.familiar())
        .unwrap_or_else(|_| key.to_owned())
}

/// The image store.
#[derive(Debug)]
pub struct Images {
    store: Store,
}

fn store_err(e: berth_image::StoreError) -> Error {
    match e {
        berth_image::StoreError::UnknownImage(n) => Error::NoSuchImage(n),
        berth_image::StoreError::Reference(r) => Error::BadParameter(r.to_string()),
        e => Error::internal("image store", e),
    }
}

impl Images {
    /// Open the store at `root` (berth-image's layout; shared with `berth image`).
    pub fn open(root: &Path) -> Result<Self, Error> {
        Ok(Images {
            store: Store::open(root).map_err(|e| Error::internal("open the image store", e))?,
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every image with its references, keyed by manifest digest.
    pub fn all(&self) -> Result<Vec<Found>, Error> {
        let refs = self.store.refs().map_err(store_err)?;
        let mut by_manifest: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (k, d) in refs {
            by_manifest.entry(d).or_default().push(k);
        }
        let mut out = Vec::new();
        for (d, keys) in by_manifest {
            match self.store.image(&d) {
                Ok(image) => out.push(Found {
                    key: None,
                    image,
                    keys,
                }),
                Err(e) => tracing::warn!("image {d} ({keys:?}) is unreadable: {e}"),
            }
        }
        Ok(out)
    }

    /// Find an image by reference (`busybox`, `busybox:1`, `name@sha256:...`), image id
    /// (`sha256:<config>` or a prefix of its hex), or manifest digest.
    pub fn lookup(&self, name: &str) -> Result<Found, Error> {
        if let Ok((key, manifest)) = self.store.resolve(name) {
            let image = self.store.image(&manifest).map_err(store_err)?;
            let keys = self.keys_of(&manifest)?;
            return Ok(Found {
                key: Some(key),
                image,
                keys,
            });
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<Found> = self
                .all()?
                .into_iter()
                .filter(|f| f.image.config_digest.hex().starts_with(hex))
                .collect();
            if hits.len() == 1 {
                return Ok(hits.into_iter().next().expect("one"));
            }
        }
        Err(Error::NoSuchImage(name.to_owned()))
    }

    fn keys_of(&self, manifest: &Digest) -> Result<Vec<String>, Error> {
        Ok(self
            .store
            .refs()
            .map_err(store_err)?
            .into_iter()
            .filter(|(_, d)| d == manifest)
            .map(|(k, _)| k)
            .collect())
    }

    /// Load a docker-archive or OCI-layout tarball; returns docker's messages
    /// (`Loaded image: busybox:latest`, or `Loaded image ID: sha256:...`).
    pub fn load(&self, tar: File) -> Result<Vec<String>, Error> {
        let loaded = berth_image::archive::load_tar(
            &self.store,
            io::BufReader::new(tar),
            &Default::default(),
        )
        .map_err(|e| Error::BadParameter(format!("loading the image archive: {}", chain(&e))))?;
        let mut out = Vec::new();
        for img in loaded {
            if img.names.is_empty() {
                let image = self.store.image(&img.manifest).map_err(store_err)?;
                out.push(format!("Loaded image ID: {}", image.config_digest));
            }
            for n in img.names {
                out.push(format!("Loaded image: {}", familiar(&n)));
            }
        }
        Ok(out)
    }

    /// Point `repo:tag` at the image `source`.
    pub fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<(), Error> {
        let found = self.lookup(source)?;
        let full = if tag.is_empty() {
            repo.to_owned()
        } else {
            format!("{repo}:{tag}")
        };
        let r: Reference = full
            .parse()
            .map_err(|e: berth_image::reference::ReferenceError| {
                Error::BadParameter(e.to_string())
            })?;
        if r.digest.is_some() {
            return Err(Error::BadParameter(format!(
                "refusing to create a tag with a digest reference: {full}"
            )));
        }
        self.store
            .set_ref(&r.to_string(), &found.image.manifest_digest)
            .map_err(store_err)
    }

    /// Remove an image (docker's `rmi`): a reference is untagged, and the image is deleted
    /// with its last reference. `in_use` says which container (if any) uses an image id;
    /// such an image is not deleted unless `force` (then only untagged, as docker does).
    /// Returns docker's list of `("Untagged"|"Deleted", name)`.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<(&'static str, String)>, Error> {
        let found = self.lookup(name)?;
        let id = found.id();
        let by_ref = found.key.is_some()
            && !name.starts_with("sha256:")
            && !found.image.config_digest.hex().starts_with(name);
        let mut out = Vec::new();
        let untag: Vec<String> = if by_ref {
            vec![found.key.clone().expect("by reference")]
        } else {
            if found.keys.len() > 1 && !force {
                return Err(Error::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    &found.image.config_digest.hex()[..12]
                )));
            }
            found.keys.clone()
        };
        let last = untag.len() >= found.keys.len();
        if last {
            if let Some(c) = in_use(&id) {
                if !force {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is being used by container {}",
                        if by_ref { familiar(name) } else { found.image.config_digest.hex()[..12].to_owned() },
                        &c[..12.min(c.len())]
                    )));
                }
            }
        }
        for k in &untag {
            self.store.remove_ref(k).map_err(store_err)?;
            out.push(("Untagged", familiar(k)));
        }
        if last && in_use(&id).is_none() {
            self.store
                .prune()
                .map_err(|e| Error::internal("prune the image store", e))?;
            out.push(("Deleted", id));
        }
        Ok(out)
    }

    /// Write a docker-archive (`docker save`) of the named images to `out`.
    pub fn save(&self, names: &[String], out: &mut dyn Write) -> Result<(), Error> {
        let mut ar = tar::Builder::new(out);
        let mut manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut written = std::collections::HashSet::new();
        let io = |e: io::Error| Error::internal("write the image archive", e);
        for name in names {
            let found = self.lookup(name)?;
            let img = &found.image;
            let config_name = format!("{}.json", img.config_digest.hex());
            if written.insert(config_name.clone()) {
                self.append_blob(&mut ar, &img.config_digest, &config_name)?;
            }
            let mut layers = Vec::new();
            let mut last = String::new();
            for l in img
                .layers()
                .map_err(|e| Error::internal("image layers", e))?
            {
                let path = format!("{}/layer.tar", l.digest.hex());
                if written.insert(path.clone()) {
                    self.append_blob(&mut ar, &l.digest, &path)?;
                }
                last = l.digest.hex().to_owned();
                layers.push(path);
            }
            let tags: Vec<String> = match &found.key {
                Some(k) if !name.starts_with("sha256:") => vec![familiar(k)],
                _ => found.keys.iter().map(|k| familiar(k)).collect(),
            };
            for t in &tags {
                if let Some((repo, tag)) = t.rsplit_once(':') {
                    repositories
                        .entry(repo.to_owned())
                        .or_default()
                        .insert(tag.to_owned(), last.clone());
                }
            }
            manifest.push(
                serde_json::json!({"Config": config_name, "RepoTags": tags, "Layers": layers}),
            );
        }
        for (name, data) in [
            (
                "manifest.json",
                serde_json::to_vec(&manifest).expect("json"),
            ),
            (
                "repositories",
                serde_json::to_vec(&repositories).expect("json"),
            ),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            ar.append_data(&mut h, name, data.as_slice()).map_err(io)?;
        }
        ar.into_inner().map_err(io)?.flush().map_err(io)
    }

    fn append_blob(
        &self,
        ar: &mut tar::Builder<&mut dyn Write>,
        d: &Digest,
        path: &str,
    ) -> Result<(), Error> {
        let p: PathBuf = self.store.blob_path(d);
        let mut f = File::open(&p).map_err(|e| Error::internal("open a blob", e))?;
        let size = f
            .metadata()
            .map_err(|e| Error::internal("stat a blob", e))?
            .len();
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        ar.append_data(&mut h, path, &mut f)
            .map_err(|e| Error::internal("write the image archive", e))
    }
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
