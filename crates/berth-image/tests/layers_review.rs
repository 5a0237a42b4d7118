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
