//! The schema as tables: the fields of each object with their types, and the known names.

use serde_json::Value;

/// A JSON type from the runtime-spec schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Str,
    Bool,
    U32,
    U64,
    I64,
    Object,
    Array,
    StrArray,
    U32Array,
    /// An object whose values are all strings.
    StrMap,
}

impl Ty {
    /// The type as the spec writes it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Bool => "bool",
            Ty::U32 => "uint32",
            Ty::U64 => "uint64",
            Ty::I64 => "int64",
            Ty::Object => "object",
            Ty::Array => "array of objects",
            Ty::StrArray => "array of strings",
            Ty::U32Array => "array of uint32",
            Ty::StrMap => "object of strings",
        }
    }

    /// The type with an article, for messages.
    pub(super) fn article(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Bool => "a boolean",
            Ty::U32 => "a uint32",
            Ty::U64 => "a uint64",
            Ty::I64 => "an int64",
            Ty::Object | Ty::StrMap => "an object",
            Ty::Array | Ty::StrArray | Ty::U32Array => "an array",
        }
    }

    /// Whether `v` has this (scalar or container) type; element types are checked apart.
    pub(super) fn accepts(self, v: &Value) -> bool {
        match self {
            Ty::Str => v.is_string(),
            Ty::Bool => v.is_boolean(),
            Ty::U32 => v.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)),
            Ty::U64 => v.is_u64(),
            Ty::I64 => v.is_i64(),
            Ty::Object | Ty::StrMap => v.is_object(),
            Ty::Array | Ty::StrArray | Ty::U32Array => v.is_array(),
        }
    }
}

/// One field of an object in the schema.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    pub(super) required: bool,
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

use Ty::*;

pub(super) const TOP: &[Field] = &[
    req("ociVersion", Str),
    opt("root", Object),
    opt("process", Object),
    opt("hostname", Str),
    opt("domainname", Str),
    opt("mounts", Array),
    opt("hooks", Object),
    opt("annotations", StrMap),
    opt("linux", Object),
];
pub(super) const ROOT: &[Field] = &[req("path", Str), opt("readonly", Bool)];
pub(super) const MOUNT: &[Field] = &[
    req("destination", Str),
    opt("source", Str),
    opt("type", Str),
    opt("options", StrArray),
    opt("uidMappings", Array),
    opt("gidMappings", Array),
];
pub(super) const HOOKS: &[Field] = &[
    opt("prestart", Array),
    opt("createRuntime", Array),
    opt("createContainer", Array),
    opt("startContainer", Array),
    opt("poststart", Array),
    opt("poststop", Array),
];
pub(super) const HOOK: &[Field] = &[
    req("path", Str),
    opt("args", StrArray),
    opt("env", StrArray),
    opt("timeout", I64),
];

pub(super) const PROCESS: &[Field] = &[
    opt("terminal", Bool),
    opt("consoleSize", Object),
    req("cwd", Str),
    opt("env", StrArray),
    opt("args", StrArray),
    opt("commandLine", Str),
    opt("capabilities", Object),
    opt("rlimits", Array),
    opt("apparmorProfile", Str),
    opt("selinuxLabel", Str),
    opt("noNewPrivileges", Bool),
    opt("oomScoreAdj", I64),
    opt("user", Object),
    opt("ioPriority", Object),
    opt("scheduler", Object),
    opt("execCPUAffinity", Object),
];
pub(super) const EXEC_CPU_AFFINITY: &[Field] = &[opt("initial", Str), opt("final", Str)];
pub(super) const CONSOLE: &[Field] = &[req("height", U64), req("width", U64)];
pub(super) const USER: &[Field] = &[
    req("uid", U32),
    req("gid", U32),
    opt("umask", U32),
    opt("additionalGids", U32Array),
    opt("username", Str),
];
pub(super) const CAPABILITIES: &[Field] = &[
    opt("bounding", StrArray),
    opt("effective", StrArray),
    opt("inheritable", StrArray),
    opt("permitted", StrArray),
    opt("ambient", StrArray),
];
pub(super) const RLIMIT: &[Field] = &[req("type", Str), req("soft", U64), req("hard", U64)];
pub(super) const IO_PRIORITY: &[Field] = &[req("class", Str), opt("priority", I64)];
pub(super) const SCHEDULER: &[Field] = &[
    req("policy", Str),
    opt("nice", I64),
    opt("priority", I64),
    opt("flags", StrArray),
    opt("runtime", U64),
    opt("deadline", U64),
    opt("period", U64),
];

