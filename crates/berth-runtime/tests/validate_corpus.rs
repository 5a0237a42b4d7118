//! Runs `validate_value` over runtime-tests/validate-corpus: every `valid/*.json` must have no
//! error (warnings are fine), and every `invalid/NAME.json` must produce each line of its
//! `NAME.expected` (as a substring of some `SEVERITY: PATH: MESSAGE (RULE)` line).

use std::path::{Path, PathBuf};

use berth_runtime::validate::{validate_value, Severity};

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../runtime-tests/validate-corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// The problem lines of one config, and how many of them are errors.
fn lines(path: &Path) -> (Vec<String>, usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let problems = validate_value(&config, None);
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let lines = problems
        .iter()
        .map(|p| format!("{}: {p}", p.severity))
        .collect();
    (lines, errors)
}

#[test]
fn valid_configs_have_no_errors() {
    let files = corpus("valid");
    assert!(files.len() >= 8, "only {} valid configs", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let (lines, errors) = lines(f);
        if errors > 0 {
            failures.push(format!("{}:\n  {}", f.display(), lines.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_configs_report_the_expected_problems() {
    let files = corpus("invalid");
    assert!(files.len() >= 25, "only {} invalid configs", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let expected_path = f.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let (lines, errors) = lines(f);
        if errors == 0 {
            failures.push(format!("{}: no error reported", f.display()));
        }
        for want in expected.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !lines.iter().any(|l| l.contains(want)) {
                failures.push(format!(
                    "{}: missing {want:?} in:\n  {}",
                    f.display(),
                    lines.join("\n  ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
