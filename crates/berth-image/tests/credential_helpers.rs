//! Credential helpers that misbehave end the lookup with an answer or an error naming the
//! helper, never a hang: one that writes more than a pipe holds to stderr before answering
//! (berth read stdout to its end first while the helper blocked on stderr: both waited
//! forever; the first test failed so), and one that prints without end (refused at the cap).
//!
//! Each test is a process of its own under nextest, so setting PATH and DOCKER_CONFIG is
//! confined to it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use berth_image::registry::{docker_credentials, RegistryError};

type Answer = Result<Option<(String, String)>, Box<RegistryError>>;

/// Install `docker-credential-NAME` (the shell `script`) and a docker config whose
/// credHelpers sends `registry` to it; returns the lookup's answer, failing after 20 s.
fn lookup_with(dir: &Path, name: &str, script: &str, registry: &str) -> Answer {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let p = bin.join(format!("docker-credential-{name}"));
    fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.join("docker");
    fs::create_dir_all(&cfg).unwrap();
    fs::write(
        cfg.join("config.json"),
        serde_json::json!({ "credHelpers": { registry: name } }).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::env::set_var("PATH", path);
    std::env::set_var("DOCKER_CONFIG", &cfg);
    let (tx, rx) = mpsc::channel();
    let registry = registry.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(docker_credentials(&registry).map_err(Box::new));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the credential lookup hung")
}

#[test]
fn a_helper_that_floods_stderr_before_answering_is_heard() {
    let t = tempfile::tempdir().unwrap();
    let answer = lookup_with(
        t.path(),
        "noisy",
        "cat >/dev/null\nhead -c 300000 /dev/zero | tr '\\0' x >&2\n\
         echo '{\"ServerURL\":\"r.example\",\"Username\":\"u\",\"Secret\":\"s\"}'",
        "r.example",
    );
    assert_eq!(answer.unwrap(), Some(("u".into(), "s".into())));
}

#[test]
fn a_helper_that_prints_without_end_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let answer = lookup_with(t.path(), "endless", "cat >/dev/null\nexec yes", "r.example");
    match answer.map_err(|e| *e) {
        Err(e @ RegistryError::Helper { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("docker-credential-endless") && msg.contains("more than"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}
