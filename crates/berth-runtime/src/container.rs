//! The container lifecycle: create, start, kill, pause, resume, delete and state.

mod api;
mod by_id;
mod create;
mod ops;
#[cfg(test)]
mod tests;

pub use api::Container;
pub use by_id::ContainerRef;
pub use ops::OomEvents;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_cgroups::CgroupManager;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Process, Spec};

use crate::error::{ContainerError, SysOp};
use crate::handle::ProcessHandle;
use crate::hooks;
use crate::ns::NsPlan;
use crate::process::channel::{Channel, ToChild, ToParent};
use crate::process::exec::ExecConfig;
use crate::spec::{Bundle, SpecError, OCI_VERSION};
use crate::state::{self, ContainerState, LockMode, OciState, StateDir, Status};
use crate::sys;

/// The default runtime root, like runc's `/run/runc`.
pub const DEFAULT_ROOT: &str = "/run/berth";

/// Options of `create`, the library's entry point.
///
/// ```no_run
/// use berth_runtime::container::ContainerBuilder;
///
/// // Set everything up; the init process waits for `start`.
/// let mut c = ContainerBuilder::new("demo", "/tmp/bundle")
///     .root("/run/berth")
///     .create()?;
/// c.start()?;
/// println!("{} runs as pid {}", c.id(), c.pid());
/// // ... later, from this or another process:
/// let c = berth_runtime::container::Container::load("/run/berth".as_ref(), "demo")?;
/// c.kill(libc::SIGKILL, false)?;
/// # Ok::<(), berth_runtime::error::ContainerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ContainerBuilder {
    id: String,
    bundle: PathBuf,
    root: PathBuf,
    pid_file: Option<PathBuf>,
    console_socket: Option<PathBuf>,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: u32,
    stdio: crate::spawn::Stdio,
    setup_timeout: Duration,
}

impl ContainerBuilder {
    /// A container `id` from the bundle in `bundle`.
    pub fn new(id: impl Into<String>, bundle: impl Into<PathBuf>) -> Self {
        ContainerBuilder {
            id: id.into(),
            bundle: bundle.into(),
            root: PathBuf::from(DEFAULT_ROOT),
            pid_file: None,
            console_socket: None,
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: 0,
            stdio: crate::spawn::Stdio::default(),
            setup_timeout: crate::spawn::setup_timeout(),
        }
    }

    /// The init process's standard input (fd 0): a pipe, a file, a pty's end... Without it,
    /// init inherits the caller's. Not used when `process.terminal` is set (init gets the pty).
    pub fn stdin(mut self, fd: impl Into<OwnedFd>) -> Self {
        self.stdio.stdin = Some(std::sync::Arc::new(fd.into()));
        self
    }

    /// The init process's standard output (fd 1); see [`stdin`](Self::stdin).
    pub fn stdout(mut self, fd: impl Into<OwnedFd>) -> Self {
        self.stdio.stdout = Some(std::sync::Arc::new(fd.into()));
        self
    }

    /// The init process's standard error (fd 2); see [`stdin`](Self::stdin).
    pub fn stderr(mut self, fd: impl Into<OwnedFd>) -> Self {
        self.stdio.stderr = Some(std::sync::Arc::new(fd.into()));
        self
    }

    /// How long the init process may take at each step of its setup before `create` gives up
    /// with [`ContainerError::Timeout`] naming the step, kills it and removes everything
    /// (default [`crate::spawn::SETUP_TIMEOUT`], or `BERTH_SETUP_TIMEOUT` seconds). Hooks
    /// the runtime runs itself have their own `timeout`.
    pub fn setup_timeout(mut self, limit: Duration) -> Self {
        self.setup_timeout = limit;
        self
    }

