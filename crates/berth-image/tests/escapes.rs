//! Nothing outside the target, nothing unsafe in the store (Berth issue 11, section 2 and the
//! bundle item of section 4):
//! - every spelling of a layer entry whose derived name leaves the unpack directory (whiteouts
//!   `.wh...`, `.wh..`, hard-link targets, ...) is refused with an error naming the entry, in
//!   the flattened and the overlay (per-layer) unpack, through OCI layouts, OCI tars and
//!   docker archives, and nothing beside the target changes;
//! - the store is private to root: another user cannot open a device node or reach a setuid
//!   file that a layer carries, and an old world-readable store is tightened when opened;
//! - untrusted inputs (layout blobs, index.json, archives) are read only when they are regular
//!   files reached without symlinks, of the size their descriptor says, never hanging;
//! - `unpack --bundle` never writes through a planted symlink.

mod common;

/// Options for applying one layer on its own.
fn single_layer(mode: berth_image::layer::Whiteouts) -> berth_image::layer::ApplyOptions {
    berth_image::layer::ApplyOptions::new(mode)
}

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_image::archive::{self, LoadOptions};
use berth_image::bundle::{create_bundle, remove_bundle_mount, BundleOptions};
use berth_image::layer::{apply, LayerError, Whiteouts};
use berth_image::{Digest, Store, UnpackError};
use common::*;

/// Every file under `dir` (relative path, and content for regular files), skipping `skip`.
fn snapshot(dir: &Path, skip: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.starts_with(skip) {
                continue;
            }
            let m = p.symlink_metadata().unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            let content = m.is_file().then(|| fs::read(&p).unwrap());
            out.push((p.strip_prefix(dir).unwrap().display().to_string(), content));
        }
    }
    out.sort();
    out
}

/// A directory holding the unpack target `target` and bystanders beside and above it.
struct Sandbox {
    _dir: tempfile::TempDir,
    base: PathBuf,
    target: PathBuf,
}

fn sandbox() -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let target = base.join("target");
    fs::create_dir_all(&target).unwrap();
    fs::write(dir.path().join("above"), b"above").unwrap();
    fs::write(base.join("victim"), b"victim").unwrap();
    fs::create_dir(base.join("sibling")).unwrap();
    fs::write(base.join("sibling/victim"), b"sibling").unwrap();
    Sandbox {
        base: dir.path().to_owned(),
        _dir: dir,
        target,
    }
}

