//! Mount options and mounting safely inside the container's rootfs.
//!
//! Every destination is resolved with `openat2(RESOLVE_IN_ROOT)` beneath the rootfs, then the
//! mount is made on `/proc/self/fd/N` of the resolved `O_PATH` descriptor. A symlink planted in
//! the rootfs (or swapped in while we work, CVE-2021-30465) can therefore never send a mount to
//! the host.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;

use crate::error::SetupError;
use crate::sys;

/// `MS_NOSYMFOLLOW` (Linux 5.10), which `nix` does not name.
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// The flags that live in the superblock, not in the mount: a bind mount (which shares the
/// superblock of its source) cannot set them.
const SUPERBLOCK_FLAGS: MsFlags = MsFlags::MS_SYNCHRONOUS
    .union(MsFlags::MS_DIRSYNC)
    .union(MsFlags::MS_MANDLOCK)
    .union(MsFlags::MS_LAZYTIME)
    .union(MsFlags::MS_I_VERSION);

/// The atime flags of a mount (`noatime`, `relatime`, `strictatime`).
const ATIME_FLAGS: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// A mount option berth refuses, and why (`create` fails naming it: config.md "Mounts", the
/// runtime MUST generate an error when it cannot apply a property).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mount option {option:?} {reason}")]
pub struct MountOptionError {
    /// The option as written.
    pub option: String,
    /// Why it is refused, e.g. `is not supported by berth (id-mapped mounts)`.
    pub reason: String,
}

/// A mount's `options` list split into flags, propagation, `mount_setattr(2)` attributes and
/// filesystem data: the options of runc 1.1 (`libcontainer/specconv`) and crun
/// (`mount_flags.perf`), see [`MountOptions::for_mount`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags to set.
    pub flags: MsFlags,
    /// Flags the options explicitly clear (`rw`, `suid`, ...), for remounts.
    pub clear: MsFlags,
    /// Propagation flags (`rprivate`, `slave`, ...), applied after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data (`mode=755`, `size=65536k`, ...), comma-joined.
    pub data: String,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `MOUNT_ATTR_*` to set on the mount and every mount beneath it (`rro`, `rnosuid`, ...).
    pub rec_set: u64,
    /// `MOUNT_ATTR_*` to clear on the mount and every mount beneath it (`rrw`, `rsuid`, ...).
    pub rec_clear: u64,
    /// `tmpcopyup`: the new tmpfs starts with a copy of what the directory it covers holds.
    pub tmpcopyup: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
            rec_set: 0,
            rec_clear: 0,
            tmpcopyup: false,
        }
    }
}

/// The flag options: name, flags it sets, flags it clears. (`acl` and `noacl`, which runc 1.1
/// maps to `MS_POSIXACL`, are filesystem options in mount(8), parsed by the filesystem
/// itself, which overrides that flag: they are filesystem data here, as the spec says for
/// options mount(8) knows.)
const FLAG_OPTIONS: &[(&str, MsFlags, MsFlags)] = {
    const E: MsFlags = MsFlags::empty();
    &[
        ("defaults", E, E),
        ("ro", MsFlags::MS_RDONLY, E),
        ("rw", E, MsFlags::MS_RDONLY),
        ("nosuid", MsFlags::MS_NOSUID, E),
        ("suid", E, MsFlags::MS_NOSUID),
        ("nodev", MsFlags::MS_NODEV, E),
        ("dev", E, MsFlags::MS_NODEV),
        ("noexec", MsFlags::MS_NOEXEC, E),
        ("exec", E, MsFlags::MS_NOEXEC),
        ("sync", MsFlags::MS_SYNCHRONOUS, E),
        ("async", E, MsFlags::MS_SYNCHRONOUS),
        ("dirsync", MsFlags::MS_DIRSYNC, E),
        ("remount", MsFlags::MS_REMOUNT, E),
        ("nomand", E, MsFlags::MS_MANDLOCK),
        ("atime", E, MsFlags::MS_NOATIME),
        ("noatime", MsFlags::MS_NOATIME, E),
        ("diratime", E, MsFlags::MS_NODIRATIME),
        ("nodiratime", MsFlags::MS_NODIRATIME, E),
        ("relatime", MsFlags::MS_RELATIME, E),
        ("norelatime", E, MsFlags::MS_RELATIME),
        ("strictatime", MsFlags::MS_STRICTATIME, E),
        ("nostrictatime", E, MsFlags::MS_STRICTATIME),
        ("lazytime", MsFlags::MS_LAZYTIME, E),
        ("nolazytime", E, MsFlags::MS_LAZYTIME),
        ("iversion", MsFlags::MS_I_VERSION, E),
        ("noiversion", E, MsFlags::MS_I_VERSION),
        ("silent", MsFlags::MS_SILENT, E),
        ("loud", E, MsFlags::MS_SILENT),
        ("nosymfollow", MS_NOSYMFOLLOW, E),
        ("symfollow", E, MS_NOSYMFOLLOW),
        ("bind", MsFlags::MS_BIND, E),
        ("rbind", MsFlags::MS_BIND.union(MsFlags::MS_REC), E),
    ]
};

