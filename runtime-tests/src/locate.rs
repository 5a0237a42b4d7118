//! Finding the binaries and the rootfs a test needs.
//!
//! Every lookup honours an environment variable first (the Makefile exports them), then falls
//! back to the places a `cargo build` of this workspace puts things.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::SupportError;

/// Environment variable naming the `berth` binary under test.
pub const ENV_BERTH_BIN: &str = "BERTH_BIN";
/// Environment variable naming the static probe binary.
pub const ENV_PROBE: &str = "BERTH_PROBE";
/// Environment variable naming the busybox rootfs directory copied into each bundle.
pub const ENV_ROOTFS: &str = "BERTH_TEST_ROOTFS";

/// The root of the Cargo workspace this crate belongs to.
///
/// ```
/// assert!(runtime_tests::workspace_dir().join("Cargo.toml").exists());
/// ```
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Directories where cargo may have put our binaries, best guess first.
fn target_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // Binaries of a test run live in target/<triple>/<profile>/deps; the binaries one level up.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
            if let Some(up) = dir.parent() {
                dirs.push(up.to_path_buf());
            }
        }
    }
    let mut roots = Vec::new();
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        roots.push(PathBuf::from(t));
    }
    if let Some(t) = option_env!("CARGO_TARGET_DIR") {
        roots.push(PathBuf::from(t));
    }
    roots.push(workspace_dir().join("target"));
    for root in roots {
        for profile in ["debug", "release"] {
            dirs.push(root.join("x86_64-unknown-linux-gnu").join(profile));
            dirs.push(root.join(profile));
        }
    }
    dirs
}

fn find_binary(name: &str, env: &'static str, what: &'static str) -> Result<PathBuf, SupportError> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(SupportError::NotFound {
            what,
            env,
            tried: vec![p],
        });
    }
    let tried: Vec<PathBuf> = target_dirs().into_iter().map(|d| d.join(name)).collect();
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(SupportError::NotFound { what, env, tried })
}

/// The `berth` binary: `$BERTH_BIN`, else the workspace's build output.
///
/// ```no_run
/// let berth = runtime_tests::berth_bin().unwrap();
/// let rt = runtime_tests::Runtime::new(berth).unwrap();
/// ```
pub fn berth_bin() -> Result<PathBuf, SupportError> {
    find_binary("berth", ENV_BERTH_BIN, "berth binary")
}

/// The static probe binary: `$BERTH_PROBE`, else the workspace's build output
/// (`cargo build -p berth-probe`).
pub fn probe_bin() -> Result<PathBuf, SupportError> {
    find_binary("berth-probe", ENV_PROBE, "berth-probe binary")
}

/// The busybox rootfs to copy into bundles: `$BERTH_TEST_ROOTFS`, else
/// `<workspace>/rootfs-fixtures/out/rootfs`, built with `rootfs-fixtures/build-rootfs.sh` if it
/// is missing (under a file lock, so parallel tests build it once).
///
/// ```no_run
/// let rootfs = runtime_tests::rootfs_dir().unwrap();
/// assert!(rootfs.join("bin/busybox").exists());
/// ```
pub fn rootfs_dir() -> Result<PathBuf, SupportError> {
    let dest = match std::env::var_os(ENV_ROOTFS) {
        Some(p) => PathBuf::from(p),
        None => workspace_dir().join("rootfs-fixtures/out/rootfs"),
    };
    if dest.join("bin/busybox").is_file() {
        return Ok(dest);
    }
    let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
    fs::create_dir_all(&parent).map_err(|e| SupportError::io("create dir", &parent, e))?;
    let lock_path = parent.join(".build-rootfs.lock");
    let lock = File::create(&lock_path).map_err(|e| SupportError::io("create", &lock_path, e))?;
    // SAFETY: `lock` is an open file owned by this frame for the whole call; flock has no
    // memory-safety preconditions beyond a valid descriptor. The lock is dropped with the file.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(SupportError::io(
            "flock",
            &lock_path,
            std::io::Error::last_os_error(),
        ));
    }
    if dest.join("bin/busybox").is_file() {
        return Ok(dest);
    }
    let script = workspace_dir().join("rootfs-fixtures/build-rootfs.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(&dest)
        .output()
        .map_err(|e| SupportError::io("run", &script, e))?;
    if !out.status.success() {
        return Err(SupportError::Command {
            command: format!("{} {}", script.display(), dest.display()),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(dest)
}

/// Whether the current process runs as root (most container tests need it).
///
/// ```
/// if !runtime_tests::is_root() {
///     eprintln!("not root: container tests will fail");
/// }
/// ```
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Panics unless the process runs as root: the container tests start real containers, and a
/// missing prerequisite is a failure, never a silent pass.
///
/// ```no_run
/// runtime_tests::require_root();
/// ```
pub fn require_root() {
    assert!(
        is_root(),
        "this test starts real containers and needs root (run `make test` as root)"
    );
}

/// Panics unless `path` exists, naming the Debian package that provides it.
///
/// ```no_run
/// runtime_tests::require_path("/usr/sbin/runc", "runc");
/// ```
pub fn require_path(path: impl AsRef<Path>, package: &str) {
    let path = path.as_ref();
    assert!(
        path.exists(),
        "{} is missing: install the Debian package {package} (`make deps` does)",
        path.display()
    );
}
