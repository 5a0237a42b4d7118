//! v2 cpu and cpuset controllers.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::{Cpu, CpuUsage, Throttling};

/// runc's conversion of v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

/// The `cpu.max` value: `"$quota $period"`, quota `max` when not positive.
pub(crate) fn cpu_max(quota: i64, period: u64) -> Option<String> {
    if quota == 0 && period == 0 {
        return None;
    }
    let mut s = if quota > 0 {
        quota.to_string()
    } else {
        "max".to_string()
    };
    if period != 0 {
        s.push_str(&format!(" {period}"));
    }
    Some(s)
}

/// Applies weight, bandwidth, burst, idle and the cpuset.
pub(crate) fn apply(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        return Err(CgroupError::invalid(
            "cpu.realtimeRuntime",
            "realtime scheduling limits are not supported by cgroup v2",
        ));
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        fsutil::write(dir, "cpu.weight", shares_to_weight(s).to_string())?;
    }
    if let Some(v) = cpu_max(c.quota().unwrap_or(0), c.period().unwrap_or(0)) {
        fsutil::write(dir, "cpu.max", v)?;
    }
    if let Some(b) = c.burst() {
        fsutil::write(dir, "cpu.max.burst", b.to_string())?;
    }
    if let Some(i) = c.idle() {
        fsutil::write(dir, "cpu.idle", i.to_string())?;
    }
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        fsutil::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        fsutil::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// Reads `cpu.stat` (microseconds there, nanoseconds in the stats).
pub(crate) fn stats(dir: &Path) -> Result<Cpu, CgroupError> {
    let st = fsutil::parse_flat_keyed(&fsutil::read(dir, "cpu.stat")?);
    let get = |k: &str| {
        st.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    Ok(Cpu {
        usage: CpuUsage {
            total: get("usage_usec") * 1000,
            kernel: get("system_usec") * 1000,
            user: get("user_usec") * 1000,
            ..CpuUsage::default()
        },
        throttling: Throttling {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time: get("throttled_usec") * 1000,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};
    use oci_spec::runtime::LinuxCpuBuilder;

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
    }

    #[test]
    fn cpu_max_values() {
        assert_eq!(cpu_max(0, 0), None);
        assert_eq!(cpu_max(50000, 100000).as_deref(), Some("50000 100000"));
        assert_eq!(cpu_max(-1, 100000).as_deref(), Some("max 100000"));
        assert_eq!(cpu_max(20000, 0).as_deref(), Some("20000"));
        assert_eq!(cpu_max(-1, 0).as_deref(), Some("max"));
    }

    #[test]
    fn writes() {
        let d = fake_dir(&[]);
        let c = LinuxCpuBuilder::default()
            .shares(1024u64)
            .quota(50000)
            .period(100000u64)
            .burst(500u64)
            .idle(0)
            .cpus("0-1")
            .mems("0")
            .build()
            .unwrap();
        for f in [
            "cpu.weight",
            "cpu.max",
            "cpu.max.burst",
            "cpu.idle",
            "cpuset.cpus",
            "cpuset.mems",
        ] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        apply(d.path(), &c).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("cpu.weight", "39"),
                ("cpu.max", "50000 100000"),
                ("cpu.max.burst", "500"),
                ("cpu.idle", "0"),
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0"),
            ])
        );
        let rt = LinuxCpuBuilder::default()
            .realtime_runtime(1000)
            .build()
            .unwrap();
        assert!(matches!(
            apply(d.path(), &rt),
            Err(CgroupError::InvalidResource { .. })
        ));
    }

    #[test]
    fn stats_from_samples() {
        let d = fake_dir(&[(
            "cpu.stat",
            "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 5\nnr_throttled 1\nthrottled_usec 7\n",
        )]);
        let s = stats(d.path()).unwrap();
        assert_eq!(s.usage.total, 3_000_000);
        assert_eq!(s.usage.user, 2_000_000);
        assert_eq!(s.usage.kernel, 1_000_000);
        assert_eq!(
            s.throttling,
            Throttling {
                periods: 5,
                throttled_periods: 1,
                throttled_time: 7000
            }
        );
    }
}
