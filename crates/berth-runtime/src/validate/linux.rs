//! `linux`: namespaces, id mappings, devices, cgroup resources, sysctl, seccomp and the rest.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::{index, join, key, obj_of, str_of, tables, Checker};

/// The largest `cpu.cfs_quota_us` the kernel takes: `max_cfs_runtime`, (2^44 - 1) us.
const CFS_QUOTA_MAX_US: i128 = (1 << 44) - 1;

/// The namespaces a configuration asks for: type to "joins an existing one by path".
#[derive(Debug, Default)]
pub(super) struct Namespaces(HashMap<String, bool>);

impl Namespaces {
    /// Read `linux.namespaces` without reporting anything ([`check`] does).
    pub(super) fn collect(doc: &Map<String, Value>) -> Self {
        let list = doc
            .get("linux")
            .and_then(|l| l.get("namespaces"))
            .and_then(Value::as_array);
        let mut ns = HashMap::new();
        for n in list.into_iter().flatten() {
            if let Some(t) = n.get("type").and_then(Value::as_str) {
                let joined = n.get("path").is_some_and(|p| p.as_str() != Some(""));
                ns.entry(t.to_owned()).or_insert(joined);
            }
        }
        Namespaces(ns)
    }

    /// The container has a namespace of type `t`, new or joined.
    pub(super) fn has(&self, t: &str) -> bool {
        self.0.contains_key(t)
    }

    /// The container gets a new namespace of type `t` (no path).
    fn creates(&self, t: &str) -> bool {
        self.0.get(t) == Some(&false)
    }
}

pub(super) fn check(c: &mut Checker, doc: &Map<String, Value>, ns: &Namespaces) {
    let Some(l) = obj_of(doc, "linux") else {
        return;
    };
    c.fields(l, "linux", tables::LINUX, "config-linux.md");
    namespaces(c, l);
    mappings(c, l, ns);
    time_offsets(c, l, ns);
    devices(c, l);
    if let Some(r) = obj_of(l, "resources") {
        resources(c, r);
    }
    sysctl(c, doc, l, ns);
    if let Some(s) = obj_of(l, "seccomp") {
        seccomp(c, s);
    }
    propagation(c, l);
    for name in ["maskedPaths", "readonlyPaths"] {
        let Some(list) = l.get(name).and_then(Value::as_array) else {
            continue;
        };
        for (i, p) in list.iter().enumerate() {
            if let Some(p) = p.as_str() {
                if !p.starts_with('/') {
                    c.error(
                        &index(&join("linux", name), i),
                        format!("{p:?} is not an absolute path"),
                        &format!("config-linux.md#{}: the values MUST be absolute paths in the container namespace", name.to_lowercase()),
                    );
                }
            }
        }
    }
    if let Some(p) = obj_of(l, "personality") {
        c.fields(
            p,
            "linux.personality",
            tables::PERSONALITY,
            "config-linux.md#personality",
        );
        c.known_value(
            p,
            "linux.personality",
            "domain",
            tables::PERSONALITY_DOMAINS,
            "config-linux.md#personality: domain is LINUX or LINUX32",
        );
    }
    if let Some(rdt) = obj_of(l, "intelRdt") {
        intel_rdt(c, rdt);
    }
    if let Some(devices) = obj_of(l, "netDevices") {
        for (name, d) in devices {
            let path = key("linux.netDevices", name);
            if let Some(o) = c.object(
                d,
                &path,
                "config-linux.md#network-devices: each entry is an object",
            ) {
                c.fields(
                    o,
                    &path,
                    tables::NET_DEVICE,
                    "config-linux.md#network-devices",
                );
            }
        }
    }
    if let Some(p) = obj_of(l, "memoryPolicy") {
        memory_policy(c, p);
    }
    // cgroupsPath: absolute and relative values are both allowed (config-linux.md#cgroups-path,
    // and runc accepts either), so only its type is checked.
}

