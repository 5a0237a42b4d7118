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
        fsutil::write(dir, k, &unified[k])?;
    }
    Ok(())
}
