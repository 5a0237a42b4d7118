//! Pull from a real registry (Debian's docker-registry on loopback): anonymous, basic auth,
//! docker config credentials, bearer tokens from a token server run by the test, streamed
//! unpacking of multi-layer images and refusal of corrupted blobs.

mod common;
mod regutil;

use std::fs;
use std::path::Path;
use std::process::Command;

use berth_image::registry::{pull_blocking, PullOptions};
use berth_image::Store;
use common::*;
use regutil::*;

fn check_pulled(store: &Store, r: &str, dest: &Path) {
    let (_, d) = store.resolve(r).unwrap();
    let img = store.image(&d).unwrap();
    store.flatten(&img, dest, &|_| {}).unwrap();
    assert_eq!(fs::read(dest.join("bye")).unwrap(), b"moon");
    assert!(!dest.join("hello").exists());
}

#[test]
fn anonymous_pull() {
    let t = tempfile::tempdir().unwrap();
    let reg = start_registry(t.path(), Auth::None);
    let layout = image(t.path());
    let name = format!("127.0.0.1:{}/berth/test:v1", reg.port);
    push(&layout, &name, None);
    let store = Store::open(t.path().join("store")).unwrap();
    let events = std::sync::atomic::AtomicUsize::new(0);
    let img = pull_blocking(
        &store,
        &name.parse().unwrap(),
        &PullOptions::default(),
        &|_| {
            events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    )
    .unwrap();
    assert_eq!(img.layers().unwrap().len(), 2);
    assert!(events.into_inner() > 0);
    check_pulled(&store, &name, &t.path().join("rootfs"));
    // By digest too, and a second pull reuses the blobs.
    let by_digest = format!("127.0.0.1:{}/berth/test@{}", reg.port, img.manifest_digest);
    let again = pull_blocking(
        &store,
        &by_digest.parse().unwrap(),
        &PullOptions::default(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(again.manifest_digest, img.manifest_digest);
    // A missing tag is a clear error and leaves no reference.
    let missing = format!("127.0.0.1:{}/berth/test:nope", reg.port);
    assert!(pull_blocking(
        &store,
        &missing.parse().unwrap(),
        &PullOptions::default(),
        &|_| {}
    )
    .is_err());
    assert_eq!(store.refs().unwrap().len(), 2);
}

#[test]
fn basic_auth_pull() {
    let t = tempfile::tempdir().unwrap();
    let htpasswd = t.path().join("htpasswd");
    let st = Command::new("htpasswd")
        .args(["-Bbc"])
        .arg(&htpasswd)
        .args(["berth", "s3cret"])
        .output()
        .unwrap();
    assert!(st.status.success());
    let reg = start_registry(t.path(), Auth::Htpasswd(&htpasswd));
    let layout = image(t.path());
    let name = format!("127.0.0.1:{}/berth/private:v1", reg.port);
    push(&layout, &name, Some("berth:s3cret"));
    let store = Store::open(t.path().join("store")).unwrap();
    let r = name.parse().unwrap();
    assert!(
        pull_blocking(&store, &r, &PullOptions::default(), &|_| {}).is_err(),
        "anonymous pull must be refused"
    );
    let opts = PullOptions {
        auth: Some(("berth".into(), "s3cret".into())),
        ..Default::default()
    };
    pull_blocking(&store, &r, &opts, &|_| {}).unwrap();
    check_pulled(&store, &name, &t.path().join("rootfs"));
}

// Each test runs in its own process under nextest; only this test sets these variables, and
// they only matter for registries on this test's port.
#[test]
fn docker_config_credentials() {
    let t = tempfile::tempdir().unwrap();
    let htpasswd = t.path().join("htpasswd");
    let st = Command::new("htpasswd")
        .args(["-Bbc"])
        .arg(&htpasswd)
        .args(["berth", "s3cret"])
        .output()
        .unwrap();
    assert!(st.status.success());
    let reg = start_registry(t.path(), Auth::Htpasswd(&htpasswd));
    let layout = image(t.path());
    let host = format!("127.0.0.1:{}", reg.port);
    let name = format!("{host}/berth/private:v1");
    push(&layout, &name, Some("berth:s3cret"));
    let r = name.parse().unwrap();

    // $DOCKER_CONFIG/config.json, with a wrong password first: refused.
    let cfg = t.path().join("docker-config");
    std::env::set_var("DOCKER_CONFIG", &cfg);
    docker_config(&cfg, &[(&host, "berth:wrong")], serde_json::json!({}));
    let store = Store::open(t.path().join("store")).unwrap();
    assert!(pull_blocking(&store, &r, &PullOptions::default(), &|_| {}).is_err());
    assert!(store.refs().unwrap().is_empty());
    docker_config(
        &cfg,
        &[
            ("other.example:5000", "x:y"),
            (&format!("http://{host}/v2/"), "berth:s3cret"),
        ],
        serde_json::json!({}),
    );
    pull_blocking(&store, &r, &PullOptions::default(), &|_| {}).unwrap();
    check_pulled(&store, &name, &t.path().join("rootfs"));

    // ~/.docker/config.json when DOCKER_CONFIG is unset.
    std::env::remove_var("DOCKER_CONFIG");
    let home = t.path().join("home");
    std::env::set_var("HOME", &home);
    docker_config(
        &home.join(".docker"),
        &[(&host, "berth:s3cret")],
        serde_json::json!({}),
    );
    assert_eq!(
        berth_image::registry::docker_credentials(&host).unwrap(),
        Some(("berth".to_owned(), "s3cret".to_owned()))
    );
    let store2 = Store::open(t.path().join("store2")).unwrap();
    pull_blocking(&store2, &r, &PullOptions::default(), &|_| {}).unwrap();
    check_pulled(&store2, &name, &t.path().join("rootfs2"));
}

#[test]
fn bearer_token_pull() {
    let t = tempfile::tempdir().unwrap();
    let tokens = start_token_server(t.path(), "berth", "t0ken-pass", None);
    let realm = format!("http://127.0.0.1:{}/token", tokens.port);
    let reg = start_registry(
        t.path(),
        Auth::Token {
            realm: &realm,
            cert: &t.path().join("cert.pem"),
        },
    );
    let layout = image(t.path());
    let name = format!("127.0.0.1:{}/berth/tokened:v1", reg.port);
    // skopeo runs the token flow itself to push.
    push(&layout, &name, Some("berth:t0ken-pass"));
    let pushed = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pushed > 0, "skopeo got no token");

    let store = Store::open(t.path().join("store")).unwrap();
    let r = name.parse().unwrap();
    let err = pull_blocking(&store, &r, &PullOptions::default(), &|_| {}).unwrap_err();
    assert!(
        tokens.refused.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "anonymous pull did not reach the token server: {err:#?}"
    );
    let bad = PullOptions {
        auth: Some(("berth".into(), "nope".into())),
        ..Default::default()
    };
    assert!(pull_blocking(&store, &r, &bad, &|_| {}).is_err());
    assert!(store.refs().unwrap().is_empty());
    let opts = PullOptions {
        auth: Some(("berth".into(), "t0ken-pass".into())),
        ..Default::default()
    };
    let img = pull_blocking(&store, &r, &opts, &|_| {}).unwrap();
    assert!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) > pushed);
    for l in img.layers().unwrap() {
        assert!(store.layer_path(&l.diff_id).is_dir());
    }
    check_pulled(&store, &name, &t.path().join("rootfs"));
}

