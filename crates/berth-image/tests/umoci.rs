//! Multi-layer images with every entry type and whiteout kind, unpacked by berth and by
//! `umoci unpack`, compared entry by entry; plus the overlayfs view of the same image.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use berth_image::bundle::{create_bundle, remove_bundle_mount, BundleOptions};
use berth_image::{archive, Digest, Store};
use common::*;

fn pax_file(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mode: u32,
    xattrs: &[(&str, &[u8])],
) {
    let exts: Vec<(String, Vec<u8>)> = xattrs
        .iter()
        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.to_vec()))
        .collect();
    b.append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
        .unwrap();
    entry(b, path, tar::EntryType::Regular, None, data, mode);
}

fn layers() -> Vec<Vec<u8>> {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let mut base = tar_dir(&rootfs);
    // Strip the two trailing zero blocks so we can append more entries.
    base.truncate(base.len() - 1024);
    let mut b = tar::Builder::new(base);
    dir(&mut b, "data");
    dir(&mut b, "data/keep");
    file(&mut b, "data/keep/a", b"lower a");
    file(&mut b, "data/gone", b"to be whited out");
    dir(&mut b, "data/opaque");
    file(&mut b, "data/opaque/old", b"hidden by opaque");
    dir(&mut b, "data/wholedir");
    file(&mut b, "data/wholedir/x", b"x");
    entry(
        &mut b,
        "data/setuid",
        tar::EntryType::Regular,
        None,
        b"#!/bin/sh\n",
        0o4755,
    );
    entry(
        &mut b,
        "data/setgid",
        tar::EntryType::Regular,
        None,
        b"",
        0o2750,
    );
    entry(
        &mut b,
        "data/sticky",
        tar::EntryType::Directory,
        None,
        b"",
        0o1777,
    );
    entry(&mut b, "data/fifo", tar::EntryType::Fifo, None, b"", 0o640);
    {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_path("data/null").unwrap();
        h.set_mode(0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Block);
        h.set_path("data/loop9").unwrap();
        h.set_mode(0o660);
        h.set_device_major(7).unwrap();
        h.set_device_minor(9).unwrap();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
    }
    let mut owned = tar::Header::new_gnu();
    owned.set_entry_type(tar::EntryType::Regular);
    owned.set_path("data/owned").unwrap();
    owned.set_mode(0o600);
    owned.set_uid(1000);
    owned.set_gid(29);
    owned.set_mtime(1_234_567_890);
    owned.set_size(3);
    owned.set_cksum();
    b.append(&owned, &b"own"[..]).unwrap();
    hardlink(&mut b, "data/hard", "data/keep/a");
    symlink(&mut b, "data/rel", "keep/a");
    symlink(&mut b, "data/abs", "/etc/passwd");
    symlink(&mut b, "data/dangling", "../nowhere");
    pax_file(&mut b, "data/xattr", b"x", 0o644, &[("user.berth", b"yes")]);
    // security.capability: cap_net_bind_service+ep (VFS_CAP_REVISION_2).
    let cap: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    pax_file(
        &mut b,
        "data/cap",
        b"bin",
        0o755,
        &[("security.capability", cap)],
    );
    let l1 = b.into_inner().unwrap();
    let mut l1 = l1;
    l1.extend_from_slice(&[0; 1024]);

    let l2 = tar_of(|b| {
        dir(b, "data");
        file(b, "data/.wh.gone", b"");
        dir(b, "data/opaque");
        file(b, "data/opaque/.wh..wh..opq", b"");
        file(b, "data/opaque/new", b"upper");
        file(b, "data/.wh.wholedir", b"");
        dir(b, "etc");
        file(b, "etc/.wh.hostname", b"");
        file(b, "data/keep/b", b"upper b");
    });
    let l3 = tar_of(|b| {
        dir(b, "data");
        dir(b, "data/wholedir");
        file(b, "data/wholedir/fresh", b"recreated");
        symlink(b, "data/keep/a-link", "a");
    });
    vec![l1, l2, l3]
}

#[derive(Debug, PartialEq)]
struct Node {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    content: Option<Digest>,
    link: Option<String>,
    rdev: u64,
    mtime: Option<i64>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap_or(0);
    for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut v = vec![0u8; 65536];
        if let Ok(k) = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]) {
            out.insert(name, v[..k].to_vec());
        }
    }
    out
}

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
            } else if ft.is_fifo() {
                "fifo"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else {
                "file"
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                Node {
                    kind: kind.into(),
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if ft.is_file() || ft.is_symlink() {
                        m.size()
                    } else {
                        0
                    },
                    content: ft.is_file().then(|| Digest::of(&fs::read(&p).unwrap())),
                    link: ft
                        .is_symlink()
                        .then(|| fs::read_link(&p).unwrap().display().to_string()),
                    rdev: m.rdev(),
                    mtime: (!ft.is_dir()).then(|| m.mtime()),
                    xattrs: xattrs(&p),
                },
            );
        }
    }
    out
}

