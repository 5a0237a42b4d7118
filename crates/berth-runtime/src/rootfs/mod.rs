//! The container's root filesystem: propagation, the spec's mounts, `/dev`, `pivot_root`,
//! masked and read-only paths.
//!
//! All of it runs in the init process, inside the container's new mount namespace, so nothing
//! done here is visible on the host and everything disappears with the namespace.

mod copyup;
pub mod devices;
pub mod mount;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_cgroups::{FsType, HierarchyMount};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount as sys_mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{Mount, Spec};

use self::mount::{
    apply_recursive, bind_remount, bind_remount_keeping, fd_path, open_dir_in_root,
    open_or_create_in_root, propagation_flags, MountOptions, TargetKind,
};
use crate::error::SetupError;

/// What the rootfs setup needs besides the spec.
#[derive(Debug)]
pub struct RootfsContext<'a> {
    /// The parsed configuration.
    pub spec: &'a Spec,
    /// Absolute rootfs path on the host.
    pub rootfs: &'a Path,
    /// Absolute bundle directory (relative bind sources are resolved against it).
    pub bundle: &'a Path,
    /// How to present each cgroup hierarchy inside the container.
    pub cgroup_mounts: &'a [HierarchyMount],
    /// The container has its own user namespace (no mknod, locked mount flags).
    pub userns: bool,
    /// The container has its own cgroup namespace.
    pub cgroupns: bool,
}

fn nix_mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    sys_mount(src, target, fstype, flags, data)
}

/// The root propagation the spec asks for (`rootfsPropagation`, runc's default `rslave`).
fn root_propagation(spec: &Spec) -> Result<MsFlags, SetupError> {
    match spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
    {
        None => Ok(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        Some(p) => propagation_flags(p)
            .ok_or_else(|| SetupError::msg("rootfs", format!("unknown rootfsPropagation {p:?}"))),
    }
}

/// Prepare the rootfs before `pivot_root`: propagation, bind of the rootfs onto itself, the
/// spec's mounts in order, devices and `/dev` symlinks.
pub(crate) fn prepare(ctx: &RootfsContext<'_>) -> Result<(), SetupError> {
    let step = "rootfs";
    let prop = root_propagation(ctx.spec)?;
    nix_mount(None, "/", None, prop, None)
        .map_err(|e| SetupError::sys(step, "set propagation of /", e))?;
    if prop.contains(MsFlags::MS_SHARED) {
        // pivot_root refuses a shared parent mount: make only the rootfs' parent private.
        make_parent_private(ctx.rootfs)?;
    }
    let rootfs = ctx.rootfs.to_str().ok_or_else(|| {
        SetupError::msg(
            step,
            format!("rootfs path {} is not UTF-8", ctx.rootfs.display()),
        )
    })?;
    nix_mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| SetupError::sys(step, format!("bind mount {rootfs} onto itself"), e))?;
    let root = nix::fcntl::open(
        ctx.rootfs,
        OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::sys(step, format!("open {rootfs}"), e))?;

    for m in ctx.spec.mounts().iter().flatten() {
        mount_one(ctx, root.as_fd(), m)?;
    }
    let spec_devices = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    if dev_is_bind_mount(ctx.spec) {
        // As runc: a /dev bound from elsewhere (docker's -v /dev:/dev) is used as it is;
        // creating devices or links in it would write into its source.
        return Ok(());
    }
    let devs = devices::devices_for(&spec_devices);
    // Without a /dev mount of its own the rootfs' /dev is used as it is, as runc does, but the
    // default devices are still created in it.
    devices::create_devices(root.as_fd(), &devs, ctx.userns)?;
    devices::create_dev_symlinks(root.as_fd())?;
    Ok(())
}

/// Whether one of the spec's mounts is a bind mount on `/dev` (runc's `needsSetupDev`).
fn dev_is_bind_mount(spec: &Spec) -> bool {
    spec.mounts().iter().flatten().any(|m| {
        let dest: PathBuf = container_path(m)
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        bind && dest == Path::new("dev")
    })
}

