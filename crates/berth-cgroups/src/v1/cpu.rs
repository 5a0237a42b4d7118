//! v1 cpu and cpuacct controllers.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::{Cpu, CpuUsage, Throttling};

/// Applies shares, CFS bandwidth (period, quota, burst), realtime and idle.
pub(crate) fn apply(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(shares) = c.shares().filter(|s| *s != 0) {
        fsutil::write(dir, "cpu.shares", shares.to_string())?;
        // The kernel clamps silently: report a value it did not take.
        let got = fsutil::read_u64(dir, "cpu.shares")?;
        if got != shares {
            return Err(CgroupError::invalid(
                "cpu.shares",
                format!("the kernel clamped {shares} to {got}"),
            ));
        }
    }
    let quota = c.quota().unwrap_or(0);
    let mut period_pending = None;
    if let Some(period) = c.period().filter(|p| *p != 0) {
        match fsutil::write(dir, "cpu.cfs_period_us", period.to_string()) {
            Ok(()) => {}
            // A smaller period can be refused while the old quota/new period exceeds the
            // parent's; retry once the quota is written.
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota != 0 =>
            {
                period_pending = Some(period);
            }
            Err(e) => return Err(e),
        }
    }
    if quota != 0 {
        fsutil::write(dir, "cpu.cfs_quota_us", quota.to_string())?;
        if let Some(p) = period_pending {
            fsutil::write(dir, "cpu.cfs_period_us", p.to_string())?;
        }
    }
    if let Some(burst) = c.burst() {
        fsutil::write(dir, "cpu.cfs_burst_us", burst.to_string())?;
    }
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        fsutil::write(dir, "cpu.rt_period_us", p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        fsutil::write(dir, "cpu.rt_runtime_us", r.to_string())?;
    }
    if let Some(idle) = c.idle() {
        fsutil::write(dir, "cpu.idle", idle.to_string())?;
    }
    Ok(())
}

/// Reads `cpu.stat` throttling counters (nanoseconds for the time).
pub(crate) fn throttling(dir: &Path) -> Result<Throttling, CgroupError> {
    let st = fsutil::parse_flat_keyed(&fsutil::read(dir, "cpu.stat")?);
    let get = |k: &str| {
        st.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    Ok(Throttling {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_time: get("throttled_time"),
    })
}

/// USER_HZ, the unit of `cpuacct.stat`.
fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|v| *v > 0)
        .map(|v| v as u64)
        .unwrap_or(100)
}

fn numbers(dir: &Path, file: &str) -> Result<Vec<u64>, CgroupError> {
    Ok(fsutil::read_opt(dir, file)?
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect())
}

/// Reads the cpuacct usage (nanoseconds).
pub(crate) fn usage(dir: &Path) -> Result<CpuUsage, CgroupError> {
    let st = fsutil::parse_flat_keyed(&fsutil::read(dir, "cpuacct.stat")?);
    let tick_ns = 1_000_000_000 / clock_ticks();
    let get = |k: &str| {
        st.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| *v * tick_ns)
            .unwrap_or(0)
    };
    Ok(CpuUsage {
        total: fsutil::read_u64(dir, "cpuacct.usage")?,
        percpu: numbers(dir, "cpuacct.usage_percpu")?,
        percpu_kernel: numbers(dir, "cpuacct.usage_percpu_sys")?,
        percpu_user: numbers(dir, "cpuacct.usage_percpu_user")?,
        kernel: get("system"),
        user: get("user"),
    })
}

/// Reads cpu stats from the cpuacct and cpu directories (either may be absent).
pub(crate) fn stats(cpuacct: Option<&Path>, cpu: Option<&Path>) -> Result<Cpu, CgroupError> {
    Ok(Cpu {
        usage: cpuacct.map(usage).transpose()?.unwrap_or_default(),
        throttling: cpu.map(throttling).transpose()?.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};
    use oci_spec::runtime::LinuxCpuBuilder;

    const FILES: &[(&str, &str)] = &[
        ("cpu.shares", ""),
        ("cpu.cfs_period_us", ""),
        ("cpu.cfs_quota_us", ""),
        ("cpu.cfs_burst_us", ""),
        ("cpu.rt_period_us", ""),
        ("cpu.rt_runtime_us", ""),
        ("cpu.idle", ""),
    ];

    #[test]
    fn every_field() {
        let d = fake_dir(FILES);
        let c = LinuxCpuBuilder::default()
            .shares(512u64)
            .period(100000u64)
            .quota(50000)
            .burst(1000u64)
            .realtime_period(1000000u64)
            .realtime_runtime(950000)
            .idle(1)
            .build()
            .unwrap();
        apply(d.path(), &c).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("cpu.cfs_burst_us", "1000"),
                ("cpu.rt_period_us", "1000000"),
                ("cpu.rt_runtime_us", "950000"),
                ("cpu.idle", "1"),
            ])
        );
    }

    #[test]
    fn zero_means_unset_and_unlimited_quota() {
        let d = fake_dir(FILES);
        let c = LinuxCpuBuilder::default()
            .shares(0u64)
            .quota(-1)
            .build()
            .unwrap();
        apply(d.path(), &c).unwrap();
        assert_eq!(take_writes(d.path()), pairs(&[("cpu.cfs_quota_us", "-1")]));
    }

    #[test]
    fn stats_from_samples() {
        let d = fake_dir(&[
            ("cpuacct.stat", "user 150\nsystem 50\n"),
            ("cpuacct.usage", "123456789\n"),
            ("cpuacct.usage_percpu", "100000000 23456789 \n"),
            ("cpuacct.usage_percpu_sys", "1 2\n"),
            ("cpuacct.usage_percpu_user", "3 4\n"),
            (
                "cpu.stat",
                "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n",
            ),
        ]);
        let s = stats(Some(d.path()), Some(d.path())).unwrap();
        assert_eq!(s.usage.total, 123456789);
        assert_eq!(s.usage.percpu, vec![100000000, 23456789]);
        assert_eq!(s.usage.percpu_kernel, vec![1, 2]);
        assert_eq!(s.usage.percpu_user, vec![3, 4]);
        let tick = 1_000_000_000 / clock_ticks();
        assert_eq!(s.usage.user, 150 * tick);
        assert_eq!(s.usage.kernel, 50 * tick);
        assert_eq!(
            s.throttling,
            Throttling {
                periods: 10,
                throttled_periods: 2,
                throttled_time: 5000
            }
        );
    }
}
