//! v1 memory controller: limits, swap, OOM control and statistics.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::{Memory, MemoryEntry};

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// Applies the spec's memory section, following runc's write order for limit and swap.
///
/// v1's `memory.memsw.limit_in_bytes` is memory+swap, which is what the spec's `swap` means
/// already, so it is written as given. The kernel refuses a memory limit above memsw, so
/// when the new memsw is above the current limit (or unlimited) memsw goes first.
pub(crate) fn apply(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    if m.check_before_update() == Some(true) && limit > 0 {
        let usage = fsutil::read_u64(dir, "memory.usage_in_bytes")?;
        if usage > limit as u64 {
            return Err(CgroupError::invalid(
                "memory.limit",
                format!("new limit {limit} is below the current usage {usage}"),
            ));
        }
    }
    if limit == -1 && swap == 0 && dir.join(MEMSW).exists() {
        swap = -1;
    }
    if swap != 0 && !dir.join(MEMSW).exists() {
        return Err(CgroupError::invalid(
            "memory.swap",
            "swap accounting is not enabled in the kernel (no memory.memsw.limit_in_bytes)",
        ));
    }
    let swap_first = limit != 0 && swap != 0 && {
        let cur = fsutil::read_u64(dir, LIMIT)?;
        swap == -1 || cur < swap as u64
    };
    if swap_first {
        write_limit(dir, MEMSW, swap)?;
        write_limit(dir, LIMIT, limit)?;
    } else {
        write_limit(dir, LIMIT, limit)?;
        write_limit(dir, MEMSW, swap)?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        fsutil::write(dir, "memory.soft_limit_in_bytes", r.to_string())?;
    }
    if m.kernel().is_some() {
        tracing::warn!("linux.resources.memory.kernel is deprecated and ignored");
    }
    if let Some(k) = m.kernel_tcp().filter(|k| *k != 0) {
        fsutil::write(dir, "memory.kmem.tcp.limit_in_bytes", k.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        fsutil::write(dir, "memory.oom_control", "1")?;
    }
    // 18446744073709551615 (uint64 -1, what engines send for "not set") leaves it alone, as
    // runc does.
    if let Some(s) = m.swappiness().filter(|s| *s != u64::MAX) {
        if s > 100 {
            return Err(CgroupError::invalid(
                "memory.swappiness",
                format!("{s} is above 100"),
            ));
        }
        fsutil::write(dir, "memory.swappiness", s.to_string())?;
    }
    if let Some(h) = m.use_hierarchy() {
        fsutil::write(dir, "memory.use_hierarchy", if h { "1" } else { "0" })?;
    }
    Ok(())
}

fn write_limit(dir: &Path, file: &str, v: i64) -> Result<(), CgroupError> {
    if v == 0 {
        return Ok(());
    }
    match fsutil::write(dir, file, v.to_string()) {
        Err(CgroupError::Write { source, .. })
            if source.raw_os_error() == Some(libc::EBUSY) && file == LIMIT =>
        {
            let usage = fsutil::read_u64(dir, "memory.usage_in_bytes").unwrap_or(0);
            Err(CgroupError::invalid(
                "memory.limit",
                format!("cannot set the limit to {v}: the current usage is {usage}"),
            ))
        }
        r => r,
    }
}

fn entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    let f = |s: &str| format!("{prefix}.{s}");
    Ok(MemoryEntry {
        limit: fsutil::read_u64_opt(dir, &f("limit_in_bytes"))?.unwrap_or(0),
        usage: fsutil::read_u64_opt(dir, &f("usage_in_bytes"))?.unwrap_or(0),
        max: fsutil::read_u64_opt(dir, &f("max_usage_in_bytes"))?.unwrap_or(0),
        failcnt: fsutil::read_u64_opt(dir, &f("failcnt"))?.unwrap_or(0),
    })
}

