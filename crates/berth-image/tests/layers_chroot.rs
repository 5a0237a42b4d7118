//! Layers as containerd, docker and umoci unpack them (Berth issue 15, section "Layers"):
//! - chroot semantics: absolute member names and absolute hard-link targets mean "inside the
//!   rootfs", and a lower layer's `var/run -> /run` takes an upper `var/run/app.pid` to
//!   `run/app.pid` (compared with `umoci unpack`); escapes stay refused (tests/hostile.rs,
//!   tests/escapes.rs);
//! - every compression in every framing: zstd skippable frames, several zstd frames,
//!   multi-member gzip, mislabelled media types (the magic number wins), encrypted layers
//!   refused by their media type;
//! - every path that assembles a rootfs checks the diff ids (flattened unpack after loading an
//!   OCI layout, an OCI tar or a docker archive);
//! - a hard link to a file of an earlier layer: pull (the streamed per-layer unpack) and the
//!   flattened unpack both succeed; only the overlay unpack, whose layer directories stand
//!   alone, refuses it by name.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::archive;
use berth_image::bundle::{create_bundle, remove_bundle_mount, BundleOptions};
use berth_image::layer::LayerError;
use berth_image::{Digest, Store, UnpackError};
use common::*;

/// Type, mode, size, content digest and link target of an entry.
type Node = (String, u32, u64, Option<Digest>, Option<String>);

/// Every entry under `root`, by relative path.
fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                "other"
            };
            out.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                (
                    kind.to_owned(),
                    m.mode() & 0o7777,
                    if ft.is_file() { m.size() } else { 0 },
                    ft.is_file().then(|| Digest::of(&fs::read(&p).unwrap())),
                    ft.is_symlink()
                        .then(|| fs::read_link(&p).unwrap().display().to_string()),
                ),
            );
        }
    }
    out
}

/// The [`tree`] of `img` unpacked as an overlay bundle in `dir/ov`, unmounted after; checks
/// that nothing stays mounted under `dir`.
fn overlay_tree(store: &Store, img: &berth_image::Image, dir: &Path) -> BTreeMap<String, Node> {
    let ov = dir.join("ov");
    let o = BundleOptions {
        overlay: true,
        ..Default::default()
    };
    create_bundle(store, img, &ov, &o, &|_| {}).unwrap();
    let guard = OverlayGuard(ov.clone());
    let merged = tree(&ov.join("rootfs"));
    remove_bundle_mount(&ov).unwrap();
    drop(guard);
    assert_eq!(mounts_under(dir), Vec::<String>::new());
    merged
}

/// Load `layers` (compressed as `compress` says) as an OCI layout into a fresh store.
fn load_layout(
    t: &Path,
    layers: &[Vec<u8>],
    compress: &[&str],
) -> (Store, berth_image::Image, PathBuf) {
    let layout = t.join("layout");
    oci_layout(&layout, "t", layers, compress, serde_json::json!({}));
    let store = Store::open(t.join("store")).unwrap();
    let d = archive::load_path(&store, &layout, &Default::default()).unwrap()[0]
        .manifest
        .clone();
    let img = store.image(&d).unwrap();
    (store, img, layout)
}

/// `umoci unpack` of the layout's tag `t` into `dest`; returns its rootfs.
fn umoci(layout: &Path, dest: &Path) -> PathBuf {
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(dest)
        .output()
        .expect("running umoci");
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dest.join("rootfs")
}

fn flatten(store: &Store, img: &berth_image::Image, dest: &Path) -> Result<(), UnpackError> {
    store.flatten(img, dest, &|_| {})
}

#[test]
fn absolute_names_and_hard_links_mean_inside_the_rootfs() {
    assert!(is_root(), "umoci unpack and the comparison need root");
    // As distroless images are written: every name absolute, hard links by absolute target.
    let layer = tar_of(|b| {
        dir(b, "/");
        dir(b, "/usr");
        dir(b, "/usr/bin");
        file(b, "/usr/bin/tool", b"#!/bin/sh\necho tool\n");
        hardlink(b, "/usr/bin/tool-alias", "/usr/bin/tool");
        symlink(b, "/usr/bin/abs", "/usr/bin/tool");
        dir(b, "/etc/");
        file(b, "//etc//passwd", b"root:x:0:0::/root:/bin/sh\n");
        file(b, "/etc/../etc/hostname", b"distroless\n");
    });
    let t = tempfile::tempdir().unwrap();
    let (store, img, layout) = load_layout(t.path(), &[layer], &["gzip"]);
    let rootfs = t.path().join("rootfs");
    flatten(&store, &img, &rootfs).unwrap();
    let tool = rootfs.join("usr/bin/tool");
    assert_eq!(fs::read(&tool).unwrap(), b"#!/bin/sh\necho tool\n");
    let alias = fs::metadata(rootfs.join("usr/bin/tool-alias")).unwrap();
    assert_eq!(alias.ino(), fs::metadata(&tool).unwrap().ino(), "one inode");
    assert_eq!(
        fs::read_link(rootfs.join("usr/bin/abs")).unwrap(),
        Path::new("/usr/bin/tool")
    );
    assert_eq!(
        fs::read(rootfs.join("etc/hostname")).unwrap(),
        b"distroless\n"
    );
    assert!(!Path::new("/usr/bin/tool-alias").exists());

    let theirs = umoci(&layout, &t.path().join("umoci"));
    assert_eq!(tree(&rootfs), tree(&theirs), "berth and umoci differ");

    // The layer store (overlay) gives the same tree.
    assert_eq!(overlay_tree(&store, &img, t.path()), tree(&rootfs));
}