/// Everything about a tree that unpacking sets: type, mode, owner, mtime, content or target,
/// device number and xattrs, by relative path.
fn tree(root: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            "dir".to_owned()
        } else if ft.is_symlink() {
            format!("link {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            format!("file {}", berth_image::Digest::of(&fs::read(&p).unwrap()))
        } else {
            format!("special rdev {}", m.rdev())
        };
        let mut xattrs = Vec::new();
        if !ft.is_symlink() {
            let mut names = vec![0u8; 4096];
            let n = rustix::fs::listxattr(&p, &mut names).unwrap();
            for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
                let name = std::ffi::OsStr::new(std::str::from_utf8(name).unwrap());
                let mut v = vec![0u8; 4096];
                let k = rustix::fs::getxattr(&p, name, &mut v).unwrap();
                xattrs.push(format!("{}={:?}", name.to_string_lossy(), &v[..k]));
            }
        }
        // Directories the tar does not list and whiteout devices (mode 0) get the time of
        // unpacking.
        let whiteout = !ft.is_dir() && !ft.is_file() && !ft.is_symlink() && m.mode() & 0o7777 == 0;
        let mtime = if ft.is_dir() || whiteout {
            0
        } else {
            m.mtime()
        };
        out.insert(
            rel,
            format!(
                "{what} mode {:o} {}:{} mtime {mtime} nlink {} {xattrs:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                if ft.is_dir() { 0 } else { m.nlink() },
            ),
        );
    }
    out
}