fn make_parent_private(rootfs: &Path) -> Result<(), SetupError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| SetupError::msg("rootfs", format!("read /proc/self/mountinfo: {e}")))?;
    let mut best: Option<PathBuf> = None;
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = PathBuf::from(unescape_mountinfo(mp));
        if rootfs.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|b| mp.as_os_str().len() > b.as_os_str().len())
        {
            best = Some(mp);
        }
    }
    let parent = best.unwrap_or_else(|| PathBuf::from("/"));
    sys_mount(
        None::<&str>,
        &parent,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| SetupError::sys("rootfs", format!("make {} private", parent.display()), e))
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

fn container_path(m: &Mount) -> PathBuf {
    let d = m.destination();
    if d.is_absolute() {
        d.clone()
    } else {
        Path::new("/").join(d)
    }
}

fn mount_one(ctx: &RootfsContext<'_>, root: BorrowedFd<'_>, m: &Mount) -> Result<(), SetupError> {
    let step = "mounts";
    let dest = container_path(m);
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = MountOptions::for_mount(typ, m.options().as_deref().unwrap_or_default())
        .map_err(|e| SetupError::msg(step, format!("mount on {}: {e}", dest.display())))?;
    let what = |verb: &str| format!("{verb} {} on {}", typ_or_bind(typ, &opts), dest.display());

    if typ == "cgroup" || typ == "cgroup2" {
        mount_cgroups(ctx, root, &dest, &opts)?;
        let mounted = open_or_create_in_root(root, &dest, TargetKind::Dir)?;
        return apply_recursive(mounted.as_fd(), &opts)
            .map_err(|e| SetupError::sys(step, what("set recursive attributes of"), e));
    }
    if opts.bind || typ == "bind" {
        let source = m.source().clone().unwrap_or_default();
        let source = if source.is_absolute() {
            source
        } else {
            ctx.bundle.join(source)
        };
        let src = nix::fcntl::open(&source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| {
                SetupError::sys(step, format!("open bind source {}", source.display()), e)
            })?;
        let is_dir = nix::sys::stat::fstat(src.as_fd())
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
            .map_err(|e| SetupError::sys(step, format!("stat {}", source.display()), e))?;
        let kind = if is_dir {
            TargetKind::Dir
        } else {
            TargetKind::File
        };
        let target = open_or_create_in_root(root, &dest, kind)?;
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        nix_mount(
            Some(&fd_path(src.as_fd())),
            &fd_path(target.as_fd()),
            None,
            flags,
            None,
        )
        .map_err(|e| SetupError::sys(step, what("mount"), e))?;
        let extra = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        let mounted = open_or_create_in_root(root, &dest, kind)?;
        if !extra.is_empty() {
            // Keep what the bind has from its source (nosuid, nodev, ...), add what is asked.
            bind_remount_keeping(mounted.as_fd(), extra, opts.clear)
                .map_err(|e| SetupError::sys(step, what("remount"), e))?;
        }
        apply_recursive(mounted.as_fd(), &opts)
            .map_err(|e| SetupError::sys(step, what("set recursive attributes of"), e))?;
        return set_propagation(&mounted, &opts, &dest);
    }

    // What is at the destination before the mount: a tmpfs keeps its mode, and tmpcopyup
    // copies its content (read through an fd opened now, which stays on the covered directory).
    let covered = open_existing_dir_in_root(root, &dest)?;
    let lower = match (&covered, opts.tmpcopyup) {
        (Some(dir), true) => Some(
            nix::fcntl::openat(
                dir.as_fd(),
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| SetupError::sys(step, format!("open {}", dest.display()), e))?,
        ),
        _ => None,
    };
    let mut data = opts.data.clone();
    let remount = opts.flags.contains(MsFlags::MS_REMOUNT);
    if typ == "tmpfs" && !remount && !data.split(',').any(|d| d.starts_with("mode=")) {
        if let Some(dir) = &covered {
            // As runc and crun: a tmpfs without mode= has the mode of what it covers.
            let st = nix::sys::stat::fstat(dir.as_fd())
                .map_err(|e| SetupError::sys(step, format!("stat {}", dest.display()), e))?;
            let mode = format!("mode={:o}", st.st_mode & 0o7777);
            data = if data.is_empty() {
                mode
            } else {
                format!("{mode},{data}")
            };
        }
    }
    let target = match covered {
        Some(dir) => dir,
        None => open_or_create_in_root(root, &dest, TargetKind::Dir)?,
    };
    let source = m
        .source()
        .as_ref()
        .and_then(|s| s.to_str())
        .unwrap_or(typ)
        .to_owned();
    let data = (!data.is_empty()).then_some(data.as_str());
    // A read-only tmpcopyup tmpfs is made read-only after the copy.
    let late_ro = lower.is_some() && opts.flags.contains(MsFlags::MS_RDONLY);
    let flags = if late_ro {
        opts.flags - MsFlags::MS_RDONLY
    } else {
        opts.flags
    };
    let result = nix_mount(
        Some(&source),
        &fd_path(target.as_fd()),
        Some(typ),
        flags,
        data,
    );
    match result {
        Ok(()) => {}
        // In a user namespace without its own network namespace sysfs cannot be mounted: bind
        // the host's instead, read-only (what runc does for rootless containers).
        Err(Errno::EPERM) if typ == "sysfs" || typ == "mqueue" => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            nix_mount(
                Some(host),
                &fd_path(target.as_fd()),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| SetupError::sys(step, what("bind mount host"), e))?;
        }
        Err(e) => return Err(SetupError::sys(step, what("mount"), e)),
    }
    if opts.tmpcopyup {
        if let Some(lower) = lower {
            let upper = open_dir_in_root(root, &dest)?;
            copyup::copy_tree(lower, upper.as_fd(), &dest)?;
            if late_ro {
                bind_remount_keeping(upper.as_fd(), MsFlags::MS_RDONLY, MsFlags::empty())
                    .map_err(|e| SetupError::sys(step, what("remount read-only"), e))?;
            }
        }
    }
    if opts.propagation.is_empty() && opts.rec_set == 0 && opts.rec_clear == 0 {
        return Ok(());
    }
    let mounted = open_or_create_in_root(root, &dest, TargetKind::Dir)?;
    apply_recursive(mounted.as_fd(), &opts)
        .map_err(|e| SetupError::sys(step, what("set recursive attributes of"), e))?;
    set_propagation(&mounted, &opts, &dest)
}

