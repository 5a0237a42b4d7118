//! The conformance suite against berth: every case must be ok, except the documented
//! deviations below.

use runtime_tests::conformance::{run_suite, Options, Outcome};
use runtime_tests::{berth_bin, require_root};

/// Cases berth deliberately answers like runc rather than like the spec.
const DEVIATIONS: &[(&str, &str)] = &[(
    "lifecycle.delete.created",
    "delete of a created container succeeds, as in runc: containerd's shim deletes created \
     containers without --force",
)];

#[test]
fn berth_passes_the_conformance_suite() {
    require_root();
    let report = run_suite(&Options {
        runtime: berth_bin().expect("berth binary"),
        filter: None,
        keep_going: true,
        private_mount_ns: true,
    });
    let bad: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::NotOk)
        .filter(|r| !DEVIATIONS.iter().any(|(id, _)| *id == r.id))
        .map(|r| format!("{}: {}\n{}", r.id, r.reason, r.log))
        .collect();
    println!("{}", report.tap());
    assert!(bad.is_empty(), "not ok:\n{}", bad.join("\n"));
}