pub(super) const LINUX: &[Field] = &[
    opt("namespaces", Array),
    opt("uidMappings", Array),
    opt("gidMappings", Array),
    opt("timeOffsets", Object),
    opt("devices", Array),
    opt("netDevices", Object),
    opt("cgroupsPath", Str),
    opt("rootfsPropagation", Str),
    opt("resources", Object),
    opt("sysctl", StrMap),
    opt("seccomp", Object),
    opt("maskedPaths", StrArray),
    opt("readonlyPaths", StrArray),
    opt("mountLabel", Str),
    opt("intelRdt", Object),
    opt("personality", Object),
    opt("memoryPolicy", Object),
];
pub(super) const NET_DEVICE: &[Field] = &[opt("name", Str)];
pub(super) const MEMORY_POLICY: &[Field] =
    &[req("mode", Str), opt("nodes", Str), opt("flags", StrArray)];
pub(super) const NAMESPACE: &[Field] = &[req("type", Str), opt("path", Str)];
pub(super) const ID_MAPPING: &[Field] = &[
    req("containerID", U32),
    req("hostID", U32),
    req("size", U32),
];
pub(super) const TIME_OFFSET: &[Field] = &[opt("secs", I64), opt("nanosecs", U32)];
pub(super) const DEVICE: &[Field] = &[
    req("type", Str),
    req("path", Str),
    opt("major", I64),
    opt("minor", I64),
    opt("fileMode", U32),
    opt("uid", U32),
    opt("gid", U32),
];
pub(super) const RESOURCES: &[Field] = &[
    opt("devices", Array),
    opt("memory", Object),
    opt("cpu", Object),
    opt("pids", Object),
    opt("blockIO", Object),
    opt("hugepageLimits", Array),
    opt("network", Object),
    opt("rdma", Object),
    opt("unified", StrMap),
];
pub(super) const DEVICE_RULE: &[Field] = &[
    req("allow", Bool),
    opt("type", Str),
    opt("major", I64),
    opt("minor", I64),
    opt("access", Str),
];
pub(super) const MEMORY: &[Field] = &[
    opt("limit", I64),
    opt("reservation", I64),
    opt("swap", I64),
    opt("kernel", I64),
    opt("kernelTCP", I64),
    opt("swappiness", U64),
    opt("disableOOMKiller", Bool),
    opt("useHierarchy", Bool),
    opt("checkBeforeUpdate", Bool),
];
pub(super) const CPU: &[Field] = &[
    opt("shares", U64),
    opt("quota", I64),
    opt("burst", U64),
    opt("period", U64),
    opt("realtimeRuntime", I64),
    opt("realtimePeriod", U64),
    opt("cpus", Str),
    opt("mems", Str),
    opt("idle", I64),
];
/// `limit` was REQUIRED up to runtime-spec 1.2 and is OPTIONAL since; accept both.
pub(super) const PIDS: &[Field] = &[opt("limit", I64)];
pub(super) const BLOCK_IO: &[Field] = &[
    opt("weight", U64),
    opt("leafWeight", U64),
    opt("weightDevice", Array),
    opt("throttleReadBpsDevice", Array),
    opt("throttleWriteBpsDevice", Array),
    opt("throttleReadIOPSDevice", Array),
    opt("throttleWriteIOPSDevice", Array),
];
pub(super) const WEIGHT_DEVICE: &[Field] = &[
    req("major", I64),
    req("minor", I64),
    opt("weight", U64),
    opt("leafWeight", U64),
];
pub(super) const THROTTLE_DEVICE: &[Field] =
    &[req("major", I64), req("minor", I64), req("rate", U64)];
