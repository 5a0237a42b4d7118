//! How the container's processes are scheduled: `process.ioPriority`, `process.scheduler`,
//! `process.execCPUAffinity` (config.md#linux-process) and `linux.memoryPolicy`
//! (config-linux.md#memory-policy).
//!
//! Everything here acts on the calling process (the container child, single-threaded, before
//! it execs the user's program) and is inherited by what it forks and kept across `execve`:
//!
//! - the memory policy, the I/O priority and the scheduler are set by [`apply`], from
//!   [`super::init::prepare_process`], for init and for every `exec`, while the process still
//!   has its capabilities (a real-time policy needs `CAP_SYS_NICE`, the RT I/O class
//!   `CAP_SYS_NICE` or `CAP_SYS_ADMIN`, both of the host's user namespace) and before seccomp
//!   is loaded;
//! - `execCPUAffinity` applies to `exec` only ("not applicable to the container's init
//!   process", as in runc 1.2): `initial` as the process starts to join the container
//!   ([`initial_affinity`], before it is moved into the container's cgroup), `final` once it
//!   is in the cgroup ([`final_affinity`]), before the rest of its setup and its exec.
//!
//! A value that the kernel refuses is an error naming the field (runtime.md#create: a property
//! that cannot be applied fails the create or the exec); nothing is skipped.

use nix::errno::Errno;
use nix::sched::CpuSet;
use oci_spec::runtime::{
    IOPriorityClass, Linux, LinuxIOPriority, LinuxMemoryPolicy, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType, Process, Scheduler,
};

use crate::error::SetupError;
use crate::sys::sched::{self as sys, SchedAttr};

/// The highest CPU number an affinity list may name: `cpu_set_t` holds 1024 CPUs
/// (`CPU_SETSIZE`), as in runc, which refuses higher numbers too.
pub const MAX_CPU: u32 = 1023;
/// The highest NUMA node number a memory policy may name: Linux's `MAX_NUMNODES` is at most
/// 1024 (`NODES_SHIFT` 10).
pub const MAX_NODE: u32 = 1023;

/// The `linux.memoryPolicy` modes berth applies (all of config-linux.md#memory-policy; whether
/// the kernel has each is up to the host): the one list for `validate`, the features document
/// (features-linux.md `memoryPolicy.modes`) and [`mode_number`].
pub const MEMORY_POLICY_MODES: &[&str] = &[
    "MPOL_DEFAULT",
    "MPOL_BIND",
    "MPOL_INTERLEAVE",
    "MPOL_WEIGHTED_INTERLEAVE",
    "MPOL_PREFERRED",
    "MPOL_PREFERRED_MANY",
    "MPOL_LOCAL",
];
/// The `linux.memoryPolicy` flags berth applies: the one list for `validate` and the features
/// document (features-linux.md `memoryPolicy.flags`).
pub const MEMORY_POLICY_FLAGS: &[&str] = &[
    "MPOL_F_NUMA_BALANCING",
    "MPOL_F_RELATIVE_NODES",
    "MPOL_F_STATIC_NODES",
];

/// A malformed CPU or node list (`0-3,7`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// An element between two commas (or before the first, after the last) is empty.
    #[error("element {index} is empty")]
    Empty {
        /// 0-based position of the element.
        index: usize,
    },
    /// Something that is not a decimal number or a `low-high` range.
    #[error("{text:?} is not a number or a range like 0-3")]
    NotNumber {
        /// The element.
        text: String,
    },
    /// A range whose end is below its start.
    #[error("range {text:?} ends before it starts")]
    Backwards {
        /// The element.
        text: String,
    },
    /// A number past the highest one allowed.
    #[error("{n} is past the highest allowed, {max}")]
    TooHigh {
        /// The number.
        n: u64,
        /// The highest allowed.
        max: u32,
    },
}

