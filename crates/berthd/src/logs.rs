//! Reading a container's json-file log for `GET /containers/{id}/logs`: tail, since/until,
//! stdout/stderr selection, timestamps, follow, framed for the client.
//!
//! A [`Cursor`] reads the log's records in order across its files: after the end of a file
//! that was rotated away it goes on with the next newer one, found by the identity of the file
//! it holds open, so a reader that fell several rotations behind still reads every file that
//! is kept (dockerd's follower skips the files rotated while it was behind).
//!
//! `follow` waits for a change in the log's directory ([`Watcher`]: inotify, one instance for
//! the daemon) instead of looking on a timer, and ends when the container stops, once it has
//! read to the end of what the monitor wrote (the monitor writes its last records before it
//! reports the exit).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rustix::fs::inotify;
use tokio::sync::{mpsc, watch};

use crate::daemon::Snapshot;
use crate::monitor::log::{rotated, Record, Rotation};

/// Records read in one turn on the blocking pool.
const BATCH: usize = 1024;
/// Frames go to the client in pieces of about this many bytes.
const PIECE: usize = 64 * 1024;
/// Where inotify is not to be had, a follower looks again this often.
const POLL: Duration = Duration::from_millis(250);

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
fn frame(rec: &Record, opts: &Options, tty: bool, out: &mut Vec<u8>) {
    let is_err = rec.stream == "stderr";
    if (is_err && !opts.stderr) || (!is_err && !opts.stdout) {
        return;
    }
    if opts.since.is_some() || opts.until.is_some() {
        let Some(t) = crate::util::parse_rfc3339(&rec.time) else {
            return;
        };
        if opts.since.is_some_and(|s| t < s) || opts.until.is_some_and(|u| t >= u) {
            return;
        }
    }
    let len = rec.log.len()
        + if opts.timestamps {
            rec.time.len() + 1
        } else {
            0
        };
    if !tty {
        out.push(if is_err { 2 } else { 1 });
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    if opts.timestamps {
        out.extend_from_slice(rec.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(rec.log.as_bytes());
}

/// Read complete records (`max` at most) from `r`; returns the bytes they took. A last line
/// without its newline is left (it is being written).
fn read_records(r: &mut impl BufRead, out: &mut Vec<Record>, max: usize) -> u64 {
    let mut consumed = 0u64;
    let mut line = String::new();
    let mut n_read = 0;
    while n_read < max {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !line.ends_with('\n') {
                    break;
                }
                consumed += n as u64;
                n_read += 1;
                if let Ok(rec) = serde_json::from_str::<Record>(&line) {
                    out.push(rec);
                }
            }
        }
    }
    consumed
}

/// A file's identity (device, inode), unique while the file is held open.
type FileId = (u64, u64);

/// An open file of the log and its identity.
type Held = (File, FileId);

fn open_held(path: &Path) -> Option<Held> {
    let f = File::open(path).ok()?;
    let m = f.metadata().ok()?;
    Some((f, (m.dev(), m.ino())))
}

/// A position in a json-file log (`NAME`, `NAME.1`, ... `NAME.(max-file - 1)`, as
/// [`crate::monitor::log::Writer`] rotates it) that reads on across rotations.
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    rotation: Rotation,
    file: Option<Held>,
    pos: u64,
    /// Files were rotated away (deleted) before they were read: their records are lost.
    pub skipped: bool,
}

impl Cursor {
    /// At the start of the log's oldest file (or, when there is no file yet, of the first).
    pub fn oldest(path: &Path, rotation: Rotation) -> Cursor {
        let mut c = Cursor {
            path: path.to_owned(),
            rotation,
            file: None,
            pos: 0,
            skipped: false,
        };
        c.file = c.first_file();
        c
    }

    fn first_file(&self) -> Option<Held> {
        self.scan()?.into_iter().rev().flatten().next()
    }

