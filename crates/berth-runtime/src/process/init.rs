//! The container's init process: everything between `clone` and `execve` of the user's
//! program, run in the child.
//!
//! The child never returns into the caller's code: [`child_main`] either execs the program or
//! reports a [`SetupError`] to the parent and exits.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Spec};

use super::channel::{Channel, ToChild, ToParent};
use super::console;
use crate::caps::{self, CapSets};
use crate::error::SetupError;
use crate::exe::ExecStub;
use crate::ns::NsPlan;
use crate::rootfs::{self, RootfsContext};
use crate::sys::{self, Forked};

/// Everything the init process needs, prepared by the parent before `clone`.
#[derive(Debug)]
pub struct InitConfig {
    /// The container id.
    pub id: String,
    /// The parsed configuration.
    pub spec: Spec,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Namespaces to create and to join.
    pub ns: NsPlan,
    /// Cgroup hierarchies to present inside the container.
    pub cgroup_mounts: Vec<berth_cgroups::HierarchyMount>,
    /// The container's cgroup, entered by init itself first thing (its v1 hierarchies) or
    /// by the clone that made it (the unified one); `None` without a cgroup of its own.
    pub cgroup_join: Option<berth_cgroups::SelfJoin>,
    /// The exec fifo, opened `O_PATH` by the runtime (its directory is root's alone).
    pub fifo: Option<OwnedFd>,
    /// Where to send the terminal's master fd when `process.terminal` is set.
    pub console_socket: Option<OwnedFd>,
    /// Use `MS_MOVE` + `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
    /// Keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// Fds 3 .. 3+N are passed to the container process.
    pub preserve_fds: u32,
    /// Whether the createRuntime/prestart hook round trip is needed.
    pub has_create_runtime_hooks: bool,
    /// The runtime runs without privileges (rootless): it writes our id maps as our owner.
    pub unprivileged_runtime: bool,
    /// The exec stub the program is started through (see [`crate::exe`]).
    pub exec_stub: Option<ExecStub>,
    /// `linux.seccomp` compiled by the runtime (see [`crate::seccomp::cache`]).
    pub seccomp: Option<crate::seccomp::Program>,
}

/// Entry point of the child after `clone`. Never returns.
pub(crate) fn child_main(mut cfg: InitConfig, chan: Channel) -> ! {
    let join = cfg.cgroup_join.take();
    let err = match setup_and_exec(&cfg, join, &chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    super::report_and_exit(&chan, "container init", err)
}

fn wait_for(chan: &Channel, step: &str) -> Result<ToChild, SetupError> {
    match chan.recv::<ToChild>() {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(SetupError::msg(step, "runtime went away")),
        Err(e) => Err(SetupError::sys(step, "receive from runtime", e)),
    }
}

fn send(chan: &Channel, msg: &ToParent, step: &str) -> Result<(), SetupError> {
    chan.send(msg)
        .map_err(|e| SetupError::sys(step, "send to runtime", e))
}

enum Never {}

/// Init's setup, as the list of steps it is (README, "How berth create makes a container",
/// step 6); the messages to the runtime come in the order `container::create`'s `Phase`
/// checks: [Pid] (second fork), [RunCreateRuntimeHooks], [SeccompFd], Ready.
fn setup_and_exec(
    cfg: &InitConfig,
    join: Option<berth_cgroups::SelfJoin>,
    chan: &Channel,
) -> Result<Never, SetupError> {
    let late_non_dumpable = isolate_self(cfg, join, chan)?;
    // The parent puts us in the cgroup and writes the id mappings, then says go.
    wait_for(chan, "init")?;
    become_namespace_root(cfg, late_non_dumpable)?;
    enter_namespaces(cfg, chan)?;
    set_identity(cfg)?;
    let new_mnt = cfg.ns.new.contains(CloneFlags::CLONE_NEWNS);
    if new_mnt {
        rootfs::prepare(&RootfsContext {
            spec: &cfg.spec,
            rootfs: &cfg.rootfs,
            bundle: &cfg.bundle,
            cgroup_mounts: &cfg.cgroup_mounts,
            userns: cfg.ns.has_user(),
            cgroupns: cfg.ns.has(CloneFlags::CLONE_NEWCGROUP),
        })?;
    }
    run_create_hooks(cfg, chan)?;
    enter_root(cfg, new_mnt)?;
    let process = cfg
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| SetupError::msg("process", "config.json has no process"))?;
    let plan = prepare_process(
        process,
        cfg.spec.linux().as_ref(),
        cfg.seccomp.as_ref(),
        cfg.console_socket.as_ref().map(|s| s.as_fd()),
        cfg.preserve_fds,
        chan,
    )?;
    send(chan, &ToParent::Ready, "init")?;
    wait_for_start_and_exec(cfg, &plan)
}

