//! How a container-side process comes to exist, safely from any caller.
//!
//! The container's init and an `exec`'d process start as copies of the runtime that then run
//! the runtime's setup code (allocating, formatting, parsing JSON, loading seccomp filters)
//! until they exec the container's program. A copy made by `clone` of a *multithreaded*
//! process has only the calling thread: a lock another thread held (the allocator's, stdio's,
//! a logger's) stays locked in the copy forever, and the setup deadlocks. So:
//!
//! - **Direct** (the fast path, `berth` itself): when the caller is single-threaded (its
//!   `/proc/self/stat` counts one thread), the runtime `clone`s the container process from
//!   itself, with its namespaces, in one system call, as it always did.
//! - **Helper** (the safe path, any thread of a daemon): the runtime starts a fresh copy of its
//!   own binary (`/proc/self/exe`, by `fork` + `exec` with only async-signal-safe steps in
//!   between, which is what `std::process::Command` does), whose only job is to be a
//!   single-threaded parent: a constructor that runs before `main` (an `.init_array` entry of
//!   this library, so an embedder's `main` needs no hook) recognises the helper by an
//!   environment variable naming its end of the channel, reads the container process's
//!   configuration from the channel (JSON, with its fds passed by `SCM_RIGHTS`), `clone`s the
//!   container process with `CLONE_PARENT`, so that it is the *caller's* child (the caller
//!   waits for it by pidfd), sends its pid and exits. From there the container process talks to
//!   the caller over the same channel exactly as on the direct path.
//!
//! As runc's `runc init` does, the safe path costs an exec of the runtime binary per container
//! process (about a millisecond); the library takes it by itself when it sees another thread
//! ([`caller_is_multithreaded`]), or always when the environment variable
//! `BERTH_SPAWN_HELPER=1` is set (for tests of this path through the command line).
//!
//! The binary's protection (CVE-2019-5736, see [`crate::exe`]) is the same on both paths: the
//! helper is the same file as the caller, through the same mount (`exec` of `/proc/self/exe`
//! follows the caller's own exe, a read-only mount after [`crate::exe::protect`]), and the
//! container process it clones is set up exactly as a direct clone is (non-dumpable, every fd
//! closed, its program started through the sealed exec stub).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::{ContainerError, SetupError, SysOp};
use crate::exe::ExecStub;
use crate::ns::NsPlan;
use crate::process::channel::{Channel, ToParent};
use crate::process::exec::ExecConfig;
use crate::process::init::InitConfig;
use crate::sys::{self, Forked};

/// The environment variable that makes a process the spawn helper: its value is the fd number
/// of its end of the channel.
pub(crate) const HELPER_ENV: &str = "_BERTH_SPAWN_HELPER_FD";

