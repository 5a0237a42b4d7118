//! A container by name, locked per operation: what a long-lived program (a daemon) keeps
//! instead of a [`Container`], which holds the container's lock while it lives.

use std::path::{Path, PathBuf};

use berth_cgroups::Stats;
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Process};

use super::{Container, ExecOptions, OomEvents};
use crate::error::ContainerError;
use crate::handle::ProcessHandle;
use crate::state::{OciState, Status};

/// Container `id` under the runtime root `root`. It holds no lock: each operation locks the
/// container for itself, exclusively for those that change it (`start`, `kill`, `exec`,
/// `update`, `pause`, `resume`, `delete`), shared for those that read (`state`, `stats`,
/// `oom_events`), waiting for another holder at most [`crate::state::lock_timeout`]
/// ([`crate::state::StateError::Busy`] then), and releases it before returning. Cheap to
/// clone and to share between tasks.
///
/// ```no_run
/// use berth_runtime::container::{ContainerBuilder, ContainerRef};
/// let mut c = ContainerBuilder::new("web", "/srv/bundles/web").create()?;
/// let init = c.take_init_process();
/// let web: ContainerRef = c.into_ref(); // the lock is released here
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

    fn exclusive(&self) -> Result<Container, ContainerError> {
        Container::load(&self.root, &self.id)
    }

    fn shared(&self) -> Result<Container, ContainerError> {
        Container::load_shared(&self.root, &self.id)
    }

    /// The state as `runc state` prints it (shared lock).
    pub fn state(&self) -> Result<OciState, ContainerError> {
        Ok(self.shared()?.oci_state())
    }

    /// The current status (shared lock).
    pub fn status(&self) -> Result<Status, ContainerError> {
        Ok(self.shared()?.status())
    }

    /// [`Container::start`].
    pub fn start(&self) -> Result<(), ContainerError> {
        self.exclusive()?.start()
    }

    /// [`Container::signal`].
    pub fn signal(&self, signal: Signal, all: bool) -> Result<(), ContainerError> {
        self.exclusive()?.signal(signal, all)
    }

    /// [`Container::exec_process`].
    pub fn exec(
        &self,
        process: Process,
        opts: &ExecOptions,
    ) -> Result<ProcessHandle, ContainerError> {
        self.exclusive()?.exec_process(process, opts)
    }

    /// [`Container::update`].
    pub fn update(&self, resources: &LinuxResources) -> Result<(), ContainerError> {
        self.exclusive()?.update(resources)
    }

    /// [`Container::stats`] (shared lock).
    pub fn stats(&self) -> Result<Stats, ContainerError> {
        self.shared()?.stats()
    }

    /// [`Container::oom_events`] (shared lock while it is set up; the stream holds none).
    pub fn oom_events(&self) -> Result<OomEvents, ContainerError> {
        self.shared()?.oom_events()
    }

    /// [`Container::pause`].
    pub fn pause(&self) -> Result<(), ContainerError> {
        self.exclusive()?.pause()
    }

    /// [`Container::resume`].
    pub fn resume(&self) -> Result<(), ContainerError> {
        self.exclusive()?.resume()
    }

    /// [`Container::delete_id`].
    pub fn delete(&self, force: bool) -> Result<(), ContainerError> {
        Container::delete_id(&self.root, &self.id, force)
    }
}

impl Container {
    /// Release the container's lock and keep it by name ([`ContainerRef`]). Take the init
    /// process's handle first ([`take_init_process`](Self::take_init_process)) to wait for
    /// its exit status.
    pub fn into_ref(self) -> ContainerRef {
        ContainerRef {
            // The state directory is `<root>/<id>`.
            root: self
                .dir
                .path()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            id: self.state.id.clone(),
        }
    }
}