/// `linux.memoryPolicy`: names, the node list, and what set_mempolicy(2) requires of each mode
/// and flag (the kernel answers EINVAL to any of these).
fn memory_policy(c: &mut Checker, p: &Map<String, Value>) {
    const PATH: &str = "linux.memoryPolicy";
    const SECTION: &str = "config-linux.md#memory-policy";
    const RULE: &str = "config-linux.md#memory-policy: set_mempolicy(2) refuses this mode, node list and flags together";
    c.fields(p, PATH, tables::MEMORY_POLICY, SECTION);
    c.known_value(
        p,
        PATH,
        "mode",
        crate::process::sched::MEMORY_POLICY_MODES,
        "config-linux.md#memory-policy: mode is an MPOL_* mode",
    );
    c.known_names(
        p,
        PATH,
        "flags",
        crate::process::sched::MEMORY_POLICY_FLAGS,
        "config-linux.md#memory-policy: flags are MPOL_F_* flags",
    );
    let nodes = match str_of(p, "nodes") {
        Some(list) => {
            match crate::process::sched::parse_list(list, crate::process::sched::MAX_NODE) {
                Ok(n) => n,
                Err(e) => {
                    c.error(&join(PATH, "nodes"), format!("{list:?} is not a node list like 0-3,7: {e}"), "config-linux.md#memory-policy: nodes is comma-separated node numbers and ranges (nodes 0 to 1023, Linux's MAX_NUMNODES)");
                    return;
                }
            }
        }
        None => Vec::new(),
    };
    let flags: Vec<&str> = p
        .get("flags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let has = |f: &str| flags.contains(&f);
    let Some(mode) = str_of(p, "mode") else {
        return;
    };
    match mode {
        "MPOL_DEFAULT" | "MPOL_LOCAL" => {
            if !nodes.is_empty() {
                c.error(&join(PATH, "nodes"), format!("{mode} takes no nodes"), "config-linux.md#memory-policy: some modes require that there are no nodes, e.g. MPOL_DEFAULT and MPOL_LOCAL");
            }
            if !flags.is_empty() {
                c.error(&join(PATH, "flags"), format!("{mode} takes no flags"), RULE);
            }
        }
        "MPOL_BIND" | "MPOL_INTERLEAVE" | "MPOL_WEIGHTED_INTERLEAVE" | "MPOL_PREFERRED_MANY"
            if nodes.is_empty() =>
        {
            c.error(&join(PATH, "nodes"), format!("{mode} needs at least one node"), "config-linux.md#memory-policy: others require at least one node, e.g. MPOL_BIND and MPOL_INTERLEAVE");
        }
        "MPOL_PREFERRED"
            if nodes.is_empty() && (has("MPOL_F_STATIC_NODES") || has("MPOL_F_RELATIVE_NODES")) =>
        {
            c.error(&join(PATH, "nodes"), "MPOL_PREFERRED without nodes (local allocation) takes neither MPOL_F_STATIC_NODES nor MPOL_F_RELATIVE_NODES", RULE);
        }
        _ => {}
    }
    if has("MPOL_F_STATIC_NODES") && has("MPOL_F_RELATIVE_NODES") {
        c.error(
            &join(PATH, "flags"),
            "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
            RULE,
        );
    }
    if has("MPOL_F_NUMA_BALANCING")
        && !matches!(
            mode,
            "MPOL_BIND" | "MPOL_PREFERRED_MANY" | "MPOL_DEFAULT" | "MPOL_LOCAL"
        )
    {
        c.error(
            &join(PATH, "flags"),
            format!(
                "MPOL_F_NUMA_BALANCING goes only with MPOL_BIND or MPOL_PREFERRED_MANY, not {mode}"
            ),
            RULE,
        );
    }
}

fn namespaces(c: &mut Checker, l: &Map<String, Value>) {
    const SECTION: &str = "config-linux.md#namespaces";
    let mut seen = HashSet::new();
    for (path, n) in c.objects(l, "linux", "namespaces", tables::NAMESPACE, SECTION) {
        if let Some(t) = str_of(n, "type") {
            if !tables::NAMESPACES.contains(&t) {
                c.error(&join(&path, "type"), format!("unknown namespace type {t:?}"), "config-linux.md#namespaces: type is pid, network, mount, ipc, uts, user, cgroup or time");
            } else if !seen.insert(t) {
                c.error(&join(&path, "type"), format!("duplicate namespace type {t}"), "config-linux.md#namespaces: if namespaces contains duplicated namespaces with same type, the runtime MUST generate an error");
            }
        }
        // An empty path means "no path" (a new namespace), as runc reads it.
        if str_of(n, "path").is_some_and(|p| !p.is_empty()) {
            c.absolute(n, &path, "path", "config-linux.md#namespaces: path MUST be an absolute path in the runtime mount namespace");
        }
    }
}

fn mappings(c: &mut Checker, l: &Map<String, Value>, ns: &Namespaces) {
    const SECTION: &str = "config-linux.md#user-namespace-mappings";
    let mut count = [0usize; 2];
    for (k, name) in ["uidMappings", "gidMappings"].into_iter().enumerate() {
        for (path, m) in c.objects(l, "linux", name, tables::ID_MAPPING, SECTION) {
            count[k] += 1;
            if m.get("size").and_then(Value::as_u64) == Some(0) {
                c.error(&join(&path, "size"), "maps no ids", "config-linux.md#user-namespace-mappings: size is the number of ids to map (user_namespaces(7) rejects 0)");
            }
            mapping_end(c, m, &path);
        }
        if count[k] > MAX_ID_EXTENTS {
            c.error(
                &join("linux", name),
                format!(
                    "{} ranges are more than the kernel takes ({MAX_ID_EXTENTS})",
                    count[k]
                ),
                "user_namespaces(7): a uid_map or gid_map has at most 340 lines",
            );
        }
        if count[k] > 0 && !ns.has("user") {
            c.error(
                &join("linux", name),
                format!("{name} is set but linux.namespaces has no user namespace"),
                "config-linux.md#user-namespace-mappings: mappings describe a user namespace (runc: mappings without a user namespace are an error)",
            );
        }
    }
    if ns.creates("user") && (count[0] == 0 || count[1] == 0) {
        c.error(
            "linux.namespaces",
            "a new user namespace has no uidMappings or no gidMappings",
            "config-linux.md#user-namespace-mappings: a new user namespace needs uid and gid mappings (runc: user namespaces enabled, but no mapping found)",
        );
    }
}

/// Most lines a uid_map or gid_map takes (the kernel's UID_GID_MAP_MAX_EXTENTS).
const MAX_ID_EXTENTS: usize = 340;

/// `containerID + size` and `hostID + size` must fit the kernel's 32-bit ids: it refuses a
/// range that wraps around (user_namespaces(7)).
pub(super) fn mapping_end(c: &mut Checker, m: &Map<String, Value>, path: &str) {
    let Some(size) = m.get("size").and_then(Value::as_u64) else {
        return;
    };
    for start in ["containerID", "hostID"] {
        let Some(first) = m.get(start).and_then(Value::as_u64) else {
            continue;
        };
        if first <= u64::from(u32::MAX)
            && size <= u64::from(u32::MAX)
            && first + size > u64::from(u32::MAX)
        {
            c.error(&join(path, "size"), format!("{start} {first} + size {size} is out of range for a 32-bit id (the range must end below 4294967295)"), "config-linux.md#user-namespace-mappings: ids are the kernel's 32-bit ids; user_namespaces(7) refuses a range past 4294967294");
        }
    }
}

fn time_offsets(c: &mut Checker, l: &Map<String, Value>, ns: &Namespaces) {
    let Some(offsets) = obj_of(l, "timeOffsets") else {
        return;
    };
    if !ns.has("time") {
        c.error("linux.timeOffsets", "is set but linux.namespaces has no time namespace", "config-linux.md#offset-for-time-namespace: timeOffsets sets the offsets of a time namespace (runc: offsets without a time namespace are an error)");
    }
    for (clock, v) in offsets {
        let path = key("linux.timeOffsets", clock);
        if !tables::TIME_CLOCKS.contains(&clock.as_str()) {
            c.error(&path, format!("unknown clock {clock:?}"), "config-linux.md#offset-for-time-namespace: time_namespaces(7) offsets exist for monotonic and boottime");
        }
        if let Some(o) = c.object(
            v,
            &path,
            "config-linux.md#offset-for-time-namespace: entry values are objects",
        ) {
            c.fields(
                o,
                &path,
                tables::TIME_OFFSET,
                "config-linux.md#offset-for-time-namespace",
            );
            c.int_range(
                o,
                &path,
                "secs",
                -KTIME_SEC_MAX,
                KTIME_SEC_MAX,
                "a time namespace offset in seconds",
                "time_namespaces(7): offsets are kept in nanoseconds as a signed 64-bit ktime",
            );
            if o.get("nanosecs")
                .and_then(Value::as_u64)
                .is_some_and(|n| n >= 1_000_000_000)
            {
                c.error(
                    &join(&path, "nanosecs"),
                    "is a second or more",
                    "time_namespaces(7): nanosecs is below 1000000000",
                );
            }
        }
    }
}

/// The largest offset in seconds a time namespace takes (KTIME_SEC_MAX).
const KTIME_SEC_MAX: i128 = i64::MAX as i128 / 1_000_000_000;
/// The largest device major and minor of the kernel's dev_t (12 and 20 bits: MINORBITS):
/// mknod(2) refuses anything larger.
const MAJOR_MAX: i128 = (1 << 12) - 1;
const MINOR_MAX: i128 = (1 << 20) - 1;

/// `major` and `minor` of `obj` as the kernel's dev_t takes them; with `wildcard`, -1 (all) too.
fn dev_numbers(c: &mut Checker, obj: &Map<String, Value>, path: &str, wildcard: bool, rule: &str) {
    let lo = if wildcard { -1 } else { 0 };
    let what = if wildcard { " (or -1 for all)" } else { "" };
    c.int_range(
        obj,
        path,
        "major",
        lo,
        MAJOR_MAX,
        &format!("a device major{what}"),
        rule,
    );
    c.int_range(
        obj,
        path,
        "minor",
        lo,
        MINOR_MAX,
        &format!("a device minor{what}"),
        rule,
    );
}

/// `fileMode` of a device: permission bits (07777), optionally with the file type bits of
/// the device's own type (some engines write S_IFCHR|0666); anything else would be dropped.
fn file_mode(c: &mut Checker, d: &Map<String, Value>, path: &str) {
    let Some(mode) = d.get("fileMode").and_then(Value::as_u64) else {
        return;
    };
    let ty = mode & 0o170000;
    let want = match str_of(d, "type") {
        Some("c" | "u") => libc::S_IFCHR,
        Some("b") => libc::S_IFBLK,
        Some("p") => libc::S_IFIFO,
        _ => 0,
    };
    if mode > 0o177777 || (ty != 0 && ty != u64::from(want)) {
        c.error(&join(path, "fileMode"), format!("{mode} ({mode:#o}) is not a permission mode (0..=0o7777, with at most the device's own file type bits)"), "config-linux.md#devices: fileMode is the mode mknod(2) creates the device with");
    }
}

fn devices(c: &mut Checker, l: &Map<String, Value>) {
    const SECTION: &str = "config-linux.md#devices";
    let mut seen = HashMap::new();
    for (path, d) in c.objects(l, "linux", "devices", tables::DEVICE, SECTION) {
        c.known_value(
            d,
            &path,
            "type",
            tables::DEVICE_TYPES,
            "config-linux.md#devices: type is c, b, u or p (mknod(1))",
        );
        if let Some(p) = str_of(d, "path") {
            if !p.starts_with('/') {
                c.error(&join(&path, "path"), format!("{p:?} is not an absolute path"), "config-linux.md#devices: path is the full path to the device inside the container");
            } else if !p.starts_with("/dev/") {
                c.warn(&join(&path, "path"), format!("{p:?} is not under /dev"), "config-linux.md#devices: path MAY be anywhere, but runc only creates devices under /dev");
            }
        }
        let t = str_of(d, "type");
        if t.is_some_and(|t| t != "p") {
            for n in ["major", "minor"] {
                if !d.contains_key(n) {
                    c.error(
                        &join(&path, n),
                        "is missing",
                        "config-linux.md#devices: major and minor are REQUIRED unless type is p",
                    );
                }
            }
        }
        dev_numbers(c, d, &path, false, "config-linux.md#devices: major and minor are the numbers mknod(2) takes, 12 and 20 bits in the kernel's dev_t (larger values would be truncated to another device)");
        file_mode(c, d, &path);
        c.id_not_minus_one(d, &path, "uid", "a uid");
        c.id_not_minus_one(d, &path, "gid", "a gid");
        let major = d.get("major").and_then(Value::as_i64);
        let minor = d.get("minor").and_then(Value::as_i64);
        if let (Some(t), Some(major), Some(minor)) = (t, major, minor) {
            if let Some(first) = seen.insert((t, major, minor), path.clone()) {
                c.warn(&path, format!("same type, major and minor as {first}"), "config-linux.md#devices: the same type, major and minor SHOULD NOT be used for multiple devices");
            }
        }
    }
}

fn resources(c: &mut Checker, r: &Map<String, Value>) {
    const P: &str = "linux.resources";
    c.fields(r, P, tables::RESOURCES, "config-linux.md#control-groups");
    for (path, d) in c.objects(
        r,
        P,
        "devices",
        tables::DEVICE_RULE,
        "config-linux.md#allowed-device-list",
    ) {
        c.known_value(
            d,
            &path,
            "type",
            tables::DEVICE_RULE_TYPES,
            "config-linux.md#allowed-device-list: type is a (all), c (char) or b (block)",
        );
        dev_numbers(c, d, &path, true, "config-linux.md#allowed-device-list: major and minor are device numbers (12 and 20 bits in the kernel's dev_t) or -1 for all");
        if let Some(a) = str_of(d, "access") {
            if a.is_empty() || !a.chars().all(|ch| "rwm".contains(ch)) {
                c.error(&join(&path, "access"), format!("{a:?} is not a composition of r, w and m"), "config-linux.md#allowed-device-list: access is a composition of r (read), w (write), and m (mknod)");
            }
        }
    }
    if let Some(m) = obj_of(r, "memory") {
        let path = join(P, "memory");
        c.fields(m, &path, tables::MEMORY, "config-linux.md#memory");
        // 18446744073709551615 (uint64 -1, what engines send for "not set") is unset, as in
        // runc, which skips a swappiness that reads -1 as int64.
        if m.get("swappiness").and_then(Value::as_u64) != Some(u64::MAX) {
            c.range(
                m,
                &path,
                "swappiness",
                0,
                100,
                "config-linux.md#memory: swappiness values are from 0 to 100",
            );
        }
        for name in ["limit", "reservation", "swap", "kernel", "kernelTCP"] {
            c.int_range(
                m,
                &path,
                name,
                -1,
                i64::MAX.into(),
                "a memory limit in bytes (-1 is unlimited)",
                "config-linux.md#memory: limits are in bytes, -1 for unlimited",
            );
        }
        let limit = m.get("limit").and_then(Value::as_i64);
        let swap = m.get("swap").and_then(Value::as_i64);
        if let (Some(limit), Some(swap)) = (limit, swap) {
            if limit > 0 && swap > 0 && swap < limit {
                c.error(&join(&path, "swap"), format!("memory+swap limit {swap} is below the memory limit {limit}"), "config-linux.md#memory: swap is the limit of memory+swap usage, so it cannot be below limit (runc's rule)");
            }
        }
    }
    if let Some(cpu) = obj_of(r, "cpu") {
        let path = join(P, "cpu");
        c.fields(cpu, &path, tables::CPU, "config-linux.md#cpu");
        // 0 means "not set" for shares and period, as in runc.
        if cpu.get("shares").and_then(Value::as_u64) != Some(0) {
            c.int_range(cpu, &path, "shares", 2, 262_144, "cpu shares", "config-linux.md#cpu: shares is cpu.shares, which the kernel takes from 2 to 262144 (it silently clamps others)");
        }
        if cpu.get("period").and_then(Value::as_u64) != Some(0) {
            c.int_range(
                cpu,
                &path,
                "period",
                1000,
                1_000_000,
                "a CFS period in microseconds",
                "config-linux.md#cpu: period is cpu.cfs_period_us, 1ms to 1s",
            );
        }
        // -1 is unlimited and 0 not set (as in runc); else what the kernel's
        // tg_set_cfs_bandwidth takes: 1ms up to its max_cfs_runtime, (2^44 - 1) us.
        if !matches!(cpu.get("quota").and_then(Value::as_i64), Some(-1 | 0)) {
            c.int_range(
                cpu,
                &path,
                "quota",
                1000,
                CFS_QUOTA_MAX_US,
                "a CFS quota in microseconds (-1 is unlimited)",
                "config-linux.md#cpu: quota is cpu.cfs_quota_us, -1 for unlimited; the kernel \
                 takes 1000 (1ms) to 17592186044415 (2^44 - 1) microseconds",
            );
        }
        c.int_range(
            cpu,
            &path,
            "realtimeRuntime",
            -1,
            i64::MAX.into(),
            "a realtime runtime in microseconds (-1 is unlimited)",
            "config-linux.md#cpu: realtimeRuntime is cpu.rt_runtime_us, -1 for unlimited",
        );
        c.int_range(
            cpu,
            &path,
            "idle",
            0,
            1,
            "cpu.idle",
            "config-linux.md#cpu: idle is cpu.idle, 0 or 1",
        );
        for n in ["cpus", "mems"] {
            if let Some(s) = str_of(cpu, n) {
                if !is_cpu_list(s) {
                    c.error(&join(&path, n), format!("{s:?} is not a list like 0-3,7"), "config-linux.md#cpu: cpus and mems are lists in the cpuset list format (cpuset(7))");
                }
            }
        }
    }
    if let Some(p) = obj_of(r, "pids") {
        c.fields(p, &join(P, "pids"), tables::PIDS, "config-linux.md#pids");
        // Zero and negative values mean unlimited, as runc reads them.
        c.int_range(p, &join(P, "pids"), "limit", i64::MIN.into(), PID_MAX_LIMIT, "a pids limit", "config-linux.md#pids: limit is pids.max, which the kernel takes up to PID_MAX_LIMIT (4194304)");
    }
    if let Some(b) = obj_of(r, "blockIO") {
        let path = join(P, "blockIO");
        const S: &str = "config-linux.md#block-io";
        c.fields(b, &path, tables::BLOCK_IO, S);
        let rule = "config-linux.md#block-io: weight and leafWeight range from 10 to 1000";
        // 0 means "not set": docker writes `"weight": 0` into every config, and runc (like
        // berth-cgroups) leaves the file alone then.
        for name in ["weight", "leafWeight"] {
            if b.get(name).and_then(Value::as_i64) != Some(0) {
                c.range(b, &path, name, 10, 1000, rule);
            }
        }
        let dev_rule = "config-linux.md#block-io: major and minor are device numbers, 12 and 20 bits in the kernel's dev_t";
        for (wpath, w) in c.objects(b, &path, "weightDevice", tables::WEIGHT_DEVICE, S) {
            dev_numbers(c, w, &wpath, false, dev_rule);
            for name in ["weight", "leafWeight"] {
                if w.get(name).and_then(Value::as_i64) != Some(0) {
                    c.range(w, &wpath, name, 10, 1000, rule);
                }
            }
        }
        for name in [
            "throttleReadBpsDevice",
            "throttleWriteBpsDevice",
            "throttleReadIOPSDevice",
            "throttleWriteIOPSDevice",
        ] {
            for (tpath, t) in c.objects(b, &path, name, tables::THROTTLE_DEVICE, S) {
                dev_numbers(c, t, &tpath, false, dev_rule);
            }
        }
    }
    for (path, h) in c.objects(
        r,
        P,
        "hugepageLimits",
        tables::HUGEPAGE,
        "config-linux.md#huge-page-limits",
    ) {
        if let Some(size) = str_of(h, "pageSize") {
            if !is_page_size(size) {
                c.error(&join(&path, "pageSize"), format!("{size:?} is not <size><unit-prefix>B"), "config-linux.md#huge-page-limits: pageSize has the format <size><unit-prefix>B (64KB, 2MB, 1GB)");
            }
        }
    }
    if let Some(n) = obj_of(r, "network") {
        let path = join(P, "network");
        c.fields(n, &path, tables::NETWORK, "config-linux.md#network");
        c.objects(
            n,
            &path,
            "priorities",
            tables::NET_PRIORITY,
            "config-linux.md#network",
        );
    }
}

/// The most pids the kernel has (PID_MAX_LIMIT on 64-bit), the top of pids.max.
const PID_MAX_LIMIT: i128 = 4 * 1024 * 1024;

/// `0-3,7`: comma-separated numbers and ranges.
pub(super) fn is_cpu_list(s: &str) -> bool {
    let num = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    s.split(',').all(|part| match part.trim().split_once('-') {
        Some((a, b)) => num(a) && num(b),
        None => num(part.trim()),
    })
}

/// `2MB`, `64KB`, `1GB`.
fn is_page_size(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(&s[digits..], "KB" | "MB" | "GB" | "TB" | "PB")
}

fn sysctl(c: &mut Checker, doc: &Map<String, Value>, l: &Map<String, Value>, ns: &Namespaces) {
    const RULE: &str = "config-linux.md#sysctl: runc allows only namespaced sysctls, each with its namespace (net.* network, kernel.msg*/sem/shm*/fs.mqueue.* ipc, kernel.hostname/domainname uts)";
    let Some(map) = obj_of(l, "sysctl") else {
        return;
    };
    for name in map.keys() {
        let path = key("linux.sysctl", name);
        let needs = if name.starts_with("net.") {
            "network"
        } else if name.starts_with("fs.mqueue.") || tables::SYSCTL_IPC.contains(&name.as_str()) {
            "ipc"
        } else if name == "kernel.hostname" || name == "kernel.domainname" {
            "uts"
        } else {
            c.error(
                &path,
                format!("{name} is not in a separate kernel namespace"),
                RULE,
            );
            continue;
        };
        if !ns.has(needs) {
            c.error(&path, format!("{name} needs its own {needs} namespace, which linux.namespaces lacks (it would change the host's)"), RULE);
        }
        let field = name.trim_start_matches("kernel.");
        if needs == "uts" && str_of(doc, field).is_some() {
            c.warn(
                &path,
                format!("{name} conflicts with the {field} field"),
                &format!("config.md#{field}: set the {field} field instead of the sysctl"),
            );
        }
    }
}

fn seccomp(c: &mut Checker, s: &Map<String, Value>) {
    const P: &str = "linux.seccomp";
    const S: &str = "config-linux.md#seccomp";
    c.fields(s, P, tables::SECCOMP, S);
    let actions_rule = "config-linux.md#seccomp: actions are SCMP_ACT_* constants of libseccomp";
    c.known_value(s, P, "defaultAction", tables::SECCOMP_ACTIONS, actions_rule);
    c.known_names(
        s,
        P,
        "architectures",
        tables::SECCOMP_ARCHES,
        "config-linux.md#seccomp: architectures are SCMP_ARCH_* constants of libseccomp",
    );
    c.known_names(
        s,
        P,
        "flags",
        tables::SECCOMP_FLAGS,
        "config-linux.md#seccomp: flags are SECCOMP_FILTER_FLAG_* constants of seccomp(2)",
    );
    errno_action(c, s, P, "defaultAction", "defaultErrnoRet");
    let listener = str_of(s, "listenerPath").is_some_and(|p| !p.is_empty());
    if s.contains_key("listenerMetadata") && !listener {
        c.error(
            &join(P, "listenerMetadata"),
            "is set without listenerPath",
            "config-linux.md#seccomp: listenerMetadata MUST NOT be set if listenerPath is not set",
        );
    }
    if str_of(s, "defaultAction") == Some("SCMP_ACT_NOTIFY") {
        c.error(&join(P, "defaultAction"), "SCMP_ACT_NOTIFY cannot be the default action", "config-linux.md#seccomp: runc refuses SCMP_ACT_NOTIFY as defaultAction (it would trap the runtime's own setup)");
    }
    let mut notify = false;
    for (path, sc) in c.objects(s, P, "syscalls", tables::SYSCALL, S) {
        if sc
            .get("names")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            c.error(
                &join(&path, "names"),
                "is empty",
                "config-linux.md#seccomp: names MUST contain at least one entry",
            );
        }
        for (i, n) in sc
            .get("names")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if n.as_str() == Some("") {
                c.error(
                    &index(&join(&path, "names"), i),
                    "is an empty syscall name",
                    "config-linux.md#seccomp: names are syscall names",
                );
            }
        }
        c.known_value(sc, &path, "action", tables::SECCOMP_ACTIONS, actions_rule);
        notify |= str_of(sc, "action") == Some("SCMP_ACT_NOTIFY");
        errno_action(c, sc, &path, "action", "errnoRet");
        for (apath, a) in c.objects(sc, &path, "args", tables::SYSCALL_ARG, S) {
            c.known_value(
                a,
                &apath,
                "op",
                tables::SECCOMP_OPS,
                "config-linux.md#seccomp: op is a SCMP_CMP_* constant of libseccomp",
            );
            c.range(
                a,
                &apath,
                "index",
                0,
                5,
                "config-linux.md#seccomp: index is a syscall argument index, 0 to 5",
            );
        }
    }
    if notify && !listener {
        c.error(&join(P, "listenerPath"), "SCMP_ACT_NOTIFY is used but listenerPath is not set", "config-linux.md#seccomp: listenerPath is the socket the runtime sends the seccomp fd to when SCMP_ACT_NOTIFY is used");
    }
}