/// How long a container-side process may take to answer the runtime at each step of its
/// setup before the runtime gives up, kills it and says which step did not complete: 60 s,
/// or `BERTH_SETUP_TIMEOUT` seconds (see [`crate::ContainerBuilder::setup_timeout`]).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// [`SETUP_TIMEOUT`], or the `BERTH_SETUP_TIMEOUT` environment variable (seconds) if set.
pub fn setup_timeout() -> Duration {
    std::env::var("BERTH_SETUP_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(SETUP_TIMEOUT)
}

/// Whether the calling process has more than one thread (`/proc/self/stat`), so that a
/// container process must not be cloned from it (see the module documentation). An
/// unreadable `/proc` counts as multithreaded: the safe path is always correct.
pub fn caller_is_multithreaded() -> bool {
    crate::procfs::ProcStat::of_self().is_none_or(|st| st.num_threads != 1)
}

/// Whether this spawn takes the helper path.
fn use_helper() -> bool {
    std::env::var_os("BERTH_SPAWN_HELPER").is_some_and(|v| v == "1") || caller_is_multithreaded()
}

/// The standard input, output and error a container process gets, chosen by the embedder
/// (pipes, files, a pty's end): any of them left `None` is inherited from the caller. Ignored
/// when the process has a terminal (`process.terminal`), which then gets the pty.
#[derive(Debug, Clone, Default)]
pub struct Stdio {
    /// Becomes fd 0 of the process.
    pub stdin: Option<Arc<OwnedFd>>,
    /// Becomes fd 1.
    pub stdout: Option<Arc<OwnedFd>>,
    /// Becomes fd 2.
    pub stderr: Option<Arc<OwnedFd>>,
    /// Further fds the process gets, in order, on the numbers right after those kept by
    /// `preserve_fds` (N of them): `fds[i]` becomes fd 3+N+i (3, 4, ... without
    /// `preserve_fds`). For an embedder (a daemon) whose own fds 3.. are its epoll, sockets
    /// and so on, which `preserve_fds` would hand over. A process given fds is started
    /// through the spawn helper ([`crate`]'s `spawn` module), whatever the caller's threads.
    pub fds: Vec<Arc<OwnedFd>>,
}

impl Stdio {
    fn slots(&self) -> [(RawFd, Option<&Arc<OwnedFd>>); 3] {
        [
            (0, self.stdin.as_ref()),
            (1, self.stdout.as_ref()),
            (2, self.stderr.as_ref()),
        ]
    }

    /// In a container-side child right after clone: put the chosen fds on 0, 1 and 2. Each is
    /// first copied above 2, so that one that already sits on 0..=2 is not overwritten by
    /// another before it is placed.
    fn install(&self) -> Result<(), SetupError> {
        let mut moved = Vec::new();
        for (target, fd) in self.slots() {
            if let Some(fd) = fd {
                let copy = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
                    .map_err(|e| SetupError::sys("stdio", format!("dup fd for {target}"), e))?;
                // SAFETY: F_DUPFD_CLOEXEC just made this fd and nothing else refers to it.
                moved.push((target, unsafe { sys::own_fd(copy) }));
            }
        }
        for (target, fd) in &moved {
            sys::dup_onto(fd.as_fd(), *target)
                .map_err(|e| SetupError::sys("stdio", format!("dup2 onto {target}"), e))?;
        }
        Ok(())
    }
}

/// Wait for the next message from a container-side process, at most `limit`: a silence that
/// long is [`ContainerError::Timeout`] naming `step`. `Ok(None)` when the other end closed.
pub(crate) fn recv_within(
    chan: &Channel,
    limit: Duration,
    step: &'static str,
) -> Result<Option<(ToParent, Option<OwnedFd>)>, ContainerError> {
    wait_readable(chan, limit, step)?;
    match chan.recv_with_fd::<ToParent>() {
        Ok(m) => Ok(m),
        Err(Errno::ECONNRESET) => Ok(None),
        Err(e) => Err(ContainerError::sys(SysOp::Receive { step }, e)),
    }
}

/// Block until `chan` has a message (or its peer closed), at most `limit`.
pub(crate) fn wait_readable(
    chan: &Channel,
    limit: Duration,
    step: &'static str,
) -> Result<(), ContainerError> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ContainerError::Timeout { step, limit });
        }
        let mut fds = [PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => return Err(ContainerError::sys(SysOp::PollChannel { step }, e)),
        }
    }
}

/// What the helper is asked to clone.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Init(Box<InitWire>),
    Exec(Box<ExecWire>),
}

/// [`InitConfig`] without its fds (which follow the request, one message each, in the order
/// of the `has_*` flags).
#[derive(Debug, Serialize, Deserialize)]
struct InitWire {
    id: String,
    spec: oci_spec::runtime::Spec,
    rootfs: PathBuf,
    bundle: PathBuf,
    ns_new: i32,
    ns_join: Vec<(i32, PathBuf)>,
    uid_mappings: Vec<oci_spec::runtime::LinuxIdMapping>,
    gid_mappings: Vec<oci_spec::runtime::LinuxIdMapping>,
    cgroup_mounts: Vec<berth_cgroups::HierarchyMount>,
    /// Its fds follow the `has_*` ones.
    cgroup_join: Option<JoinWire>,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: u32,
    has_create_runtime_hooks: bool,
    unprivileged_runtime: bool,
    clone_flags: i32,
    fds: [bool; 3],
    seccomp: Option<crate::seccomp::Program>,
}

/// A [`berth_cgroups::SelfJoin`] without its fds: the paths of its v1 `tasks` files and
/// unified directory, whose fds follow in this order.
#[derive(Debug, Serialize, Deserialize)]
struct JoinWire {
    tasks: Vec<PathBuf>,
    unified: Option<PathBuf>,
}

