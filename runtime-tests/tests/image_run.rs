//! An image built from the busybox fixture (umoci + skopeo from Debian), loaded into berth's
//! store, unpacked into a bundle (real directory and overlayfs) and run with `berth run`.

use std::path::Path;
use std::process::Command;

use runtime_tests::{berth_bin, require_root, rootfs_dir};

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// docker-archive tarball of the busybox rootfs with Cmd `sh -c "echo from-image; id -un"`.
fn build_image(dir: &Path) -> std::path::PathBuf {
    let layout = dir.join("layout");
    let layout_s = layout.to_str().unwrap();
    sh(Command::new("umoci").args(["init", "--layout", layout_s]));
    sh(Command::new("umoci").args(["new", "--image", &format!("{layout_s}:latest")]));
    sh(Command::new("umoci")
        .args(["insert", "--image", &format!("{layout_s}:latest")])
        .arg(rootfs_dir().unwrap())
        .arg("/"));
    sh(Command::new("umoci").args([
        "config",
        "--image",
        &format!("{layout_s}:latest"),
        "--config.cmd",
        "sh",
        "--config.cmd",
        "-c",
        "--config.cmd",
        "echo from-image $GREETING; id -un; pwd",
        "--config.env",
        "GREETING=hello",
        "--config.workingdir",
        "/tmp",
        "--config.user",
        "berth",
    ]));
    let tar = dir.join("image.tar");
    sh(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{layout_s}:latest"),
        &format!("docker-archive:{}:fixture/busybox:latest", tar.display()),
    ]));
    tar
}

#[test]
fn loaded_image_unpacks_and_runs() {
    require_root();
    assert!(
        have("umoci"),
        "umoci is missing: install the Debian package umoci"
    );
    assert!(
        have("skopeo"),
        "skopeo is missing: install the Debian package skopeo"
    );
    let dir = tempfile::tempdir().unwrap();
    let tar = build_image(dir.path());
    let bin = berth_bin().unwrap();
    let store = dir.path().join("store");
    let state = dir.path().join("state");
    let berth = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--root")
            .arg(&state)
            .args(["image", "--image-root"])
            .arg(&store)
            .args(args);
        c
    };
    sh(&mut berth(&["load", tar.to_str().unwrap()]));
    let ls = sh(&mut berth(&["ls"]));
    assert!(ls.contains("fixture/busybox"), "{ls}");

    for (n, mode) in [(0, None), (1, Some("--overlay"))] {
        let bundle = dir.path().join(format!("bundle{n}"));
        let b = bundle.to_str().unwrap();
        let mut args = vec!["unpack", "-q", "--bundle", b];
        args.extend(mode);
        args.push("fixture/busybox:latest");
        sh(&mut berth(&args));
        let id = format!("img-{}-{n}", std::process::id());
        let out = sh(Command::new(&bin)
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle", b, &id]));
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            ["from-image hello", "berth", "/tmp"],
            "Cmd, Env, User and WorkingDir of the image config"
        );
        if mode.is_some() {
            sh(&mut berth(&["unmount", b]));
        }
    }
}
