//! Hostile layers and broken blobs: clear errors, nothing written outside, store consistent.

mod common;

/// Options for applying one layer on its own.
fn single_layer(mode: berth_image::layer::Whiteouts) -> berth_image::layer::ApplyOptions {
    berth_image::layer::ApplyOptions::new(mode)
}

use std::fs;
use std::path::Path;

use berth_image::layer::{apply, ApplyOptions, LayerError, Whiteouts};
use berth_image::{archive, Store, UnpackError};
use common::*;

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if p.symlink_metadata().unwrap().is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

/// Apply `layer` into `sandbox/root` (which holds one file) with `sandbox/outside` beside it;
/// expect an `Unsafe` error naming `entry`, and `outside` untouched.
fn expect_unsafe(layer: Vec<u8>, entry: &str) {
    for mode in [Whiteouts::Overlay, Whiteouts::Apply] {
        let sandbox = tempfile::tempdir().unwrap();
        let root = sandbox.path().join("root");
        let outside = sandbox.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), b"original").unwrap();
        let before = list(sandbox.path());
        let err = apply(&layer[..], &root, &single_layer(mode), &|_| {}).unwrap_err();
        match &err {
            LayerError::Unsafe { entry: e, .. } => assert_eq!(e, entry, "{err}"),
            other => panic!("expected unsafe entry {entry}, got {other:?}"),
        }
        assert!(err.to_string().contains(entry));
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"original");
        let after: Vec<String> = list(sandbox.path())
            .into_iter()
            .filter(|p| !p.starts_with("root/"))
            .collect();
        let before: Vec<String> = before
            .into_iter()
            .filter(|p| !p.starts_with("root/"))
            .collect();
        assert_eq!(before, after, "something was written outside the root");
        // Nothing escaped into the host either.
        assert!(!Path::new("/tmp/berth-escaped").exists());
    }
}

#[test]
fn dotdot_path() {
    expect_unsafe(
        tar_of(|b| file(b, "../outside/victim", b"pwned")),
        "../outside/victim",
    );
    expect_unsafe(
        tar_of(|b| file(b, "a/../../outside/victim", b"pwned")),
        "a/../../outside/victim",
    );
}

/// Apply `layer` as [`expect_unsafe`] does, but accept success or any error: what matters is
/// that nothing outside the root changed (chroot semantics: links and absolute names that
/// point "out" point into the root instead). Returns the roots (apply mode, overlay mode).
fn expect_confined(layer: Vec<u8>) -> Vec<(tempfile::TempDir, Result<(), String>)> {
    let mut out = Vec::new();
    for mode in [Whiteouts::Apply, Whiteouts::Overlay] {
        let sandbox = tempfile::tempdir().unwrap();
        let root = sandbox.path().join("root");
        let outside = sandbox.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), b"original").unwrap();
        let keep = |p: &String| !p.starts_with("root/") && p != "root";
        let before: Vec<String> = list(sandbox.path()).into_iter().filter(keep).collect();
        let passwd_links = fs::metadata("/etc/passwd").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.nlink()
        });
        let res = apply(&layer[..], &root, &single_layer(mode), &|_| {})
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"original");
        let after: Vec<String> = list(sandbox.path()).into_iter().filter(keep).collect();
        assert_eq!(before, after, "something was written outside the root");
        assert!(!Path::new("/tmp/berth-escaped").exists());
        let now = fs::metadata("/etc/passwd").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.nlink()
        });
        assert_eq!(
            passwd_links.ok(),
            now.ok(),
            "the host's /etc/passwd got a link"
        );
        out.push((sandbox, res));
    }
    out
}

#[test]
fn absolute_path_lands_inside_the_root() {
    for (sandbox, res) in expect_confined(tar_of(|b| file(b, "/tmp/berth-escaped", b"inside"))) {
        res.unwrap();
        let p = sandbox.path().join("root/tmp/berth-escaped");
        assert_eq!(fs::read(p).unwrap(), b"inside");
    }
}