/// The hostile spellings: (layer, the entry the error must name). Each derived name (whiteout
/// target, opaque directory, hard-link target, parent) would leave or replace the target.
fn spellings() -> Vec<(Vec<u8>, &'static str)> {
    let long = "d/".repeat(60) + ".wh...";
    let long: &'static str = Box::leak(long.into_boxed_str());
    vec![
        // Whiteouts whose target, once `.wh.` is stripped, is `..`, `.` or empty.
        (tar_of(|b| file(b, ".wh...", b"")), ".wh..."),
        (tar_of(|b| file(b, "./.wh...", b"")), "./.wh..."),
        (
            tar_of(|b| {
                dir(b, "a");
                file(b, "a/.wh...", b"");
            }),
            "a/.wh...",
        ),
        (tar_of(|b| file(b, ".wh..", b"")), ".wh.."),
        (tar_of(|b| file(b, "a/.wh.", b"")), "a/.wh."),
        (
            tar_of(|b| entry(b, ".wh...", tar::EntryType::Directory, None, b"", 0o755)),
            ".wh...",
        ),
        (
            tar_of(|b| entry(b, ".wh...", tar::EntryType::Symlink, Some("x"), b"", 0o777)),
            ".wh...",
        ),
        (tar_of(|b| pax_path_file(b, b".wh...", b"")), ".wh..."),
        (
            tar_of(|b| pax_path_file(b, b"x/../.wh...", b"")),
            "x/../.wh...",
        ),
        (
            tar_of(|b| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(1_600_000_000);
                h.set_size(0);
                b.append_data(&mut h, long, &b""[..]).unwrap();
            }),
            long,
        ),
        // Whiteouts of another whiteout, and NUL bytes hidden in a name.
        (tar_of(|b| file(b, ".wh..wh..wh...", b"")), ".wh..wh..wh..."),
        (
            tar_of(|b| pax_path_file(b, b".wh.a\0/..", b"")),
            ".wh.a\0/..",
        ),
        (tar_of(|b| pax_path_file(b, b"a\0b", b"x")), "a\0b"),
        // Opaque markers and plain entries whose parent is outside.
        (
            tar_of(|b| file(b, "../.wh..wh..opq", b"")),
            "../.wh..wh..opq",
        ),
        (
            tar_of(|b| file(b, "../sibling/.wh.victim", b"")),
            "../sibling/.wh.victim",
        ),
        (tar_of(|b| file(b, "../victim", b"pwned")), "../victim"),
        (
            tar_of(|b| file(b, "a/../../victim", b"pwned")),
            "a/../../victim",
        ),
        (tar_of(|b| file(b, "./../victim", b"pwned")), "./../victim"),
        // Hard links whose target leaves the root or is the root.
        (tar_of(|b| hardlink(b, "h", "..")), "h"),
        (tar_of(|b| hardlink(b, "h", "a/../..")), "h"),
        (tar_of(|b| hardlink(b, "h", ".")), "h"),
        (tar_of(|b| hardlink(b, "h", "../victim")), "h"),
        (tar_of(|b| hardlink(b, "h", "./../sibling/victim")), "h"),
    ]
}

/// Symlink parents pointing "out": resolved as if chrooted, they point into the target. Each
/// may succeed or fail, but changes nothing outside; `Some(path)` is what must then exist
/// inside.
fn confined() -> Vec<(Vec<u8>, Option<&'static str>)> {
    vec![
        (
            tar_of(|b| {
                symlink(b, "up", "..");
                file(b, "up/victim", b"pwned");
            }),
            Some("victim"),
        ),
        (
            tar_of(|b| {
                symlink(b, "up", "../../..");
                file(b, "up/sibling/.wh.victim", b"");
            }),
            None,
        ),
        (
            tar_of(|b| {
                symlink(b, "up", "..");
                file(b, "up/.wh.victim", b"");
            }),
            None,
        ),
        (
            tar_of(|b| {
                symlink(b, "up", "../sibling");
                file(b, "up/.wh..wh..opq", b"");
            }),
            None,
        ),
        (
            tar_of(|b| {
                symlink(b, "up", "..");
                hardlink(b, "h", "up/victim");
            }),
            None,
        ),
        (
            tar_of(|b| {
                symlink(b, "up", "/");
                hardlink(b, "h", "/up/../../sibling/victim");
            }),
            None,
        ),
    ]
}

#[test]
fn symlink_parents_pointing_out_stay_inside() {
    for (i, (layer, lands)) in confined().into_iter().enumerate() {
        for mode in [Whiteouts::Apply, Whiteouts::Overlay] {
            let s = sandbox();
            let before = snapshot(&s.base, &s.target);
            let res = apply(&layer[..], &s.target, &single_layer(mode), &|_| {});
            assert_eq!(
                snapshot(&s.base, &s.target),
                before,
                "case {i} in {mode:?} mode: outside changed ({res:?})"
            );
            if let (Some(p), Ok(_)) = (lands, &res) {
                assert!(
                    s.target.join(p).exists(),
                    "case {i}: {p} not written inside"
                );
            }
        }
    }
}

fn check_refused(err: &LayerError, entry: &str, what: &str) {
    match err {
        LayerError::Unsafe { entry: e, .. } => assert_eq!(
            e,
            &String::from_utf8_lossy(entry.as_bytes()),
            "{what}: {err}"
        ),
        other => panic!("{what}: expected an unsafe-entry error naming {entry:?}, got {other:?}"),
    }
}

