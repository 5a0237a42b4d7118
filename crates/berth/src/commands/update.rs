//! `berth update`: change a running container's resource limits.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_runtime::ContainerRef;
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
    /// Memory limit (bytes, or with k/m/g suffix; -1 for unlimited).
    #[arg(long, value_parser = parse_bytes, allow_negative_numbers = true)]
    pub memory: Option<i64>,
    /// Memory soft limit (-1 for unlimited).
    #[arg(long, value_parser = parse_bytes, allow_negative_numbers = true)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit (-1 for unlimited).
    #[arg(long, value_parser = parse_bytes, allow_negative_numbers = true)]
    pub memory_swap: Option<i64>,
    /// Kernel memory limit (ignored, as by recent kernels).
    #[arg(long, value_parser = parse_bytes, allow_negative_numbers = true)]
    pub kernel_memory: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1 for unlimited).
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU realtime period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds (-1 for unlimited).
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use (`0-3`, `0,1`).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of pids (-1 for unlimited).
    #[arg(long, allow_negative_numbers = true)]
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
    let bytes = n * mult as f64;
    // `as` would saturate (and NaN would read as 0): a size must fit the kernel's int64.
    if !bytes.is_finite() || bytes < 0.0 || bytes >= i64::MAX as f64 {
        return Err(format!(
            "size {s:?} is outside 0..={} bytes (or -1 for unlimited)",
            i64::MAX
        ));
    }
    Ok(bytes as i64)
}

/// The flag that sets a `linux.resources` field, for messages.
fn flag_of(path: &str) -> Option<&'static str> {
    let field = path.strip_prefix("linux.resources.")?;
    Some(match field {
        "memory.limit" => "--memory",
        "memory.reservation" => "--memory-reservation",
        "memory.swap" => "--memory-swap",
        "cpu.shares" => "--cpu-shares",
        "cpu.period" => "--cpu-period",
        "cpu.quota" => "--cpu-quota",
        "cpu.realtimePeriod" => "--cpu-rt-period",
        "cpu.realtimeRuntime" => "--cpu-rt-runtime",
        "cpu.cpus" => "--cpuset-cpus",
        "cpu.mems" => "--cpuset-mems",
        "pids.limit" => "--pids-limit",
        "blockIO.weight" => "--blkio-weight",
        _ => return None,
    })
}

/// Check `r` with the rules `create` applies to `linux.resources` in config.json (the same
/// ranges, from the same validator), naming the flag (or the field of `--resources FILE`).
fn check_resources(r: &LinuxResources, file: Option<&std::path::Path>) -> Result<()> {
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "linux": {"resources": r},
    });
    let first = berth_runtime::validate::validate_value(&config, None)
        .into_iter()
        .find(|p| {
            p.severity == berth_runtime::validate::Severity::Error
                && p.path.starts_with("linux.resources")
        });
    let Some(p) = first else {
        return Ok(());
    };
    match (file, flag_of(&p.path)) {
        (Some(f), _) => bail!("{}: {}: {} ({})", f.display(), p.path, p.message, p.rule),
        (None, Some(flag)) => bail!("{flag}: {} ({})", p.message, p.rule),
        (None, None) => bail!("{}: {} ({})", p.path, p.message, p.rule),
    }
}

impl UpdateArgs {
    fn to_resources(&self) -> Result<LinuxResources> {
        if let Some(path) = &self.resources {
            let mut text = String::new();
            if path.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                let bytes = berth_runtime::spec::read_config_file(path)
                    .with_context(|| format!("read {}", path.display()))?;
                text = String::from_utf8(bytes)
                    .with_context(|| format!("read {}: not UTF-8", path.display()))?;
            }
            let r: LinuxResources = serde_json::from_slice(text.as_bytes())
                .with_context(|| format!("parse resources from {}", path.display()))?;
            check_resources(&r, Some(path))?;
            return Ok(r);
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
        check_resources(&r, None)?;
        Ok(r)
    }
}

/// `berth update`.
pub fn run(g: &GlobalOpts, a: UpdateArgs) -> Result<u8> {
    let resources = a.to_resources()?;
    // Applied to the cgroup and saved in the container's state, in one lock; a stopped
    // container is refused ("cannot update container ID: container is stopped").
    ContainerRef::new(g.root(), &a.id).update(&resources)?;
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
        assert!(parse_bytes("9999999999t").is_err());
        assert!(parse_bytes("nan").is_err());
        assert!(parse_bytes("inf").is_err());
        assert!(parse_bytes("-2").is_err());
    }

    /// runc takes `-1` (unlimited) as the value of a flag, not as a flag of its own.
    #[test]
    fn minus_one_is_a_value() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "berth",
            "update",
            "--memory",
            "-1",
            "--memory-reservation",
            "-1",
            "--memory-swap",
            "-1",
            "--cpu-quota",
            "-1",
            "--cpu-rt-runtime",
            "-1",
            "--pids-limit",
            "-1",
            "c1",
        ])
        .unwrap();
        let crate::cli::Command::Update(a) = cli.command else {
            panic!("not update: {:?}", cli.command);
        };
        assert_eq!(a.memory, Some(-1));
        assert_eq!(a.memory_reservation, Some(-1));
        assert_eq!(a.memory_swap, Some(-1));
        assert_eq!(a.cpu_quota, Some(-1));
        assert_eq!(a.cpu_rt_runtime, Some(-1));
        assert_eq!(a.pids_limit, Some(-1));
        assert_eq!(a.id, "c1");
        // Other negative sizes are still refused, naming the value.
        let e = crate::cli::Cli::try_parse_from(["berth", "update", "--memory", "-5", "c1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("-5"), "{e}");
    }
}