#[test]
fn upper_entries_under_a_lower_symlink_resolve_inside_the_rootfs() {
    assert!(is_root(), "umoci unpack and the comparison need root");
    // Every Debian image: var/run -> /run. An upper layer writes var/run/app.pid (and a
    // whiteout through the link); docker and umoci resolve the link inside the rootfs.
    let lower = tar_of(|b| {
        dir(b, "run");
        file(b, "run/old.pid", b"1\n");
        dir(b, "var");
        symlink(b, "var/run", "/run");
        symlink(b, "var/lock", "../run/lock");
        dir(b, "run/lock");
    });
    let upper = tar_of(|b| {
        file(b, "var/run/app.pid", b"42\n");
        file(b, "var/run/.wh.old.pid", b"");
        file(b, "var/lock/app.lock", b"");
        hardlink(b, "var/run/app.pid.link", "/var/run/app.pid");
    });
    let t = tempfile::tempdir().unwrap();
    let (store, img, layout) = load_layout(t.path(), &[lower, upper], &["gzip", "gzip"]);
    let rootfs = t.path().join("rootfs");
    flatten(&store, &img, &rootfs).unwrap();
    assert_eq!(fs::read(rootfs.join("run/app.pid")).unwrap(), b"42\n");
    assert!(!rootfs.join("run/old.pid").exists());
    assert!(rootfs.join("run/lock/app.lock").is_file());
    assert!(fs::symlink_metadata(rootfs.join("var/run"))
        .unwrap()
        .is_symlink());
    assert!(fs::symlink_metadata(rootfs.join("var/lock"))
        .unwrap()
        .is_symlink());
    assert_eq!(
        fs::metadata(rootfs.join("run/app.pid.link")).unwrap().ino(),
        fs::metadata(rootfs.join("run/app.pid")).unwrap().ino()
    );
    // The host's /run is untouched.
    assert!(!Path::new("/run/app.pid").exists());
    let theirs = umoci(&layout, &t.path().join("umoci"));
    assert_eq!(tree(&rootfs), tree(&theirs), "berth and umoci differ");
    // The overlay unpack follows the lower link too (the upper layer is applied over it).
    assert_eq!(
        overlay_tree(&store, &img, t.path()),
        tree(&rootfs),
        "overlay and flattened differ"
    );
}

/// A zstd skippable frame (RFC 8878 3.1.2) with `payload`.
fn skippable(nibble: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x50 | nibble, 0x2a, 0x4d, 0x18];
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// A one-layer OCI layout whose layer blob is `blob` (typed `media_type`) for the tar
/// `layer`.
fn layout_with_blob(dir: &Path, layer: &[u8], blob: &[u8], media_type: &str) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = Digest::of(data);
        fs::write(blobs.join(d.hex()), data).unwrap();
        d
    };
    let ld = put(blob);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(layer)]},
    }))
    .unwrap();
    let cd = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": media_type, "digest": ld, "size": blob.len()}],
    }))
    .unwrap();
    let md = put(&manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(),
         "annotations": {"org.opencontainers.image.ref.name": "t"}}]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

#[test]
fn every_compression_in_every_framing() {
    let layer = tar_of(|b| {
        dir(b, "etc");
        file(b, "etc/os-release", &b"ID=berth\n".repeat(5000));
        file(
            b,
            "big",
            &(0..300_000u32)
                .flat_map(|i| i.to_le_bytes())
                .collect::<Vec<_>>(),
        );
    });
    let half = layer.len() / 2;
    let (a, b) = layer.split_at(half);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    // zstd beginning with a skippable frame (seekable zstd, estargz-like metadata).
    let mut z = skippable(0, b"berth metadata");
    z.extend(zstd(&layer));
    cases.push(("zstd after a skippable frame", z, ZSTD));
    // Several zstd frames with skippable frames between and after them.
    let mut z = zstd(a);
    z.extend(skippable(0xf, &[7; 100]));
    z.extend(zstd(b));
    z.extend(skippable(3, b""));
    cases.push(("zstd frames and skippable frames", z, ZSTD));
    // Multi-member gzip (pigz, concatenated chunks).
    let mut g = gzip(a);
    g.extend(gzip(b));
    cases.push(("multi-member gzip", g.clone(), GZIP));
    cases.push(("multi-member gzip, docker type", g, DOCKER_GZIP));
    // Mislabelled: the content's magic number decides, as docker and containerd do.
    cases.push(("zstd typed gzip", zstd(&layer), GZIP));
    cases.push(("plain tar typed gzip", layer.clone(), DOCKER_GZIP));
    cases.push((
        "gzip typed tar",
        gzip(&layer),
        "application/vnd.oci.image.layer.v1.tar",
    ));
    for (what, blob, mt) in cases {
        let t = tempfile::tempdir().unwrap();
        let layout = t.path().join("layout");
        layout_with_blob(&layout, &layer, &blob, mt);
        let store = Store::open(t.path().join("store")).unwrap();
        let d = archive::load_path(&store, &layout, &Default::default()).unwrap()[0]
            .manifest
            .clone();
        let img = store.image(&d).unwrap();
        let rootfs = t.path().join("rootfs");
        flatten(&store, &img, &rootfs).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(
            fs::read(rootfs.join("etc/os-release")).unwrap(),
            b"ID=berth\n".repeat(5000),
            "{what}"
        );
        assert_eq!(fs::metadata(rootfs.join("big")).unwrap().len(), 1_200_000);
        // The per-layer unpack (pull, overlay) reads the same.
        let dirs = store
            .unpack_layers(&img, &|_| {})
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(
            fs::metadata(dirs[0].join("big")).unwrap().len(),
            1_200_000,
            "{what}"
        );
    }
    // What no decompressor here reads is refused by its media type, naming it.
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let enc = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted";
    layout_with_blob(&layout, &layer, &gzip(&layer), enc);
    let store = Store::open(t.path().join("store")).unwrap();
    let d = archive::load_path(&store, &layout, &Default::default()).unwrap()[0]
        .manifest
        .clone();
    let img = store.image(&d).unwrap();
    let err = flatten(&store, &img, &t.path().join("rootfs")).unwrap_err();
    assert!(
        matches!(&err, UnpackError::Layer { source: LayerError::MediaType { media_type, .. }, .. } if media_type == enc),
        "{err:?}"
    );
}