/// The recursive options (`mount_setattr(2)` with `AT_RECURSIVE`, Linux 5.12; runc 1.1's
/// `recAttrFlags`): name, attributes set, attributes cleared.
const RECURSIVE_OPTIONS: &[(&str, u64, u64)] = {
    use libc::{
        MOUNT_ATTR_NOATIME as NOATIME, MOUNT_ATTR_NODEV as NODEV,
        MOUNT_ATTR_NODIRATIME as NODIRATIME, MOUNT_ATTR_NOEXEC as NOEXEC,
        MOUNT_ATTR_NOSUID as NOSUID, MOUNT_ATTR_NOSYMFOLLOW as NOSYMFOLLOW,
        MOUNT_ATTR_RDONLY as RDONLY, MOUNT_ATTR_RELATIME as RELATIME,
        MOUNT_ATTR_STRICTATIME as STRICTATIME, MOUNT_ATTR__ATIME as ATIME,
    };
    &[
        ("rro", RDONLY, 0),
        ("rrw", 0, RDONLY),
        ("rnosuid", NOSUID, 0),
        ("rsuid", 0, NOSUID),
        ("rnodev", NODEV, 0),
        ("rdev", 0, NODEV),
        ("rnoexec", NOEXEC, 0),
        ("rexec", 0, NOEXEC),
        ("rnodiratime", NODIRATIME, 0),
        ("rdiratime", 0, NODIRATIME),
        ("rnosymfollow", NOSYMFOLLOW, 0),
        ("rsymfollow", 0, NOSYMFOLLOW),
        // The atime mode is one field: setting one clears the others. Turning noatime,
        // strictatime or relatime "off" leaves the kernel's default, relatime (as mount(2)
        // does for the non-recursive forms).
        ("rnoatime", NOATIME, ATIME),
        ("ratime", RELATIME, ATIME),
        ("rstrictatime", STRICTATIME, ATIME),
        ("rnostrictatime", RELATIME, ATIME),
        ("rrelatime", RELATIME, ATIME),
        ("rnorelatime", RELATIME, ATIME),
    ]
};

const PROPAGATION_OPTIONS: &[&str] = &[
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
];

/// Options other runtimes know that berth refuses, with the reason.
const REFUSED_OPTIONS: &[(&str, &str)] = &[
    (
        "mand",
        "is not supported: Linux 5.15 and later have no mandatory locking",
    ),
    (
        "rmand",
        "is not supported: Linux 5.15 and later have no mandatory locking",
    ),
    (
        "rnomand",
        "is not supported (a crun extension berth does not implement)",
    ),
    (
        "rsync",
        "is not supported: mount_setattr(2) cannot set sync recursively",
    ),
    (
        "rasync",
        "is not supported: mount_setattr(2) cannot set async recursively",
    ),
    (
        "rdirsync",
        "is not supported: mount_setattr(2) cannot set dirsync recursively",
    ),
    (
        "copy-symlink",
        "is not supported (a crun extension berth does not implement)",
    ),
    (
        "src-nofollow",
        "is not supported (a crun extension berth does not implement)",
    ),
    (
        "dest-nofollow",
        "is not supported (a crun extension berth does not implement)",
    ),
];

/// Every mount option berth applies (what `berth features` lists as `mountOptions`). Any
/// other option is filesystem data, passed to mount(2) for the kernel to accept or refuse
/// (and refused on bind mounts, which take no data).
pub fn supported_options() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = FLAG_OPTIONS
        .iter()
        .map(|(n, _, _)| *n)
        .chain(RECURSIVE_OPTIONS.iter().map(|(n, _, _)| *n))
        .chain(PROPAGATION_OPTIONS.iter().copied())
        .chain(["tmpcopyup"])
        .collect();
    v.sort_unstable();
    v
}

