//! Starting and talking to the per-container monitors ([`crate::monitor`]).
//!
//! A monitor is `berthd --berthd-monitor DIR`, spawned by a dedicated spawner thread (never
//! from a tokio worker: the monitor is a plain fork+exec of our own binary, and the clone of
//! the container process happens inside it, single-threaded). The monitor detaches (its
//! first process exits at once and is reaped by the spawner); it reports readiness on its
//! stdout pipe, then serves its socket.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::UnixStream;

use crate::error::Error;
use crate::monitor::{self, Config, Reply, Request};

type Job = (
    PathBuf,
    mpsc::Sender<std::io::Result<std::process::ChildStdout>>,
);

/// The thread that spawns monitors.
#[derive(Debug)]
pub struct Spawner {
    tx: Mutex<mpsc::Sender<Job>>,
}

impl Spawner {
    /// Start the spawner thread; `exe` is berthd's own binary.
    pub fn new(exe: PathBuf) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("monitor-spawner".into())
            .spawn(move || {
                for (dir, reply) in rx {
                    let _ = reply.send(spawn_one(&exe, &dir));
                }
            })?;
        Ok(Spawner { tx: Mutex::new(tx) })
    }

    /// Write `cfg` to `dir` and start a monitor on it; returns once it reported readiness
    /// (for an init: the container is created), or its error.
    pub async fn spawn(&self, dir: &Path, cfg: &Config) -> Result<Option<i32>, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(format!("create {}", dir.display()), e))?;
        let data = serde_json::to_vec(cfg).expect("config serialises");
        crate::util::atomic_write(&dir.join(monitor::CONFIG_FILE), &data)
            .map_err(|e| Error::internal("write the monitor config", e))?;
        let (tx, rx) = mpsc::channel();
        self.tx
            .lock()
            .expect("spawner lock")
            .send((dir.to_owned(), tx))
            .map_err(|_| Error::Internal {
                what: "spawn a monitor".into(),
                cause: "the spawner thread is gone".into(),
            })?;
        let dir2 = dir.to_owned();
        let res = tokio::task::spawn_blocking(move || {
            rx.recv().map(|r| r.and_then(|out| read_ready(&dir2, out)))
        })
        .await
        .map_err(|e| Error::internal("spawn a monitor", e))?
        .map_err(|_| Error::Internal {
            what: "spawn a monitor".into(),
            cause: "the spawner thread is gone".into(),
        })?;
        let reply = res.map_err(|e| Error::internal("start the monitor", e))?;
        if reply.ok {
            Ok(reply.pid)
        } else {
            Err(Error::Internal {
                what: "create the container".into(),
                cause: reply.error.unwrap_or_else(|| "the monitor failed".into()),
            })
        }
    }
}

fn spawn_one(exe: &Path, dir: &Path) -> std::io::Result<std::process::ChildStdout> {
    let log = File::create(dir.join("monitor.log"))?;
    let mut child = Command::new(exe)
        .arg(monitor::MONITOR_ARG)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()?;
    let out = child.stdout.take().expect("piped");
    // The first process forks the real monitor and exits at once.
    child.wait()?;
    Ok(out)
}

fn read_ready(dir: &Path, out: std::process::ChildStdout) -> std::io::Result<Reply> {
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    if line.is_empty() {
        let log = std::fs::read_to_string(dir.join("monitor.log")).unwrap_or_default();
        return Ok(Reply {
            ok: false,
            error: Some(format!("the monitor exited without a word: {}", log.trim())),
            ..Default::default()
        });
    }
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// Send `req` on a fresh connection to the monitor at `socket`; returns its reply and the
/// connection (for `attach` and `wait`, which go on).
pub async fn call(
    socket: &Path,
    req: &Request,
) -> std::io::Result<(Reply, TokioBufReader<UnixStream>)> {
    let mut s = UnixStream::connect(socket).await?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line).await?;
    let mut r = TokioBufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out).await?;
    if out.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the monitor closed the connection",
        ));
    }
    let reply = serde_json::from_str(&out).map_err(std::io::Error::other)?;
    Ok((reply, r))
}

/// Wait on an open `wait` connection for the exit.
pub async fn wait_exit(mut conn: TokioBufReader<UnixStream>) -> Option<monitor::Exit> {
    let mut out = String::new();
    conn.read_line(&mut out).await.ok()?;
    serde_json::from_str::<Reply>(&out).ok()?.exit
}

/// Read a monitor's exit file.
pub fn read_exit(path: &Path) -> Option<monitor::Exit> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
