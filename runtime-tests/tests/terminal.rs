//! `run` and `exec` in the foreground with `process.terminal` and no console socket: berth is
//! the console (raw mode, window size, relay), as runc is. `script(1)` gives berth a terminal.

mod common;

use std::process::Command;

use common::leak_checked;

fn in_script(cmd: &str) -> String {
    let out = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .output()
        .expect("script(1) from bsdutils");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

#[test]
fn run_and_exec_relay_the_terminal() {
    assert!(
        Command::new("script").arg("--version").output().is_ok(),
        "script(1) is missing: install the Debian package bsdutils"
    );
    leak_checked(|rt, b| {
        b.set_terminal(true)
            .set_args(&["sh", "-c", "tty; stty size; echo done-$((6*7))"]);
        b.save().unwrap();
        let id = rt.new_id("tty");
        let cmd = format!(
            "stty cols 91 rows 33; {} --root {} run --bundle {} {}",
            rt.bin.display(),
            rt.root.display(),
            b.dir().display(),
            id
        );
        let out = in_script(&cmd);
        assert!(out.contains("/dev/pts/0"), "{out:?}");
        assert!(out.contains("33 91"), "window size not passed: {out:?}");
        assert!(out.contains("done-42"), "{out:?}");

        b.set_terminal(false).set_args(&["sleep", "100"]);
        let id = rt.new_id("tty-exec");
        assert!(rt.run_with(&id, b, &["--detach"]).success());
        let cmd = format!(
            "{} --root {} exec -t {} sh -c 'tty; echo exec-$((6*7))'",
            rt.bin.display(),
            rt.root.display(),
            id
        );
        let out = in_script(&cmd);
        assert!(
            out.contains("/dev/pts/0") && out.contains("exec-42"),
            "{out:?}"
        );
        assert!(rt.delete_force(&id).success());
    });
}
