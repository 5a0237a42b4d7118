//! berth against runc (from Debian) on the same bundles, where their behaviour should match:
//! the state document's shape, the capability sets, the mount table's shape, exit codes and
//! error exits.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use runtime_tests::{require_path, require_root, Bundle, Runtime};
use serde_json::Value;

const RUNC: &str = "/usr/sbin/runc";

fn both() -> Option<(Runtime, Runtime)> {
    require_root();
    require_path(RUNC, "runc");
    let berth = Runtime::new(runtime_tests::berth_bin().expect("berth")).unwrap();
    let runc = Runtime::new(RUNC).unwrap();
    Some((berth, runc))
}

fn probe_report(rt: &Runtime, b: &Bundle, tag: &str) -> Value {
    let out = rt.run(&rt.new_id(tag), b);
    assert!(out.success(), "{}", out.describe());
    out.json().expect("probe json")
}

/// The mount table reduced to what should not depend on the runtime: mount point, fs type and
/// the per-mount flags.
fn mount_shape(report: &Value) -> BTreeSet<String> {
    report["mountinfo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut opts: Vec<&str> = m["options"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            opts.sort();
            format!(
                "{} {} {}",
                m["mount_point"].as_str().unwrap(),
                m["fstype"].as_str().unwrap(),
                opts.join(",")
            )
        })
        .collect()
}

#[test]
fn same_bundle_same_view_from_inside() {
    let Some((berth, runc)) = both() else {
        return;
    };
    let mut b = Bundle::with_probe().unwrap();
    // runc 1.1 does not know the time namespace's procfs files; leave cgroup mounts out, as
    // runc 1.1 presents v1 hierarchies differently (its own cgroup paths).
    b.set_args(&["/probe"]);
    let mounts: Vec<Value> = b.spec()["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] != "cgroup")
        .cloned()
        .collect();
    b.set_mounts(Value::Array(mounts));
    let ours = probe_report(&berth, &b, "diff");
    let theirs = probe_report(&runc, &b, "diff");
    assert_eq!(ours["caps"], theirs["caps"], "Cap* lines differ");
    for key in [
        "uid",
        "gid",
        "euid",
        "egid",
        "groups",
        "umask",
        "pid",
        "cwd",
        "env",
        "hostname",
        "no_new_privs",
        "rlimits",
        "oom_score_adj",
    ] {
        assert_eq!(ours[key], theirs[key], "{key} differs");
    }
    let (a, b2) = (mount_shape(&ours), mount_shape(&theirs));
    assert_eq!(
        a,
        b2,
        "mount tables differ:\n only berth: {:?}\n only runc: {:?}",
        a.difference(&b2).collect::<Vec<_>>(),
        b2.difference(&a).collect::<Vec<_>>()
    );
    berth.cleanup();
    runc.cleanup();
}

#[test]
fn state_documents_have_the_same_shape() {
    let Some((berth, runc)) = both() else {
        return;
    };
    let mut b = Bundle::new().unwrap();
    b.set_args(&["sleep", "100"])
        .set_annotation("org.example.k", "v");
    let mut shapes = Vec::new();
    for rt in [&berth, &runc] {
        let id = rt.new_id("shape");
        assert!(rt.create(&id, &b).success(), "{}", rt.dump_log());
        let created = rt.state_json(&id).unwrap();
        assert!(rt.start(&id).success());
        let running = rt.state_json(&id).unwrap();
        assert!(rt.kill(&id, "KILL").success());
        let stopped = rt
            .wait_status(&id, "stopped", Duration::from_secs(10))
            .unwrap();
        assert!(rt.delete(&id).success());
        let keys = |v: &Value| {
            v.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<BTreeSet<String>>()
        };
        shapes.push((
            keys(&created),
            [
                created["status"].clone(),
                running["status"].clone(),
                stopped["status"].clone(),
                stopped["pid"].clone(),
                running["annotations"].clone(),
            ],
        ));
        rt.cleanup();
    }
    assert_eq!(shapes[0], shapes[1]);
}

#[test]
fn exit_codes_and_errors_match() {
    let Some((berth, runc)) = both() else {
        return;
    };
    let mut b = Bundle::new().unwrap();
    for (args, code) in [
        (vec!["sh", "-c", "exit 0"], 0),
        (vec!["sh", "-c", "exit 3"], 3),
        (vec!["sh", "-c", "exit 255"], 255),
    ] {
        b.set_args(&args);
        let ours = berth.run(&berth.new_id("code"), &b).code();
        let theirs = runc.run(&runc.new_id("code"), &b).code();
        assert_eq!(ours, Some(code));
        assert_eq!(ours, theirs, "{args:?}");
    }
    // Errors: both fail (non-zero) on the same misuse.
    for verb in [
        &["state", "nope"][..],
        &["kill", "nope", "KILL"],
        &["start", "nope"],
    ] {
        let ours = berth.cmd(verb);
        let theirs = runc.cmd(verb);
        assert!(!ours.success() && !theirs.success(), "{verb:?}");
    }
    berth.cleanup();
    runc.cleanup();
}