    /// The runtime root holding the state directories (default [`DEFAULT_ROOT`]).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// Write the init process's pid to this file.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// Send the terminal's master fd to the unix socket at this path.
    pub fn console_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.console_socket = Some(path.into());
        self
    }

    /// Use `MS_MOVE` and `chroot` instead of `pivot_root` (for rootfs on ramfs).
    pub fn no_pivot(mut self, yes: bool) -> Self {
        self.no_pivot = yes;
        self
    }

    /// Keep the caller's session keyring instead of a new one per container.
    pub fn no_new_keyring(mut self, yes: bool) -> Self {
        self.no_new_keyring = yes;
        self
    }

    /// Pass the caller's fds 3 .. 3+n to the container process, as they are (runc's
    /// `--preserve-fds`, for a command-line runtime whose fds 3.. were set up for the
    /// container). A program with fds of its own (a daemon's epoll, sockets) should name the
    /// fds to pass with [`pass_fds`](Self::pass_fds) instead.
    pub fn preserve_fds(mut self, n: u32) -> Self {
        self.preserve_fds = n;
        self
    }

    /// Pass these fds to the container process, in order, as fds 3, 4, ... (after the `n`
    /// of [`preserve_fds`](Self::preserve_fds) if both are used: 3+n, 3+n+1, ...); nothing
    /// else of the caller's reaches it. Replaces fds passed by an earlier call. The process
    /// is then started through the spawn helper ([`crate::spawn`]).
    pub fn pass_fds(mut self, fds: impl IntoIterator<Item = OwnedFd>) -> Self {
        self.stdio.fds = fds.into_iter().map(std::sync::Arc::new).collect();
        self
    }

    /// Create the container: namespaces, cgroup, rootfs, process setup. The init process is
    /// left waiting for [`Container::start`]. On failure nothing is left behind.
    ///
    /// It may be called from any thread: from a multithreaded caller the init process is
    /// started through the spawn helper ([`crate::spawn`]), from a single-threaded one it is
    /// cloned directly. Each step of init's setup is bounded by
    /// [`setup_timeout`](Self::setup_timeout). When the init would run runtime code where another process of the container can see it
    /// ([`crate::exe::init_needs_protection`]), the running binary must be protected
    /// ([`crate::exe::protect`]), else this fails with [`ContainerError::ExeNotProtected`].
    pub fn create(self) -> Result<Container, ContainerError> {
        self.check_id()?;
        let bundle = Bundle::load(&self.bundle)?;
        self.create_from(bundle)
    }

    fn check_id(&self) -> Result<(), ContainerError> {
        state::check_id(&self.id).map_err(|why| ContainerError::InvalidId {
            id: self.id.clone(),
            why,
        })
    }

    /// [`create`](Self::create) from a bundle the caller has already loaded (to look at its
    /// configuration first); the builder's bundle path is not read again.
    ///
    /// For a bundle made in memory ([`Bundle::from_spec`]), validation errors are
    /// [`SpecError::InvalidInMemory`] ("spec: FIELD: ..."), not about a `config.json`.
    pub fn create_from(self, bundle: Bundle) -> Result<Container, ContainerError> {
        let in_memory = bundle.is_in_memory();
        self.create_checked(bundle).map_err(|e| match e {
            ContainerError::Spec(e) if in_memory => ContainerError::Spec(e.in_memory()),
            e => e,
        })
    }

    fn create_checked(self, bundle: Bundle) -> Result<Container, ContainerError> {
        let _span = tracing::info_span!("create", id = %self.id).entered();
        self.check_id()?;
        crate::validate::check(bundle.raw(), bundle.dir())?;
        let process =
            bundle.spec().process().as_ref().ok_or_else(|| {
                SpecError::invalid("process", "is required to create a container")
            })?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(SpecError::invalid("process.args", "must not be empty").into());
        }
        if !process.cwd().is_absolute() {
            return Err(SpecError::invalid("process.cwd", "must be an absolute path").into());
        }
        let terminal = process.terminal().unwrap_or(false);
        let ns = NsPlan::from_spec(bundle.spec())?;
        let exec_stub = crate::exe::ExecStub::for_child();
        if (exec_stub.is_none() || crate::exe::init_needs_protection(bundle.spec()))
            && !crate::exe::is_protected()
        {
            return Err(ContainerError::ExeNotProtected(
                "this container's init shares a pid namespace, runs startContainer hooks or has \
                 no exec stub",
            ));
        }
        let dir = StateDir::create(&self.root, &self.id).map_err(|e| {
            if state::is_exists(&e) {
                ContainerError::AlreadyExists {
                    id: self.id.clone(),
                }
            } else {
                e.into()
            }
        })?;
        state::crash_point("create:mkdir");
        let mut cleanup = Cleanup::new(dir);
        let result = self.create_in(&bundle, ns, terminal, exec_stub, &mut cleanup);
        match result {
            Ok(state) => {
                let dir = cleanup.disarm();
                // Init is our unreaped child (also after a second fork or the spawn helper,
                // both CLONE_PARENT): its pid cannot have been reused.
                let init = ProcessHandle::of_child(Pid::from_raw(state.pid)).ok();
                // The lock goes with `dir`: the container is left unlocked.
                Ok(Container::new(&self.root, &dir, state, init))
            }
            Err(e) => {
                cleanup.run();
                Err(e)
            }
        }
    }
}

/// A pidfd handle of `pid`, an unreaped child of ours; if that fails, kill and reap it by pid
/// (still ours alone until reaped).
fn handle_of_child(pid: Pid) -> Result<ProcessHandle, ContainerError> {
    ProcessHandle::of_child(pid).inspect_err(|_| {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
    })
}

/// Kill a container-side process whose setup failed and reap it; `err` passes through.
fn end_process(process: &mut ProcessHandle, err: ContainerError) -> ContainerError {
    let _ = process.signal(Signal::SIGKILL);
    let _ = process.wait();
    err
}

/// Record init's pid and start time in the state before anything else can go wrong.
fn record_init(st: &mut ContainerState, pid: Pid, dir: &StateDir) -> Result<(), ContainerError> {
    st.pid = pid.as_raw();
    // 0 if it has already died: never alive, then.
    st.pid_start_time = state::process_start_time(pid.as_raw()).unwrap_or(0);
    dir.save(st)?;
    Ok(())
}

