//! Resource usage statistics, shaped like runc's `events --stats` JSON.

use std::collections::BTreeMap;

use serde::Serialize;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Statistics of a container cgroup; `serde_json::to_string` gives the `data` object of
/// `runc events --stats`.
///
/// ```
/// let s = berth_cgroups::Stats::default();
/// let v = serde_json::to_value(&s).unwrap();
/// assert!(v["memory"]["usage"]["limit"].is_u64());
/// ```
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU accounting and throttling.
    pub cpu: Cpu,
    /// Memory accounting.
    pub memory: Memory,
    /// Process counts.
    pub pids: Pids,
    /// Block I/O accounting.
    pub blkio: Blkio,
    /// Huge page usage per page size (e.g. `2MB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// CPU statistics.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// Time consumed.
    pub usage: CpuUsage,
    /// CFS throttling.
    pub throttling: Throttling,
}

/// CPU time consumed, in nanoseconds.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    /// CPU time per CPU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Kernel time per CPU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// User time per CPU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Time in kernel mode.
    pub kernel: u64,
    /// Time in user mode.
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Total time throttled, in nanoseconds.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// Memory statistics.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Page cache bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory usage.
    pub usage: MemoryEntry,
    /// Swap usage (v1: memory+swap as the kernel accounts it; v2: swap alone).
    pub swap: MemoryEntry,
    /// Kernel memory (v1 only).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffers (v1 only).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// The raw `memory.stat` keys.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// One memory counter.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryEntry {
    /// The limit (`u64::MAX` when unlimited).
    pub limit: u64,
    /// Current usage.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How many times the limit was hit.
    pub failcnt: u64,
}

/// Process counts.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Pids {
    /// Processes and threads in the cgroup.
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// The limit (0 when unlimited, like runc).
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// One blkio counter of one device.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    /// Device major number.
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor number.
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// Operation (`Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`), empty for plain
    /// counters.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The value.
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Block I/O statistics (v2 `io.stat` is mapped onto the first two lists, like runc).
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Blkio {
    /// Bytes transferred.
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations done.
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// Operations queued.
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// Service time.
    #[serde(
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// Wait time.
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// Merged operations.
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// Time with I/O in flight.
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    /// Sectors transferred.
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// Huge page usage of one page size.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Hugetlb {
    /// Bytes in use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak bytes (v1 only).
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How many allocations failed at the limit.
    pub failcnt: u64,
}
