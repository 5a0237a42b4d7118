//! Protection of the runtime binary from the container (CVE-2019-5736).
//!
//! A process in the container can reach the runtime binary through `/proc/PID/exe` of a
//! runtime process that has entered the container (`create`'s init before it execs, `exec`),
//! or by making the container's program `#!/proc/self/exe`, and then write to it. runc copies
//! itself into a sealed memfd on every call; that copy costs milliseconds.
//!
//! The cheaper sound mechanism used here: before a command that puts a process into a
//! container, the runtime re-executes itself from a read-only bind mount of its own binary,
//! made in a private mount namespace. `/proc/PID/exe` then refers to the file *through that
//! read-only mount*: opening it for writing fails with `EROFS`, now and after the runtime
//! exits (the detached mount stays read-only), and the container cannot remount a mount that
//! lives in a namespace it has no way to enter. A binary already on a read-only filesystem
//! needs nothing and costs nothing.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

/// Why the runtime could not protect its binary.
#[derive(Debug, thiserror::Error)]
#[error("protect the runtime binary {path}: {op}")]
pub struct ExeError {
    /// The runtime binary.
    pub path: PathBuf,
    /// The step that failed.
    pub op: &'static str,
    /// The errno.
    #[source]
    pub source: Errno,
}

/// Whether the running binary is on a read-only mount (a protected re-exec, or a read-only
/// installation).
pub fn exe_is_read_only() -> bool {
    statvfs("/proc/self/exe").is_ok_and(|st| st.flags().contains(FsFlags::ST_RDONLY))
}

/// Make sure the running binary cannot be written through `/proc/PID/exe`: if it is on a
/// writable mount, re-execute it (with the same arguments and environment) from a read-only
/// bind mount in a private mount namespace. Returns only if no re-exec was needed, or with an
/// error.
///
/// Call it first thing in a command that creates or enters a container, while the process is
/// single-threaded.
pub fn protect() -> Result<(), ExeError> {
    if exe_is_read_only() || exe_is_sealed() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        // Without privileges there is no mount namespace to make: fall back to a sealed
        // in-memory copy (what runc does on every call).
        return reexec_from_sealed_copy();
    }
    let path = std::fs::read_link("/proc/self/exe").map_err(|e| ExeError {
        path: PathBuf::from("/proc/self/exe"),
        op: "readlink",
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let err = |op: &'static str| {
        let path = path.clone();
        move |source| ExeError { path, op, source }
    };
    if path.as_os_str().as_bytes().ends_with(b" (deleted)") {
        // Replaced while running (an upgrade): there is nothing left to overwrite.
        return Ok(());
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(err("unshare the mount namespace"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err("make / rslave"))?;
    mount(
        Some(&path),
        &path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(err("bind mount"))?;
    mount(
        None::<&str>,
        &path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(err("remount read-only"))?;
    let (args, env) = args_and_env();
    let program = CString::new(path.as_os_str().as_bytes()).map_err(|_| ExeError {
        path: path.clone(),
        op: "path has a NUL byte",
        source: Errno::EINVAL,
    })?;
    let e = nix::unistd::execve(&program, &args, &env).unwrap_err();
    Err(err("re-execute")(e))
}

fn args_and_env() -> (Vec<CString>, Vec<CString>) {
    let to_c = |s: OsString| CString::new(s.as_bytes()).ok();
    let args = std::env::args_os().filter_map(to_c).collect();
    let env = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            to_c(kv)
        })
        .collect();
    (args, env)
}

/// Whether the running binary is a sealed memfd (a protected re-exec of the fallback).
fn exe_is_sealed() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GET_SEALS)
        .is_ok_and(|s| s & libc::F_SEAL_WRITE != 0)
}

/// Copy the binary into a sealed memfd and re-execute from it.
fn reexec_from_sealed_copy() -> Result<(), ExeError> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let path = PathBuf::from("/proc/self/exe");
    let err = |op: &'static str| {
        let path = path.clone();
        move |source| ExeError { path, op, source }
    };
    let io_err = |op: &'static str| {
        let path = path.clone();
        move |e: std::io::Error| ExeError {
            path,
            op,
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    };
    let memfd = memfd_create(
        c"berth",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(err("memfd_create"))?;
    let mut src = std::fs::File::open(&path).map_err(io_err("open"))?;
    let mut dst = std::fs::File::from(memfd);
    std::io::copy(&mut src, &mut dst).map_err(io_err("copy into memfd"))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&dst, FcntlArg::F_ADD_SEALS(seals)).map_err(err("seal memfd"))?;
    let (args, env) = args_and_env();
    let e = nix::unistd::fexecve(&dst, &args, &env).unwrap_err();
    Err(err("re-execute from memfd")(e))
}
