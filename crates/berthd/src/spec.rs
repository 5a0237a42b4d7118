//! The OCI runtime spec of a container: berth-image's spec for the image (runc's defaults)
//! with the container's Config and HostConfig applied as dockerd applies them.

use std::path::Path;

use berth_image::bundle::{resolve_user, runtime_spec, BundleOptions};
use berth_image::Image;
use serde_json::{json, Value};

use crate::error::Error;
use crate::store::Record;

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capabilities of our own bounding set, in bit order (the `caps` crate knows every one
/// this kernel ABI defines): what `Privileged` and `CapAdd: ALL` give, as dockerd gives the
/// caps it has.
fn own_caps() -> Vec<String> {
    let bnd = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    let mut known: Vec<caps::Capability> = caps::all().into_iter().collect();
    known.sort_by_key(|c| c.index());
    known
        .into_iter()
        .filter(|c| bnd & c.bitmask() != 0)
        .map(|c| c.to_string())
        .collect()
}

/// The init binary for `--init`: docker's `docker-init` (tini), `tini-static` or `tini`.
pub fn init_binary() -> Option<std::path::PathBuf> {
    [
        "/usr/bin/docker-init",
        "/usr/bin/tini-static",
        "/usr/bin/tini",
        "/usr/local/bin/docker-init",
    ]
    .iter()
    .filter_map(|p| std::fs::canonicalize(p).ok())
    .find(|p| p.is_file())
}

/// `NET_ADMIN` or `cap_net_admin` -> `CAP_NET_ADMIN`.
fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set for CapAdd/CapDrop/Privileged, as docker computes it.
pub fn capabilities(
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Vec<String>, Error> {
    if privileged {
        return Ok(own_caps());
    }
    for c in add.iter().chain(drop) {
        let n = cap_name(c);
        if n != "CAP_ALL" && n.parse::<caps::Capability>().is_err() {
            return Err(Error::BadParameter(format!("unknown capability: {c:?}")));
        }
    }
    let drop: Vec<String> = drop.iter().map(|c| cap_name(c)).collect();
    let add: Vec<String> = add.iter().map(|c| cap_name(c)).collect();
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|c| c == "CAP_ALL") {
        caps = own_caps();
    }
    for c in add {
        if c != "CAP_ALL" && !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

/// A mount of the container, from Binds, Mounts or Tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// A host path.
    Bind {
        /// Host path.
        src: String,
        /// Container path.
        dst: String,
        /// Read-only.
        ro: bool,
    },
    /// A named volume (created when missing).
    Volume {
        /// Volume name.
        name: String,
        /// Container path.
        dst: String,
        /// Read-only.
        ro: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Container path.
        dst: String,
        /// Mount options (`size=`, `mode=`).
        options: Vec<String>,
    },
}

impl MountSpec {
    /// The container path.
    pub fn destination(&self) -> &str {
        match self {
            MountSpec::Bind { dst, .. }
            | MountSpec::Volume { dst, .. }
            | MountSpec::Tmpfs { dst, .. } => dst,
        }
    }
}

/// One `-v SRC:DST[:OPTS]` (SRC a host path or a volume name), parsed.
fn parse_bind(b: &str) -> Result<MountSpec, Error> {
    let parts: Vec<&str> = b.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(Error::BadParameter(format!(
                "invalid volume specification: '{b}'"
            )))
        }
    };
    if !dst.starts_with('/') {
        return Err(Error::BadParameter(format!(
            "invalid volume specification: '{b}': mount path must be absolute"
        )));
    }
    let ro = opts.split(',').any(|o| o == "ro");
    if src.starts_with('/') {
        return Ok(MountSpec::Bind {
            src: src.to_owned(),
            dst: dst.to_owned(),
            ro,
        });
    }
    if !crate::volumes::valid_name(src) {
        return Err(Error::BadParameter(format!(
            "invalid volume specification: '{b}': \"{src}\" includes invalid characters for a local volume name"
        )));
    }
    Ok(MountSpec::Volume {
        name: src.to_owned(),
        dst: dst.to_owned(),
        ro,
    })
}

/// A container's command, as [`command`] merges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Config.Entrypoint (`None`: null).
    pub entrypoint: Option<Vec<String>>,
    /// Config.Cmd.
    pub cmd: Vec<String>,
    /// What runs: the entrypoint, then the command (never empty).
    pub argv: Vec<String>,
}