#[test]
fn every_rootfs_path_checks_the_diff_ids() {
    // Blobs that match their digests, but a config whose diff_id does not match the layer:
    // containerd refuses to build a rootfs, for every way the image arrived.
    let good = tar_of(|b| file(b, "f", b"real content"));
    let other = tar_of(|b| file(b, "f", b"what the config promised"));
    let t = tempfile::tempdir().unwrap();
    let blob = gzip(&good);
    let ld = Digest::of(&blob);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&other)]},
    }))
    .unwrap();
    // An OCI layout (directory and tar) ...
    let layout = t.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join(ld.hex()), &blob).unwrap();
    let cd = Digest::of(&config);
    fs::write(blobs.join(cd.hex()), &config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": GZIP, "digest": ld, "size": blob.len()}],
    }))
    .unwrap();
    let md = Digest::of(&manifest);
    fs::write(blobs.join(md.hex()), &manifest).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len()}]});
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let oci_tar = t.path().join("oci.tar");
    fs::write(&oci_tar, tar_dir(&layout)).unwrap();
    // ... and a docker archive (plain layer, so the blob digest is the real diff id).
    let docker = t.path().join("docker.tar");
    let dconfig = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&other)]},
    }))
    .unwrap();
    let manifest = serde_json::json!([{"Config": "c.json", "RepoTags": ["localhost/d:1"], "Layers": ["l/layer.tar"]}]);
    fs::write(
        &docker,
        tar_of(|b| {
            file(b, "l/layer.tar", &good);
            file(b, "c.json", &dconfig);
            file(b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
        }),
    )
    .unwrap();
    for src in [layout, oci_tar, docker] {
        let t2 = tempfile::tempdir().unwrap();
        let store = Store::open(t2.path().join("store")).unwrap();
        let d = archive::load_path(&store, &src, &Default::default()).unwrap()[0]
            .manifest
            .clone();
        let img = store.image(&d).unwrap();
        let rootfs = t2.path().join("rootfs");
        let err = flatten(&store, &img, &rootfs).unwrap_err();
        assert!(
            matches!(
                &err,
                UnpackError::Layer {
                    source: LayerError::Verify(_),
                    ..
                }
            ),
            "{}: {err:?}",
            src.display()
        );
        assert!(!rootfs.exists());
        let bundle = t2.path().join("bundle");
        assert!(create_bundle(&store, &img, &bundle, &BundleOptions::default(), &|_| {}).is_err());
        assert!(!bundle.join("rootfs").exists());
        let err = store.unpack_layers(&img, &|_| {}).unwrap_err();
        assert!(matches!(
            &err,
            UnpackError::Layer {
                source: LayerError::Verify(_),
                ..
            }
        ));
    }
}