fn big_layer() -> Vec<u8> {
    // A few MiB of poorly compressible data so the blob spans many download chunks.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..(3 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    tar_of(|b| {
        common::dir(b, "big");
        file(b, "big/blob.bin", &data);
        file(b, "big/small", b"tiny");
        for i in 0..200 {
            file(b, &format!("big/many/f{i}"), format!("file {i}").as_bytes());
        }
    })
}

fn multi_layer_image(dir: &Path) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let layout = dir.join("layout");
    let l1 = tar_of(|b| {
        common::dir(b, "etc");
        file(b, "etc/passwd", b"root:x:0:0::/:/bin/sh\n");
        common::dir(b, "opt");
        common::dir(b, "opt/app");
        file(b, "opt/app/old", b"old");
        file(b, "gone", b"soon deleted");
        symlink(b, "etc/link", "passwd");
        hardlink(b, "etc/passwd-hard", "etc/passwd");
        common::entry(
            b,
            "run.sh",
            tar::EntryType::Regular,
            None,
            b"#!/bin/sh\n",
            0o4755,
        );
    });
    let l2 = big_layer();
    let l3 = tar_of(|b| {
        file(b, ".wh.gone", b"");
        common::dir(b, "opt/app");
        file(b, "opt/app/.wh..wh..opq", b"");
        file(b, "opt/app/new", b"new");
        common::entry(b, "dev-null", tar::EntryType::Char, None, b"", 0o666);
    });
    let layers = vec![l1, l2, l3];
    oci_layout(
        &layout,
        "test",
        &layers,
        &["gzip", "zstd", "none"],
        serde_json::json!({}),
    );
    (layout, layers)
}