#[test]
fn every_spelling_is_refused_in_both_unpack_modes() {
    for (layer, entry) in spellings() {
        for mode in [Whiteouts::Apply, Whiteouts::Overlay] {
            let s = sandbox();
            fs::write(s.target.join("inside"), b"inside").unwrap();
            let before = snapshot(&s.base, &s.target);
            let what = format!("{entry:?} in {mode:?} mode");
            let res = apply(&layer[..], &s.target, &single_layer(mode), &|_| {});
            let err = res.expect_err(&what);
            check_refused(&err, entry, &what);
            assert_eq!(
                snapshot(&s.base, &s.target),
                before,
                "{what}: outside changed"
            );
            assert!(s.target.is_dir(), "{what}: the target itself was removed");
        }
    }
}

fn lower() -> Vec<u8> {
    tar_of(|b| {
        dir(b, "a");
        file(b, "a/keep", b"keep");
    })
}

fn load_opts() -> LoadOptions {
    LoadOptions {
        name: Some("localhost/hostile".into()),
        ..Default::default()
    }
}

/// Load `layers` as an image through `how` into `store`; returns the manifest digest.
fn load(store: &Store, work: &Path, how: &str, layers: &[Vec<u8>]) -> Digest {
    let layout = work.join(format!("layout-{how}"));
    match how {
        "oci-dir" => {
            oci_layout(&layout, "t", layers, &[], serde_json::json!({}));
            archive::load_path(store, &layout, &load_opts()).unwrap()[0]
                .manifest
                .clone()
        }
        "oci-tar" => {
            oci_layout(&layout, "t", layers, &[], serde_json::json!({}));
            let tar = work.join("oci.tar");
            fs::write(&tar, tar_dir(&layout)).unwrap();
            archive::load_path(store, &tar, &load_opts()).unwrap()[0]
                .manifest
                .clone()
        }
        "docker-archive" => {
            let tar = work.join("docker.tar");
            fs::write(&tar, docker_archive(layers, "localhost/hostile:t")).unwrap();
            archive::load_path(store, &tar, &load_opts()).unwrap()[0]
                .manifest
                .clone()
        }
        _ => unreachable!(),
    }
}

fn unsafe_source(err: &UnpackError) -> Option<&LayerError> {
    match err {
        UnpackError::Layer { source, .. } => Some(source),
        _ => None,
    }
}

#[test]
fn every_spelling_is_refused_through_the_store_and_bundles() {
    let spellings = spellings();
    // The whiteout spellings are the new kind; the others are covered above and stay cheap.
    for (layer, entry) in spellings.iter().take(12) {
        for how in ["oci-dir", "oci-tar", "docker-archive"] {
            let t = tempfile::tempdir().unwrap();
            let store = Store::open(t.path().join("store")).unwrap();
            let d = load(&store, t.path(), how, &[lower(), layer.clone()]);
            let img = store.image(&d).unwrap();
            let what = format!("{entry:?} loaded as {how}");
            // Bystanders: a file in the store's staging dir (the parent of a layer being
            // unpacked) and one in the bundle (the parent of a flattened rootfs).
            let canary = store.root().join("tmp/canary");
            fs::write(&canary, b"canary").unwrap();
            let bundle = t.path().join("bundle");
            fs::create_dir(&bundle).unwrap();
            fs::write(bundle.join("canary"), b"canary").unwrap();

            let err = create_bundle(&store, &img, &bundle, &BundleOptions::default(), &|_| {})
                .expect_err(&what);
            let berth_image::bundle::BundleError::Unpack(err) = err else {
                panic!("{what}: {err:?}")
            };
            check_refused(unsafe_source(&err).expect(&what), entry, &what);
            assert!(!bundle.join("rootfs").exists(), "{what}");
            assert_eq!(
                fs::read(bundle.join("canary")).unwrap(),
                b"canary",
                "{what}"
            );

            let err = store.unpack_layers(&img, &|_| {}).expect_err(&what);
            check_refused(unsafe_source(&err).expect(&what), entry, &what);
            assert_eq!(fs::read(&canary).unwrap(), b"canary", "{what}");
            assert_eq!(
                fs::read_dir(store.root().join("layers")).unwrap().count(),
                1,
                "{what}: only the good lower layer is stored"
            );

            {
                assert!(is_root(), "the overlay unpack needs root");
                let ov = t.path().join("ov");
                let o = BundleOptions {
                    overlay: true,
                    ..Default::default()
                };
                let err = create_bundle(&store, &img, &ov, &o, &|_| {}).expect_err(&what);
                let berth_image::bundle::BundleError::Unpack(err) = err else {
                    panic!("{what}: {err:?}")
                };
                check_refused(unsafe_source(&err).expect(&what), entry, &what);
                assert_eq!(mounts_under(t.path()), Vec::<String>::new(), "{what}");
                let _ = remove_bundle_mount(&ov);
                assert_eq!(fs::read(&canary).unwrap(), b"canary", "{what}");
            }
            assert_eq!(
                fs::read_dir(store.root().join("tmp")).unwrap().count(),
                1,
                "{what}: only the canary is left in tmp/"
            );
        }
    }
}

