//! Pull from a real registry (Debian's docker-registry on loopback): anonymous and basic auth.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_image::registry::{pull, PullOptions};
use berth_image::Store;
use common::*;

struct Registry {
    child: Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &Path, htpasswd: Option<&Path>) -> Registry {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let auth = htpasswd.map_or(String::new(), |p| {
        format!(
            "auth:\n  htpasswd:\n    realm: berth\n    path: {}\n",
            p.display()
        )
    });
    let cfg = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
        dir.join("data").display()
    );
    let cfg_path = dir.join("config.yml");
    fs::write(&cfg_path, cfg).unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reg = Registry { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    reg
}

fn push(layout: &Path, dest: &str, creds: Option<&str>) {
    let mut c = Command::new("skopeo");
    c.args(["copy", "--dest-tls-verify=false", "--insecure-policy"]);
    if let Some(cr) = creds {
        c.arg(format!("--dest-creds={cr}"));
    }
    let out = c
        .arg(format!("oci:{}:test", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn image(dir: &Path) -> std::path::PathBuf {
    let layout = dir.join("layout");
    let l1 = tar_of(|b| {
        common::dir(b, "etc");
        file(b, "etc/passwd", b"root:x:0:0::/:/bin/sh\n");
        file(b, "hello", b"world");
    });
    let l2 = tar_of(|b| {
        file(b, ".wh.hello", b"");
        file(b, "bye", b"moon");
    });
    oci_layout(
        &layout,
        "test",
        &[l1, l2],
        &["gzip", "gzip"],
        serde_json::json!({"Entrypoint": ["/bin/echo"]}),
    );
    layout
}

fn check_pulled(store: &Store, r: &str, dest: &Path) {
    let (_, d) = store.resolve(r).unwrap();
    let img = store.image(&d).unwrap();
    store.flatten(&img, dest, &|_| {}).unwrap();
    assert_eq!(fs::read(dest.join("bye")).unwrap(), b"moon");
    assert!(!dest.join("hello").exists());
}

#[test]
fn anonymous_pull() {
    let t = tempfile::tempdir().unwrap();
    let reg = start_registry(t.path(), None);
    let layout = image(t.path());
    let name = format!("127.0.0.1:{}/berth/test:v1", reg.port);
    push(&layout, &name, None);
    let store = Store::open(t.path().join("store")).unwrap();
    let events = std::sync::atomic::AtomicUsize::new(0);
    let img = pull(
        &store,
        &name.parse().unwrap(),
        &PullOptions::default(),
        &|_| {
            events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    )
    .unwrap();
    assert_eq!(img.layers().unwrap().len(), 2);
    assert!(events.into_inner() > 0);
    check_pulled(&store, &name, &t.path().join("rootfs"));
    // By digest too, and a second pull reuses the blobs.
    let by_digest = format!("127.0.0.1:{}/berth/test@{}", reg.port, img.manifest_digest);
    let again = pull(
        &store,
        &by_digest.parse().unwrap(),
        &PullOptions::default(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(again.manifest_digest, img.manifest_digest);
    // A missing tag is a clear error and leaves no reference.
    let missing = format!("127.0.0.1:{}/berth/test:nope", reg.port);
    assert!(pull(
        &store,
        &missing.parse().unwrap(),
        &PullOptions::default(),
        &|_| {}
    )
    .is_err());
    assert_eq!(store.refs().unwrap().len(), 2);
}

#[test]
fn basic_auth_pull() {
    let t = tempfile::tempdir().unwrap();
    let htpasswd = t.path().join("htpasswd");
    let st = Command::new("htpasswd")
        .args(["-Bbc"])
        .arg(&htpasswd)
        .args(["berth", "s3cret"])
        .output()
        .unwrap();
    assert!(st.status.success());
    let reg = start_registry(t.path(), Some(&htpasswd));
    let layout = image(t.path());
    let name = format!("127.0.0.1:{}/berth/private:v1", reg.port);
    push(&layout, &name, Some("berth:s3cret"));
    let store = Store::open(t.path().join("store")).unwrap();
    let r = name.parse().unwrap();
    assert!(
        pull(&store, &r, &PullOptions::default(), &|_| {}).is_err(),
        "anonymous pull must be refused"
    );
    let opts = PullOptions {
        auth: Some(("berth".into(), "s3cret".into())),
        ..Default::default()
    };
    pull(&store, &r, &opts, &|_| {}).unwrap();
    check_pulled(&store, &name, &t.path().join("rootfs"));
}
