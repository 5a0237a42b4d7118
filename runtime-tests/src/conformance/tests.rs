//! The suite judged against runc: known-good cases must pass, and a runtime that lies is caught.

use std::collections::BTreeMap;

use super::*;

const RUNC: &str = "/usr/sbin/runc";

/// Cases runc 1.1.5 (Debian 12) passes on this kind of host. A case listed here that is not ok
/// is a regression of the suite (or the host changed). runc is known not ok on
/// lifecycle.delete.created (deletes a created container), config.domainname (ignored),
/// linux.rootfs-propagation.shared (its / ends up private) and linux.personality (unsupported);
/// linux.time-offsets is skipped (no time namespace in its features).
const RUNC_OK: &[&str] = &[
    "lifecycle.state.created",
    "lifecycle.create.no-user-process",
    "lifecycle.state.running",
    "lifecycle.state.stopped",
    "lifecycle.state.annotations",
    "lifecycle.state.unknown-id",
    "lifecycle.create.duplicate-id",
    "lifecycle.create.invalid-config",
    "lifecycle.create.missing-rootfs",
    "lifecycle.create.bad-executable",
    "lifecycle.start.not-created",
    "lifecycle.start.stopped",
    "lifecycle.start.unknown-id",
    "lifecycle.kill.created",
    "lifecycle.kill.running",
    "lifecycle.kill.stopped",
    "lifecycle.kill.unknown-id",
    "lifecycle.delete.running",
    "lifecycle.delete.stopped",
    "lifecycle.delete.unknown-id",
    "lifecycle.delete.force-running",
    "lifecycle.run.exit-code",
    "lifecycle.exec.running",
    "lifecycle.exec.stopped",
    "config.root.readonly",
    "config.root.writable",
    "config.mounts.tmpfs-options",
    "config.mounts.order",
    "config.mounts.bind-ro",
    "config.process.args",
    "config.process.env",
    "config.process.cwd",
    "config.process.user",
    "config.process.umask",
    "config.process.capabilities",
    "config.process.capabilities-nonroot",
    "config.process.rlimits",
    "config.process.rlimits-invalid",
    "config.process.no-new-privileges",
    "config.process.oom-score-adj",
    "config.process.no-terminal-stdio",
    "config.process.terminal",
    "config.hostname",
    "config.hostname.without-uts",
    "config.hooks.create-phase",
    "config.hooks.start-phase",
    "config.hooks.state-stdin",
    "config.hooks.env-args",
    "config.hooks.create-failure",
    "config.hooks.poststop-failure",
    "linux.namespace.pid.new",
    "linux.namespace.network.new",
    "linux.namespace.ipc.new",
    "linux.namespace.uts.new",
    "linux.namespace.mount.new",
    "linux.namespace.cgroup.new",
    "linux.namespace.network.absent",
    "linux.namespace.ipc.absent",
    "linux.namespace.uts.absent",
    "linux.namespace.cgroup.absent",
    "linux.namespace.network.join",
    "linux.namespace.ipc.join",
    "linux.namespace.uts.join",
    "linux.namespace.pid.join",
    "linux.namespace.user.mappings",
    "linux.devices.default",
    "linux.devices.custom",
    "linux.devices.cgroup-deny",
    "linux.resources.memory",
    "linux.resources.pids",
    "linux.resources.cpu-shares",
    "linux.resources.cgroups-path",
    "linux.sysctl",
    "linux.seccomp.errno",
    "linux.rootfs-propagation.private",
    "linux.rootfs-propagation.slave",
    "linux.masked-paths",
    "linux.readonly-paths",
    "features.document",
    "features.namespaces-work",
    "features.hooks-run",
    "features.capabilities-grantable",
];

fn runc_available() -> bool {
    crate::require_root();
    crate::require_path(RUNC, "runc");
    if let Err(e) = crate::rootfs_dir().and_then(|_| crate::probe_bin()) {
        panic!("probe not built (cargo build -p berth-probe) or rootfs missing: {e}");
    }
    true
}

#[test]
fn filter_matches_substrings() {
    assert!(matches(None, "a.b"));
    assert!(matches(Some("life,hooks"), "config.hooks.x"));
    assert!(!matches(Some("linux"), "config.root"));
}

#[test]
fn case_ids_are_unique() {
    let mut seen = BTreeMap::new();
    for c in all_cases() {
        assert!(
            seen.insert(c.id.clone(), ()).is_none(),
            "duplicate case {}",
            c.id
        );
    }
    for id in RUNC_OK {
        assert!(
            seen.contains_key(*id),
            "expected list names unknown case {id}"
        );
    }
}

#[test]
fn runc_passes_its_known_cases() {
    if !runc_available() {
        return;
    }
    let filter: String = RUNC_OK.join(",");
    let report = run_suite(&Options {
        runtime: RUNC.into(),
        filter: Some(filter),
        keep_going: true,
        private_mount_ns: true,
    });
    let failed: Vec<String> = report
        .results
        .iter()
        .filter(|r| RUNC_OK.contains(&r.id.as_str()) && r.outcome != Outcome::Ok)
        .map(|r| format!("{}: {}\n{}", r.id, r.reason, r.log))
        .collect();
    assert!(failed.is_empty(), "runc regressed:\n{}", failed.join("\n"));
}

/// A wrapper around runc that rewrites the hostname and env of every bundle it creates: the
/// suite must call that not ok.
#[test]
fn lying_runtime_is_caught() {
    if !runc_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let liar = dir.path().join("runc-liar");
    std::fs::write(
        &liar,
        format!(
            "#!/bin/sh\nprev=\nfor a in \"$@\"; do\n  if [ \"$prev\" = --bundle ]; then\n    \
             sed -i -e 's/\"hostname\": \"[^\"]*\"/\"hostname\": \"broken\"/' \
             -e 's/\"A=1\"/\"A=2\"/' \"$a/config.json\"\n  fi\n  prev=$a\ndone\nexec {RUNC} \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&liar, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let report = run_suite(&Options {
        runtime: liar,
        filter: Some("config.hostname,config.process.env,lifecycle.state.unknown-id".into()),
        keep_going: true,
        private_mount_ns: true,
    });
    let outcome = |id: &str| {
        report
            .results
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.outcome.clone())
    };
    assert_eq!(
        outcome("config.hostname"),
        Some(Outcome::NotOk),
        "{}",
        report.tap()
    );
    assert_eq!(
        outcome("config.process.env"),
        Some(Outcome::NotOk),
        "{}",
        report.tap()
    );
    assert_eq!(
        outcome("lifecycle.state.unknown-id"),
        Some(Outcome::Ok),
        "{}",
        report.tap()
    );
    let not_ok = report
        .results
        .iter()
        .find(|r| r.id == "config.hostname")
        .unwrap();
    assert!(not_ok.reason.contains("broken"), "{}", not_ok.reason);
}