#[test]
fn symlink_parent_pointing_out() {
    // The links resolve inside the root, where their targets do not exist: an error, and
    // nothing outside.
    for (_, res) in expect_confined(tar_of(|b| {
        symlink(b, "esc", "../outside");
        file(b, "esc/victim", b"pwned");
    })) {
        res.unwrap_err();
    }
    for (_, res) in expect_confined(tar_of(|b| {
        symlink(b, "abs", "/tmp");
        file(b, "abs/berth-escaped", b"pwned");
    })) {
        res.unwrap_err();
    }
    // With the target present inside the root, the write goes there.
    for (sandbox, res) in expect_confined(tar_of(|b| {
        dir(b, "outside");
        symlink(b, "esc", "../../outside");
        file(b, "esc/victim", b"inside");
    })) {
        res.unwrap();
        let p = sandbox.path().join("root/outside/victim");
        assert_eq!(fs::read(p).unwrap(), b"inside");
    }
}

#[test]
fn symlink_replaced_mid_archive() {
    for (_, res) in expect_confined(tar_of(|b| {
        dir(b, "d");
        file(b, "d/ok", b"fine");
        symlink(b, "d", "../outside");
        file(b, "d/victim", b"pwned");
    })) {
        res.unwrap_err();
    }
}

#[test]
fn hardlink_to_outside() {
    expect_unsafe(tar_of(|b| hardlink(b, "link", "../outside/victim")), "link");
    // Absolute and symlinked targets resolve inside the root (where there is no such file).
    for (_, res) in expect_confined(tar_of(|b| hardlink(b, "link", "/etc/passwd"))) {
        res.unwrap_err();
    }
    for (_, res) in expect_confined(tar_of(|b| {
        symlink(b, "esc", "../outside");
        hardlink(b, "link", "esc/victim");
    })) {
        res.unwrap_err();
    }
}

#[test]
fn final_symlink_is_replaced_not_followed() {
    // A file entry over an existing symlink replaces the link; it never writes through it.
    let sandbox = tempfile::tempdir().unwrap();
    let root = sandbox.path().join("root");
    fs::create_dir_all(&root).unwrap();
    fs::write(sandbox.path().join("victim"), b"original").unwrap();
    let layer = tar_of(|b| {
        symlink(b, "f", "../victim");
        file(b, "f", b"new");
    });
    apply(
        &layer[..],
        &root,
        &ApplyOptions::new(Whiteouts::Apply),
        &|_| {},
    )
    .unwrap();
    assert_eq!(
        fs::read(sandbox.path().join("victim")).unwrap(),
        b"original"
    );
    assert_eq!(fs::read(root.join("f")).unwrap(), b"new");
}

#[test]
fn overlay_xattrs_from_layer_are_ignored_and_whiteout_names_checked() {
    expect_unsafe(tar_of(|b| file(b, "a/.wh.", b"")), "a/.wh.");
}

fn store_with_image(layers: &[Vec<u8>]) -> (tempfile::TempDir, Store, berth_image::Digest) {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    oci_layout(&layout, "hostile", layers, &[], serde_json::json!({}));
    let store = Store::open(t.path().join("store")).unwrap();
    let opts = archive::LoadOptions {
        name: Some("localhost/hostile".into()),
        ..Default::default()
    };
    let loaded = archive::load_oci_dir(&store, &layout, &opts).unwrap();
    let d = loaded[0].manifest.clone();
    (t, store, d)
}