/// Run `sh -c script` as nobody (uid and gid 65534, no groups); true when it exits 0.
fn as_nobody(script: &str) -> bool {
    let st = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", script])
        .status()
        .expect("running setpriv");
    st.success()
}

fn device_layer() -> Vec<u8> {
    tar_of(|b| {
        dir(b, "dev");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_path("dev/kmsg").unwrap();
        h.set_mode(0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(11).unwrap();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        entry(
            b,
            "suid",
            tar::EntryType::Regular,
            None,
            b"#!/bin/sh\nid\n",
            0o4755,
        );
    })
}

#[test]
fn store_and_bundles_keep_layer_devices_from_other_users() {
    assert!(is_root(), "this test needs root (mknod, chown, setpriv)");
    let t = tempfile::tempdir().unwrap();
    // The test's own directory must not be what stops other users.
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // Control: a world-traversable 0666 char device 1:11 can be opened by nobody, so what
    // follows tests the store, not the host.
    let control = t.path().join("control");
    fs::create_dir(&control).unwrap();
    let st = Command::new("mknod")
        .args(["-m", "0666"])
        .arg(control.join("kmsg"))
        .args(["c", "1", "11"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        as_nobody(&format!("exec 3>{}", control.join("kmsg").display())),
        "control: nobody cannot open a 0666 1:11 device at all"
    );

    let root = t.path().join("store");
    let store = Store::open(&root).unwrap();
    let d = load(&store, t.path(), "oci-dir", &[device_layer()]);
    let img = store.image(&d).unwrap();
    let dirs = store.unpack_layers(&img, &|_| {}).unwrap();
    let dev = dirs[0].join("dev/kmsg");
    assert_eq!(
        fs::symlink_metadata(&dev).unwrap().rdev(),
        rustix::fs::makedev(1, 11)
    );
    assert!(
        !as_nobody(&format!("exec 3>{}", dev.display())),
        "nobody opened a layer's device node in the store"
    );
    assert!(
        !as_nobody(&format!("test -e {}", dirs[0].join("suid").display())),
        "nobody reaches a layer's setuid file"
    );
    for sub in ["", "blobs", "blobs/sha256", "layers", "tmp"] {
        let mode = fs::metadata(root.join(sub)).unwrap().mode() & 0o7777;
        assert_eq!(mode & 0o077, 0, "store dir {sub:?} has mode {mode:o}");
    }

    // Bundles that berth creates are private too (flattened and overlay).
    for overlay in [false, true] {
        let bundle = t.path().join(format!("bundle-{overlay}"));
        let o = BundleOptions {
            overlay,
            ..Default::default()
        };
        create_bundle(&store, &img, &bundle, &o, &|_| {}).unwrap();
        let dev = bundle.join("rootfs/dev/kmsg");
        assert!(dev.exists());
        assert!(
            !as_nobody(&format!("exec 3>{}", dev.display())),
            "nobody opened a device through bundle {}",
            bundle.display()
        );
        if overlay {
            remove_bundle_mount(&bundle).unwrap();
        }
    }

    // A store made world-readable by an older berth is tightened when opened.
    for sub in ["", "blobs", "blobs/sha256", "layers", "tmp"] {
        fs::set_permissions(root.join(sub), fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert!(as_nobody(&format!("exec 3>{}", dev.display())));
    drop(store);
    let _store = Store::open(&root).unwrap();
    assert!(!as_nobody(&format!("exec 3>{}", dev.display())));
    for sub in ["", "blobs", "blobs/sha256", "layers", "tmp"] {
        let mode = fs::metadata(root.join(sub)).unwrap().mode() & 0o7777;
        assert_eq!(mode & 0o077, 0, "store dir {sub:?} still has mode {mode:o}");
    }
}

/// An OCI layout of one image; returns the layout dir and the path of its layer blob.
fn layout_with_layer(t: &Path) -> (PathBuf, PathBuf) {
    let layout = t.join("layout");
    oci_layout(
        &layout,
        "t",
        &[tar_of(|b| file(b, "f", b"content"))],
        &[],
        serde_json::json!({}),
    );
    let blobs = layout.join("blobs/sha256");
    let layer = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs::read(p).unwrap().starts_with(&[0x1f, 0x8b]))
        .unwrap();
    (layout, layer)
}

/// Run `f` on a thread and fail if it has not returned within 20 seconds (a hang).
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(v) => return v,
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => panic!("{what}: still running after 20 s (blocked on the input?)"),
        }
    }
}

