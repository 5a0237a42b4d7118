//! [`Container`]: a container the caller created or looked up, which takes the container's
//! lock for each operation instead of holding it while it lives.

use std::path::{Path, PathBuf};

use berth_cgroups::{CgroupManager, Stats};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Process, Spec};

use super::{ContainerRef, ExecOptions, Locked, OomEvents};
use crate::error::ContainerError;
use crate::handle::{ExitStatus, ProcessHandle};
use crate::state::{ContainerState, LockMode, OciState, StateDir, Status};

/// A container that exists under the runtime root: the one [`create`] made or
/// [`load`](Self::load) found, pinned by its state directory's identity.
///
/// It holds no lock while it lives: each operation locks the container for itself,
/// exclusively for those that change it (`start`, `kill`, `signal`, `exec`, `update`,
/// `pause`, `resume`, `delete`), shared for those that read (`status`, `state`, `config`,
/// `stats`, `oom_events`), waiting for another holder at most [`crate::state::lock_timeout`]
/// ([`crate::state::StateError::Busy`] then), and releases it before returning. Hooks that
/// may call back into the runtime never run under the exclusive lock (`createRuntime`/
/// `prestart` and `poststart` run with it taken down to shared, `poststop` once the state
/// directory is gone). If the container was deleted meanwhile, or
/// deleted and made anew at the same id, an operation is [`ContainerError::NotFound`]: a
/// `Container` never acts on a later container of the same name ([`ContainerRef`] names
/// whichever exists).
///
/// What it keeps besides the name is the state read when it was made ([`saved_state`],
/// [`pid`], [`cgroup`](Self::cgroup)), which changes only with `update`'s limits, and, when
/// this process created the container, the init process by pidfd ([`wait`](Self::wait)).
///
/// [`create`]: super::ContainerBuilder::create
/// [`saved_state`]: Self::saved_state
/// [`pid`]: Self::pid
#[derive(Debug)]
pub struct Container {
    root: PathBuf,
    state: ContainerState,
    /// The state directory's (device, inode), with the state's `created`: which container of
    /// this id this value is.
    identity: (u64, u64),
    /// The init process by pidfd, when this value was made by `create` in this process (whose
    /// child init is).
    init: Option<ProcessHandle>,
}

impl Container {
    /// The value `create` returns once it lets go of `dir`'s lock.
    pub(super) fn new(
        root: &Path,
        dir: &StateDir,
        state: ContainerState,
        mut init: Option<ProcessHandle>,
    ) -> Self {
        // Init outlives this value (a later `load` can wait for it; the CLI waits by pid):
        // dropping the value must not reap it in the background.
        if let Some(h) = &mut init {
            h.set_reap_on_drop(false);
        }
        Container {
            root: root.to_owned(),
            state,
            identity: dir.identity(),
            init,
        }
    }

    fn of(root: &Path, locked: &Locked) -> Self {
        Container::new(root, &locked.dir, locked.state.clone(), None)
    }

    /// Container `id` under `root`: its state is read under the shared lock, which is
    /// released before this returns. [`ContainerError::NotFound`] if there is none (or only
    /// what a `create` that died before writing its state left); [`ContainerError::InvalidId`]
    /// for an id runc would refuse.
    pub fn load(root: &Path, id: &str) -> Result<Self, ContainerError> {
        Ok(Self::of(root, &Locked::open(root, id, LockMode::Shared)?))
    }

    /// `delete` by id, in one exclusive lock: [`delete`](Self::delete) the container, or
    /// remove what a `create` that died left (a state directory without `state.json`).
    /// Errors as [`load`](Self::load) and [`delete`](Self::delete).
    pub fn delete_id(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
        Locked::delete_id(root, id, force)
    }

