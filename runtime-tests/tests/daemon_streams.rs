//! berthd's streams under pressure: `logs -f` woken by the log's writes and followed across
//! rotation to the container's exit, attached clients that stop reading, a container that
//! never reads the input sent to it, and streamed stats. Raw HTTP over the daemon's socket
//! where timing or a stalled client matters (each stream decoded on a thread of its own that
//! stamps what arrives with its time). Each test starts its own berthd on a temp socket with
//! its own data and exec roots, and checks that nothing is left behind.

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

/// An attach that never reads what it is sent (its connection is only held).
fn stalled_attach(d: &TestDaemon, name: &str) -> UnixStream {
    let (s, st, head, _) = open(
        d,
        "POST",
        &format!("/v1.47/containers/{name}/attach?stream=1&stdout=1&stderr=1"),
        "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n",
    );
    assert_eq!(st, 101, "{head}");
    s
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

/// An attached client that stops reading blocks nobody: the container's output goes on
/// being logged and reaching the other attached client and a follower at full speed, the
/// stalled client gets it all once it reads again (it stayed within its backlog), and a
/// client stalled when the container exits does not delay the exit. berthd wrote to
/// attached clients with blocking writes (10 s timeout): one stalled client stopped the
/// container's output, its log and every other client for 10 s. (dockerd is no better: its
/// broadcaster blocks the container's output and log once a consumer is 1 MB behind.)
#[test]
fn daemon_stalled_attach_client_blocks_nobody() {
    let d = daemon();
    d.load_busybox();
    let line = "0123456789".repeat(10);
    let script = r#"read go; yes "$LINE" | head -n 50000; echo END; read stop; yes "$LINE" | head -n 50000; echo BYE"#;
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "sa",
        "-e",
        &format!("LINE={line}"),
        "busybox",
        "sh",
        "-c",
        script,
    ]));
    // Two stalled clients: berthd's old blocking writes gave up on each after 10 s, one after
    // the other (20 s), well past what the output takes here.
    let stalled = stalled_attach(&d, "sa");
    let stalled_too = stalled_attach(&d, "sa");
    let (mut input, mut attached) = attach(&d, "sa", "stdin=1&stdout=1&stderr=1");
    let mut follow = Lines::logs(&d, "sa", "follow=1&stdout=1&stderr=1");
    // 5 MB of output, with clients that read none of it.
    let t0 = Instant::now();
    input.write_all(b"go\n").unwrap();
    for (what, lines) in [("attached client", &mut attached), ("logs -f", &mut follow)] {
        for _ in 0..50_000 {
            lines.next_is(15, "a line of yes", |l| l == line);
        }
        lines.next_is(15, "END", |l| l == "END");
        let took = t0.elapsed();
        assert!(
            took < Duration::from_secs(15),
            "the {what} got the output in {took:?} with a stalled client"
        );
    }
    // The stalled client missed nothing: it was within its backlog.
    let mut late = reader(stalled, Vec::new(), false, true).named("stalled attach");
    for _ in 0..50_000 {
        late.next_is(20, "a line of yes", |l| l == line);
    }
    late.next_is(20, "END", |l| l == "END");
    // Another client stalls, and the container writes 5 MB more and exits: the exit is
    // recorded at once, the reading client gets everything and its end.
    let _stalled_again = stalled_attach(&d, "sa");
    let t1 = Instant::now();
    input.write_all(b"stop\n").unwrap();
    let out = d.ok(&["wait", "sa"]);
    assert_eq!(out, "0");
    let took = t1.elapsed();
    assert!(took < Duration::from_secs(8), "docker wait took {took:?}");
    let (rest, _) = attached.until_end(20);
    assert_eq!(rest.len(), 50_001, "{:?}", rest.last());
    assert!(rest[..50_000].iter().all(|l| *l == line));
    assert_eq!(rest[50_000], "BYE");
    let (rest, _) = follow.until_end(20);
    assert_eq!(rest.len(), 50_001);
    assert_eq!(rest[50_000], "BYE");
    // The client that never read fell more than its backlog (8 MiB) behind in the 10 MB:
    // it was disconnected, short of the end.
    let (rest, _) = reader(stalled_too, Vec::new(), false, true)
        .named("stalled attach, never read")
        .until_end(30);
    assert!(
        rest.len() < 100_000 && !rest.iter().any(|l| l == "BYE"),
        "{} lines",
        rest.len()
    );
    drop(_stalled_again);
    drop(late);
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
