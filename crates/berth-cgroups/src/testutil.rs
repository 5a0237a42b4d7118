//! Helpers for unit tests against a fake cgroupfs in a temporary directory.

use std::fs;
use std::path::Path;

use tempfile::TempDir;

/// A directory holding `files` with their contents (sub-directories are created).
pub(crate) fn fake_dir(files: &[(&str, &str)]) -> TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let p = d.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    take_writes(d.path());
    d
}

/// The writes made under `dir` since the last call, as (file relative to dir, value).
pub(crate) fn take_writes(dir: &Path) -> Vec<(String, String)> {
    crate::fsutil::WRITES.with(|w| {
        w.borrow_mut()
            .drain(..)
            .filter_map(|(p, v)| {
                p.strip_prefix(dir)
                    .ok()
                    .map(|r| (r.display().to_string(), v))
            })
            .collect()
    })
}

/// `[("a", "1")]` as owned pairs, for comparisons.
pub(crate) fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Reads a file of `dir`.
pub(crate) fn read(dir: &Path, f: &str) -> String {
    fs::read_to_string(dir.join(f)).unwrap()
}
