//! Reading what the probe reports.
//!
//! The probe (`runtime-tests/probe`, installed at [`PROBE_PATH`](crate::PROBE_PATH) by
//! [`Bundle::with_probe`](crate::Bundle::with_probe)) prints one JSON object on stdout. With no
//! arguments it reports everything it sees; sub-commands probe single things:
//!
//! | invocation | reports |
//! |---|---|
//! | `probe` | `uid gid euid egid groups umask caps{CapInh,CapPrm,CapEff,CapBnd,CapAmb} no_new_privs seccomp rlimits pid ppid hostname domainname cwd env mountinfo namespaces oom_score_adj cgroup fds` |
//! | `probe sysctl NAME...` | `{"sysctl": {NAME: value-or-null}}` |
//! | `probe stat PATH` | `{"ok", "errno", "mode", "uid", "gid", "size", "rdev_major", "rdev_minor", "kind"}` |
//! | `probe open PATH r\|w\|rw` | `{"ok", "errno"}` |
//! | `probe write PATH TEXT` | `{"ok", "errno"}` |
//! | `probe read PATH` | `{"ok", "errno", "data"}` |
//! | `probe mkdir PATH` | `{"ok", "errno"}` |
//! | `probe syscall NAME` | `{"ok", "errno"}` (`getcwd`, `mkdir`, `chmod`, `setns`, ...) |
//! | `probe personality` | `{"personality"}` |
//! | `probe sleep SECS` | reports nothing, sleeps |
//! | `probe exit CODE` | exits with CODE |
//! | `probe stdin` | `{"stdin": "..."}` |

use serde_json::Value;

/// The capability names indexed by bit number (capability.h), to decode `Cap*` masks.
pub const CAP_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Parses the probe's stdout (the last line that is a JSON object, so stray output before it
/// does not matter).
///
/// ```
/// let v = runtime_tests::probe::parse("noise\n{\"uid\": 0}\n").unwrap();
/// assert_eq!(v["uid"], 0);
/// ```
pub fn parse(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
}

/// Decodes a hex capability mask as found in `/proc/PID/status` into names, sorted.
///
/// ```
/// let caps = runtime_tests::probe::decode_caps("0000000000000020");
/// assert_eq!(caps, vec!["CAP_KILL".to_string()]);
/// ```
pub fn decode_caps(hex: &str) -> Vec<String> {
    let mask = u64::from_str_radix(hex.trim(), 16).unwrap_or(0);
    let mut v: Vec<String> = (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            CAP_NAMES
                .get(b)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("CAP_{b}"))
        })
        .collect();
    v.sort();
    v
}

/// The decoded capability set `set` (`"CapEff"`, `"CapBnd"`, ...) of a full probe report.
pub fn caps(report: &Value, set: &str) -> Vec<String> {
    decode_caps(report["caps"][set].as_str().unwrap_or("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_default_caps() {
        // CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29)
        let mask = (1u64 << 5) | (1 << 10) | (1 << 29);
        let mut want: Vec<String> = crate::DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(decode_caps(&format!("{mask:016x}")), want);
    }

    #[test]
    fn parse_takes_last_json_line() {
        assert_eq!(parse("{\"a\":1}\n{\"a\":2}\n").unwrap()["a"], 2);
        assert!(parse("nothing").is_none());
    }
}
