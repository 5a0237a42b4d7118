//! berthd's container listing, create and inspect against what Debian's dockerd 20.10 does
//! (each expectation below was checked on dockerd + runc): `ps` filters (volume, network,
//! since, before, is-task, publish, expose, exited) and their errors, `ps -n`/`-l` with
//! stopped containers, `export`, `system prune`/`system df`, `--entrypoint ''`, the Config
//! that inspect shows (with the image's ExposedPorts and Volumes), `--network host`'s
//! hostname, the 400s of create, `--log-driver none`, and `--group` naming no group.

use std::process::Command;

use runtime_tests::daemon::{OutputExt, TestDaemon};

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    TestDaemon::start().expect("start berthd")
}

/// Names listed by `docker ps ARGS --format {{.Names}}`, newest first.
fn names(d: &TestDaemon, args: &[&str]) -> Vec<String> {
    let mut a = vec!["ps"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--format", "{{.Names}}"]);
    d.ok(&a).lines().map(str::to_owned).collect()
}

/// The daemon's error for a command that must fail.
fn fails(d: &TestDaemon, args: &[&str]) -> String {
    let o = d.docker(args);
    assert!(
        !o.status.success(),
        "docker {args:?} succeeded: {}",
        o.stdout_str()
    );
    o.stderr_str()
}

#[test]
fn daemon_ps_filters_as_dockerd() {
    let d = daemon();
    d.load_busybox();
    // Oldest to newest: e3 exited 3, c2 created, hn (host network), a1 running with a volume
    // and an exposed port.
    let e3 = d.track(&d.ok(&["create", "--name", "e3", "busybox", "sh", "-c", "exit 3"]));
    let o = d.docker(&["start", "-a", "e3"]);
    assert_eq!(o.code(), 3, "{}", o.stderr_str());
    let c2 = d.track(&d.ok(&["create", "--name", "c2", "busybox", "true"]));
    let hn = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "hn",
        "--network",
        "host",
        "busybox",
        "sleep",
        "1000",
    ]));
    let a1 = d.track(&d.ok(&[
        "run", "-d", "--name", "a1", "-v", "v1:/data", "--expose", "8080", "busybox", "sleep",
        "1000",
    ]));
    assert_eq!(names(&d, &["-a"]), ["a1", "hn", "c2", "e3"]);
    assert_eq!(names(&d, &["-a", "-f", "volume=v1"]), ["a1"]);
    assert_eq!(names(&d, &["-a", "-f", "volume=/data"]), ["a1"]);
    assert!(names(&d, &["-a", "-f", "volume=nosuchvol"]).is_empty());
    assert_eq!(names(&d, &["-a", "-f", "network=host"]), ["hn"]);
    assert_eq!(
        names(&d, &["-a", "-f", "network=bridge"]),
        ["a1", "c2", "e3"]
    );
    assert!(names(&d, &["-a", "-f", "network=nosuchnet"]).is_empty());
    assert_eq!(names(&d, &["-a", "-f", "since=c2"]), ["a1", "hn"]);
    assert_eq!(names(&d, &["-a", "-f", "before=hn"]), ["c2", "e3"]);
    assert_eq!(
        names(&d, &["-a", "-f", "since=e3", "-f", "before=a1"]),
        ["hn", "c2"]
    );
    assert!(names(&d, &["-a", "-f", "is-task=true"]).is_empty());
    assert_eq!(names(&d, &["-a", "-f", "is-task=false"]).len(), 4);
    assert_eq!(names(&d, &["-a", "-f", "expose=8080"]), ["a1"]);
    assert_eq!(names(&d, &["-a", "-f", "expose=8000-8100/tcp"]), ["a1"]);
    assert!(names(&d, &["-a", "-f", "publish=8080"]).is_empty());
    assert_eq!(names(&d, &["-a", "-f", "exited=3"]), ["e3"]);
    assert!(names(&d, &["-a", "-f", "exited=0"]).is_empty());
    assert_eq!(
        names(&d, &["-a", "-f", "isolation=default"]).len(),
        4,
        "isolation is accepted"
    );
    // `-n`/`-l` (the API's limit) list stopped and created containers too.
    assert_eq!(names(&d, &["-n", "3"]), ["a1", "hn", "c2"]);
    d.ok(&["stop", "-t", "0", "a1"]);
    assert_eq!(names(&d, &["-l"]), ["a1"]);
    // Errors, as dockerd's.
    for (f, want) in [
        ("bogus=1", "Invalid filter 'bogus'"),
        ("is-task=maybe", "Invalid filter 'is-task=[maybe]'"),
        ("status=bogus", "Invalid filter 'status=bogus'"),
        (
            "health=bogus",
            "Unrecognised filter value for health: bogus",
        ),
        ("exited=abc", "exited=abc"),
        ("since=nosuch", "No such container: nosuch"),
        ("publish=a:b", "should not contain ':'"),
    ] {
        let err = fails(&d, &["ps", "-a", "-f", f]);
        assert!(err.contains(want), "ps -f {f}: {err}");
    }
    let (status, _, body) = d
        .http(
            "GET",
            "/v1.41/containers/json?all=1&filters=%7B%22bogus%22%3A%5B%221%22%5D%7D",
            None,
        )
        .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // prune takes label/until only: an unknown filter removes nothing.
    let err = fails(&d, &["container", "prune", "-f", "--filter", "volume=v1"]);
    assert!(err.contains("Invalid filter 'volume'"), "{err}");
    assert_eq!(names(&d, &["-a"]).len(), 4);
    d.ok(&["rm", "-f", &a1, &hn, &c2, &e3]);
    d.ok(&["volume", "rm", "v1"]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_export_system_prune_and_df() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "ex",
        "-v",
        "exv:/vol",
        "busybox",
        "sh",
        "-c",
        "echo hello >/made-here; echo in-volume >/vol/f; sleep 1000",
    ]));
    d.wait_until("the file", 20, || {
        d.docker(&["exec", "ex", "cat", "/made-here"]).stdout_str() == "hello\n"
    });
    let tar = d.dir.path().join("ex.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), "ex"]);
    let list = Command::new("tar").arg("tf").arg(&tar).output().unwrap();
    assert!(list.status.success(), "{}", list.stderr_str());
    let list = list.stdout_str();
    let entries: Vec<&str> = list.lines().map(|l| l.trim_start_matches("./")).collect();
    assert!(entries.contains(&"made-here"), "{list}");
    assert!(entries.contains(&"bin/busybox"), "{list}");
    // The volume is not part of the container's filesystem.
    assert!(!entries.contains(&"vol/f"), "{list}");
    let out = Command::new("tar")
        .arg("xOf")
        .arg(&tar)
        .arg(if list.contains("./made-here") {
            "./made-here"
        } else {
            "made-here"
        })
        .output()
        .unwrap();
    assert_eq!(out.stdout_str(), "hello\n");
    let other = d.dir.path().join("other.tar");
    let err = fails(&d, &["export", "-o", other.to_str().unwrap(), "nosuch"]);
    assert!(err.contains("No such container"), "{err}");

    // system df: the image, the container and the volume.
    let df = d.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]);
    assert!(df.contains("Images 1 1"), "{df}");
    assert!(df.contains("Containers 1 1"), "{df}");
    assert!(df.contains("Local Volumes 1 1"), "{df}");
    let (status, _, body) = d.http("GET", "/system/df", None).unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Images"][0]["Containers"], 1, "{v}");
    assert_eq!(v["Volumes"][0]["UsageData"]["RefCount"], 1, "{v}");
    assert!(
        v["Volumes"][0]["UsageData"]["Size"].as_i64().unwrap() > 0,
        "{v}"
    );
    assert!(v["Containers"][0]["SizeRw"].as_i64().unwrap() > 0, "{v}");

    // system prune: the stopped container goes, the networks stay, and it succeeds.
    let stopped = d.track(&d.ok(&["create", "--name", "gone", "busybox", "true"]));
    let out = d.ok(&["system", "prune", "-f"]);
    assert!(out.contains(&stopped), "{out}");
    assert_eq!(names(&d, &["-a"]), ["ex"]);
    let (status, _, body) = d.http("POST", "/networks/prune", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        r#"{"NetworksDeleted":null}"#
    );
    let (status, _, _) = d.http("POST", "/build/prune", None).unwrap();
    assert_eq!(status, 200);
    d.ok(&["rm", "-f", &id]);
    d.ok(&["volume", "rm", "exv"]);
    d.assert_clean(&[]);
}