#[test]
fn hard_link_to_an_earlier_layer_one_behaviour() {
    let lower = tar_of(|b| {
        dir(b, "a");
        file(b, "a/file", b"shared content");
    });
    let upper = tar_of(|b| {
        dir(b, "b");
        hardlink(b, "b/link", "a/file");
        file(b, "b/own", b"own");
    });
    let t = tempfile::tempdir().unwrap();
    let (store, img, layout) = load_layout(t.path(), &[lower, upper.clone()], &["gzip", "gzip"]);
    // The flattened unpack (after load or `pull --no-unpack`) links to the lower file.
    let rootfs = t.path().join("rootfs");
    flatten(&store, &img, &rootfs).unwrap();
    assert_eq!(fs::read(rootfs.join("b/link")).unwrap(), b"shared content");
    assert_eq!(
        fs::metadata(rootfs.join("b/link")).unwrap().ino(),
        fs::metadata(rootfs.join("a/file")).unwrap().ino()
    );
    assert!(is_root(), "umoci unpack and overlay mounts need root");
    let theirs = umoci(&layout, &t.path().join("umoci"));
    assert_eq!(tree(&rootfs), tree(&theirs), "berth and umoci differ");
    let layers = img.layers().unwrap();
    // The streamed per-layer unpack that `pull` runs succeeds and stores the whole blob,
    // verified, without a layer directory of its own.
    let t2 = tempfile::tempdir().unwrap();
    let fresh = Store::open(t2.path().join("store")).unwrap();
    let blob = fs::read(store.blob_path(&layers[1].digest)).unwrap();
    fresh
        .unpack_layer_stream(&layers[1], &blob[..])
        .expect("the pull path must not fail on the layer");
    assert!(fresh.has_blob(&layers[1].digest));
    assert!(!fresh.layer_path(&layers[1].diff_id).exists());
    assert_eq!(fs::read_dir(fresh.root().join("tmp")).unwrap().count(), 0);
    // A damaged stream is still refused after the hard link (the whole blob is verified).
    let mut bad = blob.clone();
    let n = bad.len();
    bad[n - 6] ^= 0x55;
    let t3 = tempfile::tempdir().unwrap();
    let fresh = Store::open(t3.path().join("store")).unwrap();
    assert!(fresh.unpack_layer_stream(&layers[1], &bad[..]).is_err());
    assert!(!fresh.has_blob(&layers[1].digest));
    // Re-pulling with the blob present (unpack_layer from the store) succeeds the same way.
    store.unpack_layer(&layers[1], &|_| {}).unwrap();
    // The overlay unpack builds the layer over the one below it (a chain directory), and
    // shows the flattened tree, the link sharing the file's inode.
    let dirs = store.unpack_layers(&img, &|_| {}).unwrap();
    assert!(dirs[1].ends_with(format!(
        "chain-{}",
        berth_image::store::chain_id(Some(&layers[0].diff_id), &layers[1].diff_id).hex()
    )));
    let ov = t.path().join("ov");
    let o = BundleOptions {
        overlay: true,
        ..Default::default()
    };
    create_bundle(&store, &img, &ov, &o, &|_| {}).unwrap();
    let guard = OverlayGuard(ov.clone());
    let merged = tree(&ov.join("rootfs"));
    let same = fs::metadata(ov.join("rootfs/b/link")).unwrap().ino()
        == fs::metadata(ov.join("rootfs/a/file")).unwrap().ino();
    remove_bundle_mount(&ov).unwrap();
    drop(guard);
    assert_eq!(mounts_under(t.path()), Vec::<String>::new());
    assert_eq!(merged, tree(&rootfs));
    assert!(same, "the hard link is one inode in the overlay too");
    // A hard link to a file of its own layer is fine everywhere.
    let own = tar_of(|b| {
        file(b, "x", b"x");
        hardlink(b, "y", "/x");
    });
    let t4 = tempfile::tempdir().unwrap();
    let (store, img, _) = load_layout(t4.path(), &[own], &["gzip"]);
    let dirs = store.unpack_layers(&img, &|_| {}).unwrap();
    assert_eq!(fs::read(dirs[0].join("y")).unwrap(), b"x");
    let _ = std::io::stdout().flush();
}

// ---------------------------------------------------------------------------------------
// Differential test: random layer stacks, unpacked flattened, mounted as overlayfs over the
// per-layer directories, and unpacked by umoci, compared entry by entry.
//
// The generator writes layers as docker does: every entry's parent directories have their
// own entries in the same layer, an opaque marker comes right after its directory's entry,
// and hard links name files of their own layer. Within that, it mixes files (modes with
// setuid/setgid, owners, xattrs), directories (sticky, private), symlinks, FIFOs, hard links,
// whiteouts of anything seen before, opaque directories, type changes, entries recreated in
// the layer that whited them out, and repeated layers.
//
// `make test` runs the fixed seeds below; set BERTH_LAYER_DIFF_SEEDS=N to run N more (by
// hand or in `make bench`), BERTH_LAYER_DIFF_SEED=S to replay one.

/// xorshift64*: small, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// One operation of a generated layer.
#[derive(Clone, Debug)]
enum Op {
    Dir(String, u32),
    File {
        path: String,
        mode: u32,
        uid: u64,
        len: usize,
        byte: u8,
        xattr: bool,
        mtime: u64,
    },
    Symlink(String, &'static str),
    Fifo(String),
    Hardlink(String, String),
    Whiteout(String),
    Opaque(String),
}

fn parent_of(p: &str) -> Option<&str> {
    p.rsplit_once('/').map(|(a, _)| a)
}

fn ancestors(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = p;
    while let Some(parent) = parent_of(cur) {
        out.push(parent.to_owned());
        cur = parent;
    }
    out.reverse();
    out
}

fn is_under(p: &str, dir: &str) -> bool {
    p == dir || p.starts_with(&format!("{dir}/"))
}

/// The flattened tree (path -> is a directory) and, for the layer being applied, what the
/// layer's own directory (as unpacked for overlayfs) holds: the directories and other entries
/// it wrote, its whiteout devices, its opaque directories, and its regular files (hard-link
/// targets).
#[derive(Clone, Default)]
struct Model {
    tree: BTreeMap<String, bool>,
    lower: BTreeMap<String, bool>,
    layer_dirs: std::collections::BTreeSet<String>,
    layer_nondir: std::collections::BTreeSet<String>,
    whiteouts: std::collections::BTreeSet<String>,
    opaque: std::collections::BTreeSet<String>,
    files: std::collections::BTreeSet<String>,
    /// Regular files of the flattened tree (targets of hard links into lower layers).
    regular: std::collections::BTreeSet<String>,
}

impl Model {
    fn start_layer(&mut self) {
        self.lower = self.tree.clone();
        self.layer_dirs.clear();
        self.layer_nondir.clear();
        self.whiteouts.clear();
        self.opaque.clear();
        self.files.clear();
    }

    /// Remove `p` (unless `keep_self`) and everything below it, from the tree and from what
    /// this layer wrote.
    fn remove_under(&mut self, p: &str, keep_self: bool) {
        let keep = |k: &String| !(is_under(k, p) && !(keep_self && k == p));
        self.tree.retain(|k, _| keep(k));
        self.layer_dirs.retain(|k| keep(k));
        self.layer_nondir.retain(|k| keep(k));
        self.whiteouts.retain(|k| keep(k));
        self.files.retain(|k| keep(k));
        self.regular.retain(|k| keep(k));
    }

