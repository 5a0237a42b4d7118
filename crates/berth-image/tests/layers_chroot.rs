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
    let ov = t.path().join("ov");
    let o = BundleOptions {
        overlay: true,
        ..Default::default()
    };
    create_bundle(&store, &img, &ov, &o, &|_| {}).unwrap();
    let merged = tree(&ov.join("rootfs"));
    remove_bundle_mount(&ov).unwrap();
    assert_eq!(merged, tree(&rootfs));
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
    if is_root() {
        let theirs = umoci(&layout, &t.path().join("umoci"));
        assert_eq!(tree(&rootfs), tree(&theirs), "berth and umoci differ");
    }
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
    // The overlay unpack cannot stand the layer alone: refused, naming the entry.
    let err = store.unpack_layers(&img, &|_| {}).unwrap_err();
    assert!(
        matches!(&err, UnpackError::Layer { source: LayerError::ExternalHardlink { entry, .. }, .. } if entry == "b/link"),
        "{err:?}"
    );
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
