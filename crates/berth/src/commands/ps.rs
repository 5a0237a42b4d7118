//! `berth ps`.

use anyhow::{bail, Context, Result};
use berth_runtime::Container;
use clap::Args;

use super::list::Format;
use crate::cli::GlobalOpts;
use crate::output;

/// `ps [--format table|json] ID [ps options]`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output format: `table` runs ps(1), `json` prints the pids.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The container id.
    pub id: String,
    /// Options for ps(1) (default `-ef`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `berth ps`.
pub fn run(g: &GlobalOpts, a: PsArgs) -> Result<u8> {
    let c = Container::load(&g.root(), &a.id)?;
    let pids = c.cgroup()?.procs()?;
    if a.format == Format::Json {
        if !a.ps_args.is_empty() {
            bail!("ps options cannot be used with --format json");
        }
        output::line(serde_json::to_string(&pids)?)?;
        return Ok(0);
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        a.ps_args
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    let mut shown = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            shown.push_str(line);
            shown.push('\n');
        }
    }
    output::stdout(shown)?;
    Ok(0)
}