    /// Whether a whiteout of `p` is one overlayfs can carry. Where it becomes a whiteout
    /// device, its directory must be merged with a lower one (or be the root), or lie under
    /// an opaque directory of this layer (where berth drops it): in a directory only this
    /// layer has, overlayfs lists the device itself (docker's overlay2 too), so generated
    /// layers, like docker's, never hold one there.
    fn whiteout_ok(&self, p: &str) -> bool {
        if self.layer_dirs.contains(p) || self.layer_nondir.contains(p) {
            return true;
        }
        let q = parent_of(p).unwrap_or("");
        let under_opaque = std::iter::once(q.to_owned())
            .chain(ancestors(q))
            .any(|a| self.opaque.contains(&a));
        q.is_empty()
            || under_opaque
            || (self.lower.get(q) == Some(&true) && self.tree.get(q) == Some(&true))
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Dir(p, _) => {
                if self.layer_nondir.contains(p) || self.whiteouts.contains(p) {
                    // berth makes the directory opaque (it replaces what hid the lower one).
                    self.opaque.insert(p.clone());
                }
                if self.tree.get(p) != Some(&true) {
                    self.remove_under(p, false);
                }
                self.layer_nondir.remove(p);
                self.whiteouts.remove(p);
                self.tree.insert(p.clone(), true);
                self.layer_dirs.insert(p.clone());
            }
            Op::File { path: p, .. } | Op::Hardlink(p, _) => {
                self.remove_under(p, false);
                self.tree.insert(p.clone(), false);
                self.layer_nondir.insert(p.clone());
                self.files.insert(p.clone());
                self.regular.insert(p.clone());
            }
            Op::Symlink(p, _) | Op::Fifo(p) => {
                self.remove_under(p, false);
                self.tree.insert(p.clone(), false);
                self.layer_nondir.insert(p.clone());
            }
            Op::Whiteout(p) => {
                // Only lower content goes (image-spec: a whiteout never hides what its own
                // layer wrote).
                if self.layer_nondir.contains(p) {
                } else if self.layer_dirs.contains(p) {
                    self.opaque.insert(p.clone());
                    let below = format!("{p}/");
                    let written: Vec<String> = self
                        .layer_dirs
                        .iter()
                        .chain(self.layer_nondir.iter())
                        .filter(|k| k.starts_with(&below))
                        .cloned()
                        .collect();
                    self.tree
                        .retain(|k, _| !k.starts_with(&below) || written.contains(k));
                    self.regular
                        .retain(|k| !k.starts_with(&below) || written.contains(k));
                } else {
                    self.remove_under(p, false);
                    self.whiteouts.insert(p.clone());
                }
            }
            Op::Opaque(p) => {
                self.remove_under(p, true);
                self.opaque.insert(p.clone());
            }
        }
    }
}

fn write_op(b: &mut tar::Builder<Vec<u8>>, op: &Op) {
    match op {
        Op::Dir(p, mode) => entry(b, p, tar::EntryType::Directory, None, b"", *mode),
        Op::File {
            path,
            mode,
            uid,
            len,
            byte,
            xattr,
            mtime,
        } => {
            if *xattr {
                b.append_pax_extensions([("SCHILY.xattr.user.berth", &b"v"[..])])
                    .unwrap();
            }
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_path(path).unwrap();
            h.set_mode(*mode);
            h.set_uid(*uid);
            h.set_gid(*uid);
            h.set_mtime(*mtime);
            h.set_size(*len as u64);
            h.set_cksum();
            b.append(&h, &vec![*byte; *len][..]).unwrap();
        }
        Op::Symlink(p, t) => symlink(b, p, t),
        Op::Fifo(p) => entry(b, p, tar::EntryType::Fifo, None, b"", 0o640),
        Op::Hardlink(p, t) => hardlink(b, p, t),
        Op::Whiteout(p) => {
            let (dir, name) = match p.rsplit_once('/') {
                Some((d, n)) => (format!("{d}/"), n),
                None => (String::new(), p.as_str()),
            };
            file(b, &format!("{dir}.wh.{name}"), b"");
        }
        Op::Opaque(p) => file(b, &format!("{p}/.wh..wh..opq"), b""),
    }
}

/// One layer being generated: its operations, checked against the model as they are added.
struct LayerGen<'r> {
    rng: &'r mut Rng,
    model: &'r mut Model,
    ops: Vec<Op>,
    /// Written as tar tools (not docker) write layers: a parent directory that already
    /// exists gets no entry of its own, so the layer cannot stand alone.
    tar_style: bool,
    /// Whether it hard-links to a file of a lower layer.
    cross_link: bool,
}

