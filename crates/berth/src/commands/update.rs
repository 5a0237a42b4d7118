//! `berth update`: change a running container's resource limits.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_runtime::Container;
use clap::Args;
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
};

use crate::cli::GlobalOpts;

/// runc's `update` flags.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// A JSON file of linux.resources to apply (`-` for stdin); other flags are ignored.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix).
    #[arg(long, value_parser = parse_bytes)]
    pub memory: Option<i64>,
    /// Memory soft limit.
    #[arg(long, value_parser = parse_bytes)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit (-1 for unlimited).
    #[arg(long, value_parser = parse_bytes)]
    pub memory_swap: Option<i64>,
    /// Kernel memory limit (ignored, as by recent kernels).
    #[arg(long, value_parser = parse_bytes)]
    pub kernel_memory: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds.
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    /// CPU realtime period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use (`0-3`, `0,1`).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of pids (-1 for unlimited).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// The container id.
    pub id: String,
}

/// Parse a size like docker's `RAMInBytes`: `1024`, `64k`, `32m`, `1g`, `-1`.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    if n < 0.0 {
        return Err(format!("invalid size {s:?}"));
    }
    Ok((n * mult as f64) as i64)
}

impl UpdateArgs {
    fn to_resources(&self) -> Result<LinuxResources> {
        if let Some(path) = &self.resources {
            let mut text = String::new();
            if path.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?;
            }
            return serde_json::from_slice(text.as_bytes())
                .with_context(|| format!("parse resources from {}", path.display()));
        }
        let mut r = LinuxResources::default();
        if self.memory.is_some() || self.memory_reservation.is_some() || self.memory_swap.is_some()
        {
            let mut m = LinuxMemoryBuilder::default();
            if let Some(v) = self.memory {
                m = m.limit(v);
            }
            if let Some(v) = self.memory_reservation {
                m = m.reservation(v);
            }
            if let Some(v) = self.memory_swap {
                m = m.swap(v);
            }
            r.set_memory(Some(m.build()?));
        }
        if self.kernel_memory.is_some() {
            tracing::warn!("--kernel-memory is ignored (kernel memory is not limited separately)");
        }
        let cpu_given = self.cpu_shares.is_some()
            || self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpu_rt_period.is_some()
            || self.cpu_rt_runtime.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some();
        if cpu_given {
            let mut c = LinuxCpuBuilder::default();
            if let Some(v) = self.cpu_shares {
                c = c.shares(v);
            }
            if let Some(v) = self.cpu_period {
                c = c.period(v);
            }
            if let Some(v) = self.cpu_quota {
                c = c.quota(v);
            }
            if let Some(v) = self.cpu_rt_period {
                c = c.realtime_period(v);
            }
            if let Some(v) = self.cpu_rt_runtime {
                c = c.realtime_runtime(v);
            }
            if let Some(v) = &self.cpuset_cpus {
                c = c.cpus(v.clone());
            }
            if let Some(v) = &self.cpuset_mems {
                c = c.mems(v.clone());
            }
            r.set_cpu(Some(c.build()?));
        }
        if let Some(v) = self.pids_limit {
            r.set_pids(Some(LinuxPidsBuilder::default().limit(v).build()?));
        }
        if let Some(v) = self.blkio_weight {
            r.set_block_io(Some(LinuxBlockIoBuilder::default().weight(v).build()?));
        }
        Ok(r)
    }
}

/// `berth update`.
pub fn run(g: &GlobalOpts, a: UpdateArgs) -> Result<u8> {
    let resources = a.to_resources()?;
    let c = Container::load(&g.root(), &a.id)?;
    if c.status() == berth_runtime::Status::Stopped {
        bail!("cannot update container {}: container is stopped", a.id);
    }
    c.cgroup()?.apply(&resources)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("32m").unwrap(), 32 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("64kb").unwrap(), 64 << 10);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("lots").is_err());
    }
}
