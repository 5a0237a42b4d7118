//! Protection of the runtime binary from the container (CVE-2019-5736).
//!
//! A process in the container can reach the runtime binary through `/proc/PID/exe` of a
//! runtime process that has entered the container (`create`'s init before it execs, `exec`),
//! or by making the container's program `#!/proc/self/exe`, and then write to it. runc copies
//! itself into a sealed memfd on every call; that copy costs milliseconds.
//!
//! Two mechanisms here, each used where it is needed:
//!
//! - [`ExecStub`]: a container process never execs its program from the runtime binary. It
//!   execs a tiny stub (built from `stub/exec_stub.rs`, a few kilobytes, no libc) from a sealed
//!   memfd, and the stub execs the program; an init that waits for `start` waits inside the
//!   stub (not dumpable when root). So a `#!/proc/self/exe` program gets the stub, which cannot
//!   be written, and a container's init in its own pid namespace runs runtime code only while
//!   nothing else is in that namespace (and non-dumpable). This costs about a tenth of a
//!   millisecond.
//! - [`protect`]: where runtime code does run where a container process can see it (`exec`, an
//!   init joining an existing pid namespace, `startContainer` hooks run after `start`), the
//!   runtime first re-executes itself from a read-only bind mount of its own binary: a detached
//!   one (`open_tree`, Linux 5.12), else one made in a short-lived child's private mount
//!   namespace and handed back as an fd (the runtime itself stays in its mount namespace).
//!   `/proc/PID/exe` then refers to the file *through that read-only mount*: opening it for
//!   writing fails with `EROFS`, now and after the runtime exits, and the container cannot
//!   remount a mount that is in no namespace it can enter. A binary already on a read-only
//!   filesystem needs nothing and costs nothing. [`init_needs_protection`] says when a
//!   container's init needs it.

use std::ffi::{CStr, CString, OsString};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
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

/// Whether the running binary cannot be written through `/proc/PID/exe`: it is on a read-only
/// mount or is a sealed memfd (what [`protect`] achieves).
pub fn is_protected() -> bool {
    exe_is_read_only() || exe_is_sealed() || exe_is_deleted()
}

/// Whether the running binary was replaced while running (an upgrade): there is nothing left
/// to overwrite.
fn exe_is_deleted() -> bool {
    std::fs::read_link("/proc/self/exe")
        .is_ok_and(|p| p.as_os_str().as_bytes().ends_with(b" (deleted)"))
}

/// Whether a container's init would run runtime code where another process of the container
/// can see it, so that the runtime binary must be [`protect`]ed first: when it joins an
/// existing pid namespace or shares the host's, or when `startContainer` hooks run (after
/// `start`, in the container). (Also when there is no [`ExecStub`]: this build has none, or
/// the kernel refuses an executable memfd.)
pub fn init_needs_protection(spec: &oci_spec::runtime::Spec) -> bool {
    use oci_spec::runtime::LinuxNamespaceType;
    let own_pid_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| {
            nss.iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Pid && ns.path().is_none())
        });
    let start_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .is_some_and(|h| !h.is_empty());
    !own_pid_ns || start_hooks
}

/// The exec stub's executable, built by `build.rs` (x86_64 Linux only).
#[cfg(berth_exec_stub)]
const STUB: Option<&[u8]> = Some(include_bytes!(concat!(env!("OUT_DIR"), "/exec-stub")));
#[cfg(not(berth_exec_stub))]
const STUB: Option<&[u8]> = None;

/// The exec stub in a sealed memfd, made by the runtime before `clone`; the container
/// process execs its program through it ([`ExecStub::exec`]). See the module documentation.
#[derive(Debug)]
pub struct ExecStub {
    fd: OwnedFd,
}

impl ExecStub {
    /// Put the stub in a new sealed, close-on-exec memfd. `None` where this build has no
    /// stub; an error if the memfd cannot be made (e.g. `vm.memfd_noexec=2`).
    pub fn new() -> Result<Option<Self>, ExeError> {
        let Some(bytes) = STUB else {
            return Ok(None);
        };
        let fd = sealed_memfd(c"berth-exec", |f| f.write_all(bytes)).map_err(|(op, source)| {
            ExeError {
                path: PathBuf::from("memfd:berth-exec"),
                op,
                source,
            }
        })?;
        Ok(Some(Self { fd }))
    }

    /// [`new`](Self::new) for a container-side child: without a stub (logged), the caller
    /// must have [`protect`]ed the binary, which the callers check.
    pub(crate) fn for_child() -> Option<Self> {
        Self::new().unwrap_or_else(|e| {
            tracing::debug!("no exec stub: {e}");
            None
        })
    }