    /// The log's files, newest first (index `i` holds `NAME.i`), opened; `None` when a
    /// rotation kept changing them while they were looked at. Two passes that agree, with no
    /// file in two places, are a state the writer was in: it renames one file at a time,
    /// each to the next higher index, so that state has its files in order with at most one
    /// name missing.
    fn scan(&self) -> Option<Vec<Option<Held>>> {
        let n = self.rotation.max_files.max(1);
        let pass = || {
            (0..n)
                .map(|i| open_held(&rotated(&self.path, i)))
                .collect::<Vec<_>>()
        };
        let ids = |v: &[Option<Held>]| {
            v.iter()
                .map(|f| f.as_ref().map(|h| h.1))
                .collect::<Vec<_>>()
        };
        for _ in 0..8 {
            let a = pass();
            let b = pass();
            let ia = ids(&a);
            if ia != ids(&b) {
                continue;
            }
            let mut present: Vec<FileId> = ia.into_iter().flatten().collect();
            let count = present.len();
            present.sort_unstable();
            present.dedup();
            if present.len() == count {
                return Some(a);
            }
        }
        None
    }

    /// The file after ours: the nearest newer one there is. `None` while the next is not
    /// there yet (a rotation under way). If ours is gone (rotated away), the oldest kept.
    fn successor(&mut self) -> Option<Held> {
        let me = self.file.as_ref()?.1;
        let files = self.scan()?;
        match files
            .iter()
            .position(|f| f.as_ref().is_some_and(|h| h.1 == me))
        {
            Some(k) => files.into_iter().take(k).flatten().last(),
            None => {
                let oldest = files.into_iter().rev().flatten().next();
                self.skipped |= oldest.is_some();
                oldest
            }
        }
    }

    /// Read complete records into `out`, `max` at most, going on across rotations; true when
    /// it read to the end of the file being written (caught up), false when `max` stopped it.
    pub fn read(&mut self, out: &mut Vec<Record>, max: usize) -> bool {
        let start = out.len();
        loop {
            if self.file.is_none() {
                self.file = self.first_file();
                self.pos = 0;
            }
            let Some((file, id)) = &self.file else {
                return true;
            };
            // Looked at before reading: a file renamed away is complete (the writer renames
            // it, then writes to a new one).
            let live = std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == *id);
            let mut f = file;
            let left = max - (out.len() - start);
            if f.seek(SeekFrom::Start(self.pos)).is_ok() {
                let mut r = BufReader::with_capacity(64 * 1024, f);
                self.pos += read_records(&mut r, out, left);
            }
            if out.len() - start >= max {
                return false;
            }
            if live {
                // Truncated in place (max-file 1): on from its start.
                if file.metadata().is_ok_and(|m| m.len() < self.pos) {
                    self.pos = 0;
                    continue;
                }
                return true;
            }
            match self.successor() {
                Some(next) => {
                    self.file = Some(next);
                    self.pos = 0;
                }
                None => return true,
            }
        }
    }
}

/// The log's directory's events on inotify, for the daemon's followers: one instance and a
/// thread that reads it, a watch per directory shared by its followers (the kernel allows a
/// user 128 instances by default: one a follower would run out).
#[derive(Clone)]
pub struct Watcher(Arc<Inner>);

struct Inner {
    fd: OwnedFd,
    dirs: Mutex<HashMap<i32, Dir>>,
    /// The thread reading events runs (else followers poll).
    alive: AtomicBool,
    serial: AtomicU64,
}

struct Dir {
    users: usize,
    serial: u64,
    tx: watch::Sender<u64>,
}

/// A follower's watch of a directory; dropping it ends the watch for the last follower.
pub struct DirWatch {
    inner: Arc<Inner>,
    wd: i32,
    serial: u64,
    rx: watch::Receiver<u64>,
}

impl DirWatch {
    /// Waits for a change in the directory since the last (or since the watch began). An
    /// error when there will be none: the directory is gone, or the watcher failed.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.rx.changed().await
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let Ok(mut dirs) = self.inner.dirs.lock() else {
            return;
        };
        let Some(d) = dirs.get_mut(&self.wd).filter(|d| d.serial == self.serial) else {
            return;
        };
        d.users -= 1;
        if d.users == 0 {
            dirs.remove(&self.wd);
            let _ = inotify::remove_watch(&self.inner.fd, self.wd);
        }
    }
}

