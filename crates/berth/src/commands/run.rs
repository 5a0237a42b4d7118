//! `berth run`: create and start; in the foreground, forward signals and exit with the
//! container's status.

use std::os::fd::AsFd;

use anyhow::{Context, Result};
use berth_runtime::spec::Bundle;
use berth_runtime::ContainerError;
use clap::Args;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::{or_restart_protected, restart_protected, CreateArgs};
use super::tty::{relay_until_exit, ConsoleSocket};
use crate::cli::GlobalOpts;

/// `run [--detach] [create options] ID`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Detach from the container's process (exit once it is started).
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Create options.
    #[command(flatten)]
    pub create: CreateArgs,
}

/// Signals forwarded to the container in the foreground (all but the synchronous ones and
/// those that cannot be caught).
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGABRT,
        Signal::SIGTRAP,
        Signal::SIGSYS,
    ] {
        set.remove(s);
    }
    set
}

/// `berth run`.
pub fn run(g: &GlobalOpts, a: RunArgs) -> Result<u8> {
    let root = g.root();
    let id = a.create.id.clone();
    if a.detach {
        let mut c = or_restart_protected(a.create.builder(g).create())?;
        if let Err(e) = c.start() {
            let _ = c.delete(true);
            return Err(e.into());
        }
        return Ok(0);
    }
    // Block the signals before the container exists, so that neither its exit (SIGCHLD) nor a
    // signal meant for it can slip by; the init process unblocks them for itself.
    let signals = forwarded_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None).context("block signals")?;
    // Orphans of a container without its own pid namespace come to us, and are reaped.
    nix::sys::prctl::set_child_subreaper(true).context("become a subreaper")?;
    let bundle = Bundle::load(&a.create.bundle)?;
    let terminal = bundle
        .spec()
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // A terminal without a console socket: berth is the console (runc does the same).
    let console = if a.create.console_socket.is_none() && terminal {
        Some(ConsoleSocket::new(&root, &id)?)
    } else {
        None
    };
    let mut builder = a.create.builder(g);
    if let Some(c) = &console {
        builder = builder.console_socket(c.path());
    }
    let mut c = match builder.create_from(bundle) {
        Err(ContainerError::ExeNotProtected(_)) => {
            drop(console);
            sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signals), None).context("unblock")?;
            return Err(restart_protected());
        }
        r => r?,
    };
    let init = Pid::from_raw(c.pid());
    let master = match &console {
        Some(sock) => match sock.receive() {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = c.delete(true);
                return Err(e);
            }
        },
        None => None,
    };
    drop(console);
    if let Some(m) = &master {
        // Before start: the program may ask for its size first thing.
        berth_runtime::process::console::copy_window_size(std::io::stdout().as_fd(), m.as_fd());
    }
    if let Err(e) = c.start() {
        let _ = c.delete(true);
        return Err(e.into());
    }
    // `c` holds no lock while the container runs: `state`, `kill` etc. work meanwhile.
    let code = match master {
        Some(m) => relay_until_exit(init, &signals, m),
        None => forward_until_exit(init, &signals),
    };
    // This container, not another made at the same id if it was deleted meanwhile.
    match c.delete(true) {
        Ok(()) | Err(ContainerError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    code
}

/// Forward every signal we get to `init` until it exits; reap every child (we are a
/// subreaper). Returns init's exit code, or 128+signal.
pub fn forward_until_exit(init: Pid, signals: &SigSet) -> Result<u8> {
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    loop {
        // Reap first: the SIGCHLD may already have been consumed while we were starting.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == init => return Ok(code as u8),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => return Ok(128 + sig as u8),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let Some(info) = sfd.read_signal().context("read signalfd")? else {
            continue;
        };
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGCHLD {
            continue;
        }
        if let Ok(sig) = Signal::try_from(sig) {
            let _ = kill(init, sig);
        }
    }
}
