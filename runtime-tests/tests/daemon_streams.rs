//! berthd's streams under pressure: `logs -f` woken by the log's writes and followed across
//! rotation to the container's exit; attached clients and docker CLI pipes that read slowly
//! or stop reading (the container is held back, as under dockerd, and every byte arrives),
//! with stop working meanwhile; a container that never reads the input sent to it; and
//! streamed stats. Raw HTTP over the daemon's socket where timing or a stalled client
//! matters (each stream decoded by the test or on a thread of its own). Each test starts its
//! own berthd on a temp socket with its own data and exec roots, and checks that nothing is
//! left behind.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use runtime_tests::daemon::TestDaemon;

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    TestDaemon::start().expect("start berthd")
}

/// What a stream's reader thread saw.
enum Ev {
    /// A piece of the body (a frame's payload, or raw bytes) and when it arrived.
    Data(Instant, Vec<u8>),
    /// The body ended (EOF, the chunked terminator or an error) at this time.
    End(Instant),
}

/// Sends `method path` with `headers` on a new connection and reads the response head:
/// (connection, status, head, body bytes read past the head).
fn open(
    d: &TestDaemon,
    method: &str,
    path: &str,
    headers: &str,
) -> (UnixStream, u16, String, Vec<u8>) {
    let mut s = UnixStream::connect(&d.sock).expect("connect to berthd");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\n{headers}\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut buf).expect("read the response head");
        assert!(n > 0, "connection closed before the head: {got:?}");
        got.extend_from_slice(&buf[..n]);
    };
    s.set_read_timeout(None).unwrap();
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (s, status, head, got[end + 4..].to_vec())
}

/// Takes the complete chunks off `buf` into `out`; true once the terminating chunk came.
fn dechunk(buf: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    loop {
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let line = String::from_utf8_lossy(&buf[..eol]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        if size == 0 {
            return true;
        }
        if buf.len() < eol + 2 + size + 2 {
            return false;
        }
        out.extend_from_slice(&buf[eol + 2..eol + 2 + size]);
        buf.drain(..eol + 2 + size + 2);
    }
}

/// Takes the complete docker frames (8-byte header, then the payload) off `buf`.
fn deframe(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while buf.len() >= 8 {
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        assert!(
            buf[0] <= 2 && buf[1..4] == [0, 0, 0],
            "not a frame header: {:?}",
            &buf[..8]
        );
        if buf.len() < 8 + len {
            break;
        }
        out.push(buf[8..8 + len].to_vec());
        buf.drain(..8 + len);
    }
    out
}

/// Reads the body of `s` on a thread: HTTP chunks undone when `chunked`, docker frames when
/// `framed`; every piece stamped with the time it arrived.
fn reader(s: UnixStream, first: Vec<u8>, chunked: bool, framed: bool) -> Lines {
    let conn = s.try_clone().ok();
    let mut l = Lines::new(read_thread(s, first, chunked, framed), "");
    l.conn = conn;
    l
}

fn read_thread(
    mut s: UnixStream,
    first: Vec<u8>,
    chunked: bool,
    framed: bool,
) -> mpsc::Receiver<Ev> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut wire = first;
        let mut body = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut ended = false;
            if chunked {
                ended = dechunk(&mut wire, &mut body);
            } else {
                body.append(&mut wire);
            }
            let now = Instant::now();
            let pieces = if framed {
                deframe(&mut body)
            } else {
                vec![std::mem::take(&mut body)]
            };
            for p in pieces.into_iter().filter(|p| !p.is_empty()) {
                if tx.send(Ev::Data(now, p)).is_err() {
                    return;
                }
            }
            if ended {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => wire.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(Ev::End(Instant::now()));
    });
    rx
}

/// The lines of a stream, each with the time its last byte arrived.
struct Lines {
    /// The connection, shut down when the lines are dropped (the client goes away).
    conn: Option<UnixStream>,
    rx: mpsc::Receiver<Ev>,
    partial: Vec<u8>,
    ready: VecDeque<(Instant, String)>,
    ended: Option<Instant>,
    what: String,
}

impl Lines {
    fn named(mut self, what: &str) -> Lines {
        self.what = what.to_owned();
        self
    }