/// An `O_PATH` fd of the directory at `path` beneath `root`, or `None` when nothing (or
/// something that is not a directory) is there.
fn open_existing_dir_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
) -> Result<Option<OwnedFd>, SetupError> {
    let rel = mount::relative_cstring(path);
    match crate::sys::openat_in_root(root, &rel, libc::O_PATH | libc::O_DIRECTORY, 0) {
        Ok(fd) => Ok(Some(fd)),
        // Nothing there, or not a directory: created (or refused) by the mount as before.
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => Ok(None),
        Err(e) => Err(SetupError::sys(
            "mounts",
            format!("open {}", path.display()),
            e,
        )),
    }
}

fn typ_or_bind(typ: &str, opts: &MountOptions) -> String {
    if opts.bind || typ.is_empty() {
        "bind".into()
    } else {
        typ.into()
    }
}

fn set_propagation(mounted: &OwnedFd, opts: &MountOptions, dest: &Path) -> Result<(), SetupError> {
    for p in &opts.propagation {
        nix_mount(None, &fd_path(mounted.as_fd()), None, *p, None).map_err(|e| {
            SetupError::sys(
                "mounts",
                format!("set propagation of {}", dest.display()),
                e,
            )
        })?;
    }
    Ok(())
}

/// Present the container's cgroups at `dest`: a cgroup2 mount (pure v2), or a tmpfs holding
/// one directory per hierarchy (v1 and hybrid). With a cgroup namespace each hierarchy is a
/// fresh cgroup mount rooted at the namespace; without one the container's own cgroup
/// directory is bind mounted from the host.
fn mount_cgroups(
    ctx: &RootfsContext<'_>,
    root: BorrowedFd<'_>,
    dest: &Path,
    opts: &MountOptions,
) -> Result<(), SetupError> {
    let step = "mounts";
    let base_flags = opts.flags
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME);
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let pure_v2 = ctx.cgroup_mounts.len() == 1 && ctx.cgroup_mounts[0].destination.is_empty();
    if pure_v2 || ctx.cgroup_mounts.is_empty() {
        let target = open_or_create_in_root(root, dest, TargetKind::Dir)?;
        return mount_hierarchy(
            ctx,
            root,
            &target,
            ctx.cgroup_mounts.first(),
            base_flags,
            ro,
            dest,
        );
    }
    let target = open_or_create_in_root(root, dest, TargetKind::Dir)?;
    nix_mount(
        Some("tmpfs"),
        &fd_path(target.as_fd()),
        Some("tmpfs"),
        base_flags,
        Some("mode=755"),
    )
    .map_err(|e| SetupError::sys(step, format!("mount tmpfs on {}", dest.display()), e))?;
    let dir = open_dir_in_root(root, dest)?;
    for h in ctx.cgroup_mounts {
        let sub = dest.join(&h.destination);
        let target = open_or_create_in_root(root, &sub, TargetKind::Dir)?;
        mount_hierarchy(ctx, root, &target, Some(h), base_flags, ro, &sub)?;
        for link in &h.symlinks {
            match nix::unistd::symlinkat(h.destination.as_str(), dir.as_fd(), link.as_str()) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(SetupError::sys(
                        step,
                        format!("symlink {}", dest.join(link).display()),
                        e,
                    ))
                }
            }
        }
    }
    if ro {
        let mounted = open_or_create_in_root(root, dest, TargetKind::Dir)?;
        nix_mount(
            None,
            &fd_path(mounted.as_fd()),
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base_flags,
            Some("mode=755"),
        )
        .map_err(|e| SetupError::sys(step, format!("remount {} ro", dest.display()), e))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn mount_hierarchy(
    ctx: &RootfsContext<'_>,
    root: BorrowedFd<'_>,
    target: &OwnedFd,
    h: Option<&HierarchyMount>,
    flags: MsFlags,
    ro: bool,
    dest: &Path,
) -> Result<(), SetupError> {
    let step = "mounts";
    let tgt = fd_path(target.as_fd());
    let rdonly = if ro {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    let (fstype, data) = match h {
        Some(h) if h.fs_type == FsType::V1 => ("cgroup", h.options.as_str()),
        _ => ("cgroup2", ""),
    };
    if ctx.cgroupns || h.is_none() {
        let data = (!data.is_empty()).then_some(data);
        return nix_mount(Some("cgroup"), &tgt, Some(fstype), flags | rdonly, data).map_err(|e| {
            SetupError::sys(step, format!("mount {fstype} on {}", dest.display()), e)
        });
    }
    let h = h.expect("checked above");
    nix_mount(
        Some(h.host_dir.as_os_str().to_str().unwrap_or_default()),
        &tgt,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| {
        SetupError::sys(
            step,
            format!("bind mount {} on {}", h.host_dir.display(), dest.display()),
            e,
        )
    })?;
    if ro || !flags.is_empty() {
        let mounted = open_or_create_in_root(root, dest, TargetKind::Dir)?;
        bind_remount(&fd_path(mounted.as_fd()), mounted.as_fd(), flags | rdonly)
            .map_err(|e| SetupError::sys(step, format!("remount {}", dest.display()), e))?;
    }
    Ok(())
}

/// Make the rootfs the root: `pivot_root` (the old root is detached), or with `no_pivot` a
/// move of the rootfs mount onto `/` and a `chroot`.
pub(crate) fn pivot(rootfs: &Path, no_pivot: bool) -> Result<(), SetupError> {
    let step = "pivot_root";
    let err = |op: &str, e| SetupError::sys(step, op.to_owned(), e);
    nix::unistd::chdir(rootfs).map_err(|e| err(&format!("chdir {}", rootfs.display()), e))?;
    if no_pivot {
        nix_mount(Some("."), "/", None, MsFlags::MS_MOVE, None)
            .map_err(|e| err("move rootfs to /", e))?;
        nix::unistd::chroot(".").map_err(|e| err("chroot", e))?;
        return nix::unistd::chdir("/").map_err(|e| err("chdir /", e));
    }
    let oldroot = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("open old root", e))?;
    // pivot_root(".", ".") stacks the old root on top of the new one at "/"; unmounting
    // "." afterwards removes exactly the old root (no temporary directory needed).
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    nix::unistd::fchdir(oldroot.as_fd()).map_err(|e| err("fchdir old root", e))?;
    // Never let the detach propagate to the host's mounts.
    nix_mount(None, ".", None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
        .map_err(|e| err("make old root rslave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", e))?;
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))
}

