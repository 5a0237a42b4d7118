//! One module per verb.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod ps;
pub mod run;
pub mod spec;
pub mod tty;
pub mod update;
pub mod validate;

use anyhow::Result;
use berth_runtime::ContainerRef;
use clap::Args;

use crate::cli::{Command, GlobalOpts};

/// A verb that takes only the container id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The container id.
    pub id: String,
}

/// Run a verb; the result is the process's exit code.
pub fn dispatch(g: &GlobalOpts, cmd: Command) -> Result<u8> {
    if g.systemd_cgroup {
        anyhow::bail!("--systemd-cgroup is not supported on this host: systemd is not running");
    }
    if matches!(cmd, Command::Exec(_)) {
        // The exec'd process runs our code inside the container before it execs: make the
        // binary unwritable from there first. (create and run need this only for some
        // containers; the library says which, see `create::restart_protected`.)
        berth_runtime::exe::protect()?;
    }
    match cmd {
        Command::Create(a) => create::run(g, a),
        Command::Start(a) => {
            ContainerRef::new(g.root(), &a.id).start()?;
            Ok(0)
        }
        Command::Run(a) => run::run(g, a),
        Command::State(a) => {
            let state = ContainerRef::new(g.root(), &a.id).state()?;
            crate::output::line(serde_json::to_string_pretty(&state)?)?;
            Ok(0)
        }
        Command::Kill(a) => kill::run(g, a),
        Command::Delete(a) => delete::run(g, a),
        Command::List(a) => list::run(g, a),
        Command::Spec(a) => spec::run(a),
        Command::Pause(a) => {
            ContainerRef::new(g.root(), &a.id).pause()?;
            Ok(0)
        }
        Command::Resume(a) => {
            ContainerRef::new(g.root(), &a.id).resume()?;
            Ok(0)
        }
        Command::Ps(a) => ps::run(g, a),
        Command::Events(a) => events::run(g, a),
        Command::Update(a) => update::run(g, a),
        Command::Exec(a) => exec::run(g, a),
        Command::Features => features::run(),
        Command::Validate(a) => validate::run(a),
        Command::Image { args } => image_command(&args),
    }
}

/// `berth image ARGS`: run the `berth-image` binary installed beside this one (or found in
/// `PATH`), which carries the registry client, so the runtime commands do not.
fn image_command(args: &[std::ffi::OsString]) -> Result<u8> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth-image")))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| "berth-image".into());
    let err = std::process::Command::new(&program)
        .arg0("berth image")
        .args(args)
        .exec();
    anyhow::bail!("run {}: {err}", program.display())
}