    fn new(rx: mpsc::Receiver<Ev>, what: &str) -> Lines {
        Lines {
            conn: None,
            rx,
            partial: Vec::new(),
            ready: VecDeque::new(),
            ended: None,
            what: what.to_owned(),
        }
    }

    /// `GET /containers/NAME/logs?QUERY`, decoded.
    fn logs(d: &TestDaemon, name: &str, query: &str) -> Lines {
        let (s, st, head, rest) = open(
            d,
            "GET",
            &format!("/v1.47/containers/{name}/logs?{query}"),
            "",
        );
        assert_eq!(st, 200, "{head}");
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        // A tty's log comes raw, other logs in docker's frames.
        let framed = head
            .to_ascii_lowercase()
            .contains("application/vnd.docker.multiplexed-stream");
        reader(s, rest, chunked, framed).named(&format!("logs {name}"))
    }

    fn absorb(&mut self, ev: Ev) {
        match ev {
            Ev::Data(t, bytes) => {
                self.partial.extend_from_slice(&bytes);
                while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.partial.drain(..=i).collect();
                    let line = String::from_utf8_lossy(&line[..i]);
                    self.ready
                        .push_back((t, line.trim_end_matches('\r').to_owned()));
                }
            }
            Ev::End(t) => self.ended = Some(t),
        }
    }

    /// The next line, waiting until `deadline`; `None` at the end of the stream or deadline.
    fn next_by(&mut self, deadline: Instant) -> Option<(Instant, String)> {
        loop {
            if let Some(l) = self.ready.pop_front() {
                return Some(l);
            }
            if self.ended.is_some() {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ev) => self.absorb(ev),
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => self.ended = Some(Instant::now()),
            }
        }
    }

    /// The next line, which must come within `secs` and satisfy `ok`.
    fn next_is(&mut self, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> (Instant, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        match self.next_by(deadline) {
            Some((t, l)) if ok(&l) => (t, l),
            Some((_, l)) => panic!("{}: wanted {what}, got the line {l:?}", self.what),
            None => panic!(
                "{}: no {what} within {secs} s (ended: {:?})",
                self.what, self.ended
            ),
        }
    }

    /// Skips lines until one satisfies `ok`, within `secs`.
    fn find(&mut self, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> (Instant, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            match self.next_by(deadline) {
                Some((t, l)) if ok(&l) => return (t, l),
                Some(_) => {}
                None => panic!(
                    "{}: no {what} within {secs} s (ended: {:?})",
                    self.what, self.ended
                ),
            }
        }
    }

    /// Every line until the stream ends, which must be within `secs`; and when it ended.
    fn until_end(&mut self, secs: u64) -> (Vec<String>, Instant) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::new();
        while let Some((_, l)) = self.next_by(deadline) {
            out.push(l);
        }
        let end = self.ended.unwrap_or_else(|| {
            panic!(
                "{}: did not end within {secs} s; {} lines, last {:?}",
                self.what,
                out.len(),
                out.last()
            )
        });
        if !self.partial.is_empty() {
            out.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
        (out, end)
    }

    /// The lines that arrived so far, without waiting.
    fn now(&mut self) -> Vec<String> {
        while let Ok(ev) = self.rx.try_recv() {
            self.absorb(ev);
        }
        self.ready.drain(..).map(|(_, l)| l).collect()
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if let Some(c) = &self.conn {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Attach to NAME (not a tty: framed output) with QUERY's streams: the connection to write
/// input to, and its output's lines.
fn attach(d: &TestDaemon, name: &str, query: &str) -> (UnixStream, Lines) {
    let (s, st, head, rest) = open(
        d,
        "POST",
        &format!("/v1.47/containers/{name}/attach?stream=1&{query}"),
        "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n",
    );
    assert_eq!(st, 101, "{head}");
    let input = s.try_clone().unwrap();
    (
        input,
        reader(s, rest, false, true).named(&format!("attach {name}")),
    )
}

fn berthd_fds(d: &TestDaemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .map(|r| r.count())
        .unwrap_or(0)
}

/// `logs -f` is woken by the log's writes instead of polling it, follows the log across its
/// rotations (max-size/max-file) without losing a line, and ends at the container's exit
/// after the last line. The follower's delay behind an attached client reading the same
/// output is measured over 30 lines, a rotation every few lines: berthd polled the log every
/// 50 ms (a median delay of ~50 ms), and on rotation jumped to the newest file, skipping the
/// files rotated between two polls (lines lost in a burst).
#[test]
fn daemon_logs_follow_wakes_on_write_and_follows_rotation_to_exit() {
    let d = daemon();
    d.load_busybox();
    let pad = "p".repeat(900);
    let script = r#"while read l; do if [ "$l" = burst ]; then seq 1 2000; exit 0; fi; echo "$l $PAD"; done"#;
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "lf",
        "--log-opt",
        "max-size=4k",
        "--log-opt",
        "max-file=50",
        "-e",
        &format!("PAD={pad}"),
        "busybox",
        "sh",
        "-c",
        script,
    ]));
    let mut follow = Lines::logs(&d, "lf", "follow=1&stdout=1&stderr=1");
    let (mut input, mut attached) = attach(&d, "lf", "stdin=1&stdout=1&stderr=1");
    // Another follower of the idle container goes away: berthd closes its end at once, not at
    // the container's next line. (Counted once the first follower is set up: berthd's one
    // inotify instance is made for the first.)
    input.write_all(b"hello\n").unwrap();
    follow.next_is(20, "hello", |l| l.starts_with("hello "));
    attached.next_is(20, "hello", |l| l.starts_with("hello "));
    let base = berthd_fds(&d);
    let idle = Lines::logs(&d, "lf", "follow=1&stdout=1&stderr=1");
    d.wait_until("the follower's connection", 10, || berthd_fds(&d) > base);
    drop(idle);
    d.wait_until("berthd's fds back to where they were", 10, || {
        berthd_fds(&d) == base
    });
    let mut lags = Vec::new();
    for i in 0..30 {
        let want = format!("ping-{i} {pad}");
        input.write_all(format!("ping-{i}\n").as_bytes()).unwrap();
        let (ta, _) = attached.next_is(20, &want[..8], |l| l == want);
        let (tf, _) = follow.next_is(20, &want[..8], |l| l == want);
        lags.push(tf.saturating_duration_since(ta));
    }
    let mut sorted = lags.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        median < Duration::from_millis(15),
        "logs -f trails the attached client by a median {median:?}: {lags:?}"
    );
    // A burst (~150 KB of records: 37 rotations, all within the 50 files kept) and the exit.
    input.write_all(b"burst\n").unwrap();
    let (rest, _) = follow.until_end(30);
    let want: Vec<String> = (1..=2000).map(|n| n.to_string()).collect();
    if rest != want {
        let first_bad = rest.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "logs -f lost or garbled lines of the burst: {} of {} lines, first difference at {first_bad:?}: {:?}",
            rest.len(),
            want.len(),
            first_bad.map(|i| (&rest[i], &want[i]))
        );
    }
    // The follow ended because the container exited.
    let st = d.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}|{{.LogPath}}",
        "lf",
    ]);
    let (state, log_path) = st.split_once('|').unwrap();
    assert_eq!(state, "exited 0");
    let rotated = (1..50)
        .filter(|i| std::path::Path::new(&format!("{log_path}.{i}")).exists())
        .count();
    assert!(
        rotated >= 30,
        "only {rotated} rotated files: the log did not rotate as expected"
    );
    drop(input);
    let _ = attached.until_end(20);
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}