/// An errno return value is only meaningful with SCMP_ACT_ERRNO or SCMP_ACT_TRACE.
fn errno_action(c: &mut Checker, obj: &Map<String, Value>, path: &str, action: &str, errno: &str) {
    let Some(a) = str_of(obj, action) else { return };
    match a {
        "SCMP_ACT_ERRNO" => c.int_range(obj, path, errno, 0, 4095, "an errno", "config-linux.md#seccomp: errnoRet is the errno the syscall fails with; the kernel caps SECCOMP_RET_ERRNO data at MAX_ERRNO (4095)"),
        "SCMP_ACT_TRACE" => c.int_range(obj, path, errno, 0, 65535, "a SECCOMP_RET_TRACE message", "config-linux.md#seccomp: with SCMP_ACT_TRACE the value is the 16-bit SECCOMP_RET_DATA given to the tracer"),
        _ => {}
    }
    if obj.contains_key(errno) && a != "SCMP_ACT_ERRNO" && a != "SCMP_ACT_TRACE" {
        c.error(&join(path, errno), format!("is set but {a} takes no errno"), "config-linux.md#seccomp: when the action doesn't support an errno, the runtime MUST print an error and fail");
    }
}

fn propagation(c: &mut Checker, l: &Map<String, Value>) {
    let Some(p) = str_of(l, "rootfsPropagation") else {
        return;
    };
    let path = "linux.rootfsPropagation";
    let rule = "config-linux.md#rootfs-mount-propagation: its value is either shared, slave, private or unbindable";
    if tables::PROPAGATION_RUNC.contains(&p) {
        c.warn(
            path,
            format!("{p:?} is a recursive form that runc accepts but the spec does not list"),
            rule,
        );
    } else if !tables::PROPAGATION.contains(&p) {
        c.error(path, format!("unknown propagation {p:?}"), rule);
    }
}