/// A docker-archive of busybox whose config has `EXPOSE 8080/tcp` and `VOLUME /data`, as
/// `docker commit --change` makes on dockerd.
fn image_with_ports_and_volumes(d: &TestDaemon) -> std::path::PathBuf {
    let dir = d.dir.path().join("img");
    std::fs::create_dir(&dir).unwrap();
    let script = r#"
import hashlib, json, sys, tarfile, io
src, out = sys.argv[1], sys.argv[2]
t = tarfile.open(src)
manifest = json.load(t.extractfile("manifest.json"))[0]
cfg = json.load(t.extractfile(manifest["Config"]))
cfg["config"]["ExposedPorts"] = {"8080/tcp": {}}
cfg["config"]["Volumes"] = {"/data": {}}
raw = json.dumps(cfg).encode()
name = hashlib.sha256(raw).hexdigest() + ".json"
o = tarfile.open(out, "w")
def add(n, data):
    i = tarfile.TarInfo(n); i.size = len(data); o.addfile(i, io.BytesIO(data))
add(name, raw)
for l in manifest["Layers"]:
    add(l, t.extractfile(l).read())
add("manifest.json", json.dumps([{"Config": name, "RepoTags": ["cfgimg:1"], "Layers": manifest["Layers"]}]).encode())
o.close()
"#;
    let out = dir.join("cfgimg.tar");
    let st = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(runtime_tests::daemon::busybox_archive())
        .arg(&out)
        .status()
        .expect("python3");
    assert!(st.success());
    out
}