/// What `seq 1 N | sed "s/\$/ $PAD/"` prints: lines `"{i} {pad}\n"` for i from 1 to `n`.
fn numbered(n: usize, pad: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * (pad.len() + 8));
    for i in 1..=n {
        v.extend_from_slice(format!("{i} {pad}\n").as_bytes());
    }
    v
}

/// A shell command printing [`numbered`]`(n, $PAD)`.
fn seq_script(n: usize) -> String {
    format!(r#"seq 1 {n} | sed "s/\$/ $PAD/""#)
}

/// FNV-1a, 64 bits: a checksum to show in failures.
fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `got` must be `want`, byte for byte: on failure, both counts and checksums and where they
/// first differ.
fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let around = |b: &[u8]| {
        String::from_utf8_lossy(&b[at.min(b.len())..(at + 40).min(b.len())]).into_owned()
    };
    panic!(
        "{what}: {} bytes (checksum {:016x}), wanted {} bytes (checksum {:016x}); first \
         difference at byte {at}: {:?} instead of {:?}",
        got.len(),
        checksum(got),
        want.len(),
        checksum(want),
        around(got),
        around(want),
    );
}

/// `log` is `numbered(k, pad)` for some k, perhaps followed by the start of line k + 1 (the
/// writer was killed mid-line); returns k.
fn assert_numbered(what: &str, log: &[u8], pad: &str) -> usize {
    let mut at = 0;
    let mut k = 0;
    while at < log.len() {
        let line = format!("{} {pad}\n", k + 1);
        let rest = &log[at..];
        if rest.len() < line.len() && line.as_bytes().starts_with(rest) {
            break;
        }
        assert!(
            rest.starts_with(line.as_bytes()),
            "{what}: line {} is {:?}",
            k + 1,
            String::from_utf8_lossy(&rest[..rest.len().min(line.len())])
        );
        at += line.len();
        k += 1;
    }
    k
}

