//! Layer spellings found by a review, each in both unpack modes (flattened and a layer
//! directory of its own for overlayfs):
//! - AUFS metadata (`.wh..wh.aufs`, `.wh..wh.plnk/`, `.wh..wh.orph/`), which layers exported
//!   by docker's aufs driver carry, is skipped as docker skips it (berth refused the layer);
//! - a hard link to a name its own layer whited out fails in both modes (the overlay layer
//!   made the link a second whiteout, hiding the link's name);
//! - a layer whose parent leads through its own symlink to what only lower layers have, or
//!   whose root is opaque, is refused on its own as "needs the lower layers", never written
//!   anywhere else.

mod common;

use std::fs;
use std::path::Path;

use berth_image::layer::{apply, ApplyOptions, LayerError, Whiteouts};
use common::*;

/// Every path under `dir` with its type, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            out.push(format!("{rel}:{:?}", m.file_type()));
        }
    }
    out.sort();
    out
}

fn lower() -> Vec<u8> {
    tar_of(|b| {
        dir(b, "a");
        file(b, "a/f", b"f");
    })
}

/// Apply `layer` in `mode` onto a fresh target (over `lower()` when flattening).
fn apply_in(mode: Whiteouts, layer: &[u8]) -> (tempfile::TempDir, Result<(), LayerError>) {
    let t = tempfile::tempdir().unwrap();
    if mode == Whiteouts::Apply {
        apply(&lower()[..], t.path(), &ApplyOptions::new(mode), &|_| {}).unwrap();
    }
    let r = apply(layer, t.path(), &ApplyOptions::new(mode), &|_| {}).map(|_| ());
    (t, r)
}