/// The container's command from the request's `Entrypoint`/`Cmd` and the image's, as dockerd
/// merges them.
///
/// An entrypoint of one empty string (`--entrypoint ''`) clears the image's entrypoint and
/// does not inherit its Cmd; an empty one (`[]`) clears the entrypoint but inherits the Cmd
/// when none is given; none inherits both. Errors: nothing to run is dockerd's 400
/// "No command specified".
pub fn command(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    image: &oci_spec::image::Config,
) -> Result<Command, Error> {
    let reset = matches!(entrypoint, Some([e]) if e.is_empty());
    let cmd: Vec<String> = match cmd {
        Some(c) if !c.is_empty() => c.to_vec(),
        _ if entrypoint.is_none_or(|e| e.is_empty()) => image.cmd().clone().unwrap_or_default(),
        _ => Vec::new(),
    };
    let entrypoint: Option<Vec<String>> = match entrypoint {
        _ if reset => None,
        Some(e) => Some(e.to_vec()),
        None => image.entrypoint().clone(),
    };
    let mut argv = entrypoint.clone().unwrap_or_default();
    argv.extend(cmd.iter().cloned());
    if argv.is_empty() {
        return Err(Error::BadParameter("No command specified".into()));
    }
    Ok(Command {
        entrypoint,
        cmd,
        argv,
    })
}

/// Fill the Config fields that dockerd fills at create: `Hostname` (the id's first 12 digits,
/// or the host's name with `--network host`), and the image's `ExposedPorts` and `Volumes`
/// merged with the request's.
pub fn complete_config(
    config: &mut bollard_stubs::models::ContainerConfig,
    image: &oci_spec::image::Config,
    host_config: &bollard_stubs::models::HostConfig,
    id: &str,
) {
    if config.hostname.as_deref().unwrap_or("").is_empty() {
        let host = host_config.network_mode.as_deref() == Some("host");
        config.hostname = Some(
            host.then(|| {
                nix::unistd::gethostname()
                    .ok()
                    .map(|h| h.to_string_lossy().into_owned())
            })
            .flatten()
            .unwrap_or_else(|| id[..12].to_owned()),
        );
    }
    for (mine, theirs) in [
        (&mut config.exposed_ports, image.exposed_ports()),
        (&mut config.volumes, image.volumes()),
    ] {
        for v in theirs.iter().flatten() {
            let list = mine.get_or_insert_with(Vec::new);
            if !list.contains(v) {
                list.push(v.clone());
            }
        }
    }
}

/// Every mount of a container: its HostConfig's ([`mounts_of`]) and its anonymous volumes.
pub fn all_mounts(rec: &Record) -> Result<Vec<MountSpec>, Error> {
    let mut v = mounts_of(&rec.host_config)?;
    for b in &rec.anonymous {
        v.push(parse_bind(b)?);
    }
    Ok(v)
}