impl Watcher {
    /// An inotify instance and the thread that reads it.
    pub fn new() -> io::Result<Watcher> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC)?;
        let inner = Arc::new(Inner {
            fd,
            dirs: Mutex::default(),
            alive: AtomicBool::new(true),
            serial: AtomicU64::new(0),
        });
        let i2 = inner.clone();
        std::thread::Builder::new()
            .name("log-watch".into())
            .spawn(move || dispatch(&i2))?;
        Ok(Watcher(inner))
    }

    /// The daemon's watcher, made on first use (and again if its thread failed); `None` when
    /// inotify is not to be had (followers then poll).
    pub fn shared() -> Option<Watcher> {
        static SHARED: Mutex<Option<Watcher>> = Mutex::new(None);
        let mut w = SHARED.lock().ok()?;
        if !w.as_ref().is_some_and(|w| w.0.alive.load(Ordering::SeqCst)) {
            match Watcher::new() {
                Ok(n) => *w = Some(n),
                Err(e) => {
                    tracing::warn!("inotify: {e}: logs -f looks for new lines on a timer");
                    return None;
                }
            }
        }
        w.clone()
    }

    /// Watch `dir`: the writes, creations, renames and removals of its files.
    pub fn watch(&self, dir: &Path) -> io::Result<DirWatch> {
        use inotify::WatchFlags as W;
        let mut dirs = self
            .0
            .dirs
            .lock()
            .map_err(|_| io::Error::other("the watcher's lock is poisoned"))?;
        let wd = inotify::add_watch(
            &self.0.fd,
            dir,
            W::MODIFY
                | W::CREATE
                | W::MOVED_FROM
                | W::MOVED_TO
                | W::DELETE
                | W::DELETE_SELF
                | W::MOVE_SELF
                | W::ONLYDIR,
        )?;
        let d = dirs.entry(wd).or_insert_with(|| Dir {
            users: 0,
            serial: self.0.serial.fetch_add(1, Ordering::SeqCst),
            tx: watch::channel(0).0,
        });
        d.users += 1;
        Ok(DirWatch {
            inner: self.0.clone(),
            wd,
            serial: d.serial,
            rx: d.tx.subscribe(),
        })
    }
}

/// Read events as they come and wake the followers of the directories they name (a batch
/// at a time: everything one read returned).
fn dispatch(inner: &Inner) {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 16 * 1024];
    let mut events = inotify::Reader::new(&inner.fd, &mut buf);
    let (mut woken, mut gone, mut all) = (Vec::new(), Vec::new(), false);
    let failed = loop {
        match events.next() {
            Ok(ev) => {
                let flags = ev.events();
                if flags.contains(inotify::ReadFlags::QUEUE_OVERFLOW) {
                    all = true;
                } else if flags.contains(inotify::ReadFlags::IGNORED) {
                    gone.push(ev.wd());
                } else {
                    woken.push(ev.wd());
                }
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => break e.to_string(),
        }
        if !events.is_buffer_empty() {
            continue;
        }
        woken.sort_unstable();
        woken.dedup();
        let Ok(mut dirs) = inner.dirs.lock() else {
            break "the watcher's lock is poisoned".to_owned();
        };
        for (wd, d) in dirs.iter() {
            if all || woken.binary_search(wd).is_ok() {
                d.tx.send_modify(|n| *n += 1);
            }
        }
        // Watches the kernel ended (their directory was removed): their followers see the end.
        for wd in gone.drain(..) {
            dirs.remove(&wd);
        }
        woken.clear();
        all = false;
    };
    tracing::warn!("inotify: {failed}: logs -f looks for new lines on a timer");
    inner.alive.store(false, Ordering::SeqCst);
    if let Ok(mut dirs) = inner.dirs.lock() {
        dirs.clear();
    }
}

/// Stream the log at `path` into a channel of framed pieces; ends when done (or, with
/// follow, when the container has stopped and everything it wrote was sent, or when the
/// receiver is dropped). `watcher` wakes a follower on changes; without it, it polls.
pub fn stream(
    path: PathBuf,
    rotation: Rotation,
    tty: bool,
    opts: Options,
    state: watch::Receiver<Snapshot>,
    watcher: Option<Watcher>,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(path, rotation, tty, opts, state, watcher, tx));
    rx
}

/// Send `recs` framed, in pieces; false when the client is gone.
async fn send(tx: &mpsc::Sender<Bytes>, recs: &[Record], opts: &Options, tty: bool) -> bool {
    let mut piece = Vec::new();
    for (i, rec) in recs.iter().enumerate() {
        frame(rec, opts, tty, &mut piece);
        let last = i + 1 == recs.len();
        if (piece.len() >= PIECE || (last && !piece.is_empty()))
            && tx
                .send(Bytes::from(std::mem::take(&mut piece)))
                .await
                .is_err()
        {
            return false;
        }
    }
    true
}