/// Before anything else: no blocked signals, not dumpable (unless an unprivileged runtime
/// must write our id maps first: then later, which it returns), in the container's cgroup
/// (`join`: the v1 hierarchies; the clone put us in the unified one), no inherited fds,
/// umask 0.
fn isolate_self(
    cfg: &InitConfig,
    join: Option<berth_cgroups::SelfJoin>,
    chan: &Channel,
) -> Result<bool, SetupError> {
    // The parent may have blocked signals to forward them; the container starts with none.
    sys::set_sigmask(&SigSet::empty()).map_err(|e| SetupError::sys("init", "sigprocmask", e))?;
    // Until exec, nobody (not even a process in the container) may ptrace us or open our
    // /proc files, which would reach the runtime binary and our fds. An unprivileged runtime
    // must still be able to write our id maps: then only once it has (nothing else runs in
    // our fresh namespaces meanwhile).
    // Decided by the runtime before clone: once the runtime has written our uid map, our own
    // euid would read as 0.
    let late = cfg.ns.new_user() && cfg.unprivileged_runtime;
    if !late {
        set_non_dumpable()?;
    }
    // The limits are in place already (written before the clone); the files close here.
    if let Some(join) = join {
        join.join_v1().map_err(super::cgroup_join_error)?;
    }
    close_inherited_fds(cfg, chan)?;
    sys::set_umask(0);
    Ok(late)
}

fn set_non_dumpable() -> Result<(), SetupError> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| SetupError::sys("init", "prctl(PR_SET_DUMPABLE)", e))
}

/// Once the runtime has said go: not dumpable if that was left for now, and the mapped root
/// of a new user namespace.
fn become_namespace_root(cfg: &InitConfig, late_non_dumpable: bool) -> Result<(), SetupError> {
    if late_non_dumpable {
        set_non_dumpable()?;
    }
    if cfg.ns.new_user() {
        // Become the mapped root of the new user namespace.
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| SetupError::sys("user namespace", "setresgid(0)", e))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| SetupError::sys("user namespace", "setresuid(0)", e))?;
    }
    Ok(())
}

/// The namespaces to join, the pid (and time) namespace through a second fork where one is
/// joined or made late (its pid goes to the runtime), the cgroup namespace once inside the
/// cgroup.
fn enter_namespaces(cfg: &InitConfig, chan: &Channel) -> Result<(), SetupError> {
    join_namespaces(cfg)?;
    if cfg.ns.needs_second_fork() && cfg.ns.new.contains(CloneFlags::CLONE_NEWPID) {
        // Kept out of the first clone so that the real init below becomes its pid 1.
        unshare(CloneFlags::CLONE_NEWPID)
            .map_err(|e| SetupError::sys("namespaces", "unshare(CLONE_NEWPID)", e))?;
    }
    if cfg.ns.needs_second_fork() {
        // setns(pid) and unshare(time) only apply to children: fork the real init, as a
        // child of the runtime (CLONE_PARENT) so that `run` can wait for it.
        // SAFETY: the init process is single-threaded (a clone of a single-threaded process:
        // the runtime or its spawn helper) and the child does not use glibc's cached tid.
        match unsafe { sys::clone_fork(CloneFlags::CLONE_PARENT) } {
            Err(e) => return Err(SetupError::sys("namespaces", "fork into pid namespace", e)),
            Ok(Forked::Parent(pid)) => {
                let _ = chan.send(&ToParent::Pid(pid.as_raw()));
                sys::exit_now(0);
            }
            Ok(Forked::Child) => {}
        }
    }
    if cfg.ns.new.contains(CloneFlags::CLONE_NEWCGROUP) {
        // Only now, inside the container's cgroup, so that it becomes the namespace's root.
        unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| SetupError::sys("namespaces", "unshare(CLONE_NEWCGROUP)", e))?;
    }
    Ok(())
}

