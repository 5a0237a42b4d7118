//! OCI runtime bundles from images: rootfs plus a `config.json` a Docker user would expect.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use serde_json::json;

use crate::image::Image;
use crate::layer::safe;
use crate::store::Store;
use crate::unpack::{unmount_overlay, Progress, UnpackError};

/// Default `PATH` when the image sets none.
pub use crate::default_spec::DEFAULT_PATH;

const OVERLAY_STATE: &str = ".berth-overlay";

/// Error building a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Unpacking the rootfs failed.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The image and overrides give no command.
    #[error("no command: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    /// A user or group name is not in the rootfs's /etc/passwd or /etc/group.
    #[error("unable to find {what} {name:?} in the image's {file}")]
    UnknownUser {
        /// `user` or `group`.
        what: &'static str,
        /// The name.
        name: String,
        /// The file searched.
        file: &'static str,
    },
    /// The generated spec did not validate.
    #[error("building runtime spec")]
    Spec(#[source] serde_json::Error),
    /// A symlink or other non-file sits where the bundle's file or directory is to be made.
    #[error("{path} is a {kind}, not a {expected}: refusing to write through it")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
        /// What should be there.
        expected: &'static str,
    },
}

/// Overrides for [`runtime_spec`] and [`create_bundle`].
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// Replace the image's Entrypoint (and drop its Cmd, as `docker run --entrypoint` does).
    pub entrypoint: Option<Vec<String>>,
    /// Replace the image's Cmd.
    pub args: Option<Vec<String>>,
    /// Mount the rootfs as overlayfs over the stored layers instead of copying.
    pub overlay: bool,
}

/// Resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// Read `path` of the image's rootfs (resolved as if chrooted), only if it is a regular file:
/// a FIFO or device there (a hostile image) reads as absent, never blocks or is opened.
fn read_in_root(rootfs: &Path, path: &str) -> Option<String> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let (fd, st) = safe::open_path(
        root.as_fd(),
        OsStr::new(path),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        tracing::warn!(path, "ignoring the image's {path}: not a regular file");
        return None;
    }
    let mut s = String::new();
    safe::reopen_read(&fd, &st)
        .ok()?
        .take(16 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// Resolve Docker's `User` (`name`, `uid`, `name:group`, `uid:gid`) against the rootfs.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ProcessUser, BundleError> {
    let passwd = read_in_root(rootfs, "etc/passwd").unwrap_or_default();
    let group = read_in_root(rootfs, "etc/group").unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let pw = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4);
    let entry = pw
        .clone()
        .find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let (uid, pw_gid, uname) = match (u.parse::<u32>(), &entry) {
        (Ok(n), e) => (
            n,
            e.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
            e.as_ref().map(|f| f[0].to_owned()),
        ),
        (Err(_), Some(f)) => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            Some(f[0].to_owned()),
        ),
        (Err(_), None) if u.is_empty() => (0, 0, Some("root".to_owned())),
        (Err(_), None) => {
            return Err(BundleError::UnknownUser {
                what: "user",
                name: u.to_owned(),
                file: "/etc/passwd",
            })
        }
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let gid = match g {
        None => pw_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| BundleError::UnknownUser {
                    what: "group",
                    name: g.to_owned(),
                    file: "/etc/group",
                })?,
        },
    };
    let mut additional_gids = Vec::new();
    if g.is_none() {
        if let Some(name) = &uname {
            for f in &groups {
                if f[3].split(',').any(|m| m == name) {
                    if let Ok(n) = f[2].parse::<u32>() {
                        if n != gid && !additional_gids.contains(&n) {
                            additional_gids.push(n);
                        }
                    }
                }
            }
        }
    }
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids,
    })
}