/// After `pivot_root`: masked paths, read-only paths, a read-only root and the final
/// propagation of `/`.
pub(crate) fn finalize(spec: &Spec) -> Result<(), SetupError> {
    let linux = spec.linux().as_ref();
    let mut null = None;
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(p, &mut null)?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly_path(p)?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let root = open_plain("/")?;
        bind_remount_keeping(root.as_fd(), MsFlags::MS_RDONLY, MsFlags::empty())
            .map_err(|e| SetupError::sys("rootfs", "remount / read-only", e))?;
    }
    if let Some(p) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        if let Some(flags) = propagation_flags(p) {
            nix_mount(None, "/", None, flags, None)
                .map_err(|e| SetupError::sys("rootfs", format!("set / {p}"), e))?;
        }
    }
    Ok(())
}

fn open_plain(path: &str) -> Result<OwnedFd, SetupError> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| SetupError::sys("rootfs", format!("open {path}"), e))
}

/// Open a masked or read-only path inside the container (after `pivot_root`, `/` is its
/// root): symlinks are followed inside the root, as runc's mount(2) of the path follows them,
/// magic links (`/proc/self/...`) are refused. `None` when it does not exist (runc skips it).
fn open_listed_path(path: &str, step: &str) -> Result<Option<OwnedFd>, SetupError> {
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::sys(step, "open /", e))?;
    match crate::sys::openat_in_root(
        root.as_fd(),
        &mount::relative_cstring(Path::new(path)),
        libc::O_PATH,
        0,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(SetupError::sys(step, format!("open {path}"), e)),
    }
}

