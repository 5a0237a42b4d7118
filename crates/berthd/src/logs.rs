//! Reading a container's json-file log for `GET /containers/{id}/logs`: tail, since/until,
//! stdout/stderr selection, timestamps, follow (across rotation), framed for the client.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::daemon::Snapshot;
use crate::monitor::log::{files, Record, Rotation};

/// What the client asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep streaming new output until the container stops.
    pub follow: bool,
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
    /// Prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// Only the last N lines (None: all).
    pub tail: Option<usize>,
    /// Only lines at or after (ns since the epoch).
    pub since: Option<i128>,
    /// Only lines before (ns since the epoch).
    pub until: Option<i128>,
}

/// Frame one record for the client: raw with a tty, docker's 8-byte header without.
fn frame(rec: &Record, opts: &Options, tty: bool) -> Option<Bytes> {
    let is_err = rec.stream == "stderr";
    if (is_err && !opts.stderr) || (!is_err && !opts.stdout) {
        return None;
    }
    if opts.since.is_some() || opts.until.is_some() {
        let t = crate::util::parse_rfc3339(&rec.time)?;
        if opts.since.is_some_and(|s| t < s) || opts.until.is_some_and(|u| t >= u) {
            return None;
        }
    }
    let mut payload = Vec::with_capacity(rec.log.len() + 40);
    if opts.timestamps {
        payload.extend_from_slice(rec.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(rec.log.as_bytes());
    if tty {
        return Some(Bytes::from(payload));
    }
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(if is_err { 2 } else { 1 });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Some(Bytes::from(out))
}

fn read_records(r: &mut impl BufRead, out: &mut Vec<Record>) -> u64 {
    let mut consumed = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !line.ends_with('\n') {
                    // A record being written: read it next time.
                    break;
                }
                consumed += n as u64;
                if let Ok(rec) = serde_json::from_str::<Record>(&line) {
                    out.push(rec);
                }
            }
        }
    }
    consumed
}

/// Stream the log at `path` into a channel of frames; ends when done (or, with follow, when
/// the container has stopped and everything it wrote was sent).
pub fn stream(
    path: PathBuf,
    rotation: Rotation,
    tty: bool,
    opts: Options,
    mut state: watch::Receiver<Snapshot>,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let o2 = opts.clone();
        let p2 = path.clone();
        // The backlog, on the blocking pool.
        let backlog = tokio::task::spawn_blocking(move || {
            let mut recs = Vec::new();
            let mut live: Option<(File, u64)> = None;
            for f in files(&p2, rotation) {
                let Ok(file) = File::open(&f) else { continue };
                let mut r = BufReader::new(file);
                let used = read_records(&mut r, &mut recs);
                if f == p2 {
                    live = Some((r.into_inner(), used));
                }
            }
            if let Some(n) = o2.tail {
                let skip = recs.len().saturating_sub(n);
                recs.drain(..skip);
            }
            (recs, live)
        })
        .await;
        let Ok((recs, live)) = backlog else { return };
        for rec in &recs {
            if let Some(b) = frame(rec, &opts, tty) {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
        }
        if !opts.follow {
            return;
        }
        let (mut file, mut pos) = match live {
            Some(l) => l,
            None => match File::open(&path) {
                Ok(f) => (f, 0),
                Err(_) => return,
            },
        };
        let mut finishing = false;
        loop {
            let stopped = !state.borrow().running;
            // New records in the live file.
            let mut recs = Vec::new();
            if file.seek(SeekFrom::Start(pos)).is_ok() {
                let mut r = BufReader::new(&file);
                pos += read_records(&mut r, &mut recs);
            }
            for rec in &recs {
                if let Some(b) = frame(rec, &opts, tty) {
                    if tx.send(b).await.is_err() {
                        return;
                    }
                }
            }
            // Rotated: the path is a new file; the old one is drained above.
            let rotated = match (std::fs::metadata(&path), file.metadata()) {
                (Ok(a), Ok(b)) => a.ino() != b.ino(),
                _ => false,
            };
            if rotated {
                if let Ok(f) = File::open(&path) {
                    file = f;
                    pos = 0;
                    continue;
                }
            }
            if recs.is_empty() && finishing {
                return;
            }
            if stopped {
                // One more pass after the stop, for what the monitor flushed last.
                finishing = true;
                continue;
            }
            tokio::select! {
                _ = state.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}