impl MountOptions {
    /// Parse an OCI mount `options` list. Options that are not flags, propagation or
    /// recursive attributes become filesystem data.
    ///
    /// # Errors
    /// An option berth refuses: id-mapped mounts (`idmap`, `ridmap`), `mand` (gone from Linux
    /// 5.15), and crun extensions it does not implement (`copy-symlink`, `src-nofollow`,
    /// `dest-nofollow`, `rsync`, `rasync`, `rdirsync`, `rmand`, `rnomand`).
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<Self, MountOptionError> {
        let mut o = MountOptions::default();
        let mut data = Vec::new();
        for opt in options {
            let opt = opt.as_ref();
            if let Some((_, set, clear)) = FLAG_OPTIONS.iter().find(|(n, _, _)| *n == opt) {
                if opt == "bind" || opt == "rbind" {
                    o.bind = true;
                }
                o.flags = (o.flags - *clear) | *set;
                o.clear = (o.clear - *set) | *clear;
            } else if let Some((_, set, clear)) =
                RECURSIVE_OPTIONS.iter().find(|(n, _, _)| *n == opt)
            {
                o.rec_set = (o.rec_set & !clear) | set;
                o.rec_clear = (o.rec_clear & !set) | clear;
                if *clear == libc::MOUNT_ATTR__ATIME {
                    // The atime mode was chosen: forget an earlier one.
                    o.rec_set = (o.rec_set & !libc::MOUNT_ATTR__ATIME) | set;
                }
            } else if let Some(p) = propagation_flags(opt) {
                o.propagation.push(p);
            } else if opt == "tmpcopyup" {
                o.tmpcopyup = true;
            } else if let Some((_, why)) = REFUSED_OPTIONS.iter().find(|(n, _)| *n == opt) {
                return Err(MountOptionError {
                    option: opt.to_owned(),
                    reason: (*why).to_owned(),
                });
            } else if opt == "idmap"
                || opt == "ridmap"
                || opt.starts_with("idmap=")
                || opt.starts_with("ridmap=")
            {
                return Err(MountOptionError {
                    option: opt.to_owned(),
                    reason: "is not supported: berth does not make id-mapped mounts".to_owned(),
                });
            } else {
                data.push(opt);
            }
        }
        o.data = data.join(",");
        Ok(o)
    }

    /// [`parse`](Self::parse) for a mount of type `typ` (`""` or `none` when not given), with
    /// the checks that depend on it.
    ///
    /// # Errors
    /// Besides those of [`parse`](Self::parse): filesystem data or a superblock flag (`sync`,
    /// `async`, `dirsync`, `lazytime`, `nolazytime`, `iversion`, `noiversion`)
    /// on a bind mount, which shares its source's filesystem and cannot apply them;
    /// `tmpcopyup` on anything but a tmpfs.
    pub fn for_mount<S: AsRef<str>>(typ: &str, options: &[S]) -> Result<Self, MountOptionError> {
        let o = Self::parse(options)?;
        let refuse = |option: &str, reason: &str| MountOptionError {
            option: option.to_owned(),
            reason: reason.to_owned(),
        };
        let is_bind = o.bind || typ == "bind";
        if is_bind {
            if let Some(d) = o.data.split(',').find(|d| !d.is_empty()) {
                return Err(refuse(
                    d,
                    "is not a flag berth knows, and a bind mount takes no filesystem data",
                ));
            }
            // `nomand` always holds (Linux 5.15 and later have no mandatory locking).
            let sb = options.iter().map(AsRef::as_ref).find(|n| {
                *n != "nomand"
                    && FLAG_OPTIONS.iter().any(|(f, set, clear)| {
                        f == n && (*set | *clear).intersects(SUPERBLOCK_FLAGS)
                    })
            });
            if let Some(name) = sb {
                return Err(refuse(
                    name,
                    "changes the filesystem, which a bind mount shares with its source: it \
                     cannot be applied to a bind mount",
                ));
            }
        }
        if o.tmpcopyup && (is_bind || typ != "tmpfs") {
            return Err(refuse("tmpcopyup", "applies only to a tmpfs mount"));
        }
        Ok(o)
    }

    /// Whether the options name an atime mode (`noatime`, `relatime`, `strictatime`).
    pub fn sets_atime(&self) -> bool {
        self.flags.intersects(ATIME_FLAGS)
    }
}

