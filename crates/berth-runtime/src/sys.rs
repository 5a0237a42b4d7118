//! Raw system calls that `nix` does not wrap (or wraps in a way we cannot use).
//!
//! This is the only module of the crate with `unsafe` code. Each function is a thin, typed
//! wrapper: errors come back as [`nix::errno::Errno`], file descriptors as [`OwnedFd`].

pub mod sched;

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// The result of [`clone_fork`], seen from each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// We are the parent; the value is the child's pid in our pid namespace.
    Parent(Pid),
    /// We are the child.
    Child,
}

/// `clone(2)` with fork semantics (no new stack, child continues from here), creating the
/// namespaces in `flags` for the child in the same system call.
///
/// The child gets `SIGCHLD` as its exit signal so the parent can `waitpid` it like a forked child.
///
/// # Safety
/// The calling process must be single-threaded: like `fork`, the child gets a copy of only the
/// calling thread, and locks held by other threads would stay locked forever in the child.
/// Additionally the child must not rely on glibc's cached thread id (no `raise`, no
/// `pthread_kill`): raw `clone` does not update it the way glibc's `fork` does.
pub unsafe fn clone_fork(flags: CloneFlags) -> Result<Forked, Errno> {
    let raw_flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: a null child stack gives fork semantics (the child runs on a copy-on-write copy of
    // our stack); the parent-tid, child-tid and tls arguments are unused because the flags carry
    // no CLONE_PARENT_SETTID, CLONE_CHILD_SETTID or CLONE_SETTLS. The caller guarantees that the
    // process is single-threaded (this function's contract).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            raw_flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    forked(ret)
}

/// What a clone's return value says: an error (with `errno`), the child (0), or the parent
/// (the child's pid).
fn forked(ret: libc::c_long) -> Result<Forked, Errno> {
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// `CLONE_INTO_CGROUP` (Linux 5.7, `include/uapi/linux/sched.h`): libc's constant is an
/// `int` too narrow for it.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// [`clone_fork`], the child starting in the cgroup v2 directory `cgroup` (an fd of that
/// directory, `O_PATH` is enough) instead of its parent's: `clone3(2)` with
/// `CLONE_INTO_CGROUP`. The kernel then takes its cgroup lock only for reading, where a later
/// write of the child's pid to `cgroup.procs` would take it for writing (see
/// [`berth_cgroups::SelfJoin`]).
///
/// Where the kernel refuses that (no `clone3` before Linux 5.3, no `CLONE_INTO_CGROUP`
/// before 5.7, a cgroup that cannot take processes this way, any other reason), a plain
/// [`clone_fork`]; the `bool` says whether the child is in `cgroup` (the caller moves it
/// otherwise, and hears the reason from that). `None`: a plain [`clone_fork`].
///
/// # Safety
/// As for [`clone_fork`]: a single-threaded caller, and a child that does not rely on glibc's
/// cached thread id.
pub unsafe fn clone_fork_into(
    flags: CloneFlags,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<(Forked, bool), Errno> {
    if let Some(cgroup) = cgroup {
        // SAFETY: this function's contract is clone_fork_into_cgroup's.
        match unsafe { clone_fork_into_cgroup(flags, cgroup) } {
            Ok(forked) => return Ok((forked, true)),
            Err(e) => tracing::debug!("clone3(CLONE_INTO_CGROUP): {e}; cloning without"),
        }
    }
    // SAFETY: this function's contract is clone_fork's.
    unsafe { clone_fork(flags) }.map(|forked| (forked, false))
}

/// [`clone_fork_into`]'s `clone3`; its errors are the kernel's.
///
/// # Safety
/// As for [`clone_fork`].
unsafe fn clone_fork_into_cgroup(
    flags: CloneFlags,
    cgroup: BorrowedFd<'_>,
) -> Result<Forked, Errno> {
    let fd = u64::try_from(cgroup.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let args = libc::clone_args {
        // The namespace bits of `flags` are `clone`'s low 32 bits, which clone3 takes as is.
        flags: u64::from(flags.bits() as u32) | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        // clone3 refuses an exit signal with CLONE_PARENT (EINVAL): the child then gets
        // our own exit signal, as clone(2) gives it (the spawn helper's is SIGCHLD).
        exit_signal: if flags.contains(CloneFlags::CLONE_PARENT) {
            0
        } else {
            libc::SIGCHLD as u64
        },
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: fd,
    };
    // SAFETY: `args` is a complete `struct clone_args` (the kernel's version 2 layout, whose
    // size we pass) living for the whole call; it reads it and writes nothing back, as no
    // CLONE_PIDFD / CLONE_PARENT_SETTID / CLONE_CHILD_SETTID / CLONE_SETTLS flag is set. A zero
    // stack gives fork semantics (the child runs on a copy-on-write copy of our stack), which
    // the caller's single-threadedness makes sound (this function's contract). `cgroup` is
    // borrowed, so the fd stays open during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    forked(ret)
}

/// Load the classic BPF program `code` as a seccomp filter of the calling thread
/// (`seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`, Linux 3.17), with the
/// `SECCOMP_FILTER_FLAG_*` bits in `flags`.
///
/// With `SECCOMP_FILTER_FLAG_NEW_LISTENER` in `flags`, returns the notification fd the kernel
/// made (close-on-exec); otherwise `None`. The caller must hold `CAP_SYS_ADMIN` or have set
/// `no_new_privs` (else `EACCES`); a program the kernel refuses is `EINVAL`.
pub fn seccomp_set_mode_filter(
    flags: libc::c_ulong,
    code: &[libc::sock_filter],
) -> Result<Option<OwnedFd>, Errno> {
    let len = libc::c_ushort::try_from(code.len()).map_err(|_| Errno::EINVAL)?;
    let prog = libc::sock_fprog {
        len,
        filter: code.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `code`, `len` instructions that stay borrowed (and unchanged)
    // for the whole call; the kernel copies the program and never writes through the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::addr_of!(prog),
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER == 0 {
        return Ok(None);
    }
    // SAFETY: with NEW_LISTENER the return value is a new fd that the kernel installed for
    // this process just now; nothing else knows its number, so it has one owner.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as RawFd) }))
}

/// Mark every fd from `first` upwards close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`), so nothing the runtime had open leaks into the container's program.
pub fn cloexec_from(first: RawFd) -> Result<(), Errno> {
    // SAFETY: close_range only changes fd flags; with CLOSE_RANGE_CLOEXEC it closes nothing, so
    // no fd owned elsewhere in this process is invalidated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// A detached, read-only bind mount of `path` (`open_tree(OPEN_TREE_CLONE)` then
/// `mount_setattr(MOUNT_ATTR_RDONLY)`, Linux 5.12): an fd of the file through a mount that
/// no mount namespace contains. `ENOSYS` on older kernels.
pub fn detached_read_only_bind(path: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: `path` is NUL-terminated; on success the kernel returns a new fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: a fresh fd from open_tree, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` lives across the call and we pass its exact size; the empty path with
    // AT_EMPTY_PATH names the fd itself.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret)?;
    Ok(fd)
}

/// `mount_setattr(2)` (Linux 5.12) on the mount `fd` is an `O_PATH` fd of (its root or any
/// file on it): set `attr_set` and clear `attr_clr` (`MOUNT_ATTR_*`), on every mount beneath
/// it too when `recursive` (`AT_RECURSIVE`). `ENOSYS` on older kernels.
pub fn mount_setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    attr_set: u64,
    attr_clr: u64,
) -> Result<(), Errno> {
    let attr = libc::mount_attr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `attr` lives across the call and we pass its exact size; the empty path with
    // AT_EMPTY_PATH names the fd itself, which the borrow keeps open.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// The raw `f_flag` of `fstatvfs(2)` (`ST_*`), including the bits `nix` drops
/// (`ST_NOSYMFOLLOW`).
pub fn statvfs_flags(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `st` is a writable statvfs the kernel fills on success; the borrow keeps `fd`
    // open across the call.
    let ret = unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    Errno::result(ret)?;
    // SAFETY: fstatvfs succeeded, so it initialised `st`.
    Ok(unsafe { st.assume_init() }.f_flag)
}

/// Close every fd from `first` to `last` (`close_range(2)`).
///
/// The caller must own them all: fds that other objects of this process still hold become
/// dangling. It is meant for a container-side child that never returns into such code.
pub fn close_range(first: RawFd, last: RawFd) -> Result<(), Errno> {
    // SAFETY: closing fds has no memory-safety effect; the caller vouches (see above) that
    // nothing will use them afterwards.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive and cannot be built).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)` of `path` beneath `dirfd` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`:
/// symlinks (absolute or `..`) are resolved as if `dirfd` were `/`, so nothing outside can be
/// reached. Returns `ENOSYS` on kernels without `openat2`.
pub fn openat_in_root(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> Result<OwnedFd, Errno> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            mode as u64
        } else {
            0
        },
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `how` is a valid open_how that lives across the call and we pass its exact size;
    // `path` is NUL-terminated; the kernel returns a new fd that nothing else owns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = Errno::result(ret)? as RawFd;
    // SAFETY: the kernel just returned this fd to us and nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_open(2)`: a file descriptor that refers to process `pid` and not to a later
/// process that reuses its number.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0 as libc::c_uint) };
    let fd = Errno::result(ret)? as RawFd;
    // SAFETY: the kernel just returned this fd to us and nothing else refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: signal the process the pidfd refers to, race-free against pid reuse.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> Result<(), Errno> {
    // SAFETY: a null siginfo asks the kernel to fill it as kill(2) would; flags must be 0.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// `setdomainname(2)`; `nix` has only `sethostname`.
pub fn setdomainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call; the kernel
    // copies them and does not need NUL termination.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(ret).map(drop)
}

/// `personality(2)` with a raw persona value (the `nix` wrapper only knows flag bits).
pub fn set_personality(persona: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: personality takes an integer and changes only this process's execution domain.
    let ret = unsafe { libc::personality(persona) };
    Errno::result(ret).map(drop)
}

/// `umask(2)`; returns the previous mask.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail and touches only this process's file-creation mask.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Join the session keyring named `name`, creating it (`KEYCTL_JOIN_SESSION_KEYRING`), so the
/// container does not share the caller's keyring.
pub fn join_session_keyring(name: &CStr) -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING) reads the NUL-terminated name, which outlives the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    Errno::result(ret).map(drop)
}

/// Set the calling thread's signal mask to `set` (used in the child right after clone, before
/// it can run anything the parent's mask must not apply to).
pub fn set_sigmask(set: &nix::sys::signal::SigSet) -> Result<(), Errno> {
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(set), None)
}

/// Until the next `execve`, make every signal whose default action ends a process end this
/// one, also when it is the init of a pid namespace (whose default actions the kernel skips):
/// die of the signal where the kernel allows it, else exit with 128 + its number. For init
/// waiting for `start` (as the exec stub does): `kill ID TERM` of a created container ends it,
/// as runc's Go init dies of it. `execve` resets caught signals to their default. Returns the
/// dispositions it replaced, for [`restore_signal_dispositions`] once the wait is over (init's
/// startContainer hooks rely on an ignored SIGPIPE: a hook may close its stdin unread).
pub fn end_on_terminating_signals() -> SavedDispositions {
    extern "C" fn on_signal(sig: libc::c_int) {
        // SAFETY: getpid, kill and _exit are async-signal-safe; the disposition was reset to
        // the default on entry (SA_RESETHAND) and the signal is not blocked (SA_NODEFER).
        unsafe {
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
    }
    let mut saved = SavedDispositions(Vec::new());
    for sig in terminating_signals() {
        // SAFETY: the handler only makes async-signal-safe calls and never returns; replacing
        // the disposition of a signal nothing else in this single-threaded child handles;
        // `act` and `old` are valid sigaction structs for the call.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_RESETHAND | libc::SA_NODEFER;
            libc::sigemptyset(&mut act.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &act, &mut old) == 0 {
                saved.0.push((sig, old));
            }
        }
    }
    saved
}

/// The signals whose default action ends a process (`signal(7)`): all but KILL and STOP (which
/// cannot be caught), CHLD, CONT, URG and WINCH (ignored by default) and TSTP, TTIN and TTOU
/// (stop), and the real-time signals.
fn terminating_signals() -> impl Iterator<Item = libc::c_int> {
    use nix::sys::signal::Signal;
    Signal::iterator()
        .filter(|s| {
            !matches!(
                s,
                Signal::SIGKILL
                    | Signal::SIGSTOP
                    | Signal::SIGCHLD
                    | Signal::SIGCONT
                    | Signal::SIGURG
                    | Signal::SIGWINCH
                    | Signal::SIGTSTP
                    | Signal::SIGTTIN
                    | Signal::SIGTTOU
            )
        })
        .map(|s| s as libc::c_int)
        .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
}

/// Every signal (but KILL and STOP, which cannot change) back to its default action: nothing
/// the runtime or its caller ignores (SIGPIPE, glibc's internal 32 and 33, a `nohup`'s SIGHUP)
/// reaches the container's program; runc's programs start so too (the exec stub does the same).
pub fn default_signal_dispositions() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL for a catchable signal, with a zeroed, valid sigaction.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// Signal dispositions replaced by [`end_on_terminating_signals`].
pub struct SavedDispositions(Vec<(libc::c_int, libc::sigaction)>);

impl std::fmt::Debug for SavedDispositions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SavedDispositions({} signals)", self.0.len())
    }
}

/// Put back the dispositions [`end_on_terminating_signals`] replaced.
pub fn restore_signal_dispositions(saved: SavedDispositions) {
    for (sig, old) in saved.0 {
        // SAFETY: `old` is the disposition the kernel returned for `sig` in this process.
        unsafe {
            libc::sigaction(sig, &old, std::ptr::null_mut());
        }
    }
}

nix::ioctl_write_ptr_bad!(ioctl_set_winsize, libc::TIOCSWINSZ, nix::pty::Winsize);
nix::ioctl_read_bad!(ioctl_get_winsize, libc::TIOCGWINSZ, nix::pty::Winsize);

/// The window size of the terminal `fd` (`TIOCGWINSZ`).
pub fn get_winsize(fd: BorrowedFd<'_>) -> Result<nix::pty::Winsize, Errno> {
    let mut ws = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one Winsize through the pointer, which is valid and writable
    // for the call.
    unsafe { ioctl_get_winsize(fd.as_raw_fd(), &mut ws) }?;
    Ok(ws)
}
nix::ioctl_write_int_bad!(ioctl_set_ctty, libc::TIOCSCTTY);

/// Set the window size of the terminal `fd` (`TIOCSWINSZ`).
pub fn set_winsize(fd: BorrowedFd<'_>, ws: &nix::pty::Winsize) -> Result<(), Errno> {
    // SAFETY: TIOCSWINSZ reads one Winsize through the pointer, which is valid for the call.
    unsafe { ioctl_set_winsize(fd.as_raw_fd(), ws) }.map(drop)
}

/// Make `fd` the controlling terminal of our session (`TIOCSCTTY`, without stealing).
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal) and no pointer.
    unsafe { ioctl_set_ctty(fd.as_raw_fd(), 0) }.map(drop)
}

