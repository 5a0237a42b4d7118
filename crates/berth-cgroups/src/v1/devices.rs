//! v1 devices controller: the spec's rules as `devices.allow`/`devices.deny` writes.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::CgroupError;
use crate::fsutil;

/// The v1 rule text of a spec rule (`c 1:3 rwm`), or None for rules v1 cannot express
/// (FIFOs).
pub(crate) fn rule_text(r: &LinuxDeviceCgroup) -> Option<String> {
    let t = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => return None,
    };
    let num = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    let access = r
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    Some(format!(
        "{t} {}:{} {access}",
        num(r.major()),
        num(r.minor())
    ))
}

/// Checks an access string (`r`, `w`, `m` only).
pub(crate) fn check_access(r: &LinuxDeviceCgroup) -> Result<(), CgroupError> {
    match r.access() {
        Some(a) if !a.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) => Err(CgroupError::invalid(
            "devices.access",
            format!("{a:?} is not made of r, w and m"),
        )),
        _ => Ok(()),
    }
}

/// Starts from deny-all (like runc) and applies the rules in the spec's order.
pub(crate) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    for r in rules {
        check_access(r)?;
    }
    fsutil::write(dir, "devices.deny", "a")?;
    for r in rules {
        let Some(text) = rule_text(r) else {
            tracing::warn!(rule = %r, "device rule for a FIFO cannot be expressed in cgroup v1, skipped");
            continue;
        };
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fsutil::write(dir, file, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fake_dir, pairs, take_writes};
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    pub(crate) fn rule(
        allow: bool,
        t: Option<LinuxDeviceType>,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access(acc);
        if let Some(t) = t {
            b = b.typ(t);
        }
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn deny_all_then_rules_in_order() {
        let d = fake_dir(&[("devices.allow", ""), ("devices.deny", "")]);
        let rules = vec![
            rule(false, None, None, None, "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some(136), None, "rw"),
            rule(true, Some(LinuxDeviceType::U), Some(5), Some(1), ""),
            rule(true, Some(LinuxDeviceType::P), None, None, "r"),
            rule(false, Some(LinuxDeviceType::B), Some(8), Some(-1), "m"),
        ];
        apply(d.path(), &rules).unwrap();
        assert_eq!(
            take_writes(d.path()),
            pairs(&[
                ("devices.deny", "a"),
                ("devices.deny", "a *:* rwm"),
                ("devices.allow", "c 1:3 rwm"),
                ("devices.allow", "c 136:* rw"),
                ("devices.allow", "c 5:1 rwm"),
                ("devices.deny", "b 8:* m"),
            ])
        );
    }

    #[test]
    fn bad_access_writes_nothing() {
        let d = fake_dir(&[("devices.allow", ""), ("devices.deny", "")]);
        assert!(apply(d.path(), &[rule(true, None, None, None, "rx")]).is_err());
        assert!(take_writes(d.path()).is_empty());
    }
}