/// The mount flags of a propagation keyword (`rslave` = `MS_SLAVE|MS_REC`).
pub fn propagation_flags(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// What to create at a mount destination that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetKind {
    /// A directory.
    Dir,
    /// An empty regular file (for bind mounts of files).
    File,
}

/// The path of an fd as a mount(2) target: `/proc/self/fd/N`.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// `path` as a relative C string of its normal components (`.` for the root).
pub(crate) fn relative_cstring(path: &Path) -> CString {
    let rel: std::path::PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let bytes = if rel.as_os_str().is_empty() {
        b".".to_vec()
    } else {
        rel.as_os_str().as_bytes().to_vec()
    };
    CString::new(bytes).expect("paths have no NUL")
}

/// Open `path` (container-absolute) beneath `root`, creating it and its missing parents as
/// `kind`; returns an `O_PATH` fd of the final object. Every step is resolved inside `root`.
pub fn open_or_create_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    kind: TargetKind,
) -> Result<OwnedFd, SetupError> {
    let step = "mounts";
    let full = relative_cstring(path);
    match sys::openat_in_root(root, &full, libc::O_PATH, 0) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(SetupError::sys(step, format!("open {}", path.display()), e)),
    }
    if !create_last_in_root(root, path, kind)? {
        create_in_root(root, path, kind)?;
    }
    sys::openat_in_root(root, &full, libc::O_PATH, 0)
        .map_err(|e| SetupError::sys(step, format!("open {}", path.display()), e))
}

/// The common case, in a few system calls: the parent of `path` exists (resolved inside
/// `root`) and only the last component is missing; create it. `false` when that is not the
/// case (a missing parent, a dangling symlink, `..`), for [`create_in_root`] to handle.
fn create_last_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    kind: TargetKind,
) -> Result<bool, SetupError> {
    let names = normal_or_parent_components(path);
    let Some((name, parents)) = names.split_last() else {
        return Ok(false);
    };
    if names.iter().any(|n| n == "..") {
        return Ok(false);
    }
    let parent: std::path::PathBuf = parents.iter().collect();
    let Ok(dir) = sys::openat_in_root(
        root,
        &relative_cstring(&parent),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    ) else {
        return Ok(false);
    };
    match make_entry(dir.as_fd(), name, kind) {
        Ok(()) => Ok(true),
        // Something is there after all (a dangling symlink): the careful way.
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(SetupError::sys(
            "mounts",
            format!("create {}", path.display()),
            e,
        )),
    }
}

/// Create `name` in `dir` (which may be an `O_PATH` fd) as `kind`.
fn make_entry(dir: BorrowedFd<'_>, name: &std::ffi::OsStr, kind: TargetKind) -> Result<(), Errno> {
    match kind {
        TargetKind::File => nix::fcntl::openat(
            dir,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
        TargetKind::Dir => nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755)),
    }
}

/// Create `path` beneath `root` one component at a time, following symlinks the way the
/// container will see them: an absolute target restarts at `root`, `..` stops at `root`, and a
/// dangling link has its target created (inside `root`), as runc does.
fn create_in_root(root: BorrowedFd<'_>, path: &Path, kind: TargetKind) -> Result<(), SetupError> {
    let step = "mounts";
    let err = |op: &str, e| SetupError::sys(step, format!("{op} {}", path.display()), e);
    let mut todo: Vec<std::ffi::OsString> = normal_components(path);
    todo.reverse();
    // The directories walked so far, as fds; the last one is the current directory.
    let reopen_root = || {
        nix::fcntl::openat(
            root,
            ".",
            OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let mut stack: Vec<OwnedFd> = vec![reopen_root().map_err(|e| err("open root for", e))?];
    let mut links = 0;
    while let Some(comp) = todo.pop() {
        let cur = stack.last().expect("root stays").as_fd();
        if comp == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let last = todo.is_empty();
        match nix::fcntl::openat(
            cur,
            comp.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| err("stat in", e))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                    links += 1;
                    if links > 40 {
                        return Err(err("resolve", Errno::ELOOP));
                    }
                    let target = nix::fcntl::readlinkat(cur, comp.as_os_str())
                        .map_err(|e| err("readlink in", e))?;
                    let target = Path::new(&target);
                    if target.is_absolute() {
                        stack.truncate(1);
                    }
                    let mut more = normal_or_parent_components(target);
                    more.reverse();
                    todo.extend(more);
                    continue;
                }
                if last {
                    return Ok(());
                }
                stack.push(fd);
            }
            Err(Errno::ENOENT) => {
                let made = if last {
                    make_entry(cur, &comp, kind)
                } else {
                    make_entry(cur, &comp, TargetKind::Dir)
                };
                match made {
                    Ok(()) | Err(Errno::EEXIST) => todo.push(comp),
                    Err(e) => return Err(err("create", e)),
                }
            }
            Err(e) => return Err(err("open", e)),
        }
    }
    Ok(())
}