/// Hostname and domainname, the loopback of a new network namespace, a session keyring of
/// the container's own.
fn set_identity(cfg: &InitConfig) -> Result<(), SetupError> {
    set_names(cfg)?;
    if cfg.ns.new.contains(CloneFlags::CLONE_NEWNET) {
        // As runc: a network namespace made for the container has its loopback up.
        crate::ns::loopback_up()
            .map_err(|e| SetupError::sys("network", "set lo up (netlink RTM_NEWLINK)", e))?;
    }
    if !cfg.no_new_keyring {
        let name = CString::new(format!("_ses.{}", cfg.id)).expect("ids have no NUL");
        // Kernels without keyrings (ENOSYS) or a keyring quota hit are not fatal, as in runc.
        match sys::join_session_keyring(&name) {
            Ok(()) | Err(Errno::ENOSYS) | Err(Errno::EDQUOT) | Err(Errno::EACCES) => {}
            Err(e) => return Err(SetupError::sys("init", "join session keyring", e)),
        }
    }
    Ok(())
}

/// The runtime's prestart/createRuntime hooks (a round trip), then the createContainer
/// hooks, which run here.
fn run_create_hooks(cfg: &InitConfig, chan: &Channel) -> Result<(), SetupError> {
    if cfg.has_create_runtime_hooks {
        send(chan, &ToParent::RunCreateRuntimeHooks, "hooks")?;
        wait_for(chan, "hooks")?;
    }
    if let Some(hooks) = cfg
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().as_ref())
    {
        let state = crate::container::hook_state(
            &cfg.id,
            crate::state::Status::Creating,
            std::process::id() as i32,
            &cfg.bundle,
            &cfg.spec,
        );
        crate::hooks::run_hooks("createContainer", hooks, &state)
            .map_err(|e| SetupError::msg("hooks", e.to_string()))?;
    }
    Ok(())
}

/// Into the root filesystem (`pivot_root`, or a chroot without a mount namespace), the cwd
/// made, sysctls, masked and read-only paths, and the exec fifo checked reachable.
fn enter_root(cfg: &InitConfig, new_mnt: bool) -> Result<(), SetupError> {
    if new_mnt {
        rootfs::pivot(&cfg.rootfs, cfg.no_pivot)?;
    } else {
        nix::unistd::chroot(&cfg.rootfs).map_err(|e| SetupError::sys("rootfs", "chroot", e))?;
        nix::unistd::chdir("/")
            .map_err(|e| SetupError::sys("rootfs", "chdir / after chroot", e))?;
    }
    if let Some(process) = cfg.spec.process() {
        // Before the root may become read-only (finalize).
        create_cwd(process.cwd())?;
    }
    apply_sysctl(&cfg.spec)?;
    if new_mnt {
        rootfs::finalize(&cfg.spec)?;
    }
    // The fifo is on the host, in a state directory only root may enter: the runtime opened it
    // `O_PATH` for us (a user namespace's root could not by path); reopened for writing later.
    if let Some(fifo) = &cfg.fifo {
        // Waiting for start reopens the fifo through /proc: make sure that works before the
        // runtime is told we are ready, so that create fails instead of init dying after it.
        check_fifo_reachable(fifo)?;
    }
    Ok(())
}