/// Replace the layer blob of a fresh layout by what `plant` makes of its path; loading must
/// fail naming the blob, quickly, storing nothing.
fn expect_blob_refused(name: &str, plant: impl FnOnce(&Path, &Path)) {
    let t = tempfile::tempdir().unwrap();
    let (layout, layer) = layout_with_layer(t.path());
    let secret = t.path().join("secret");
    fs::write(&secret, fs::read(&layer).unwrap()).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(&layer).unwrap();
    plant(&layer, &secret);
    let root = t.path().join("store");
    let res = within_deadline(name, {
        let (root, layout) = (root.clone(), layout.clone());
        move || {
            let store = Store::open(&root).unwrap();
            archive::load_path(&store, &layout, &Default::default())
        }
    });
    let err = res.expect_err(name);
    let msg = format!("{:#}", anyhow::Error::from(err));
    let hex = layer.file_name().unwrap().to_str().unwrap();
    assert!(
        msg.contains(hex),
        "{name}: error does not name the blob: {msg}"
    );
    let store = Store::open(&root).unwrap();
    assert!(store.refs().unwrap().is_empty(), "{name}");
    assert!(
        !store
            .blob_path(&format!("sha256:{hex}").parse().unwrap())
            .exists(),
        "{name}: the blob entered the store"
    );
}

#[test]
fn layout_blob_symlink_is_not_followed() {
    expect_blob_refused("symlinked blob", |blob, secret| {
        std::os::unix::fs::symlink(secret, blob).unwrap();
    });
}

#[test]
fn layout_blob_fifo_does_not_hang() {
    expect_blob_refused("fifo blob", |blob, _| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            blob,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
    });
}

#[test]
fn layout_blob_device_is_not_read() {
    assert!(is_root(), "needs root for mknod");
    expect_blob_refused("/dev/zero as blob", |blob, _| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            blob,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o644),
            rustix::fs::makedev(1, 5),
        )
        .unwrap();
    });
}

