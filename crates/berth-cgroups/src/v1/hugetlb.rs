//! v1 hugetlb controller.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::Hugetlb;

/// Checks that a page size such as `2MB` can be part of a file name.
pub(crate) fn check_page_size(size: &str) -> Result<(), CgroupError> {
    let ok = !size.is_empty() && size.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(CgroupError::invalid(
            "hugepageLimits.pageSize",
            format!("{size:?} is not a page size"),
        ))
    }
}

/// Writes `hugetlb.<size>.limit_in_bytes` (and the reservation limit where present).
pub(crate) fn apply(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        check_page_size(l.page_size())?;
        let file = format!("hugetlb.{}.limit_in_bytes", l.page_size());
        if !dir.join(&file).exists() {
            return Err(CgroupError::invalid(
                "hugepageLimits.pageSize",
                format!("the kernel has no huge page size {}", l.page_size()),
            ));
        }
        fsutil::write(dir, &file, l.limit().to_string())?;
        let rsvd = format!("hugetlb.{}.rsvd.limit_in_bytes", l.page_size());
        if dir.join(&rsvd).exists() {
            fsutil::write(dir, &rsvd, l.limit().to_string())?;
        }
    }
    Ok(())
}

/// Page sizes for which `dir` has files with `suffix` (e.g. `.limit_in_bytes`).
pub(crate) fn page_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>, CgroupError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| CgroupError::read(dir, e))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(size) = name
            .strip_prefix("hugetlb.")
            .and_then(|n| n.strip_suffix(suffix))
        {
            if !size.contains('.') {
                out.push(size.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads usage, peak and failcnt for every page size.
pub(crate) fn stats(dir: &Path) -> Result<BTreeMap<String, Hugetlb>, CgroupError> {
    let mut out = BTreeMap::new();
    for size in page_sizes(dir, ".limit_in_bytes")? {
        let f = |k: &str| format!("hugetlb.{size}.{k}");
        out.insert(
            size.clone(),
            Hugetlb {
                usage: fsutil::read_u64(dir, &f("usage_in_bytes"))?,
                max: fsutil::read_u64(dir, &f("max_usage_in_bytes"))?,
                failcnt: fsutil::read_u64(dir, &f("failcnt"))?,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};
    use oci_spec::runtime::LinuxHugepageLimitBuilder;

    fn lim(size: &str, limit: i64) -> LinuxHugepageLimit {
        LinuxHugepageLimitBuilder::default()
            .page_size(size)
            .limit(limit)
            .build()
            .unwrap()
    }

    #[test]
    fn limits() {
        let d = fake_dir(&[
            ("hugetlb.2MB.limit_in_bytes", ""),
            ("hugetlb.2MB.rsvd.limit_in_bytes", ""),
            ("hugetlb.1GB.limit_in_bytes", ""),
        ]);
        apply(d.path(), &[lim("2MB", 4 << 20), lim("1GB", 1 << 30)]).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("hugetlb.2MB.limit_in_bytes", "4194304"),
                ("hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
                ("hugetlb.1GB.limit_in_bytes", "1073741824"),
            ])
        );
        assert!(apply(d.path(), &[lim("16GB", 1)]).is_err());
        assert!(apply(d.path(), &[lim("../x", 1)]).is_err());
    }

    #[test]
    fn stats_from_samples() {
        let d = fake_dir(&[
            ("hugetlb.2MB.limit_in_bytes", "0\n"),
            ("hugetlb.2MB.rsvd.limit_in_bytes", "0\n"),
            ("hugetlb.2MB.usage_in_bytes", "2097152\n"),
            ("hugetlb.2MB.max_usage_in_bytes", "4194304\n"),
            ("hugetlb.2MB.failcnt", "1\n"),
        ]);
        let s = stats(d.path()).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            s["2MB"],
            Hugetlb {
                usage: 2097152,
                max: 4194304,
                failcnt: 1
            }
        );
    }
}
