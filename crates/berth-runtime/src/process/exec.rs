//! `exec`: a new process inside a running container. The child joins every namespace of the
//! container's init and chroots to init's root (`/proc/PID/root`: the rootfs also when the
//! container has no mount namespace of its own or joined one by path), forks once more so that it is inside the pid namespace (as a child of the
//! runtime, `CLONE_PARENT`), enters the container's cgroup, then sets itself up exactly like
//! init's process ([`super::init::prepare_process`]) and execs.
//!
//! The cgroup as for init (see [`berth_cgroups::SelfJoin`]), sparing the kernel's global cgroup
//! lock, but only the process itself, never the first child, which stays outside the
//! container's limits (a container at its pids limit still takes an exec): the first child
//! clones it into the unified hierarchy's cgroup (before joining the cgroup namespace, which
//! would hide the child's own cgroup from the kernel's check; the process joins that one
//! itself), and the process writes `0` to each v1 `tasks` file once the runtime says go.
//! Where the clone into the cgroup is refused (a pids limit reached, an old kernel) or must not
//! happen (`execCPUAffinity.initial`, which holds until the process is in the cgroup), the
//! runtime moves it into the unified hierarchy before it says go.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use oci_spec::runtime::{Linux, Process};

use super::channel::{Channel, ToChild, ToParent};
use super::close_fds_except;
use super::init::prepare_process;
use crate::error::SetupError;
use crate::exe::ExecStub;
use crate::sys::{self, Forked};

/// What the exec child needs, prepared by the runtime before `clone`.
#[derive(Debug)]
pub struct ExecConfig {
    /// The process to run.
    pub process: Process,
    /// The container's `linux` section (seccomp, personality).
    pub linux: Option<Linux>,
    /// Namespace files of the container's init to join (`/proc/PID/ns/...`), user first.
    pub namespaces: Vec<(CloneFlags, PathBuf)>,
    /// The root directory of the container's init (`/proc/PID/root`): the new process is
    /// chrooted there after joining the namespaces, so that it lands in init's root even when
    /// the container has no mount namespace of its own (init chroots into the rootfs then) or
    /// joined one by path.
    pub root: PathBuf,
    /// Where to send the terminal's master fd.
    pub console_socket: Option<OwnedFd>,
    /// Fds 3 .. 3+N are passed on.
    pub preserve_fds: u32,
    /// The exec stub the program is started through (see [`crate::exe`]).
    pub exec_stub: Option<ExecStub>,
    /// `linux.seccomp` compiled by the runtime (see [`crate::seccomp::cache`]).
    pub seccomp: Option<crate::seccomp::Program>,
    /// The container's cgroup, for the process to enter (see the module documentation).
    pub cgroup_join: Option<berth_cgroups::SelfJoin>,
}

impl ExecConfig {
    /// The process may be cloned into the unified cgroup: no `execCPUAffinity.initial` must
    /// hold until it is in the container's cgroup.
    fn clone_into_cgroup(&self) -> bool {
        self.process
            .exec_cpu_affinity()
            .as_ref()
            .is_none_or(|a| a.initial().is_none())
    }
}