#[test]
fn aufs_metadata_is_skipped_as_docker_does() {
    let layer = tar_of(|b| {
        file(b, ".wh..wh.aufs", b"");
        dir(b, ".wh..wh.orph");
        dir(b, ".wh..wh.plnk");
        file(b, ".wh..wh.plnk/1234.5678", b"aufs link");
        file(b, "./.wh..wh.orph/x", b"");
        file(b, "kept", b"k");
    });
    for mode in [Whiteouts::Apply, Whiteouts::Overlay] {
        let (t, r) = apply_in(mode, &layer);
        r.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        let names = listing(t.path());
        assert!(
            names.iter().all(|n| !n.starts_with(".wh.")),
            "{mode:?}: {names:?}"
        );
        assert_eq!(fs::read(t.path().join("kept")).unwrap(), b"k", "{mode:?}");
        if mode == Whiteouts::Apply {
            assert!(
                t.path().join("a/f").is_file(),
                "the lower layer is untouched"
            );
        }
    }
    // A derived name that is not a name is still refused, wherever the prefixes stop.
    for bad in [".wh..wh..wh...", ".wh..wh..wh..", ".wh..wh..wh."] {
        let layer = tar_of(|b| file(b, bad, b""));
        for mode in [Whiteouts::Apply, Whiteouts::Overlay] {
            match apply_in(mode, &layer).1 {
                Err(LayerError::Unsafe { entry, .. }) => assert_eq!(entry, bad),
                other => panic!("{bad} in {mode:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_hard_link_to_a_name_its_layer_whited_out_fails_in_both_modes() {
    let layer = tar_of(|b| {
        file(b, "a/.wh.f", b"");
        hardlink(b, "h", "a/f");
    });
    for mode in [Whiteouts::Apply, Whiteouts::Overlay] {
        let (t, r) = apply_in(mode, &layer);
        match r {
            Err(LayerError::Fs {
                op: "linkat",
                entry,
                source,
                ..
            }) => {
                assert_eq!(entry, "h", "{mode:?}");
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{mode:?}");
            }
            other => panic!("{mode:?}: {other:?}"),
        }
        assert!(t.path().join("h").symlink_metadata().is_err(), "{mode:?}");
    }
}

#[test]
fn parents_only_lower_layers_resolve_are_left_to_them() {
    let cases = [
        tar_of(|b| {
            dir(b, "x");
            symlink(b, "x", "/a");
            file(b, "x/new", b"n");
        }),
        tar_of(|b| {
            symlink(b, "x", "../../a");
            file(b, "x/.wh.f", b"");
        }),
        tar_of(|b| {
            symlink(b, "x", "a");
            file(b, "x/.wh..wh..opq", b"");
        }),
        tar_of(|b| {
            file(b, ".wh..wh..opq", b"");
            file(b, "only", b"o");
        }),
    ];
    for (i, layer) in cases.iter().enumerate() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("layer");
        fs::create_dir(&target).unwrap();
        fs::create_dir_all(t.path().join("a")).unwrap();
        let r = apply(
            &layer[..],
            &target,
            &ApplyOptions::new(Whiteouts::Overlay),
            &|_| {},
        );
        match r {
            Err(e @ LayerError::NeedsLowerLayers { .. }) => assert!(e.needs_lower_layers()),
            other => panic!("case {i}: {other:?}"),
        }
        assert_eq!(
            listing(&t.path().join("a")),
            Vec::<String>::new(),
            "case {i}"
        );
    }
}

/// A file stored by GNU tar in its PAX sparse formats (`--sparse --format=posix`, versions
/// 0.0, 0.1 and 1.0), which Go's archive/tar (docker, containerd, umoci) expands, and in the
/// old GNU format: each unpacks to the file itself, under its own name. berth wrote the PAX
/// ones as `GNUSparseFile.PID/NAME` holding the raw map and fragments.
#[test]
fn gnu_sparse_files_unpack_to_the_file_itself() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut content = vec![0u8; 3 << 20];
    content[1_000_000..1_000_005].copy_from_slice(b"hello");
    content.extend_from_slice(b"tail");
    // Written with holes (only the data blocks allocated), so that tar finds them.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(src.join("holes")).unwrap();
        f.set_len(content.len() as u64).unwrap();
        f.write_all_at(b"hello", 1_000_000).unwrap();
        f.write_all_at(b"tail", (3 << 20) as u64).unwrap();
    }
    for (format, version) in [
        ("gnu", None),
        ("posix", Some("0.0")),
        ("posix", Some("0.1")),
        ("posix", Some("1.0")),
    ] {
        let what = format!("{format} {version:?}");
        let tar = t.path().join("layer.tar");
        let mut c = std::process::Command::new("tar");
        c.args(["--sparse", &format!("--format={format}")]);
        if let Some(v) = version {
            c.arg(format!("--sparse-version={v}"));
        }
        let out = c
            .arg("-C")
            .arg(&src)
            .arg("-cf")
            .arg(&tar)
            .arg("holes")
            .output()
            .expect("GNU tar (Debian's tar package) is needed");
        assert!(out.status.success(), "{what}: {out:?}");
        let layer = fs::read(&tar).unwrap();
        assert!(
            layer.len() < content.len() / 2,
            "{what}: tar did not store it sparse"
        );
        for mode in [Whiteouts::Apply, Whiteouts::Overlay] {
            let dest = tempfile::tempdir().unwrap();
            apply(&layer[..], dest.path(), &ApplyOptions::new(mode), &|_| {})
                .unwrap_or_else(|e| panic!("{what} {mode:?}: {e}"));
            let names: Vec<_> = fs::read_dir(dest.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["holes"], "{what} {mode:?}");
            assert!(
                fs::read(dest.path().join("holes")).unwrap() == content,
                "{what} {mode:?}: content differs"
            );
        }
    }
}

/// The real name of a PAX sparse file (`GNU.sparse.name`) is checked as every entry name,
/// and a map that passes the real size is refused.
#[test]
fn gnu_sparse_names_and_maps_are_checked() {
    let sparse = |name: &[u8], map: &[u8], size: &[u8]| {
        tar_of(|b| {
            b.append_pax_extensions([
                ("GNU.sparse.major", &b"0"[..]),
                ("GNU.sparse.minor", b"1"),
                ("GNU.sparse.name", name),
                ("GNU.sparse.map", map),
                ("GNU.sparse.size", size),
            ])
            .unwrap();
            file(b, "GNUSparseFile.1/x", b"abc");
        })
    };
    for mode in [Whiteouts::Apply, Whiteouts::Overlay] {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        fs::create_dir(&target).unwrap();
        let r = apply(
            &sparse(b"../victim", b"0,3", b"10")[..],
            &target,
            &ApplyOptions::new(mode),
            &|_| {},
        );
        match r {
            Err(LayerError::Unsafe { entry, .. }) => assert_eq!(entry, "../victim"),
            other => panic!("{mode:?}: {other:?}"),
        }
        assert!(!t.path().join("victim").exists());
        let r = apply(
            &sparse(b"x", b"8,3", b"10")[..],
            &target,
            &ApplyOptions::new(mode),
            &|_| {},
        );
        assert!(matches!(r, Err(LayerError::Tar(_))), "{mode:?}: {r:?}");
        let r = apply(
            &sparse(b"ok", b"7,3", b"10")[..],
            &target,
            &ApplyOptions::new(mode),
            &|_| {},
        );
        r.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(fs::read(target.join("ok")).unwrap(), b"\0\0\0\0\0\0\0abc");
    }
}

/// A layer that must be applied over its lower layers (through an overlay mount in the
/// store's tmp/) and turns out hostile there fails naming the entry, and leaves no mount, no
/// chain directory and nothing in tmp/.
#[test]
fn a_hostile_layer_applied_over_its_lower_layers_leaves_no_mount() {
    assert!(is_root(), "overlay mounts need root");
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let upper = tar_of(|b| {
        symlink(b, "x", "/a");
        file(b, "x/new", b"n");
        file(b, "x/../../victim", b"pwned");
    });
    oci_layout(&layout, "t", &[lower(), upper], &[], serde_json::json!({}));
    let store = berth_image::Store::open(t.path().join("store")).unwrap();
    let d = berth_image::archive::load_path(&store, &layout, &Default::default()).unwrap()[0]
        .manifest
        .clone();
    let img = store.image(&d).unwrap();
    let ov = t.path().join("ov");
    let o = berth_image::bundle::BundleOptions {
        overlay: true,
        ..Default::default()
    };
    let err = berth_image::bundle::create_bundle(&store, &img, &ov, &o, &|_| {})
        .expect_err("the hostile entry is refused");
    let _guard = OverlayGuard(ov.clone());
    let msg = format!("{err:?}");
    assert!(
        msg.contains("x/../../victim") && msg.contains("Unsafe"),
        "{msg}"
    );
    assert_eq!(mounts_under(t.path()), Vec::<String>::new());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    let layers: Vec<_> = fs::read_dir(store.root().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        layers.len(),
        1,
        "only the lower layer is stored: {layers:?}"
    );
    assert!(!t.path().join("victim").exists());
}
