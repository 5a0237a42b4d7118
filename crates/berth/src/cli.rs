//! Command-line definition (runc's global flags and verbs).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;

/// A runc-compatible OCI container runtime.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, disable_help_subcommand = true)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format, as runc's `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time="..." level=info msg="..."`.
    Text,
    /// `{"level":"info","msg":"...","time":"..."}`.
    Json,
}

/// runc's global flags.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Root directory for storage of container state (tmpfs recommended).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Write logs to this file instead of stderr.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Enable debug logging.
    #[arg(long)]
    pub debug: bool,
    /// Use systemd to manage cgroups.
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto (accepted for compatibility).
    #[arg(long = "rootless", id = "global_rootless")]
    pub rootless: Option<String>,
    /// Path to criu (accepted for compatibility; checkpointing is not supported).
    #[arg(long, hide = true)]
    pub criu: Option<PathBuf>,
}

impl GlobalOpts {
    /// The state root: `--root`, else /run/berth for root, else $XDG_RUNTIME_DIR/berth.
    pub fn root(&self) -> PathBuf {
        if let Some(r) = &self.root {
            return r.clone();
        }
        if !nix::unistd::geteuid().is_root() {
            if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
                return PathBuf::from(x).join("berth");
            }
        }
        PathBuf::from(berth_runtime::container::DEFAULT_ROOT)
    }
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (its process waits for `start`).
    Create(commands::create::CreateArgs),
    /// Start a created container.
    Start(commands::IdArg),
    /// Create and start a container.
    Run(commands::run::RunArgs),
    /// Print the state of a container as JSON.
    State(commands::IdArg),
    /// Send a signal to a container's init process (or all its processes).
    Kill(commands::kill::KillArgs),
    /// Delete a container and its resources.
    Delete(commands::delete::DeleteArgs),
    /// List containers.
    #[command(alias = "ls")]
    List(commands::list::ListArgs),
    /// Create a default config.json.
    Spec(commands::spec::SpecArgs),
    /// Freeze every process of a container.
    Pause(commands::IdArg),
    /// Thaw a paused container.
    Resume(commands::IdArg),
    /// List the processes of a container.
    Ps(commands::ps::PsArgs),
    /// Stream a container's events (OOM) and statistics.
    Events(commands::events::EventsArgs),
    /// Update a container's resource limits.
    Update(commands::update::UpdateArgs),
    /// Run a new process inside a running container.
    Exec(commands::exec::ExecArgs),
    /// Print the features this build supports (runtime-spec features.md).
    Features,
    /// Check a bundle against the runtime spec.
    Validate(commands::validate::ValidateArgs),
    /// Pull, load, inspect and unpack images (runs the `berth-image` binary).
    #[command(disable_help_flag = true)]
    Image {
        /// Arguments of `berth-image` (`--help` for its own help).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}
