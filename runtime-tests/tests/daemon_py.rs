//! berthd driven by docker-py (Debian's python3-docker): the SDK's basic flows.

use runtime_tests::daemon::{OutputExt, TestDaemon};

const SCRIPT: &str = r#"
import sys, time, docker
t0 = int(time.time())
c = docker.DockerClient(base_url=sys.argv[1], version="auto")
assert c.ping() is True
assert c.version()["ApiVersion"] == "1.50", c.version()
out = c.containers.run("busybox", ["sh", "-c", "echo hi; echo err >&2"], remove=True)
assert out == b"hi\n", out
try:
    c.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
    raise SystemExit("a failing container must raise ContainerError")
except docker.errors.ContainerError as e:
    assert e.exit_status == 3, e
ct = c.containers.run("busybox", ["sh", "-c", "echo started; exec sleep 1000"], detach=True,
                      name="py", labels={"k": "v"}, environment={"A": "b"})
ct.reload()
assert ct.status == "running", ct.status
assert ct.name == "py" and ct.labels == {"k": "v"}
assert [x.name for x in c.containers.list(filters={"label": "k=v"})] == ["py"]
assert c.containers.list(filters={"label": "k=w"}) == []
r = ct.exec_run(["sh", "-c", "echo $A $X; exit 3"], environment={"X": "y"})
assert (r.exit_code, r.output) == (3, b"b y\n"), r
r = ct.exec_run(["id", "-u"], user="1000", workdir="/tmp")
assert r.output == b"1000\n", r
for _ in range(200):
    if b"started" in ct.logs():
        break
assert ct.logs() == b"started\n", ct.logs()
ct.stop(timeout=1)
assert ct.wait()["StatusCode"] == 137
ct.reload()
assert ct.attrs["State"]["ExitCode"] == 137 and ct.status == "exited"
ct.remove()
try:
    c.containers.get("py")
    raise SystemExit("removed container still found")
except docker.errors.NotFound:
    pass
imgs = c.images.list()
assert any("busybox:latest" in i.tags for i in imgs), [i.tags for i in imgs]
img = c.images.get("busybox")
assert img.tag("localhost/py", "t")
assert "localhost/py:t" in c.images.get("localhost/py:t").tags
c.images.remove("localhost/py:t")
try:
    c.images.get("nope:1")
    raise SystemExit("missing image found")
except docker.errors.ImageNotFound:
    pass
# The event history since the start of this script, up to now.
evs = list(c.events(since=t0, until=int(time.time()) + 1, decode=True,
                    filters={"type": "container", "event": "destroy"}))
names = [e["Actor"]["Attributes"].get("name") for e in evs]
assert "py" in names, evs
assert all(e["Action"] == "destroy" for e in evs), evs
print("docker-py ok")
"#;

#[test]
fn daemon_docker_py_basic_flows() {
    runtime_tests::require_root();
    let d = TestDaemon::start().expect("start berthd");
    d.load_busybox();
    // Debian's python3-docker (/usr/bin/python3), and the docker-py of the python3 on PATH
    // when it is another one.
    let mut ran = Vec::new();
    for py in ["/usr/bin/python3", "python3"] {
        let has = std::process::Command::new(py)
            .args(["-c", "import docker; print(docker.__version__)"])
            .output();
        let Ok(has) = has else { continue };
        let version = has.stdout_str().trim().to_owned();
        if !has.status.success() || ran.contains(&version) {
            continue;
        }
        let o = std::process::Command::new(py)
            .arg("-c")
            .arg(SCRIPT)
            .arg(format!("unix://{}", d.sock.display()))
            .output()
            .expect("python3");
        assert!(
            o.status.success() && o.stdout_str().contains("docker-py ok"),
            "docker-py {version} ({py}) failed ({}):\n{}\n{}\n--- daemon log ---\n{}",
            o.status,
            o.stdout_str(),
            o.stderr_str(),
            d.log()
        );
        ran.push(version);
    }
    assert!(
        !ran.is_empty(),
        "no docker-py (apt-get install python3-docker)"
    );
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    d.assert_clean(&[]);
}