/// An attach's stream read by the test (no tty: docker's frames undone), stdout and stderr
/// kept apart. Not read until the test reads it: the client stalls meanwhile.
struct Attached {
    sock: UnixStream,
    wire: Vec<u8>,
    out: Vec<u8>,
    err: Vec<u8>,
    what: String,
}

impl Attached {
    fn new(d: &TestDaemon, name: &str, query: &str, what: &str) -> Attached {
        let (sock, st, head, rest) = open(
            d,
            "POST",
            &format!("/v1.47/containers/{name}/attach?stream=1&{query}"),
            "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n",
        );
        assert_eq!(st, 101, "{head}");
        // A hang is a failure, not a wait.
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut a = Attached {
            sock,
            wire: rest,
            out: Vec::new(),
            err: Vec::new(),
            what: what.to_owned(),
        };
        a.deframe();
        a
    }

    fn deframe(&mut self) {
        for (stream, payload) in frames(&mut self.wire) {
            match stream {
                1 => self.out.extend_from_slice(&payload),
                _ => self.err.extend_from_slice(&payload),
            }
        }
    }

    /// One read of at most `max` bytes off the connection; false at the end of the stream.
    fn read_some(&mut self, max: usize) -> bool {
        let mut buf = vec![0u8; max];
        match self.sock.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.wire.extend_from_slice(&buf[..n]);
                self.deframe();
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => panic!(
                "{}: nothing came for 60 s ({} bytes so far)",
                self.what,
                self.out.len()
            ),
            Err(_) => false,
        }
    }

    fn read_to_end(&mut self) {
        while self.read_some(64 * 1024) {}
        assert!(
            self.wire.is_empty(),
            "{}: the stream ended inside a frame",
            self.what
        );
    }

    /// Reads at full speed on a thread of its own.
    fn spawn(mut self) -> Reading {
        let got = Arc::new(AtomicUsize::new(0));
        let seen = got.clone();
        let thread = std::thread::spawn(move || {
            while self.read_some(64 * 1024) {
                seen.store(self.out.len(), Ordering::SeqCst);
            }
            self
        });
        Reading { got, thread }
    }
}