fn intel_rdt(c: &mut Checker, rdt: &Map<String, Value>) {
    const P: &str = "linux.intelRdt";
    c.fields(rdt, P, tables::INTEL_RDT, "config-linux.md#intelrdt");
    if let Some(mb) = str_of(rdt, "memBwSchema") {
        if !mb.starts_with("MB:") || mb.contains('\n') {
            c.error(&join(P, "memBwSchema"), format!("{mb:?} does not start with MB: or has a newline"), "config-linux.md#intelrdt: memBwSchema MUST start with MB: and MUST NOT contain newlines");
        }
    }
    if let Some(l3) = str_of(rdt, "l3CacheSchema") {
        if !l3.starts_with("L3:") || l3.contains('\n') {
            c.warn(&join(P, "l3CacheSchema"), format!("{l3:?} does not start with L3: or has a newline"), "config-linux.md#intelrdt: l3CacheSchema SHOULD start with L3: and SHOULD NOT contain newlines");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::validate::tests::{has, lines};

    #[test]
    fn memory_policy_modes_nodes_and_flags() {
        let mp = |p: serde_json::Value| lines(move |v| v["linux"]["memoryPolicy"] = p);
        has(
            &mp(json!({"mode": "MPOL_FOO"})),
            "error: linux.memoryPolicy.mode: unknown value \"MPOL_FOO\"",
        );
        has(
            &mp(json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_X"]})),
            "error: linux.memoryPolicy.flags[0]: unknown value \"MPOL_F_X\"",
        );
        has(
            &mp(json!({"mode": "MPOL_BIND"})),
            "error: linux.memoryPolicy.nodes: MPOL_BIND needs at least one node",
        );
        has(
            &mp(json!({"mode": "MPOL_LOCAL", "nodes": "0"})),
            "error: linux.memoryPolicy.nodes: MPOL_LOCAL takes no nodes",
        );
        has(
            &mp(json!({"mode": "MPOL_DEFAULT", "flags": ["MPOL_F_STATIC_NODES"]})),
            "error: linux.memoryPolicy.flags: MPOL_DEFAULT takes no flags",
        );
        has(
            &mp(json!({"mode": "MPOL_INTERLEAVE", "nodes": "0-1",
                       "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]})),
            "error: linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
        );
        has(
            &mp(json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]})),
            "error: linux.memoryPolicy.flags: MPOL_F_NUMA_BALANCING goes only with MPOL_BIND or MPOL_PREFERRED_MANY",
        );
        has(
            &mp(json!({"mode": "MPOL_PREFERRED", "flags": ["MPOL_F_STATIC_NODES"]})),
            "error: linux.memoryPolicy.nodes: MPOL_PREFERRED without nodes",
        );
        has(
            &mp(json!({"mode": "MPOL_BIND", "nodes": "0-x"})),
            "error: linux.memoryPolicy.nodes: \"0-x\" is not a node list like 0-3,7",
        );
        for ok in [
            json!({"mode": "MPOL_PREFERRED"}),
            json!({"mode": "MPOL_LOCAL"}),
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_STATIC_NODES"]}),
            json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0-3,7", "flags": ["MPOL_F_RELATIVE_NODES"]}),
        ] {
            assert!(mp(ok.clone()).is_empty(), "{ok}");
        }
    }

    #[test]
    fn namespace_types_duplicates_and_paths() {
        let l = lines(|v| {
            v["linux"]["namespaces"] = json!([
                {"type": "pid"}, {"type": "pid"}, {"type": "net"},
                {"type": "network", "path": "run/netns/a"}, {"path": "/x"}, {"type": "ipc", "path": ""}
            ]);
        });
        has(
            &l,
            "error: linux.namespaces[1].type: duplicate namespace type pid",
        );
        has(
            &l,
            "error: linux.namespaces[2].type: unknown namespace type \"net\"",
        );
        has(
            &l,
            "error: linux.namespaces[3].path: \"run/netns/a\" is not an absolute path",
        );
        has(&l, "error: linux.namespaces[4].type: is missing");
        assert!(!l.iter().any(|x| x.contains("namespaces[5]")), "{l:?}");
    }

    #[test]
    fn mappings_need_user_namespace_and_back() {
        let m = json!([{"containerID": 0, "hostID": 1000, "size": 0}]);
        let l = lines(|v| v["linux"]["uidMappings"] = m.clone());
        has(&l, "error: linux.uidMappings: uidMappings is set but linux.namespaces has no user namespace");
        has(&l, "error: linux.uidMappings[0].size: maps no ids");
        let l = lines(|v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        });
        has(
            &l,
            "error: linux.namespaces: a new user namespace has no uidMappings or no gidMappings",
        );
        let l = lines(|v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user", "path": "/proc/1/ns/user"}));
        });
        assert!(l.is_empty(), "{l:?}");
    }

    #[test]
    fn time_offsets() {
        let l = lines(|v| {
            v["linux"]["timeOffsets"] =
                json!({"monotonic": {"secs": 1}, "realtime": {"nanosecs": 2000000000u64}})
        });
        has(
            &l,
            "error: linux.timeOffsets: is set but linux.namespaces has no time namespace",
        );
        has(&l, "error: linux.timeOffsets[\"realtime\"]: unknown clock");
        has(
            &l,
            "error: linux.timeOffsets[\"realtime\"].nanosecs: is a second or more",
        );
    }

    #[test]
    fn devices() {
        let l = lines(|v| {
            v["linux"]["devices"] = json!([
                {"type": "x", "path": "/dev/a", "major": 1, "minor": 1},
                {"type": "c", "path": "dev/b", "major": 1, "minor": 3},
                {"type": "c", "path": "/tmp/c", "major": 1, "minor": 3},
                {"type": "b", "path": "/dev/d"},
                {"type": "p", "path": "/dev/fifo"}
            ]);
        });
        has(&l, "error: linux.devices[0].type: unknown value \"x\"");
        has(
            &l,
            "error: linux.devices[1].path: \"dev/b\" is not an absolute path",
        );
        has(
            &l,
            "warning: linux.devices[2].path: \"/tmp/c\" is not under /dev",
        );
        has(
            &l,
            "warning: linux.devices[2]: same type, major and minor as linux.devices[1]",
        );
        has(&l, "error: linux.devices[3].major: is missing");
        assert!(!l.iter().any(|x| x.contains("devices[4]")), "{l:?}");
    }

    /// cpu.quota is what cpu.cfs_quota_us takes: 2^63-1 passed validate and create failed
    /// with EINVAL; -1 and 0 (unlimited, not set) stay valid.
    #[test]
    fn cpu_quota_is_what_the_kernel_takes() {
        for (quota, ok) in [
            (json!(-1), true),
            (json!(0), true),
            (json!(1000), true),
            (json!(17_592_186_044_415u64), true),
            (json!(999), false),
            (json!(17_592_186_044_416u64), false),
            (json!(i64::MAX), false),
        ] {
            let l = lines(|v| {
                v["linux"]["resources"] = json!({"cpu": {"quota": quota, "period": 100000}});
            });
            assert_eq!(
                !l.iter().any(|x| x.contains("cpu.quota")),
                ok,
                "{quota}: {l:?}"
            );
        }
    }

    /// memory.swappiness 18446744073709551615 (uint64 -1) is "not set", as runc reads it.
    #[test]
    fn swappiness_of_uint64_minus_one_is_unset() {
        let l = lines(|v| {
            v["linux"]["resources"] = json!({"memory": {"swappiness": u64::MAX}});
        });
        assert!(!l.iter().any(|x| x.contains("swappiness")), "{l:?}");
    }

    /// uint64 fields past int64's range are range-checked too (they were skipped).
    #[test]
    fn ranges_hold_past_int64() {
        let big = u64::MAX;
        let l = lines(|v| {
            v["linux"]["resources"] = json!({
                "memory": {"swappiness": big - 1},
                "blockIO": {"weight": big, "leafWeight": big},
            });
            v["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": big, "value": 1, "op": "SCMP_CMP_EQ"}]}]
            });
        });
        has(
            &l,
            "error: linux.resources.memory.swappiness: 18446744073709551614 is outside 0..=100",
        );
        has(
            &l,
            "error: linux.resources.blockIO.weight: 18446744073709551615 is outside 10..=1000",
        );
        has(
            &l,
            "error: linux.resources.blockIO.leafWeight: 18446744073709551615 is outside",
        );
        has(
            &l,
            "error: linux.seccomp.syscalls[0].args[0].index: 18446744073709551615 is outside 0..=5",
        );
    }

    #[test]
    fn resources() {
        let l = lines(|v| {
            v["linux"]["resources"] = json!({
                "devices": [{"allow": false, "access": "rwx"}, {"type": "z", "allow": true}, {"access": "r"}],
                "memory": {"limit": 100, "swap": 50, "swappiness": 101},
                "cpu": {"cpus": "0-3,x", "shares": -2},
                "pids": {},
                "blockIO": {"weight": 5, "leafWeight": 0, "weightDevice": [{"major": 8, "minor": 0, "weight": 2000}]},
                "hugepageLimits": [{"pageSize": "2M", "limit": 1}],
                "network": {"classID": "x"}
            });
        });
        has(
            &l,
            "error: linux.resources.devices[0].access: \"rwx\" is not a composition",
        );
        has(
            &l,
            "error: linux.resources.devices[1].type: unknown value \"z\"",
        );
        has(&l, "error: linux.resources.devices[2].allow: is missing");
        has(&l, "error: linux.resources.memory.swap: memory+swap limit 50 is below the memory limit 100");
        has(
            &l,
            "error: linux.resources.memory.swappiness: 101 is outside 0..=100",
        );
        has(
            &l,
            "error: linux.resources.cpu.cpus: \"0-3,x\" is not a list",
        );
        has(&l, "error: linux.resources.cpu.shares: must be a uint64");
        assert!(!l.iter().any(|x| x.contains("pids")), "{l:?}");
        has(
            &l,
            "error: linux.resources.blockIO.weight: 5 is outside 10..=1000",
        );
        has(
            &l,
            "error: linux.resources.blockIO.weightDevice[0].weight: 2000 is outside",
        );
        has(
            &l,
            "error: linux.resources.hugepageLimits[0].pageSize: \"2M\"",
        );
        has(
            &l,
            "error: linux.resources.network.classID: must be a uint32",
        );
    }

    #[test]
    fn sysctl_needs_its_namespace() {
        let l = lines(|v| {
            v["linux"]["sysctl"] = json!({
                "net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "1",
                "vm.swappiness": "1", "kernel.hostname": "x", "net.core.somaxconn": 5
            });
        });
        has(&l, "error: linux.sysctl[\"net.ipv4.ip_forward\"]: net.ipv4.ip_forward needs its own network namespace");
        has(
            &l,
            "error: linux.sysctl[\"kernel.shmmax\"]: kernel.shmmax needs its own ipc namespace",
        );
        has(&l, "error: linux.sysctl[\"fs.mqueue.msg_max\"]: fs.mqueue.msg_max needs its own ipc namespace");
        has(&l, "error: linux.sysctl[\"vm.swappiness\"]: vm.swappiness is not in a separate kernel namespace");
        has(
            &l,
            "error: linux.sysctl[\"net.core.somaxconn\"]: must be a string",
        );
        assert!(
            !l.iter().any(|x| x.contains("[\"kernel.hostname\"]")),
            "{l:?}"
        );
        let l = lines(|v| {
            v["linux"]["namespaces"] =
                json!([{"type": "network"}, {"type": "ipc"}, {"type": "uts"}]);
            v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "1"});
        });
        assert!(l.is_empty(), "{l:?}");
    }

    #[test]
    fn seccomp() {
        let l = lines(|v| {
            v["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_DENY",
                "architectures": ["SCMP_ARCH_X86_64", "x86_64"],
                "flags": ["SECCOMP_FILTER_FLAG_NOPE"],
                "listenerMetadata": "m",
                "syscalls": [
                    {"names": [], "action": "SCMP_ACT_ALLOW", "errnoRet": 1},
                    {"names": ["kill"], "action": "SCMP_ACT_NOTIFY",
                     "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_XX"}]},
                    {"action": "SCMP_ACT_ERRNO", "errnoRet": 1}
                ]
            });
        });
        has(
            &l,
            "error: linux.seccomp.defaultAction: unknown value \"SCMP_ACT_DENY\"",
        );
        has(
            &l,
            "error: linux.seccomp.architectures[1]: unknown value \"x86_64\"",
        );
        has(&l, "error: linux.seccomp.flags[0]: unknown value");
        has(
            &l,
            "error: linux.seccomp.listenerMetadata: is set without listenerPath",
        );
        has(&l, "error: linux.seccomp.syscalls[0].names: is empty");
        has(
            &l,
            "error: linux.seccomp.syscalls[0].errnoRet: is set but SCMP_ACT_ALLOW takes no errno",
        );
        has(
            &l,
            "error: linux.seccomp.syscalls[1].args[0].op: unknown value",
        );
        has(
            &l,
            "error: linux.seccomp.syscalls[1].args[0].index: 6 is outside 0..=5",
        );
        has(&l, "error: linux.seccomp.syscalls[2].names: is missing");
        has(
            &l,
            "error: linux.seccomp.listenerPath: SCMP_ACT_NOTIFY is used",
        );
        assert!(
            !l.iter().any(|x| x.contains("syscalls[2].errnoRet")),
            "{l:?}"
        );
    }

    #[test]
    fn propagation_and_paths() {
        let l = lines(|v| {
            v["linux"]["rootfsPropagation"] = json!("rslave");
            v["linux"]["maskedPaths"] = json!(["/proc/kcore", "proc/keys"]);
            v["linux"]["readonlyPaths"] = json!(["sys"]);
        });
        has(
            &l,
            "warning: linux.rootfsPropagation: \"rslave\" is a recursive form",
        );
        has(&l, "error: linux.maskedPaths[1]: \"proc/keys\" is not an absolute path (config-linux.md#maskedpaths");
        has(&l, "error: linux.readonlyPaths[0]:");
        has(
            &lines(|v| v["linux"]["rootfsPropagation"] = json!("both")),
            "error: linux.rootfsPropagation: unknown propagation",
        );
        assert!(lines(|v| v["linux"]["rootfsPropagation"] = json!("private")).is_empty());
    }

    #[test]
    fn personality_and_rdt() {
        let l = lines(|v| {
            v["linux"]["personality"] = json!({"domain": "LINUX64"});
            v["linux"]["intelRdt"] = json!({"memBwSchema": "0=20", "l3CacheSchema": "0=7f0"});
        });
        has(&l, "error: linux.personality.domain: unknown value");
        has(&l, "error: linux.intelRdt.memBwSchema:");
        has(&l, "warning: linux.intelRdt.l3CacheSchema:");
    }

    #[test]
    fn device_numbers_fit_dev_t() {
        let l = lines(|v| {
            v["linux"]["devices"] = json!([
                {"type": "c", "path": "/dev/a", "major": 4294967297u64, "minor": 1},
                {"type": "c", "path": "/dev/b", "major": 4095, "minor": 1048575},
                {"type": "b", "path": "/dev/c", "major": -1, "minor": 1048576},
                {"type": "c", "path": "/dev/d", "major": 1, "minor": 3, "fileMode": 0o170666, "uid": 4294967295u64},
                {"type": "c", "path": "/dev/e", "major": 1, "minor": 5, "fileMode": 0o020666, "gid": 4294967295u64}
            ]);
        });
        has(&l, "error: linux.devices[0].major: 4294967297 is out of range for a device major (0..=4095)");
        assert!(!l.iter().any(|x| x.contains("devices[1]")), "{l:?}");
        has(
            &l,
            "error: linux.devices[2].major: -1 is out of range for a device major",
        );
        has(&l, "error: linux.devices[2].minor: 1048576 is out of range for a device minor (0..=1048575)");
        has(
            &l,
            "error: linux.devices[3].fileMode: 61878 (0o170666) is not a permission mode",
        );
        has(&l, "error: linux.devices[3].uid: 4294967295 is (uid_t)-1");
        has(&l, "error: linux.devices[4].gid: 4294967295 is (uid_t)-1");
        assert!(
            !l.iter().any(|x| x.contains("devices[4].fileMode")),
            "{l:?}"
        );
    }

    #[test]
    fn resource_numbers_fit_their_files() {
        let l = lines(|v| {
            v["linux"]["resources"] = json!({
                "devices": [{"allow": true, "type": "c", "major": -1, "minor": -1, "access": "r"},
                            {"allow": true, "type": "c", "major": 4294967297u64, "minor": -2, "access": "r"}],
                "memory": {"limit": -2, "swap": -1, "kernel": -5},
                "cpu": {"shares": 1u64 << 60, "quota": -2, "period": 10, "idle": 2, "realtimeRuntime": -3},
                "pids": {"limit": 5000000},
                "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 1048576, "rate": 1}],
                            "weightDevice": [{"major": 5000, "minor": 0, "weight": 100}]}
            });
        });
        assert!(!l.iter().any(|x| x.contains("devices[0]")), "{l:?}");
        has(&l, "error: linux.resources.devices[1].major: 4294967297 is out of range for a device major (or -1 for all) (-1..=4095)");
        has(
            &l,
            "error: linux.resources.devices[1].minor: -2 is out of range",
        );
        has(
            &l,
            "error: linux.resources.memory.limit: -2 is out of range for a memory limit",
        );
        has(
            &l,
            "error: linux.resources.memory.kernel: -5 is out of range",
        );
        assert!(!l.iter().any(|x| x.contains("memory.swap")), "{l:?}");
        has(&l, "error: linux.resources.cpu.shares: 1152921504606846976 is out of range for cpu shares (2..=262144)");
        has(&l, "error: linux.resources.cpu.quota: -2 is out of range");
        has(&l, "error: linux.resources.cpu.period: 10 is out of range");
        has(&l, "error: linux.resources.cpu.idle: 2 is out of range");
        has(
            &l,
            "error: linux.resources.cpu.realtimeRuntime: -3 is out of range",
        );
        has(
            &l,
            "error: linux.resources.pids.limit: 5000000 is out of range for a pids limit",
        );
        has(&l, "error: linux.resources.blockIO.throttleReadBpsDevice[0].minor: 1048576 is out of range");
        has(
            &l,
            "error: linux.resources.blockIO.weightDevice[0].major: 5000 is out of range",
        );
        // Zero is "not set", negative pids limits are unlimited (runc).
        assert!(lines(|v| v["linux"]["resources"] =
            json!({"cpu": {"shares": 0, "period": 0}, "pids": {"limit": -1}}))
        .is_empty());
    }

    #[test]
    fn id_mappings_stay_in_32_bits() {
        let l = lines(|v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            v["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 4294967295u64, "size": 1}]);
            v["linux"]["gidMappings"] = json!([{"containerID": 4294901760u64, "hostID": 0, "size": 65536},
                                               {"containerID": 0, "hostID": 4294967296u64, "size": 1}]);
        });
        has(&l, "error: linux.uidMappings[0].size: hostID 4294967295 + size 1 is out of range for a 32-bit id");
        has(
            &l,
            "error: linux.gidMappings[0].size: containerID 4294901760 + size 65536 is out of range",
        );
        has(&l, "error: linux.gidMappings[1].hostID: must be a uint32");
        let l = lines(|v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            let many: Vec<_> = (0..341)
                .map(|i| json!({"containerID": i, "hostID": 100000 + i, "size": 1}))
                .collect();
            v["linux"]["uidMappings"] = json!(many);
            v["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 1000, "size": 4294966295u64}]);
        });
        has(
            &l,
            "error: linux.uidMappings: 341 ranges are more than the kernel takes (340)",
        );
        assert!(!l.iter().any(|x| x.contains("gidMappings")), "{l:?}");
    }

    #[test]
    fn seccomp_errno_and_time_offsets() {
        let l = lines(|v| {
            v["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4096,
                "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536},
                             {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4095}]
            });
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "time"}));
            v["linux"]["timeOffsets"] = json!({"monotonic": {"secs": -9223372037i64}});
        });
        has(
            &l,
            "error: linux.seccomp.defaultErrnoRet: 4096 is out of range for an errno (0..=4095)",
        );
        has(
            &l,
            "error: linux.seccomp.syscalls[0].errnoRet: 65536 is out of range",
        );
        assert!(!l.iter().any(|x| x.contains("syscalls[1]")), "{l:?}");
        has(
            &l,
            "error: linux.timeOffsets[\"monotonic\"].secs: -9223372037 is out of range",
        );
    }

    #[test]
    fn cgroups_path_relative_is_fine() {
        assert!(lines(|v| v["linux"]["cgroupsPath"] = json!("berth/web")).is_empty());
        has(
            &lines(|v| v["linux"]["cgroupsPath"] = json!(5)),
            "error: linux.cgroupsPath: must be a string",
        );
    }
}
