//! berthd and dockerd side by side: `docker save | docker load` in both directions, and the
//! image runs on each (Debian's dockerd 20.10 with its own roots, no bridge, no iptables).

use runtime_tests::daemon::{docker_on as on, Dockerd, OutputExt, TestDaemon};

fn pipe(from: &std::path::Path, save: &str, to: &std::path::Path) -> String {
    let tar = from.parent().unwrap().join("x.tar");
    let o = on(from, &["save", "-o", tar.to_str().unwrap(), save]);
    assert!(o.status.success(), "save {save}: {}", o.stderr_str());
    let o = on(to, &["load", "-i", tar.to_str().unwrap()]);
    assert!(o.status.success(), "load {save}: {}", o.stderr_str());
    o.stdout_str()
}

#[test]
fn daemon_save_load_between_berthd_and_dockerd() {
    runtime_tests::require_root();
    let d = TestDaemon::start().expect("start berthd");
    d.load_busybox();
    let k = Dockerd::start(d.dir.path());
    d.ok(&["tag", "busybox", "localhost/from-berthd:1"]);
    let out = pipe(&d.sock, "localhost/from-berthd:1", &k.sock);
    assert!(
        out.contains("Loaded image: localhost/from-berthd:1"),
        "{out}"
    );
    let o = on(
        &k.sock,
        &[
            "run",
            "--rm",
            "localhost/from-berthd:1",
            "echo",
            "on-dockerd",
        ],
    );
    assert_eq!(o.stdout_str(), "on-dockerd\n", "{}", o.stderr_str());
    let o = on(
        &k.sock,
        &["tag", "localhost/from-berthd:1", "localhost/from-dockerd:2"],
    );
    assert!(o.status.success());
    let out = pipe(&k.sock, "localhost/from-dockerd:2", &d.sock);
    assert!(
        out.contains("Loaded image: localhost/from-dockerd:2"),
        "{out}"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "localhost/from-dockerd:2",
            "echo",
            "on-berthd"
        ]),
        "on-berthd"
    );
    // The same image id on both sides.
    let id_b = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        "localhost/from-dockerd:2",
    ]);
    let id_k = on(
        &k.sock,
        &[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            "localhost/from-dockerd:2",
        ],
    )
    .stdout_str();
    assert_eq!(id_b, id_k.trim());
    drop(k);
    d.assert_clean(&[]);
}
