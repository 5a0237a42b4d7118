//! berthd and dockerd side by side: `docker save | docker load` in both directions, and the
//! image runs on each (Debian's dockerd 20.10 with its own roots, no bridge, no iptables).

use std::process::{Child, Command, Stdio};

use runtime_tests::daemon::{docker_cli, OutputExt, TestDaemon};

struct Dockerd {
    child: Child,
    sock: std::path::PathBuf,
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn dockerd(dir: &std::path::Path) -> Dockerd {
    let root = dir.join("dk");
    std::fs::create_dir_all(&root).unwrap();
    let sock = root.join("d.sock");
    let log = std::fs::File::create(root.join("log")).unwrap();
    let child = Command::new("dockerd")
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .arg("--data-root")
        .arg(root.join("data"))
        .arg("--exec-root")
        .arg(root.join("exec"))
        .arg("--pidfile")
        .arg(root.join("pid"))
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("dockerd (apt-get install docker.io)");
    Dockerd { child, sock }
}

fn on(sock: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(docker_cli())
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("DOCKER_CONFIG", sock.parent().unwrap().join("cfg"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

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
    let k = dockerd(d.dir.path());
    d.wait_until("dockerd", 60, || on(&k.sock, &["version"]).status.success());
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