    /// The memfd, to pass to another process (the spawn helper, see [`crate::spawn`]).
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The stub from a memfd [`into_fd`](Self::into_fd) gave.
    pub(crate) fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// The memfd's number (a container-side child keeps it open until it execs).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Exec `program` with `args` and `env` through the stub; with `fifo` (an `O_PATH` fd of
    /// the exec fifo, which must not be close-on-exec) the stub first waits for `start`.
    /// Returns only on failure, with the errno of starting the stub (the program's own exec
    /// errors are reported by the stub on stderr).
    ///
    /// `execveat` on the memfd, or, where a seccomp filter or the kernel refuses it, `execve`
    /// of `/proc/self/fd/N`.
    pub fn exec(
        &self,
        fifo: Option<BorrowedFd<'_>>,
        program: &CStr,
        args: &[CString],
        env: &[CString],
    ) -> Errno {
        let control = match fifo {
            Some(f) => CString::new(format!("berth-exec:{}", f.as_raw_fd())),
            None => CString::new("berth-exec"),
        }
        .expect("no NUL");
        let mut argv: Vec<&CStr> = Vec::with_capacity(args.len() + 2);
        argv.push(&control);
        argv.push(program);
        argv.extend(args.iter().map(CString::as_c_str));
        let first = nix::unistd::execveat(
            self.fd.as_fd(),
            c"",
            &argv,
            env,
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        )
        .unwrap_err();
        let by_path =
            CString::new(format!("/proc/self/fd/{}", self.fd.as_raw_fd())).expect("no NUL");
        match nix::unistd::execve(&by_path, &argv, env).unwrap_err() {
            // No /proc in the container: the first error says more.
            Errno::ENOENT => first,
            e => e,
        }
    }
}