impl LayerGen<'_> {
    fn push(&mut self, op: Op) {
        self.model.apply(&op);
        self.ops.push(op);
    }

    /// Directory entries for the parents of `p` not yet written by this layer (as docker
    /// writes them).
    fn parents(&mut self, p: &str) {
        for d in ancestors(p) {
            let exists = self.model.tree.get(&d) == Some(&true);
            if !(self.model.layer_dirs.contains(&d) || self.tar_style && exists) {
                self.push(Op::Dir(d, 0o755));
            }
        }
    }

    fn file(&mut self, p: &str) {
        self.parents(p);
        let op = Op::File {
            path: p.to_owned(),
            mode: *self.rng.pick(&[0o644, 0o600, 0o755, 0o4755, 0o2750, 0o444]),
            uid: *self.rng.pick(&[0u64, 0, 1000, 65534]),
            len: self.rng.below(3000),
            byte: self.rng.below(256) as u8,
            xattr: self.rng.chance(20),
            mtime: 1_600_000_000 + self.rng.below(1000) as u64,
        };
        self.push(op);
    }

    fn dir(&mut self, p: &str) {
        self.parents(p);
        let mode = *self.rng.pick(&[0o755, 0o700, 0o1777, 0o750]);
        self.push(Op::Dir(p.to_owned(), mode));
    }

    fn opaque(&mut self, p: &str) {
        // A directory entry, then its marker, before any child of this layer (docker's
        // order; umoci applies the marker where it stands).
        let under = format!("{p}/");
        if self.model.layer_dirs.iter().any(|d| d.starts_with(&under))
            || self
                .model
                .layer_nondir
                .iter()
                .any(|d| d.starts_with(&under))
        {
            return;
        }
        self.dir(p);
        self.push(Op::Opaque(p.to_owned()));
    }

    fn symlink(&mut self, p: &str) {
        self.parents(p);
        let t = *self
            .rng
            .pick(&["a", "../b", "/a/b", "c/d", "/nowhere", "."]);
        self.push(Op::Symlink(p.to_owned(), t));
    }

    fn fifo(&mut self, p: &str) {
        self.parents(p);
        self.push(Op::Fifo(p.to_owned()));
    }

    fn hardlink(&mut self, p: &str) {
        // A file of this layer, or (a quarter of the time) of a lower one.
        let pool = if self.rng.chance(25) {
            &self.model.regular
        } else {
            &self.model.files
        };
        let targets: Vec<String> = pool
            .iter()
            .filter(|f| !is_under(f, p) && !ancestors(p).contains(f))
            .cloned()
            .collect();
        if targets.is_empty() {
            return;
        }
        let t = self.rng.pick(&targets).clone();
        self.parents(p);
        if !self.model.regular.contains(&t) {
            return;
        }
        self.cross_link |= !self.model.files.contains(&t);
        let target = if self.rng.chance(50) {
            format!("/{t}")
        } else {
            t
        };
        self.push(Op::Hardlink(p.to_owned(), target));
    }

    fn whiteout(&mut self, p: &str) -> bool {
        self.parents(p);
        if !self.model.whiteout_ok(p) {
            return false;
        }
        self.push(Op::Whiteout(p.to_owned()));
        true
    }
}

/// A random path of one to three components over a small name space.
fn random_path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(3);
    (0..depth)
        .map(|_| *rng.pick(&["a", "b", "c", "d"]))
        .collect::<Vec<_>>()
        .join("/")
}

/// A random stack of layers (tar bytes) and a description of each, for failure messages.
fn random_stack(seed: u64) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut model = Model::default();
    let mut layers: Vec<Vec<Op>> = Vec::new();
    let mut descs: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut repeatable: Vec<bool> = Vec::new();
    let count = 2 + rng.below(4);
    while layers.len() < count {
        if !layers.is_empty() && rng.chance(15) {
            // Repeat an earlier layer, if its whiteouts still sit in merged directories.
            let i = rng.below(layers.len());
            if !repeatable[i] {
                continue;
            }
            let mut m = model.clone();
            m.start_layer();
            let ok = layers[i].iter().all(|op| {
                let fine = !matches!(op, Op::Whiteout(p) if !m.whiteout_ok(p));
                m.apply(op);
                fine
            });
            if ok {
                model = m;
                repeatable.push(true);
                layers.push(layers[i].clone());
                descs.push(format!("repeat of layer {i}"));
            }
            continue;
        }
        model.start_layer();
        let tar_style = rng.chance(30);
        let mut g = LayerGen {
            rng: &mut rng,
            model: &mut model,
            ops: Vec::new(),
            tar_style,
            cross_link: false,
        };
        let n = 2 + g.rng.below(12);
        for _ in 0..n {
            let p = if !seen.is_empty() && g.rng.chance(50) {
                g.rng.pick(&seen).clone()
            } else {
                random_path(g.rng)
            };
            match g.rng.below(100) {
                0..=29 => g.file(&p),
                30..=44 => g.dir(&p),
                45..=54 => g.symlink(&p),
                55..=59 => g.fifo(&p),
                60..=69 => g.hardlink(&p),
                70..=84 => {
                    g.whiteout(&p);
                }
                85..=91 => g.opaque(&p),
                _ => {
                    // Whiteout, then recreate in the same layer (a file, or a directory with
                    // a child).
                    if g.whiteout(&p) {
                        if g.rng.chance(50) {
                            g.file(&p);
                        } else {
                            g.dir(&p);
                            g.file(&format!("{p}/new"));
                        }
                    }
                }
            }
            seen.push(p);
        }
        let ops = std::mem::take(&mut g.ops);
        // Layers that depend on what lies below are not repeated (their lower state changes).
        repeatable.push(!tar_style && !g.cross_link);
        descs.push(format!(
            "{}{ops:?}",
            if tar_style { "(tar-style) " } else { "" }
        ));
        layers.push(ops);
    }
    let tars = layers
        .iter()
        .map(|ops| {
            let mut b = tar::Builder::new(Vec::new());
            for op in ops {
                write_op(&mut b, op);
            }
            b.into_inner().unwrap()
        })
        .collect();
    (tars, descs)
}

