//! `berth exec`: run a new process in a running container.

use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_runtime::container::ExecOptions;
use berth_runtime::validate::Severity;
use berth_runtime::Container;
use clap::Args;
use nix::sys::signal::{sigprocmask, SigmaskHow};
use oci_spec::runtime::{Capabilities, Capability, Process};

use super::run::{forward_until_exit, forwarded_signals};
use super::tty::{relay_until_exit, ConsoleSocket};
use crate::cli::GlobalOpts;

/// runc's `exec` flags.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A process.json with the whole process to run (other process flags are ignored).
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Allocate a terminal (needs --console-socket).
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Do not wait for the process.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Write the process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (`KEY=VALUE`).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// `uid[:gid]` to run as.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Additional group ids.
    #[arg(long, short = 'g', value_parser = crate::numbers::id)]
    pub additional_gids: Vec<u32>,
    /// Extra capabilities.
    #[arg(long, short = 'c')]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass this many additional fds (3 onwards).
    #[arg(long, default_value_t = 0, value_parser = crate::numbers::preserve_fds)]
    pub preserve_fds: u32,
    /// SELinux process label (accepted; SELinux is not supported).
    #[arg(long)]
    pub process_label: Option<String>,
    /// AppArmor profile (accepted; AppArmor is not supported).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// The container id.
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn merge_env(base: &mut Vec<String>, extra: &[String]) {
    for kv in extra {
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
        base.retain(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) != key);
        base.push(kv.clone());
    }
}

impl ExecArgs {
    fn process(&self, c: &Container) -> Result<Process> {
        // The process is checked as config.json's is at create: ranges, and what berth cannot
        // apply is an error (runtime.md#create).
        let refuse = |what: &str, props: serde_json::Value| -> Result<()> {
            let problems = berth_runtime::validate::validate_process(&props);
            match problems.iter().find(|p| p.severity == Severity::Error) {
                Some(p) => bail!("{what}{}: {} ({})", p.path, p.message, p.rule),
                None => Ok(()),
            }
        };
        let flag = |name: &str, value: &str| serde_json::json!({"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}, name: value});
        if let Some(label) = self.apparmor.as_deref().filter(|l| !l.is_empty()) {
            refuse("--apparmor: ", flag("apparmorProfile", label))?;
        }
        if let Some(label) = self.process_label.as_deref().filter(|l| !l.is_empty()) {
            refuse("--process-label: ", flag("selinuxLabel", label))?;
        }
        if let Some(path) = &self.process {
            // A regular file of a sane size only: a FIFO must not hang exec, nor /dev/zero
            // fill memory (as config.json).
            let text = berth_runtime::spec::read_config_file(path)
                .with_context(|| format!("read process file {}", path.display()))?;
            // Unknown capability names are dropped with a warning, as in config.json.
            let p =
                berth_runtime::spec::parse_process(path, &text).context("parse process file")?;
            if let Ok(v) = serde_json::from_slice(&text) {
                refuse(&format!("process file {}: ", path.display()), v)?;
            }
            return Ok(p);
        }
        if self.command.is_empty() {
            bail!("exec needs a command (or --process FILE)");
        }
        let spec = c.config().context("read the container's configuration")?;
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(self.command.clone()));
        p.set_terminal(Some(self.tty));
        p.set_console_size(None);
        if let Some(cwd) = &self.cwd {
            p.set_cwd(cwd.clone());
        }
        let mut env = p.env().clone().unwrap_or_default();
        merge_env(&mut env, &self.env);
        p.set_env(Some(env));
        if let Some(user) = &self.user {
            let id = |s: &str| {
                crate::numbers::id(s).map_err(|e| anyhow::anyhow!("--user {user:?}: {e}"))
            };
            let (uid, gid) = match user.split_once(':') {
                Some((u, g)) => (id(u)?, Some(id(g)?)),
                None => (id(user)?, None),
            };
            let u = p.user_mut();
            u.set_uid(uid);
            if let Some(gid) = gid {
                u.set_gid(gid);
            }
        }
        if !self.additional_gids.is_empty() {
            // Added to the configuration's groups, as runc does (the init side keeps each
            // group once).
            let mut gids = p.user().additional_gids().clone().unwrap_or_default();
            gids.extend_from_slice(&self.additional_gids);
            p.user_mut().set_additional_gids(Some(gids));
        }
        if !self.cap.is_empty() {
            let mut caps = p.capabilities().clone().unwrap_or_default();
            for name in &self.cap {
                let short = name.strip_prefix("CAP_").unwrap_or(name);
                let Ok(cap) = short.parse::<Capability>() else {
                    // As runc: an unknown capability is ignored with a warning
                    // (config.md#linux-process).
                    tracing::warn!("--cap {name}: ignoring unknown capability");
                    continue;
                };
                let with = |set: &Option<Capabilities>| {
                    let mut s = set.clone().unwrap_or_default();
                    s.insert(cap);
                    Some(s)
                };
                let (b, e, p) = (
                    with(caps.bounding()),
                    with(caps.effective()),
                    with(caps.permitted()),
                );
                caps.set_bounding(b).set_effective(e).set_permitted(p);
            }
            p.set_capabilities(Some(caps));
        }
        if self.no_new_privs {
            p.set_no_new_privileges(Some(true));
        }
        Ok(p)
    }
}

/// `berth exec`.
pub fn run(g: &GlobalOpts, a: ExecArgs) -> Result<u8> {
    let c = Container::load(&g.root(), &a.id)?;
    let process = a.process(&c)?;
    let opts = ExecOptions {
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        pid_file: a.pid_file.clone(),
        ..ExecOptions::default()
    };
    if a.detach {
        c.exec(process, &opts)?;
        return Ok(0);
    }
    let signals = forwarded_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None).context("block signals")?;
    let console = if opts.console_socket.is_none() && process.terminal().unwrap_or(false) {
        Some(ConsoleSocket::new(&g.root(), &a.id)?)
    } else {
        None
    };
    let opts = ExecOptions {
        console_socket: console
            .as_ref()
            .map(|c| c.path().to_owned())
            .or(opts.console_socket),
        ..opts
    };
    let mut process = process;
    if console.is_some() && process.console_size().is_none() {
        // The process starts right away: give it our size from the start.
        if let Some((height, width)) =
            berth_runtime::process::console::window_size(std::io::stdout().as_fd())
        {
            let size = oci_spec::runtime::BoxBuilder::default()
                .height(u64::from(height))
                .width(u64::from(width))
                .build()?;
            process.set_console_size(Some(size));
        }
    }
    let pid = c.exec(process, &opts)?;
    drop(c);
    match console {
        Some(sock) => {
            let master = sock.receive()?;
            drop(sock);
            relay_until_exit(pid, &signals, master)
        }
        None => forward_until_exit(pid, &signals),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_by_key() {
        let mut base = vec!["PATH=/bin".to_owned(), "A=1".to_owned()];
        merge_env(&mut base, &["A=2".to_owned(), "B=3".to_owned()]);
        assert_eq!(base, ["PATH=/bin", "A=2", "B=3"]);
    }
}
