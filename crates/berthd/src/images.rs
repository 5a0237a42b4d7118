//! The image side of the daemon over berth-image's store: docker's view of it (an image is
//! known by its config digest, `sha256:...`, and by its references, shown in their familiar
//! form `busybox:latest`). Blocking: the API calls these on tokio's blocking pool.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use berth_image::{Digest, Image, Reference, Store};

use crate::error::Error;

/// Whether a store key names no repository: `sha256:<manifest hex>`, the key under which the
/// store keeps an image known only by its digest (a `docker load` of an archive without names,
/// or an image whose last name was removed or moved while it is kept: docker's dangling image).
pub fn is_digest_key(k: &str) -> bool {
    k.starts_with("sha256:")
}

/// The repository of a store key (`docker.io/library/busybox`), without tag or digest.
fn repo_of(k: &str) -> String {
    k.parse::<Reference>()
        .map(|r| r.name())
        .unwrap_or_else(|_| k.to_owned())
}

/// An image as docker sees it: every stored manifest with one config digest (the image id).
#[derive(Debug, Clone)]
pub struct Found {
    /// The store key the name resolved through (`docker.io/library/busybox:latest`), when it
    /// was a reference.
    pub key: Option<String>,
    /// The image (the manifest the key names, else the first stored one).
    pub image: Image,
    /// Every reference (store keys, tags and `name@digest`) naming one of its manifests; no
    /// digest keys ([`is_digest_key`]).
    pub keys: Vec<String>,
    /// Every stored manifest with this config.
    pub manifests: Vec<Digest>,
}

impl Found {
    /// Docker's image id: the config digest.
    pub fn id(&self) -> String {
        self.image.config_digest.to_string()
    }

    /// Docker's short id (12 hex digits).
    pub fn short_id(&self) -> &str {
        &self.image.config_digest.hex()[..12]
    }

    /// docker's dangling image: no tag names it (digest references may).
    pub fn dangling(&self) -> bool {
        !self.keys.iter().any(|k| !k.contains('@'))
    }
}

/// A container that uses an image, as [`Images::remove`] asks about it.
#[derive(Debug, Clone)]
pub struct User {
    /// The container's id.
    pub id: String,
    /// It runs (or is paused).
    pub running: bool,
}

/// Docker's short form of a store key (`docker.io/library/busybox:latest` -> `busybox:latest`).
pub fn familiar(key: &str) -> String {
    key.parse::<Reference>()
        .map(|r| r.familiar())
        .unwrap_or_else(|_| key.to_owned())
}

/// The image store. Blobs and unpacked layers are deleted only under the write side of
/// [`Images::gc_lock`], which every operation that is about to use an image it looked up
/// (container create, pull, load) holds for reading until the image is referenced by a
/// container record or a store key.
#[derive(Debug)]
pub struct Images {
    store: Store,
    gc: std::sync::Arc<tokio::sync::RwLock<()>>,
}

fn store_err(e: berth_image::StoreError) -> Error {
    match e {
        berth_image::StoreError::UnknownImage(n) => Error::NoSuchImage(n),
        berth_image::StoreError::Reference(r) => Error::BadParameter(r.to_string()),
        e => Error::internal("image store", e),
    }
}

/// Why an image cannot be deleted, worded as dockerd's `imageDeleteConflict`.
fn delete_conflict(short: &str, hard: bool, why: &str) -> Error {
    Error::Conflict(format!(
        "conflict: unable to delete {short} ({}) - {why}",
        if hard {
            "cannot be forced"
        } else {
            "must be forced"
        }
    ))
}

/// docker's `isSingleReference`: one tag, or digest references of one repository only (with
/// at most one tag of that same repository).
fn single_reference(keys: &[String]) -> bool {
    if keys.len() <= 1 {
        return keys.len() == 1;
    }
    let mut single: Option<&String> = None;
    let mut canonical = std::collections::BTreeSet::new();
    for k in keys {
        if k.contains('@') {
            canonical.insert(repo_of(k));
        } else if single.is_none() {
            single = Some(k);
        } else {
            return false;
        }
    }
    let single = single.unwrap_or(&keys[0]);
    canonical.len() == 1 && canonical.contains(&repo_of(single))
}