/// Parse a cpuset-style list (`0-3,7`: comma-separated decimal numbers and inclusive
/// `low-high` ranges; blanks around an element are allowed, as the schema's `^[0-9, -]*$`
/// does) into its sorted, distinct numbers, each at most `max`. An empty (or all-blank)
/// string is the empty list; an empty element (`0,,1`, `0,`) is an error.
///
/// ```
/// use berth_runtime::process::sched::{parse_list, ListError};
/// assert_eq!(parse_list("0-3, 7,2", 1023), Ok(vec![0, 1, 2, 3, 7]));
/// assert_eq!(parse_list("", 1023), Ok(vec![]));
/// assert!(matches!(parse_list("3-1", 1023), Err(ListError::Backwards { .. })));
/// assert!(matches!(parse_list("1024", 1023), Err(ListError::TooHigh { n: 1024, .. })));
/// ```
pub fn parse_list(s: &str, max: u32) -> Result<Vec<u32>, ListError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let num = |text: &str, whole: &str| -> Result<u32, ListError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ListError::NotNumber {
                text: whole.to_owned(),
            });
        }
        // More digits than a u64 holds is past any maximum as well.
        let n: u64 = text.parse().unwrap_or(u64::MAX);
        if n > u64::from(max) {
            return Err(ListError::TooHigh { n, max });
        }
        Ok(n as u32)
    };
    let mut out = Vec::new();
    for (index, part) in s.split(',').enumerate() {
        let part = part.trim_matches(' ');
        if part.is_empty() {
            return Err(ListError::Empty { index });
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a, part)?, num(b, part)?);
                if b < a {
                    return Err(ListError::Backwards {
                        text: part.to_owned(),
                    });
                }
                out.extend(a..=b);
            }
            None => out.push(num(part, part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The `SCHED_*` number of a policy (`<linux/sched.h>`).
pub fn policy_number(p: LinuxSchedulerPolicy) -> u32 {
    match p {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    }
}

/// The spec's name of a policy (`SCHED_FIFO`).
fn policy_name(p: LinuxSchedulerPolicy) -> &'static str {
    match p {
        LinuxSchedulerPolicy::SchedOther => "SCHED_OTHER",
        LinuxSchedulerPolicy::SchedFifo => "SCHED_FIFO",
        LinuxSchedulerPolicy::SchedRr => "SCHED_RR",
        LinuxSchedulerPolicy::SchedBatch => "SCHED_BATCH",
        LinuxSchedulerPolicy::SchedIso => "SCHED_ISO",
        LinuxSchedulerPolicy::SchedIdle => "SCHED_IDLE",
        LinuxSchedulerPolicy::SchedDeadline => "SCHED_DEADLINE",
    }
}

/// The `SCHED_FLAG_*` bit of a flag (`<linux/sched.h>`).
pub fn flag_bit(f: LinuxSchedulerFlag) -> u64 {
    match f {
        LinuxSchedulerFlag::SchedResetOnFork => 0x01,
        LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
        LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
        LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
        LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
        LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
        LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
    }
}

/// The `MPOL_*` number of a mode (`<linux/mempolicy.h>`).
pub fn mode_number(m: MemoryPolicyModeType) -> i32 {
    match m {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    }
}

/// The `MPOL_F_*` bit of a mode flag (`<linux/mempolicy.h>`).
pub fn mode_flag_bit(f: MemoryPolicyFlagType) -> i32 {
    match f {
        MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
        MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
        MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
    }
}

/// Set the memory policy of `linux`, then the I/O priority and the scheduler of `process`,
/// on the calling process. Errors name the field (`linux.memoryPolicy`,
/// `process.ioPriority`, `process.scheduler`), the call and its errno.
pub fn apply(process: &Process, linux: Option<&Linux>) -> Result<(), SetupError> {
    if let Some(p) = linux.and_then(|l| l.memory_policy().as_ref()) {
        memory_policy(p)?;
    }
    if let Some(io) = process.io_priority() {
        io_priority(io)?;
    }
    if let Some(s) = process.scheduler() {
        scheduler(s)?;
    }
    Ok(())
}

fn io_priority(io: &LinuxIOPriority) -> Result<(), SetupError> {
    const FIELD: &str = "process.ioPriority";
    let (class, name) = match io.class() {
        IOPriorityClass::IoprioClassRt => (1, "IOPRIO_CLASS_RT"),
        IOPriorityClass::IoprioClassBe => (2, "IOPRIO_CLASS_BE"),
        IOPriorityClass::IoprioClassIdle => (3, "IOPRIO_CLASS_IDLE"),
    };
    let level = io.priority();
    // Past 7 the kernel reads the bits as I/O hints instead of refusing them.
    let level = u32::try_from(level)
        .ok()
        .filter(|l| *l <= 7)
        .ok_or_else(|| SetupError::msg(FIELD, format!("priority {level} is outside 0..=7")))?;
    sys::ioprio_set_self(class, level).map_err(|e| {
        let hint = if e == Errno::EPERM {
            " (the real-time class needs CAP_SYS_NICE or CAP_SYS_ADMIN in the host's user namespace)"
        } else {
            ""
        };
        SetupError::sys(FIELD, format!("ioprio_set {name} level {level}{hint}"), e)
    })
}

fn scheduler(s: &Scheduler) -> Result<(), SetupError> {
    const FIELD: &str = "process.scheduler";
    let policy = *s.policy();
    let nice = s.nice().unwrap_or(0);
    let priority = s.priority().unwrap_or(0);
    let priority = u32::try_from(priority)
        .map_err(|_| SetupError::msg(FIELD, format!("priority {priority} is negative")))?;
    let attr = SchedAttr {
        policy: policy_number(policy),
        flags: s.flags().iter().flatten().map(|f| flag_bit(*f)).sum(),
        nice,
        priority,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..SchedAttr::default()
    };
    let name = policy_name(policy);
    sys::sched_setattr_self(&attr).map_err(|e| {
        let hint = match (e, policy) {
            (Errno::EPERM, LinuxSchedulerPolicy::SchedDeadline) => {
                " (SCHED_DEADLINE needs CAP_SYS_NICE and a CPU affinity covering its root domain)"
            }
            (Errno::EPERM, _) => {
                " (a real-time policy or a lower nice value needs CAP_SYS_NICE in the host's user namespace, and with real-time group scheduling the cgroup's cpu.rt_runtime_us must not be 0: linux.resources.cpu.realtimeRuntime)"
            }
            (Errno::EINVAL, LinuxSchedulerPolicy::SchedIso) => " (Linux does not implement SCHED_ISO)",
            (Errno::EBUSY, _) => " (not enough deadline bandwidth is left)",
            _ => "",
        };
        SetupError::sys(
            FIELD,
            format!(
                "sched_setattr {name} nice {nice} priority {priority} flags {:#x} runtime {} deadline {} period {}{hint}",
                attr.flags, attr.runtime, attr.deadline, attr.period
            ),
            e,
        )
    })
}

fn memory_policy(p: &LinuxMemoryPolicy) -> Result<(), SetupError> {
    const FIELD: &str = "linux.memoryPolicy";
    let nodes_text = p.nodes().as_deref().unwrap_or("");
    let nodes = parse_list(nodes_text, MAX_NODE)
        .map_err(|e| SetupError::msg(FIELD, format!("nodes {nodes_text:?}: {e}")))?;
    let mut mask: Vec<libc::c_ulong> = Vec::new();
    for n in &nodes {
        let (word, bit) = (
            *n as usize / libc::c_ulong::BITS as usize,
            n % libc::c_ulong::BITS,
        );
        if mask.len() <= word {
            mask.resize(word + 1, 0);
        }
        mask[word] |= 1 << bit;
    }
    let mode = mode_number(p.mode());
    let flags = p
        .flags()
        .iter()
        .flatten()
        .fold(0, |acc, f| acc | mode_flag_bit(*f));
    sys::set_mempolicy_self(mode, flags, &mask).map_err(|e| {
        let hint = match e {
            Errno::EINVAL => format!(
                " (a node that is not online or not in the container's allowed memory nodes \
                 {}, or a mode and flags or nodes that do not go together)",
                mems_allowed().unwrap_or_else(|| "?".to_owned())
            ),
            _ => String::new(),
        };
        SetupError::sys(
            FIELD,
            format!(
                "set_mempolicy {} nodes {nodes_text:?} flags {flags:#x}{hint}",
                p.mode()
            ),
            e,
        )
    })
}

/// `Mems_allowed_list` of /proc/self/status: the nodes this process may use.
fn mems_allowed() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Mems_allowed_list:"))
        .map(|v| v.trim().to_owned())
}