#[test]
fn layout_blob_of_the_wrong_size_is_not_read_to_its_end() {
    // A blob larger than its descriptor says is refused from its size, before it is copied.
    expect_blob_refused("oversized blob", |blob, secret| {
        let mut data = fs::read(secret).unwrap();
        data.extend(std::iter::repeat_n(0u8, 1 << 20));
        fs::write(blob, data).unwrap();
    });
    // A hard link to a file elsewhere is a regular file: it is read, and verified.
    let t = tempfile::tempdir().unwrap();
    let (layout, layer) = layout_with_layer(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    assert_eq!(
        archive::load_path(&store, &layout, &Default::default())
            .unwrap()
            .len(),
        1
    );
    assert!(layer.exists());
}

#[test]
fn layout_blobs_dir_or_index_through_symlinks_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (layout, _) = layout_with_layer(t.path());
    let elsewhere = t.path().join("elsewhere");
    fs::rename(layout.join("blobs"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, layout.join("blobs")).unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let err = archive::load_path(&store, &layout, &Default::default()).unwrap_err();
    assert!(format!("{:#}", anyhow::Error::from(err)).contains("blobs/sha256/"));
    assert!(store.refs().unwrap().is_empty());

    let t = tempfile::tempdir().unwrap();
    let (layout, _) = layout_with_layer(t.path());
    fs::rename(layout.join("index.json"), t.path().join("index.json")).unwrap();
    std::os::unix::fs::symlink(t.path().join("index.json"), layout.join("index.json")).unwrap();
    let err = archive::load_path(&store, &layout, &Default::default()).unwrap_err();
    assert!(format!("{:#}", anyhow::Error::from(err)).contains("index.json"));

    // index.json as a FIFO: an error, not a hang.
    let t = tempfile::tempdir().unwrap();
    let (layout, _) = layout_with_layer(t.path());
    fs::remove_file(layout.join("index.json")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        layout.join("index.json"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let root = t.path().join("store");
    let err = within_deadline("fifo index.json", move || {
        let store = Store::open(&root).unwrap();
        archive::load_path(&store, &layout, &Default::default()).map(|v| v.len())
    })
    .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err:?}");
}

#[test]
fn archive_paths_must_be_regular_files() {
    // A FIFO (or /dev/zero) named as the archive: refused at once; stdin (`-`) is the way to
    // stream.
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("fifo.tar");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let root = t.path().join("store");
    for path in [fifo, PathBuf::from("/dev/zero")] {
        let root = root.clone();
        let err = within_deadline("fifo archive", move || {
            let store = Store::open(&root).unwrap();
            archive::load_path(&store, &path, &Default::default()).map(|v| v.len())
        })
        .unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err:?}");
    }
    // manifest.json larger than any sane manifest: refused with its size, not truncated.
    let big = tar_of(|b| file(b, "manifest.json", &vec![b' '; 17 << 20]));
    let path = t.path().join("big.tar");
    fs::write(&path, big).unwrap();
    let store = Store::open(&root).unwrap();
    let err = archive::load_path(&store, &path, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err:?}");
}

#[test]
fn image_passwd_fifo_does_not_hang_unpack() {
    // The bundle's user lookup reads etc/passwd from the image: a FIFO there must not block.
    let t = tempfile::tempdir().unwrap();
    let layer = tar_of(|b| {
        dir(b, "etc");
        entry(b, "etc/passwd", tar::EntryType::Fifo, None, b"", 0o644);
    });
    let store = Store::open(t.path().join("store")).unwrap();
    let d = load(&store, t.path(), "oci-dir", &[layer]);
    let bundle = t.path().join("bundle");
    let root = store.root().to_owned();
    within_deadline("fifo etc/passwd", move || {
        let store = Store::open(&root).unwrap();
        let img = store.image(&d).unwrap();
        create_bundle(&store, &img, &bundle, &BundleOptions::default(), &|_| {}).map(|_| ())
    })
    .unwrap();
}

#[test]
fn bundle_config_is_not_written_through_a_planted_symlink() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let d = load(&store, t.path(), "oci-dir", &[lower()]);
    let img = store.image(&d).unwrap();
    let victim = t.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    let bundle = t.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    std::os::unix::fs::symlink(&victim, bundle.join("config.json")).unwrap();
    let err = create_bundle(&store, &img, &bundle, &BundleOptions::default(), &|_| {})
        .expect_err("config.json is a symlink");
    assert!(err.to_string().contains("config.json"), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::symlink_metadata(bundle.join("config.json"))
        .unwrap()
        .is_symlink());
    // A dangling symlink is not followed to create its target either.
    let bundle2 = t.path().join("bundle2");
    fs::create_dir(&bundle2).unwrap();
    let created = t.path().join("created");
    std::os::unix::fs::symlink(&created, bundle2.join("config.json")).unwrap();
    assert!(create_bundle(&store, &img, &bundle2, &BundleOptions::default(), &|_| {}).is_err());
    assert!(!created.exists());
    // The rootfs name planted as a symlink is not followed either.
    let bundle3 = t.path().join("bundle3");
    fs::create_dir(&bundle3).unwrap();
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, bundle3.join("rootfs")).unwrap();
    assert!(create_bundle(&store, &img, &bundle3, &BundleOptions::default(), &|_| {}).is_err());
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    // A regular config.json (from `berth spec`, say) is replaced, and the result is complete.
    let bundle4 = t.path().join("bundle4");
    fs::create_dir(&bundle4).unwrap();
    fs::write(bundle4.join("config.json"), b"old").unwrap();
    create_bundle(&store, &img, &bundle4, &BundleOptions::default(), &|_| {}).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle4.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert_eq!(
        fs::read_dir(&bundle4).unwrap().count(),
        2,
        "no temporary file left"
    );
}

