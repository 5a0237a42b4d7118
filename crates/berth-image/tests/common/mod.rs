//! Helpers: build layer tars (including hostile ones) and OCI layouts in Rust.
#![allow(dead_code, missing_docs)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_image::Digest;

/// Append an entry with raw (unchecked) path bytes.
pub fn entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    link: Option<&str>,
    data: &[u8],
    mode: u32,
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(data.len() as u64);
    {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
    }
    if let Some(l) = link {
        let ln = &mut h.as_old_mut().linkname;
        ln.fill(0);
        ln[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

pub fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    entry(b, path, tar::EntryType::Regular, None, data, 0o644);
}

pub fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    entry(b, path, tar::EntryType::Directory, None, b"", 0o755);
}

pub fn symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    entry(b, path, tar::EntryType::Symlink, Some(target), b"", 0o777);
}

pub fn hardlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    entry(b, path, tar::EntryType::Link, Some(target), b"", 0o644);
}

pub fn tar_of(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// Build an OCI layout at `dir` with one image made of `layers` (tar bytes, compressed as
/// given by `compress`), tagged `tag`. Returns the manifest digest.
pub fn oci_layout(
    dir: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    compress: &[&str],
    config_extra: serde_json::Value,
) -> Digest {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = Digest::of(data);
        fs::write(blobs.join(d.hex()), data).unwrap();
        d
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        diff_ids.push(Digest::of(l).to_string());
        let c = compress.get(i).copied().unwrap_or("gzip");
        let (blob, mt) = match c {
            "gzip" => (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip"),
            "zstd" => (zstd(l), "application/vnd.oci.image.layer.v1.tar+zstd"),
            _ => (l.clone(), "application/vnd.oci.image.layer.v1.tar"),
        };
        let d = put(&blob);
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": blob.len()}));
    }
    let mut config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin:/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if let serde_json::Value::Object(extra) = config_extra {
        for (k, v) in extra {
            config["config"][k] = v;
        }
    }
    let cdata = serde_json::to_vec(&config).unwrap();
    let cd = put(&cdata);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cdata.len()},
        "layers": descs,
    });
    let mdata = serde_json::to_vec(&manifest).unwrap();
    let md = put(&mdata);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mdata.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    md
}

/// Tar a directory tree (as `docker save` would store a layer), deterministic order.
pub fn tar_dir(root: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b.append_dir_all(".", root).unwrap();
    b.into_inner().unwrap()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Build the busybox fixture rootfs into `dest`.
pub fn busybox_rootfs(dest: &Path) {
    let script = workspace_root().join("rootfs-fixtures/build-rootfs.sh");
    let st = std::process::Command::new("sh")
        .arg(script)
        .arg(dest)
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A `docker save` archive of one image made of `layers` (plain tars stored as
/// `<n>/layer.tar`), tagged `tag`.
pub fn docker_archive(layers: &[Vec<u8>], tag: &str) -> Vec<u8> {
    let ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": ids},
    }))
    .unwrap();
    let names: Vec<String> = (0..layers.len())
        .map(|i| format!("{i}/layer.tar"))
        .collect();
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": [tag], "Layers": names}]);
    tar_of(|b| {
        for (n, l) in names.iter().zip(layers) {
            file(b, n, l);
        }
        file(b, "config.json", &config);
        file(b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    })
}

/// Append a regular-file entry whose name is carried by a PAX `path` record (any bytes),
/// with an innocent name in the ustar header.
pub fn pax_path_file(b: &mut tar::Builder<Vec<u8>>, path: &[u8], data: &[u8]) {
    b.append_pax_extensions([("path", path)]).unwrap();
    file(b, "innocent", data);
}

/// The `berth-image` that the workspace build (`make build`) left beside this test's own
/// profile directory, when it is newer than every source it is built from (both crates'
/// sources and manifests, the workspace manifest and lock file): then no `cargo build` is
/// needed, which otherwise waits for cargo's lock behind every other build and test process.
fn fresh_built_binary() -> Option<PathBuf> {
    fn newest(p: &Path) -> std::time::SystemTime {
        let Ok(m) = fs::symlink_metadata(p) else {
            return std::time::SystemTime::UNIX_EPOCH;
        };
        let own = m.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        if !m.is_dir() {
            return own;
        }
        fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| newest(&e.path()))
            .fold(own, std::cmp::max)
    }
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("berth-image");
    let built = fs::metadata(&bin).ok()?.modified().ok()?;
    let ws = workspace_root();
    let sources = [
        "crates/berth-image/src",
        "crates/berth-image/Cargo.toml",
        "crates/berth-image-cli/src",
        "crates/berth-image-cli/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ];
    sources
        .iter()
        .all(|s| newest(&ws.join(s)) < built)
        .then_some(bin)
}

/// The real `berth-image` binary (`crates/berth-image-cli`): `$BERTH_IMAGE_BIN` when set,
/// else the one in the tests' profile directory when it is newer than its sources
/// ([`fresh_built_binary`]), else built by cargo for the running tests' target dir and profile. `CARGO_BIN_EXE_*` names
/// only a package's own binaries, so this asks cargo to build berth-image-cli's binary (a
/// no-op when it is fresh) and takes the path cargo reports; once per test process.
pub fn berth_image_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("BERTH_IMAGE_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "BERTH_IMAGE_BIN={} is not a file", p.display());
            return p;
        }
        if let Some(p) = fresh_built_binary() {
            return p;
        }
        let mut cargo = std::process::Command::new(env!("CARGO"));
        // Variables cargo sets for the test process would change the build's fingerprints and
        // force a rebuild of the dependency graph; keep only what selects the target dir.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            let keep = matches!(&*k, "CARGO_HOME" | "CARGO_TARGET_DIR" | "RUSTUP_HOME");
            if !keep
                && (k.starts_with("CARGO") || k.starts_with("RUST") || k.starts_with("NEXTEST"))
            {
                cargo.env_remove(&*k);
            }
        }
        let out = cargo
            .args([
                "build",
                "-q",
                "-p",
                "berth-image-cli",
                "--bin",
                "berth-image",
            ])
            .arg("--message-format=json")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "building berth-image failed");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"]["name"] == "berth-image")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no berth-image executable")
    })
    .clone()
}

/// Mount points at or below `dir` (from `/proc/self/mountinfo`): what a test that makes
/// overlay mounts checks is empty at its end, after failures too.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| *p == dir || p.starts_with(&format!("{dir}/")))
        .collect()
}

/// Undoes an `unpack --overlay` bundle when dropped, so that a failing assertion leaves no
/// mount behind; tests still check [`mounts_under`] on their normal path.
pub struct OverlayGuard(pub PathBuf);

impl Drop for OverlayGuard {
    fn drop(&mut self) {
        let _ = berth_image::bundle::remove_bundle_mount(&self.0);
    }
}
