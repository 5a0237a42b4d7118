//! The monitor's event loop: the process's output to the json-file log and to attached
//! clients, clients' input to the process, requests on the socket, the process's exit.
//!
//! Nothing here blocks the monitor on a peer. Every socket and the process's stdin are
//! non-blocking, and what a peer does not take at once waits in a [`Backlog`] until it polls
//! writable:
//!
//! - Output is held back, never dropped. While an attached client has [`CLIENT_BOUND`] bytes
//!   or more waiting, the monitor does not read the streams that client receives: the
//!   process blocks on its next write once its pipe (or terminal) is full, and the log pauses
//!   with it, until the client has taken enough or gone away. This is dockerd's behaviour
//!   (its broadcaster blocks the container once a consumer is about 1 MB behind), so a slow
//!   consumer (`docker run ... | less`, `docker exec ctr tar c / | gzip > f`) gets every
//!   byte and the log stays complete and in order. Only the output waits: the socket
//!   (`wait`, `status`, `resize`, further attaches), the exit and clients' input are served
//!   meanwhile, so stop, kill and `rm -f` work as ever, and a stalled client that
//!   disconnects lets the output go on at once.
//! - Input waits in the process's stdin backlog; while that holds [`STDIN_BACKLOG`] bytes, the
//!   clients that send input are not read (the backpressure reaches them through their
//!   sockets), so a process that never reads its stdin holds up only its own input.
//! - When the process has exited, what is left in its pipes is read and logged without
//!   waiting for slow clients (a client may then hold up to [`EXIT_SLACK`] more than
//!   [`CLIENT_BOUND`]; a pipe holds 64 KiB to 1 MiB, more only if a process that outlived
//!   the exit goes on writing, which is read for [`DRAIN`] at most), then the exit is
//!   recorded and `wait` clients are answered, whatever attached clients do. Attached
//!   clients then get all their remaining output for as long as they stay connected, however
//!   slowly they read ([`Monitor::finish_clients`]). As under dockerd, a client that reads
//!   nothing keeps its stream open: the monitor stays, holding that client's queue, until the
//!   client goes away (the daemon's relay closes it with the API connection, or when the
//!   daemon stops).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::backlog::Backlog;
use super::log::Stream;
use super::{Io, Monitor, Reply, Request};

/// While an attached client has this many bytes waiting, the streams it receives are not
/// read (1 MiB, about dockerd's per-consumer buffer).
pub(super) const CLIENT_BOUND: usize = 1 << 20;
/// After the exit, the process's remaining output is read until a client holds this much
/// more than [`CLIENT_BOUND`] (or the pipes end, or [`DRAIN`] passes).
pub(super) const EXIT_SLACK: usize = 16 << 20;
/// While this much input waits for the process, clients' input is not read.
pub(super) const STDIN_BACKLOG: usize = 256 << 10;
/// How long output is still read after the process exited (a background process may hold
/// the pipes open).
const DRAIN: Duration = Duration::from_secs(2);

pub(super) enum ClientKind {
    /// A request line is being read.
    Request(Vec<u8>),
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        input_closed: bool,
    },
    /// Answered at the exit.
    Wait,
}

pub(super) struct Client {
    sock: UnixStream,
    pub(super) kind: ClientKind,
    /// Bytes the client has not taken yet.
    out: Backlog,
    /// Answered: closed once `out` is written.
    closing: bool,
    /// Finished with: dropped at the end of the loop's turn.
    dead: bool,
}

impl Client {
    fn new(sock: UnixStream) -> Client {
        Client {
            sock,
            kind: ClientKind::Request(Vec::new()),
            out: Backlog::default(),
            closing: false,
            dead: false,
        }
    }

    /// Queue `data` and write what the socket takes now; false when the client is gone.
    fn send(&mut self, data: &[u8]) -> bool {
        self.out.push(data);
        self.flush()
    }

    /// Write what waits as far as the socket takes it; false when the client is gone.
    fn flush(&mut self) -> bool {
        let sock = &self.sock;
        self.out
            .flush(|b| {
                let mut s = sock;
                s.write(b)
            })
            .is_ok()
    }

    /// An attached client that receives output stream `i` (0 stdout, 1 stderr).
    fn receives(&self, i: usize) -> bool {
        match self.kind {
            ClientKind::Attach { stdout, stderr, .. } if !(self.dead || self.closing) => {
                if i == 0 {
                    stdout
                } else {
                    stderr
                }
            }
            _ => false,
        }
    }

