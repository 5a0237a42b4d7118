//! `berth image pull`'s output, driving the real `berth-image` binary: docker-style lines on a
//! stderr that is not a terminal, indicatif bars on one (a pty from `script`), and `--quiet`
//! printing only the pinned reference.

mod common;
mod regutil;

use std::path::Path;
use std::process::{Command, Output};

use berth_image::Digest;
use common::{file, tar_of};
use regutil::*;

struct Fixture {
    _t: tempfile::TempDir,
    _reg: Registry,
    name: String,
    manifest: Digest,
    layers: Vec<Digest>,
}

fn fixture() -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let reg = start_registry(t.path(), Auth::None);
    let specs = vec![
        LayerSpec::gzip(tar_of(|b| file(b, "one", b"1"))),
        LayerSpec::gzip(tar_of(|b| file(b, "noise", &noise(1 << 20, 5)))),
    ];
    let (manifest, layers) = push_image(reg.port, "berth/cli", "v1", &specs);
    Fixture {
        name: format!("127.0.0.1:{}/berth/cli:v1", reg.port),
        _reg: reg,
        _t: t,
        manifest,
        layers,
    }
}

fn pull(root: &Path, args: &[&str]) -> Output {
    let out = Command::new(common::berth_image_bin())
        .arg("pull")
        .args(args)
        .env("BERTH_IMAGE_ROOT", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pull {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

#[test]
fn lines_when_stderr_is_not_a_terminal() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let out = pull(t.path(), &[&f.name]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines[0], "v1: Pulling from berth/cli", "{err}");
    for d in &f.layers {
        // One line per state, in order, as docker prints them without a terminal.
        let states: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{}: ", short(d))))
            .collect();
        assert_eq!(
            states,
            [
                "Waiting",
                "Downloading",
                "Verifying Checksum",
                "Pull complete"
            ],
            "{err}"
        );
    }
    let name = f.name.clone();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "Digest: {}\nStatus: Downloaded newer image for {name}\n{name}\n",
            f.manifest
        )
    );

    // Again: nothing to fetch.
    let out = pull(t.path(), &[&f.name]);
    let err = String::from_utf8(out.stderr).unwrap();
    for d in &f.layers {
        assert!(
            err.contains(&format!("{}: Already exists\n", short(d))),
            "{err}"
        );
        assert!(
            !err.contains(&format!("{}: Downloading", short(d))),
            "{err}"
        );
    }
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains(&format!("Status: Image is up to date for {name}\n")));
}

#[test]
fn quiet_prints_only_the_pinned_reference() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let out = pull(t.path(), &["--quiet", &f.name]);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}@{}\n", f.name, f.manifest)
    );
}

#[test]
fn bars_when_stderr_is_a_terminal() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    // `script` runs the pull on a pty (stdout and stderr both terminals) and copies what it
    // printed to its own stdout.
    let cmd = format!("{} pull {}", common::berth_image_bin().display(), f.name);
    let out = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .env("BERTH_IMAGE_ROOT", t.path())
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Bars are redrawn in place (cursor movements), each layer's ending in its final state.
    assert!(text.contains('\x1b'), "{text:?}");
    for d in &f.layers {
        assert!(
            text.contains(&format!("{}: Pull complete", short(d))),
            "{text:?}"
        );
        assert!(
            !text.contains(&format!("{}: Waiting\r\n", short(d))),
            "{text:?}"
        );
    }
    assert!(
        text.contains(&format!("Digest: {}", f.manifest)),
        "{text:?}"
    );
}