/// Takes the complete docker frames off `buf`: (stream, payload).
fn frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 8 {
        let h = &buf[at..at + 8];
        assert!(
            h[0] <= 2 && h[1..4] == [0, 0, 0],
            "not a frame header: {h:?}"
        );
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if buf.len() - at < 8 + len {
            break;
        }
        out.push((h[0], buf[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    buf.drain(..at);
    out
}

/// An [`Attached`] read on a thread.
struct Reading {
    got: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Attached>,
}

impl Reading {
    /// Stdout bytes received so far.
    fn len(&self) -> usize {
        self.got.load(Ordering::SeqCst)
    }

    fn wait_len(&self, d: &TestDaemon, n: usize, secs: u64) {
        d.wait_until(
            &format!("{n} bytes of output to the reading client"),
            secs,
            || self.len() >= n || self.thread.is_finished(),
        );
        assert!(
            self.len() >= n,
            "the reading client's stream ended after {} bytes",
            self.len()
        );
    }

    /// The stream, which must end within `secs`.
    fn finish(self, secs: u64) -> Attached {
        let ended =
            runtime_tests::wait_for(Duration::from_secs(secs), || self.thread.is_finished());
        assert!(
            ended,
            "the reading client's stream did not end within {secs} s ({} bytes)",
            self.len()
        );
        self.thread.join().expect("the reading thread")
    }
}

/// Runs the docker CLI with `args`, its stdout a pipe that a slow consumer reads (16 KiB at a
/// time, 2 ms apart); returns what it read and the CLI's exit status.
fn into_slow_pipe(d: &TestDaemon, args: &[&str]) -> (Vec<u8>, std::process::ExitStatus) {
    let mut child = d
        .docker_cmd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the docker CLI");
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let errs = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = err.read_to_string(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read the docker CLI's output: {e}"),
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "docker {args:?}: still writing after 180 s ({} bytes)",
                got.len()
            );
        }
        // A slow consumer, not a synchronisation.
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut status = None;
    let exited = runtime_tests::wait_for(Duration::from_secs(30), || {
        status = child.try_wait().expect("wait for the docker CLI");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let errs = errs.join().unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("docker {args:?} did not exit: {errs}"));
    assert!(
        status.success(),
        "docker {args:?}: {status}: {errs}\n--- daemon log ---\n{}",
        d.log()
    );
    (got, status)
}

/// A client reading slowly gets every byte of 40 MB of output: the container is held back
/// while the client is behind (it blocks on write, as under dockerd), nothing is dropped, and
/// the log holds it all too. When the container has exited with the last 256 KiB still owed
/// to the client (it stopped reading), `docker wait` answers at once, and the client that
/// then takes a break of 3 s still gets the rest. berthd disconnected an attached client
/// 8 MiB behind (the stream ended short), and after the exit dropped a client that took
/// nothing for 2 s.
#[test]
fn daemon_slow_attach_reader_gets_every_byte() {
    let d = daemon();
    d.load_busybox();
    let pad = "y".repeat(993);
    let n = 40_000;
    let want = numbered(n, &pad);
    let script = format!("read go; {}", seq_script(n));
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "sr",
        "-e",
        &format!("PAD={pad}"),
        "busybox",
        "sh",
        "-c",
        &script,
    ]));
    let mut r = Attached::new(&d, "sr", "stdin=1&stdout=1&stderr=1", "slow reader");
    let mut wait = d.docker_cmd(&["wait", "sr"]);
    let (waited_tx, waited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = waited_tx.send(wait.output());
    });
    r.sock.write_all(b"go\n").unwrap();
    // A slow consumer, until all but the last 256 KiB have come.
    let hold = want.len() - (256 << 10);
    while r.out.len() < hold {
        assert!(
            r.read_some(16 * 1024),
            "the slow reader's stream ended after {} of {} bytes\n--- daemon log ---\n{}",
            r.out.len(),
            want.len(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The reader stops: the rest is less than the monitor holds for a client, so the
    // container finishes and its exit is reported without the reader.
    let out = waited
        .recv_timeout(Duration::from_secs(30))
        .expect("docker wait answered while the client had not read the end")
        .expect("run docker wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(r.out.len() < want.len());
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "sr"
        ]),
        "exited 0"
    );
    // A consumer's break after the exit (the old monitor dropped it after 2 s).
    std::thread::sleep(Duration::from_secs(3));
    r.read_to_end();
    assert_same("the slow attached reader", &r.out, &want);
    assert!(r.err.is_empty(), "{:?}", String::from_utf8_lossy(&r.err));
    let logs = d.docker(&["logs", "sr"]);
    assert!(logs.status.success());
    assert_same("docker logs", &logs.stdout, &want);
    drop(r);
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}