/// Every mount a HostConfig asks for: Binds, Mounts (bind, volume, tmpfs) and Tmpfs.
pub fn mounts_of(hc: &bollard_stubs::models::HostConfig) -> Result<Vec<MountSpec>, Error> {
    use bollard_stubs::models::MountType;
    let mut out = Vec::new();
    for b in hc.binds.iter().flatten() {
        out.push(parse_bind(b)?);
    }
    for m in hc.mounts.iter().flatten() {
        let dst = m.target.clone().unwrap_or_default();
        if !dst.starts_with('/') {
            return Err(Error::BadParameter(format!(
                "invalid mount config: mount path must be absolute: {dst:?}"
            )));
        }
        let ro = m.read_only.unwrap_or(false);
        let src = m.source.clone().unwrap_or_default();
        out.push(match m.typ {
            Some(MountType::BIND) => {
                if !src.starts_with('/') {
                    return Err(Error::BadParameter(format!(
                        "invalid mount config for type \"bind\": invalid mount path: {src:?}"
                    )));
                }
                MountSpec::Bind { src, dst, ro }
            }
            Some(MountType::VOLUME) => {
                let name = if src.is_empty() {
                    crate::util::random_id()
                } else {
                    src
                };
                if !crate::volumes::valid_name(&name) {
                    return Err(Error::BadParameter(format!("invalid volume name {name:?}")));
                }
                MountSpec::Volume { name, dst, ro }
            }
            Some(MountType::TMPFS) => {
                let mut options = Vec::new();
                if let Some(t) = &m.tmpfs_options {
                    if let Some(sz) = t.size_bytes.filter(|s| *s > 0) {
                        options.push(format!("size={sz}"));
                    }
                    if let Some(mode) = t.mode.filter(|m| *m > 0) {
                        options.push(format!("mode={mode:o}"));
                    }
                }
                MountSpec::Tmpfs { dst, options }
            }
            t => {
                return Err(Error::BadParameter(format!(
                    "mount type {} is not supported by berthd yet (bind, volume, tmpfs)",
                    t.map(|t| t.to_string()).unwrap_or_default()
                )))
            }
        });
    }
    for (dst, o) in hc.tmpfs.iter().flatten() {
        out.push(MountSpec::Tmpfs {
            dst: dst.clone(),
            options: o
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for m in &out {
        if !seen.insert(m.destination().to_owned()) {
            return Err(Error::BadParameter(format!(
                "Duplicate mount point: {}",
                m.destination()
            )));
        }
    }
    Ok(out)
}

/// Check the HostConfig fields berthd applies, before anything is created (400 on error).
pub fn validate(rec: &Record) -> Result<(), Error> {
    let hc = &rec.host_config;
    validate_resources(hc, false)?;
    validate_config(&rec.config)?;
    for dst in hc.tmpfs.iter().flatten().map(|(d, _)| d) {
        if !dst.starts_with('/') {
            return Err(Error::BadParameter(format!(
                "invalid mount path: '{dst}' mount path must be absolute"
            )));
        }
    }
    mounts_of(hc)?;
    // `--mount type=bind` needs its source; a `-v` bind's is made at start, as dockerd does.
    for m in hc.mounts.iter().flatten() {
        let src = m.source.clone().unwrap_or_default();
        if m.typ == Some(bollard_stubs::models::MountType::BIND) && !Path::new(&src).exists() {
            return Err(Error::BadParameter(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {src}"
            )));
        }
    }
    if hc.publish_all_ports.unwrap_or(false) {
        return Err(Error::BadParameter(
            "publishing all ports (-P) is not supported by berthd yet".into(),
        ));
    }
    published(hc)?;
    match hc.network_mode.as_deref().unwrap_or("default") {
        "default" | "bridge" | "none" | "host" => {}
        m if m.starts_with("container:") => {}
        m => {
            return Err(Error::BadParameter(format!(
                "network mode {m:?} is not supported by berthd yet (none, host)"
            )))
        }
    }
    capabilities(
        hc.cap_add.as_deref().unwrap_or_default(),
        hc.cap_drop.as_deref().unwrap_or_default(),
        hc.privileged.unwrap_or(false),
    )?;
    devices(hc)?;
    crate::seccomp::for_container(hc)?;
    Ok(())
}

/// dockerd's smallest memory limit (and reservation): 6 MiB.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// A cpuset list (`0-2,4`) as its members; `None` when malformed.
fn cpuset_members(list: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
                if b < a {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// `--cpuset-cpus`/`--cpuset-mems` checked against what the host has (`available`, a
/// cpuset list read from sysfs), with dockerd's messages.
fn check_cpuset(wanted: &str, available: &str, what: &str, field: &str) -> Result<(), Error> {
    let w = cpuset_members(wanted).ok_or_else(|| {
        Error::BadParameter(format!(
            "Invalid value {wanted} for {field}: invalid format: {wanted}"
        ))
    })?;
    let have = cpuset_members(available).unwrap_or_default();
    if w.iter().any(|c| !have.contains(c)) {
        return Err(Error::BadParameter(format!(
            "Requested {what} are not available - requested {wanted}, available: {}",
            available.trim()
        )));
    }
    Ok(())
}

/// Check the numeric resource fields of a HostConfig as dockerd does at create and update
/// (`verifyPlatformContainerResources`), each a 400 with dockerd's message: memory and its
/// reservation at least 6 MiB, swap not below memory (and, at create, not without memory),
/// swappiness 0-100, NanoCpus within the host's CPUs and not with CpuPeriod/CpuQuota, the
/// CFS period 1 ms-1 s and quota at least 1 ms, CpuShares not negative, cpusets the host
/// has, BlkioWeight 10-1000, OomScoreAdj -1000..1000, ShmSize not negative. `update`: the
/// fields are the merged result of an update.
pub fn validate_resources(
    hc: &bollard_stubs::models::HostConfig,
    update: bool,
) -> Result<(), Error> {
    let bad = |m: String| Err(Error::BadParameter(m));
    let memory = hc.memory.unwrap_or(0);
    let swap = hc.memory_swap.unwrap_or(0);
    let reservation = hc.memory_reservation.unwrap_or(0);
    if memory != 0 && memory < MIN_MEMORY {
        return bad("Minimum memory limit allowed is 6MB".into());
    }
    if memory > 0 && swap > 0 && swap < memory {
        return bad(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        );
    }
    if memory == 0 && swap > 0 && !update {
        return bad(
            "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
        );
    }
    if let Some(sw) = hc.memory_swappiness.filter(|s| *s != -1) {
        if !(0..=100).contains(&sw) {
            return bad(format!(
                "Invalid value: {sw}, valid memory swappiness range is 0-100"
            ));
        }
    }
    if memory > 0 && reservation > 0 && reservation > memory {
        return bad(
            "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
        );
    }
    if reservation > 0 && reservation < MIN_MEMORY {
        return bad("Minimum memory reservation allowed is 6MB".into());
    }
    let nano = hc.nano_cpus.unwrap_or(0);
    let period = hc.cpu_period.unwrap_or(0);
    let quota = hc.cpu_quota.unwrap_or(0);
    if nano > 0 && period > 0 {
        return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set".into());
    }
    if nano > 0 && quota > 0 {
        return bad("Conflicting options: Nano CPUs and CPU Quota cannot both be set".into());
    }
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    if nano < 0 || nano > ncpu * 1_000_000_000 {
        return bad(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        ));
    }
    if period != 0 && !(1000..=1_000_000).contains(&period) {
        return bad(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
                .into(),
        );
    }
    if quota > 0 && quota < 1000 {
        return bad("CPU cfs quota can not be less than 1ms (i.e. 1000)".into());
    }
    if let Some(sh) = hc.cpu_shares.filter(|s| *s < 0) {
        // dockerd 20.10 takes it and the start fails ("shares: invalid argument").
        return bad(format!("invalid CPU shares {sh}: must not be negative"));
    }
    let sysfs =
        |p: &str, default: &str| std::fs::read_to_string(p).unwrap_or_else(|_| default.to_owned());
    if let Some(c) = hc.cpuset_cpus.as_deref().filter(|c| !c.is_empty()) {
        let online = sysfs("/sys/devices/system/cpu/online", &format!("0-{}", ncpu - 1));
        check_cpuset(c, &online, "CPUs", "cpuset cpus")?;
    }
    if let Some(m) = hc.cpuset_mems.as_deref().filter(|m| !m.is_empty()) {
        let online = sysfs("/sys/devices/system/node/online", "0");
        check_cpuset(m, &online, "memory nodes", "cpuset mems")?;
    }
    if let Some(w) = hc.blkio_weight.filter(|w| *w > 0) {
        if !(10..=1000).contains(&w) {
            return bad("Range of blkio weight is from 10 to 1000".into());
        }
    }
    if let Some(adj) = hc.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            return bad(format!(
                "Invalid value {adj}, range for oom score adj is [-1000, 1000]"
            ));
        }
    }
    if hc.shm_size.is_some_and(|s| s < 0) {
        return bad("SHM size can not be less than 0".into());
    }
    Ok(())
}

/// A signal name or number as docker reads `StopSignal` (`TERM`, `SIGTERM`, `15`).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .ok()
}

