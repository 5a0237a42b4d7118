//! berth run by an unprivileged user: a user namespace mapping that user to root, state under
//! $XDG_RUNTIME_DIR, no cgroup of its own.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use runtime_tests::{berth_bin, require_root, rootfs_dir};

const NOBODY: u32 = 65534;

fn chown_tree(path: &std::path::Path) {
    let st = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}"), path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn unprivileged_user_runs_a_busybox_container() {
    require_root();
    assert!(
        Command::new("setpriv").arg("--version").output().is_ok(),
        "setpriv is missing: install the Debian package util-linux"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = dir.path().join("bundle");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::create_dir_all(&bundle).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(rootfs_dir().unwrap())
        .arg(bundle.join("rootfs"))
        .status()
        .unwrap();
    assert!(st.success());
    chown_tree(dir.path());
    let bin = berth_bin().unwrap();
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "--",
            ])
            .arg(&bin)
            .args(args)
            .current_dir(&bundle)
            .env("XDG_RUNTIME_DIR", &run)
            .output()
            .unwrap()
    };
    let out = as_nobody(&["spec", "--rootless"]);
    assert!(out.status.success(), "{out:?}");
    let cfg = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] =
        serde_json::json!(["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"]);
    std::fs::write(&cfg, serde_json::to_vec(&spec).unwrap()).unwrap();

    let out = as_nobody(&["run", "rootless-1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0", "root inside");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"], "mapped to the caller outside");
    assert_eq!(lines[2], "berth");
    // State lived under $XDG_RUNTIME_DIR/berth and is gone after run.
    assert!(run.join("berth").is_dir());
    assert_eq!(std::fs::read_dir(run.join("berth")).unwrap().count(), 0);
}