impl JoinWire {
    /// The paths of `join`; its fds go to the end of `passed`.
    fn pack(join: berth_cgroups::SelfJoin, passed: &mut Vec<OwnedFd>) -> JoinWire {
        let (tasks, unified) = join.into_parts();
        let mut paths = Vec::with_capacity(tasks.len());
        for (path, fd) in tasks {
            paths.push(path);
            passed.push(fd);
        }
        let unified = unified.map(|(path, fd)| {
            passed.push(fd);
            path
        });
        JoinWire {
            tasks: paths,
            unified,
        }
    }

    /// The [`berth_cgroups::SelfJoin`] again, each path with the next fd `next_fd` gives.
    fn unpack(
        self,
        mut next_fd: impl FnMut() -> Result<OwnedFd, SetupError>,
    ) -> Result<berth_cgroups::SelfJoin, SetupError> {
        let mut with_fd = |path: PathBuf| next_fd().map(|fd| (path, fd));
        let tasks = self
            .tasks
            .into_iter()
            .map(&mut with_fd)
            .collect::<Result<_, _>>()?;
        let unified = self.unified.map(with_fd).transpose()?;
        Ok(berth_cgroups::SelfJoin::from_parts(tasks, unified))
    }
}

/// [`ExecConfig`] without its fds.
#[derive(Debug, Serialize, Deserialize)]
struct ExecWire {
    process: oci_spec::runtime::Process,
    linux: Option<oci_spec::runtime::Linux>,
    namespaces: Vec<(i32, PathBuf)>,
    root: PathBuf,
    preserve_fds: u32,
    fds: [bool; 2],
    seccomp: Option<crate::seccomp::Program>,
    /// Its fds follow the `has_*` ones.
    cgroup_join: Option<JoinWire>,
}

/// Marks one fd passed to the helper: first the memfd holding the request (JSON), then the
/// request's own fds.
#[derive(Debug, Serialize, Deserialize)]
struct PassedFd;

/// `request` as JSON in a new memfd.
fn request_memfd(request: &Request) -> Result<OwnedFd, ContainerError> {
    use std::io::Write;
    let data = serde_json::to_vec(request).map_err(|e| ContainerError::Protocol {
        step: "the spawn helper",
        got: format!("a request that cannot be written as JSON: {e}"),
    })?;
    let fd = nix::sys::memfd::memfd_create(
        c"berth-spawn-request",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
    )
    .map_err(|e| ContainerError::sys(SysOp::MemfdCreate, e))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&data).map_err(|source| ContainerError::Io {
        op: "write the spawn request to",
        path: "memfd:berth-spawn-request".into(),
        source,
    })?;
    Ok(OwnedFd::from(file))
}

/// The container process to start.
pub(crate) enum Child {
    /// A container's init, cloned with these flags.
    Init(Box<InitConfig>, CloneFlags),
    /// The first child of an `exec` (it forks the process into the container itself).
    Exec(Box<ExecConfig>),
}

impl Child {
    fn clone_flags(&self) -> CloneFlags {
        match self {
            Child::Init(_, flags) => *flags,
            Child::Exec(_) => CloneFlags::empty(),
        }
    }

