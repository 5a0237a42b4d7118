//! A container by name, locked per operation, whichever container has the name: what a
//! long-lived program (a daemon) can keep when it needs no more than the id (a [`Container`]
//! stays with the container it was made for).

use std::path::{Path, PathBuf};

use berth_cgroups::Stats;
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Process};

use super::{Container, ExecOptions, Locked, OomEvents};
use crate::error::ContainerError;
use crate::handle::ProcessHandle;
use crate::state::{LockMode, OciState, Status};

/// Container `id` under the runtime root `root`. Like a [`Container`] it holds no lock: each
/// operation locks the container for itself, exclusively for those that change it (`start`,
/// `kill`, `exec`, `update`, `pause`, `resume`, `delete`), shared for those that read
/// (`state`, `stats`, `oom_events`), waiting for another holder at most
/// [`crate::state::lock_timeout`] ([`crate::state::StateError::Busy`] then), and releases it
/// before returning. Unlike a [`Container`], it acts on whichever container has the id at the
/// time (the one-shot commands of the CLI go through it: one lock per command). Cheap to
/// clone and to share between tasks.
///
/// ```no_run
/// use berth_runtime::container::{ContainerBuilder, ContainerRef};
/// let mut c = ContainerBuilder::new("web", "/srv/bundles/web").create()?;
/// let init = c.take_init_process();
/// let web: ContainerRef = c.into_ref(); // by name from now on
/// web.start()?;
/// println!("{}", web.state()?.status);
/// web.signal(nix::sys::signal::Signal::SIGTERM, false)?;
/// # Ok::<(), berth_runtime::error::ContainerError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    root: PathBuf,
    id: String,
}

impl ContainerRef {
    /// Container `id` under `root` (nothing is checked until an operation).
    pub fn new(root: impl Into<PathBuf>, id: impl Into<String>) -> Self {
        ContainerRef {
            root: root.into(),
            id: id.into(),
        }
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The runtime root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn locked(&self, mode: LockMode) -> Result<Locked, ContainerError> {
        Locked::open(&self.root, &self.id, mode)
    }

    /// The state as `runc state` prints it: under the shared lock when it is free, else read
    /// without it, never waiting (see [`super::read_state`]).
    pub fn state(&self) -> Result<OciState, ContainerError> {
        super::read_state(&self.root, &self.id)
    }

    /// The current status (shared lock).
    pub fn status(&self) -> Result<Status, ContainerError> {
        Ok(self.locked(LockMode::Shared)?.status())
    }

    /// A [`Container`] of what has this id now (its state read under the shared lock).
    pub fn load(&self) -> Result<Container, ContainerError> {
        Container::load(&self.root, &self.id)
    }

    /// [`Container::start`].
    pub fn start(&self) -> Result<(), ContainerError> {
        self.locked(LockMode::Exclusive)?.start()
    }

    /// [`Container::kill`].
    pub fn kill(&self, signal: i32, all: bool) -> Result<(), ContainerError> {
        self.locked(LockMode::Exclusive)?.kill(signal, all)
    }

    /// [`Container::signal`].
    pub fn signal(&self, signal: Signal, all: bool) -> Result<(), ContainerError> {
        self.kill(signal as i32, all)
    }

    /// [`Container::exec_process`].
    pub fn exec(
        &self,
        process: Process,
        opts: &ExecOptions,
    ) -> Result<ProcessHandle, ContainerError> {
        self.locked(LockMode::Exclusive)?
            .exec_process(process, opts)
    }

    /// [`Container::update`].
    pub fn update(&self, resources: &LinuxResources) -> Result<(), ContainerError> {
        self.locked(LockMode::Exclusive)?.update(resources)
    }

    /// [`Container::stats`] (shared lock).
    pub fn stats(&self) -> Result<Stats, ContainerError> {
        self.locked(LockMode::Shared)?.stats()
    }

    /// [`Container::oom_events`] (shared lock while it is set up; the stream holds none).
    pub fn oom_events(&self) -> Result<OomEvents, ContainerError> {
        self.locked(LockMode::Shared)?.oom_events()
    }

    /// [`Container::pause`].
    pub fn pause(&self) -> Result<(), ContainerError> {
        self.locked(LockMode::Exclusive)?.pause()
    }

    /// [`Container::resume`].
    pub fn resume(&self) -> Result<(), ContainerError> {
        self.locked(LockMode::Exclusive)?.resume()
    }

    /// [`Container::delete_id`].
    pub fn delete(&self, force: bool) -> Result<(), ContainerError> {
        Container::delete_id(&self.root, &self.id, force)
    }
}