/// Reads memory usage, limits and `memory.stat`.
pub(crate) fn stats(dir: &Path) -> Result<Memory, CgroupError> {
    let raw: std::collections::BTreeMap<String, u64> =
        fsutil::parse_flat_keyed(&fsutil::read(dir, "memory.stat")?)
            .into_iter()
            .collect();
    Ok(Memory {
        cache: raw
            .get("total_cache")
            .or(raw.get("cache"))
            .copied()
            .unwrap_or(0),
        usage: entry(dir, "memory")?,
        swap: entry(dir, "memory.memsw")?,
        kernel: entry(dir, "memory.kmem")?,
        kernel_tcp: entry(dir, "memory.kmem.tcp")?,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};
    use oci_spec::runtime::LinuxMemoryBuilder;

    const FILES: &[(&str, &str)] = &[
        ("memory.limit_in_bytes", "9223372036854771712\n"),
        ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
        ("memory.usage_in_bytes", "1000\n"),
        ("memory.soft_limit_in_bytes", ""),
        ("memory.kmem.tcp.limit_in_bytes", ""),
        ("memory.oom_control", ""),
        ("memory.swappiness", ""),
        ("memory.use_hierarchy", ""),
    ];

    #[test]
    fn limit_then_swap_when_lowering() {
        let d = fake_dir(FILES);
        let m = LinuxMemoryBuilder::default()
            .limit(100 << 20)
            .swap(200 << 20)
            .build()
            .unwrap();
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("memory.limit_in_bytes", "104857600"),
                ("memory.memsw.limit_in_bytes", "209715200"),
            ])
        );
    }

    #[test]
    fn swap_first_when_raising() {
        let mut files = FILES.to_vec();
        files[0] = ("memory.limit_in_bytes", "52428800\n");
        let d = fake_dir(&files);
        let m = LinuxMemoryBuilder::default()
            .limit(100 << 20)
            .swap(200 << 20)
            .build()
            .unwrap();
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("memory.memsw.limit_in_bytes", "209715200"),
                ("memory.limit_in_bytes", "104857600"),
            ])
        );
    }

    #[test]
    fn unlimited_memory_means_unlimited_swap() {
        let d = fake_dir(FILES);
        let m = LinuxMemoryBuilder::default().limit(-1).build().unwrap();
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("memory.memsw.limit_in_bytes", "-1"),
                ("memory.limit_in_bytes", "-1")
            ])
        );
    }

    #[test]
    fn other_fields() {
        let d = fake_dir(FILES);
        let m = LinuxMemoryBuilder::default()
            .reservation(50 << 20)
            .kernel(1 << 20)
            .kernel_tcp(2 << 20)
            .disable_oom_killer(true)
            .swappiness(60u64)
            .use_hierarchy(true)
            .build()
            .unwrap();
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("memory.soft_limit_in_bytes", "52428800"),
                ("memory.kmem.tcp.limit_in_bytes", "2097152"),
                ("memory.oom_control", "1"),
                ("memory.swappiness", "60"),
                ("memory.use_hierarchy", "1"),
            ])
        );
    }

    /// 18446744073709551615 (uint64 -1) is "not set", as runc reads it: nothing is written.
    #[test]
    fn swappiness_of_uint64_minus_one_is_unset() {
        let d = fake_dir(FILES);
        let m = LinuxMemoryBuilder::default()
            .swappiness(u64::MAX)
            .build()
            .unwrap();
        apply(d.path(), &m).unwrap();
        assert_eq!(take_writes(d.path()), pairs(&[]));
        assert!(crate::v2::memory::check_applicable(&m).is_ok());
    }

    #[test]
    fn invalid_values() {
        let d = fake_dir(FILES);
        let m = LinuxMemoryBuilder::default()
            .swappiness(101u64)
            .build()
            .unwrap();
        assert!(matches!(
            apply(d.path(), &m),
            Err(CgroupError::InvalidResource { .. })
        ));
        // checkBeforeUpdate refuses a limit below the usage, before writing anything.
        take_writes(d.path());
        let m = LinuxMemoryBuilder::default()
            .limit(500)
            .check_before_update(true)
            .build()
            .unwrap();
        assert!(matches!(
            apply(d.path(), &m),
            Err(CgroupError::InvalidResource { .. })
        ));
        assert!(take_writes(d.path()).is_empty());
        let m = LinuxMemoryBuilder::default()
            .limit(5000)
            .check_before_update(true)
            .build()
            .unwrap();
        apply(d.path(), &m).unwrap();
    }

    #[test]
    fn swap_without_accounting() {
        let files: Vec<_> = FILES
            .iter()
            .copied()
            .filter(|(f, _)| !f.contains("memsw"))
            .collect();
        let d = fake_dir(&files);
        let m = LinuxMemoryBuilder::default()
            .limit(100)
            .swap(200)
            .build()
            .unwrap();
        assert!(matches!(
            apply(d.path(), &m),
            Err(CgroupError::InvalidResource { .. })
        ));
        // limit -1 alone does not need swap accounting
        let m = LinuxMemoryBuilder::default().limit(-1).build().unwrap();
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[("memory.limit_in_bytes", "-1")])
        );
    }

    #[test]
    fn stats_from_samples() {
        let d = fake_dir(&[
            (
                "memory.stat",
                "cache 100\nrss 200\ntotal_cache 150\ntotal_rss 300\n",
            ),
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.max_usage_in_bytes", "8192\n"),
            ("memory.limit_in_bytes", "33554432\n"),
            ("memory.failcnt", "3\n"),
            ("memory.memsw.usage_in_bytes", "5000\n"),
            ("memory.memsw.max_usage_in_bytes", "9000\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.failcnt", "0\n"),
            ("memory.kmem.usage_in_bytes", "10\n"),
            ("memory.kmem.tcp.usage_in_bytes", "0\n"),
        ]);
        let s = stats(d.path()).unwrap();
        assert_eq!(s.cache, 150);
        assert_eq!(
            s.usage,
            MemoryEntry {
                limit: 33554432,
                usage: 4096,
                max: 8192,
                failcnt: 3
            }
        );
        assert_eq!(s.swap.usage, 5000);
        assert_eq!(s.swap.limit, 9223372036854771712);
        assert_eq!(s.kernel.usage, 10);
        assert_eq!(s.raw["rss"], 200);
    }
}
