//! rdma controller (same `rdma.max` format on v1 and v2).

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::LinuxRdma;

use crate::error::CgroupError;
use crate::fsutil;

/// The `rdma.max` line for one device: `mlx5_0 hca_handle=2 hca_object=2000`.
pub(crate) fn line(device: &str, r: &LinuxRdma) -> Option<String> {
    let mut s = device.to_string();
    if let Some(h) = r.hca_handles() {
        s.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = r.hca_objects() {
        s.push_str(&format!(" hca_object={o}"));
    }
    (s.len() > device.len()).then_some(s)
}

/// Writes one line per device to `rdma.max`, in device name order.
pub(crate) fn apply(dir: &Path, rdma: &HashMap<String, LinuxRdma>) -> Result<(), CgroupError> {
    let mut devs: Vec<&String> = rdma.keys().collect();
    devs.sort();
    for d in devs {
        if d.is_empty() || d.contains(char::is_whitespace) {
            return Err(CgroupError::invalid(
                "rdma",
                format!("bad device name {d:?}"),
            ));
        }
        if let Some(l) = line(d, &rdma[d]) {
            fsutil::write(dir, "rdma.max", l)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};
    use oci_spec::runtime::LinuxRdmaBuilder;

    #[test]
    fn lines() {
        let d = fake_dir(&[("rdma.max", "")]);
        let mut m = HashMap::new();
        m.insert(
            "mlx5_1".to_string(),
            LinuxRdmaBuilder::default()
                .hca_objects(1000u32)
                .build()
                .unwrap(),
        );
        m.insert(
            "mlx5_0".to_string(),
            LinuxRdmaBuilder::default()
                .hca_handles(2u32)
                .hca_objects(2000u32)
                .build()
                .unwrap(),
        );
        m.insert(
            "mlx5_2".to_string(),
            LinuxRdmaBuilder::default().build().unwrap(),
        );
        apply(d.path(), &m).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("rdma.max", "mlx5_0 hca_handle=2 hca_object=2000"),
                ("rdma.max", "mlx5_1 hca_object=1000"),
            ])
        );
    }
}