/// The container's `/dev/null`, checked to be the null device (char 1:3) so that masking
/// never binds something else over a path.
fn open_null() -> Result<OwnedFd, SetupError> {
    let step = "maskedPaths";
    let fd = nix::fcntl::open(
        "/dev/null",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::sys(step, "open /dev/null", e))?;
    let st = nix::sys::stat::fstat(fd.as_fd())
        .map_err(|e| SetupError::sys(step, "stat /dev/null", e))?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_chr || st.st_rdev != nix::sys::stat::makedev(1, 3) {
        return Err(SetupError::msg(
            step,
            format!(
                "/dev/null is not the null device (char 1:3): mode {:o}, device {}:{}",
                st.st_mode,
                nix::sys::stat::major(st.st_rdev),
                nix::sys::stat::minor(st.st_rdev)
            ),
        ));
    }
    Ok(fd)
}

fn mask_path(path: &str, null: &mut Option<OwnedFd>) -> Result<(), SetupError> {
    let Some(fd) = open_listed_path(path, "maskedPaths")? else {
        return Ok(());
    };
    let st = nix::sys::stat::fstat(fd.as_fd())
        .map_err(|e| SetupError::sys("maskedPaths", format!("stat {path}"), e))?;
    let target = fd_path(fd.as_fd());
    let res = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        nix_mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k,mode=000"),
        )
    } else {
        if null.is_none() {
            *null = Some(open_null()?);
        }
        let null = null.as_ref().expect("opened above");
        nix_mount(
            Some(fd_path(null.as_fd()).as_str()),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
        )
    };
    res.map_err(|e| SetupError::sys("maskedPaths", format!("mask {path}"), e))
}

fn readonly_path(path: &str) -> Result<(), SetupError> {
    let Some(fd) = open_listed_path(path, "readonlyPaths")? else {
        return Ok(());
    };
    let target = fd_path(fd.as_fd());
    nix_mount(
        Some(target.as_str()),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| SetupError::sys("readonlyPaths", format!("bind {path}"), e))?;
    // The bind is on top now: reopen to reach it, the same way.
    let mounted = open_listed_path(path, "readonlyPaths")?
        .ok_or_else(|| SetupError::sys("readonlyPaths", format!("reopen {path}"), Errno::ENOENT))?;
    // Only ro is added: nosuid, nodev, noexec and the rest stay as they were (as runc).
    bind_remount_keeping(mounted.as_fd(), MsFlags::MS_RDONLY, MsFlags::empty())
        .map_err(|e| SetupError::sys("readonlyPaths", format!("remount {path} read-only"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