    /// The unified cgroup to clone the process into.
    fn cgroup(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            Child::Init(cfg, _) => cfg.cgroup_join.as_ref().and_then(|j| j.unified()),
            Child::Exec(_) => None,
        }
    }

    fn preserve_fds(&self) -> u32 {
        match self {
            Child::Init(c, _) => c.preserve_fds,
            Child::Exec(c) => c.preserve_fds,
        }
    }

    /// The request and the fds that follow it.
    fn into_request(self) -> (Request, Vec<OwnedFd>) {
        match self {
            Child::Init(cfg, flags) => {
                let InitConfig {
                    id,
                    spec,
                    rootfs,
                    bundle,
                    ns,
                    cgroup_mounts,
                    cgroup_join,
                    fifo,
                    console_socket,
                    no_pivot,
                    no_new_keyring,
                    preserve_fds,
                    has_create_runtime_hooks,
                    unprivileged_runtime,
                    exec_stub,
                    seccomp,
                } = *cfg;
                let NsPlan {
                    new,
                    join,
                    uid_mappings,
                    gid_mappings,
                } = ns;
                let stub = exec_stub.map(ExecStub::into_fd);
                let fds = [fifo.is_some(), console_socket.is_some(), stub.is_some()];
                let mut passed: Vec<OwnedFd> =
                    [fifo, console_socket, stub].into_iter().flatten().collect();
                let cgroup_join = cgroup_join.map(|join| JoinWire::pack(join, &mut passed));
                let wire = InitWire {
                    id,
                    spec,
                    rootfs,
                    bundle,
                    ns_new: new.bits(),
                    ns_join: join.into_iter().map(|(f, p)| (f.bits(), p)).collect(),
                    uid_mappings,
                    gid_mappings,
                    cgroup_mounts,
                    cgroup_join,
                    no_pivot,
                    no_new_keyring,
                    preserve_fds,
                    has_create_runtime_hooks,
                    unprivileged_runtime,
                    clone_flags: flags.bits(),
                    fds,
                    seccomp,
                };
                (Request::Init(Box::new(wire)), passed)
            }
            Child::Exec(cfg) => {
                let ExecConfig {
                    process,
                    linux,
                    namespaces,
                    root,
                    console_socket,
                    preserve_fds,
                    exec_stub,
                    seccomp,
                    cgroup_join,
                } = *cfg;
                let stub = exec_stub.map(ExecStub::into_fd);
                let fds = [console_socket.is_some(), stub.is_some()];
                let mut passed: Vec<OwnedFd> =
                    [console_socket, stub].into_iter().flatten().collect();
                let cgroup_join = cgroup_join.map(|join| JoinWire::pack(join, &mut passed));
                let wire = ExecWire {
                    process,
                    linux,
                    namespaces: namespaces.into_iter().map(|(f, p)| (f.bits(), p)).collect(),
                    root,
                    preserve_fds,
                    fds,
                    seccomp,
                    cgroup_join,
                };
                (Request::Exec(Box::new(wire)), passed)
            }
        }
    }

    /// The container-side entry point of this child. Never returns.
    fn run(self, stdio: &Stdio, chan: Channel) -> ! {
        if let Err(e) = stdio.install() {
            crate::process::report_and_exit(&chan, "stdio", e);
        }
        match self {
            Child::Init(cfg, _) => crate::process::init::child_main(*cfg, chan),
            Child::Exec(cfg) => crate::process::exec::child_main(*cfg, chan),
        }
    }
}

/// A container-side process just started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spawned {
    pub pid: Pid,
    /// It started in the container's unified (cgroup2) cgroup, `clone3(CLONE_INTO_CGROUP)`
    /// with [`berth_cgroups::SelfJoin::unified`]; else the caller moves it there.
    pub in_unified_cgroup: bool,
}

/// Start `child`. Its messages come on `parent_chan`; `child_chan` is the other end. Direct
/// `clone` for a single-threaded caller, else through the helper (see the module
/// documentation). `limit` bounds the wait for the helper.
pub(crate) fn spawn(
    child: Child,
    stdio: &Stdio,
    parent_chan: &Channel,
    child_chan: Channel,
    limit: Duration,
) -> Result<Spawned, ContainerError> {
    // Fds to place on given numbers: the helper's exec places them (a clone of the caller
    // would have to renumber the runtime's own fds first).
    if use_helper() || !stdio.fds.is_empty() {
        tracing::debug!(
            "spawn: through the spawn helper (multithreaded caller, fds to pass or \
             BERTH_SPAWN_HELPER=1)"
        );
        return spawn_by_helper(child, stdio, parent_chan, child_chan, limit);
    }
    let flags = child.clone_flags();
    // SAFETY: the caller is single-threaded (checked just above, from /proc/self/stat; it
    // cannot start a thread while it is in here), and the child only runs `Child::run`, which
    // never uses glibc's cached tid.
    let (forked, in_unified_cgroup) = unsafe { sys::clone_fork_into(flags, child.cgroup()) }
        .map_err(|e| ContainerError::sys(SysOp::Clone(flags), e))?;
    match forked {
        Forked::Child => child.run(stdio, child_chan),
        Forked::Parent(pid) => Ok(Spawned {
            pid,
            in_unified_cgroup,
        }),
    }
}