/// A client that reads nothing at all while the container writes 900 KB (less than the
/// monitor holds for a client) and exits: `docker wait` answers at once, and the client,
/// reading only 3 s after the exit, still gets every byte and then the end of its stream (as
/// dockerd keeps such an attach open). berthd dropped a client that took nothing for 2 s
/// after the exit, with what it had not taken.
#[test]
fn daemon_attach_client_idle_past_the_exit_gets_the_rest() {
    let d = daemon();
    d.load_busybox();
    let pad = "v".repeat(993);
    let n = 900;
    let want = numbered(n, &pad);
    let script = format!("read go; {}", seq_script(n));
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "ip",
        "-e",
        &format!("PAD={pad}"),
        "busybox",
        "sh",
        "-c",
        &script,
    ]));
    let mut idle = Attached::new(&d, "ip", "stdin=1&stdout=1&stderr=1", "idle client");
    idle.sock.write_all(b"go\n").unwrap();
    let t = Instant::now();
    assert_eq!(d.ok(&["wait", "ip"]), "0");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "docker wait took {took:?}");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "ip"
        ]),
        "exited 0"
    );
    // The client takes nothing for a while after the exit (a consumer's pause).
    std::thread::sleep(Duration::from_secs(3));
    idle.read_to_end();
    assert_same("the idle client", &idle.out, &want);
    assert_same("docker logs", &d.docker(&["logs", "ip"]).stdout, &want);
    drop(idle);
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}

/// `docker run --rm ... | slow consumer` and `docker exec ... | slow consumer` through the
/// docker CLI get all 40 MB, byte for byte (dockerd blocks the process until the consumer
/// takes its output). berthd disconnected the CLI's attach once it was 8 MiB behind: the
/// output was cut short and the CLI still exited 0.
#[test]
fn daemon_cli_run_and_exec_into_a_slow_pipe_get_every_byte() {
    let d = daemon();
    d.load_busybox();
    let pad = "z".repeat(993);
    let n = 40_000;
    let want = numbered(n, &pad);
    let env = format!("PAD={pad}");
    let script = seq_script(n);
    let (got, _) = into_slow_pipe(
        &d,
        &["run", "--rm", "-e", &env, "busybox", "sh", "-c", &script],
    );
    assert_same("docker run --rm | slow consumer", &got, &want);
    let id = d.track(&d.ok(&["run", "-d", "--name", "ex", "busybox", "sleep", "1000"]));
    let (got, _) = into_slow_pipe(&d, &["exec", "-e", &env, "ex", "sh", "-c", &script]);
    assert_same("docker exec | slow consumer", &got, &want);
    d.ok(&["rm", "-f", &id]);
    d.assert_clean(&[]);
}

/// A client that stops reading holds back the container's output (as under dockerd) and
/// loses none of it, but nothing else: `docker stop -t 1` ends the held container at once,
/// and the stalled client then gets everything from its attach to the end (the log's last
/// bytes), as does the client that read all along (the whole log). A stalled client that
/// disconnects lets the output go on at once: the reading client then gets 30 MB, far more
/// than the stalled client's queue and buffers let through. berthd disconnected a client
/// 8 MiB behind: the stalled client lost the output after that.
#[test]
fn daemon_stalled_client_holds_output_and_stop_still_works() {
    let d = daemon();
    d.load_busybox();
    let pad = "w".repeat(993);
    let script = format!("read go; {}", seq_script(100_000_000));
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "hb",
        "-e",
        &format!("PAD={pad}"),
        "busybox",
        "sh",
        "-c",
        &script,
    ]));
    let stalled = Attached::new(&d, "hb", "stdout=1&stderr=1", "stalled client");
    let a = Attached::new(&d, "hb", "stdin=1&stdout=1&stderr=1", "reading client");
    let mut input = a.sock.try_clone().unwrap();
    let a = a.spawn();
    input.write_all(b"go\n").unwrap();
    a.wait_len(&d, 100_000, 30);
    drop(stalled);
    a.wait_len(&d, 30_000_000, 120);
    // Another client stalls; the reading client goes on while the stalled one's queue takes
    // the output (half its bound: the wait cannot depend on the queue's limit).
    let before = a.len();
    let mut stalled = Attached::new(&d, "hb", "stdout=1&stderr=1", "stalled client");
    a.wait_len(&d, before + 500_000, 30);
    let t = Instant::now();
    d.ok(&["stop", "-t", "1", "hb"]);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "docker stop took {took:?}");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "hb"
        ]),
        "exited 137"
    );
    let a = a.finish(60);
    stalled.read_to_end();
    drop(input);
    let logs = d.docker(&["logs", "hb"]);
    assert!(logs.status.success());
    let log = logs.stdout;
    let lines = assert_numbered("docker logs", &log, &pad);
    assert!(lines > 30_000, "{lines} lines logged");
    assert_same("the reading client", &a.out, &log);
    assert!(
        stalled.out.len() >= 500_000,
        "the stalled client got {} bytes",
        stalled.out.len()
    );
    assert_same(
        "the stalled client (from its attach)",
        &stalled.out,
        &log[log.len() - stalled.out.len()..],
    );
    drop(a);
    drop(stalled);
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}

