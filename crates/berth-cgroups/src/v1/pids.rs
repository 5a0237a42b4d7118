//! pids controller (same files on v1 and v2).

use std::path::Path;

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::Pids;

/// runc's mapping: 0 leaves the limit alone, a negative limit is `max`.
pub(crate) fn apply(dir: &Path, limit: i64) -> Result<(), CgroupError> {
    if limit == 0 {
        return Ok(());
    }
    let v = if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    };
    fsutil::write(dir, "pids.max", v)
}

/// Reads `pids.current` and `pids.max` (0 for `max`, like runc).
pub(crate) fn stats(dir: &Path) -> Result<Pids, CgroupError> {
    let max = fsutil::read_u64(dir, "pids.max")?;
    Ok(Pids {
        current: fsutil::read_u64(dir, "pids.current")?,
        limit: if max == u64::MAX { 0 } else { max },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};

    #[test]
    fn limits() {
        let d = fake_dir(&[("pids.max", "")]);
        apply(d.path(), 0).unwrap();
        apply(d.path(), 42).unwrap();
        apply(d.path(), -1).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[("pids.max", "42"), ("pids.max", "max")])
        );
    }

    #[test]
    fn stats_from_samples() {
        let d = fake_dir(&[("pids.max", "max\n"), ("pids.current", "3\n")]);
        assert_eq!(
            stats(d.path()).unwrap(),
            Pids {
                current: 3,
                limit: 0
            }
        );
        let d = fake_dir(&[("pids.max", "10\n"), ("pids.current", "3\n")]);
        assert_eq!(
            stats(d.path()).unwrap(),
            Pids {
                current: 3,
                limit: 10
            }
        );
    }
}
