//! berthd against dockerd 20.10 + runc in small things: the HostConfig defaults inspect shows
//! (ShmSize, IpcMode), the init layer's files (/etc/mtab, /.dockerenv, the /dev mount points),
//! the supplementary groups of `-u`, and the entry names of `docker export`. The expected
//! values are what Debian's dockerd 20.10 + runc 1.1.5 print for the same busybox image
//! (checked live with `runtime_tests::daemon::Dockerd`). Each test starts its own berthd and
//! checks that nothing is left behind.

use runtime_tests::daemon::TestDaemon;

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    let d = TestDaemon::start().expect("start berthd");
    d.load_busybox();
    d
}

#[test]
fn daemon_inspect_shows_dockerds_shm_size_and_ipc_mode_defaults() {
    let d = daemon();
    let id = d.track(&d.ok(&["create", "busybox", "true"]));
    let shown = d.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.ShmSize}}|{{.HostConfig.IpcMode}}",
        &id,
    ]);
    assert_eq!(shown.trim(), "67108864|private");
    // Given values are kept.
    let own = d.track(&d.ok(&[
        "create",
        "--shm-size",
        "1m",
        "--ipc",
        "host",
        "busybox",
        "true",
    ]));
    let shown = d.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.ShmSize}}|{{.HostConfig.IpcMode}}",
        &own,
    ]);
    assert_eq!(shown.trim(), "1048576|host");
    // What is applied is unchanged: a 64 MiB /dev/shm.
    let shm = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "grep",
        " /dev/shm ",
        "/proc/mounts",
    ]);
    assert!(shm.contains("size=65536k"), "{shm}");
    d.ok(&["rm", &id, &own]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_container_has_the_init_layer_files() {
    let d = daemon();
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "readlink /etc/mtab; stat -c '%F %a %s' /.dockerenv; \
         grep -c ' / ' /etc/mtab; df / >/dev/null && echo df-ok",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["/proc/mounts", "regular empty file 755 0", "1", "df-ok"],
        "{out}"
    );
    d.assert_clean(&[]);
}

#[test]
fn daemon_user_gets_dockerds_supplementary_groups() {
    let d = daemon();
    for (args, want) in [
        (&["-u", "1234"][..], "uid=1234 gid=0(root) groups=0(root)"),
        (
            &["-u", "berth"],
            "uid=1000(berth) gid=1000(berth) groups=29(audio),44(video),100(users),1000(berth)",
        ),
        (
            &["-u", "daemon"],
            "uid=1(daemon) gid=1(daemon) groups=1(daemon)",
        ),
        (&["-u", "1234:5"], "uid=1234 gid=5 groups=5"),
        (&["-u", "berth:7"], "uid=1000(berth) gid=7 groups=7"),
        (
            &["-u", "1234", "--group-add", "video"],
            "uid=1234 gid=0(root) groups=0(root),44(video)",
        ),
    ] {
        let mut cmd = vec!["run", "--rm"];
        cmd.extend(args);
        cmd.extend(["busybox", "id"]);
        assert_eq!(d.ok(&cmd).trim(), want, "{args:?}");
    }
    // `exec -u` the same, with the container's GroupAdd.
    let id = d.track(&d.ok(&["run", "-d", "--group-add", "5", "busybox", "sleep", "1000"]));
    let out = d.ok(&["exec", "-u", "1234", &id, "id"]);
    assert_eq!(out.trim(), "uid=1234 gid=0(root) groups=0(root),5", "{out}");
    d.ok(&["rm", "-f", &id]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_export_names_entries_as_dockerd() {
    let d = daemon();
    let id = d.track(&d.ok(&["create", "busybox", "true"]));
    let tar = d.dir.path().join("x.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), &id]);
    let out = std::process::Command::new("tar")
        .arg("tf")
        .arg(&tar)
        .output()
        .expect("tar");
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for want in [
        ".dockerenv",
        "bin/",
        "bin/sh",
        "dev/console",
        "dev/pts/",
        "dev/shm/",
        "etc/mtab",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let odd: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("./") || n.starts_with('/') || *n == ".")
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    // A single member extracts by dockerd's name.
    let x = d.dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let st = std::process::Command::new("tar")
        .arg("xf")
        .arg(&tar)
        .arg("-C")
        .arg(&x)
        .arg("bin/sh")
        .status()
        .expect("tar");
    assert!(st.success() && x.join("bin/sh").symlink_metadata().is_ok());
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}