/// A container that never reads its stdin, sent input faster than it takes it (the input
/// pipe or the terminal fills up): its output still reaches the log, and `docker stop`
/// still ends it. berthd's monitor wrote input with a blocking loop, so a full stdin
/// stopped it from reading the container's output (the log froze) until the process died.
fn unread_stdin(tty: bool) {
    let d = daemon();
    d.load_busybox();
    let name = if tty { "nt" } else { "np" };
    let mut args = vec!["run", "-d", "-i"];
    if tty {
        args.push("-t");
    }
    let script = "i=0; while :; do echo tick-$i; i=$((i+1)); usleep 20000; done";
    args.extend(["--name", name, "busybox", "sh", "-c", script]);
    let id = d.track(&d.ok(&args));
    let tick = |l: &str| -> Option<u64> {
        let rest = &l[l.find("tick-")? + 5..];
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    let mut follow = Lines::logs(&d, name, "follow=1&stdout=1&stderr=1");
    follow.find(20, "a tick", |l| tick(l).is_some());
    // Input the process never reads, from a thread (its writes block once the daemon and the
    // monitor hold all they take: that is the client's business).
    let query = if tty { "stdin=1&stdout=1" } else { "stdin=1" };
    let (mut input, _out) = if tty {
        let (s, st, head, _) = open(
            &d,
            "POST",
            &format!("/v1.47/containers/{name}/attach?stream=1&{query}"),
            "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n",
        );
        assert_eq!(st, 101, "{head}");
        let out = s.try_clone().unwrap();
        // The terminal's output (ticks and echoed input): drained, unread.
        (s, Some(reader(out, Vec::new(), false, false).named("tty")))
    } else {
        let (s, out) = attach(&d, name, query);
        (s, Some(out))
    };
    let sent = Arc::new(AtomicUsize::new(0));
    let (done_tx, done) = mpsc::channel::<()>();
    {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut chunk = "x".repeat(1023);
            chunk.push('\n');
            let chunk = chunk.repeat(64);
            while input.write_all(chunk.as_bytes()).is_ok() {
                sent.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            let _ = done_tx.send(());
        });
    }
    let enough = runtime_tests::wait_for(Duration::from_secs(20), || {
        sent.load(Ordering::SeqCst) >= 384 * 1024
    });
    assert!(
        enough,
        "only {} bytes of input sent",
        sent.load(Ordering::SeqCst)
    );
    // Output goes on: ticks newer than any seen so far reach the log.
    let newest = follow
        .now()
        .iter()
        .filter_map(|l| tick(l))
        .max()
        .unwrap_or(0);
    follow.find(10, "newer ticks", |l| {
        tick(l).is_some_and(|n| n >= newest + 10)
    });
    let t = Instant::now();
    d.ok(&["stop", "-t", "1", name]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "docker stop took {:?}",
        t.elapsed()
    );
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            name
        ]),
        "exited 137"
    );
    // The input's connection ended with the container.
    assert!(
        done.recv_timeout(Duration::from_secs(20)).is_ok(),
        "the input connection outlived the container"
    );
    let _ = follow.until_end(20);
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_unread_stdin_stalls_nothing_pipes() {
    unread_stdin(false);
}

