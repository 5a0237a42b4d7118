//! `berth delete`.

use anyhow::Result;
use berth_runtime::{Container, ContainerError};
use clap::Args;

use crate::cli::GlobalOpts;

/// `delete [--force] ID`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill the container first if it is running or paused.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// The container id.
    pub id: String,
}

/// `berth delete`. Like runc, `--force` on an unknown id succeeds.
pub fn run(g: &GlobalOpts, a: DeleteArgs) -> Result<u8> {
    // By id: also what a create that died before writing its state left.
    match Container::delete_id(&g.root(), &a.id, a.force) {
        Ok(()) => {}
        Err(ContainerError::NotFound { .. }) if a.force => {}
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}
