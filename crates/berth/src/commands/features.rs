//! `berth features`: what this build of berth implements, in the runtime spec's features
//! format (`features.md`, runtime-spec 1.2 and later), like `runc features`.

use anyhow::Result;
use serde_json::{json, Value};

/// The hooks berth runs.
const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The namespaces berth can create and join.
const NAMESPACES: &[&str] = &[
    "cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time",
];

/// `berth features`: print the features JSON; the exit code.
pub fn run() -> Result<u8> {
    let mut out = serde_json::to_string_pretty(&features())?;
    out.push('\n');
    crate::output::stdout(out)?;
    Ok(0)
}

/// The features document.
fn features() -> Value {
    use berth_runtime::seccomp;

    let seccomp = if seccomp::enabled() {
        json!({
            "enabled": true,
            "actions": seccomp::supported_actions(),
            "operators": seccomp::supported_operators(),
            "archs": seccomp::supported_archs(),
            "knownFlags": seccomp::known_flags(),
            "supportedFlags": seccomp::supported_flags(),
        })
    } else {
        json!({"enabled": false})
    };
    json!({
        "ociVersionMin": berth_runtime::spec::OCI_VERSION_MIN,
        "ociVersionMax": berth_runtime::spec::OCI_VERSION_MAX,
        "hooks": HOOKS,
        "mountOptions": berth_runtime::rootfs::mount::supported_options(),
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": capabilities(),
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": false,
                "systemdUser": false,
                "rdma": true,
            },
            "seccomp": seccomp,
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "memoryPolicy": {
                "modes": berth_runtime::process::sched::MEMORY_POLICY_MODES,
                "flags": berth_runtime::process::sched::MEMORY_POLICY_FLAGS,
            },
            "mountExtensions": {"idmap": {"enabled": false}},
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.berth.version": env!("CARGO_PKG_VERSION"),
        },
    })
}

/// The capabilities the running kernel knows (up to `/proc/sys/kernel/cap_last_cap`), in
/// kernel order.
fn capabilities() -> Vec<String> {
    let mut caps: Vec<_> = caps::runtime::thread_all_supported().into_iter().collect();
    caps.sort_by_key(|c| c.index());
    caps.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_json_round_trips_with_the_required_keys() {
        let text = serde_json::to_string(&features()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["ociVersionMin"], "1.0.0");
        assert_eq!(v["ociVersionMax"], "1.3.0");
        assert_eq!(v["hooks"].as_array().unwrap().len(), 6);
        for key in [
            "namespaces",
            "capabilities",
            "cgroup",
            "seccomp",
            "apparmor",
            "selinux",
            "intelRdt",
            "memoryPolicy",
            "mountExtensions",
        ] {
            assert!(!v["linux"][key].is_null(), "linux.{key} missing");
        }
        let caps = v["linux"]["capabilities"].as_array().unwrap();
        assert_eq!(caps[0], "CAP_CHOWN");
        assert!(caps.contains(&json!("CAP_SYS_ADMIN")));
        let sc = &v["linux"]["seccomp"];
        assert_eq!(sc["enabled"], true);
        assert!(sc["actions"]
            .as_array()
            .unwrap()
            .contains(&json!("SCMP_ACT_NOTIFY")));
        assert!(sc["archs"]
            .as_array()
            .unwrap()
            .contains(&json!("SCMP_ARCH_X86_64")));
        assert_eq!(sc["knownFlags"].as_array().unwrap().len(), 4);
        assert_eq!(
            v["annotations"]["io.github.berth.version"],
            env!("CARGO_PKG_VERSION")
        );
        // The spec's own types accept the document.
        let typed: oci_spec::runtime::Features = serde_json::from_str(&text).unwrap();
        assert_eq!(typed.oci_version_max(), "1.3.0");
        // features-linux.md#memorypolicy: every mode and flag of config-linux.md is applied.
        let mp = typed
            .linux()
            .as_ref()
            .unwrap()
            .memory_policy()
            .as_ref()
            .unwrap();
        assert_eq!(mp.modes().as_ref().unwrap().len(), 7);
        assert_eq!(mp.flags().as_ref().unwrap().len(), 3);
    }

    #[test]
    fn listed_mount_options_are_exactly_the_applied_ones() {
        use berth_runtime::rootfs::mount::MountOptions;
        let v = features();
        let listed: Vec<&str> = v["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect();
        for opt in &listed {
            let o = MountOptions::parse(&[opt]).unwrap();
            assert!(
                o.data.is_empty(),
                "{opt} would be passed as filesystem data"
            );
        }
        // Implemented since issue 11 (runc 1.1 / crun options).
        for opt in [
            "tmpcopyup",
            "nosymfollow",
            "rro",
            "rnosuid",
            "rnoatime",
            "strictatime",
            "lazytime",
            "iversion",
            "rbind",
            "rslave",
        ] {
            assert!(listed.contains(&opt), "{opt} missing");
        }
        // Refused, so not listed.
        for opt in [
            "idmap",
            "ridmap",
            "mand",
            "rsync",
            "copy-symlink",
            "src-nofollow",
        ] {
            assert!(!listed.contains(&opt), "{opt} listed");
            assert!(MountOptions::parse(&[opt]).is_err(), "{opt} accepted");
        }
    }
}