/// Ready: wait for `start` (in the exec stub where possible), run the startContainer hooks,
/// exec the program. Returns only the reason it could not.
fn wait_for_start_and_exec(cfg: &InitConfig, plan: &ExecPlan) -> Result<Never, SetupError> {
    let fifo = cfg.fifo.as_ref();
    let start_hooks = cfg
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .filter(|h| !h.is_empty());
    if let (Some(stub), Some(fifo), None) = (&cfg.exec_stub, &fifo, start_hooks) {
        // Wait for start inside the stub, so that the runtime binary is not this process's
        // exe while a process of the container (`exec` before `start`) could look at it.
        nix::fcntl::fcntl(fifo, FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(|e| SetupError::sys("init", "fcntl(exec fifo, F_SETFD)", e))?;
        return Err(plan.exec(Some(stub), Some(fifo.as_fd())));
    }
    if let Some(fifo) = &fifo {
        wait_for_start(fifo)?;
    }
    if let Some(hooks) = start_hooks {
        let state = crate::container::hook_state(
            &cfg.id,
            crate::state::Status::Created,
            std::process::id() as i32,
            &cfg.bundle,
            &cfg.spec,
        );
        crate::hooks::run_hooks("startContainer", hooks, &state)
            .map_err(|e| SetupError::msg("hooks", e.to_string()))?;
    }
    // As through the exec stub: the program starts with every signal at its default.
    sys::default_signal_dispositions();
    Err(plan.exec(cfg.exec_stub.as_ref(), None))
}

/// The program to exec, found and checked before the runtime is told we are ready.
#[derive(Debug)]
pub struct ExecPlan {
    program: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

impl ExecPlan {
    /// Exec the program, through `stub` if there is one (with `fifo`, the stub first waits
    /// for `start`); returns only on failure.
    pub fn exec(&self, stub: Option<&ExecStub>, fifo: Option<BorrowedFd<'_>>) -> SetupError {
        let program = self.program.to_string_lossy();
        match stub {
            Some(stub) => SetupError::sys(
                "exec",
                format!("exec {program} through the exec stub"),
                stub.exec(fifo, &self.program, &self.args, &self.env),
            ),
            None => SetupError::sys(
                "exec",
                format!("exec {program}"),
                nix::unistd::execve(&self.program, &self.args, &self.env).unwrap_err(),
            ),
        }
    }
}

/// Everything about the process itself, shared by init and `exec`: session and terminal,
/// personality, rlimits, oom score, the program lookup, fds, capabilities and user, umask,
/// cwd, no_new_privs and seccomp. Runs inside the container (after `pivot_root` or `setns`).
/// `seccomp` is `linux.seccomp` as the runtime compiled it before the clone.
pub(crate) fn prepare_process(
    process: &oci_spec::runtime::Process,
    linux: Option<&oci_spec::runtime::Linux>,
    seccomp: Option<&crate::seccomp::Program>,
    console_socket: Option<std::os::fd::BorrowedFd<'_>>,
    preserve_fds: u32,
    chan: &Channel,
) -> Result<ExecPlan, SetupError> {
    nix::unistd::setsid().map_err(|e| SetupError::sys("process", "setsid", e))?;
    if process.terminal().unwrap_or(false) {
        let sock = console_socket.ok_or_else(|| {
            SetupError::msg(
                "terminal",
                "process.terminal is set but no --console-socket was given",
            )
        })?;
        console::setup_console(sock, process.console_size())?;
    }
    if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
        let persona = match p.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
            _ => 0x0000,
        };
        sys::set_personality(persona).map_err(|e| SetupError::sys("process", "personality", e))?;
    }
    apply_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| SetupError::msg("process", format!("write oomScoreAdj {adj}: {e}")))?;
    }
    // Memory policy, I/O priority, scheduler: while the capabilities they may need are held.
    super::sched::apply(process, linux)?;

    let mut env: Vec<CString> = process
        .env()
        .iter()
        .flatten()
        .map(|e| CString::new(e.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| SetupError::msg("process", "process.env has a NUL byte"))?;
    if !process
        .env()
        .iter()
        .flatten()
        .any(|e| e.starts_with("HOME="))
    {
        // As runc: HOME from the container's /etc/passwd for the user, else "/".
        let home = home_dir(process.user().uid()).unwrap_or_else(|| "/".to_owned());
        if let Ok(kv) = CString::new(format!("HOME={home}")) {
            env.push(kv);
        }
    }
    let args: Vec<CString> = process
        .args()
        .iter()
        .flatten()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| SetupError::msg("process", "process.args has a NUL byte"))?;
    let arg0 = process
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .ok_or_else(|| SetupError::msg("process", "process.args must not be empty"))?;
    let program = find_program(
        arg0,
        process.env().as_deref().unwrap_or_default(),
        process.cwd(),
    )?;

    // Mark every fd past the preserved ones close-on-exec: only stdio and the fds asked for
    // reach the program (CVE-2024-21626).
    sys::cloexec_from(3 + preserve_fds as RawFd)
        .map_err(|e| SetupError::sys("process", "close_range", e))?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let (Some(filter), false) = (seccomp, nnp) {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still
        // have it (as runc does).
        load_seccomp(filter, chan)?;
    }
    let user = process.user();
    let caps = process
        .capabilities()
        .as_ref()
        .map(CapSets::from_spec)
        .unwrap_or_default();
    caps::drop_bounding(&caps.bounding)?;
    switch_user(
        user.uid(),
        user.gid(),
        user.additional_gids().as_deref().unwrap_or_default(),
    )?;
    caps::apply(&caps)?;
    if let Some(mask) = user.umask() {
        sys::set_umask(mask);
    } else {
        sys::set_umask(0o022);
    }
    let cwd = process.cwd();
    nix::unistd::chdir(cwd.as_path())
        .map_err(|e| SetupError::sys("process", format!("chdir to cwd {:?}", cwd.display()), e))?;
    if nnp {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| SetupError::sys("process", "prctl(PR_SET_NO_NEW_PRIVS)", e))?;
        if let Some(filter) = seccomp {
            // As late as possible, so that as little of our own setup as possible is filtered.
            load_seccomp(filter, chan)?;
        }
    }
    Ok(ExecPlan { program, args, env })
}

