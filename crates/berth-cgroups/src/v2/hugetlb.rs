//! v2 hugetlb controller.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::Hugetlb;
use crate::v1::hugetlb::{check_page_size, page_sizes};

/// Writes `hugetlb.<size>.max` (and `.rsvd.max` where present).
pub(crate) fn apply(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        check_page_size(l.page_size())?;
        let file = format!("hugetlb.{}.max", l.page_size());
        if !dir.join(&file).exists() {
            return Err(CgroupError::invalid(
                "hugepageLimits.pageSize",
                format!("the kernel has no huge page size {}", l.page_size()),
            ));
        }
        fsutil::write(dir, &file, l.limit().to_string())?;
        let rsvd = format!("hugetlb.{}.rsvd.max", l.page_size());
        if dir.join(&rsvd).exists() {
            fsutil::write(dir, &rsvd, l.limit().to_string())?;
        }
    }
    Ok(())
}

/// Reads usage and failcnt (`events` max) per page size.
pub(crate) fn stats(dir: &Path) -> Result<BTreeMap<String, Hugetlb>, CgroupError> {
    let mut out = BTreeMap::new();
    for size in page_sizes(dir, ".max")? {
        let events = fsutil::read_opt(dir, &format!("hugetlb.{size}.events"))?.unwrap_or_default();
        let failcnt = fsutil::parse_flat_keyed(&events)
            .into_iter()
            .find(|(k, _)| k == "max")
            .map(|(_, v)| v)
            .unwrap_or(0);
        out.insert(
            size.clone(),
            Hugetlb {
                usage: fsutil::read_u64(dir, &format!("hugetlb.{size}.current"))?,
                max: 0,
                failcnt,
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

    #[test]
    fn limits_and_stats() {
        let d = fake_dir(&[
            ("hugetlb.2MB.max", "max\n"),
            ("hugetlb.2MB.rsvd.max", "max\n"),
            ("hugetlb.2MB.current", "2097152\n"),
            ("hugetlb.2MB.events", "max 2\n"),
        ]);
        let l = LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4 << 20)
            .build()
            .unwrap();
        apply(d.path(), &[l]).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("hugetlb.2MB.max", "4194304"),
                ("hugetlb.2MB.rsvd.max", "4194304")
            ])
        );
        std::fs::write(d.path().join("hugetlb.2MB.max"), "max\n").unwrap();
        let s = stats(d.path()).unwrap();
        assert_eq!(
            s["2MB"],
            Hugetlb {
                usage: 2097152,
                max: 0,
                failcnt: 2
            }
        );
    }
}