/// The same through the real command line: `berth image load` of a layout with a symlinked
/// blob and of a FIFO fails (quickly) naming the file; `berth image unpack --bundle` refuses
/// a planted config.json symlink and leaves its target alone; the store it made is private.
#[test]
fn cli_refuses_links_fifos_and_planted_config() {
    let bin = berth_image_bin();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let run = |args: &[&std::ffi::OsStr]| {
        let bin = bin.clone();
        let root = root.clone();
        let args: Vec<std::ffi::OsString> = args.iter().map(|a| a.to_os_string()).collect();
        within_deadline("berth-image", move || {
            Command::new(bin)
                .arg("--image-root")
                .arg(root)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let (layout, layer) = layout_with_layer(t.path());
    let secret = t.path().join("secret");
    fs::rename(&layer, &secret).unwrap();
    std::os::unix::fs::symlink(&secret, &layer).unwrap();
    let out = run(&["load".as_ref(), layout.as_os_str()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(layer.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
    let mode = fs::metadata(&root).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "store root mode {mode:o}");

    let fifo = t.path().join("image.tar");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let out = run(&["load".as_ref(), fifo.as_os_str()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));

    fs::remove_file(&layer).unwrap();
    fs::rename(&secret, &layer).unwrap();
    let out = run(&[
        "load".as_ref(),
        layout.as_os_str(),
        "--name".as_ref(),
        "localhost/x".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = t.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    let victim = t.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, bundle.join("config.json")).unwrap();
    let out = run(&[
        "unpack".as_ref(),
        "localhost/x:t".as_ref(),
        "--bundle".as_ref(),
        bundle.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json"));
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    // Into a fresh bundle it works, and the bundle is private.
    let fresh = t.path().join("fresh");
    let out = run(&[
        "unpack".as_ref(),
        "localhost/x:t".as_ref(),
        "--bundle".as_ref(),
        fresh.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
    assert_eq!(fs::read(fresh.join("rootfs/f")).unwrap(), b"content");
}