/// Check the Config fields dockerd checks at create (`verifyContainerSettings`): StopSignal
/// and the Healthcheck's durations (at least 1 ms) and retries (not negative).
pub fn validate_config(c: &bollard_stubs::models::ContainerConfig) -> Result<(), Error> {
    if let Some(sig) = c.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        if parse_signal(sig).is_none() {
            return Err(Error::BadParameter(format!("Invalid signal: {sig}")));
        }
    }
    if let Some(h) = &c.healthcheck {
        for (name, v) in [
            ("Interval", h.interval),
            ("Timeout", h.timeout),
            ("StartPeriod", h.start_period),
        ] {
            if v.is_some_and(|v| v != 0 && v < 1_000_000) {
                return Err(Error::BadParameter(format!(
                    "{name} in Healthcheck cannot be less than 1ms"
                )));
            }
        }
        if h.retries.is_some_and(|r| r < 0) {
            return Err(Error::BadParameter(
                "Retries in Healthcheck cannot be negative".into(),
            ));
        }
    }
    Ok(())
}

/// The namespaces to join from other containers: (OCI namespace type, container name),
/// from `NetworkMode`, `PidMode` and `IpcMode` of the form `container:NAME`.
pub fn joins(hc: &bollard_stubs::models::HostConfig) -> Vec<(&'static str, String)> {
    [
        (&hc.network_mode, "network"),
        (&hc.pid_mode, "pid"),
        (&hc.ipc_mode, "ipc"),
    ]
    .into_iter()
    .filter_map(|(m, ns)| {
        m.as_deref()
            .and_then(|m| m.strip_prefix("container:"))
            .map(|c| (ns, c.to_owned()))
    })
    .collect()
}