pub(super) const HUGEPAGE: &[Field] = &[req("pageSize", Str), req("limit", U64)];
pub(super) const NETWORK: &[Field] = &[opt("classID", U32), opt("priorities", Array)];
pub(super) const NET_PRIORITY: &[Field] = &[req("name", Str), req("priority", U32)];
pub(super) const SECCOMP: &[Field] = &[
    req("defaultAction", Str),
    opt("defaultErrnoRet", U32),
    opt("architectures", StrArray),
    opt("flags", StrArray),
    opt("listenerPath", Str),
    opt("listenerMetadata", Str),
    opt("syscalls", Array),
];
pub(super) const SYSCALL: &[Field] = &[
    req("names", StrArray),
    req("action", Str),
    opt("errnoRet", U32),
    opt("args", Array),
];
pub(super) const SYSCALL_ARG: &[Field] = &[
    req("index", U32),
    req("value", U64),
    opt("valueTwo", U64),
    req("op", Str),
];
pub(super) const PERSONALITY: &[Field] = &[req("domain", Str), opt("flags", StrArray)];
pub(super) const INTEL_RDT: &[Field] = &[
    opt("closID", Str),
    opt("l3CacheSchema", Str),
    opt("memBwSchema", Str),
    opt("schemata", StrArray),
    opt("enableCMT", Bool),
    opt("enableMBM", Bool),
];

/// Resource limits of getrlimit(2).
pub(super) const RLIMITS: &[&str] = &[
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
    "RLIMIT_SIGPENDING",
    "RLIMIT_STACK",
];

pub(super) const NAMESPACES: &[&str] = &[
    "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time",
];
pub(super) const DEVICE_TYPES: &[&str] = &["c", "b", "u", "p"];
pub(super) const DEVICE_RULE_TYPES: &[&str] = &["a", "c", "b"];
pub(super) const TIME_CLOCKS: &[&str] = &["monotonic", "boottime"];
pub(super) const PROPAGATION: &[&str] = &["shared", "slave", "private", "unbindable"];
/// Recursive forms that runc also accepts for rootfsPropagation.
pub(super) const PROPAGATION_RUNC: &[&str] = &["rshared", "rslave", "rprivate", "runbindable"];
pub(super) const IO_PRIORITY_CLASSES: &[&str] =
    &["IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE"];
pub(super) const SCHED_POLICIES: &[&str] = &[
    "SCHED_OTHER",
    "SCHED_FIFO",
    "SCHED_RR",
    "SCHED_BATCH",
    "SCHED_ISO",
    "SCHED_IDLE",
    "SCHED_DEADLINE",
];
/// config.md#linux-process `scheduler.flags`.
pub(super) const SCHED_FLAGS: &[&str] = &[
    "SCHED_FLAG_RESET_ON_FORK",
    "SCHED_FLAG_RECLAIM",
    "SCHED_FLAG_DL_OVERRUN",
    "SCHED_FLAG_KEEP_POLICY",
    "SCHED_FLAG_KEEP_PARAMS",
    "SCHED_FLAG_UTIL_CLAMP_MIN",
    "SCHED_FLAG_UTIL_CLAMP_MAX",
];
pub(super) const PERSONALITY_DOMAINS: &[&str] = &["LINUX", "LINUX32"];

pub(super) const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];
pub(super) const SECCOMP_ARCHES: &[&str] = &[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];
pub(super) const SECCOMP_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];
pub(super) const SECCOMP_OPS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

/// Sysctls that belong to the IPC namespace (besides the `fs.mqueue.` prefix), as runc lists them.
pub(super) const SYSCTL_IPC: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_types() {
        assert!(U32.accepts(&serde_json::json!(4_294_967_295u64)));
        assert!(!U32.accepts(&serde_json::json!(4_294_967_296u64)));
        assert!(!U32.accepts(&serde_json::json!(-1)));
        assert!(I64.accepts(&serde_json::json!(-1)));
        assert!(!I64.accepts(&serde_json::json!(1.5)));
        assert!(!U64.accepts(&serde_json::json!("1")));
    }
}
