//! `berth create`.

use std::path::PathBuf;

use anyhow::Result;
use berth_runtime::{Container, ContainerBuilder, ContainerError};
use clap::Args;

use crate::cli::GlobalOpts;

/// Options shared by `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Path to the bundle directory (default: the current directory).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master fd when process.terminal is set.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many additional fds (3 onwards) to the container.
    #[arg(long, default_value_t = 0, value_parser = crate::numbers::preserve_fds)]
    pub preserve_fds: u32,
    /// The container id.
    pub id: String,
}

impl CreateArgs {
    /// The library builder these options describe.
    pub fn builder(&self, g: &GlobalOpts) -> ContainerBuilder {
        let mut b = ContainerBuilder::new(&self.id, &self.bundle)
            .root(g.root())
            .no_pivot(self.no_pivot)
            .no_new_keyring(self.no_new_keyring)
            .preserve_fds(self.preserve_fds.saturating_add(listen_fds()));
        if let Some(p) = &self.pid_file {
            b = b.pid_file(p);
        }
        if let Some(s) = &self.console_socket {
            b = b.console_socket(s);
        }
        b
    }
}

/// Socket activation: fds passed with LISTEN_FDS for us are preserved too, as runc does.
fn listen_fds() -> u32 {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `berth create`.
pub fn run(g: &GlobalOpts, a: CreateArgs) -> Result<u8> {
    or_restart_protected(a.builder(g).create())?;
    Ok(0)
}

/// The result of a create, except that a refusal for want of a protected binary restarts the
/// command protected ([`restart_protected`]).
pub fn or_restart_protected(r: Result<Container, ContainerError>) -> Result<Container> {
    match r {
        Err(ContainerError::ExeNotProtected(_)) => Err(restart_protected()),
        r => Ok(r?),
    }
}

/// The library refused to create a container whose init runs runtime code where the
/// container can see it, because our binary is not protected (see `berth_runtime::exe`):
/// re-execute from a protected copy, which starts the command over. Returns only on failure.
/// Call it with nothing to clean up (no socket, no state).
pub fn restart_protected() -> anyhow::Error {
    match berth_runtime::exe::protect() {
        Err(e) => e.into(),
        Ok(()) => anyhow::anyhow!("the runtime binary could not be protected"),
    }
}