/// Load the seccomp filter; with a notify action, hand the listener fd to the runtime, which
/// passes it to `listenerPath` (unreachable from inside the container).
fn load_seccomp(filter: &crate::seccomp::Program, chan: &Channel) -> Result<(), SetupError> {
    if let Some(fd) = filter.load()? {
        chan.send_with_fd(&ToParent::SeccompFd, fd.as_raw_fd())
            .map_err(|e| SetupError::sys("seccomp", "send the notify fd to the runtime", e))?;
        match chan.recv::<ToChild>() {
            Ok(Some(ToChild::SeccompDone)) => {}
            Ok(_) => return Err(SetupError::msg("seccomp", "runtime went away")),
            Err(e) => return Err(SetupError::sys("seccomp", "receive from runtime", e)),
        }
    }
    Ok(())
}

/// Close every fd the runtime had open except stdio, the preserved fds and our channel and
/// console socket; the lock on the state directory, in particular, must not live on in init.
fn close_inherited_fds(cfg: &InitConfig, chan: &Channel) -> Result<(), SetupError> {
    super::close_fds_except(
        3 + cfg.preserve_fds as RawFd,
        &[
            Some(chan.raw_fd()),
            cfg.console_socket.as_ref().map(|s| s.as_raw_fd()),
            cfg.exec_stub.as_ref().map(ExecStub::raw_fd),
            cfg.fifo.as_ref().map(|f| f.as_raw_fd()),
        ],
    );
    Ok(())
}

fn join_namespaces(cfg: &InitConfig) -> Result<(), SetupError> {
    for (flag, path) in &cfg.ns.join {
        let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| SetupError::sys("namespaces", format!("open {}", path.display()), e))?;
        setns(fd.as_fd(), *flag)
            .map_err(|e| SetupError::sys("namespaces", format!("setns {}", path.display()), e))?;
    }
    if cfg
        .ns
        .new
        .contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
    {
        unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .map_err(|e| SetupError::sys("namespaces", "unshare(CLONE_NEWTIME)", e))?;
        write_time_offsets(&cfg.spec)?;
    }
    Ok(())
}

fn write_time_offsets(spec: &Spec) -> Result<(), SetupError> {
    let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", text)
        .map_err(|e| SetupError::msg("namespaces", format!("write timens_offsets: {e}")))
}

fn set_names(cfg: &InitConfig) -> Result<(), SetupError> {
    if let Some(h) = cfg.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h)
            .map_err(|e| SetupError::sys("hostname", format!("sethostname {h:?}"), e))?;
    }
    if let Some(d) = cfg.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        sys::setdomainname(d)
            .map_err(|e| SetupError::sys("domainname", format!("setdomainname {d:?}"), e))?;
    }
    Ok(())
}