/// Set `process.execCPUAffinity.initial`, if it is set and not empty, on the calling process:
/// for `exec`, before it joins the container's cgroup.
pub fn initial_affinity(process: &Process) -> Result<(), SetupError> {
    let list = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.initial().as_deref());
    set_affinity("process.execCPUAffinity.initial", list)
}

/// Set `process.execCPUAffinity.final`, if it is set and not empty, on the calling process:
/// for `exec`, once it is in the container's cgroup (where a cpuset may have reset the
/// affinity). Without it the kernel's affinity stays, as the spec asks.
pub fn final_affinity(process: &Process) -> Result<(), SetupError> {
    let list = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.cpu_affinity_final().as_deref());
    set_affinity("process.execCPUAffinity.final", list)
}

fn set_affinity(field: &str, list: Option<&str>) -> Result<(), SetupError> {
    let Some(list) = list.filter(|l| !l.trim().is_empty()) else {
        return Ok(());
    };
    let cpus =
        parse_list(list, MAX_CPU).map_err(|e| SetupError::msg(field, format!("{list:?}: {e}")))?;
    let mut set = CpuSet::new();
    for cpu in cpus {
        set.set(cpu as usize)
            .map_err(|e| SetupError::sys(field, format!("CPU {cpu} of {list:?}"), e))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|e| {
        let hint = if e == Errno::EINVAL {
            " (none of these CPUs is online and allowed by the container's cpuset)"
        } else {
            ""
        };
        SetupError::sys(field, format!("sched_setaffinity {list:?}{hint}"), e)
    })
}