async fn run(
    path: PathBuf,
    rotation: Rotation,
    tty: bool,
    opts: Options,
    mut state: watch::Receiver<Snapshot>,
    watcher: Option<Watcher>,
    tx: mpsc::Sender<Bytes>,
) {
    // Watched before the first read: a write after that read wakes us.
    let mut dir = None;
    if opts.follow {
        if let (Some(w), Some(parent)) = (watcher, path.parent()) {
            match w.watch(parent) {
                Ok(d) => dir = Some(d),
                Err(e) => tracing::debug!(path = %path.display(), "watch the log: {e}"),
            }
        }
    }
    let first = state.borrow_and_update().clone();
    let mut stopped = !first.running || first.removed;
    let p = path.clone();
    let Ok(mut cursor) = tokio::task::spawn_blocking(move || Cursor::oldest(&p, rotation)).await
    else {
        return;
    };
    // With `tail`, the last records of what is there now.
    let mut tail = opts.tail.map(|n| (n, VecDeque::new()));
    let mut warned = false;
    loop {
        // A stop seen before this read: the monitor had written everything, and this read
        // finds the rest.
        let last = stopped;
        let Ok((c, recs, caught_up)) = tokio::task::spawn_blocking(move || {
            let mut recs = Vec::new();
            let caught_up = cursor.read(&mut recs, BATCH);
            (cursor, recs, caught_up)
        })
        .await
        else {
            return;
        };
        cursor = c;
        if cursor.skipped && !warned {
            warned = true;
            tracing::warn!(path = %path.display(), "a log reader fell behind the rotation: lines were skipped");
        }
        let ok = match &mut tail {
            Some((n, ring)) => {
                for r in recs {
                    if ring.len() == *n {
                        ring.pop_front();
                    }
                    if *n > 0 {
                        ring.push_back(r);
                    }
                }
                if caught_up {
                    let backlog: Vec<Record> = ring.drain(..).collect();
                    tail = None;
                    send(&tx, &backlog, &opts, tty).await
                } else {
                    true
                }
            }
            None => send(&tx, &recs, &opts, tty).await,
        };
        if !ok {
            return;
        }
        if !caught_up {
            continue;
        }
        if !opts.follow || last {
            return;
        }
        tokio::select! {
            r = changed(&mut dir) => {
                if r.is_err() {
                    dir = None;
                }
            }
            r = state.changed() => {
                let s = state.borrow_and_update();
                if r.is_err() || !s.running || s.removed || s.exits != first.exits {
                    stopped = true;
                }
            }
            _ = tx.closed() => return,
        }
    }
}