/// Point the namespaces of `spec` (config.json) at those of the processes given, as
/// (OCI type, pid): `/proc/PID/ns/...`.
pub fn set_joins(spec: &mut Value, joins: &[(&str, i32)]) {
    let proc_name = |t: &str| {
        match t {
            "network" => "net",
            "mount" => "mnt",
            t => t,
        }
        .to_owned()
    };
    for (typ, pid) in joins {
        let path = format!("/proc/{pid}/ns/{}", proc_name(typ));
        if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
            list.retain(|n| n["type"] != *typ);
            list.push(json!({"type": typ, "path": path}));
        }
    }
}

/// `linux.resources` for a HostConfig (Memory, MemorySwap, NanoCpus, CpuShares/Quota/Period,
/// CpusetCpus, PidsLimit), as dockerd converts them.
pub fn resources(hc: &bollard_stubs::models::HostConfig, privileged: bool) -> Value {
    let mut res = json!({"devices": [{"allow": privileged, "access": "rwm"}]});
    for (dev, perms) in devices(hc).unwrap_or_default() {
        res["devices"].as_array_mut().expect("devices").push(json!({
            "allow": true, "type": dev["type"], "major": dev["major"], "minor": dev["minor"],
            "access": perms}));
    }
    if let Some(m) = hc.memory.filter(|m| *m > 0) {
        res["memory"] = json!({"limit": m});
        if let Some(sw) = hc.memory_swap.filter(|s| *s != 0) {
            res["memory"]["swap"] = json!(sw);
        }
    }
    // `--memory-reservation`: memory.soft_limit_in_bytes (v1) / memory.low (v2).
    if let Some(r) = hc.memory_reservation.filter(|r| *r > 0) {
        res["memory"]["reservation"] = json!(r);
    }
    let mut cpu = json!({});
    if let Some(n) = hc.nano_cpus.filter(|n| *n > 0) {
        cpu["period"] = json!(100_000u64);
        cpu["quota"] = json!(n * 100_000 / 1_000_000_000);
    }
    if let Some(q) = hc.cpu_quota.filter(|q| *q > 0) {
        cpu["quota"] = json!(q);
    }
    if let Some(p) = hc.cpu_period.filter(|p| *p > 0) {
        cpu["period"] = json!(p);
    }
    if let Some(sh) = hc.cpu_shares.filter(|s| *s > 0) {
        cpu["shares"] = json!(sh);
    }
    if let Some(cs) = hc.cpuset_cpus.clone().filter(|c| !c.is_empty()) {
        cpu["cpus"] = json!(cs);
    }
    if cpu.as_object().is_some_and(|o| !o.is_empty()) {
        res["cpu"] = cpu;
    }
    if let Some(pl) = hc.pids_limit.filter(|p| *p > 0) {
        res["pids"] = json!({"limit": pl});
    }
    res
}

/// `--device HOST[:CONTAINER[:PERMS]]`: each as (an OCI `linux.devices` entry, cgroup
/// permissions); the host path must be a character or block device.
pub fn devices(hc: &bollard_stubs::models::HostConfig) -> Result<Vec<(Value, String)>, Error> {
    use rustix::fs::FileType;
    let mut out = Vec::new();
    for d in hc.devices.iter().flatten() {
        let host = d.path_on_host.clone().unwrap_or_default();
        let inside = d
            .path_in_container
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| host.clone());
        let perms = d
            .cgroup_permissions
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "rwm".into());
        if !perms.chars().all(|c| "rwm".contains(c)) || !inside.starts_with('/') {
            return Err(Error::BadParameter(format!(
                "invalid device mapping: {host}:{inside}:{perms}"
            )));
        }
        let st = rustix::fs::stat(host.as_str()).map_err(|e| {
            Error::BadParameter(format!(
                "error gathering device information while adding custom device {host:?}: {e}"
            ))
        })?;
        let typ = match FileType::from_raw_mode(st.st_mode) {
            FileType::CharacterDevice => "c",
            FileType::BlockDevice => "b",
            _ => return Err(Error::BadParameter(format!("{host} is not a device"))),
        };
        out.push((
            json!({"path": inside, "type": typ,
                   "major": rustix::fs::major(st.st_rdev), "minor": rustix::fs::minor(st.st_rdev),
                   "fileMode": st.st_mode & 0o777, "uid": st.st_uid, "gid": st.st_gid}),
            perms,
        ));
    }
    Ok(out)
}