    /// The container, locked in `mode`, if it is still the one this value was made for.
    fn lock(&self, mode: LockMode) -> Result<Locked, ContainerError> {
        let locked = Locked::open(&self.root, &self.state.id, mode)?;
        // A directory made after ours was removed may get its inode number: the creation
        // time (nanoseconds) in the state tells the two apart.
        if locked.dir.identity() != self.identity || locked.state.created != self.state.created {
            return Err(ContainerError::NotFound {
                id: self.state.id.clone(),
            });
        }
        Ok(locked)
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The runtime root holding the container's state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host pid of the init process (whether or not it still runs: see
    /// [`init_pid`](Self::init_pid)).
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// The state saved by `create`, as read when this value was made (the lock is not taken
    /// again).
    pub fn saved_state(&self) -> &ContainerState {
        &self.state
    }

    /// The container's cgroup (from the saved state: no lock).
    pub fn cgroup(&self) -> Result<Box<dyn CgroupManager>, ContainerError> {
        Ok(berth_cgroups::open_saved(&self.state.cgroup)?)
    }

    /// The processes of the container's cgroup `cg` that are the container's: init, and those
    /// in a namespace that was made for the container. Another process that shares a cgroup
    /// named by `linux.cgroupsPath` is not (runc leaves it alone too); with no namespace of
    /// its own to tell them apart, every process of a cgroup berth made is the container's.
    pub fn own_processes(&self, cg: &dyn CgroupManager) -> Vec<i32> {
        super::own_processes(&self.state, cg)
    }

    /// The init process by pidfd, for a container this process created (init is its
    /// child); `None` for one opened with [`load`](Self::load). Poll its fd to learn of the
    /// exit without a thread; [`wait`](Self::wait) for the status.
    pub fn init_process(&mut self) -> Option<&mut ProcessHandle> {
        self.init.as_mut()
    }

    /// Take the init process's handle out (e.g. to wait for it after this value is gone).
    /// Dropped unreaped, the handle reaps init in the background (see [`ProcessHandle`]);
    /// left in the `Container`, init is not reaped when the value drops (the caller may
    /// `load` the container again and wait, or reap init by pid).
    pub fn take_init_process(&mut self) -> Option<ProcessHandle> {
        self.init.take().map(|mut h| {
            h.set_reap_on_drop(true);
            h
        })
    }

    /// Block until the init process exits: its exit status, for a container this process
    /// created (else [`ContainerError::NotOurChild`]: only init's parent learns its status).
    /// No lock is held meanwhile.
    pub fn wait(&mut self) -> Result<ExitStatus, ContainerError> {
        match &mut self.init {
            Some(h) => h.wait(),
            None => Err(ContainerError::NotOurChild {
                id: self.state.id.clone(),
            }),
        }
    }

    /// The current status (shared lock), derived from the init process, the exec fifo and
    /// the freezer. A container whose `create` died half way is `creating` while its init
    /// lives.
    pub fn status(&self) -> Result<Status, ContainerError> {
        Ok(self.lock(LockMode::Shared)?.status())
    }

    /// The state as `runc state` prints it (shared lock).
    pub fn state(&self) -> Result<OciState, ContainerError> {
        Ok(self.lock(LockMode::Shared)?.oci_state())
    }

    /// The init process's pid, `None` once the container has stopped (shared lock).
    pub fn init_pid(&self) -> Result<Option<Pid>, ContainerError> {
        Ok((self.status()? != Status::Stopped).then(|| Pid::from_raw(self.state.pid)))
    }

    /// The configuration the container was created with, as saved by `create` (and `update`)
    /// (shared lock).
    pub fn config(&self) -> Result<Spec, ContainerError> {
        Ok(self.lock(LockMode::Shared)?.config()?)
    }

    /// Let the init process exec the user's program (runtime.md#start), then run the
    /// poststart hooks with the lock shared. A container that is not `created` is
    /// [`ContainerError::BadStatus`]. The state is read again afterwards.
    pub fn start(&mut self) -> Result<(), ContainerError> {
        let mut locked = self.lock(LockMode::Exclusive)?;
        locked.start()?;
        self.state = locked.state;
        Ok(())
    }

    /// Send `signal` to the init process, or with `all` to every process of the container,
    /// as runc 1.1 does (engines parse the outcome):
    ///
    /// - signal 0 only checks that the target exists (a liveness probe);
    /// - with `all`, whatever is left in the container's cgroup is signalled, whatever the
    ///   status: a stopped container whose cgroup is empty or gone is `Ok`;
    /// - without `all`, a stopped container is [`ContainerError::NotRunning`] ("container not
    ///   running", runc's `ErrNotRunning`, which containerd's shim maps to not found);
    /// - SIGKILL to a paused container's init thaws the cgroup so that it can die.
    ///
    /// `signal` must be 0 or a valid signal number (1..=SIGRTMAX), else
    /// [`ContainerError::InvalidSignal`]. Exclusive lock.
    pub fn kill(&self, signal: i32, all: bool) -> Result<(), ContainerError> {
        self.lock(LockMode::Exclusive)?.kill(signal, all)
    }

    /// [`kill`](Self::kill) with a typed signal.
    pub fn signal(&self, signal: Signal, all: bool) -> Result<(), ContainerError> {
        self.kill(signal as i32, all)
    }

    /// Start `process` inside the running container: it joins every namespace and the cgroup
    /// of the container and is set up like the container's own process (user, capabilities,
    /// rlimits, no_new_privs, seccomp). Returns its host pid once it is about to exec.
    ///
    /// The caller (whose child it is) must reap it by pid (`waitpid(pid)`) or exit: nothing
    /// reaps it in the background ([`ProcessHandle::into_pid`]), and an exec'd process left
    /// a zombie keeps the container's init from finishing its exit, so `wait` and `delete`
    /// hang. A program that will not wait for it should use
    /// [`exec_process`](Self::exec_process) and may drop the handle: it is reaped then.
    ///
    /// It may be called from any thread (see [`crate::spawn`]); the binary must be protected
    /// from the container ([`crate::exe::protect`]): the new process runs runtime code inside
    /// the container before it execs. Exclusive lock while the process is set up.
    pub fn exec(&self, process: Process, opts: &ExecOptions) -> Result<Pid, ContainerError> {
        self.exec_process(process, opts)
            .map(ProcessHandle::into_pid)
    }

    /// [`exec`](Self::exec), returning the process by pidfd: wait for its exit status with
    /// [`ProcessHandle::wait`] (blocking) or poll its fd (async, e.g. tokio's `AsyncFd`). The
    /// process is the caller's child; with the handle, nothing but this process is ever
    /// waited for. Dropping the handle before the process is reaped reaps it (at once, or in
    /// the background once it exits), so it cannot keep the container from exiting.
    pub fn exec_process(
        &self,
        process: Process,
        opts: &ExecOptions,
    ) -> Result<ProcessHandle, ContainerError> {
        self.lock(LockMode::Exclusive)?.exec_process(process, opts)
    }

    /// Change the resource limits of a running, created or paused container (runc's
    /// `update`): `resources` is applied to the cgroup, and merged field by field into the
    /// configuration saved at create (what is not set in `resources` stays), so that the
    /// state says what the container runs with. A stopped container is
    /// [`ContainerError::BadStatus`]. Exclusive lock.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), ContainerError> {
        self.lock(LockMode::Exclusive)?.update(resources)
    }