#[test]
fn daemon_unread_stdin_stalls_nothing_tty() {
    unread_stdin(true);
}

fn stats_stream(d: &TestDaemon, name: &str) -> Lines {
    let (s, st, head, rest) = open(
        d,
        "GET",
        &format!("/v1.47/containers/{name}/stats?stream=1"),
        "",
    );
    assert_eq!(st, 200, "{head}");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    reader(s, rest, chunked, false).named(&format!("stats {name}"))
}

/// `docker stats`' stream (stream=1): an update about every second, with CPU and memory
/// numbers that move and each update's `precpu_stats`/`preread` the previous update's
/// `cpu_stats`/`read` (as dockerd); the stream ends when the container is removed, and when
/// the client goes away berthd closes its connection and ends the task that sampled for it.
/// berthd kept streaming empty stats after the container was removed.
#[test]
fn daemon_stats_stream_updates_and_ends() {
    let d = daemon();
    d.load_busybox();
    let script = "i=0; while :; do j=0; while [ $j -lt 3000 ]; do j=$((j+1)); done; \
                  dd if=/dev/zero of=/dev/shm/f$i bs=64k count=1 2>/dev/null; i=$((i+1)); usleep 100000; done";
    let id = d.track(&d.ok(&["run", "-d", "--name", "st", "busybox", "sh", "-c", script]));
    let mut stats = stats_stream(&d, "st");
    let mut got: Vec<(Instant, serde_json::Value)> = Vec::new();
    while got.len() < 6 {
        let (t, l) = stats.next_is(10, "a stats update", |l| l.starts_with('{'));
        got.push((t, serde_json::from_str(&l).unwrap()));
    }
    let total =
        |v: &serde_json::Value, k: &str| v[k]["cpu_usage"]["total_usage"].as_u64().unwrap_or(0);
    for w in got.windows(2) {
        let ((t0, a), (t1, b)) = (&w[0], &w[1]);
        let gap = t1.duration_since(*t0);
        assert!(
            gap > Duration::from_millis(400) && gap < Duration::from_millis(2000),
            "updates {gap:?} apart"
        );
        assert!(
            total(b, "cpu_stats") > total(a, "cpu_stats"),
            "cpu usage did not grow: {a} {b}"
        );
        assert_eq!(
            total(b, "precpu_stats"),
            total(a, "cpu_stats"),
            "precpu of {b}"
        );
        assert_eq!(b["preread"], a["read"], "preread of {b}");
        assert!(
            b["cpu_stats"]["system_cpu_usage"].as_u64()
                > a["cpu_stats"]["system_cpu_usage"].as_u64()
        );
    }
    let mems: Vec<u64> = got
        .iter()
        .map(|(_, v)| v["memory_stats"]["usage"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        mems[5] > mems[0] && mems.iter().all(|m| *m > 0),
        "memory usage {mems:?}"
    );
    assert_eq!(got[0].1["name"], "/st");
    assert_eq!(got[0].1["id"], id.as_str());
    // Removing the container ends the stream.
    d.ok(&["rm", "-f", "st"]);
    let t = Instant::now();
    let _ = stats.until_end(10);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the stream ended {:?} after rm",
        t.elapsed()
    );
    d.wait_until("the stats task's end", 10, || {
        d.log()
            .contains(&format!("stats stream of {id} ended: container removed"))
    });

    // A client that goes away: berthd's connection and sampling task end with it.
    let id2 = d.track(&d.ok(&["run", "-d", "--name", "st2", "busybox", "sleep", "1000"]));
    let base = berthd_fds(&d);
    let mut stats = stats_stream(&d, "st2");
    for _ in 0..2 {
        stats.next_is(10, "a stats update", |l| l.starts_with('{'));
    }
    assert!(berthd_fds(&d) > base);
    drop(stats);
    d.wait_until("berthd's fds back to where they were", 10, || {
        berthd_fds(&d) == base
    });
    d.wait_until("the stats task's end", 10, || {
        d.log()
            .contains(&format!("stats stream of {id2} ended: client gone"))
    });
    d.ok(&["rm", "-f", &id2]);
    d.assert_clean(&[]);
}