/// Rewrite, in the JSON of a `process` object, what the spec allows but oci-spec 0.10 cannot
/// read, into what it reads with the same meaning; returns how many values were changed.
///
/// - `scheduler.flags`: oci-spec 0.10 spells `SCHED_FLAG_RESET_ON_FORK` and
///   `SCHED_FLAG_DL_OVERRUN` (config.md#linux-process) as `SCHED_RESET_ON_FORK` and
///   `SCHED_FLAG_D_L_OVERRUN`;
/// - `execCPUAffinity.initial`/`final`: oci-spec refuses an empty value (which the spec reads
///   as "not set") and blanks around elements (which the schema allows); an empty value is
///   removed and the blanks are trimmed.
///
/// Validation looks at the document as written, so a spelling that is only oci-spec's is still
/// refused there.
pub(crate) fn respell_for_oci_spec(process: &mut serde_json::Value) -> usize {
    let mut changed = 0;
    if let Some(flags) = process
        .pointer_mut("/scheduler/flags")
        .and_then(serde_json::Value::as_array_mut)
    {
        for f in flags.iter_mut() {
            let oci = match f.as_str() {
                Some("SCHED_FLAG_RESET_ON_FORK") => "SCHED_RESET_ON_FORK",
                Some("SCHED_FLAG_DL_OVERRUN") => "SCHED_FLAG_D_L_OVERRUN",
                _ => continue,
            };
            *f = serde_json::Value::from(oci);
            changed += 1;
        }
    }
    if let Some(a) = process
        .get_mut("execCPUAffinity")
        .and_then(serde_json::Value::as_object_mut)
    {
        for key in ["initial", "final"] {
            let Some(list) = a.get(key).and_then(serde_json::Value::as_str) else {
                continue;
            };
            if list.trim().is_empty() {
                a.remove(key);
                changed += 1;
                continue;
            }
            let trimmed: Vec<&str> = list.split(',').map(|e| e.trim_matches(' ')).collect();
            let trimmed = trimmed.join(",");
            if trimmed != list {
                a.insert(key.to_owned(), trimmed.into());
                changed += 1;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_parsed_strictly() {
        assert_eq!(parse_list("7,0-3", MAX_CPU), Ok(vec![0, 1, 2, 3, 7]));
        assert_eq!(parse_list(" 1 , 1-2 ", MAX_CPU), Ok(vec![1, 2]));
        assert_eq!(parse_list(" ", MAX_CPU), Ok(vec![]));
        assert_eq!(
            parse_list("0,,1", MAX_CPU),
            Err(ListError::Empty { index: 1 })
        );
        assert_eq!(
            parse_list("0,", MAX_CPU),
            Err(ListError::Empty { index: 1 })
        );
        for bad in ["a", "-1", "1-", "1-2-3", "0x1", "+1", "1 2"] {
            assert!(
                matches!(parse_list(bad, MAX_CPU), Err(ListError::NotNumber { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            parse_list("3-2", MAX_CPU),
            Err(ListError::Backwards { text: "3-2".into() })
        );
        assert_eq!(
            parse_list("0-1024", MAX_CPU),
            Err(ListError::TooHigh { n: 1024, max: 1023 })
        );
        assert!(matches!(
            parse_list("99999999999999999999999", MAX_CPU),
            Err(ListError::TooHigh { .. })
        ));
        assert_eq!(parse_list("1023", MAX_CPU), Ok(vec![1023]));
    }

    #[test]
    fn spec_spellings_reach_oci_spec() {
        let mut p = serde_json::json!({
            "cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
            "scheduler": {"policy": "SCHED_OTHER",
                          "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_RECLAIM"]},
            "execCPUAffinity": {"initial": "0, 1", "final": ""},
        });
        assert_eq!(respell_for_oci_spec(&mut p), 4);
        let parsed: Process = serde_json::from_value(p).unwrap();
        let s = parsed.scheduler().as_ref().unwrap();
        let bits: u64 = s.flags().iter().flatten().map(|f| flag_bit(*f)).sum();
        assert_eq!(bits, 0x01 | 0x04 | 0x02);
        let a = parsed.exec_cpu_affinity().as_ref().unwrap();
        assert_eq!(a.initial().as_deref(), Some("0,1"));
        assert_eq!(a.cpu_affinity_final(), &None);
    }

    #[test]
    fn listed_modes_and_flags_are_the_ones_oci_spec_reads() {
        for m in MEMORY_POLICY_MODES {
            let mode: MemoryPolicyModeType = m.parse().unwrap();
            assert_eq!(mode.to_string(), *m);
        }
        for f in MEMORY_POLICY_FLAGS {
            let flag: MemoryPolicyFlagType = f.parse().unwrap();
            assert_eq!(flag.to_string(), *f);
        }
    }

    #[test]
    fn numbers_are_the_kernels() {
        assert_eq!(policy_number(LinuxSchedulerPolicy::SchedDeadline), 6);
        assert_eq!(policy_number(LinuxSchedulerPolicy::SchedIdle), 5);
        assert_eq!(flag_bit(LinuxSchedulerFlag::SchedFlagUtilClampMax), 0x40);
        assert_eq!(mode_number(MemoryPolicyModeType::MpolWeightedInterleave), 6);
        assert_eq!(mode_number(MemoryPolicyModeType::MpolPreferredMany), 5);
        assert_eq!(
            mode_flag_bit(MemoryPolicyFlagType::MpolFStaticNodes),
            libc::MPOL_F_STATIC_NODES
        );
        assert_eq!(
            mode_flag_bit(MemoryPolicyFlagType::MpolFRelativeNodes),
            libc::MPOL_F_RELATIVE_NODES
        );
        assert_eq!(
            mode_flag_bit(MemoryPolicyFlagType::MpolFNumaBalancing),
            libc::MPOL_F_NUMA_BALANCING
        );
    }
}