/// Why a container process (`what`: init, the exec process) died during setup: reap it (it is
/// our child, also after a second fork, which uses `CLONE_PARENT`) and say how it ended and
/// the likely cause.
fn process_death(pid: Pid, spec: &Spec, what: &str) -> ContainerError {
    use nix::sys::wait::WaitStatus;
    // It closed the channel: it is dead or about to be. Wait a bounded while for that.
    wait_gone(pid.as_raw(), Duration::from_secs(5));
    let how = match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => format!("{what} exited with status {code} during setup"),
        Ok(WaitStatus::Signaled(_, sig, _)) => {
            let mut m = format!("{what} was killed by {} during setup", sig.as_str());
            let linux = spec.linux().as_ref();
            if sig == Signal::SIGKILL {
                if let Some(limit) = linux
                    .and_then(|l| l.resources().as_ref())
                    .and_then(|r| r.memory().as_ref())
                    .and_then(|m| m.limit())
                    .filter(|l| *l > 0)
                {
                    m.push_str(&format!(
                        " (memory limit {} reached?)",
                        human_bytes(limit as u64)
                    ));
                }
            } else if sig == Signal::SIGSYS {
                if let Some(seccomp) = linux.and_then(|l| l.seccomp().as_ref()) {
                    let action = serde_json::to_value(seccomp.default_action())
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| format!("{:?}", seccomp.default_action()));
                    m.push_str(&format!(
                        " (the seccomp profile forbids a system call it makes: defaultAction \
                         {action})"
                    ));
                }
            }
            m
        }
        _ => {
            // Still there (or not ours to reap): end it, so that the caller never has to
            // signal this pid again.
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            format!("{what} closed its channel without a word")
        }
    };
    ContainerError::DiedDuringSetup(how)
}

/// `4 MiB`, `512 KiB`, `100 B`: the largest binary unit that divides `n`.
fn human_bytes(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size && n % size == 0 {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} B")
}

/// Undo a half-made container: kill and reap init, remove the cgroup and the state directory.
struct Cleanup {
    dir: Option<StateDir>,
    cgroup: Option<Box<dyn CgroupManager>>,
    init: Option<Pid>,
}

impl Cleanup {
    fn new(dir: StateDir) -> Self {
        Cleanup {
            dir: Some(dir),
            cgroup: None,
            init: None,
        }
    }

    fn dir(&self) -> &StateDir {
        self.dir.as_ref().expect("present until disarmed")
    }

    fn disarm(mut self) -> StateDir {
        self.dir.take().expect("present until disarmed")
    }

    fn run(mut self) {
        if let Some(pid) = self.init.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            // Reap it if it is our child; if it is not (a joined pid namespace), wait for the
            // kernel to finish it so that the cgroup can be removed.
            if waitpid(pid, None).is_err() {
                wait_gone(pid.as_raw(), Duration::from_secs(5));
            }
        }
        if let Some(cg) = self.cgroup.take() {
            // Only a cgroup we made holds nothing but ours; in another, init was all we had.
            if created_cgroup(&cg.saved()) {
                let _ = cg.kill_all(libc::SIGKILL);
            }
            if let Err(e) = cg.destroy() {
                tracing::warn!("cleanup: remove cgroup: {e}");
            }
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.remove() {
                tracing::warn!("cleanup: {e}");
            }
        }
    }
}

/// Whether the container's cgroup was made by berth (its own leaf in some hierarchy).
fn created_cgroup(saved: &berth_cgroups::CgroupSaved) -> bool {
    saved
        .hierarchies
        .iter()
        .any(|h| h.created.last() == Some(&h.dir))
}

/// Wait until process `pid` has exited (it may be a zombie of another parent), up to `limit`.
fn wait_gone(pid: i32, limit: Duration) -> bool {
    let Ok(fd) = sys::pidfd_open(Pid::from_raw(pid)) else {
        return true; // already gone
    };
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    matches!(poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)), Ok(n) if n > 0)
}

/// `linux.seccomp` compiled for the container's process to load, through the cache in the
/// runtime root `root` (see [`crate::seccomp::cache`]).
fn seccomp_program(
    linux: Option<&oci_spec::runtime::Linux>,
    root: Option<&Path>,
) -> Result<Option<crate::seccomp::Program>, ContainerError> {
    let Some(seccomp) = linux.and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    Ok(Some(crate::seccomp::cache::program(seccomp, root)?))
}

/// Pass the seccomp notify fd the container process sent us to the spec's `listenerPath`.
fn pass_seccomp_fd(
    spec: &Spec,
    pid: Pid,
    state: &OciState,
    fd: Option<OwnedFd>,
    chan: &Channel,
) -> Result<(), ContainerError> {
    let fd = fd.ok_or_else(|| ContainerError::InitDied("seccomp fd message without fd".into()))?;
    let filter = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .ok_or_else(|| ContainerError::InitDied("seccomp fd without a seccomp section".into()))?;
    crate::seccomp::send_notify_fd(filter, pid.as_raw(), state, fd.as_fd())?;
    drop(fd);
    chan.send(&ToChild::SeccompDone).map_err(|e| {
        ContainerError::sys(
            SysOp::Send {
                peer: "the container process",
            },
            e,
        )
    })
}

/// Write a pid file: a new file (`O_EXCL | O_NOFOLLOW`, random name) in its directory, renamed
/// over `path`; a symlink at `path` is refused rather than followed.
fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    state::write_new_file(path, pid.to_string().as_bytes(), 0o644)
        .map_err(|(op, path, source)| ContainerError::Io { op, path, source })
}