#[test]
fn daemon_entrypoint_reset_hostname_and_inspect_config() {
    let d = daemon();
    d.load_busybox();
    // --entrypoint '' clears the entrypoint; without a command that is dockerd's error.
    let cid = d.dir.path().join("cid");
    let o = d.docker(&[
        "run",
        "--rm",
        "--cidfile",
        cid.to_str().unwrap(),
        "--entrypoint",
        "",
        "busybox",
        "echo",
        "x",
    ]);
    d.track(&std::fs::read_to_string(&cid).unwrap_or_default());
    assert_eq!(
        (o.code(), o.stdout_str().as_str()),
        (0, "x\n"),
        "{}",
        o.stderr_str()
    );
    let err = fails(&d, &["create", "--entrypoint", "", "busybox"]);
    assert!(err.contains("No command specified"), "{err}");
    let (status, _, body) = d
        .http(
            "POST",
            "/containers/create?name=ep3",
            Some(br#"{"Image":"busybox","Entrypoint":["sh","-c"],"Cmd":["echo $0","y"]}"#),
        )
        .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let ep3 = d.track(&d.ok(&["inspect", "-f", "{{.Id}}", "ep3"]));

    // Config as dockerd shows it: every field present.
    let id = d.track(&d.ok(&["create", "--name", "cfg", "busybox", "true"]));
    let cfg: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Config}}", "cfg"])).unwrap();
    for k in [
        "User",
        "Entrypoint",
        "Domainname",
        "OnBuild",
        "Volumes",
        "AttachStdin",
    ] {
        assert!(cfg.get(k).is_some(), "Config.{k} missing: {cfg}");
    }
    assert_eq!(cfg["Hostname"], id[..12], "{cfg}");
    assert_eq!(cfg["User"], "");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
            "cfg"
        ]),
        "bridge"
    );

    // The image's ExposedPorts and Volumes are carried into Config.
    let tar = image_with_ports_and_volumes(&d);
    d.ok(&["load", "-i", tar.to_str().unwrap()]);
    let ci = d.track(&d.ok(&[
        "create", "--name", "ci", "--expose", "9090", "cfgimg:1", "true",
    ]));
    let cfg: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Config}}", "ci"])).unwrap();
    assert_eq!(
        cfg["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "9090/tcp": {}})
    );
    assert_eq!(cfg["Volumes"], serde_json::json!({"/data": {}}));

    // --network host: the host's name, in Config and in the container.
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let cid2 = d.dir.path().join("cid2");
    let o = d.docker(&[
        "run",
        "--rm",
        "--cidfile",
        cid2.to_str().unwrap(),
        "--network",
        "host",
        "busybox",
        "hostname",
    ]);
    d.track(&std::fs::read_to_string(&cid2).unwrap_or_default());
    assert_eq!(o.stdout_str().trim(), host, "{}", o.stderr_str());
    d.ok(&["rm", "-fv", &id, &ci, &ep3]);
    d.ok(&["rmi", "cfgimg:1"]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_create_validates_as_dockerd() {
    let d = daemon();
    d.load_busybox();
    let ncpu = std::thread::available_parallelism().unwrap().get();
    let cpus = format!("{}", ncpu + 97);
    let range = format!("Range of CPUs is from 0.01 to {ncpu}.00");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-m", "1k"], "Minimum memory limit allowed is 6MB"),
        (vec!["--cpus", &cpus], &range),
        (
            vec!["--cpuset-cpus", "77"],
            "Requested CPUs are not available - requested 77",
        ),
        (
            vec!["--cpuset-cpus", "0-x"],
            "Invalid value 0-x for cpuset cpus",
        ),
        (
            vec!["--cpuset-mems", "5"],
            "Requested memory nodes are not available",
        ),
        (vec!["--cpu-shares", "-1"], "CPU shares"),
        (vec!["--stop-signal", "BOGUS"], "Invalid signal: BOGUS"),
        (
            vec!["--tmpfs", "relative"],
            "'relative' mount path must be absolute",
        ),
        (
            vec!["--oom-score-adj", "5000"],
            "range for oom score adj is [-1000, 1000]",
        ),
        (
            vec!["--memory-swap", "1m", "-m", "10m"],
            "Minimum memoryswap limit should be larger",
        ),
        (
            vec!["--memory-swap", "20m"],
            "You should always set the Memory limit",
        ),
        (
            vec!["--cpu-period", "100"],
            "CPU cfs period can not be less than 1ms",
        ),
        (
            vec!["--cpu-quota", "100"],
            "CPU cfs quota can not be less than 1ms",
        ),
        (
            vec!["--memory-reservation", "1k"],
            "Minimum memory reservation allowed is 6MB",
        ),
        (
            vec!["--cpus", "1", "--cpu-period", "10000"],
            "Nano CPUs and CPU Period",
        ),
        (vec!["--restart", "bogus"], "invalid restart policy 'bogus'"),
        (
            vec!["--restart", "always:3"],
            "maximum retry count cannot be used",
        ),
        (
            vec!["--health-cmd", "true", "--health-interval", "1us"],
            "Interval in Healthcheck",
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec!["create"];
        args.extend(flags.iter().copied());
        args.extend(["busybox", "true"]);
        let err = fails(&d, &args);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    for body in [
        r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"ShmSize":-1}}"#,
        r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"MemorySwappiness":101}}"#,
        r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"BlkioWeight":5}}"#,
        r#"{"Image":"busybox","Cmd":["true"],"Healthcheck":{"Test":["CMD","true"],"Retries":-1}}"#,
    ] {
        let (status, _, resp) = d
            .http("POST", "/containers/create", Some(body.as_bytes()))
            .unwrap();
        assert_eq!(status, 400, "{body}: {}", String::from_utf8_lossy(&resp));
    }
    // Nothing was created.
    assert!(names(&d, &["-a"]).is_empty());
    // update is checked the same way.
    let id = d.track(&d.ok(&["create", "-m", "10m", "busybox", "true"]));
    let err = fails(&d, &["update", "-m", "4m", &id]);
    assert!(err.contains("Minimum memory limit allowed is 6MB"), "{err}");
    // API versions above the newest.
    let (status, _, body) = d.http("GET", "/v9.99/version", None).unwrap();
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body)
            .contains("client version 9.99 is too new. Maximum supported API version is 1.50"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_log_driver_none() {
    let d = daemon();
    d.load_busybox();
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "nl",
        "--log-driver",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo out; sleep 1000",
    ]));
    let o = d.docker(&["logs", "nl"]);
    assert!(!o.status.success());
    o.assert_stderr_contains("configured logging driver does not support reading");
    assert_eq!(d.ok(&["inspect", "-f", "{{.LogPath}}", "nl"]), "");
    d.ok(&["stop", "-t", "0", "nl"]);
    let logs: Vec<_> = std::fs::read_dir(d.data.join("containers").join(&id))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("json.log"))
        .collect();
    assert!(logs.is_empty(), "a log file was written");
    // Attached output still reaches the client.
    let cid = d.dir.path().join("cid");
    let o = d.docker(&[
        "run",
        "--rm",
        "--cidfile",
        cid.to_str().unwrap(),
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "x",
    ]);
    d.track(&std::fs::read_to_string(&cid).unwrap_or_default());
    assert_eq!(o.stdout_str(), "x\n", "{}", o.stderr_str());
    d.ok(&["rm", &id]);
    d.assert_clean(&[]);
}

#[test]
fn daemon_group_that_does_not_exist_is_an_error() {
    runtime_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(runtime_tests::daemon::berthd_bin().unwrap())
        .arg("-H")
        .arg(format!("unix://{}", dir.path().join("s").display()))
        .arg("--data-root")
        .arg(dir.path().join("data"))
        .arg("--exec-root")
        .arg(dir.path().join("exec"))
        .args(["--group", "nosuchgroup"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{:?}: {}",
        o.status,
        o.stderr_str()
    );
    o.assert_stderr_contains("nosuchgroup");
    // An existing group by name works: the socket belongs to it.
    let d = TestDaemon::start_with(&["--group", "daemon"]).expect("start berthd");
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(&d.sock).unwrap().gid();
    let want = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("daemon:x:")?
                .split(':')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap();
    assert_eq!(gid, want);
    d.assert_clean(&[]);
}