#[test]
fn flattened_rootfs_matches_umoci() {
    assert!(is_root(), "umoci unpack and overlay mounts need root");
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let ls = layers();
    oci_layout(
        &layout,
        "test",
        &ls,
        &["gzip", "zstd", "none"],
        serde_json::json!({"User": "berth"}),
    );
    // umoci cannot read zstd in every version: give it an all-gzip copy of the same image.
    let layout_gz = t.path().join("layout-gz");
    oci_layout(
        &layout_gz,
        "test",
        &ls,
        &["gzip", "gzip", "gzip"],
        serde_json::json!({"User": "berth"}),
    );
    let ub = t.path().join("umoci-bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:test", layout_gz.display()))
        .arg(&ub)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let store = Store::open(t.path().join("store")).unwrap();
    let opts = archive::LoadOptions {
        name: Some("localhost/test".into()),
        ..Default::default()
    };
    let loaded = archive::load_oci_dir(&store, &layout, &opts).unwrap();
    assert_eq!(loaded[0].names, vec!["localhost/test:test".to_string()]);
    let img = store
        .image(&store.resolve("localhost/test:test").unwrap().1)
        .unwrap();
    let bundle = t.path().join("bundle");
    let spec = create_bundle(&store, &img, &bundle, &BundleOptions::default(), &|_| {}).unwrap();
    assert_eq!(spec.process().as_ref().unwrap().user().uid(), 1000);

    let ours = tree(&bundle.join("rootfs"));
    let theirs = tree(&ub.join("rootfs"));
    assert!(ours.contains_key("data/opaque/new") && !ours.contains_key("data/opaque/old"));
    assert!(!ours.contains_key("data/gone") && !ours.contains_key("etc/hostname"));
    assert!(ours.contains_key("data/wholedir/fresh") && !ours.contains_key("data/wholedir/x"));
    assert_eq!(ours["data/setuid"].mode, 0o4755);
    assert_eq!(
        ours["data/cap"]
            .xattrs
            .get("security.capability")
            .map(|v| v.len()),
        Some(20)
    );
    let keys: Vec<_> = ours
        .keys()
        .chain(theirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut diffs = Vec::new();
    for k in keys {
        match (ours.get(k), theirs.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => diffs.push(format!("{k}: berth={a:?} umoci={b:?}")),
        }
    }
    diffs.truncate(20);
    assert!(
        diffs.is_empty(),
        "differences from umoci:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn overlay_mount_shows_the_same_tree() {
    assert!(is_root(), "umoci unpack and overlay mounts need root");
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    oci_layout(
        &layout,
        "test",
        &layers(),
        &["gzip", "zstd", "none"],
        serde_json::json!({}),
    );
    let store = Store::open(t.path().join("store")).unwrap();
    let opts = archive::LoadOptions {
        name: Some("localhost/test".into()),
        ..Default::default()
    };
    let d = archive::load_oci_dir(&store, &layout, &opts).unwrap()[0]
        .manifest
        .clone();
    let img = store.image(&d).unwrap();
    let flat = t.path().join("flat");
    create_bundle(&store, &img, &flat, &BundleOptions::default(), &|_| {}).unwrap();
    let ov = t.path().join("ov");
    let o = BundleOptions {
        overlay: true,
        ..Default::default()
    };
    create_bundle(&store, &img, &ov, &o, &|_| {}).unwrap();
    let _guard = OverlayGuard(ov.clone());
    let a = tree(&flat.join("rootfs"));
    let mut b = tree(&ov.join("rootfs"));
    // overlayfs reports the merged dir's own xattrs; drop overlay-internal ones.
    for n in b.values_mut() {
        n.xattrs.retain(|k, _| !k.starts_with("trusted.overlay."));
    }
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb);
    for (k, n) in &a {
        let m = &b[k];
        assert_eq!(
            (&n.kind, n.mode, n.uid, &n.content, &n.link),
            (&m.kind, m.mode, m.uid, &m.content, &m.link),
            "{k}"
        );
    }
    // Writes go to the upper dir, not the shared layers.
    fs::write(ov.join("rootfs/data/keep/a"), b"changed").unwrap();
    assert_eq!(
        fs::read(flat.join("rootfs/data/keep/a")).unwrap(),
        b"lower a"
    );
    remove_bundle_mount(&ov).unwrap();
    assert_eq!(mounts_under(t.path()), Vec::<String>::new());
    assert_eq!(fs::read_dir(ov.join("rootfs")).unwrap().count(), 0);
    assert!(!ov.join(".berth-overlay").exists());
    // Layers are shared: a second image use does not unpack again.
    assert_eq!(
        fs::read_dir(store.root().join("layers")).unwrap().count(),
        3
    );
}