fn normal_components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .collect()
}

fn normal_or_parent_components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Like [`open_or_create_in_root`] for a directory, returning a real (not `O_PATH`) directory
/// fd for `*at` calls.
pub fn open_dir_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, SetupError> {
    let opath = open_or_create_in_root(root, path, TargetKind::Dir)?;
    nix::fcntl::openat(
        opath.as_fd(),
        ".",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::sys("mounts", format!("open {}", path.display()), e))
}

/// `ST_NOSYMFOLLOW` of statvfs(2) (Linux 5.10).
const ST_NOSYMFOLLOW: u64 = 0x2000;

/// The per-mount flags of the mount `fd` lives on, as mount(2) flags: `ro`, `nosuid`,
/// `nodev`, `noexec`, `nosymfollow`, `nodiratime` and the atime mode (`strictatime` when
/// neither `noatime` nor `relatime` is set). A bind remount that passes them along changes
/// only what it adds (a bind remount replaces every per-mount flag).
///
/// # Errors
/// The errno of `fstatvfs(2)`.
pub fn mount_flags_of(fd: BorrowedFd<'_>) -> Result<MsFlags, Errno> {
    let f = sys::statvfs_flags(fd)?;
    let mut out = MsFlags::empty();
    for (st, ms) in [
        (libc::ST_RDONLY, MsFlags::MS_RDONLY),
        (libc::ST_NOSUID, MsFlags::MS_NOSUID),
        (libc::ST_NODEV, MsFlags::MS_NODEV),
        (libc::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (libc::ST_NOATIME, MsFlags::MS_NOATIME),
        (libc::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (libc::ST_RELATIME, MsFlags::MS_RELATIME),
        (ST_NOSYMFOLLOW, MS_NOSYMFOLLOW),
    ] {
        if f & st != 0 {
            out |= ms;
        }
    }
    if !out.intersects(MsFlags::MS_NOATIME | MsFlags::MS_RELATIME) {
        out |= MsFlags::MS_STRICTATIME;
    }
    Ok(out)
}

/// The flags of the mount an fd lives on that a bind remount must keep (`nosuid`, `nodev`,
/// `noexec`, `ro` and the atime flags are locked in user namespaces).
pub fn locked_flags(fd: BorrowedFd<'_>) -> MsFlags {
    mount_flags_of(fd).map_or(MsFlags::empty(), |f| {
        f - MsFlags::MS_RDONLY - MsFlags::MS_STRICTATIME
    })
}

/// Remount the bind mount at `target` with `flags` (adds `MS_BIND | MS_REMOUNT`). On `EPERM`
/// retries with the flags the mount already has, which a user namespace may not drop.
pub fn bind_remount(target: &str, fd: BorrowedFd<'_>, flags: MsFlags) -> Result<(), Errno> {
    let f = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(None::<&str>, target, None::<&str>, f, None::<&str>) {
        Err(Errno::EPERM) => mount(
            None::<&str>,
            target,
            None::<&str>,
            f | locked_flags(fd),
            None::<&str>,
        ),
        other => other,
    }
}

/// Remount the bind mount `fd` is the root of with the flags it has (see
/// [`mount_flags_of`]), minus `clear`, plus `add`: only what is asked changes (an atime mode
/// in `add` replaces the current one).
///
/// # Errors
/// The errno of `fstatvfs(2)` or of the remount.
pub fn bind_remount_keeping(fd: BorrowedFd<'_>, add: MsFlags, clear: MsFlags) -> Result<(), Errno> {
    let mut current = mount_flags_of(fd)?;
    if add.intersects(ATIME_FLAGS) {
        current -= ATIME_FLAGS;
    }
    let flags =
        ((current - clear) | add) - MsFlags::MS_BIND - MsFlags::MS_REC - MsFlags::MS_REMOUNT;
    mount(
        None::<&str>,
        fd_path(fd).as_str(),
        None::<&str>,
        flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
        None::<&str>,
    )
}

/// Apply the recursive options (`rro`, `rnosuid`, ...) to the mount `fd` is the root of and
/// every mount beneath it.
///
/// # Errors
/// The errno of `mount_setattr(2)` (`ENOSYS` before Linux 5.12).
pub fn apply_recursive(fd: BorrowedFd<'_>, opts: &MountOptions) -> Result<(), Errno> {
    if opts.rec_set == 0 && opts.rec_clear == 0 {
        return Ok(());
    }
    sys::mount_setattr(fd, true, opts.rec_set, opts.rec_clear)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_default_spec_options() {
        let o = MountOptions::parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]).unwrap();
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.bind);

        let o = MountOptions::parse(&["rbind", "rprivate", "ro", "rw", "nodev"]).unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NODEV
        );
        assert!(o.clear.contains(MsFlags::MS_RDONLY));
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(o.bind);
    }

    #[test]
    fn parse_runc_and_crun_options() {
        let o = MountOptions::parse(&[
            "nosymfollow",
            "lazytime",
            "iversion",
            "dirsync",
            "rro",
            "rnosuid",
            "rnoatime",
            "rstrictatime",
            "tmpcopyup",
        ])
        .unwrap();
        assert!(o.data.is_empty(), "{}", o.data);
        assert_eq!(
            o.flags,
            MS_NOSYMFOLLOW | MsFlags::MS_LAZYTIME | MsFlags::MS_I_VERSION | MsFlags::MS_DIRSYNC
        );
        // The last atime mode wins; setting one clears the whole atime field.
        assert_eq!(
            o.rec_set,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_STRICTATIME
        );
        assert_eq!(o.rec_clear, libc::MOUNT_ATTR__ATIME);
        assert!(o.tmpcopyup);
        let o = MountOptions::parse(&["rro", "rrw", "symfollow"]).unwrap();
        assert_eq!(o.rec_set, 0);
        assert_eq!(o.rec_clear, libc::MOUNT_ATTR_RDONLY);
        assert_eq!(o.clear, MS_NOSYMFOLLOW);
    }

    #[test]
    fn refused_options_are_named() {
        for opt in [
            "idmap",
            "ridmap",
            "idmap=uids=0-1000-10",
            "mand",
            "rsync",
            "rdirsync",
            "copy-symlink",
            "src-nofollow",
            "dest-nofollow",
        ] {
            let e = MountOptions::parse(&["ro", opt]).unwrap_err();
            assert_eq!(e.option, opt);
            assert!(
                e.to_string().starts_with(&format!("mount option {opt:?} ")),
                "{e}"
            );
        }
        // Depending on the mount.
        let e = MountOptions::for_mount("bind", &["rbind", "mode=755"]).unwrap_err();
        assert_eq!(e.option, "mode=755");
        let e = MountOptions::for_mount("none", &["rbind", "sync"]).unwrap_err();
        assert_eq!(e.option, "sync");
        let e = MountOptions::for_mount("proc", &["tmpcopyup"]).unwrap_err();
        assert_eq!(e.option, "tmpcopyup");
        MountOptions::for_mount("tmpfs", &["tmpcopyup", "mode=700", "sync"]).unwrap();
        MountOptions::for_mount("bind", &["rbind", "nomand", "ro", "nosymfollow"]).unwrap();
    }

    #[test]
    fn supported_options_parse_as_flags() {
        let all = supported_options();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        for opt in all {
            let o = MountOptions::parse(&[opt]).unwrap();
            assert!(o.data.is_empty(), "{opt}");
        }
    }

    #[test]
    fn create_in_root_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        // An absolute symlink and a .. symlink that would both leave the root if followed
        // on the host.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::fs::create_dir_all(root.join(outside.strip_prefix("/").unwrap())).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("dotdot")).unwrap();
        let rootfd =
            nix::fcntl::open(&root, OFlag::O_DIRECTORY | OFlag::O_PATH, Mode::empty()).unwrap();
        open_or_create_in_root(rootfd.as_fd(), Path::new("/abs/a/b"), TargetKind::Dir).unwrap();
        open_or_create_in_root(rootfd.as_fd(), Path::new("/dotdot/f"), TargetKind::File).unwrap();
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // What was created landed inside: /abs resolved to <root><outside path>.
        assert!(root
            .join(outside.strip_prefix("/").unwrap())
            .join("a/b")
            .is_dir());
        assert!(root.join("outside/f").is_file());
    }
}