/// The runtime spec for an image config: runc's default spec (mounts, capabilities, masked and
/// read-only paths, namespaces) with the image's command, env, cwd, user and labels,
/// `root.path = "rootfs"` (writable, as Docker does) and `terminal = false`.
pub fn runtime_spec(
    config: &ImageConfiguration,
    rootfs: &Path,
    opts: &BundleOptions,
) -> Result<Spec, BundleError> {
    let c = config.config().clone().unwrap_or_default();
    let mut args: Vec<String> = match &opts.entrypoint {
        Some(ep) => ep.clone(),
        None => c.entrypoint().clone().unwrap_or_default(),
    };
    match (&opts.args, &opts.entrypoint) {
        (Some(a), _) => args.extend(a.iter().cloned()),
        (None, None) => args.extend(c.cmd().clone().unwrap_or_default()),
        (None, Some(_)) => {}
    }
    if args.is_empty() {
        return Err(BundleError::NoCommand);
    }
    let mut env = c.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    let user = resolve_user(rootfs, c.user().as_deref().unwrap_or(""))?;
    let cwd = c
        .working_dir()
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    let mut annotations = c.labels().clone().unwrap_or_default();
    if let Some(sig) = c.stop_signal() {
        annotations.insert(
            "org.opencontainers.image.stopSignal".to_owned(),
            sig.clone(),
        );
    }
    let mut user_json = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        user_json["additionalGids"] = json!(user.additional_gids);
    }
    // The default configuration (shared with `berth spec`) with the image's process, a
    // writable rootfs (as Docker's), no terminal, no ambient capabilities (a non-root user
    // gets none, as with Docker), and ociVersion 1.0.2, which every runtime reads.
    let mut spec = crate::default_spec::default_spec("1.0.2");
    let process = &mut spec["process"];
    process["terminal"] = json!(false);
    process["user"] = user_json;
    process["args"] = json!(args);
    process["env"] = json!(env);
    process["cwd"] = json!(cwd);
    if let Some(caps) = process["capabilities"].as_object_mut() {
        caps.remove("ambient");
    }
    spec["root"]["readonly"] = json!(false);
    spec["annotations"] = json!(annotations);
    serde_json::from_value(spec).map_err(BundleError::Spec)
}

/// Create a bundle for `img` in `bundle`: the rootfs (a flattened copy, or with
/// `opts.overlay` an overlayfs mount undone by [`remove_bundle_mount`]) and `config.json`.
///
/// `bundle` is created with mode 0700 when missing (the rootfs holds the image's device nodes
/// and setuid files, which no other user may reach); an existing directory is used as it is,
/// but never through a symlink in its last component. Everything inside is created relative
/// to the bundle's fd and nothing planted there is followed: `rootfs` must not exist, and
/// `config.json` is written to a fresh file (`O_EXCL|O_NOFOLLOW`) renamed over the old one,
/// refused with [`BundleError::NotAFile`] when a symlink or other non-file sits there.
pub fn create_bundle(
    store: &Store,
    img: &Image,
    bundle: &Path,
    opts: &BundleOptions,
    progress: Progress<'_>,
) -> Result<Spec, BundleError> {
    let io = |op, path: &Path| {
        let path = path.to_owned();
        move |source| BundleError::Io { op, path, source }
    };
    let errno = |op, path: &Path| {
        let path = path.to_owned();
        move |e: rustix::io::Errno| BundleError::Io {
            op,
            path,
            source: e.into(),
        }
    };
    if let Some(parent) = bundle.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(bundle) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating", bundle)(e)),
    }
    let dir = rustix::fs::open(
        bundle,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(
        "opening the bundle directory (not through a symlink)",
        bundle,
    ))?;
    let cfg = bundle.join("config.json");
    // Refuse a planted config.json before the (long) unpack, and again when renaming.
    check_file_slot(dir.as_fd(), "config.json", &cfg)?;
    let rootfs = bundle.join("rootfs");
    if opts.overlay {
        rustix::fs::mkdirat(&dir, "rootfs", Mode::from_raw_mode(0o755))
            .map_err(errno("creating", &rootfs))?;
        let target = rustix::fs::openat(
            &dir,
            "rootfs",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno("opening", &rootfs))?;
        let state = bundle.join(OVERLAY_STATE);
        match rustix::fs::mkdirat(&dir, OVERLAY_STATE, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(errno("creating", &state)(e)),
        }
        let st = rustix::fs::statat(&dir, OVERLAY_STATE, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno("stat", &state))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::Directory {
            return Err(BundleError::NotAFile {
                path: state,
                kind: crate::store::kind_name(ft),
                expected: "directory",
            });
        }
        // Mount on the directory made above, whatever its path has become since.
        let via_fd = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
        if let Err(e) = store.mount_overlay(img, &via_fd, &state, progress) {
            let _ = unmount_overlay(&rootfs, &state);
            let _ = rustix::fs::unlinkat(&dir, "rootfs", AtFlags::REMOVEDIR);
            return Err(e.into());
        }
    } else {
        store.flatten_at(img, dir.as_fd(), OsStr::new("rootfs"), &rootfs, progress)?;
    }
    let spec = runtime_spec(&img.config, &rootfs, opts)?;
    let data = serde_json::to_vec_pretty(&spec).map_err(BundleError::Spec)?;
    write_file_at(dir.as_fd(), "config.json", &cfg, &data)?;
    Ok(spec)
}