/// Entry point of the exec child after `clone`. Never returns.
pub(crate) fn child_main(mut cfg: ExecConfig, chan: Channel) -> ! {
    let join = cfg.cgroup_join.take();
    let err = match setup_and_exec(&cfg, join, &chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    super::report_and_exit(&chan, "exec", err)
}

enum Never {}

/// `setns` into the namespace `fd` (opened from `path`) of type `flag`.
fn join_namespace(
    flag: CloneFlags,
    fd: &OwnedFd,
    path: &std::path::Path,
) -> Result<(), SetupError> {
    setns(fd.as_fd(), flag)
        .map_err(|e| SetupError::sys("namespaces", format!("setns {}", path.display()), e))
}

fn setup_and_exec(
    cfg: &ExecConfig,
    join: Option<berth_cgroups::SelfJoin>,
    chan: &Channel,
) -> Result<Never, SetupError> {
    sys::set_sigmask(&SigSet::empty()).map_err(|e| SetupError::sys("exec", "sigprocmask", e))?;
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| SetupError::sys("exec", "prctl(PR_SET_DUMPABLE)", e))?;
    // execCPUAffinity.initial: the CPUs to run on until the process is in the cgroup.
    super::sched::initial_affinity(&cfg.process)?;
    let mut keep = vec![
        Some(chan.raw_fd()),
        cfg.console_socket.as_ref().map(|s| s.as_raw_fd()),
        cfg.exec_stub.as_ref().map(ExecStub::raw_fd),
    ];
    keep.extend(
        join.iter()
            .flat_map(|j| j.fds())
            .map(|fd| Some(fd.as_raw_fd())),
    );
    close_fds_except(3 + cfg.preserve_fds as RawFd, &keep);
    // Open every namespace and init's root first: after joining the mount namespace, /proc is
    // the container's.
    let root = nix::fcntl::open(
        &cfg.root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SetupError::sys("rootfs", format!("open {}", cfg.root.display()), e))?;
    let mut fds = Vec::new();
    for (flag, path) in &cfg.namespaces {
        let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| SetupError::sys("namespaces", format!("open {}", path.display()), e))?;
        fds.push((*flag, fd, path));
    }
    // The cgroup namespace is the process's to join, after the clone into the cgroup.
    let cgroup_ns = fds
        .iter()
        .position(|(flag, _, _)| *flag == CloneFlags::CLONE_NEWCGROUP)
        .map(|i| fds.remove(i));
    for (flag, fd, path) in &fds {
        join_namespace(*flag, fd, path)?;
    }
    drop(fds);
    // Into init's root, whatever the mount namespace's root is.
    nix::unistd::fchdir(root.as_fd())
        .map_err(|e| SetupError::sys("rootfs", format!("fchdir {}", cfg.root.display()), e))?;
    nix::unistd::chroot(".")
        .map_err(|e| SetupError::sys("rootfs", format!("chroot to {}", cfg.root.display()), e))?;
    drop(root);
    // Into the pid (and time) namespace: only children enter it; and into the unified
    // cgroup where it may.
    let unified = join
        .as_ref()
        .and_then(|j| j.unified())
        .filter(|_| cfg.clone_into_cgroup());
    // SAFETY: this child of the single-threaded runtime is single-threaded, and the grandchild
    // does not use glibc's cached tid.
    match unsafe { sys::clone_fork_into(CloneFlags::CLONE_PARENT, unified) } {
        Err(e) => return Err(SetupError::sys("exec", "fork into the container", e)),
        Ok((Forked::Parent(pid), in_unified_cgroup)) => {
            let _ = chan.send(&ToParent::Cloned {
                pid: pid.as_raw(),
                in_unified_cgroup,
            });
            sys::exit_now(0);
        }
        Ok((Forked::Child, _)) => {}
    }
    if let Some((flag, fd, path)) = cgroup_ns {
        join_namespace(flag, &fd, path)?;
    }
    // The runtime puts us in the unified cgroup if the clone did not, then says go.
    match chan.recv::<ToChild>() {
        Ok(Some(ToChild::Go)) => {}
        Ok(_) => return Err(SetupError::msg("exec", "runtime went away")),
        Err(e) => return Err(SetupError::sys("exec", "receive from runtime", e)),
    }
    if let Some(join) = join {
        join.join_v1().map_err(super::cgroup_join_error)?;
    }
    // In the cgroup now (whose cpuset may have reset the affinity): execCPUAffinity.final.
    super::sched::final_affinity(&cfg.process)?;
    let plan = prepare_process(
        &cfg.process,
        cfg.linux.as_ref(),
        cfg.seccomp.as_ref(),
        cfg.console_socket.as_ref().map(|s| s.as_fd()),
        cfg.preserve_fds,
        chan,
    )?;
    chan.send(&ToParent::Ready)
        .map_err(|e| SetupError::sys("exec", "send to runtime", e))?;
    Err(plan.exec(cfg.exec_stub.as_ref(), None))
}