#[test]
fn pulled_layers_match_loaded_layers() {
    let t = tempfile::tempdir().unwrap();
    let reg = start_registry(t.path(), Auth::None);
    let (layout, layers) = multi_layer_image(t.path());
    let name = format!("127.0.0.1:{}/berth/multi:v1", reg.port);
    push(&layout, &name, None);

    let pulled = Store::open(t.path().join("pulled")).unwrap();
    let events = std::sync::Mutex::new(Vec::new());
    let img = pull_blocking(
        &pulled,
        &name.parse().unwrap(),
        &PullOptions::default(),
        &|e| {
            if let berth_image::PullEvent::Layer(l) = e {
                events.lock().unwrap().push(l);
            }
        },
    )
    .unwrap();
    let events = events.into_inner().unwrap();
    let done: Vec<_> = events
        .iter()
        .filter(|l| l.state == berth_image::LayerState::Done)
        .collect();
    assert_eq!(done.len(), 3);
    let got: u64 = done.iter().map(|l| l.current).sum();
    assert_eq!(
        got,
        img.layers().unwrap().iter().map(|l| l.size).sum::<u64>()
    );

    let loaded = Store::open(t.path().join("loaded")).unwrap();
    let li = berth_image::archive::load_oci_dir(
        &loaded,
        &layout,
        &berth_image::archive::LoadOptions {
            name: Some("127.0.0.1/berth/multi".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let limg = loaded.image(&li[0].manifest).unwrap();
    let dirs = loaded.unpack_layers(&limg, &|_| {}).unwrap();
    assert_eq!(dirs.len(), layers.len());

    // skopeo compresses the plain-tar layer on push, so blobs may differ; diff ids may not.
    for ((l, dir), tar) in img.layers().unwrap().iter().zip(&dirs).zip(&layers) {
        assert_eq!(l.diff_id, berth_image::Digest::of(tar));
        let p = pulled.layer_path(&l.diff_id);
        assert!(p.is_dir(), "pull did not unpack {}", l.diff_id);
        let (a, b) = (tree(&p), tree(dir));
        let diff: Vec<_> = a
            .iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .chain(b.iter().filter(|(k, _)| !a.contains_key(*k)))
            .collect();
        assert!(diff.is_empty(), "layer {} differs: {diff:?}", l.diff_id);
        assert!(a.len() > 3);
        // The blob is in the store too, intact.
        let blob = fs::read(pulled.blob_path(&l.digest)).unwrap();
        assert_eq!(berth_image::Digest::of(&blob), l.digest);
    }
    let names = |s: &Store| {
        let mut v: Vec<_> = fs::read_dir(s.root().join("layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&pulled), names(&loaded));
    assert_eq!(fs::read_dir(pulled.root().join("tmp")).unwrap().count(), 0);
    // Flattening from the pulled store gives the expected tree.
    let rootfs = t.path().join("rootfs");
    pulled.flatten(&img, &rootfs, &|_| {}).unwrap();
    assert!(!rootfs.join("gone").exists());
    assert!(!rootfs.join("opt/app/old").exists());
    assert_eq!(fs::read(rootfs.join("opt/app/new")).unwrap(), b"new");
    assert_eq!(fs::read(rootfs.join("big/many/f199")).unwrap(), b"file 199");
    // A second pull finds everything in place.
    pull_blocking(
        &pulled,
        &name.parse().unwrap(),
        &PullOptions::default(),
        &|_| {},
    )
    .unwrap();
}

#[test]
fn corrupted_registry_blob_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let reg = start_registry(t.path(), Auth::None);
    let (layout, _) = multi_layer_image(t.path());
    let name = format!("127.0.0.1:{}/berth/corrupt:v1", reg.port);
    push(&layout, &name, None);
    let store = Store::open(t.path().join("store")).unwrap();
    // Corrupt the big zstd layer (the second) in the registry's storage.
    let probe = Store::open(t.path().join("probe")).unwrap();
    let li = berth_image::archive::load_oci_dir(&probe, &layout, &Default::default()).unwrap();
    let img = probe.image(&li[0].manifest).unwrap();
    let victim = img.layers().unwrap()[1].clone();
    let data = t
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&victim.digest.hex()[..2])
        .join(victim.digest.hex())
        .join("data");
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&data, &bytes).unwrap();

    assert!(pull_blocking(
        &store,
        &name.parse().unwrap(),
        &PullOptions::default(),
        &|_| {}
    )
    .is_err());
    assert!(!store.layer_path(&victim.diff_id).exists());
    assert!(!store.has_blob(&victim.digest));
    assert!(store.refs().unwrap().is_empty());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    // Whatever else is there was verified: the other layers match their diff ids.
    for e in fs::read_dir(store.root().join("layers")).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(img.layers().unwrap().iter().any(|l| l.diff_id.hex() == n));
    }
}

/// A pulled image whose config promises other diff ids than its layers hold: `pull` refuses
/// it, and so does every later way to build a rootfs from blobs `pull --no-unpack` stored
/// (containerd refuses all of them).
#[test]
fn pull_without_unpack_then_flatten_checks_the_diff_ids() {
    let t = tempfile::tempdir().unwrap();
    let reg = start_registry(t.path(), Auth::None);
    let real = tar_of(|b| file(b, "f", b"real content"));
    let promised = tar_of(|b| file(b, "f", b"what the config promised"));
    let layer = LayerSpec {
        tar: promised,
        ..LayerSpec::gzip(real)
    };
    push_image(reg.port, "berth/lying", "v1", &[layer]);
    let name: berth_image::Reference = format!("127.0.0.1:{}/berth/lying:v1", reg.port)
        .parse()
        .unwrap();

    let store = Store::open(t.path().join("store")).unwrap();
    assert!(
        pull_blocking(&store, &name, &PullOptions::default(), &|_| {}).is_err(),
        "pull unpacked a layer whose diff id the config does not name"
    );

    let store = Store::open(t.path().join("store2")).unwrap();
    let opts = PullOptions {
        no_unpack: true,
        ..Default::default()
    };
    let img = pull_blocking(&store, &name, &opts, &|_| {}).unwrap();
    let rootfs = t.path().join("rootfs");
    let err = store.flatten(&img, &rootfs, &|_| {}).unwrap_err();
    assert!(
        matches!(
            &err,
            berth_image::UnpackError::Layer {
                source: berth_image::layer::LayerError::Verify(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!rootfs.exists());
    assert!(store.unpack_layers(&img, &|_| {}).is_err());
}
