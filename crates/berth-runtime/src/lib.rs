//! Berth's isolation library and OCI container lifecycle.
//!
//! The entry point is [`container::ContainerBuilder`]: it loads a bundle, creates the
//! namespaces, the cgroup and the root filesystem, and leaves the container's init process
//! waiting for [`container::Container::start`]. Every other operation (`kill`, `pause`,
//! `delete`, ...) is a method of the [`container::Container`] that `create` returns or
//! [`container::Container::load`] finds, or of a [`container::ContainerRef`] (by name only);
//! neither holds the container's lock between operations: each takes it for itself.
//!
//! Any thread of a multithreaded (async) program may call it: container processes are then
//! started through a spawn helper ([`spawn`]), waited for by pidfd ([`handle`]), and every
//! wait on them during setup is bounded. Call [`exe::protect`] first thing in `main`, before
//! an async runtime starts.
//!
//! Every call blocks the calling thread (an async caller runs it with `spawn_blocking`):
//! `create` for up to its setup timeout per step plus each hook's own `timeout`, lock waits up
//! to [`state::lock_timeout`], [`Container::wait`] and [`handle::ProcessHandle::wait`] until
//! the process exits. Wait for every process you start (init, each `exec`): an exec'd process
//! left unreaped inside the container's pid namespace keeps its init from finishing its exit,
//! so `wait` never returns and `delete` times out. The spawn helper is a re-exec of the
//! program's own executable (`/proc/self/exe`): link this library into the executable, not
//! into a shared object loaded with `dlopen`.
//!
//! ```no_run
//! use berth_runtime::container::{Container, ContainerBuilder};
//!
//! let mut c = ContainerBuilder::new("web", "/srv/bundles/web").create()?;
//! c.start()?;
//! let state = c.state()?;
//! println!("{} is {} with pid {}", state.id, state.status, state.pid);
//! # Ok::<(), berth_runtime::error::ContainerError>(())
//! ```

pub mod caps;
pub mod container;
pub mod error;
pub mod exe;
pub mod handle;
pub mod hooks;
pub mod ns;
pub mod process;
pub mod procfs;
pub mod rootfs;
pub mod seccomp;
pub mod spawn;
pub mod spec;
pub mod state;
mod sys;
pub mod validate;

pub use container::{Container, ContainerBuilder, ContainerRef};
pub use error::{ContainerError, SetupError, SysOp};
pub use state::{OciState, Status};
