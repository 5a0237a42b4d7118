//! The per-container monitor (the role of containerd-shim or conmon).
//!
//! berthd re-executes itself as `berthd --berthd-monitor DIR` before any thread or async
//! runtime exists. The monitor reads `DIR/monitor.json` ([`Config`]), detaches from the daemon
//! (its own session, reparented away from berthd) and, single-threaded:
//!
//! - creates the container with berth-runtime's `ContainerBuilder` (or, for an exec, waits for
//!   `start` and runs `Container::exec`), owning its stdio: pipes, or the pty master received
//!   over a console socket;
//! - writes the output to the json-file log and to attached clients, and clients' input to
//!   the process, never blocking itself on any of them ([`serve`]): a client that falls
//!   behind holds back the process's output (as under dockerd, the process blocks on write;
//!   no byte is dropped) but not the monitor's socket or the exit, and a process that never
//!   reads its stdin holds up nothing else;
//! - waits for the process (a child of ours), records its exit status, finish time and OOM
//!   kill atomically in the exit file, deletes the runtime state, answers `wait`, gives
//!   attached clients the rest of the output as they take it, and exits.
//!
//! It serves one unix socket; each connection sends one JSON line ([`Request`]) and gets a
//! JSON line back ([`Reply`]); an `attach` connection then carries the output (docker's 8-byte
//! framed stream without a tty, raw bytes with one) and takes stdin. The daemon can die and
//! come back at any time: the monitor needs nothing from it after `start`.

mod backlog;
pub mod log;
mod serve;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::monitor::backlog::Backlog;
use crate::monitor::log::Rotation;
use crate::monitor::serve::Client;

/// The file in the monitor's directory that holds its [`Config`].
pub const CONFIG_FILE: &str = "monitor.json";
/// The argument that turns `berthd` into a monitor.
pub const MONITOR_ARG: &str = "--berthd-monitor";

/// What a monitor runs and where it keeps things.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// The runtime container id.
    pub id: String,
    /// berth-runtime's state root.
    pub runtime_root: PathBuf,
    /// The bundle (for the container's init).
    pub bundle: PathBuf,
    /// `Some(process)`: an exec of this OCI process in the running container, not its init.
    pub exec: Option<oci_spec::runtime::Process>,
    /// The process has a terminal (pty) instead of pipes.
    pub tty: bool,
    /// Keep a stdin pipe open for attach (`OpenStdin`).
    pub open_stdin: bool,
    /// Close the process's stdin when the first attached client closes its input.
    pub stdin_once: bool,
    /// The json-file log and its rotation (the init only).
    pub log: Option<(PathBuf, Rotation)>,
    /// Where the [`Exit`] record goes.
    pub exit_file: PathBuf,
    /// The socket the monitor serves.
    pub socket: PathBuf,
    /// The console socket the runtime sends the pty master to.
    pub console_socket: PathBuf,
    /// The terminal's initial size as (rows, columns), set before the process starts.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
}

/// How the process ended, written atomically to [`Config::exit_file`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Exit {
    /// Exit status, or 128 + signal.
    pub exit_code: i32,
    /// When the monitor saw it end (RFC 3339).
    pub finished_at: String,
    /// The container's cgroup ran out of memory while it ran.
    pub oom_killed: bool,
}

/// One request on the monitor socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Start the process (the init waits in `create`'s stub until then).
    Start,
    /// Reply when the process has exited, with its [`Exit`].
    Wait,
    /// Reply with the pid and start time.
    Status,
    /// Stream output and take stdin on this connection after the reply.
    Attach {
        /// Forward input from the client to the process.
        stdin: bool,
        /// Send stdout.
        stdout: bool,
        /// Send stderr.
        stderr: bool,
    },
    /// Set the terminal's size.
    Resize {
        /// Rows.
        height: u16,
        /// Columns.
        width: u16,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    /// `false` with `error` set when the request failed.
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The process's host pid (once started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// How it ended (for `wait`, and `status` after the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
}

