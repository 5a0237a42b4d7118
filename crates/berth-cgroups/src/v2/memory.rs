//! v2 memory controller.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::{Memory, MemoryEntry};

/// The spec's `swap` is memory+swap (v1 semantics); v2's `memory.swap.max` is swap alone.
/// Returns the value to write, 0 meaning "leave alone" and -1 "max" (runc's conversion).
pub(crate) fn swap_to_v2(swap: i64, limit: i64) -> Result<i64, CgroupError> {
    // Unlimited memory with no swap given means unlimited swap too, as on v1.
    if limit == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if limit == 0 || limit == -1 {
        return Err(CgroupError::invalid(
            "memory.swap",
            "a swap limit needs a memory limit",
        ));
    }
    if limit < 0 {
        return Err(CgroupError::invalid(
            "memory.limit",
            format!("{limit} is negative"),
        ));
    }
    if swap < limit {
        return Err(CgroupError::invalid(
            "memory.swap",
            format!("memory+swap {swap} is below the memory limit {limit}"),
        ));
    }
    Ok(swap - limit)
}

/// Formats a v2 limit: -1 (any negative) is `max`.
pub(crate) fn limit_str(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// Applies limit (`memory.max`), reservation (`memory.low`) and swap (`memory.swap.max`).
pub(crate) fn apply(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    check_applicable(m)?;
    let limit = m.limit().unwrap_or(0);
    let swap = swap_to_v2(m.swap().unwrap_or(0), limit)?;
    if m.check_before_update() == Some(true) && limit > 0 {
        let cur = fsutil::read_u64(dir, "memory.current")?;
        if cur > limit as u64 {
            return Err(CgroupError::invalid(
                "memory.limit",
                format!("new limit {limit} is below the current usage {cur}"),
            ));
        }
    }
    if swap != 0 || (limit > 0 && m.swap() == Some(limit)) {
        if dir.join("memory.swap.max").exists() {
            fsutil::write(dir, "memory.swap.max", limit_str(swap))?;
        } else if swap > 0 {
            return Err(CgroupError::invalid(
                "memory.swap",
                "the kernel has no memory.swap.max (swap accounting disabled)",
            ));
        }
    }
    if limit != 0 {
        fsutil::write(dir, "memory.max", limit_str(limit))?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        fsutil::write(dir, "memory.low", limit_str(r))?;
    }
    if m.kernel().is_some() {
        // NOT RECOMMENDED in the spec, and gone from Linux 6.1 on v1 too; runc ignores it.
        tracing::warn!("memory.kernel has no cgroup v2 equivalent, ignored");
    }
    Ok(())
}

/// The memory properties that cgroup v2 has no file for, each an error when its value asks for
/// something (runtime.md#create: a property that cannot be applied MUST be an error; crun
/// refuses all three on v2, runc 1.1 drops them silently). Checked before anything is written.
///
/// - `swappiness`: v2 has no per-cgroup swappiness (only the global `vm.swappiness`); any value
///   is refused, as crun does, except 18446744073709551615 (uint64 -1: not set);
/// - `disableOOMKiller`: `true` is refused (v2 cannot turn the OOM killer off for a cgroup);
///   `false` asks for what v2 does anyway;
/// - `kernelTCP`: a limit (> 0) is refused (TCP buffers are charged to `memory.max` with no
///   limit of their own); 0 and -1 (no limit) are what v2 does.
pub(crate) fn check_applicable(m: &LinuxMemory) -> Result<(), CgroupError> {
    // 18446744073709551615 (uint64 -1) means not set, as in v1 and runc.
    if let Some(s) = m.swappiness().filter(|s| *s != u64::MAX) {
        return Err(CgroupError::invalid(
            "memory.swappiness",
            format!("{s} cannot be applied: cgroup v2 has no per-cgroup swappiness"),
        ));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(CgroupError::invalid(
            "memory.disableOOMKiller",
            "cgroup v2 cannot disable the OOM killer of a cgroup",
        ));
    }
    if let Some(k) = m.kernel_tcp().filter(|k| *k > 0) {
        return Err(CgroupError::invalid(
            "memory.kernelTCP",
            format!("a limit of {k} cannot be applied: cgroup v2 has no kernel TCP memory limit"),
        ));
    }
    Ok(())
}

/// Reads memory statistics; `swap` is reported as memory+swap like v1 (as runc does).
pub(crate) fn stats(dir: &Path) -> Result<Memory, CgroupError> {
    let raw: BTreeMap<String, u64> = fsutil::parse_flat_keyed(&fsutil::read(dir, "memory.stat")?)
        .into_iter()
        .collect();
    let events =
        fsutil::parse_flat_keyed(&fsutil::read_opt(dir, "memory.events")?.unwrap_or_default());
    let ev = |k: &str| {
        events
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    let usage = fsutil::read_u64(dir, "memory.current")?;
    let limit = fsutil::read_u64(dir, "memory.max")?;
    let swap_usage = fsutil::read_u64_opt(dir, "memory.swap.current")?;
    let swap_limit = fsutil::read_u64_opt(dir, "memory.swap.max")?;
    Ok(Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage: MemoryEntry {
            limit,
            usage,
            max: fsutil::read_u64_opt(dir, "memory.peak")?.unwrap_or(0),
            failcnt: ev("max"),
        },
        swap: MemoryEntry {
            limit: swap_limit.map(|s| s.saturating_add(limit)).unwrap_or(0),
            usage: swap_usage.map(|s| s + usage).unwrap_or(0),
            max: fsutil::read_u64_opt(dir, "memory.swap.peak")?.unwrap_or(0),
            failcnt: 0,
        },
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};
    use oci_spec::runtime::LinuxMemoryBuilder;

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_to_v2(0, -1).unwrap(), -1);
        assert_eq!(swap_to_v2(-1, 100).unwrap(), -1);
        assert_eq!(swap_to_v2(0, 100).unwrap(), 0);
        assert_eq!(swap_to_v2(300, 100).unwrap(), 200);
        assert_eq!(swap_to_v2(100, 100).unwrap(), 0);
        assert!(swap_to_v2(50, 100).is_err());
        assert!(swap_to_v2(300, 0).is_err());
        assert!(swap_to_v2(300, -1).is_err());
    }

    const FILES: &[(&str, &str)] = &[
        ("memory.max", "max\n"),
        ("memory.swap.max", "max\n"),
        ("memory.low", "0\n"),
        ("memory.current", "1000\n"),
    ];

    #[test]
    fn what_v2_cannot_apply_is_an_error_before_any_write() {
        let d = fake_dir(FILES);
        for (m, field) in [
            (
                LinuxMemoryBuilder::default().limit(100).swappiness(60u64),
                "memory.swappiness",
            ),
            (
                LinuxMemoryBuilder::default().limit(100).swappiness(0u64),
                "memory.swappiness",
            ),
            (
                LinuxMemoryBuilder::default()
                    .limit(100)
                    .disable_oom_killer(true),
                "memory.disableOOMKiller",
            ),
            (
                LinuxMemoryBuilder::default().limit(100).kernel_tcp(1 << 20),
                "memory.kernelTCP",
            ),
        ] {
            let err = apply(d.path(), &m.build().unwrap()).unwrap_err();
            assert!(
                matches!(&err, CgroupError::InvalidResource { field: f, .. } if f == field),
                "{err}"
            );
            assert!(err.to_string().contains("cgroup v2"), "{err}");
            assert!(take_writes(d.path()).is_empty(), "{field}");
        }
    }

    #[test]
    fn writes() {
        let d = fake_dir(FILES);
        let m = LinuxMemoryBuilder::default()
            .limit(100 << 20)
            .swap(300 << 20)
            .reservation(50 << 20)
            .kernel(1)
            .kernel_tcp(-1)
            .disable_oom_killer(false)
            .build()
            .unwrap();
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("memory.swap.max", "209715200"),
                ("memory.max", "104857600"),
                ("memory.low", "52428800"),
            ])
        );
        let m = LinuxMemoryBuilder::default().limit(-1).build().unwrap();
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[("memory.swap.max", "max"), ("memory.max", "max")])
        );
        // runc: memory+swap equal to the memory limit disables swap
        let m = LinuxMemoryBuilder::default()
            .limit(100)
            .swap(100)
            .build()
            .unwrap();
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[("memory.swap.max", "0"), ("memory.max", "100")])
        );
        let m = LinuxMemoryBuilder::default()
            .limit(10)
            .check_before_update(true)
            .build()
            .unwrap();
        assert!(apply(d.path(), &m).is_err());
        assert!(take_writes(d.path()).is_empty());
    }

    #[test]
    fn stats_from_samples() {
        let d = fake_dir(&[
            ("memory.stat", "anon 100\nfile 200\n"),
            ("memory.current", "300\n"),
            ("memory.max", "1000\n"),
            ("memory.peak", "500\n"),
            ("memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
            ("memory.swap.current", "10\n"),
            ("memory.swap.max", "max\n"),
        ]);
        let s = stats(d.path()).unwrap();
        assert_eq!(s.cache, 200);
        assert_eq!(
            s.usage,
            MemoryEntry {
                limit: 1000,
                usage: 300,
                max: 500,
                failcnt: 4
            }
        );
        assert_eq!(s.swap.usage, 310);
        assert_eq!(s.swap.limit, u64::MAX);
        assert_eq!(s.raw["anon"], 100);
    }
}