/// Refuse anything but a regular file (or nothing) at `name` in `dir`.
fn check_file_slot(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<(), BundleError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft != FileType::RegularFile {
                return Err(BundleError::NotAFile {
                    path: shown.to_owned(),
                    kind: crate::store::kind_name(ft),
                    expected: "regular file",
                });
            }
            Ok(())
        }
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(BundleError::Io {
            op: "stat",
            path: shown.to_owned(),
            source: e.into(),
        }),
    }
}

/// Write `data` to `name` in `dir` (0644): into a fresh `O_EXCL|O_NOFOLLOW` file beside it,
/// renamed over `name`, so a symlink planted at either name is never written through.
fn write_file_at(
    dir: BorrowedFd<'_>,
    name: &str,
    shown: &Path,
    data: &[u8],
) -> Result<(), BundleError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = format!(
        ".{name}.berth-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let res = (|| {
        let fd = rustix::fs::openat(
            dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| BundleError::Io {
            op: "creating",
            path: shown.with_file_name(&tmp),
            source: e.into(),
        })?;
        let mut f = fs::File::from(fd);
        f.write_all(data).map_err(|source| BundleError::Io {
            op: "writing",
            path: shown.with_file_name(&tmp),
            source,
        })?;
        check_file_slot(dir, name, shown)?;
        rustix::fs::renameat(dir, tmp.as_str(), dir, name).map_err(|e| BundleError::Io {
            op: "renaming to",
            path: shown.to_owned(),
            source: e.into(),
        })
    })();
    if res.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    res
}

/// Undo an overlay bundle's mount (`bundle/rootfs`) and remove its writable layer.
pub fn remove_bundle_mount(bundle: &Path) -> Result<(), BundleError> {
    unmount_overlay(&bundle.join("rootfs"), &bundle.join(OVERLAY_STATE))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nberth:x:1000:1000::/home:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            d.path().join("etc/group"),
            "root:x:0:\naudio:x:29:berth\nstaff:x:50:\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn users() {
        let r = rootfs();
        assert_eq!(resolve_user(r.path(), "").unwrap().uid, 0);
        assert_eq!(
            resolve_user(r.path(), "berth").unwrap(),
            ProcessUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![29]
            }
        );
        assert_eq!(resolve_user(r.path(), "berth:staff").unwrap().gid, 50);
        assert_eq!(
            resolve_user(r.path(), "42:7").unwrap(),
            ProcessUser {
                uid: 42,
                gid: 7,
                additional_gids: vec![]
            }
        );
        assert!(resolve_user(r.path(), "nobody").is_err());
        assert!(resolve_user(r.path(), "berth:nogroup").is_err());
    }

    #[test]
    fn spec_from_config() {
        let r = rootfs();
        let cfg: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],
            "Env":["A=1"],"WorkingDir":"/srv","User":"berth","Labels":{"l":"v"}},
            "rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let spec = runtime_spec(&cfg, r.path(), &BundleOptions::default()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh", "-c", "echo hi"]);
        assert_eq!(p.cwd().to_str(), Some("/srv"));
        assert_eq!(p.user().uid(), 1000);
        assert!(!p.terminal().unwrap());
        assert_eq!(
            spec.root().as_ref().unwrap().path().to_str(),
            Some("rootfs")
        );
        assert_eq!(spec.annotations().as_ref().unwrap()["l"], "v");
        let o = BundleOptions {
            args: Some(vec!["ls".into()]),
            ..Default::default()
        };
        let spec = runtime_spec(&cfg, r.path(), &o).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_ref().unwrap(),
            &["/bin/sh", "-c", "ls"]
        );
    }
}