/// Everything compared of one entry.
#[derive(Debug, PartialEq)]
struct Full {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    content: Option<Digest>,
    link: Option<String>,
    mtime: Option<i64>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn full_tree(root: &Path) -> BTreeMap<String, Full> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) => {
                let rel = d.strip_prefix(root).unwrap().display().to_string();
                out.insert(
                    format!("{rel} (unreadable: {e})"),
                    Full {
                        kind: "error",
                        mode: 0,
                        uid: 0,
                        gid: 0,
                        size: 0,
                        content: None,
                        link: None,
                        mtime: None,
                        xattrs: Vec::new(),
                    },
                );
                continue;
            }
        };
        for e in rd {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            let ft = m.file_type();
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_fifo() {
                "fifo"
            } else if ft.is_file() {
                "file"
            } else {
                "other"
            };
            let mut xattrs = Vec::new();
            let mut names = vec![0u8; 4096];
            let n = rustix::fs::llistxattr(&p, &mut names[..]).unwrap_or(0);
            for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
                let name = String::from_utf8_lossy(name).into_owned();
                if name.starts_with("trusted.overlay.") {
                    continue;
                }
                let mut v = vec![0u8; 4096];
                if let Ok(k) = rustix::fs::lgetxattr(&p, name.as_str(), &mut v[..]) {
                    xattrs.push((name, v[..k].to_vec()));
                }
            }
            xattrs.sort();
            out.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                Full {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if ft.is_file() { m.size() } else { 0 },
                    content: ft.is_file().then(|| Digest::of(&fs::read(&p).unwrap())),
                    link: ft
                        .is_symlink()
                        .then(|| fs::read_link(&p).unwrap().display().to_string()),
                    mtime: (!ft.is_dir()).then(|| m.mtime()),
                    xattrs,
                },
            );
        }
    }
    out
}

fn diff_trees(a: &BTreeMap<String, Full>, b: &BTreeMap<String, Full>) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => None,
            (x, y) => Some(format!("{k}: {x:?} vs {y:?}")),
        })
        .collect()
}

fn run_seed(seed: u64) -> Result<(), String> {
    let (layers, descs) = random_stack(seed);
    compare_unpacks(&layers, &descs)
}