fn apply_sysctl(spec: &Spec) -> Result<(), SetupError> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctl {
        if key.contains("..") || key.starts_with('/') {
            return Err(SetupError::msg("sysctl", format!("invalid key {key:?}")));
        }
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| {
            SetupError::msg(
                "sysctl",
                format!("write {key}={value} ({}): {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

fn rlimit_resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

fn apply_rlimits(limits: &[oci_spec::runtime::PosixRlimit]) -> Result<(), SetupError> {
    for l in limits {
        setrlimit(rlimit_resource(l.typ()), l.soft(), l.hard()).map_err(|e| {
            let hint = if e == Errno::EPERM {
                " (raising a hard limit needs CAP_SYS_RESOURCE, which the runtime lacks)"
            } else {
                ""
            };
            SetupError::sys(
                "rlimits",
                format!(
                    "setrlimit {} soft={} hard={}{hint}",
                    l.typ(),
                    l.soft(),
                    l.hard()
                ),
                e,
            )
        })?;
    }
    Ok(())
}

fn switch_user(uid: u32, gid: u32, additional: &[u32]) -> Result<(), SetupError> {
    let step = "user";
    nix::sys::prctl::set_keepcaps(true)
        .map_err(|e| SetupError::sys(step, "prctl(PR_SET_KEEPCAPS)", e))?;
    // additionalGids is a set: engines pass repeats (dockerd: the user's groups plus
    // --group-add), and the kernel would keep every copy. Keep the first of each, in order.
    let mut groups: Vec<Gid> = Vec::with_capacity(additional.len());
    for g in additional.iter().map(|g| Gid::from_raw(*g)) {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        // With setgroups denied in a user namespace only an empty request is acceptable.
        Err(Errno::EPERM) if groups.is_empty() => {}
        Err(e) => {
            return Err(SetupError::sys(
                step,
                format!("setgroups {additional:?}"),
                e,
            ))
        }
    }
    let g = Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g)
        .map_err(|e| SetupError::sys(step, format!("setresgid {gid}"), e))?;
    let u = Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u)
        .map_err(|e| SetupError::sys(step, format!("setresuid {uid}"), e))?;
    nix::sys::prctl::set_keepcaps(false)
        .map_err(|e| SetupError::sys(step, "prctl(PR_SET_KEEPCAPS, 0)", e))
}

/// The home directory of `uid` in the container's /etc/passwd.
fn home_dir(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| f[5].to_owned())
    })
}

/// Find `arg0` as `execvp` would, with the container's `PATH` (after `pivot_root`), and
/// check it can be executed, as runc does before it reports ready: a path that is missing
/// (or a dangling symlink: `ENOENT`), not a regular file (`EACCES`) or without any execute
/// bit (`EACCES`) is an error at create; a name is looked up in `PATH`, where only executable
/// regular files count.
fn find_program(arg0: &str, env: &[String], cwd: &Path) -> Result<CString, SetupError> {
    use std::os::unix::fs::PermissionsExt;
    if arg0.contains('/') {
        let p = if Path::new(arg0).is_absolute() {
            PathBuf::from(arg0)
        } else {
            cwd.join(arg0)
        };
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                Ok(CString::new(arg0).expect("checked for NUL"))
            }
            // As runc's (Go's exec.LookPath): some execute bit is needed.
            Ok(m) if m.is_file() => Err(SetupError::sys(
                "exec",
                format!(
                    "{arg0:?}: not executable (mode {:o})",
                    m.permissions().mode() & 0o7777
                ),
                Errno::EACCES,
            )),
            Ok(_) => Err(SetupError::sys(
                "exec",
                format!("{arg0:?}: not a regular file"),
                Errno::EACCES,
            )),
            Err(e) => Err(SetupError {
                step: "exec".into(),
                op: format!("{arg0:?}: stat {}", p.display()),
                errno: e.raw_os_error().unwrap_or(Errno::ENOENT as i32),
            }),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if let Ok(m) = std::fs::metadata(&candidate) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(CString::new(candidate.as_os_str().as_bytes()).expect("no NUL"));
            }
        }
    }
    Err(SetupError::msg(
        "exec",
        format!("{arg0:?}: executable file not found in $PATH"),
    ))
}

/// Create `process.cwd` (and its missing parents, 0755, owned by the container's root) when
/// it does not exist, as runc and crun do: images name a WORKDIR their layers may not hold.
/// Runs inside the container's root, after `pivot_root` or `chroot`, where no path leads out.
/// (`exec --cwd` does not create its directory, as in runc.)
fn create_cwd(cwd: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::DirBuilderExt;
    if cwd.as_os_str().is_empty() || cwd.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(cwd)
        .map_err(|e| SetupError {
            step: "process".into(),
            op: format!("create cwd {:?}", cwd.display()),
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })
}