impl Images {
    /// Open the store at `root` (berth-image's layout; shared with `berth image`).
    pub fn open(root: &Path) -> Result<Self, Error> {
        Ok(Images {
            store: Store::open(root).map_err(|e| Error::internal("open the image store", e))?,
            gc: Default::default(),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The lock between the users of images and their deletion: hold its read side from
    /// looking an image up until a container record (or a store key) refers to it; rmi and
    /// prune take the write side before they delete blobs or layers.
    pub fn gc_lock(&self) -> std::sync::Arc<tokio::sync::RwLock<()>> {
        self.gc.clone()
    }

    /// Every image (by config digest) with its references, dangling ones included.
    pub fn all(&self) -> Result<Vec<Found>, Error> {
        let refs = self.store.refs().map_err(store_err)?;
        let mut by_manifest: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (k, d) in refs {
            by_manifest.entry(d).or_default().push(k);
        }
        let mut by_config: BTreeMap<Digest, Found> = BTreeMap::new();
        for (d, keys) in by_manifest {
            let image = match self.store.image(&d) {
                Ok(image) => image,
                Err(e) => {
                    tracing::warn!("image {d} ({keys:?}) is unreadable: {e}");
                    continue;
                }
            };
            let f = by_config
                .entry(image.config_digest.clone())
                .or_insert_with(|| Found {
                    key: None,
                    image,
                    keys: Vec::new(),
                    manifests: Vec::new(),
                });
            f.keys
                .extend(keys.into_iter().filter(|k| !is_digest_key(k)));
            f.keys.sort();
            f.manifests.push(d);
        }
        Ok(by_config.into_values().collect())
    }

    /// Find an image as dockerd does: a full id (`sha256:<config>`), else a reference
    /// (`busybox`, `busybox:1`, `name@sha256:<manifest>`), else a unique prefix of an id (with
    /// or without `sha256:`). Dangling images are found by id.
    pub fn lookup(&self, name: &str) -> Result<Found, Error> {
        let all = self.all()?;
        if name.len() == 71 && name.starts_with("sha256:") {
            if let Some(f) = all.iter().find(|f| f.id() == name) {
                return Ok(f.clone());
            }
        }
        if !name.starts_with("sha256:") {
            if let Ok(r) = name.parse::<Reference>() {
                let refs = self.store.refs().map_err(store_err)?;
                let key = r.to_string();
                let hit = match refs.get(&key) {
                    Some(d) => Some((key, d.clone())),
                    // `name@digest` where the digest names a manifest stored under a tag.
                    None => r.digest.as_ref().and_then(|want| {
                        refs.iter()
                            .find(|(k, v)| {
                                *v == want && !is_digest_key(k) && repo_of(k) == r.name()
                            })
                            .map(|(k, v)| (k.clone(), v.clone()))
                    }),
                };
                if let Some((key, manifest)) = hit {
                    if let Some(f) = all.iter().find(|f| f.manifests.contains(&manifest)) {
                        let image = self.store.image(&manifest).map_err(store_err)?;
                        return Ok(Found {
                            key: Some(key),
                            image,
                            ..f.clone()
                        });
                    }
                }
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits = all
                .into_iter()
                .filter(|f| f.image.config_digest.hex().starts_with(hex));
            if let (Some(f), None) = (hits.next(), hits.next()) {
                return Ok(f);
            }
        }
        Err(Error::NoSuchImage(name.to_owned()))
    }

    /// After an operation that set references (pull, load): every manifest that one of the
    /// keys named in `before` pointed at and that no key names any more is kept under its
    /// digest key (docker keeps the image whose tag moved to another as a dangling image), and
    /// digest keys of manifests that now have a name are dropped.
    pub fn keep_replaced(&self, before: &BTreeMap<String, Digest>) -> Result<(), Error> {
        self.store
            .edit_refs(|refs| {
                for (k, old) in before {
                    if is_digest_key(k) || refs.get(k).is_none_or(|now| now == old) {
                        continue;
                    }
                    if !refs.values().any(|d| d == old) {
                        refs.insert(old.to_string(), old.clone());
                    }
                }
                let named: std::collections::BTreeSet<Digest> = refs
                    .iter()
                    .filter(|(k, _)| !is_digest_key(k))
                    .map(|(_, d)| d.clone())
                    .collect();
                refs.retain(|k, d| !is_digest_key(k) || !named.contains(d));
            })
            .map_err(store_err)
    }

    /// Every reference now (for [`keep_replaced`](Self::keep_replaced)).
    pub fn refs(&self) -> Result<BTreeMap<String, Digest>, Error> {
        self.store.refs().map_err(store_err)
    }

    /// Load a docker-archive or OCI-layout tarball; returns docker's messages (`Loaded image:
    /// busybox:latest`, or `Loaded image ID: sha256:...`, after dockerd's "The image ... already
    /// exists, renaming the old one ..." for a name that named another image) and the ids of
    /// the images loaded. An image whose name moved to the loaded one stays, dangling.
    pub fn load(&self, tar: File) -> Result<(Vec<String>, Vec<String>), Error> {
        let before = self.refs()?;
        let loaded = berth_image::archive::load_tar(
            &self.store,
            io::BufReader::new(tar),
            &Default::default(),
        )
        .map_err(|e| Error::BadParameter(format!("loading the image archive: {}", chain(&e))))?;
        self.keep_replaced(&before)?;
        let mut out = Vec::new();
        let mut ids = Vec::new();
        for img in loaded {
            let image = self.store.image(&img.manifest).map_err(store_err)?;
            for n in &img.names {
                let old = before
                    .get(n)
                    .and_then(|d| self.store.image(d).ok())
                    .map(|i| i.config_digest);
                if let Some(old) = old.filter(|o| *o != image.config_digest) {
                    out.push(format!(
                        "The image {} already exists, renaming the old one with ID {old} to empty string",
                        familiar(n)
                    ));
                }
            }
            if img.names.is_empty() {
                out.push(format!("Loaded image ID: {}", image.config_digest));
            }
            for n in img.names {
                out.push(format!("Loaded image: {}", familiar(&n)));
            }
            ids.push(image.config_digest.to_string());
        }
        Ok((out, ids))
    }

    /// Point `repo:tag` at the image `source`; returns the image id and the familiar name of
    /// the tag (for docker's `tag` event). The image the tag named before stays, dangling if
    /// it has no other tag (as dockerd).
    pub fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<(String, String), Error> {
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
        let before = self.refs()?;
        let key = r.to_string();
        let manifest = found.image.manifest_digest.clone();
        self.store
            .edit_refs(|refs| {
                refs.insert(key, manifest);
            })
            .map_err(store_err)?;
        self.keep_replaced(&before)?;
        Ok((found.id(), r.familiar()))
    }

    /// Remove references as one step; a manifest left without any key is kept under its digest
    /// key (dangling) until [`delete`](Self::delete) or a prune removes it.
    fn untag(&self, keys: &[String]) -> Result<(), Error> {
        self.store
            .edit_refs(|refs| {
                for k in keys {
                    if let Some(d) = refs.remove(k) {
                        if !refs.values().any(|v| *v == d) {
                            refs.insert(d.to_string(), d);
                        }
                    }
                }
            })
            .map_err(store_err)
    }

    /// Delete an image: every key naming one of its manifests, then the blobs and layers no
    /// key uses any more. The caller holds the write side of [`gc_lock`](Self::gc_lock) and
    /// has checked that no container uses the image.
    fn delete(&self, f: &Found) -> Result<(), Error> {
        self.store
            .edit_refs(|refs| refs.retain(|_, d| !f.manifests.contains(d)))
            .map_err(store_err)?;
        self.store
            .prune()
            .map_err(|e| Error::internal("prune the image store", e))?;
        Ok(())
    }

    /// Remove an image as dockerd's `rmi` does; returns docker's list of
    /// `("Untagged"|"Deleted", name)`. By reference: the reference is untagged (409 when it is
    /// the image's only one and a container uses the image, unless `force`), and the image is
    /// deleted with its last reference unless a container uses it: then it stays, dangling. By
    /// id: 409 when it has references in several repositories (unless `force`), when a
    /// running container uses it (even with `force`), or a stopped one (unless `force`: then
    /// it is untagged and stays dangling while that container exists, where dockerd deletes
    /// the record and keeps the layers). `user` says which container uses an image id
    /// (a running one first). The caller holds the write side of [`gc_lock`](Self::gc_lock).
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        user: &dyn Fn(&str) -> Option<User>,
    ) -> Result<Vec<(&'static str, String)>, Error> {
        let found = self.lookup(name)?;
        let id = found.id();
        let short = found.short_id().to_owned();
        let mut out = Vec::new();
        let mut keys = found.keys.clone();
        let mut quiet = false;
        if let Some(key) = found.key.clone() {
            if !force && single_reference(&keys) {
                if let Some(c) = user(&id) {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {short}",
                        &c.id[..12.min(c.id.len())]
                    )));
                }
            }
            let mut gone = vec![key.clone()];
            keys.retain(|k| *k != key);
            if !key.contains('@') {
                let repo = repo_of(&key);
                if !keys.iter().any(|k| !k.contains('@') && repo_of(k) == repo) {
                    let (same, rest): (Vec<String>, Vec<String>) =
                        keys.into_iter().partition(|k| repo_of(k) == repo);
                    gone.extend(same);
                    keys = rest;
                }
            }
            self.untag(&gone)?;
            out.extend(gone.iter().map(|k| ("Untagged", familiar(k))));
            if !keys.is_empty() {
                return Ok(out);
            }
            quiet = true;
        } else if single_reference(&keys) {
            match user(&id) {
                Some(c) if c.running => {
                    return Err(delete_conflict(
                        &short,
                        true,
                        &format!(
                            "image is being used by running container {}",
                            &c.id[..12.min(c.id.len())]
                        ),
                    ))
                }
                Some(c) if !force => {
                    return Err(delete_conflict(
                        &short,
                        false,
                        &format!(
                            "image is being used by stopped container {}",
                            &c.id[..12.min(c.id.len())]
                        ),
                    ))
                }
                _ => {}
            }
            self.untag(&keys)?;
            out.extend(keys.drain(..).map(|k| ("Untagged", familiar(&k))));
        }
        // dockerd's imageDeleteHelper.
        let conflict = match user(&id) {
            Some(c) if c.running => Some((
                true,
                true,
                format!(
                    "image is being used by running container {}",
                    &c.id[..12.min(c.id.len())]
                ),
            )),
            _ if !force && !keys.is_empty() => Some((
                false,
                false,
                "image is referenced in multiple repositories".to_owned(),
            )),
            Some(c) if !force => Some((
                false,
                true,
                format!(
                    "image is being used by stopped container {}",
                    &c.id[..12.min(c.id.len())]
                ),
            )),
            // Forced past a stopped container: its layers are the image's, so the image stays
            // (dangling) until that container is gone.
            Some(_) => {
                self.untag(&keys)?;
                out.extend(keys.iter().map(|k| ("Untagged", familiar(k))));
                return Ok(out);
            }
            None => None,
        };
        if let Some((hard, used, why)) = conflict {
            if quiet && used {
                // The last reference went; the image stays, dangling, for its container.
                return Ok(out);
            }
            return Err(delete_conflict(&short, hard, &why));
        }
        out.extend(keys.iter().map(|k| ("Untagged", familiar(k))));
        self.delete(&found)?;
        out.push(("Deleted", id));
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