    /// The client's input is wanted now.
    fn reads_input(&self, stdin_full: bool) -> bool {
        match &self.kind {
            _ if self.closing => false,
            ClientKind::Attach {
                stdin,
                input_closed,
                ..
            } => !(*input_closed || *stdin && stdin_full),
            ClientKind::Request(_) | ClientKind::Wait => true,
        }
    }
}

impl Monitor {
    /// Poll until the process has exited and its output is drained.
    pub(super) fn serve(&mut self) {
        #[derive(Clone, Copy)]
        enum Tag {
            Listener,
            Signal,
            Oom,
            Output(usize),
            Stdin,
            Client(usize),
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.exit.is_some() {
                let drained = !self.io.as_ref().is_some_and(Io::open_outputs);
                if drained || self.drain_until.is_some_and(|t| Instant::now() >= t) {
                    return;
                }
            }
            let stdin_full = self.stdin.len() >= STDIN_BACKLOG;
            let mut tags = Vec::new();
            let mut fds = Vec::new();
            tags.push(Tag::Listener);
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
            tags.push(Tag::Signal);
            fds.push(PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN));
            if let Some(w) = &self.oom {
                tags.push(Tag::Oom);
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            }
            if self.pid.is_some() {
                if let Some(io) = &self.io {
                    for i in 0..2 {
                        // A stream a slow client holds back is left in its pipe.
                        if let Some(fd) = io.output(i).filter(|_| !self.output_held(i)) {
                            tags.push(Tag::Output(i));
                            fds.push(PollFd::new(fd, PollFlags::POLLIN));
                        }
                    }
                    if let Some(fd) = io.stdin().filter(|_| !self.stdin.is_empty()) {
                        tags.push(Tag::Stdin);
                        fds.push(PollFd::new(fd, PollFlags::POLLOUT));
                    }
                }
            }
            for (i, c) in self.clients.iter().enumerate() {
                let mut flags = PollFlags::empty();
                if c.reads_input(stdin_full) {
                    flags |= PollFlags::POLLIN;
                }
                if !c.out.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                tags.push(Tag::Client(i));
                fds.push(PollFd::new(c.sock.as_fd(), flags));
            }
            let timeout = match self.drain_until {
                Some(t) => timeout_until(t),
                None => PollTimeout::NONE,
            };
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("berthd monitor {}: poll: {e}", self.cfg.id);
                    return;
                }
            }
            let ready: Vec<(Tag, PollFlags)> = tags
                .iter()
                .zip(fds.iter())
                .filter_map(|(t, f)| f.revents().filter(|r| !r.is_empty()).map(|r| (*t, r)))
                .collect();
            drop(fds);
            for (tag, rev) in ready {
                match tag {
                    Tag::Listener => {
                        if let Ok((sock, _)) = self.listener.accept() {
                            if sock.set_nonblocking(true).is_ok() {
                                self.clients.push(Client::new(sock));
                            }
                        }
                    }
                    Tag::Signal => self.reap(),
                    Tag::Oom => {
                        if let Some(w) = &mut self.oom {
                            match w.wait() {
                                Ok(berth_cgroups::OomEvent::Oom) => self.oom_killed = true,
                                _ => self.oom = None,
                            }
                        }
                    }
                    Tag::Output(i) => self.read_output(i, &mut buf),
                    Tag::Stdin => self.flush_stdin(),
                    Tag::Client(i) => self.client_event(i, rev, &mut buf),
                }
            }
            // Clients are only marked during the turn, so that the tags' indexes hold.
            self.clients
                .retain(|c| !(c.dead || c.closing && c.out.is_empty()));
        }
    }

    /// Output stream `i` waits for an attached client that has the most it may hold.
    fn output_held(&self, i: usize) -> bool {
        let bound = match self.exit {
            None => CLIENT_BOUND,
            Some(_) => CLIENT_BOUND + EXIT_SLACK,
        };
        self.clients
            .iter()
            .any(|c| c.receives(i) && c.out.len() >= bound)
    }

    fn reap(&mut self) {
        while let Ok(Some(_)) = self.sfd.read_signal() {}
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if Some(pid) == self.pid => self.exited(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if Some(pid) == self.pid => {
                    self.exited(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn exited(&mut self, code: i32) {
        self.exit = Some(code);
        self.drain_until = Some(Instant::now() + DRAIN);
        // Nobody writes to the process any more.
        self.stdin.clear();
        if let Some(Io::Pipes { stdin, .. }) = &mut self.io {
            *stdin = None;
        }
    }

    /// Queue input for the process (held until the start) and write what its stdin takes.
    pub(super) fn write_stdin(&mut self, data: &[u8]) {
        if self.exit.is_some() {
            return;
        }
        self.stdin.push(data);
        self.flush_stdin();
    }

    /// Write waiting input as far as the process's stdin takes it now; close the stdin when
    /// asked to once all is written.
    pub(super) fn flush_stdin(&mut self) {
        if self.pid.is_none() {
            return;
        }
        let io = &mut self.io;
        match io.as_ref().and_then(Io::stdin) {
            None => self.stdin.clear(),
            Some(fd) => {
                if self
                    .stdin
                    .flush(|b| nix::unistd::write(fd, b).map_err(io::Error::from))
                    .is_err()
                {
                    // EPIPE: the process closed its stdin; EIO: the terminal is gone.
                    // Nothing takes input any more.
                    self.stdin.clear();
                    if let Some(Io::Pipes { stdin, .. }) = io {
                        *stdin = None;
                    }
                }
            }
        }
        if self.stdin.is_empty() && self.close_stdin_when_flushed {
            if let Some(Io::Pipes { stdin, .. }) = &mut self.io {
                *stdin = None;
            }
        }
    }

    /// Close the process's stdin once the input that waits is written (StdinOnce: the
    /// attached client's input ended; input that came before the start goes first).
    pub(super) fn close_stdin(&mut self) {
        self.close_stdin_when_flushed = true;
        self.flush_stdin();
    }

    fn read_output(&mut self, i: usize, buf: &mut [u8]) {
        let Some(fd) = self.io.as_ref().and_then(|io| io.output(i)) else {
            return;
        };
        let n = match nix::unistd::read(fd, buf) {
            Ok(0) => {
                self.io.as_mut().expect("io").close_output(i);
                return;
            }
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => return,
            // EIO: the pty's other side is closed for good.
            Err(_) => {
                self.io.as_mut().expect("io").close_output(i);
                return;
            }
        };
        let data = &buf[..n];
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        if let Some(l) = &mut self.log {
            if let Err(e) = l.write(stream, data) {
                eprintln!("berthd monitor {}: write log: {e}", self.cfg.id);
            }
        }
        let tty = self.cfg.tty;
        let mut framed = Vec::new();
        if !tty {
            framed.reserve(8 + n);
            framed.push(if i == 0 { 1 } else { 2 });
            framed.extend_from_slice(&[0, 0, 0]);
            framed.extend_from_slice(&(n as u32).to_be_bytes());
            framed.extend_from_slice(data);
        }
        let bytes: &[u8] = if tty { data } else { &framed };
        // Queued whatever its length: the next turn does not read this stream while a
        // client holds CLIENT_BOUND bytes.
        for c in &mut self.clients {
            if c.receives(i) && !c.send(bytes) {
                c.dead = true;
            }
        }
    }

    /// Handle readiness of client `i`: write what waits for it, read what it sent.
    fn client_event(&mut self, i: usize, rev: PollFlags, buf: &mut [u8]) {
        let c = &mut self.clients[i];
        if c.dead {
            return;
        }
        let gone = PollFlags::POLLHUP | PollFlags::POLLERR;
        if rev.intersects(PollFlags::POLLOUT | gone) && !c.out.is_empty() && !c.flush() {
            c.dead = true;
            return;
        }
        if !rev.intersects(PollFlags::POLLIN | gone) {
            return;
        }
        let n = match c.sock.read(buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                return
            }
            Err(_) => {
                c.dead = true;
                return;
            }
        };
        match &mut c.kind {
            ClientKind::Request(line) => {
                if n == 0 {
                    c.dead = true;
                    return;
                }
                line.extend_from_slice(&buf[..n]);
                let Some(end) = line.iter().position(|&b| b == b'\n') else {
                    if line.len() >= 64 * 1024 {
                        c.dead = true;
                    }
                    return;
                };
                let rest = line.split_off(end + 1);
                let req: Result<Request, _> = serde_json::from_slice(&line[..end]);
                self.request(i, req, rest);
            }
            ClientKind::Attach {
                stdin,
                input_closed,
                ..
            } => {
                if n == 0 {
                    // Closed both ways (the daemon's relay detached, or died): the client is
                    // gone and the process's stdin stays open. Only a half-close (the client's
                    // input ended) closes a StdinOnce process's stdin.
                    if rev.intersects(gone) {
                        c.dead = true;
                        return;
                    }
                    *input_closed = true;
                    // A client that only reads keeps its connection for the output.
                    if *stdin && self.cfg.stdin_once {
                        self.close_stdin();
                    }
                    return;
                }
                if *stdin {
                    let data = buf[..n].to_vec();
                    self.write_stdin(&data);
                }
            }
            ClientKind::Wait => {
                if n == 0 {
                    c.dead = true;
                }
            }
        }
    }

    fn request(&mut self, i: usize, req: Result<Request, serde_json::Error>, rest: Vec<u8>) {
        let (reply, keep) = match req {
            Err(e) => (Reply::err(format!("bad request: {e}")), false),
            Ok(Request::Start) => match self.start() {
                Ok(_) => (self.status_reply(), false),
                Err(e) => (Reply::err(format!("{e:#}")), false),
            },
            Ok(Request::Status) => (self.status_reply(), false),
            Ok(Request::Wait) => {
                // Registered: the exit comes as a second line.
                self.clients[i].kind = ClientKind::Wait;
                (Reply::ok(), true)
            }
            Ok(Request::Resize { height, width }) => {
                self.pending_size = Some((height, width));
                let r = match &self.io {
                    Some(Io::Pty(Some(m))) => {
                        berth_runtime::process::console::set_window_size(m.as_fd(), height, width)
                            .map(|()| Reply::ok())
                            .unwrap_or_else(Reply::err)
                    }
                    _ => Reply::ok(),
                };
                (r, false)
            }
            Ok(Request::Attach {
                stdin,
                stdout,
                stderr,
            }) => {
                self.clients[i].kind = ClientKind::Attach {
                    stdin,
                    stdout,
                    stderr,
                    input_closed: false,
                };
                (Reply::ok(), true)
            }
        };
        let mut line = serde_json::to_vec(&reply).unwrap_or_default();
        line.push(b'\n');
        let c = &mut self.clients[i];
        if !c.send(&line) {
            c.dead = true;
            return;
        }
        c.closing = !keep;
        if keep && !rest.is_empty() {
            if let ClientKind::Attach { stdin: true, .. } = c.kind {
                self.write_stdin(&rest);
            }
        }
    }

    /// At the end: answer the `wait` clients, then give attached clients all their remaining
    /// output, however long they take, and close every connection. A client ends when its
    /// output is written or when it goes away (hang-up or a failed write); one that takes
    /// nothing is waited for (as dockerd keeps such an attach open), costing its queue and
    /// this process until it goes.
    pub(super) fn finish_clients(&mut self, exit_line: &[u8]) {
        for c in &mut self.clients {
            match c.kind {
                ClientKind::Wait => {
                    c.dead |= !c.send(exit_line);
                    c.closing = true;
                }
                ClientKind::Attach { .. } => c.closing = true,
                ClientKind::Request(_) => c.dead = true,
            }
        }
        loop {
            self.clients.retain(|c| !c.dead && !c.out.is_empty());
            if self.clients.is_empty() {
                return;
            }
            // Only writability is asked for: a hang-up or an error is reported anyway.
            let mut fds: Vec<PollFd> = self
                .clients
                .iter()
                .map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLOUT))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("berthd monitor {}: poll: {e}", self.cfg.id);
                    return;
                }
            }
            let revents: Vec<PollFlags> = fds
                .iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);
            let gone = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
            for (c, rev) in self.clients.iter_mut().zip(revents) {
                if rev.intersects(gone) || rev.contains(PollFlags::POLLOUT) && !c.flush() {
                    c.dead = true;
                }
            }
        }
    }
}

/// A poll timeout that ends at `t` (at least 1 ms, at most a minute).
fn timeout_until(t: Instant) -> PollTimeout {
    let ms = t
        .saturating_duration_since(Instant::now())
        .as_millis()
        .min(60_000) as u32
        + 1;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}