/// Make sure the running binary cannot be written through `/proc/PID/exe`: if it is on a
/// writable mount, re-execute it (with the same arguments and environment) from a read-only
/// bind mount: a detached one (Linux 5.12), else one made in a child's private mount namespace
/// and passed back as an fd (the caller's own mount namespace is left alone: a daemon's later
/// mounts stay visible to the host); without privileges, from a sealed memfd copy. Returns
/// only if no re-exec was needed, or with an error.
///
/// Call it first thing in `main` of a program that execs into containers or creates
/// containers whose init needs it ([`init_needs_protection`]), while the process is
/// single-threaded: in a daemon, **before the async runtime (tokio) starts**, since it may
/// re-execute the program from the start, and forks on kernels before 5.12. After it, the
/// process (and the spawn helpers it starts, see [`crate::spawn`]) run from the protected
/// binary. Where it would fork (before 5.12) in a process that already has more than one
/// thread, it fails (`EBUSY`, saying so) instead.
///
/// ```no_run
/// // First thing in main, while single-threaded:
/// berth_runtime::exe::protect().expect("protect the runtime binary");
/// // Only now: tokio::runtime::Builder::new_multi_thread()...
/// ```
pub fn protect() -> Result<(), ExeError> {
    if is_protected() {
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
    let program = CString::new(path.as_os_str().as_bytes()).map_err(|_| ExeError {
        path: path.clone(),
        op: "path has a NUL byte",
        source: Errno::EINVAL,
    })?;
    let (args, env) = args_and_env();
    // Linux 5.12+: a detached read-only bind mount of the binary; no mount namespace to copy.
    let fd = match crate::sys::detached_read_only_bind(&program) {
        Ok(fd) if std::env::var_os("BERTH_TEST_PROTECT_FALLBACK").is_none() => fd,
        other => {
            if let Err(e) = other {
                tracing::debug!("no detached mount: {e}");
            }
            read_only_bind_from_helper(&path, &program)?
        }
    };
    let e = nix::unistd::execveat(
        fd.as_fd(),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(err("re-execute")(e))
}

/// Before Linux 5.12: a read-only bind mount of the binary made in a *child's* private mount
/// namespace, handed back as an `O_PATH` fd (which keeps the mount alive after the child and
/// its namespace are gone). The caller stays in its own mount namespace, so a daemon's later
/// mounts (image layers, volumes) are the host's as before.
fn read_only_bind_from_helper(path: &std::path::Path, program: &CStr) -> Result<OwnedFd, ExeError> {
    use crate::process::channel::Channel;
    tracing::debug!("protect: read-only bind mount made in a helper's mount namespace");
    let err = |op: &'static str| {
        let path = path.to_owned();
        move |source| ExeError { path, op, source }
    };
    if crate::spawn::caller_is_multithreaded() {
        return Err(err(
            "this process has more than one thread: call protect() first thing in main, \
             before any thread (or the async runtime) starts",
        )(Errno::EBUSY));
    }
    let (parent, child) = Channel::pair().map_err(err("socketpair"))?;
    // SAFETY: checked just above: the program is single-threaded (protect() is documented
    // to be called first thing in main); the child runs only the code below and exits with
    // _exit.
    let forked = unsafe { crate::sys::clone_fork(CloneFlags::empty()) }.map_err(err("fork"))?;
    let pid = match forked {
        crate::sys::Forked::Child => {
            drop(parent);
            let code = match bind_read_only_here(program) {
                Ok(fd) => i32::from(child.send_with_fd(&0u8, fd.as_raw_fd()).is_err()),
                Err((_, e)) => {
                    let _ = child.send(&(e as i32));
                    1
                }
            };
            crate::sys::exit_now(code)
        }
        crate::sys::Forked::Parent(pid) => pid,
    };
    drop(child);
    let got = parent.recv_with_fd::<i32>();
    let _ = nix::sys::wait::waitpid(pid, None);
    match got {
        Ok(Some((0, Some(fd)))) => Ok(fd),
        Ok(Some((errno, _))) if errno != 0 => {
            Err(err("bind mount read-only")(Errno::from_raw(errno)))
        }
        Ok(_) => Err(err("bind mount read-only")(Errno::EPROTO)),
        Err(e) => Err(err("receive the read-only binary")(e)),
    }
}

/// In the helper child: a private mount namespace (whose mounts do not reach the host), the
/// binary bound onto itself read-only, opened `O_PATH`.
fn bind_read_only_here(program: &CStr) -> Result<OwnedFd, (&'static str, Errno)> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| ("unshare the mount namespace", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| ("make / rslave", e))?;
    mount(
        Some(program),
        program,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| ("bind mount", e))?;
    mount(
        None::<&str>,
        program,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| ("remount read-only", e))?;
    nix::fcntl::open(
        program,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ("open the read-only binary", e))
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
    let path = PathBuf::from("/proc/self/exe");
    let memfd = sealed_memfd(c"berth", |dst| {
        std::io::copy(&mut std::fs::File::open(&path)?, dst).map(drop)
    })
    .map_err(|(op, source)| ExeError {
        path: path.clone(),
        op,
        source,
    })?;
    let (args, env) = args_and_env();
    let e = nix::unistd::fexecve(&memfd, &args, &env).unwrap_err();
    Err(ExeError {
        path,
        op: "re-execute from memfd",
        source: e,
    })
}

/// A close-on-exec memfd named `name` to be executed, filled by `fill`, then sealed against
/// any change. It says it is executable (`MFD_EXEC`, Linux 6.3; left out where the kernel does
/// not know the flag). Errors carry the step that failed.
fn sealed_memfd(
    name: &CStr,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<OwnedFd, (&'static str, Errno)> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    let fd = match memfd_create(name, flags | MFdFlags::from_bits_retain(libc::MFD_EXEC)) {
        Err(Errno::EINVAL) => memfd_create(name, flags),
        other => other,
    }
    .map_err(|e| ("memfd_create", e))?;
    let mut file = std::fs::File::from(fd);
    fill(&mut file).map_err(|e| {
        (
            "fill memfd",
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| ("seal memfd", e))?;
    Ok(OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> oci_spec::runtime::Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn only_an_init_others_can_see_needs_protection() {
        let own = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        }));
        assert!(!init_needs_protection(&own));
        let joined = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "pid", "path": "/proc/1/ns/pid"}]}
        }));
        assert!(init_needs_protection(&joined));
        let host = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "mount"}]}
        }));
        assert!(init_needs_protection(&host));
        let hooks = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "pid"}]},
            "hooks": {"startContainer": [{"path": "/bin/true"}]}
        }));
        assert!(init_needs_protection(&hooks));
    }

    #[test]
    fn the_fork_fallback_refuses_a_multithreaded_caller() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        assert!(crate::spawn::caller_is_multithreaded());
        let path = std::fs::read_link("/proc/self/exe").unwrap();
        let program = CString::new(path.as_os_str().as_bytes()).unwrap();
        let e = read_only_bind_from_helper(&path, &program).unwrap_err();
        drop(tx);
        let _ = other.join();
        assert_eq!(e.source, Errno::EBUSY);
        assert!(e.to_string().contains("more than one thread"), "{e}");
    }

    #[test]
    fn the_stub_is_a_sealed_executable() {
        let Some(stub) = ExecStub::new().unwrap() else {
            return;
        };
        let seals = nix::fcntl::fcntl(&stub.fd, nix::fcntl::FcntlArg::F_GET_SEALS).unwrap();
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
        assert_ne!(seals & libc::F_SEAL_SEAL, 0);
        assert!(nix::unistd::write(&stub.fd, b"x").is_err());
        let mut head = [0u8; 4];
        nix::sys::uio::pread(&stub.fd, &mut head, 0).unwrap();
        assert_eq!(&head, b"\x7fELF");
    }
}