    /// The container's cgroup statistics (CPU, memory, pids, block I/O, hugetlb), as
    /// `runc events --stats` reports them (shared lock).
    pub fn stats(&self) -> Result<Stats, ContainerError> {
        self.lock(LockMode::Shared)?.stats()
    }

    /// The container's OOM events as a stream: an iterator that blocks for the next event
    /// and ends when the cgroup is removed, and a pollable fd ([`std::os::fd::AsFd`]) for an
    /// async caller, which then reads with [`OomEvents::next_within`]. The lock is shared
    /// while the stream is set up; the stream holds none.
    pub fn oom_events(&self) -> Result<OomEvents, ContainerError> {
        self.lock(LockMode::Shared)?.oom_events()
    }

    /// Freeze every process of the container: it must be running or created, else
    /// [`ContainerError::NotRunning`] (runc's "container not running"). Exclusive lock.
    pub fn pause(&self) -> Result<(), ContainerError> {
        self.lock(LockMode::Exclusive)?.pause()
    }

    /// Thaw a paused container (else [`ContainerError::BadStatus`]). Exclusive lock.
    pub fn resume(&self) -> Result<(), ContainerError> {
        self.lock(LockMode::Exclusive)?.resume()
    }

    /// Delete the container: it must be stopped, created or left `creating` by a create that
    /// died (those are killed first), unless `force`, which kills a running or paused one too.
    /// Kills only the container's own processes ([`own_processes`](Self::own_processes)),
    /// removes the cgroup directories its create made, removes the state directory, then runs
    /// the poststop hooks (the directory, and with it the lock, gone). Each step can be
    /// repeated: a delete cut short is finished by the next. Exclusive lock.
    pub fn delete(self, force: bool) -> Result<(), ContainerError> {
        self.lock(LockMode::Exclusive)?.delete(force)
    }

    /// Keep the container by name only ([`ContainerRef`]: whichever container has this id).
    /// Take the init process's handle first ([`take_init_process`](Self::take_init_process))
    /// to wait for its exit status.
    pub fn into_ref(self) -> ContainerRef {
        ContainerRef::new(self.root, self.state.id)
    }
}
