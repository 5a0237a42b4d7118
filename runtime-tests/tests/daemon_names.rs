//! berthd's container names under `POST /containers/{id}/rename`: a rename takes its new name
//! with the reservation a create takes (checked against existing containers and the creates
//! and renames under way, and taken, in one step), so that concurrent renames, or a rename
//! racing a create, never give one name to two containers; and its refusals are dockerd's
//! (status and message), checked against Debian's dockerd 20.10 in the same test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use runtime_tests::daemon::{docker_on as on, http_on, Dockerd, OutputExt, TestDaemon};

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    TestDaemon::start().expect("start berthd")
}

/// One request over the unix socket `sock` (berthd's or dockerd's): (status, body).
fn request(sock: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let (status, _, body) = http_on(
        sock,
        Duration::from_secs(60),
        method,
        path,
        body.map(str::as_bytes),
    )
    .expect("an HTTP answer");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `POST /containers/{from}/rename?name={query}` ( `query` already URL-encoded, or `None`
/// for no `name` parameter): (status, the error message or "").
fn rename(sock: &Path, from: &str, query: Option<&str>) -> (u16, String) {
    let path = match query {
        Some(q) => format!("/v1.41/containers/{from}/rename?name={q}"),
        None => format!("/v1.41/containers/{from}/rename"),
    };
    let (status, body) = request(sock, "POST", &path, None);
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, message)
}

/// dockerd's words for a name in use.
fn in_use(name: &str, id: &str) -> String {
    format!(
        "Error when allocating new name: Conflict. The container name \"/{name}\" is already in \
         use by container \"{id}\". You have to remove (or rename) that container to be able to \
         reuse that name."
    )
}

/// The container names, as `docker ps -a` lists them.
fn names(d: &TestDaemon) -> Vec<String> {
    let mut v: Vec<String> = d
        .ok(&["ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn daemon_concurrent_renames_to_one_name_one_wins() {
    let d = daemon();
    d.load_busybox();
    let ids: Vec<String> = (0..8)
        .map(|i| d.track(&d.ok(&["create", "--name", &format!("c{i}"), "busybox", "true"])))
        .collect();
    // All eight sent at once.
    let go = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (sock, go) = (d.sock.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                rename(&sock, &format!("c{i}"), Some("one"))
            })
        })
        .collect();
    let outcomes: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<usize> = (0..8).filter(|&i| outcomes[i].0 == 204).collect();
    assert_eq!(
        winners.len(),
        1,
        "{} renames to one name succeeded: {outcomes:?}",
        winners.len()
    );
    let w = winners[0];
    for (i, (status, message)) in outcomes.iter().enumerate().filter(|(i, _)| *i != w) {
        assert_eq!(*status, 409, "rename of c{i}: {message}");
        // The container named is the one that got the name, whether it was still being
        // renamed or done.
        assert_eq!(*message, in_use("one", &ids[w]), "rename of c{i}");
    }
    let mut want: Vec<String> = (0..8)
        .map(|i| {
            if i == w {
                "one".to_owned()
            } else {
                format!("c{i}")
            }
        })
        .collect();
    want.sort();
    assert_eq!(names(&d), want);
    let inspect = d.ok(&["inspect", "--format", "{{.Name}}", &ids[w]]);
    assert_eq!(inspect, "/one");
    // The winner's old name is free again, the name taken stays taken.
    d.track(&d.ok(&["create", "--name", &format!("c{w}"), "busybox", "true"]));
    let o = d.docker(&["create", "--name", "one", "busybox", "true"]);
    assert_ne!(o.code(), 0);
    o.assert_stderr_contains(&format!(
        "The container name \"/one\" is already in use by container \"{}\"",
        ids[w]
    ));
    let all = d.ok(&["ps", "-aq"]);
    let mut rm = vec!["rm"];
    rm.extend(all.lines());
    d.ok(&rm);
    d.assert_clean(&[]);
}

/// Moves the image store's `refs.json` aside for a FIFO, so that the next reader (a create
/// looking its image up) blocks in it; `release` lets it go on.
struct StalledRefs {
    refs: PathBuf,
    saved: Vec<u8>,
    writer: Option<std::fs::File>,
}

impl StalledRefs {
    fn new(data_root: &Path) -> Self {
        let refs = data_root.join("refs.json");
        let saved = std::fs::read(&refs).expect("refs.json of the image store");
        std::fs::remove_file(&refs).unwrap();
        nix::unistd::mkfifo(&refs, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        StalledRefs {
            refs,
            saved,
            writer: None,
        }
    }

    /// Whether a reader has the FIFO open (a non-blocking open for writing succeeds only
    /// then); the reader now blocks in read until `release`.
    fn reader_waiting(&mut self) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        if self.writer.is_none() {
            self.writer = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.refs)
                .ok();
        }
        self.writer.is_some()
    }

    /// Put the real refs.json back (a regular file, for every later reader) and give the
    /// blocked reader its content.
    fn release(&mut self) {
        let tmp = self.refs.with_extension("back");
        std::fs::write(&tmp, &self.saved).unwrap();
        std::fs::rename(&tmp, &self.refs).unwrap();
        if let Some(mut w) = self.writer.take() {
            w.write_all(&self.saved).unwrap();
        }
    }
}

impl Drop for StalledRefs {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.refs).is_ok_and(|m| !m.file_type().is_file()) {
            self.release();
        }
    }
}