impl Reply {
    fn ok() -> Self {
        Reply {
            ok: true,
            ..Default::default()
        }
    }
    fn err(e: impl std::fmt::Display) -> Self {
        Reply {
            ok: false,
            error: Some(e.to_string()),
            ..Default::default()
        }
    }
}

/// The process's stdio, monitor side.
enum Io {
    Pipes {
        stdin: Option<OwnedFd>,
        outputs: [Option<OwnedFd>; 2],
    },
    Pty(Option<OwnedFd>),
}

impl Io {
    fn output(&self, i: usize) -> Option<BorrowedFd<'_>> {
        match self {
            Io::Pipes { outputs, .. } => outputs[i].as_ref().map(|f| f.as_fd()),
            Io::Pty(m) if i == 0 => m.as_ref().map(|f| f.as_fd()),
            Io::Pty(_) => None,
        }
    }
    fn close_output(&mut self, i: usize) {
        match self {
            Io::Pipes { outputs, .. } => outputs[i] = None,
            Io::Pty(m) => *m = None,
        }
    }
    fn open_outputs(&self) -> bool {
        self.output(0).is_some() || self.output(1).is_some()
    }
    fn stdin(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Io::Pipes { stdin, .. } => stdin.as_ref().map(|f| f.as_fd()),
            Io::Pty(m) => m.as_ref().map(|f| f.as_fd()),
        }
    }
}

struct Monitor {
    cfg: Config,
    listener: UnixListener,
    sfd: SignalFd,
    io: Option<Io>,
    /// The created container (init only), held until `start`.
    created: Option<berth_runtime::Container>,
    oom: Option<berth_cgroups::OomWatcher>,
    oom_killed: bool,
    log: Option<log::Writer>,
    clients: Vec<Client>,
    pid: Option<Pid>,
    started_at: Option<String>,
    exit: Option<i32>,
    drain_until: Option<Instant>,
    pending_size: Option<(u16, u16)>,
    /// Input not yet written to the process (before its start, or while its stdin is full).
    stdin: Backlog,
    /// Close the process's stdin once `stdin` is written out.
    close_stdin_when_flushed: bool,
}

/// The monitor's entry point: `berthd --berthd-monitor DIR`. Never returns.
pub fn main(dir: &Path) -> ! {
    // fd 1 is the daemon's readiness pipe, fd 2 the monitor's own log file.
    let ready = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(f) => File::from(f),
        Err(_) => std::process::exit(1),
    };
    let mut ready = Some(ready);
    let code = match run(dir, &mut ready) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berthd monitor {}: {e:#}", dir.display());
            if let Some(mut r) = ready.take() {
                let _ = writeln!(
                    r,
                    "{}",
                    serde_json::to_string(&Reply::err(format!("{e:#}"))).unwrap_or_default()
                );
            }
            1
        }
    };
    std::process::exit(code)
}

