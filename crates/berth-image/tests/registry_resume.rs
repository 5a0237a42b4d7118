//! A dropped connection is not the end of a pull: a proxy written here cuts the registry's
//! answer mid-blob, and the pull resumes with a `Range` request (or from the start when the
//! registry ignores ranges), verifies the whole blob's digest, and gives up, leaving nothing,
//! only after its retries. Foreign layers (`urls`) come from their URL when the registry has no
//! blob. The end-to-end case drives `berth image pull` through per-repository token auth with
//! a docker credential helper and one cut connection.

mod common;
mod regutil;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use berth_image::registry::{pull_blocking, PullOptions, RegistryError};
use berth_image::{Digest, Store};
use common::{file, tar_of};
use regutil::*;

const BIG: usize = 3 << 20;

fn big_tar() -> Vec<u8> {
    tar_of(|b| {
        common::dir(b, "big");
        file(b, "big/blob.bin", &noise(BIG, 1));
        file(b, "big/small", b"tiny");
    })
}

struct Setup {
    _t: tempfile::TempDir,
    dir: std::path::PathBuf,
    reg: Registry,
    manifest: Digest,
    big: Digest,
}

/// An anonymous registry holding `berth/resume:v1`: a small layer, a 3 MiB one, a small one.
fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let reg = start_registry(&dir, Auth::None);
    let layers = [
        LayerSpec::gzip(tar_of(|b| file(b, "first", b"1"))),
        LayerSpec::gzip(big_tar()),
        LayerSpec::gzip(tar_of(|b| file(b, "last", b"3"))),
    ];
    let (manifest, blobs) = push_image(reg.port, "berth/resume", "v1", &layers);
    Setup {
        _t: t,
        dir,
        reg,
        manifest,
        big: blobs[1].clone(),
    }
}

fn check_rootfs(store: &Store, manifest: &Digest, dest: &Path) {
    let img = store.image(manifest).unwrap();
    for l in img.layers().unwrap() {
        let blob = fs::read(store.blob_path(&l.digest)).unwrap();
        assert_eq!(Digest::of(&blob), l.digest);
    }
    store.flatten(&img, dest, &|_| {}).unwrap();
    assert_eq!(fs::read(dest.join("big/blob.bin")).unwrap(), noise(BIG, 1));
    assert_eq!(fs::read(dest.join("last")).unwrap(), b"3");
}