/// Unpack `layers` flattened, as an overlay mount and with umoci; compare the three trees.
fn compare_unpacks(layers: &[Vec<u8>], descs: &[String]) -> Result<(), String> {
    let describe = || {
        descs
            .iter()
            .enumerate()
            .map(|(i, ops)| format!("  layer {i}: {ops}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let t = tempfile::tempdir().unwrap();
    let (store, img, layout) = load_layout(t.path(), layers, &vec!["gzip"; layers.len()][..]);
    let flat = t.path().join("flat");
    flatten(&store, &img, &flat).map_err(|e| format!("flatten: {e:?}\n{}", describe()))?;
    let ours = full_tree(&flat);

    let ov = t.path().join("ov");
    let o = BundleOptions {
        overlay: true,
        ..Default::default()
    };
    /// Unmounts the overlay bundle however the comparison ends.
    struct Mounted(PathBuf);
    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = remove_bundle_mount(&self.0);
        }
    }
    let mounted = Mounted(ov.clone());
    create_bundle(&store, &img, &ov, &o, &|_| {})
        .map_err(|e| format!("overlay: {e:?}\n{}", describe()))?;
    let merged = full_tree(&ov.join("rootfs"));
    drop(mounted);
    let left = mounts_under(t.path());
    if !left.is_empty() {
        return Err(format!("mounts left: {left:?}\n{}", describe()));
    }
    let d = diff_trees(&ours, &merged);
    if !d.is_empty() {
        return Err(format!(
            "flattened vs overlay:\n{}\n{}",
            d.join("\n"),
            describe()
        ));
    }

    let theirs = full_tree(&umoci(&layout, &t.path().join("umoci")));
    let d = diff_trees(&ours, &theirs);
    if !d.is_empty() {
        return Err(format!("berth vs umoci:\n{}\n{}", d.join("\n"), describe()));
    }
    Ok(())
}

#[test]
fn random_layer_stacks_flattened_overlay_and_umoci_agree() {
    assert!(is_root(), "overlay mounts and umoci unpack need root");
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("BERTH_LAYER_DIFF_SEED") {
        Some(s) => vec![s],
        None => (1..=30 + env("BERTH_LAYER_DIFF_SEEDS").unwrap_or(0)).collect(),
    };
    let mut failures = Vec::new();
    for seed in seeds {
        if let Err(e) = run_seed(seed) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} seeds differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// What the differential test found, kept as fixed cases (each failed before its fix).
#[test]
fn differential_findings_stay_fixed() {
    assert!(is_root(), "overlay mounts and umoci unpack need root");
    let base = || {
        tar_of(|b| {
            dir(b, "d");
            file(b, "d/lower", b"lower");
            dir(b, "e");
            file(b, "e/x", b"x");
        })
    };
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            // overlayfs refused "lowerdir=A:B:A" (ELOOP, conflicting lowerdir path).
            "a repeated layer",
            vec![base(), tar_of(|b| file(b, "f", b"1")), base()],
        ),
        (
            // A whiteout hides lower layers only (image-spec), not what its layer wrote.
            "a whiteout after its layer's own entry",
            vec![
                base(),
                tar_of(|b| {
                    file(b, "new", b"kept");
                    file(b, ".wh.new", b"");
                    dir(b, "d");
                    file(b, "d/own", b"kept");
                    file(b, ".wh.d", b"");
                }),
            ],
        ),
        (
            // A directory recreated over its own layer's whiteout hid nothing in overlay.
            "a directory recreated after its whiteout",
            vec![
                base(),
                tar_of(|b| {
                    file(b, ".wh.d", b"");
                    dir(b, "d");
                    file(b, "d/new", b"new");
                }),
            ],
        ),
        (
            // The flattened unpack cleared an opaque directory after the layer, through a
            // symlink that replaced its parent later in the layer.
            "an opaque directory whose parent becomes a symlink",
            vec![
                base(),
                tar_of(|b| {
                    dir(b, "p");
                    dir(b, "p/o");
                    file(b, "p/o/.wh..wh..opq", b"");
                    symlink(b, "p", "e");
                }),
            ],
        ),
        (
            // Whiteouts inside an opaque directory were listed as broken entries.
            "whiteouts below an opaque directory",
            vec![
                base(),
                tar_of(|b| {
                    dir(b, "d");
                    file(b, "d/.wh..wh..opq", b"");
                    dir(b, "d/sub");
                    file(b, "d/sub/.wh.gone", b"");
                    file(b, "d/.wh.lower", b"");
                }),
            ],
        ),
        (
            // A layer without entries for the directories it writes into (as tar tools make
            // them): the overlay showed them 0755 root-owned instead of the lower mode.
            "implicit parent directories keep the lower ones' attributes",
            vec![
                tar_of(|b| {
                    entry(b, "tmp", tar::EntryType::Directory, None, b"", 0o1777);
                    entry(b, "home", tar::EntryType::Directory, None, b"", 0o700);
                }),
                tar_of(|b| {
                    file(b, "tmp/x", b"x");
                    file(b, "home/.wh.gone", b"");
                }),
            ],
        ),
    ];
    for (what, layers) in cases {
        compare_unpacks(&layers, &[what.to_owned()]).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// Spellings the random stacks do not make, each compared flattened, as an overlay mount and
/// with umoci. The first two failed before: a layer that turns a directory into a symlink to
/// a lower directory and then writes under it could not be unpacked on its own ("not a
/// directory"), and an opaque marker at a layer's root hid the lower layers when flattened
/// but not in the overlay (overlayfs ignores the opaque xattr on a layer's root); both are
/// now applied over their lower layers.
#[test]
fn symlinked_parents_and_root_markers_agree() {
    assert!(is_root(), "overlay mounts and umoci unpack need root");
    let base = || {
        tar_of(|b| {
            dir(b, "etc");
            file(b, "etc/passwd", b"root");
            dir(b, "d");
            file(b, "d/lower", b"lower");
            symlink(b, "p", "/etc");
            symlink(b, "q", "../../etc");
        })
    };
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "dir becomes symlink then written under",
            vec![
                base(),
                tar_of(|b| {
                    dir(b, "x");
                    file(b, "x/a", b"a");
                    symlink(b, "x", "/d");
                    file(b, "x/b", b"b");
                }),
            ],
        ),
        (
            "opaque at the root",
            vec![
                base(),
                tar_of(|b| {
                    file(b, ".wh..wh..opq", b"");
                    file(b, "only", b"o");
                }),
            ],
        ),
        (
            "opaque at the root of the first layer",
            vec![tar_of(|b| {
                file(b, "./.wh..wh..opq", b"");
                file(b, "only", b"o");
            })],
        ),
        (
            "whiteout under a lower absolute symlink",
            vec![base(), tar_of(|b| file(b, "p/.wh.passwd", b""))],
        ),
        (
            "whiteout under a lower relative symlink",
            vec![base(), tar_of(|b| file(b, "q/.wh.passwd", b""))],
        ),
        (
            "opaque under a lower symlink",
            vec![
                base(),
                tar_of(|b| {
                    file(b, "p/.wh..wh..opq", b"");
                    file(b, "p/new", b"n");
                }),
            ],
        ),
        (
            "symlink to a lower dir, whiteout under it",
            vec![
                base(),
                tar_of(|b| {
                    symlink(b, "y", "d");
                    file(b, "y/.wh.lower", b"");
                }),
            ],
        ),
        (
            "hard link through a symlink to a lower dir",
            vec![
                base(),
                tar_of(|b| {
                    symlink(b, "y", "/d");
                    hardlink(b, "h", "y/lower");
                }),
            ],
        ),
        (
            "double slash and dot names",
            vec![
                base(),
                tar_of(|b| {
                    file(b, "//d//./new", b"n");
                    file(b, "./d/../top", b"t");
                }),
            ],
        ),
        (
            "file under a lower symlink to a dir",
            vec![
                base(),
                tar_of(|b| {
                    file(b, "p/added", b"a");
                }),
            ],
        ),
        (
            "symlink replaced by dir in upper",
            vec![
                base(),
                tar_of(|b| {
                    dir(b, "p");
                    file(b, "p/inside", b"i");
                }),
            ],
        ),
        (
            "whiteout of a lower symlink then dir",
            vec![
                base(),
                tar_of(|b| {
                    file(b, ".wh.p", b"");
                    dir(b, "p");
                }),
            ],
        ),
    ];
    let mut failed = Vec::new();
    for (what, layers) in cases {
        if let Err(e) = compare_unpacks(&layers, &[what.to_owned()]) {
            failed.push(format!("{what}: {e}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
