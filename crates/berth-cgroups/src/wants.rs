//! What a spec's `linux.resources` asks for, controller by controller: the one predicate
//! that the v1 and v2 writers (to check every controller they need before writing anything)
//! and the runtime (to refuse limits a rootless caller cannot apply) share.

use oci_spec::runtime::LinuxResources;

/// What `linux.resources` asks of each controller. A value of 0 or an empty list asks for
/// nothing (the spec's "unset"), except where noted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    /// `cpu.cpus` or `cpu.mems` (cpuset).
    pub cpuset: bool,
    /// `cpu.shares`, `quota`, `period` (non-zero), `burst` or `idle` (cpu).
    pub cpu: bool,
    /// `cpu.realtimePeriod` or `realtimeRuntime` (non-zero): cgroup v1's cpu controller only.
    pub cpu_realtime: bool,
    /// A `memory` section, whatever it sets (v1's memory controller takes every field).
    pub memory: bool,
    /// `memory.limit`, `swap` or `reservation` (non-zero): what needs v2's memory controller.
    pub memory_limits: bool,
    /// `pids.limit` (non-zero).
    pub pids: bool,
    /// A `blockIO` section (blkio, v2's io).
    pub block_io: bool,
    /// `hugepageLimits` (hugetlb).
    pub hugetlb: bool,
    /// `network.classID` (v1's net_cls).
    pub net_cls: bool,
    /// `network.priorities` (v1's net_prio).
    pub net_prio: bool,
    /// `rdma` (rdma).
    pub rdma: bool,
    /// `devices` rules (device access, not a limit).
    pub devices: bool,
    /// `unified` (v2 files by name).
    pub unified: bool,
    /// Sections present that [`any_limit`](Self::any_limit) counts although they may set
    /// nothing: `cpu`, `pids`, `network`.
    sections: bool,
}

impl Wants {
    /// Read `res`.
    pub fn of(res: &LinuxResources) -> Wants {
        let cpu = res.cpu().as_ref();
        let nonzero = |v: Option<i64>| v.is_some_and(|v| v != 0);
        let nonzero_u = |v: Option<u64>| v.is_some_and(|v| v != 0);
        let net = res.network().as_ref();
        Wants {
            cpuset: cpu.is_some_and(|c| {
                c.cpus().as_deref().is_some_and(|s| !s.is_empty())
                    || c.mems().as_deref().is_some_and(|s| !s.is_empty())
            }),
            cpu: cpu.is_some_and(|c| {
                nonzero_u(c.shares())
                    || nonzero(c.quota())
                    || nonzero_u(c.period())
                    || c.burst().is_some()
                    || c.idle().is_some()
            }),
            cpu_realtime: cpu
                .is_some_and(|c| nonzero_u(c.realtime_period()) || nonzero(c.realtime_runtime())),
            memory: res.memory().is_some(),
            memory_limits: res.memory().as_ref().is_some_and(|m| {
                nonzero(m.limit()) || nonzero(m.swap()) || nonzero(m.reservation())
            }),
            pids: res.pids().is_some_and(|p| p.limit() != 0),
            block_io: res.block_io().is_some(),
            hugetlb: res
                .hugepage_limits()
                .as_ref()
                .is_some_and(|h| !h.is_empty()),
            net_cls: net.is_some_and(|n| n.class_id().is_some()),
            net_prio: net
                .and_then(|n| n.priorities().as_ref())
                .is_some_and(|p| !p.is_empty()),
            rdma: res.rdma().as_ref().is_some_and(|r| !r.is_empty()),
            devices: res.devices().as_ref().is_some_and(|d| !d.is_empty()),
            unified: res.unified().as_ref().is_some_and(|u| !u.is_empty()),
            sections: cpu.is_some() || res.pids().is_some() || net.is_some(),
        }
    }

    /// Whether anything but device rules is asked for: resources that need a cgroup of the
    /// container's own (a rootless caller without one must refuse them).
    pub fn any_limit(&self) -> bool {
        self.sections
            || self.cpuset
            || self.cpu
            || self.cpu_realtime
            || self.memory
            || self.pids
            || self.block_io
            || self.hugetlb
            || self.net_cls
            || self.net_prio
            || self.rdma
            || self.unified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn zero_values_ask_for_nothing_but_sections_count_as_limits() {
        let w = Wants::of(&res(serde_json::json!({
            "cpu": {"shares": 0, "quota": 0},
            "memory": {"limit": 0},
            "pids": {"limit": 0}
        })));
        assert!(!w.cpu && !w.pids && !w.memory_limits);
        assert!(w.memory, "a memory section is v1's memory controller");
        assert!(w.any_limit());
    }

    #[test]
    fn device_rules_alone_are_not_limits() {
        let w = Wants::of(&res(serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"}]
        })));
        assert!(w.devices);
        assert!(!w.any_limit());
        assert!(!Wants::of(&LinuxResources::default()).any_limit());
    }

    #[test]
    fn each_controller_is_seen() {
        let w = Wants::of(&res(serde_json::json!({
            "cpu": {"cpus": "0", "realtimeRuntime": 1000, "shares": 512},
            "memory": {"swap": 1048576},
            "pids": {"limit": 10},
            "blockIO": {"weight": 100},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            "network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 1}]},
            "rdma": {"mlx4_0": {"hcaHandles": 1}},
            "unified": {"memory.high": "max"}
        })));
        assert!(w.cpuset && w.cpu && w.cpu_realtime && w.memory && w.memory_limits);
        assert!(w.pids && w.block_io && w.hugetlb && w.net_cls && w.net_prio);
        assert!(w.rdma && w.unified && !w.devices);
    }
}
