//! The default runtime configuration, written once: what `berth spec` writes (like `runc
//! spec`, with a cgroup namespace) and what a bundle made from an image starts from
//! ([`crate::bundle::runtime_spec`] puts the image's command, user and environment in it).
//! It lives here, in the library both reach (the image library does not depend on the
//! runtime); runtime-tests keeps its own on purpose, as the runtime-agnostic suite.

use serde_json::{json, Value};

/// The capabilities of a container's process by default (runc's).
pub const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// `PATH` of a container's process when nothing says otherwise.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The default configuration with `ociVersion` `oci_version`: `sh` with a terminal, as root,
/// with runc's capabilities (every set, ambient included), `RLIMIT_NOFILE` 1024,
/// `noNewPrivileges`, a read-only `rootfs`, hostname `berth`, runc's mounts, masked and
/// read-only paths, all devices denied, and new pid, network, ipc, uts, mount and cgroup
/// namespaces.
///
/// ```
/// let spec = berth_image::default_spec::default_spec("1.2.0");
/// assert_eq!(spec["hostname"], "berth");
/// let _: oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
/// ```
pub fn default_spec(oci_version: &str) -> Value {
    let caps = json!(DEFAULT_CAPS);
    json!({
        "ociVersion": oci_version,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Turn a [`default_spec`] into `runc spec --rootless`'s: a user namespace mapping root to
/// `uid`/`gid`, no network namespace (there is no way to set one up) and no resources, `/sys`
/// bound from the host, no cgroup mount, and `/dev/pts` without `gid=5` (unmapped).
pub fn make_rootless(spec: &mut Value, uid: u32, gid: u32) {
    let linux = &mut spec["linux"];
    linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
    linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    linux["namespaces"] = json!([
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
        {"type": "cgroup"}, {"type": "user"}
    ]);
    if let Some(l) = linux.as_object_mut() {
        l.remove("resources");
    }
    let Some(mounts) = spec["mounts"].as_array_mut() else {
        return;
    };
    mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
    for m in mounts.iter_mut() {
        if m["destination"] == "/sys" {
            *m = json!({"destination": "/sys", "type": "none", "source": "/sys",
                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        }
        if m["destination"] == "/dev/pts" {
            m["options"] = json!([
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620"
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_parse() {
        let spec = default_spec("1.0.2");
        let parsed: oci_spec::runtime::Spec = serde_json::from_value(spec.clone()).unwrap();
        assert_eq!(parsed.version(), "1.0.2");
        let mut rootless = spec;
        make_rootless(&mut rootless, 1000, 1000);
        let parsed: oci_spec::runtime::Spec = serde_json::from_value(rootless.clone()).unwrap();
        let linux = parsed.linux().as_ref().unwrap();
        assert_eq!(linux.uid_mappings().as_ref().unwrap()[0].host_id(), 1000);
        assert!(linux.resources().is_none());
        assert!(!rootless["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/sys/fs/cgroup"));
    }
}