/// Make `target` (0, 1 or 2) a copy of `fd`, replacing what it was.
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 onto a stdio number replaces that fd in place; stdio fds are not owned by
    // any Rust object in the init process, so no OwnedFd is invalidated.
    let ret = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    Errno::result(ret).map(drop)
}

/// `_exit(2)`: end the process at once, without the atexit handlers and stdio flushing that a
/// forked child must not run (they belong to the runtime it was copied from).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an int by value, never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Take ownership of a raw fd.
///
/// # Safety
/// `fd` must be open and owned by nobody else in this process (a fresh fd from a system call,
/// or one handed to this process for it alone), so that closing it on drop is right.
pub unsafe fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees that `fd` is open and ours alone (this function's contract).
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Arrange for `cmd`'s child, between `fork` and `exec`, to keep the caller's fds
/// 3 .. 3+`kept` (which `std` opens close-on-exec: the flag is cleared), to get `passed[i]` on
/// fd 3+`kept`+i, and `chan` on `chan_target`, which must be 3+`kept`+`passed.len()`.
///
/// The channel is never handed on as a kept fd, even when its number falls in 3 .. 3+`kept`:
/// it is marked close-on-exec there, and only its copy on `chan_target` survives the exec.
/// Every fd to place is first copied above all the target numbers, so that placing one never
/// overwrites another (or the channel) still to be placed.
pub fn pass_fds_on_exec(
    cmd: &mut std::process::Command,
    chan: RawFd,
    chan_target: RawFd,
    kept: u32,
    passed: Vec<RawFd>,
) {
    use std::os::unix::process::CommandExt;
    let first_target = 3 + kept as RawFd;
    assert_eq!(
        chan_target,
        first_target + passed.len() as RawFd,
        "the channel goes right after the passed fds"
    );
    // Allocated here: the hook runs in the forked child, where it must not allocate.
    let mut high: Vec<RawFd> = vec![-1; passed.len() + 1];
    let hook = move || {
        for (slot, fd) in high
            .iter_mut()
            .zip(passed.iter().chain(std::iter::once(&chan)))
        {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) makes a new fd in this forked child's table only
            // and is async-signal-safe; `fd` is open (the parent holds every passed fd and
            // the channel until spawn returns).
            let copy = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, chan_target + 1) };
            if copy < 0 {
                return Err(std::io::Error::last_os_error());
            }
            *slot = copy;
        }
        for fd in 3..first_target {
            // SAFETY: fcntl(F_SETFD) changes one fd's flags in this forked child only; it is
            // async-signal-safe. A closed fd gives EBADF, which is fine (nothing to pass).
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        }
        // SAFETY: as above; the channel's own number (perhaps among the kept ones) is closed
        // at exec: only its copy on `chan_target` reaches the helper.
        unsafe { libc::fcntl(chan, libc::F_SETFD, libc::FD_CLOEXEC) };
        for (target, copy) in (first_target..).zip(high.iter()) {
            // SAFETY: dup2 is async-signal-safe and acts on this child's fd table only; the
            // new fd on `target` is not close-on-exec. `copy` lies above every target.
            if unsafe { libc::dup2(*copy, target) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec in a child of a possibly multithreaded
    // process; it only makes async-signal-safe system calls (fcntl, dup2) and allocates
    // nothing (its buffer was allocated before; Error::last_os_error stores only an errno).
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// The spawn helper's entry (see [`crate::spawn`]): an `.init_array` constructor that glibc
/// runs before `main` in every program linking this library. It costs one `getenv` when the
/// variable is absent; when present, the process is a helper the runtime started and never
/// returns to `main`.
extern "C" fn spawn_helper_hook() {
    SPAWN_HELPER_HOOK_RAN.store(true, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: getenv before main, with one thread, reads the environment glibc set up; the
    // returned pointer is used at once, before anything can change the environment.
    let value = unsafe { libc::getenv(c"_BERTH_SPAWN_HELPER_FD".as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: a non-null getenv result is a NUL-terminated string in the environment.
    let value = unsafe { CStr::from_ptr(value) };
    if let Some(fd) = value.to_str().ok().and_then(|s| s.parse::<RawFd>().ok()) {
        crate::spawn::helper_main(fd);
    }
}

#[used]
#[link_section = ".init_array"]
static SPAWN_HELPER_HOOK: extern "C" fn() = spawn_helper_hook;

/// Set by the constructor, on every start of a program that links it.
static SPAWN_HELPER_HOOK_RAN: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Keep the constructor referenced from the code that relies on it, so that no linker can
/// leave it out of a program that spawns through the helper.
pub fn spawn_helper_hook_linked() -> bool {
    std::hint::black_box(SPAWN_HELPER_HOOK as usize) != 0
}

/// Whether the constructor ran in this process (it has, in a program that links this
/// library and was started normally).
pub fn spawn_helper_hook_ran() -> bool {
    SPAWN_HELPER_HOOK_RAN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether the constructor is part of the main executable (`/proc/self/exe`, what the spawn
/// helper re-executes), not of a shared object loaded later (`dlopen`), whose constructor
/// runs in this process but is missing from a fresh start of the program: the mapping of
/// `/proc/self/maps` that holds the hook's code is of the file `/proc/self/exe` is (same
/// device and inode). Works for static and dynamic programs alike; `false` if either cannot
/// be read.
pub fn spawn_helper_hook_in_main_executable() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(exe) = std::fs::metadata("/proc/self/exe") else {
        return false;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    let addr = SPAWN_HELPER_HOOK as usize as u64;
    for line in maps.lines() {
        // START-END PERMS OFFSET MAJOR:MINOR INODE [PATH]
        let mut f = line.split_ascii_whitespace();
        let (Some(range), Some(_), Some(_), Some(dev), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        if !(start..end).contains(&addr) {
            continue;
        }
        let Some((major, minor)) = dev.split_once(':') else {
            return false;
        };
        let (Ok(major), Ok(minor), Ok(inode)) = (
            u64::from_str_radix(major, 16),
            u64::from_str_radix(minor, 16),
            inode.parse::<u64>(),
        ) else {
            return false;
        };
        return nix::sys::stat::makedev(major, minor) == exe.dev() && inode == exe.ino();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::fd::AsRawFd;

    /// What a shell started with `pass_fds_on_exec` has open: fd number -> what it is.
    fn fds_of_child(
        chan: RawFd,
        chan_target: RawFd,
        kept: u32,
        passed: Vec<RawFd>,
    ) -> BTreeMap<RawFd, String> {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args([
            "-c",
            r#"for f in /proc/$$/fd/*; do echo "${f##*/} $(readlink "$f")"; done"#,
        ])
        .stdout(std::process::Stdio::piped());
        pass_fds_on_exec(&mut cmd, chan, chan_target, kept, passed);
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let (n, what) = l.split_once(' ')?;
                Some((n.parse().ok()?, what.to_owned()))
            })
            .collect()
    }

    fn what(fd: RawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .display()
            .to_string()
    }

    #[test]
    fn the_channel_is_never_passed_as_a_kept_fd() {
        let (chan, _peer) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let c = chan.as_raw_fd();
        // Keep 3 ..= c: the channel's own number is among the kept ones.
        let kept = (c - 2) as u32;
        let target = 3 + kept as RawFd;
        let fds = fds_of_child(c, target, kept, Vec::new());
        assert_eq!(fds.get(&target), Some(&what(c)), "{fds:?}");
        assert_ne!(
            fds.get(&c),
            Some(&what(c)),
            "the channel passed as kept fd {c}: {fds:?}"
        );
    }

    #[test]
    fn passed_fds_land_on_3_and_up_and_nothing_else_of_ours() {
        let (chan, _peer) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (r1, _w1) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (r2, _w2) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let passed = vec![r2.as_raw_fd(), r1.as_raw_fd()];
        let fds = fds_of_child(chan.as_raw_fd(), 5, 0, passed);
        assert_eq!(fds.get(&3), Some(&what(r2.as_raw_fd())), "{fds:?}");
        assert_eq!(fds.get(&4), Some(&what(r1.as_raw_fd())), "{fds:?}");
        assert_eq!(fds.get(&5), Some(&what(chan.as_raw_fd())), "{fds:?}");
        // Only on those numbers (the shell's own fds and what the test runner leaves
        // inheritable may be there too, but not ours again).
        let ours = [
            what(r1.as_raw_fd()),
            what(r2.as_raw_fd()),
            what(chan.as_raw_fd()),
        ];
        let again: Vec<_> = fds
            .iter()
            .filter(|(&n, w)| n > 5 && ours.contains(w))
            .collect();
        assert!(again.is_empty(), "copies reached the child: {fds:?}");
    }
}
