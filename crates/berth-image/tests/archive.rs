//! Loading docker-archive tarballs: one written by skopeo, a multi-image archive in the
//! legacy `docker save` layout, streamed from a pipe, and `berth image load -` on stdin.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use berth_image::archive::{load_tar, LoadOptions};
use berth_image::{Digest, Store};
use common::*;

/// Stream `path` through `cat`, so the loader sees a pipe (no seeking), like stdin.
fn load_from_pipe(store: &Store, path: &Path) -> Vec<berth_image::archive::LoadedImage> {
    let mut cat = Command::new("cat")
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = load_tar(store, cat.stdout.take().unwrap(), &LoadOptions::default()).unwrap();
    assert!(cat.wait().unwrap().success());
    out
}

fn flatten(store: &Store, name: &str, dest: &Path) {
    let (_, d) = store.resolve(name).unwrap();
    let img = store.image(&d).unwrap();
    store.flatten(&img, dest, &|_| {}).unwrap();
}

#[test]
fn skopeo_docker_archive_from_a_pipe() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let l1 = tar_of(|b| {
        dir(b, "etc");
        file(b, "etc/hostname", b"berth\n");
        file(b, "old", b"x");
    });
    let l2 = tar_of(|b| {
        file(b, ".wh.old", b"");
        file(b, "new", b"y");
    });
    oci_layout(
        &layout,
        "test",
        &[l1, l2],
        &["gzip", "none"],
        serde_json::json!({}),
    );
    let archive = t.path().join("docker.tar");
    let out = Command::new("skopeo")
        .args(["copy", "--insecure-policy"])
        .arg(format!("oci:{}:test", layout.display()))
        .arg(format!(
            "docker-archive:{}:berth/single:v1",
            archive.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(t.path().join("store")).unwrap();
    let loaded = load_from_pipe(&store, &archive);
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].names,
        vec!["docker.io/berth/single:v1".to_owned()]
    );
    let rootfs = t.path().join("rootfs");
    flatten(&store, "berth/single:v1", &rootfs);
    assert_eq!(fs::read(rootfs.join("etc/hostname")).unwrap(), b"berth\n");
    assert_eq!(fs::read(rootfs.join("new")).unwrap(), b"y");
    assert!(!rootfs.join("old").exists());
    // Loading again is idempotent.
    assert_eq!(
        load_from_pipe(&store, &archive)[0].manifest,
        loaded[0].manifest
    );
}

fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    entry(b, path, tar::EntryType::Regular, None, data, 0o644);
}

fn config(diff_ids: &[&[u8]], cmd: &str) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|l| Digest::of(l).to_string()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": [cmd]},
        "rootfs": {"type": "layers", "diff_ids": ids},
    }))
    .unwrap()
}