fn assert_nothing_kept(store: &Store, big: &Digest) {
    assert!(store.refs().unwrap().is_empty());
    assert!(!store.has_blob(big));
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

/// The `Range` start of the resumed request for `blob`, which must follow a cut.
fn resumed_from(log: &[String], blob: &Digest) -> u64 {
    let cut = log
        .iter()
        .position(|l| l.starts_with("cut ") && l.contains(&blob.to_string()))
        .unwrap_or_else(|| panic!("no cut: {log:?}"));
    let resumed = log[cut..]
        .iter()
        .find(|l| l.contains(&blob.to_string()) && l.contains("Range: bytes="))
        .unwrap_or_else(|| panic!("no range request after the cut: {log:?}"));
    let from = resumed.rsplit("bytes=").next().unwrap();
    from.trim_end_matches('-').parse().unwrap()
}

fn cut_once(s: &Setup, after: usize) -> Proxy {
    start_proxy(
        s.reg.port,
        ProxyOptions {
            cut: Some((format!("/blobs/{}", s.big), after, 1)),
            ..Default::default()
        },
    )
}

#[test]
fn cut_blob_resumes_with_range_while_unpacking() {
    let s = setup();
    let proxy = cut_once(&s, 1 << 20);
    let name = format!("127.0.0.1:{}/berth/resume:v1", proxy.port);
    let store = Store::open(s.dir.join("store")).unwrap();
    // The last count each layer's download reported.
    let downloaded = std::sync::Mutex::new(HashMap::new());
    let img = pull_blocking(
        &store,
        &name.parse().unwrap(),
        &PullOptions::default(),
        &|e| {
            if let berth_image::PullEvent::Layer(l) = e {
                if l.state == berth_image::LayerState::Downloading {
                    downloaded.lock().unwrap().insert(l.digest, l.current);
                }
            }
        },
    )
    .unwrap();
    assert_eq!(img.manifest_digest, s.manifest);
    let log = proxy.log();
    // The response head is part of what was forwarded before the cut; the rest of the first
    // MiB was received, so the resumed range starts within it.
    let from = resumed_from(&log, &s.big);
    assert!(from > 0 && from <= 1 << 20, "{from} {log:?}");
    // Bytes already received were not counted twice.
    let downloaded = downloaded.into_inner().unwrap();
    for l in img.layers().unwrap() {
        assert_eq!(downloaded.get(&l.digest), Some(&l.size), "{downloaded:?}");
    }
    for l in img.layers().unwrap() {
        assert!(store.layer_path(&l.diff_id).is_dir());
    }
    check_rootfs(&store, &s.manifest, &s.dir.join("rootfs"));
}

#[test]
fn cut_blob_resumes_with_range_without_unpacking() {
    let s = setup();
    let proxy = cut_once(&s, 2 << 20);
    let name = format!("127.0.0.1:{}/berth/resume:v1", proxy.port);
    let store = Store::open(s.dir.join("store")).unwrap();
    let opts = PullOptions {
        no_unpack: true,
        ..Default::default()
    };
    pull_blocking(&store, &name.parse().unwrap(), &opts, &|_| {}).unwrap();
    let from = resumed_from(&proxy.log(), &s.big);
    assert!(from > 1 << 20, "{from}");
    check_rootfs(&store, &s.manifest, &s.dir.join("rootfs"));
}

#[test]
fn registry_ignoring_range_is_read_again_from_the_start() {
    let s = setup();
    let proxy = start_proxy(
        s.reg.port,
        ProxyOptions {
            cut: Some((format!("/blobs/{}", s.big), 1 << 20, 1)),
            strip_range: true,
            ..Default::default()
        },
    );
    let name = format!("127.0.0.1:{}/berth/resume:v1", proxy.port);
    let store = Store::open(s.dir.join("store")).unwrap();
    pull_blocking(
        &store,
        &name.parse().unwrap(),
        &PullOptions::default(),
        &|_| {},
    )
    .unwrap();
    resumed_from(&proxy.log(), &s.big);
    check_rootfs(&store, &s.manifest, &s.dir.join("rootfs"));
}

#[test]
fn resumed_bytes_are_verified_with_the_whole_blob() {
    let s = setup();
    for no_unpack in [false, true] {
        let proxy = start_proxy(
            s.reg.port,
            ProxyOptions {
                cut: Some((format!("/blobs/{}", s.big), 1 << 20, 1)),
                corrupt_resumed: true,
                ..Default::default()
            },
        );
        let name = format!("127.0.0.1:{}/berth/resume:v1", proxy.port);
        let store = Store::open(s.dir.join(format!("store-{no_unpack}"))).unwrap();
        let opts = PullOptions {
            no_unpack,
            ..Default::default()
        };
        let err = pull_blocking(&store, &name.parse().unwrap(), &opts, &|_| {}).unwrap_err();
        let msg = format!("{err:?}");
        assert!(msg.contains("Mismatch") || msg.contains("digest"), "{msg}");
        assert_nothing_kept(&store, &s.big);
        let img_layers = fs::read_dir(store.root().join("layers")).unwrap().count();
        assert!(img_layers <= 2, "the corrupted layer was unpacked");
    }
}

#[test]
fn a_connection_that_keeps_dropping_fails_after_retries_and_leaves_nothing() {
    let s = setup();
    let proxy = start_proxy(
        s.reg.port,
        ProxyOptions {
            cut: Some((format!("/blobs/{}", s.big), 1 << 20, 1)),
            cut_resumed: Some(0),
            ..Default::default()
        },
    );
    let name = format!("127.0.0.1:{}/berth/resume:v1", proxy.port);
    let store = Store::open(s.dir.join("store")).unwrap();
    let err = pull_blocking(
        &store,
        &name.parse().unwrap(),
        &PullOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    match &err {
        RegistryError::Interrupted {
            digest, attempts, ..
        } => {
            assert_eq!(*digest, s.big);
            assert!(*attempts > 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&s.big.to_string()));
    let cuts = proxy.log().iter().filter(|l| l.starts_with("cut ")).count();
    assert!(cuts > 1, "gave up without retrying");
    assert_nothing_kept(&store, &s.big);
}

fn foreign_layer(urls: Vec<String>, tar: Vec<u8>) -> LayerSpec {
    let mut l = LayerSpec::gzip(tar);
    l.media_type = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    l.urls = urls;
    l.upload = false;
    l
}

#[test]
fn foreign_layer_comes_from_its_url() {
    let t = tempfile::tempdir().unwrap();
    // distribution refuses manifests with urls unless they are allowed.
    let reg = start_registry_with(
        t.path(),
        Auth::None,
        "validation:\n  manifests:\n    urls:\n      allow:\n        - '^http://127\\.0\\.0\\.1:'\n",
    );
    let tar = tar_of(|b| file(b, "foreign", b"from far away"));
    let blob = common::gzip(&tar);
    let d = Digest::of(&blob);
    let (port, log) = serve_files(HashMap::from([(format!("/layers/{}", d.hex()), blob)]));
    let url = format!("http://127.0.0.1:{port}/layers/{}", d.hex());
    let missing = format!("http://127.0.0.1:{port}/missing");
    let layers = [
        LayerSpec::gzip(tar_of(|b| file(b, "base", b"b"))),
        foreign_layer(vec![missing.clone(), url.clone()], tar.clone()),
    ];
    let (manifest, _) = push_image(reg.port, "berth/foreign", "v1", &layers);
    let name = format!("127.0.0.1:{}/berth/foreign:v1", reg.port);
    for no_unpack in [false, true] {
        let store = Store::open(t.path().join(format!("store-{no_unpack}"))).unwrap();
        let opts = PullOptions {
            no_unpack,
            ..Default::default()
        };
        let img = pull_blocking(&store, &name.parse().unwrap(), &opts, &|_| {}).unwrap();
        assert_eq!(img.manifest_digest, manifest);
        assert!(store.has_blob(&d));
        let rootfs = t.path().join(format!("rootfs-{no_unpack}"));
        store.flatten(&img, &rootfs, &|_| {}).unwrap();
        assert_eq!(fs::read(rootfs.join("foreign")).unwrap(), b"from far away");
    }
    let asked = log.lock().unwrap().clone();
    assert!(asked.contains(&"/missing".to_owned()), "{asked:?}");

    // No URL serves it: the error names the layer and its URLs.
    let gone = foreign_layer(vec![missing.clone()], tar_of(|b| file(b, "x", b"y")));
    let gone_digest = Digest::of(&gone.blob);
    push_image(reg.port, "berth/foreign", "gone", &[gone]);
    let store = Store::open(t.path().join("store-gone")).unwrap();
    let r = format!("127.0.0.1:{}/berth/foreign:gone", reg.port);
    let err = pull_blocking(
        &store,
        &r.parse().unwrap(),
        &PullOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(err, RegistryError::ForeignLayer { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&gone_digest.to_string()), "{msg}");
    assert!(msg.contains(&missing), "{msg}");
    assert!(store.refs().unwrap().is_empty());
}

/// The "done when": `berth image pull` from a registry with per-repository token auth,
/// credentials from a docker-credential helper the test provides, through a proxy that cuts
/// the big layer's connection once.
#[test]
fn cli_pull_with_credential_helper_resumes_after_a_cut() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let tokens = start_token_server(dir, "berth", "t0ken-pass", None);
    let reg = start_registry(
        dir,
        Auth::Token {
            realm: &tokens.realm(),
            cert: &dir.join("cert.pem"),
        },
    );
    let layout = dir.join("layout");
    common::oci_layout(
        &layout,
        "test",
        &[tar_of(|b| file(b, "first", b"1")), big_tar()],
        &["gzip", "gzip"],
        serde_json::json!({}),
    );
    push(
        &layout,
        &format!("127.0.0.1:{}/berth/e2e:v1", reg.port),
        Some("berth:t0ken-pass"),
    );
    // Any blob response is cut once after 1 MiB: only the big layer is that long.
    let proxy = start_proxy(
        reg.port,
        ProxyOptions {
            v2_ok: true,
            cut: Some(("/blobs/".into(), 1 << 20, 1)),
            ..Default::default()
        },
    );
    let host = format!("127.0.0.1:{}", proxy.port);
    let bin = dir.join("bin");
    credential_helper(&bin, "berthe2e", &host, "berth", "t0ken-pass");
    let cfg = dir.join("docker");
    docker_config(&cfg, &[], serde_json::json!({"credsStore": "berthe2e"}));
    let root = dir.join("store");
    let name = format!("{host}/berth/e2e:v1");
    let out = Command::new(common::berth_image_bin())
        .args(["pull", "--quiet", &name])
        .env("BERTH_IMAGE_ROOT", &root)
        .env("DOCKER_CONFIG", &cfg)
        .env("PATH", path_with(&bin))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berth image pull: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = proxy.log();
    let cut = log
        .iter()
        .find_map(|l| l.strip_prefix("cut "))
        .unwrap_or_else(|| panic!("nothing was cut: {log:?}"));
    let blob = cut.split_whitespace().next().unwrap();
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("GET {blob} Range: bytes="))),
        "{log:?}"
    );
    assert!(fs::read_to_string(bin.join("berthe2e.log"))
        .unwrap()
        .contains(&format!("get|{host}")));
    assert!(tokens.issued() > 0);
    let store = Store::open(&root).unwrap();
    let (_, d) = store.resolve(&name).unwrap();
    let img = store.image(&d).unwrap();
    let rootfs = dir.join("rootfs");
    store.flatten(&img, &rootfs, &|_| {}).unwrap();
    assert_eq!(
        fs::read(rootfs.join("big/blob.bin")).unwrap(),
        noise(BIG, 1)
    );
}