/// A change in the watched directory, or without a watch the next look.
async fn changed(dir: &mut Option<DirWatch>) -> Result<(), ()> {
    match dir {
        Some(d) => d.changed().await.map_err(drop),
        None => {
            tokio::time::sleep(POLL).await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::log::{Stream, Writer};

    fn logs(c: &mut Cursor) -> Vec<String> {
        let mut recs = Vec::new();
        while !c.read(&mut recs, 7) {}
        recs.into_iter().map(|r| r.log).collect()
    }

    fn lines(r: std::ops::Range<u32>) -> Vec<String> {
        r.map(|i| format!("line {i}\n")).collect()
    }

    /// A log `c.log` in a new tempdir with its writer: (the tempdir, the log's path, the
    /// writer, rotating by `rot`).
    fn new_log(rot: Rotation) -> (tempfile::TempDir, PathBuf, Writer) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let w = Writer::open(&p, rot).unwrap();
        (d, p, w)
    }

    /// Writes `line I\n` to stdout for each I of `r`, as [`lines`] lists them.
    fn write_lines(w: &mut Writer, r: std::ops::Range<u32>) {
        for i in r {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
    }

    #[test]
    fn cursor_reads_every_kept_file_after_many_rotations() {
        let rot = Rotation {
            max_size: 300,
            max_files: 40,
        };
        let (_d, p, mut w) = new_log(rot);
        w.write(Stream::Stdout, b"line 0\n").unwrap();
        let mut c = Cursor::oldest(&p, rot);
        assert_eq!(logs(&mut c), lines(0..1));
        // Far behind: 33 rotations since the last read (3 records a file), all within the
        // files kept.
        write_lines(&mut w, 1..100);
        assert!(rotated(&p, 33).exists() && !rotated(&p, 34).exists());
        assert_eq!(logs(&mut c), lines(1..100));
        // Reading along as it is written.
        let mut got = Vec::new();
        for i in 100..600 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
            if i % 3 == 0 {
                got.extend(logs(&mut c));
            }
        }
        got.extend(logs(&mut c));
        assert_eq!(got, lines(100..600));
        assert!(!c.skipped);
        // A new reader starts at the oldest file kept.
        let mut fresh = Cursor::oldest(&p, rot);
        let all = logs(&mut fresh);
        assert_eq!(all.last().unwrap(), "line 599\n");
        let first: u32 = all[0][5..].trim().parse().unwrap();
        assert_eq!(all, lines(first..600));
    }

    #[test]
    fn cursor_behind_the_kept_files_goes_on_from_the_oldest() {
        let rot = Rotation {
            max_size: 200,
            max_files: 3,
        };
        let (_d, p, mut w) = new_log(rot);
        w.write(Stream::Stdout, b"line 0\n").unwrap();
        let mut c = Cursor::oldest(&p, rot);
        assert_eq!(logs(&mut c), lines(0..1));
        write_lines(&mut w, 1..100);
        // The rest of the file it holds (2 records a file), then the oldest kept.
        let got = logs(&mut c);
        assert!(c.skipped);
        assert_eq!(got[0], "line 1\n");
        assert_eq!(got[1..], lines(94..100));
    }

    #[test]
    fn cursor_after_a_truncation_reads_from_the_start() {
        let rot = Rotation {
            max_size: 200,
            max_files: 1,
        };
        let (_d, p, mut w) = new_log(rot);
        let mut c = Cursor::oldest(&p, rot);
        assert!(logs(&mut c).is_empty());
        // Two records fill the 200 bytes; the third truncates the file and starts it again.
        write_lines(&mut w, 0..2);
        assert_eq!(logs(&mut c), lines(0..2));
        w.write(Stream::Stdout, b"line 2\n").unwrap();
        assert_eq!(logs(&mut c), lines(2..3));
        w.write(Stream::Stdout, b"line 3\n").unwrap();
        assert_eq!(logs(&mut c), lines(3..4));
    }

    #[test]
    fn cursor_on_a_log_not_yet_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let rot = Rotation::default();
        let mut c = Cursor::oldest(&p, rot);
        assert!(logs(&mut c).is_empty());
        let mut w = Writer::open(&p, rot).unwrap();
        w.write(Stream::Stderr, b"late\n").unwrap();
        assert_eq!(logs(&mut c), ["late\n"]);
    }

    /// Follow with the watcher: lines across rotations arrive, the stream ends at the stop
    /// after the last line.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follow_wakes_and_ends_at_the_stop() {
        // ~75 rotations: every file is kept, so a reader behind by many files (a loaded
        // machine) still owes nothing to the rotation (falling behind is tested apart).
        let rot = Rotation {
            max_size: 300,
            max_files: 200,
        };
        let (_d, p, mut w) = new_log(rot);
        let (state_tx, state) = watch::channel(Snapshot {
            running: true,
            ..Default::default()
        });
        let opts = Options {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let watcher = Watcher::new().unwrap();
        let mut rx = stream(p.clone(), rot, true, opts, state, Some(watcher.clone()));
        let mut got = Vec::new();
        for i in 0..100u32 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
            let want = format!("line {i}\n");
            while !String::from_utf8_lossy(&got).ends_with(&want) {
                let b = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("a line within 10 s")
                    .expect("the stream goes on");
                got.extend_from_slice(&b);
            }
        }
        write_lines(&mut w, 100..300);
        w.flush().unwrap();
        state_tx.send_modify(|s| {
            s.running = false;
            s.exits += 1;
        });
        while let Some(b) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the end within 10 s")
        {
            got.extend_from_slice(&b);
        }
        assert_eq!(String::from_utf8_lossy(&got), lines(0..300).concat());
        // The last follower of the directory ended its watch.
        assert!(watcher.0.dirs.lock().unwrap().is_empty());
    }
}
