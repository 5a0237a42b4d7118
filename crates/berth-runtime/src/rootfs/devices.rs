//! Device nodes and the standard symlinks of the container's `/dev`.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::mount::{fd_path, open_dir_in_root, open_or_create_in_root, TargetKind};
use crate::error::SetupError;

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Container path, e.g. `/dev/null`.
    pub path: PathBuf,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: SFlag,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The devices every Linux container gets (config-linux.md, "Default Devices").
pub fn default_devices() -> Vec<Device> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(path, major, minor)| Device {
        path: path.into(),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

impl Device {
    /// Convert a `linux.devices` entry.
    pub fn from_spec(d: &LinuxDevice) -> Self {
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        Device {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        }
    }
}

/// The default devices plus `linux.devices` (a spec entry replaces a default of the same path).
pub fn devices_for(spec_devices: &[LinuxDevice]) -> Vec<Device> {
    let mut out: Vec<Device> = default_devices()
        .into_iter()
        .filter(|d| !spec_devices.iter().any(|s| s.path() == &d.path))
        .collect();
    out.extend(spec_devices.iter().map(Device::from_spec));
    out
}

/// Create `devices` beneath `root`. In a user namespace, where mknod is not allowed, each device
/// is bind mounted from the host instead.
pub fn create_devices(
    root: BorrowedFd<'_>,
    devices: &[Device],
    bind_from_host: bool,
) -> Result<(), SetupError> {
    for dev in devices {
        if bind_from_host {
            bind_device(root, dev)?;
        } else {
            mknod_device(root, dev)?;
        }
    }
    Ok(())
}

fn split(path: &Path) -> (&Path, &std::ffi::OsStr) {
    (
        path.parent().unwrap_or(Path::new("/")),
        path.file_name().unwrap_or_default(),
    )
}

fn mknod_device(root: BorrowedFd<'_>, dev: &Device) -> Result<(), SetupError> {
    let step = "devices";
    let (parent, name) = split(&dev.path);
    let dir = open_dir_in_root(root, parent)?;
    match unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => {
            return Err(SetupError::sys(
                step,
                format!("remove {}", dev.path.display()),
                e,
            ))
        }
    }
    mknodat(
        dir.as_fd(),
        name,
        dev.kind,
        Mode::from_bits_truncate(dev.mode),
        makedev(dev.major, dev.minor),
    )
    .map_err(|e| SetupError::sys(step, format!("mknod {}", dev.path.display()), e))?;
    fchownat(
        dir.as_fd(),
        name,
        Some(Uid::from_raw(dev.uid)),
        Some(Gid::from_raw(dev.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| SetupError::sys(step, format!("chown {}", dev.path.display()), e))
}

fn bind_device(root: BorrowedFd<'_>, dev: &Device) -> Result<(), SetupError> {
    let step = "devices";
    let target = open_or_create_in_root(root, &dev.path, TargetKind::File)?;
    mount(
        Some(&dev.path),
        fd_path(target.as_fd()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| SetupError::sys(step, format!("bind mount {}", dev.path.display()), e))
}

/// The symlinks of `/dev`: fd, stdin, stdout, stderr, ptmx (to pts/ptmx) and core.
pub fn create_dev_symlinks(root: BorrowedFd<'_>) -> Result<(), SetupError> {
    let dir = open_dir_in_root(root, Path::new("/dev"))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        if name == "ptmx" {
            // A ptmx device node may exist from the rootfs: the symlink must win.
            let _ = unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir);
        }
        match nix::unistd::symlinkat(target, dir.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(SetupError::sys(
                    "devices",
                    format!("symlink /dev/{name}"),
                    e,
                ))
            }
        }
    }
    Ok(())
}

fn rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_owned()));
    r
}

/// The device cgroup rules a container gets after the spec's own (as runc adds them): mknod of
/// anything, the default devices, ptys and tun. Devices of `linux.devices` are not allowed
/// unless `linux.resources.devices` allows them.
pub fn default_cgroup_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let rules = vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(136), None, "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(10), Some(200), "rwm"),
    ];
    rules
}

/// The spec's `linux.resources` with the default device rules appended.
pub fn effective_resources(spec: &oci_spec::runtime::Spec) -> Option<LinuxResources> {
    let linux = spec.linux().as_ref()?;
    let mut r = linux.resources().clone()?;
    let mut rules = r.devices().clone().unwrap_or_default();
    rules.extend(default_cgroup_rules());
    r.set_devices(Some(rules));
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    #[test]
    fn spec_devices_replace_defaults() {
        let fuse = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .file_mode(0o600u32)
            .build()
            .unwrap();
        let null = LinuxDeviceBuilder::default()
            .path("/dev/null")
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .uid(1000u32)
            .build()
            .unwrap();
        let devs = devices_for(&[fuse, null]);
        assert_eq!(devs.len(), 7);
        assert_eq!(
            devs.iter()
                .filter(|d| d.path == Path::new("/dev/null"))
                .count(),
            1
        );
        let null = devs
            .iter()
            .find(|d| d.path == Path::new("/dev/null"))
            .unwrap();
        assert_eq!(null.uid, 1000);
        let fuse = devs
            .iter()
            .find(|d| d.path == Path::new("/dev/fuse"))
            .unwrap();
        assert_eq!((fuse.major, fuse.minor, fuse.mode), (10, 229, 0o600));
    }
}
