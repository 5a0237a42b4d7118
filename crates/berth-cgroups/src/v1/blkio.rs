//! v1 blkio controller (CFQ or BFQ weights, throttling) and its statistics.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::error::CgroupError;
use crate::fsutil;
use crate::stats::{Blkio, BlkioEntry};

/// Applies weights and throttles. Weights go to `blkio.weight` (CFQ) or, when only BFQ is
/// there, `blkio.bfq.weight`; leaf weights exist only with CFQ and are skipped with a
/// warning otherwise.
pub(crate) fn apply(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let bfq = !dir.join("blkio.weight").exists() && dir.join("blkio.bfq.weight").exists();
    let (weight_file, weight_dev_file) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        fsutil::write(dir, weight_file, w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        if dir.join("blkio.leaf_weight").exists() {
            fsutil::write(dir, "blkio.leaf_weight", w.to_string())?;
        } else {
            tracing::warn!("blockIO.leafWeight ignored: the kernel has no blkio.leaf_weight");
        }
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight().filter(|w| *w != 0) {
            fsutil::write(
                dir,
                weight_dev_file,
                format!("{}:{} {}", wd.major(), wd.minor(), w),
            )?;
        }
        if let Some(w) = wd.leaf_weight().filter(|w| *w != 0) {
            if dir.join("blkio.leaf_weight_device").exists() {
                fsutil::write(
                    dir,
                    "blkio.leaf_weight_device",
                    format!("{}:{} {}", wd.major(), wd.minor(), w),
                )?;
            } else {
                tracing::warn!(
                    "blockIO.weightDevice.leafWeight ignored: no blkio.leaf_weight_device"
                );
            }
        }
    }
    let throttles: [(&Option<Vec<LinuxThrottleDevice>>, &str); 4] = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    for (list, file) in throttles {
        for t in list.iter().flatten() {
            fsutil::write(
                dir,
                file,
                format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

/// Parses a v1 blkio stat file: `maj:min Op value` lines (and a final `Total value`).
pub(crate) fn parse_entries(content: &str) -> Vec<BlkioEntry> {
    content
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, op, value) = match f.as_slice() {
                [dev, op, v] => (*dev, op.to_string(), *v),
                [dev, v] if dev.contains(':') => (*dev, String::new(), *v),
                _ => return None,
            };
            let (ma, mi) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                op,
                value: v_parse(value)?,
            })
        })
        .collect()
}

fn v_parse(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// Reads the recursive blkio statistics: CFQ's files when the kernel has them, BFQ's
/// otherwise, and the throttle layer's as the last resort (like runc).
pub(crate) fn stats(dir: &Path) -> Result<Blkio, CgroupError> {
    let read = |f: &str| -> Result<Vec<BlkioEntry>, CgroupError> {
        Ok(parse_entries(
            &fsutil::read_opt(dir, f)?.unwrap_or_default(),
        ))
    };
    let cfq = read("blkio.io_service_bytes_recursive")?;
    if !cfq.is_empty() {
        return Ok(Blkio {
            io_service_bytes_recursive: cfq,
            io_serviced_recursive: read("blkio.io_serviced_recursive")?,
            io_queued_recursive: read("blkio.io_queued_recursive")?,
            io_service_time_recursive: read("blkio.io_service_time_recursive")?,
            io_wait_time_recursive: read("blkio.io_wait_time_recursive")?,
            io_merged_recursive: read("blkio.io_merged_recursive")?,
            io_time_recursive: read("blkio.time_recursive")?,
            sectors_recursive: read("blkio.sectors_recursive")?,
        });
    }
    let bfq = read("blkio.bfq.io_service_bytes_recursive")?;
    if !bfq.is_empty() {
        return Ok(Blkio {
            io_service_bytes_recursive: bfq,
            io_serviced_recursive: read("blkio.bfq.io_serviced_recursive")?,
            ..Blkio::default()
        });
    }
    Ok(Blkio {
        io_service_bytes_recursive: read("blkio.throttle.io_service_bytes_recursive")?,
        io_serviced_recursive: read("blkio.throttle.io_serviced_recursive")?,
        ..Blkio::default()
    })
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
            .leaf_weight(300u16)
            .weight_device(vec![LinuxWeightDeviceBuilder::default()
                .major(8)
                .minor(16)
                .weight(700u16)
                .leaf_weight(200u16)
                .build()
                .unwrap()])
            .throttle_read_bps_device(vec![t(1000)])
            .throttle_write_bps_device(vec![t(2000)])
            .throttle_read_iops_device(vec![t(30)])
            .throttle_write_iops_device(vec![t(40)])
            .build()
            .unwrap()
    }

    const THROTTLE: &[(&str, &str)] = &[
        ("blkio.throttle.read_bps_device", ""),
        ("blkio.throttle.write_bps_device", ""),
        ("blkio.throttle.read_iops_device", ""),
        ("blkio.throttle.write_iops_device", ""),
    ];

    #[test]
    fn cfq() {
        let mut files = THROTTLE.to_vec();
        files.extend([
            ("blkio.weight", ""),
            ("blkio.leaf_weight", ""),
            ("blkio.weight_device", ""),
            ("blkio.leaf_weight_device", ""),
        ]);
        let d = fake_dir(&files);
        apply(d.path(), &spec()).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("blkio.weight", "500"),
                ("blkio.leaf_weight", "300"),
                ("blkio.weight_device", "8:16 700"),
                ("blkio.leaf_weight_device", "8:16 200"),
                ("blkio.throttle.read_bps_device", "8:0 1000"),
                ("blkio.throttle.write_bps_device", "8:0 2000"),
                ("blkio.throttle.read_iops_device", "8:0 30"),
                ("blkio.throttle.write_iops_device", "8:0 40"),
            ])
        );
    }

    #[test]
    fn bfq_without_leaf_weights() {
        let mut files = THROTTLE.to_vec();
        files.extend([("blkio.bfq.weight", ""), ("blkio.bfq.weight_device", "")]);
        let d = fake_dir(&files);
        apply(d.path(), &spec()).unwrap();
        let w = take_writes(d.path());
        assert_eq!(
            &w[..2],
            &pairs(&[
                ("blkio.bfq.weight", "500"),
                ("blkio.bfq.weight_device", "8:16 700")
            ])[..]
        );
        assert_eq!(w.len(), 6);
    }

    #[test]
    fn stats_from_samples() {
        let d = fake_dir(&[
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Total 12288\nTotal 12288\n",
            ),
            ("blkio.throttle.io_serviced_recursive", "8:0 Read 1\n8:0 Write 2\nTotal 3\n"),
            ("blkio.bfq.io_service_bytes_recursive", "Total 0\n"),
        ]);
        let s = stats(d.path()).unwrap();
        assert_eq!(s.io_service_bytes_recursive.len(), 5);
        assert_eq!(
            s.io_service_bytes_recursive[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 8192
            }
        );
        assert_eq!(s.io_serviced_recursive.len(), 2);
    }
}