/// Every character and block device under the host's `/dev`, for a `--privileged` container,
/// as dockerd adds them (runc's `HostDevices`: the tree walked without following links,
/// skipping the `pts`, `shm`, `fd`, `mqueue`, `.lxc`, `.lxd-mounts` and `.udev` directories
/// and `/dev/console`), each at its host path with the host's mode and owner. A device that
/// vanishes during the walk is skipped.
pub fn host_devices() -> Vec<Value> {
    fn walk(dir: &Path, out: &mut Vec<Value>) {
        use rustix::fs::FileType;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                let skip = [".lxc", ".lxd-mounts", ".udev", "fd", "mqueue", "pts", "shm"];
                if !skip.iter().any(|s| e.file_name() == *s) {
                    walk(&path, out);
                }
                continue;
            }
            if path == Path::new("/dev/console") {
                continue;
            }
            let Ok(st) = rustix::fs::lstat(&path) else {
                continue;
            };
            let typ = match FileType::from_raw_mode(st.st_mode) {
                FileType::CharacterDevice => "c",
                FileType::BlockDevice => "b",
                _ => continue,
            };
            out.push(json!({"path": path, "type": typ,
                "major": rustix::fs::major(st.st_rdev), "minor": rustix::fs::minor(st.st_rdev),
                "fileMode": st.st_mode & 0o777, "uid": st.st_uid, "gid": st.st_gid}));
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/dev"), &mut out);
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}

/// The ports to publish (`-p HOST:CONTAINER[/PROTO]`) as (host port, container port,
/// protocol); a host IP is refused.
pub fn published(hc: &bollard_stubs::models::HostConfig) -> Result<Vec<(u16, u16, String)>, Error> {
    let mut out = Vec::new();
    for (k, bindings) in hc.port_bindings.iter().flatten() {
        let (port, proto) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
        let cport: u16 = port
            .parse()
            .map_err(|_| Error::BadParameter(format!("invalid container port {k:?}")))?;
        if proto != "tcp" && proto != "udp" {
            return Err(Error::BadParameter(format!("invalid protocol {proto:?}")));
        }
        for b in bindings.iter().flatten() {
            if b.host_ip
                .as_deref()
                .is_some_and(|ip| !ip.is_empty() && ip != "0.0.0.0")
            {
                return Err(Error::BadParameter(
                    "publishing on a host IP is not supported by berthd yet".into(),
                ));
            }
            let hp = b.host_port.as_deref().unwrap_or("");
            let hport: u16 = if hp.is_empty() {
                cport
            } else {
                hp.parse()
                    .map_err(|_| Error::BadParameter(format!("invalid host port {hp:?}")))?
            };
            out.push((hport, cport, proto.to_owned()));
        }
    }
    Ok(out)
}

/// Whether the container's output is logged: not with `--log-driver none`.
pub fn logs_kept(hc: &bollard_stubs::models::HostConfig) -> bool {
    hc.log_config.as_ref().and_then(|l| l.typ.as_deref()) != Some("none")
}

/// Files berthd makes for each container and binds in.
pub struct EtcFiles<'a> {
    /// `/etc/hosts`.
    pub hosts: &'a Path,
    /// `/etc/hostname`.
    pub hostname: &'a Path,
    /// `/etc/resolv.conf`.
    pub resolv: &'a Path,
}

/// The size of a container's /dev/shm in bytes when `HostConfig.ShmSize` is not given
/// (dockerd's default, the `size=65536k` of the spec's /dev/shm mount).
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The container's hostname (its Config.Hostname or the id's first 12 digits).
pub fn hostname(rec: &Record) -> String {
    rec.config
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| rec.id[..12].to_owned())
}

fn host_network(rec: &Record) -> bool {
    rec.host_config.network_mode.as_deref() == Some("host")
}

/// The process user for Docker's `User` (`name`, `uid`, `name:group`, `uid:gid`) and
/// `GroupAdd` (group names or gids) in the image's rootfs, with dockerd 20.10's supplementary
/// groups: the primary gid first, then (without an explicit group) the groups of /etc/group
/// listing the user by name, then `GroupAdd`'s, each once. So `-u 1234` runs with groups
/// `0` and `-u 1234:5` with `5`, as under dockerd + runc.
/// Errors: 400 for a user or group not in the image's /etc/passwd or /etc/group.
pub fn process_user(
    rootfs: &Path,
    user: &str,
    group_add: &[String],
) -> Result<berth_image::bundle::ProcessUser, Error> {
    let mut u =
        resolve_user(rootfs, user).map_err(|e| Error::BadParameter(crate::images::chain(&e)))?;
    let mut gids = vec![u.gid];
    gids.extend(u.additional_gids.iter().copied());
    for g in group_add {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                resolve_user(rootfs, &format!("0:{g}"))
                    .map_err(|_| Error::BadParameter(format!("unable to find group {g}")))?
                    .gid
            }
        };
        gids.push(gid);
    }
    let mut seen = std::collections::HashSet::new();
    gids.retain(|g| seen.insert(*g));
    u.additional_gids = gids;
    Ok(u)
}