#[test]
fn hostile_layer_through_store_leaves_nothing() {
    let good = tar_of(|b| file(b, "good", b"x"));
    let bad = tar_of(|b| file(b, "../escape", b"x"));
    let (t, store, d) = store_with_image(&[good, bad]);
    let img = store.image(&d).unwrap();
    let dest = t.path().join("rootfs");
    let err = store.flatten(&img, &dest, &|_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Layer {
                source: LayerError::Unsafe { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!dest.exists());
    assert_eq!(
        fs::read_dir(t.path()).unwrap().count(),
        2,
        "only layout and store remain"
    );
    let err = store.unpack_layers(&img, &|_| {}).unwrap_err();
    assert!(matches!(err, UnpackError::Layer { .. }));
    // The good layer is stored, the bad one is not, and no temporary directory is left.
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        1
    );
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn corrupted_blob_in_store_is_detected() {
    let layer = tar_of(|b| file(b, "f", b"content"));
    let (t, store, d) = store_with_image(&[layer]);
    let img = store.image(&d).unwrap();
    let l = &img.layers().unwrap()[0];
    // Same size, different bytes: caught by the digest check while unpacking.
    let p = store.blob_path(&l.digest);
    let mut data = fs::read(&p).unwrap();
    let n = data.len();
    data[n - 5] ^= 0xff;
    fs::write(&p, &data).unwrap();
    let dest = t.path().join("rootfs");
    let err = store.flatten(&img, &dest, &|_| {}).unwrap_err();
    assert!(matches!(err, UnpackError::Layer { .. }), "{err:?}");
    assert!(!dest.exists());
    // Truncated: caught by the size check before reading.
    fs::write(&p, &data[..n / 2]).unwrap();
    let err = store.flatten(&img, &dest, &|_| {}).unwrap_err();
    assert!(
        err.to_string().contains("verification") || format!("{err:?}").contains("Size"),
        "{err:?}"
    );
    assert!(!dest.exists());
}

#[test]
fn layout_with_mismatching_blob_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    oci_layout(
        &layout,
        "x",
        &[tar_of(|b| file(b, "f", b"a"))],
        &[],
        serde_json::json!({}),
    );
    // Corrupt the layer blob (named by its digest).
    let blobs = layout.join("blobs/sha256");
    let mut big: Vec<_> = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    big.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let victim = big
        .iter()
        .find(|p| fs::read(p).unwrap().starts_with(&[0x1f, 0x8b]))
        .unwrap();
    let mut data = fs::read(victim).unwrap();
    data.push(0);
    fs::write(victim, data).unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let err = archive::load_oci_dir(&store, &layout, &Default::default()).unwrap_err();
    assert!(
        matches!(err, archive::ArchiveError::BadBlob { .. }),
        "{err:?}"
    );
    assert!(store.refs().unwrap().is_empty());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn manifest_pointing_at_missing_blob_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    oci_layout(
        &layout,
        "x",
        &[tar_of(|b| file(b, "f", b"a"))],
        &[],
        serde_json::json!({}),
    );
    let blobs = layout.join("blobs/sha256");
    for e in fs::read_dir(&blobs).unwrap() {
        let p = e.unwrap().path();
        if fs::read(&p).unwrap().starts_with(&[0x1f, 0x8b]) {
            fs::remove_file(p).unwrap();
        }
    }
    let store = Store::open(t.path().join("store")).unwrap();
    let err = archive::load_oci_dir(&store, &layout, &Default::default()).unwrap_err();
    // The layout lacks the layer blob its manifest names: refused naming the missing file.
    assert!(
        matches!(&err, archive::ArchiveError::MissingFile(p) if p.starts_with("blobs/sha256/")),
        "{err}"
    );
    assert!(store.refs().unwrap().is_empty());
}

#[test]
fn tampered_plain_layer_is_caught_by_flatten_and_layer_unpack() {
    // A plain-tar blob whose bytes change but still parse: only a digest can tell. Flattening
    // checks the blob digest, unpacking into the shared layer store checks the diff id.
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let layer = tar_of(|b| file(b, "f", b"trusted content"));
    oci_layout(&layout, "t", &[layer], &["none"], serde_json::json!({}));
    let store = Store::open(t.path().join("store")).unwrap();
    let loaded = archive::load_oci_dir(&store, &layout, &Default::default()).unwrap();
    let img = store.image(&loaded[0].manifest).unwrap();
    let l = img.layers().unwrap()[0].clone();
    let p = store.blob_path(&l.digest);
    let data = fs::read(&p).unwrap();
    let at = data
        .windows(7)
        .position(|w| w == b"trusted")
        .expect("content in the tar");
    let mut bad = data.clone();
    bad[at..at + 7].copy_from_slice(b"TAMPERD");
    fs::write(&p, &bad).unwrap();

    let dest = t.path().join("rootfs");
    let err = store.flatten(&img, &dest, &|_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Layer {
                source: LayerError::Verify(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!dest.exists());
    let err = store.unpack_layers(&img, &|_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Layer {
                source: LayerError::Verify(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!store.layer_path(&l.diff_id).exists());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    // Restored, both work.
    fs::write(&p, &data).unwrap();
    store.flatten(&img, &dest, &|_| {}).unwrap();
    assert_eq!(fs::read(dest.join("f")).unwrap(), b"trusted content");
    store.unpack_layers(&img, &|_| {}).unwrap();
}