fn run(dir: &Path, ready: &mut Option<File>) -> Result<()> {
    let cfg_path = dir.join(CONFIG_FILE);
    let cfg: Config = serde_json::from_slice(
        &std::fs::read(&cfg_path).with_context(|| format!("read {}", cfg_path.display()))?,
    )
    .with_context(|| format!("parse {}", cfg_path.display()))?;
    // An exec (and an init sharing a pid namespace) runs runtime code inside the container:
    // the binary must be protected first (this re-executes us from a read-only mount).
    let needs = cfg.exec.is_some()
        || std::fs::read(cfg.bundle.join("config.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<oci_spec::runtime::Spec>(&d).ok())
            .is_none_or(|spec| berth_runtime::exe::init_needs_protection(&spec));
    if needs {
        berth_runtime::exe::protect().context("protect the berthd binary")?;
    }
    crate::sys::detach().context("fork")?;
    nix::unistd::setsid().context("setsid")?;
    crate::util::atomic_write(&dir.join("pid"), std::process::id().to_string().as_bytes())
        .context("write the pid file")?;
    crate::sys::default_sigpipe().context("reset SIGPIPE")?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGPIPE);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .context("block signals")?;
    let mut only_chld = SigSet::empty();
    only_chld.add(Signal::SIGCHLD);
    let sfd = SignalFd::with_flags(&only_chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("signalfd")?;
    // Orphans of processes that leave the container's pid namespace (host pid mode, exec's
    // children) come to us and are reaped.
    nix::sys::prctl::set_child_subreaper(true).context("become a subreaper")?;
    let _ = std::fs::remove_file(&cfg.socket);
    let listener = UnixListener::bind(&cfg.socket)
        .with_context(|| format!("listen on {}", cfg.socket.display()))?;
    listener
        .set_nonblocking(true)
        .context("make the monitor socket non-blocking")?;
    let log = match &cfg.log {
        Some((path, rot)) => Some(
            log::Writer::open(path, *rot)
                .with_context(|| format!("open log {}", path.display()))?,
        ),
        None => None,
    };
    let mut m = Monitor {
        cfg,
        listener,
        sfd,
        io: None,
        created: None,
        oom: None,
        oom_killed: false,
        log,
        clients: Vec::new(),
        pid: None,
        started_at: None,
        exit: None,
        drain_until: None,
        pending_size: None,
        stdin: Backlog::default(),
        close_stdin_when_flushed: false,
    };
    m.pending_size = m.cfg.console_size.filter(|(h, w)| *h > 0 && *w > 0);
    if m.cfg.exec.is_none() {
        m.create().context("create the container")?;
    }
    if let Some(mut r) = ready.take() {
        let ready = Reply {
            ok: true,
            pid: m.created.as_ref().map(|c| c.pid()),
            ..Default::default()
        };
        writeln!(r, "{}", serde_json::to_string(&ready)?).context("report readiness")?;
    }
    m.serve();
    m.finish();
    Ok(())
}

/// Run `f` (create or exec) with the process's stdio in place of ours, then take ours back.
fn with_stdio<T>(cfg: &Config, f: impl FnOnce(Option<&Path>) -> Result<T>) -> Result<(T, Io)> {
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("open /dev/null")?;
    if cfg.tty {
        let _ = std::fs::remove_file(&cfg.console_socket);
        let console = UnixListener::bind(&cfg.console_socket)
            .with_context(|| format!("listen on {}", cfg.console_socket.display()))?;
        let res = f(Some(&cfg.console_socket));
        let _ = std::fs::remove_file(&cfg.console_socket);
        let out = res?;
        let (conn, _) = console.accept().context("accept on the console socket")?;
        let master = berth_runtime::process::console::receive_master(conn.as_fd())
            .context("receive the pty master")?;
        nix::fcntl::fcntl(
            &master,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .context("make the pty master non-blocking")?;
        return Ok((out, Io::Pty(Some(master))));
    }
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2");
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (in_r, in_w) = if cfg.open_stdin {
        let (r, w) = pipe()?;
        // Ours only (the process's end is another open file): input never blocks us.
        nix::fcntl::fcntl(
            &w,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .context("make the stdin pipe non-blocking")?;
        (r, Some(w))
    } else {
        (devnull.as_fd().try_clone_to_owned().context("dup")?, None)
    };
    let saved_err = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("dup stderr")?;
    nix::unistd::dup2_stdin(&in_r).context("dup2 stdin")?;
    nix::unistd::dup2_stdout(&out_w).context("dup2 stdout")?;
    nix::unistd::dup2_stderr(&err_w).context("dup2 stderr")?;
    let res = f(None);
    // Ours again, whatever happened: the process keeps its copies.
    let _ = nix::unistd::dup2_stdin(&devnull);
    let _ = nix::unistd::dup2_stdout(&devnull);
    let _ = nix::unistd::dup2_stderr(&saved_err);
    let out = res?;
    Ok((
        out,
        Io::Pipes {
            stdin: in_w,
            outputs: [Some(out_r), Some(err_r)],
        },
    ))
}

impl Monitor {
    fn create(&mut self) -> Result<()> {
        let builder = berth_runtime::ContainerBuilder::new(&self.cfg.id, &self.cfg.bundle)
            .root(&self.cfg.runtime_root);
        let (c, io) = with_stdio(&self.cfg, |console| {
            let b = match console {
                Some(p) => builder.console_socket(p),
                None => builder,
            };
            Ok(b.create()?)
        })?;
        match c.cgroup().and_then(|cg| Ok(cg.oom_events()?)) {
            Ok(w) => self.oom = Some(w),
            Err(e) => eprintln!("berthd monitor {}: no OOM events: {e}", self.cfg.id),
        }
        if let (Some((h, w)), Io::Pty(Some(master))) = (self.pending_size, &io) {
            let _ = berth_runtime::process::console::set_window_size(master.as_fd(), h, w);
        }
        self.created = Some(c);
        self.io = Some(io);
        Ok(())
    }

    fn start(&mut self) -> Result<i32> {
        if self.pid.is_some() {
            bail!("already started");
        }
        let pid = match self.cfg.exec.clone() {
            None => {
                let mut c = self
                    .created
                    .take()
                    .context("the container was not created")?;
                if let Err(e) = c.start() {
                    let _ = c.delete(true);
                    return Err(e.into());
                }
                c.pid()
            }
            Some(process) => {
                let (root, id) = (self.cfg.runtime_root.clone(), self.cfg.id.clone());
                let (pid, io) = with_stdio(&self.cfg, |console| {
                    let opts = berth_runtime::container::ExecOptions {
                        console_socket: console.map(Path::to_owned),
                        ..Default::default()
                    };
                    // Reaped by pid (we are its parent and a subreaper).
                    let c = berth_runtime::ContainerRef::new(&root, &id);
                    Ok(c.exec(process, &opts)?.into_pid())
                })?;
                self.io = Some(io);
                pid.as_raw()
            }
        };
        self.pid = Some(Pid::from_raw(pid));
        self.started_at = Some(crate::util::now());
        if let (Some((h, w)), Some(Io::Pty(Some(master)))) = (self.pending_size, &self.io) {
            let _ = berth_runtime::process::console::set_window_size(master.as_fd(), h, w);
        }
        // Input that came before the start, and its end.
        self.flush_stdin();
        Ok(pid)
    }

    fn status_reply(&self) -> Reply {
        Reply {
            ok: true,
            pid: self.pid.map(Pid::as_raw),
            started_at: self.started_at.clone(),
            ..Default::default()
        }
    }

    fn finish(&mut self) {
        if let Some(mut l) = self.log.take() {
            if let Err(e) = l.flush() {
                eprintln!("berthd monitor {}: write log: {e}", self.cfg.id);
            }
        }
        if let Some(w) = &mut self.oom {
            let mut p = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
            if poll(&mut p, PollTimeout::ZERO).is_ok_and(|n| n > 0)
                && matches!(w.wait(), Ok(berth_cgroups::OomEvent::Oom))
            {
                self.oom_killed = true;
            }
        }
        self.oom = None;
        if self.cfg.exec.is_none() {
            match berth_runtime::ContainerRef::new(&self.cfg.runtime_root, &self.cfg.id)
                .delete(true)
            {
                Ok(()) | Err(berth_runtime::ContainerError::NotFound { .. }) => {}
                Err(e) => eprintln!("berthd monitor {}: delete: {e}", self.cfg.id),
            }
        }
        let exit = Exit {
            exit_code: self.exit.unwrap_or(255),
            finished_at: crate::util::now(),
            oom_killed: self.oom_killed,
        };
        if let Err(e) = crate::util::atomic_write(
            &self.cfg.exit_file,
            &serde_json::to_vec(&exit).unwrap_or_default(),
        ) {
            eprintln!(
                "berthd monitor {}: write {}: {e}",
                self.cfg.id,
                self.cfg.exit_file.display()
            );
        }
        let reply = Reply {
            ok: true,
            pid: self.pid.map(Pid::as_raw),
            started_at: self.started_at.clone(),
            exit: Some(exit),
            ..Default::default()
        };
        let mut line = serde_json::to_vec(&reply).unwrap_or_default();
        line.push(b'\n');
        let _ = std::fs::remove_file(&self.cfg.socket);
        self.finish_clients(&line);
    }
}