/// The container's spec (config.json) for `img` with the rootfs at `rootfs`.
pub fn build(
    rec: &Record,
    img: &Image,
    rootfs: &Path,
    files: &EtcFiles<'_>,
    volumes: &crate::volumes::Volumes,
) -> Result<Value, Error> {
    let mut argv = vec![rec.path.clone()];
    argv.extend(rec.args.iter().cloned());
    let opts = BundleOptions {
        entrypoint: Some(argv),
        args: None,
        overlay: true,
    };
    let spec = runtime_spec(&img.config, rootfs, &opts)
        .map_err(|e| Error::BadParameter(crate::images::chain(&e)))?;
    let mut s =
        serde_json::to_value(&spec).map_err(|e| Error::internal("serialise the spec", e))?;
    let c = &rec.config;
    let hc = &rec.host_config;
    let user = process_user(
        rootfs,
        c.user.as_deref().unwrap_or(""),
        hc.group_add.as_deref().unwrap_or_default(),
    )?;
    let user_json =
        json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
    let privileged = hc.privileged.unwrap_or(false);
    let caps = capabilities(
        hc.cap_add.as_deref().unwrap_or_default(),
        hc.cap_drop.as_deref().unwrap_or_default(),
        privileged,
    )?;
    let p = &mut s["process"];
    p["terminal"] = json!(c.tty.unwrap_or(false));
    p["user"] = user_json;
    p["env"] = json!(c.env.clone().unwrap_or_default());
    p["cwd"] = json!(c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into()));
    p["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    p["noNewPrivileges"] = json!(hc
        .security_opt
        .iter()
        .flatten()
        .any(|o| o == "no-new-privileges" || o == "no-new-privileges:true"));
    s["hostname"] = json!(hostname(rec));
    s["root"]["readonly"] = json!(hc.readonly_rootfs.unwrap_or(false));
    let mounts = s["mounts"].as_array_mut().expect("runtime_spec has mounts");
    for (dst, src) in [
        ("/etc/hosts", files.hosts),
        ("/etc/hostname", files.hostname),
        ("/etc/resolv.conf", files.resolv),
    ] {
        mounts.push(json!({"destination": dst, "type": "bind", "source": src,
                           "options": ["rbind", "rprivate"]}));
    }
    for m in all_mounts(rec)? {
        let rw = |ro: bool| if ro { "ro" } else { "rw" };
        match m {
            MountSpec::Bind { src, dst, ro } => mounts.push(json!({
                "destination": dst, "type": "bind", "source": src,
                "options": ["rbind", "rprivate", rw(ro)]})),
            MountSpec::Volume { name, dst, ro } => mounts.push(json!({
                "destination": dst, "type": "bind", "source": volumes.data_path(&name),
                "options": ["rbind", "rprivate", rw(ro)]})),
            MountSpec::Tmpfs { dst, options: o } => {
                let mut options =
                    vec!["nosuid".to_owned(), "nodev".to_owned(), "noexec".to_owned()];
                options.extend(o);
                mounts.push(
                    json!({"destination": dst, "type": "tmpfs", "source": "tmpfs",
                                   "options": options}),
                );
            }
        }
    }
    if hc.init.unwrap_or(false) {
        let init = init_binary().ok_or_else(|| {
            Error::BadParameter("--init: no docker-init (tini) binary on this host".into())
        })?;
        s["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/sbin/docker-init", "type": "bind", "source": init,
            "options": ["rbind", "ro"]}));
        let args = s["process"]["args"].as_array().cloned().unwrap_or_default();
        let mut with_init = vec![json!("/sbin/docker-init"), json!("--")];
        with_init.extend(args);
        s["process"]["args"] = json!(with_init);
    }
    for u in hc.ulimits.iter().flatten() {
        let name = u.name.clone().unwrap_or_default();
        let typ = format!("RLIMIT_{}", name.to_ascii_uppercase());
        if !berth_runtime::validate::RLIMIT_TYPES.contains(&typ.as_str()) {
            return Err(Error::BadParameter(format!("invalid ulimit type: {name}")));
        }
        let (soft, hard) = (u.soft.unwrap_or(0), u.hard.unwrap_or(0));
        if soft > hard && hard >= 0 {
            return Err(Error::BadParameter(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        let rl = s["process"]["rlimits"].as_array_mut().expect("rlimits");
        rl.retain(|r| r["type"] != typ.as_str());
        rl.push(json!({"type": typ, "soft": soft as u64, "hard": hard as u64}));
    }
    if let Some(adj) = hc.oom_score_adj.filter(|a| *a != 0) {
        s["process"]["oomScoreAdj"] = json!(adj);
    }
    if let Some(shm) = hc.shm_size.filter(|s| *s > 0) {
        for m in s["mounts"].as_array_mut().expect("mounts") {
            if m["destination"] == "/dev/shm" {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| !x.as_str().is_some_and(|x| x.starts_with("size=")));
                    o.push(json!(format!("size={shm}")));
                }
            }
        }
    }
    let seccomp = crate::seccomp::for_container(hc)?;
    let devs = devices(hc)?;
    let linux = &mut s["linux"];
    if let Some(sc) = seccomp {
        linux["seccomp"] = sc;
    }
    let mut linux_devices: Vec<Value> = if privileged {
        host_devices()
    } else {
        Vec::new()
    };
    // A `--device` mapping replaces a host device of the same path.
    for (d, _) in devs {
        linux_devices.retain(|h| h["path"] != d["path"]);
        linux_devices.push(d);
    }
    if !linux_devices.is_empty() {
        linux["devices"] = json!(linux_devices);
    }
    if let Some(sysctls) = hc.sysctls.as_ref().filter(|m| !m.is_empty()) {
        linux["sysctl"] = json!(sysctls);
    }
    let mut uts_host = false;
    for (mode, ns) in [
        (&hc.pid_mode, "pid"),
        (&hc.ipc_mode, "ipc"),
        (&hc.uts_mode, "uts"),
    ] {
        match mode.as_deref().unwrap_or("") {
            "" | "private" | "shareable" => {}
            // Joined at start, when the other container's pid is known (see `joins`).
            m if m.starts_with("container:") => {}
            "host" => {
                if let Some(list) = linux["namespaces"].as_array_mut() {
                    list.retain(|n| n["type"] != ns);
                }
                if ns == "uts" {
                    uts_host = true;
                }
            }
            m => {
                return Err(Error::BadParameter(format!(
                    "{ns} mode {m:?} is not supported by berthd yet (host, private)"
                )))
            }
        }
    }
    if uts_host {
        // The host's hostname: none may be set without a UTS namespace of its own.
        if let Some(o) = s.as_object_mut() {
            o.remove("hostname");
        }
    }
    let linux = &mut s["linux"];
    linux["resources"] = resources(hc, privileged);
    if host_network(rec) {
        if let Some(ns) = linux["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
    }
    if privileged {
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
        for m in s["mounts"].as_array_mut().expect("mounts") {
            if m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup" {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| x != "ro");
                }
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_as_docker() {
        let d = capabilities(&[], &[], false).unwrap();
        assert_eq!(d.len(), DEFAULT_CAPS.len());
        let c = capabilities(&["NET_ADMIN".into()], &["chown".into()], false).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!c.contains(&"CAP_CHOWN".to_owned()));
        assert_eq!(capabilities(&[], &["ALL".into()], false).unwrap().len(), 0);
        assert!(capabilities(&["BOGUS".into()], &[], false).is_err());
        assert!(capabilities(&[], &[], true)
            .unwrap()
            .contains(&"CAP_SYS_ADMIN".to_owned()));
    }

    #[test]
    fn binds_parse() {
        let bind = |s: &str, d: &str, ro| MountSpec::Bind {
            src: s.into(),
            dst: d.into(),
            ro,
        };
        assert_eq!(parse_bind("/a:/b:ro").unwrap(), bind("/a", "/b", true));
        assert_eq!(parse_bind("/a:/b").unwrap(), bind("/a", "/b", false));
        assert_eq!(
            parse_bind("vol:/b").unwrap(),
            MountSpec::Volume {
                name: "vol".into(),
                dst: "/b".into(),
                ro: false
            }
        );
        assert!(parse_bind("/a:b").is_err());
        assert!(parse_bind("../x:/b").is_err());
        let hc = bollard_stubs::models::HostConfig {
            binds: Some(vec!["/a:/x".into(), "v:/x".into()]),
            ..Default::default()
        };
        assert!(mounts_of(&hc).is_err(), "duplicate mount point");
    }
}