/// With a terminal, the connection to `--console-socket` (which then must be given) that
/// receives the pty master; without, none.
fn connect_console(
    socket: Option<&Path>,
    terminal: bool,
) -> Result<Option<OwnedFd>, ContainerError> {
    match (socket, terminal) {
        (Some(path), true) => UnixStream::connect(path)
            .map(|s| Some(OwnedFd::from(s)))
            .map_err(|source| ContainerError::Io {
                op: "connect to console socket",
                path: path.to_owned(),
                source,
            }),
        (None, true) => Err(SpecError::invalid(
            "process.terminal",
            "is true but no console socket was given (--console-socket)",
        )
        .into()),
        (_, false) => Ok(None),
    }
}

/// The state passed to hooks on stdin.
pub fn hook_state(id: &str, status: Status, pid: i32, bundle: &Path, spec: &Spec) -> OciState {
    OciState {
        oci_version: OCI_VERSION.into(),
        id: id.into(),
        pid,
        status,
        bundle: bundle.to_owned(),
        rootfs: PathBuf::new(),
        created: String::new(),
        owner: String::new(),
        annotations: spec.annotations().clone().unwrap_or_default(),
    }
}

/// Options of [`Container::exec`].
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Send the terminal's master fd to the unix socket at this path.
    pub console_socket: Option<PathBuf>,
    /// Pass the caller's fds 3 .. 3+n to the process, as they are (runc's `--preserve-fds`);
    /// to pass chosen fds instead, put them in `stdio.fds` ([`crate::spawn::Stdio::fds`]).
    pub preserve_fds: u32,
    /// Write the process's pid to this file.
    pub pid_file: Option<PathBuf>,
    /// The process's stdin, stdout and stderr; those left `None` are the caller's.
    pub stdio: crate::spawn::Stdio,
    /// How long each step of the process's setup may take (`None`:
    /// [`crate::spawn::setup_timeout`]); see [`ContainerBuilder::setup_timeout`].
    pub setup_timeout: Option<Duration>,
}

impl ExecOptions {
    fn timeout(&self) -> Duration {
        self.setup_timeout
            .unwrap_or_else(crate::spawn::setup_timeout)
    }
}

/// A container's state directory locked for one operation, and its state as read under the
/// lock: what each operation of [`Container`] and [`ContainerRef`] works on, from
/// [`Locked::open`] until it returns (the lock goes with this value).
#[derive(Debug)]
struct Locked {
    dir: StateDir,
    state: ContainerState,
}

impl Locked {
    /// Lock container `id` under `root` in `mode`, waiting for another holder at most
    /// [`state::lock_timeout`] ([`state::StateError::Busy`]), and read its state.
    fn open(root: &Path, id: &str, mode: LockMode) -> Result<Self, ContainerError> {
        state::check_id(id).map_err(|why| ContainerError::InvalidId {
            id: id.to_owned(),
            why,
        })?;
        let dir = StateDir::open(root, id, mode)?
            .ok_or_else(|| ContainerError::NotFound { id: id.to_owned() })?;
        // A directory without state.json is what a create that died before writing anything
        // leaves (a running create holds the lock until it has written it): not a container.
        let state = dir
            .load()?
            .ok_or_else(|| ContainerError::NotFound { id: id.to_owned() })?;
        Ok(Locked { dir, state })
    }

    /// `delete` by id, under the exclusive lock: [`delete`](Self::delete) the container, or
    /// remove what a `create` that died left (a state directory without `state.json`).
    fn delete_id(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
        state::check_id(id).map_err(|why| ContainerError::InvalidId {
            id: id.to_owned(),
            why,
        })?;
        let dir = StateDir::open(root, id, LockMode::Exclusive)?
            .ok_or_else(|| ContainerError::NotFound { id: id.to_owned() })?;
        match dir.load()? {
            Some(state) => Locked { dir, state }.delete(force),
            None => Ok(dir.remove()?),
        }
    }

    /// The container's cgroup.
    fn cgroup(&self) -> Result<Box<dyn CgroupManager>, ContainerError> {
        Ok(berth_cgroups::open_saved(&self.state.cgroup)?)
    }

    /// The current status, derived from the init process, the exec fifo and the freezer. A
    /// container whose `create` died half way (seen by the lock's next holder) is `creating`
    /// while its init lives.
    fn status(&self) -> Status {
        status_of(&self.state, self.dir.fifo_id())
    }

    /// The state as `runc state` prints it.
    fn oci_state(&self) -> OciState {
        oci_state_of(&self.state, self.status())
    }

    /// The configuration the container was created with.
    fn config(&self) -> Result<Spec, SpecError> {
        // Through the locked directory's fd, not a path that could name another directory.
        crate::spec::load_spec(Path::new(&format!(
            "/proc/self/fd/{}/{}",
            self.dir.fd().as_raw_fd(),
            state::CONFIG_FILE
        )))
    }

    /// Run the saved configuration's poststart or poststop hooks, which only warn on failure.
    fn run_saved_hooks(&self, kind: &'static str, status: Status) {
        if let Some((hooks, st)) = self.saved_hooks(kind, status) {
            hooks::run_hooks_warn(kind, &hooks, &st);
        }
    }

