//! The spec's `linux.resources.unified` key/values, written as v2 files.

use std::collections::HashMap;
use std::path::Path;

use crate::error::CgroupError;
use crate::fsutil;

/// Writes each `key` file of `dir` with its value, in key order.
/// Keys naming another directory (`/`, `..`) are rejected before anything is written.
pub(crate) fn apply(dir: &Path, unified: &HashMap<String, String>) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for k in &keys {
        if k.is_empty() || k.contains('/') || k.as_str() == ".." || k.as_str() == "." {
            return Err(CgroupError::invalid(
                format!("unified.{k}"),
                "key must be a file name of the cgroup",
            ));
        }
    }
    for k in keys {
        if !dir.join(k).exists() {
            // A missing file means its controller is not enabled for this cgroup.
            let controller = k.split('.').next().unwrap_or(k);
            return Err(CgroupError::ControllerMissing {
                controller: controller.to_string(),
            });
        }
        fsutil::write(dir, k, &unified[k])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};

    #[test]
    fn writes_keys_and_rejects_paths() {
        let d = fake_dir(&[("memory.high", ""), ("pids.max", "")]);
        let mut m = HashMap::new();
        m.insert("pids.max".to_string(), "10".to_string());
        m.insert("memory.high".to_string(), "1000000".to_string());
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[("memory.high", "1000000"), ("pids.max", "10")])
        );
        for bad in ["../cgroup.procs", "a/b", "..", ""] {
            let mut m = m.clone();
            m.insert(bad.to_string(), "1".into());
            assert!(
                matches!(
                    apply(d.path(), &m),
                    Err(CgroupError::InvalidResource { .. })
                ),
                "{bad}"
            );
            assert!(take_writes(d.path()).is_empty());
        }
        let mut m = HashMap::new();
        m.insert("hugetlb.2MB.max".to_string(), "1".to_string());
        match apply(d.path(), &m) {
            Err(CgroupError::ControllerMissing { controller }) => assert_eq!(controller, "hugetlb"),
            other => panic!("{other:?}"),
        }
    }
}