#[test]
fn daemon_rename_to_the_name_of_a_create_under_way_is_refused() {
    let d = daemon();
    d.load_busybox();
    let a = d.track(&d.ok(&["create", "--name", "first", "busybox", "true"]));
    // A create of "target" that has reserved its name and is held (in its image lookup)
    // before its container exists.
    let mut stall = StalledRefs::new(&d.data);
    let sock = d.sock.clone();
    let create = std::thread::spawn(move || {
        request(
            &sock,
            "POST",
            "/v1.41/containers/create?name=target",
            Some(r#"{"Image": "busybox", "Cmd": ["true"]}"#),
        )
    });
    d.wait_until("the create to read the image store's refs", 30, || {
        stall.reader_waiting()
    });
    // Not yet a container: ps does not list it, and the name cannot be taken by a rename.
    assert_eq!(names(&d), ["first"]);
    let (status, message) = rename(&d.sock, "first", Some("target"));
    // A second create of the name is refused too (as before this change).
    let o = d.docker(&["create", "--name", "target", "busybox", "true"]);
    stall.release();
    let (cstatus, cbody) = create.join().unwrap();
    assert_eq!(cstatus, 201, "{cbody}");
    let created: serde_json::Value = serde_json::from_str(&cbody).unwrap();
    let id = d.track(created["Id"].as_str().unwrap());
    assert_eq!(
        (status, message),
        (409, in_use("target", &id)),
        "a rename to the name of a create under way"
    );
    assert_ne!(o.code(), 0);
    o.assert_stderr_contains(&format!(
        "The container name \"/target\" is already in use by container \"{id}\""
    ));
    assert_eq!(names(&d), ["first", "target"]);
    assert_eq!(
        d.ok(&["inspect", "--format", "{{.Name}}", &a]),
        "/first",
        "the refused rename left the name"
    );
    // Once the create is done, renaming it away frees the name for `first`.
    assert_eq!(rename(&d.sock, &id, Some("second")), (204, String::new()));
    assert_eq!(
        rename(&d.sock, "first", Some("target")),
        (204, String::new())
    );
    assert_eq!(names(&d), ["second", "target"]);
    d.ok(&["rm", &a, &id]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_rename_refusals_are_dockerds() {
    let d = daemon();
    d.load_busybox();
    let k = Dockerd::start(d.dir.path());
    k.load_busybox();
    // The same two containers on each daemon.
    let mut ids = Vec::new();
    for sock in [&d.sock, &k.sock] {
        let mut pair = Vec::new();
        for name in ["self", "other"] {
            let o = on(sock, &["create", "--name", name, "busybox", "true"]);
            assert!(o.status.success(), "{}", o.stderr_str());
            pair.push(o.stdout_str().trim().to_owned());
        }
        ids.push(pair);
    }
    d.track(&ids[0][0]);
    d.track(&ids[0][1]);
    let cases: &[(&str, Option<&str>, u16)] = &[
        // Its own name, with or without the leading slash.
        ("self", Some("self"), 400),
        ("self", Some("%2Fself"), 400),
        // Names dockerd does not allow.
        ("self", Some("-bad"), 400),
        ("self", Some("a%20b"), 400),
        ("self", Some("%2F"), 400),
        ("self", Some("%2F%2Fdouble"), 400),
        ("self", Some("bad%2Fslash"), 400),
        // No name.
        ("self", Some(""), 400),
        ("self", None, 400),
        // Another container's.
        ("self", Some("other"), 409),
        ("self", Some("%2Fother"), 409),
        ("nope", Some("fine"), 404),
    ];
    for &(from, query, want) in cases {
        let berthd = rename(&d.sock, from, query);
        let docker = rename(&k.sock, from, query);
        assert_eq!(
            berthd.0, want,
            "berthd: rename {from} to {query:?}: {}",
            berthd.1
        );
        assert_eq!(
            docker.0, want,
            "dockerd: rename {from} to {query:?}: {}",
            docker.1
        );
        // The same words, the container ids aside.
        let docker_msg = docker.1.replace(&ids[1][1], &ids[0][1]);
        assert_eq!(berthd.1, docker_msg, "rename {from} to {query:?}");
    }
    assert_eq!(
        rename(&d.sock, "self", Some("other")).1,
        in_use("other", &ids[0][1])
    );
    // The docker CLI shows the same.
    for sock in [&d.sock, &k.sock] {
        let o = on(sock, &["rename", "self", "self"]);
        assert_ne!(o.code(), 0);
        o.assert_stderr_contains("Error response from daemon: Renaming a container with the same name as its current name");
    }
    // Nothing was renamed; then a rename that is allowed works on both.
    assert_eq!(names(&d), ["other", "self"]);
    for sock in [&d.sock, &k.sock] {
        assert_eq!(rename(sock, "self", Some("renamed")), (204, String::new()));
        let o = on(sock, &["ps", "-a", "--format", "{{.Names}}"]);
        let out = o.stdout_str();
        let mut listed: Vec<&str> = out.lines().collect();
        listed.sort();
        assert_eq!(listed, ["other", "renamed"]);
        let o = on(sock, &["rm", "renamed", "other"]);
        assert!(o.status.success(), "{}", o.stderr_str());
    }
    drop(k);
    d.assert_clean(&[]);
}
