//! What berth cannot apply: properties of a valid configuration that this build of berth, or
//! this host, does not implement.
//!
//! runtime.md#create: "If the runtime cannot apply a property as specified in the
//! configuration, it MUST generate an error and a new container MUST NOT be created." So each
//! of these is an [`Severity::Error`](super::Severity) for `create`; `berth validate` shows
//! them as warnings (the bundle itself is valid). runc 1.1 and crun refuse an AppArmor profile
//! on a host without AppArmor in the same way; where the spec leaves room (personality flags,
//! which "currently" have no values) runc's warning is followed.

use std::path::Path;

use serde_json::{Map, Value};

use super::{join, obj_of, str_of, Checker};

/// The security modules of the host that a configuration can ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Host {
    /// AppArmor is enabled: `/sys/kernel/security/apparmor` exists and
    /// `/sys/module/apparmor/parameters/enabled` starts with `Y` (runc's test).
    pub apparmor: bool,
    /// SELinux is enabled: selinuxfs is mounted at `/sys/fs/selinux`.
    pub selinux: bool,
}

impl Host {
    /// Look at the running host.
    pub fn detect() -> Host {
        let apparmor = Path::new("/sys/kernel/security/apparmor").exists()
            && std::fs::read("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|b| b.first() == Some(&b'Y'));
        let selinux = Path::new("/sys/fs/selinux/enforce").exists();
        Host { apparmor, selinux }
    }
}

const CREATE_RULE: &str = "runtime.md#create: a property that cannot be applied as specified MUST be an error and no container is created";

pub(super) fn check(c: &mut Checker, doc: &Map<String, Value>, host: Host) {
    if let Some(p) = obj_of(doc, "process") {
        process(c, p, "process", host);
    }
    let Some(l) = obj_of(doc, "linux") else {
        return;
    };
    if non_empty_str(l, "mountLabel") {
        selinux(c, "linux.mountLabel", host);
    }
    if l.get("intelRdt").is_some_and(|v| !v.is_null()) {
        c.error(
            "linux.intelRdt",
            "berth does not implement Intel RDT (resctrl): the container would run without it",
            CREATE_RULE,
        );
    }
    if obj_of(l, "netDevices").is_some_and(|m| !m.is_empty()) {
        c.error(
            "linux.netDevices",
            "berth does not move network devices into the container",
            CREATE_RULE,
        );
    }
    if let Some(flags) = obj_of(l, "personality")
        .and_then(|p| p.get("flags"))
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
    {
        c.warn(
            "linux.personality.flags",
            format!("{} flag(s) ignored: no personality flags are supported", flags.len()),
            "config-linux.md#personality: currently no flag values are supported (runc ignores them with a warning)",
        );
    }
}

/// The properties of a `process` object (at JSON path `at`) that berth cannot apply.
pub(super) fn process(c: &mut Checker, p: &Map<String, Value>, at: &str, host: Host) {
    if non_empty_str(p, "apparmorProfile") {
        let path = join(at, "apparmorProfile");
        if host.apparmor {
            c.error(&path, "berth does not apply AppArmor profiles", CREATE_RULE);
        } else {
            c.error(
                &path,
                "AppArmor is not enabled on this host (/sys/module/apparmor/parameters/enabled), so the profile cannot be applied",
                "runtime.md#create: a property that cannot be applied MUST be an error (runc and crun refuse an AppArmor profile on a host without AppArmor)",
            );
        }
    }
    if non_empty_str(p, "selinuxLabel") {
        selinux(c, &join(at, "selinuxLabel"), host);
    }
    // Linux has never merged SCHED_ISO (it is a reserved number): sched_setattr(2) refuses it.
    if obj_of(p, "scheduler").and_then(|s| str_of(s, "policy")) == Some("SCHED_ISO") {
        c.error(
            &join(&join(at, "scheduler"), "policy"),
            "SCHED_ISO is not implemented by Linux (sched_setattr(2) refuses it), so the process cannot get it",
            CREATE_RULE,
        );
    }
}

fn selinux(c: &mut Checker, path: &str, host: Host) {
    if host.selinux {
        c.error(path, "berth does not apply SELinux labels", CREATE_RULE);
    } else {
        c.error(
            path,
            "SELinux is not enabled on this host (no selinuxfs at /sys/fs/selinux), so the label cannot be applied",
            "runtime.md#create: a property that cannot be applied MUST be an error (runc refuses SELinux labels on a host without SELinux)",
        );
    }
}

fn non_empty_str(obj: &Map<String, Value>, name: &str) -> bool {
    str_of(obj, name).is_some_and(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validate::tests::{base, has};
    use crate::validate::{unsupported_on, Severity};

    fn lines(host: Host, edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut v = base();
        edit(&mut v);
        unsupported_on(&v, host)
            .iter()
            .map(|p| format!("{}: {p}", p.severity))
            .collect()
    }

    #[test]
    fn security_labels_need_their_module() {
        let none = Host::default();
        let l = lines(none, |v| {
            v["process"]["apparmorProfile"] = json!("docker-default");
            v["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
            v["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
        });
        has(
            &l,
            "error: process.apparmorProfile: AppArmor is not enabled on this host",
        );
        has(
            &l,
            "error: process.selinuxLabel: SELinux is not enabled on this host",
        );
        has(
            &l,
            "error: linux.mountLabel: SELinux is not enabled on this host",
        );
        let all = Host {
            apparmor: true,
            selinux: true,
        };
        let l = lines(all, |v| v["process"]["apparmorProfile"] = json!("p"));
        has(
            &l,
            "error: process.apparmorProfile: berth does not apply AppArmor profiles",
        );
        // Empty values ask for nothing.
        assert!(lines(none, |v| {
            v["process"]["apparmorProfile"] = json!("");
            v["linux"]["mountLabel"] = json!("");
        })
        .is_empty());
    }

    #[test]
    fn unimplemented_fields_are_named() {
        let l = lines(Host::default(), |v| {
            v["linux"]["intelRdt"] = json!({"closID": "x"});
            v["linux"]["netDevices"] = json!({"eth1": {"name": "eth0"}});
            v["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["X"]});
            v["process"]["scheduler"] = json!({"policy": "SCHED_ISO"});
        });
        for p in ["linux.intelRdt", "linux.netDevices"] {
            has(&l, &format!("error: {p}: berth does not"));
        }
        has(
            &l,
            "error: process.scheduler.policy: SCHED_ISO is not implemented by Linux",
        );
        has(&l, "warning: linux.personality.flags: 1 flag(s) ignored");
        assert!(lines(Host::default(), |_| {}).is_empty());
    }

    #[test]
    fn scheduling_fields_are_applied_not_refused() {
        // process.ioPriority, scheduler, execCPUAffinity and linux.memoryPolicy are set by
        // process::sched; only values the kernel would refuse are problems (validate).
        assert!(lines(Host::default(), |v| {
            v["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 1});
            v["process"]["scheduler"] = json!({"policy": "SCHED_BATCH"});
            v["process"]["execCPUAffinity"] = json!({"initial": "0"});
            v["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
        })
        .is_empty());
    }

    #[test]
    fn detect_reads_the_host() {
        // Whatever the host has, detection must not fail; this machine has neither module.
        let h = Host::detect();
        assert_eq!(
            h.apparmor,
            std::fs::read("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|b| b.starts_with(b"Y"))
                && Path::new("/sys/kernel/security/apparmor").exists()
        );
        let _ = Severity::Error;
    }
}