/// Check that the exec fifo can be reopened through `/proc/self/fd/N` in the container's root
/// (which [`wait_for_start`] and the exec stub do): that path must lead to the fifo itself.
/// Without a procfs at `/proc` (a rootfs without it and no mount namespace, or a mount
/// namespace without a `proc` mount) it cannot, and the container could never start.
fn check_fifo_reachable(fifo: &OwnedFd) -> Result<(), SetupError> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let want = nix::sys::stat::fstat(fifo.as_fd())
        .map_err(|e| SetupError::sys("init", "fstat exec fifo", e))?;
    let unreachable = |why: String| {
        SetupError::msg(
            "init",
            format!(
                "the exec fifo cannot be reopened through {path} ({why}): the container needs \
                 procfs at /proc (a proc mount, which needs a mount namespace of its own)"
            ),
        )
    };
    match nix::sys::stat::stat(path.as_str()) {
        Ok(st) if st.st_dev == want.st_dev && st.st_ino == want.st_ino => Ok(()),
        Ok(_) => Err(unreachable("it names another file".into())),
        // Not ours to see (a user namespace's view of a non-dumpable process): the reopen
        // decides, as before.
        Err(Errno::EACCES) => Ok(()),
        Err(e) => Err(unreachable(e.desc().to_lowercase())),
    }
}

/// Block until `berth start` opens the exec fifo, then tell it we go.
///
/// The fifo is reopened through `/proc/self/fd`, which a non-dumpable process that is no longer
/// root cannot read: we are dumpable for just that open. Nothing else runs in the container yet
/// (or, with a joined pid namespace, nothing that could use it: the runtime binary is not
/// writable for the container user and our fds are close-on-exec).
fn wait_for_start(fifo: &OwnedFd) -> Result<(), SetupError> {
    // While we wait, `kill ID TERM` (any signal that ends a process) ends us; afterwards the
    // startContainer hooks run with the dispositions we had (an ignored SIGPIPE, which a hook
    // that leaves its stdin unread needs).
    let saved = sys::end_on_terminating_signals();
    let waited = wait_for_start_inner(fifo);
    sys::restore_signal_dispositions(saved);
    waited
}

fn wait_for_start_inner(fifo: &OwnedFd) -> Result<(), SetupError> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let was_dumpable = nix::sys::prctl::get_dumpable().unwrap_or(false);
    nix::sys::prctl::set_dumpable(true)
        .map_err(|e| SetupError::sys("init", "prctl(PR_SET_DUMPABLE)", e))?;
    let fd = loop {
        match nix::fcntl::open(
            OsStr::new(&path),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    }
    .map_err(|e| SetupError::sys("init", "open exec fifo", e))?;
    nix::sys::prctl::set_dumpable(was_dumpable)
        .map_err(|e| SetupError::sys("init", "prctl(PR_SET_DUMPABLE)", e))?;
    nix::unistd::write(&fd, b"0").map_err(|e| SetupError::sys("init", "write exec fifo", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_lookup_uses_container_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_owned()];
        let found = find_program("sh", &env, Path::new("/")).unwrap();
        assert!(found.to_str().unwrap().ends_with("/sh"));
        let err = find_program("no-such-program-here", &env, Path::new("/")).unwrap_err();
        assert!(
            err.to_string()
                .contains("executable file not found in $PATH"),
            "{err}"
        );
        assert_eq!(err.errno(), None);
    }

    #[test]
    fn a_path_that_cannot_be_executed_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("/no/such/target", &dangling).unwrap();
        let cwd = Path::new("/");
        for (p, errno) in [
            (&plain, Errno::EACCES),
            (&dir.path().to_path_buf(), Errno::EACCES),
            (&dangling, Errno::ENOENT),
        ] {
            let err = find_program(p.to_str().unwrap(), &[], cwd).unwrap_err();
            assert_eq!(err.errno(), Some(errno), "{p:?}: {err}");
        }
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o744)).unwrap();
        assert!(find_program(plain.to_str().unwrap(), &[], cwd).is_ok());
        // In PATH, a file without an execute bit does not count.
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let env = vec![format!("PATH={}", dir.path().display())];
        assert!(find_program("plain", &env, cwd).is_err());
    }
}