/// Two images sharing a base layer, in the legacy `docker save` layout: `<id>/layer.tar`
/// (one gzip-compressed), a duplicate layer stored as a symlink, `<hex>.json` configs and
/// `manifest.json` listing both with several tags.
fn multi_image_archive(path: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let base = tar_of(|b| {
        dir(b, "etc");
        file(b, "etc/os-release", b"ID=berth\n");
    });
    let one = tar_of(|b| file(b, "one", b"1"));
    let two = tar_of(|b| {
        file(b, "two", b"2");
        file(b, "etc/.wh.os-release", b"");
    });
    let (cfg1, cfg2) = (
        config(&[&base, &one], "/one"),
        config(&[&base, &two], "/two"),
    );
    let id = |data: &[u8]| Digest::of(data).hex().to_owned();
    let manifest = serde_json::json!([
        {"Config": format!("{}.json", id(&cfg1)), "RepoTags": ["berth/one:latest"],
         "Layers": [format!("{}/layer.tar", id(&base)), format!("{}/layer.tar", id(&one))]},
        {"Config": format!("{}.json", id(&cfg2)),
         "RepoTags": ["berth/two:1", "localhost:5000/berth/two:latest"],
         "Layers": ["dup/layer.tar", format!("{}/layer.tar", id(&two))]},
    ]);
    let ar = tar_of(|b| {
        dir(b, &id(&base));
        add(b, &format!("{}/layer.tar", id(&base)), &base);
        add(b, &format!("{}/json", id(&base)), b"{}");
        add(b, &format!("{}/VERSION", id(&base)), b"1.0");
        add(b, &format!("{}/layer.tar", id(&one)), &one);
        add(b, &format!("{}/layer.tar", id(&two)), &gzip(&two));
        dir(b, "dup");
        symlink(b, "dup/layer.tar", &format!("../{}/layer.tar", id(&base)));
        add(b, &format!("{}.json", id(&cfg1)), &cfg1);
        add(b, &format!("{}.json", id(&cfg2)), &cfg2);
        add(b, "repositories", b"{}");
        add(b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    });
    fs::write(path, ar).unwrap();
    (base, one, two)
}

#[test]
fn multi_image_docker_archive() {
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("multi.tar");
    let (base, ..) = multi_image_archive(&archive);
    let store = Store::open(t.path().join("store")).unwrap();
    let loaded = load_from_pipe(&store, &archive);
    assert_eq!(loaded.len(), 2);
    assert_eq!(
        loaded[0].names,
        vec!["docker.io/berth/one:latest".to_owned()]
    );
    assert_eq!(
        loaded[1].names,
        vec![
            "docker.io/berth/two:1".to_owned(),
            "localhost:5000/berth/two:latest".to_owned()
        ]
    );
    assert_eq!(store.refs().unwrap().len(), 3);
    // The shared base layer is one blob, used by both images.
    let i1 = store.image(&loaded[0].manifest).unwrap();
    let i2 = store.image(&loaded[1].manifest).unwrap();
    assert_eq!(i1.layers().unwrap()[0].digest, Digest::of(&base));
    assert_eq!(i2.layers().unwrap()[0].digest, Digest::of(&base));
    assert!(i2.manifest.layers()[1]
        .media_type()
        .to_string()
        .ends_with("gzip"));

    let r1 = t.path().join("r1");
    flatten(&store, "berth/one", &r1);
    assert_eq!(fs::read(r1.join("one")).unwrap(), b"1");
    assert!(r1.join("etc/os-release").exists());
    let r2 = t.path().join("r2");
    flatten(&store, "localhost:5000/berth/two", &r2);
    assert_eq!(fs::read(r2.join("two")).unwrap(), b"2");
    assert!(!r2.join("etc/os-release").exists());
    assert!(!r2.join("one").exists());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn archive_missing_a_layer_is_refused_without_refs() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config(&[b"nothing"], "/x");
    let manifest = serde_json::json!([{
        "Config": "c.json", "RepoTags": ["berth/broken:1"], "Layers": ["missing/layer.tar"],
    }]);
    let ar = tar_of(|b| {
        add(b, "c.json", &cfg);
        add(b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    });
    let path = t.path().join("broken.tar");
    fs::write(&path, ar).unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let f = fs::File::open(&path).unwrap();
    let err = load_tar(&store, f, &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(err, berth_image::archive::ArchiveError::MissingFile(ref p) if p == "missing/layer.tar"),
        "{err:?}"
    );
    assert!(store.refs().unwrap().is_empty());
}

#[test]
fn cli_load_from_stdin() {
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("multi.tar");
    multi_image_archive(&archive);
    let root = t.path().join("store");
    let out = Command::new(berth_image_bin())
        .args(["load", "-"])
        .env("BERTH_IMAGE_ROOT", &root)
        .stdin(fs::File::open(&archive).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "load -: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "Loaded image docker.io/berth/one:latest",
            "Loaded image docker.io/berth/two:1",
            "Loaded image localhost:5000/berth/two:latest"
        ]
    );
    let ls = Command::new(berth_image_bin())
        .args(["--image-root"])
        .arg(&root)
        .arg("ls")
        .output()
        .unwrap();
    let ls = String::from_utf8(ls.stdout).unwrap();
    assert!(ls.contains("berth/one:latest") && ls.contains("localhost:5000/berth/two:latest"));
    // Garbage on stdin is an error, not a crash, and loads nothing.
    let bad = Command::new(berth_image_bin())
        .args(["load", "-"])
        .env("BERTH_IMAGE_ROOT", t.path().join("store2"))
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&[b'x'; 4096])?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!bad.status.success());
    assert!(Store::open(t.path().join("store2"))
        .unwrap()
        .refs()
        .unwrap()
        .is_empty());
}