    /// The saved configuration's poststart or poststop hooks and the state they get, `None`
    /// (with a warning if the configuration cannot be read) when there are none.
    fn saved_hooks(&self, kind: &'static str, status: Status) -> Option<(Vec<Hook>, OciState)> {
        let spec = match self.config() {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!("{kind} hooks not run: {e}");
                return None;
            }
        };
        let hooks = spec.hooks().as_ref().and_then(|h| match kind {
            "poststart" => h.poststart().clone(),
            _ => h.poststop().clone(),
        })?;
        let mut st = self.oci_state();
        st.status = status;
        if status == Status::Running {
            // poststart gets the process that was started, even if it has exited since
            // (oci_state() would say pid 0 then).
            st.pid = self.state.pid;
        }
        Some((hooks, st))
    }

    fn refuse(&self, op: &'static str, status: Status) -> ContainerError {
        ContainerError::BadStatus {
            op,
            id: self.state.id.clone(),
            status,
        }
    }

    /// Let the init process exec the user's program, then run the poststart hooks.
    fn start(&mut self) -> Result<(), ContainerError> {
        let status = self.status();
        if status != Status::Created {
            return Err(self.refuse("start", status));
        }
        // Only root can reach the fifo (its directory is 0700): nobody else can write to it.
        let fifo = self.dir.open_fifo()?;
        state::crash_point("start:opened");
        // Opening it has let init go: from now on the container is started, whatever happens
        // to this command (a crash then leaves a consistent status: no fifo).
        self.dir.remove_fifo()?;
        state::crash_point("start:removed");
        // Wait for init's "0": it comes as soon as init sees the reader, unless init died.
        loop {
            let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(0) | Err(Errno::EINTR) => {
                    if !state::is_alive(self.state.pid, self.state.pid_start_time) {
                        return Err(ContainerError::InitDied(
                            "it exited while waiting for start".into(),
                        ));
                    }
                }
                Ok(_) => {
                    let mut b = [0u8; 1];
                    match nix::unistd::read(&fifo, &mut b) {
                        Ok(1) if b[0] == b'0' => break,
                        Ok(1) => {
                            return Err(ContainerError::InitDied(format!(
                                "unexpected byte {:#04x} on the exec fifo",
                                b[0]
                            )))
                        }
                        Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
                        Ok(_) => {
                            return Err(ContainerError::InitDied(
                                "it closed the exec fifo without starting".into(),
                            ))
                        }
                        Err(e) => return Err(ContainerError::sys(SysOp::ReadExecFifo, e)),
                    }
                }
                Err(e) => return Err(ContainerError::sys(SysOp::PollExecFifo, e)),
            }
        }
        state::crash_point("start:read");
        if self.state.has_poststart_hooks {
            // Hooks may call back into the runtime: readers may come in while they run.
            self.dir.relock(LockMode::Shared)?;
            self.run_saved_hooks("poststart", Status::Running);
            self.dir.relock(LockMode::Exclusive)?;
        }
        Ok(())
    }

    /// Send `signal` to the init process, or with `all` to every process of the container,
    /// as runc 1.1 does (engines parse the outcome):
    ///
    /// - signal 0 only checks that the target exists (a liveness probe);
    /// - with `all`, whatever is left in the container's cgroup is signalled, whatever the
    ///   status: a stopped container whose cgroup is empty or gone is `Ok`; in a cgroup that
    ///   berth did not make (an existing `linux.cgroupsPath`), only the container's own
    ///   processes ([`own_processes`]), where runc signals every process of the cgroup;
    /// - without `all`, a stopped container is [`ContainerError::NotRunning`] ("container not
    ///   running", runc's `ErrNotRunning`, which containerd's shim maps to not found);
    /// - SIGKILL to a paused container's init thaws the cgroup so that it can die.
    ///
    /// `signal` must be 0 or a valid signal number (1..=SIGRTMAX).
    fn kill(&self, signal: i32, all: bool) -> Result<(), ContainerError> {
        if !(0..=libc::SIGRTMAX()).contains(&signal) {
            return Err(ContainerError::InvalidSignal { signal });
        }
        let status = self.status();
        if all {
            let cg = match self.cgroup() {
                Ok(cg) => cg,
                Err(_) if status == Status::Stopped => return Ok(()),
                Err(e) => return Err(e),
            };
            if status == Status::Stopped && cg.procs().map(|p| p.is_empty()).unwrap_or(true) {
                return Ok(());
            }
            if signal == 0 {
                return Ok(());
            }
            if created_cgroup(&self.state.cgroup) {
                cg.kill_all(signal)?;
            } else {
                // A cgroup named by linux.cgroupsPath that berth did not make may hold other
                // processes (issue 11: a teardown touches only what is the container's;
                // runc 1.1 signals the whole cgroup).
                for pid in self.own_processes(cg.as_ref()) {
                    // Through a pidfd: a pid that exited meanwhile is never someone else's.
                    if let Ok(fd) = sys::pidfd_open(Pid::from_raw(pid)) {
                        match sys::pidfd_send_signal(fd.as_fd(), signal) {
                            Ok(()) | Err(Errno::ESRCH) => {}
                            Err(e) => {
                                return Err(ContainerError::sys(
                                    SysOp::PidfdSendSignal { pid, signal },
                                    e,
                                ))
                            }
                        }
                    }
                }
            }
            return Ok(());
        }
        if status == Status::Stopped {
            return Err(self.not_running("kill"));
        }
        self.signal_init(signal)?;
        if status == Status::Paused && signal == libc::SIGKILL {
            // A frozen cgroup (v1) holds the SIGKILL until thawed; runc thaws for SIGKILL only.
            let _ = self.cgroup().and_then(|cg| Ok(cg.thaw()?));
        }
        Ok(())
    }

    fn not_running(&self, op: &'static str) -> ContainerError {
        ContainerError::NotRunning {
            op,
            id: self.state.id.clone(),
        }
    }

    fn signal_init(&self, signal: i32) -> Result<(), ContainerError> {
        let pidfd = match sys::pidfd_open(Pid::from_raw(self.state.pid)) {
            Ok(fd) => fd,
            // Gone between the status check and now (a cgroup kill may have just ended it).
            Err(Errno::ESRCH) => return Err(self.not_running("kill")),
            Err(e) => {
                return Err(ContainerError::sys(
                    SysOp::PidfdOpen {
                        pid: self.state.pid,
                    },
                    e,
                ))
            }
        };
        // The pidfd pins the process: if its start time still matches, it is our init.
        if !state::is_alive(self.state.pid, self.state.pid_start_time) {
            return Err(self.not_running("kill"));
        }
        match sys::pidfd_send_signal(pidfd.as_fd(), signal) {
            Ok(()) => Ok(()),
            // Exited (a zombie waiting for its reaper) since we looked.
            Err(Errno::ESRCH) => Err(self.not_running("kill")),
            Err(e) => Err(ContainerError::sys(
                SysOp::PidfdSendSignal {
                    pid: self.state.pid,
                    signal,
                },
                e,
            )),
        }
    }

    /// Start `process` inside the running container (see [`Container::exec_process`]).
    fn exec_process(
        &self,
        process: Process,
        opts: &ExecOptions,
    ) -> Result<ProcessHandle, ContainerError> {
        let _span = tracing::info_span!("exec", id = %self.state.id).entered();
        if !crate::exe::is_protected() {
            return Err(ContainerError::ExeNotProtected(
                "exec runs runtime code inside the container",
            ));
        }
        let status = self.status();
        if status != Status::Running && status != Status::Created {
            return Err(self.refuse("exec in", status));
        }
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(SpecError::invalid("process.args", "must not be empty").into());
        }
        let spec = self.config()?;
        let init = self.state.pid;
        let mut namespaces: Vec<(CloneFlags, PathBuf)> = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
            .map(|ns| {
                let flag = crate::ns::clone_flag(ns.typ());
                let path = PathBuf::from(format!("/proc/{init}/ns/{}", crate::ns::proc_name(flag)));
                (flag, path)
            })
            .collect();
        // The user namespace first (it decides the rest), the mount namespace last.
        namespaces.sort_by_key(|(f, _)| match *f {
            f if f == CloneFlags::CLONE_NEWUSER => 0,
            f if f == CloneFlags::CLONE_NEWNS => 2,
            _ => 1,
        });
        let console_socket = connect_console(
            opts.console_socket.as_deref(),
            process.terminal().unwrap_or(false),
        )?;
        let cgroup = self.cgroup()?;
        let cfg = ExecConfig {
            process,
            linux: spec.linux().clone(),
            namespaces,
            root: PathBuf::from(format!("/proc/{init}/root")),
            console_socket,
            preserve_fds: opts.preserve_fds + opts.stdio.fds.len() as u32,
            exec_stub: crate::exe::ExecStub::for_child(),
            seccomp: seccomp_program(spec.linux().as_ref(), self.dir.path().parent())?,
            cgroup_join: Some(cgroup.self_join()?),
        };
        let (parent_chan, child_chan) =
            Channel::pair().map_err(|e| ContainerError::sys(SysOp::Socketpair, e))?;
        let first = crate::spawn::spawn(
            crate::spawn::Child::Exec(Box::new(cfg)),
            &opts.stdio,
            &parent_chan,
            child_chan,
            opts.timeout(),
        )?
        .pid;
        state::crash_point("exec:clone");
        // Our children (the helper's clones are too, CLONE_PARENT), unreaped: their pids are
        // theirs until we wait, and from now on we wait only through their pidfds.
        let mut first = handle_of_child(first)?;
        let limit = opts.timeout();
        let msg = crate::spawn::recv_within(
            &parent_chan,
            limit,
            "the exec child to fork into the container",
        );
        let (mut process, in_unified_cgroup) = match msg {
            Ok(Some((
                ToParent::Cloned {
                    pid,
                    in_unified_cgroup,
                },
                _,
            ))) => {
                let _ = first.wait();
                (handle_of_child(Pid::from_raw(pid))?, in_unified_cgroup)
            }
            Ok(Some((ToParent::Failed(e), _))) => return Err(end_process(&mut first, e.into())),
            Ok(Some((other, _))) => {
                let e = ContainerError::Protocol {
                    step: "the exec child to fork into the container",
                    got: format!("{other:?}"),
                };
                return Err(end_process(&mut first, e));
            }
            Ok(None) => {
                let e = ContainerError::InitDied("exec child died".into());
                return Err(end_process(&mut first, e));
            }
            Err(e) => return Err(end_process(&mut first, e)),
        };
        let pid = process.pid();
        // The process joins the v1 hierarchies itself once it has `Go` (see process::exec).
        tracing::debug!(
            pid = pid.as_raw(),
            "the exec'd process {} and joins its v1 cgroups itself",
            if in_unified_cgroup {
                "was cloned into its unified cgroup"
            } else {
                "is moved into its unified cgroup from here"
            }
        );
        if !in_unified_cgroup {
            if let Err(e) = cgroup.add_task_unified(pid.as_raw()) {
                return Err(end_process(&mut process, e.into()));
            }
        }
        state::crash_point("exec:joined");
        if let Err(e) = parent_chan.send(&ToChild::Go) {
            let e = ContainerError::sys(
                SysOp::Send {
                    peer: "the exec child",
                },
                e,
            );
            return Err(end_process(&mut process, e));
        }
        state::crash_point("exec:go");
        let step = "the exec process to finish its setup";
        let mut msg = match crate::spawn::recv_within(&parent_chan, limit, step) {
            Ok(m) => m,
            Err(e) => return Err(end_process(&mut process, e)),
        };
        while let Some((ToParent::SeccompFd, fd)) = msg {
            let st = self.oci_state();
            if let Err(e) = pass_seccomp_fd(&spec, pid, &st, fd, &parent_chan) {
                return Err(end_process(&mut process, e));
            }
            msg = match crate::spawn::recv_within(&parent_chan, limit, step) {
                Ok(m) => m,
                Err(e) => return Err(end_process(&mut process, e)),
            };
        }
        match msg.map(|(m, _)| m) {
            Some(ToParent::Ready) => {}
            Some(ToParent::Failed(e)) => {
                let _ = process.wait();
                return Err(e.into());
            }
            _ => return Err(process_death(pid, &spec, "the exec process")),
        }
        state::crash_point("exec:ready");
        if let Some(pid_file) = &opts.pid_file {
            if let Err(e) = write_pid_file(pid_file, pid.as_raw()) {
                // As runc: a process whose pid could not be handed over does not run on.
                return Err(end_process(&mut process, e));
            }
        }
        Ok(process)
    }

    /// Freeze every process of the container: it must be running or created, else
    /// [`ContainerError::NotRunning`] (runc's "container not running").
    fn pause(&self) -> Result<(), ContainerError> {
        let status = self.status();
        if status != Status::Running && status != Status::Created {
            // runc's ErrNotRunning, for a paused container too.
            return Err(self.not_running("pause"));
        }
        self.cgroup()?.freeze()?;
        Ok(())
    }

    /// Thaw a paused container.
    fn resume(&self) -> Result<(), ContainerError> {
        let status = self.status();
        if status != Status::Paused {
            return Err(self.refuse("resume", status));
        }
        self.cgroup()?.thaw()?;
        Ok(())
    }

    /// Delete the container: it must be stopped, created or left `creating` by a create that
    /// died (those are killed first), unless `force`, which kills a running or paused one too.
    /// Kills only the container's own processes ([`own_processes`](Self::own_processes)),
    /// removes the cgroup directories its create made, removes the state directory, then runs
    /// the poststop hooks. Each step can be repeated: a delete cut short is finished by the next.
    fn delete(self, force: bool) -> Result<(), ContainerError> {
        let _span = tracing::info_span!("delete", id = %self.state.id).entered();
        let status = self.status();
        match status {
            Status::Stopped => {}
            // Created, or a create that died half way (status creating once we hold the lock).
            Status::Created | Status::Creating => self.kill_and_wait()?,
            Status::Running | Status::Paused if force => self.kill_and_wait()?,
            other => return Err(self.refuse("delete", other)),
        }
        state::crash_point("delete:killed");
        let cg = self.cgroup()?;
        if !self.state.own_pid_ns {
            // Without a pid namespace of its own, init's death does not end the others.
            self.kill_own_processes(cg.as_ref());
        }
        // Only the directories berth made are removed; a cgroup named by linux.cgroupsPath
        // that existed before stays, with whatever else runs in it.
        cg.destroy()?;
        state::crash_point("delete:cgroup");
        // Read now, run once the state directory is gone: poststop runs "after the container
        // is deleted" (config.md#poststop), as runc runs it, so that a hook that kills or
        // outlives berth cannot leave an id that no delete finishes.
        let poststop = if self.state.has_poststop_hooks {
            self.saved_hooks("poststop", Status::Stopped)
        } else {
            None
        };
        self.dir.remove()?;
        if let Some((hooks, st)) = poststop {
            hooks::run_hooks_warn("poststop", &hooks, &st);
        }
        state::crash_point("delete:hooks");
        Ok(())
    }

    fn own_processes(&self, cg: &dyn CgroupManager) -> Vec<i32> {
        own_processes(&self.state, cg)
    }

    /// SIGKILL the container's own processes ([`own_processes`](Self::own_processes)) until
    /// none is left, a bounded while.
    fn kill_own_processes(&self, cg: &dyn CgroupManager) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let procs = self.own_processes(cg);
            if procs.is_empty() || Instant::now() >= deadline {
                return;
            }
            for pid in procs {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            // A frozen cgroup holds the SIGKILL until thawed.
            if cg.is_frozen().unwrap_or(false) {
                let _ = cg.thaw();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn kill_and_wait(&self) -> Result<(), ContainerError> {
        let cg = self.cgroup()?;
        match self.signal_init(libc::SIGKILL) {
            Ok(()) | Err(ContainerError::NotRunning { .. }) => {}
            Err(e) => return Err(e),
        }
        // A frozen cgroup holds the SIGKILL until thawed.
        if cg.is_frozen().unwrap_or(false) {
            cg.thaw()?;
        }
        if !self.state.own_pid_ns {
            // Init's death ends a pid namespace of its own; otherwise each process is ours
            // to kill, and only ours.
            self.kill_own_processes(cg.as_ref());
        }
        let limit = Duration::from_secs(10);
        if !wait_gone(self.state.pid, limit) {
            return Err(ContainerError::Timeout {
                step: "init to exit after SIGKILL",
                limit,
            });
        }
        // Then for the rest of the container's processes, a bounded while.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.own_processes(cg.as_ref()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// The status of a container whose saved state is `st` and whose exec fifo (if any) is
/// `fifo`, derived from the init process, the exec fifo and the freezer. A container whose
/// `create` has not finished (or died half way) is `creating` while its init lives.
fn status_of(st: &ContainerState, fifo: Option<(u64, u64)>) -> Status {
    if st.stopped || !state::is_alive(st.pid, st.pid_start_time) {
        return Status::Stopped;
    }
    if st.creating {
        return Status::Creating;
    }
    // Created while init waits on the fifo; a fifo that init no longer holds is what a
    // `start` that died between letting init go and removing the fifo leaves.
    if let Some(fifo) = fifo {
        if state::holds_file(st.pid, fifo) != Some(false) {
            return Status::Created;
        }
    }
    match berth_cgroups::open_saved(&st.cgroup).and_then(|c| c.is_frozen()) {
        Ok(true) => Status::Paused,
        _ => Status::Running,
    }
}

/// The state as `runc state` prints it, for saved state `st` in `status`.
fn oci_state_of(st: &ContainerState, status: Status) -> OciState {
    OciState {
        oci_version: OCI_VERSION.into(),
        id: st.id.clone(),
        pid: if status == Status::Stopped { 0 } else { st.pid },
        status,
        bundle: st.bundle.clone(),
        rootfs: st.rootfs.clone(),
        created: st.created.clone(),
        owner: String::new(),
        annotations: st.annotations.clone(),
    }
}

/// The state of container `id` under `root` for a reader that never blocks (runc's `list`
/// and `state` never do): under the shared lock when it is free, else (another command, e.g.
/// a create running its hooks, holds it) from what [`state::peek`] reads without it;
/// `state.json` is only ever replaced whole. A create that has not written its state yet is
/// `creating`, with pid 0 and an empty bundle. Errors: [`ContainerError::NotFound`] for an id
/// with no state directory (or one that a create left without a state while nobody holds
/// it), state errors.
pub fn read_state(root: &Path, id: &str) -> Result<OciState, ContainerError> {
    state::check_id(id).map_err(|why| ContainerError::InvalidId {
        id: id.to_owned(),
        why,
    })?;
    let not_found = || ContainerError::NotFound { id: id.to_owned() };
    match StateDir::open_within(root, id, LockMode::Shared, Duration::ZERO) {
        Ok(Some(dir)) => {
            let state = dir.load()?.ok_or_else(not_found)?;
            return Ok(Locked { dir, state }.oci_state());
        }
        Ok(None) => return Err(not_found()),
        Err(state::StateError::Busy { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let peek = state::peek(root, id)?.ok_or_else(not_found)?;
    Ok(match &peek.state {
        Some(st) => oci_state_of(st, status_of(st, peek.fifo)),
        None => OciState {
            oci_version: OCI_VERSION.into(),
            id: id.to_owned(),
            pid: 0,
            status: Status::Creating,
            bundle: PathBuf::new(),
            rootfs: PathBuf::new(),
            created: String::new(),
            owner: String::new(),
            annotations: Default::default(),
        },
    })
}

/// Every container under `root`, each read with [`read_state`] (never waiting for a lock);
/// ids that vanish meanwhile are skipped, as are directories without a state that nobody
/// holds (what a create killed before it wrote one leaves; `delete` removes them); one whose
/// state cannot be read is logged (warning) and skipped.
pub fn list(root: &Path) -> Result<Vec<OciState>, ContainerError> {
    let mut out = Vec::new();
    for id in state::list_ids(root)? {
        match read_state(root, &id) {
            Ok(s) => out.push(s),
            Err(ContainerError::NotFound { .. } | ContainerError::InvalidId { .. }) => {}
            // One unreadable container does not hide the others (runc warns too).
            Err(e) => tracing::warn!("container {id}: {e}"),
        }
    }
    Ok(out)
}

/// The processes of the container's cgroup that are the container's (`st`: its saved state):
/// init, and those in a namespace that was made for the container. Another process that
/// shares a cgroup named by `linux.cgroupsPath` is not (runc leaves it alone too); with no
/// namespace of its own to tell them apart, every process of a cgroup berth made is the
/// container's.
fn own_processes(st: &ContainerState, cg: &dyn CgroupManager) -> Vec<i32> {
    let init = st.pid;
    let init_alive = state::is_alive(init, st.pid_start_time);
    let made_cgroup = created_cgroup(&st.cgroup);
    let ns = &st.namespaces;
    cg.procs()
        .unwrap_or_default()
        .into_iter()
        .filter(|&pid| {
            if pid == init {
                return init_alive;
            }
            if ns.is_empty() {
                return made_cgroup;
            }
            ns.iter()
                .any(|n| state::NsIdentity::of(pid, &n.kind).as_ref() == Some(n))
        })
        .collect()
}