fn spawn_by_helper(
    child: Child,
    stdio: &Stdio,
    parent_chan: &Channel,
    child_chan: Channel,
    limit: Duration,
) -> Result<Spawned, ContainerError> {
    helper_available(
        sys::spawn_helper_hook_linked() && sys::spawn_helper_hook_ran(),
        sys::spawn_helper_hook_in_main_executable(),
    )?;
    let preserve = child.preserve_fds();
    let chan_fd = 3 + preserve as RawFd;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0("berth-spawn-helper")
        .env(HELPER_ENV, chan_fd.to_string());
    for (target, fd) in stdio.slots() {
        let Some(fd) = fd else { continue };
        let copy = fd.try_clone().map_err(|source| ContainerError::Io {
            op: "duplicate the stdio fd of",
            path: format!("fd {target}").into(),
            source,
        })?;
        match target {
            0 => cmd.stdin(copy),
            1 => cmd.stdout(copy),
            _ => cmd.stderr(copy),
        };
    }
    // `preserve` counts the fds passed by number, placed right after those kept.
    let passed: Vec<RawFd> = stdio.fds.iter().map(|f| f.as_raw_fd()).collect();
    let kept = preserve.saturating_sub(passed.len() as u32);
    sys::pass_fds_on_exec(
        &mut cmd,
        child_chan.as_fd().as_raw_fd(),
        chan_fd,
        kept,
        passed,
    );
    let mut helper = cmd.spawn().map_err(|source| ContainerError::Io {
        op: "start the spawn helper",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    drop(child_chan);
    let result = talk_to_helper(child, parent_chan, limit);
    // It exits right after it has cloned (or failed); on our error, make sure of it.
    if result.is_err() {
        let _ = helper.kill();
    }
    let _ = helper.wait();
    result
}

/// Refuse at once when a helper started from `/proc/self/exe` could not work: the constructor
/// did not run here (`ran`), or it is not in the main executable (`in_main`: the library was
/// loaded with `dlopen`, and the program itself lacks the hook), so the helper would run the
/// program's own `main` instead of cloning, and the caller would wait for nothing.
fn helper_available(ran: bool, in_main: bool) -> Result<(), ContainerError> {
    if !ran {
        return Err(ContainerError::SpawnHelperMissing(
            "berth-runtime's constructor did not run in this program",
        ));
    }
    if !in_main {
        return Err(ContainerError::SpawnHelperMissing(
            "berth-runtime is in a shared object, not in the program /proc/self/exe names",
        ));
    }
    Ok(())
}

/// The spawn helper clones from itself, which is safe only while it has one thread: something
/// linked before berth-runtime (an `LD_PRELOAD`ed library, a C++ static initialiser) may have
/// started one before its constructor ran. `threads`: the process's thread count, if known.
fn helper_is_single_threaded(threads: Option<u64>) -> Result<(), SetupError> {
    match threads {
        Some(1) => Ok(()),
        Some(n) => Err(SetupError::msg(
            "spawn helper",
            format!(
                "the helper process has {n} threads before main (started by a library loaded \
                 before berth-runtime, e.g. LD_PRELOAD or a static initialiser): cloning from \
                 it is unsafe"
            ),
        )),
        None => Err(SetupError::msg(
            "spawn helper",
            "cannot read /proc/self/stat to check that the helper is single-threaded",
        )),
    }
}

fn talk_to_helper(
    child: Child,
    chan: &Channel,
    limit: Duration,
) -> Result<Spawned, ContainerError> {
    let (request, fds) = child.into_request();
    let send_err = |e| {
        ContainerError::sys(
            SysOp::Send {
                peer: "the spawn helper",
            },
            e,
        )
    };
    // The request holds the whole configuration, which may be larger than a packet (a long
    // argument list): it goes in a memfd, whose fd goes over the channel.
    let memfd = request_memfd(&request)?;
    chan.send_with_fd(&PassedFd, memfd.as_raw_fd())
        .map_err(send_err)?;
    drop(memfd);
    for fd in &fds {
        chan.send_with_fd(&PassedFd, fd.as_raw_fd())
            .map_err(send_err)?;
    }
    drop(fds);
    match recv_within(chan, limit, "the spawn helper")? {
        Some((
            ToParent::Cloned {
                pid,
                in_unified_cgroup,
            },
            _,
        )) => Ok(Spawned {
            pid: Pid::from_raw(pid),
            in_unified_cgroup,
        }),
        Some((ToParent::Failed(e), _)) => Err(e.into()),
        Some((other, _)) => Err(ContainerError::Protocol {
            step: "the spawn helper",
            got: format!("{other:?}"),
        }),
        None => Err(ContainerError::Protocol {
            step: "the spawn helper",
            got: "the end of the channel".into(),
        }),
    }
}

/// The helper process (see the module documentation), called before `main` by the
/// constructor in [`crate::sys`] when [`HELPER_ENV`] names the channel. Never returns.
pub(crate) fn helper_main(fd: RawFd) -> ! {
    std::env::remove_var(HELPER_ENV);
    // SAFETY: the runtime that started this helper put its end of the channel on `fd` for
    // this process alone (HELPER_ENV names it), and nothing else in the process refers to it.
    let chan = Channel::from_fd(unsafe { sys::own_fd(fd) });
    let fail = |e: SetupError| -> ! { crate::process::report_and_exit(&chan, "spawn helper", e) };
    let child = match read_request(&chan) {
        Ok(c) => c,
        Err(e) => fail(e),
    };
    let flags = child.clone_flags();
    // Our message (the child's pid) must reach the runtime before anything the child says on
    // the same channel: the child waits for the end of this pipe, which comes when we exit.
    let (hold_r, hold_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail(SetupError::sys("spawn helper", "pipe", e)),
    };
    if let Err(e) =
        helper_is_single_threaded(crate::procfs::ProcStat::of_self().map(|st| st.num_threads))
    {
        fail(e)
    }
    // SAFETY: this process was exec'd a moment ago and runs before `main`, and was just
    // checked to have one thread. The child only runs `Child::run`, which never uses glibc's
    // cached tid.
    match unsafe { sys::clone_fork_into(flags | CloneFlags::CLONE_PARENT, child.cgroup()) } {
        Err(e) => fail(SetupError::sys(
            "spawn helper",
            format!("clone({flags:?})"),
            e,
        )),
        Ok((Forked::Child, _)) => {
            drop(hold_w);
            let mut b = [0u8; 1];
            while let Err(Errno::EINTR) = nix::unistd::read(&hold_r, &mut b) {}
            drop(hold_r);
            child.run(&Stdio::default(), chan)
        }
        Ok((Forked::Parent(pid), in_unified_cgroup)) => {
            let msg = ToParent::Cloned {
                pid: pid.as_raw(),
                in_unified_cgroup,
            };
            let code = i32::from(chan.send(&msg).is_err());
            drop(hold_w);
            sys::exit_now(code)
        }
    }
}

fn read_request(chan: &Channel) -> Result<Child, SetupError> {
    let recv_err = |e| SetupError::sys("spawn helper", "receive from runtime", e);
    let memfd = match chan.recv_with_fd::<PassedFd>().map_err(recv_err)? {
        Some((PassedFd, Some(fd))) => fd,
        Some(_) => {
            return Err(SetupError::msg(
                "spawn helper",
                "the request came without its fd",
            ))
        }
        None => return Err(SetupError::msg("spawn helper", "runtime went away")),
    };
    let mut data = Vec::new();
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::from(memfd);
        // From the start: the runtime's writes moved the shared offset to the end.
        let len = file
            .metadata()
            .map_err(|e| SetupError::msg("spawn helper", format!("stat the request: {e}")))?
            .len();
        data.resize(len as usize, 0);
        file.read_exact_at(&mut data, 0)
            .map_err(|e| SetupError::msg("spawn helper", format!("read the request: {e}")))?;
    }
    let request: Request = serde_json::from_slice(&data)
        .map_err(|e| SetupError::msg("spawn helper", format!("parse the request: {e}")))?;
    let next_fd = |present: bool| -> Result<Option<OwnedFd>, SetupError> {
        if !present {
            return Ok(None);
        }
        match chan.recv_with_fd::<PassedFd>().map_err(recv_err)? {
            Some((PassedFd, Some(fd))) => Ok(Some(fd)),
            _ => Err(SetupError::msg("spawn helper", "an fd did not come")),
        }
    };
    let required_fd = || match next_fd(true)? {
        Some(fd) => Ok(fd),
        None => Err(SetupError::msg("spawn helper", "a cgroup fd did not come")),
    };
    Ok(match request {
        Request::Init(w) => {
            let fifo = next_fd(w.fds[0])?;
            let console_socket = next_fd(w.fds[1])?;
            let exec_stub = next_fd(w.fds[2])?.map(ExecStub::from_fd);
            let cgroup_join = w.cgroup_join.map(|j| j.unpack(required_fd)).transpose()?;
            let cfg = InitConfig {
                id: w.id,
                spec: w.spec,
                rootfs: w.rootfs,
                bundle: w.bundle,
                ns: NsPlan {
                    new: CloneFlags::from_bits_retain(w.ns_new),
                    join: w
                        .ns_join
                        .into_iter()
                        .map(|(f, p)| (CloneFlags::from_bits_retain(f), p))
                        .collect(),
                    uid_mappings: w.uid_mappings,
                    gid_mappings: w.gid_mappings,
                },
                cgroup_mounts: w.cgroup_mounts,
                cgroup_join,
                fifo,
                console_socket,
                no_pivot: w.no_pivot,
                no_new_keyring: w.no_new_keyring,
                preserve_fds: w.preserve_fds,
                has_create_runtime_hooks: w.has_create_runtime_hooks,
                unprivileged_runtime: w.unprivileged_runtime,
                exec_stub,
                seccomp: w.seccomp,
            };
            Child::Init(Box::new(cfg), CloneFlags::from_bits_retain(w.clone_flags))
        }
        Request::Exec(w) => {
            let console_socket = next_fd(w.fds[0])?;
            let exec_stub = next_fd(w.fds[1])?.map(ExecStub::from_fd);
            let cgroup_join = w.cgroup_join.map(|j| j.unpack(required_fd)).transpose()?;
            Child::Exec(Box::new(ExecConfig {
                process: w.process,
                linux: w.linux,
                namespaces: w
                    .namespaces
                    .into_iter()
                    .map(|(f, p)| (CloneFlags::from_bits_retain(f), p))
                    .collect(),
                root: w.root,
                console_socket,
                preserve_fds: w.preserve_fds,
                exec_stub,
                seccomp: w.seccomp,
                cgroup_join,
            }))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_path_is_refused_without_the_constructor_in_the_program() {
        // This test binary links the library: its constructor ran, in the main executable.
        assert!(sys::spawn_helper_hook_ran());
        assert!(sys::spawn_helper_hook_in_main_executable());
        assert!(helper_available(true, true).is_ok());
        let e = helper_available(false, true).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "cannot start the spawn helper: berth-runtime's constructor did not run"
            ),
            "{e}"
        );
        let e = helper_available(true, false).unwrap_err();
        assert!(e.to_string().contains("shared object"), "{e}");
    }

    #[test]
    fn a_helper_with_threads_refuses_to_clone() {
        assert!(helper_is_single_threaded(Some(1)).is_ok());
        let e = helper_is_single_threaded(Some(3)).unwrap_err();
        assert!(e.to_string().contains("has 3 threads before main"), "{e}");
        assert!(helper_is_single_threaded(None).is_err());
    }

    #[test]
    fn a_test_harness_with_threads_is_multithreaded() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(caller_is_multithreaded());
        drop(tx);
        let _ = t.join();
    }

    #[test]
    fn setup_timeout_reads_the_environment() {
        // Only the parsing: the variable is not set in the test environment.
        if std::env::var_os("BERTH_SETUP_TIMEOUT").is_none() {
            assert_eq!(setup_timeout(), SETUP_TIMEOUT);
        }
    }

    #[test]
    fn a_silent_peer_times_out_naming_the_step() {
        let (a, _b) = Channel::pair().unwrap();
        let t0 = Instant::now();
        let err = recv_within(&a, Duration::from_millis(50), "init's ready").unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(
            err.to_string(),
            "timed out after 50ms waiting for init's ready"
        );
    }

    #[test]
    fn a_closed_peer_is_the_end_not_a_timeout() {
        let (a, b) = Channel::pair().unwrap();
        drop(b);
        assert!(recv_within(&a, Duration::from_secs(5), "x")
            .unwrap()
            .is_none());
    }
}
