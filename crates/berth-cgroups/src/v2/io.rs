//! v2 io controller.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::{Blkio, BlkioEntry};

/// runc's conversion of a blkio weight [10, 1000] to io.weight [1, 10000].
pub fn blkio_weight_to_io_weight(w: u64) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (w.saturating_sub(10)) * 9999 / 990
}

/// Applies weights (`io.bfq.weight` as given when BFQ is there, else `io.weight` converted)
/// and throttles (`io.max`).
pub(crate) fn apply(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if bfq {
            fsutil::write(dir, "io.bfq.weight", w.to_string())?;
        } else {
            fsutil::write(
                dir,
                "io.weight",
                blkio_weight_to_io_weight(w.into()).to_string(),
            )?;
        }
    }
    if b.leaf_weight().is_some() {
        tracing::warn!("blockIO.leafWeight has no cgroup v2 equivalent, ignored");
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight().filter(|w| *w != 0) {
            if bfq {
                fsutil::write(
                    dir,
                    "io.bfq.weight",
                    format!("{}:{} {}", wd.major(), wd.minor(), w),
                )?;
            } else {
                // Per-device io.weight needs iocost enabled on the device (EOPNOTSUPP
                // otherwise); runc only applies weightDevice through BFQ. So do we.
                tracing::warn!(
                    "blockIO.weightDevice {}:{} ignored: no BFQ (io.bfq.weight) on this cgroup",
                    wd.major(),
                    wd.minor()
                );
            }
        }
    }
    let throttles: [(&Option<Vec<LinuxThrottleDevice>>, &str); 4] = [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ];
    for (list, key) in throttles {
        for t in list.iter().flatten() {
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            fsutil::write(
                dir,
                "io.max",
                format!("{}:{} {key}={rate}", t.major(), t.minor()),
            )?;
        }
    }
    Ok(())
}

/// Maps `io.stat` onto runc's blkio lists: bytes (rbytes/wbytes/dbytes) and operations
/// (rios/wios/dios) as Read/Write/Discard entries.
pub(crate) fn parse_io_stat(content: &str) -> Blkio {
    let mut out = Blkio::default();
    for line in content.lines() {
        let mut it = line.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut out.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut out.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut out.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut out.io_serviced_recursive, "Read"),
                "wios" => (&mut out.io_serviced_recursive, "Write"),
                "dios" => (&mut out.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    out
}

/// Reads `io.stat`.
pub(crate) fn stats(dir: &Path) -> Result<Blkio, CgroupError> {
    Ok(parse_io_stat(
        &fsutil::read_opt(dir, "io.stat")?.unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    fn spec() -> LinuxBlockIo {
        let t = |rate: u64| {
            LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(0)
                .rate(rate)
                .build()
                .unwrap()
        };
        LinuxBlockIoBuilder::default()
            .weight(500u16)
            .leaf_weight(10u16)
            .weight_device(vec![LinuxWeightDeviceBuilder::default()
                .major(8)
                .minor(16)
                .weight(1000u16)
                .build()
                .unwrap()])
            .throttle_read_bps_device(vec![t(1000)])
            .throttle_write_bps_device(vec![t(2000)])
            .throttle_read_iops_device(vec![t(30)])
            .throttle_write_iops_device(vec![t(0)])
            .build()
            .unwrap()
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
    }

    #[test]
    fn io_weight_and_max() {
        let d = fake_dir(&[("io.weight", ""), ("io.max", "")]);
        apply(d.path(), &spec()).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("io.weight", "4950"),
                ("io.max", "8:0 rbps=1000"),
                ("io.max", "8:0 wbps=2000"),
                ("io.max", "8:0 riops=30"),
                ("io.max", "8:0 wiops=max"),
            ])
        );
    }

    #[test]
    fn bfq_weight_as_given() {
        let d = fake_dir(&[("io.bfq.weight", ""), ("io.weight", ""), ("io.max", "")]);
        apply(d.path(), &spec()).unwrap();
        let w = take_writes(d.path());
        assert_eq!(
            &w[..2],
            &pairs(&[("io.bfq.weight", "500"), ("io.bfq.weight", "8:16 1000")])[..]
        );
    }

    #[test]
    fn io_stat_parsing() {
        let s = parse_io_stat(
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n253:1 rbytes=1\n",
        );
        assert_eq!(s.io_service_bytes_recursive.len(), 4);
        assert_eq!(
            s.io_service_bytes_recursive[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 8192
            }
        );
        assert_eq!(s.io_serviced_recursive[0].value, 1);
        assert_eq!(s.io_service_bytes_recursive[3].major, 253);
    }
}
