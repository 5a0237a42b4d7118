//! A container's seccomp filter, made as dockerd makes it.
//!
//! dockerd works from *docker profiles*: the runtime spec's `linux.seccomp` plus docker's
//! additions (`archMap`, a rule's `name`, `comment`, `includes` and `excludes`). For each
//! container it keeps the rules whose conditions hold for that container's capability set and
//! the host's architecture and kernel, and hands the rest to the runtime as `linux.seccomp`
//! ([`Profile::resolve`]). berthd does the same, for:
//!
//! - its default filter ([`default_profile`]), docker's default profile as data: an allow
//!   list (every other syscall fails with `EPERM`), capability-gated groups, and the argument
//!   rules for `socket`, `personality`, `clone` and `clone3`;
//! - a profile given with `--security-opt seccomp=PROFILE` (the docker CLI sends the file's
//!   JSON), read strictly ([`Profile::parse`]): an unknown field, a value of the wrong shape,
//!   an unknown action, operator, architecture, flag or capability is a 400 naming it;
//! - none with `seccomp=unconfined`, nor with `--privileged` unless a profile is given
//!   (docker 25 and later apply a given profile to privileged containers; 20.10 ignored it).
//!
//! Syscalls newer than any the filter names get `ENOSYS` rather than the default `EPERM`
//! (so libc falls back to older calls): berth-runtime adds that stub to the compiled filter,
//! as runc does.

use serde_json::{json, Map, Value};

use crate::error::Error;

/// Why a profile cannot be used. Every variant but [`SeccompError::HostKernel`] is a fault of
/// the profile (400); messages name the field as a path into the profile, such as
/// `syscalls[3].includes.caps[0]`.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// Not JSON.
    #[error("decoding seccomp profile failed: {0}")]
    Decode(String),
    /// A field docker's profile format does not have.
    #[error("seccomp profile: unknown field {0}")]
    UnknownField(String),
    /// A field given twice (names compare ASCII case-insensitively, as dockerd's decoder does).
    #[error("seccomp profile: field {0} given twice")]
    Duplicate(String),
    /// A value of the wrong JSON type or out of range.
    #[error("seccomp profile: {field} must be {expected}")]
    Shape {
        /// The field's path.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A value outside the known set (action, operator, architecture, flag, capability).
    #[error("seccomp profile: {field}: unknown {what} {value:?}")]
    UnknownValue {
        /// The field's path.
        field: String,
        /// What kind of value.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// A field berthd refuses.
    #[error("seccomp profile: {field} is not supported by berthd: {why}")]
    Unsupported {
        /// The field's path.
        field: String,
        /// Why.
        why: &'static str,
    },
    /// Two fields that exclude each other.
    #[error("seccomp profile: both {0} and {1} are set, use either")]
    Both(String, String),
    /// A rule list without `defaultAction`.
    #[error("seccomp profile: defaultAction is missing")]
    NoDefaultAction,
    /// `minKernel` not of the form `"<kernel>.<major>"`.
    #[error(
        "seccomp profile: {field}: invalid kernel version {value:?}, expected \"<kernel>.<major>\""
    )]
    KernelVersion {
        /// The field's path.
        field: String,
        /// The value given.
        value: String,
    },
    /// The host's kernel release has no `<kernel>.<major>` prefix (a `minKernel` condition
    /// cannot be judged).
    #[error("the kernel release {0:?} has no <kernel>.<major> version")]
    HostKernel(String),
}

impl From<SeccompError> for Error {
    fn from(e: SeccompError) -> Self {
        match e {
            SeccompError::HostKernel(_) => Error::internal("judge a seccomp minKernel", e),
            e => Error::BadParameter(e.to_string()),
        }
    }
}

/// A kernel version as docker's `minKernel` compares it: the release's first two numbers
/// (`6.18.44-foo` is 6.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    /// The "6" of 6.18.
    pub kernel: u64,
    /// The "18" of 6.18.
    pub major: u64,
}

impl KernelVersion {
    /// The version of a kernel release string (`uname -r`), as dockerd reads it
    /// (`"%d.%d"`; the rest is ignored).
    pub fn of_release(release: &str) -> Option<KernelVersion> {
        let mut parts = release.splitn(3, '.');
        let kernel = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest, |end| &rest[..end]);
        Some(KernelVersion {
            kernel,
            major: digits.parse().ok()?,
        })
    }

    /// A profile's `minKernel`: exactly `"<kernel>.<major>"`, each 0-255, not `0.0`
    /// (docker's rules); `None` for `""`.
    fn of_min_kernel(s: &str, field: &str) -> Result<Option<KernelVersion>, SeccompError> {
        if s.is_empty() {
            return Ok(None);
        }
        let bad = || SeccompError::KernelVersion {
            field: field.to_owned(),
            value: s.to_owned(),
        };
        let (k, m) = s.split_once('.').ok_or_else(bad)?;
        let kernel = k.parse::<u8>().map_err(|_| bad())?;
        let major = m.parse::<u8>().map_err(|_| bad())?;
        if kernel == 0 && major == 0 {
            return Err(bad());
        }
        Ok(Some(KernelVersion {
            kernel: kernel.into(),
            major: major.into(),
        }))
    }
}

/// What a profile's conditions are judged against: the container's capabilities (its bounding
/// set, as dockerd uses `process.capabilities.bounding`) and the host.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Capability names (`CAP_SYS_ADMIN`).
    pub caps: &'a [String],
    /// The host's architecture in docker's naming (`amd64`, `arm64`, `x86`, ...), what
    /// `includes.arches` and `excludes.arches` name.
    pub arch: &'static str,
    /// The running kernel; `None` if its release could not be read (then a rule with a
    /// `minKernel` condition is an error, as in dockerd).
    pub kernel: Option<KernelVersion>,
    /// The kernel release string, for that error.
    pub release: String,
}

impl<'a> Context<'a> {
    /// The context on this host for a container with `caps`.
    pub fn host(caps: &'a [String]) -> Context<'a> {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Context {
            caps,
            arch: native_arch(),
            kernel: KernelVersion::of_release(&release),
            release,
        }
    }

    fn kernel_at_least(&self, min: KernelVersion) -> Result<bool, SeccompError> {
        self.kernel
            .map(|k| k >= min)
            .ok_or_else(|| SeccompError::HostKernel(self.release.clone()))
    }
}

/// This build's architecture in docker's naming (the names of `includes.arches`), from
/// Rust's target architecture.
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "powerpc" => "ppc",
        "mips64" if cfg!(target_endian = "little") => "mipsel64",
        "mips64" => "mips64",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        "mips" => "mips",
        other => other,
    }
}

/// The names `includes.arches`/`excludes.arches` may use: docker's names of the architectures
/// it builds for, and `x32` (which its default profile names).
const FILTER_ARCHES: &[&str] = &[
    "x86",
    "amd64",
    "x32",
    "arm",
    "arm64",
    "loong64",
    "loongarch64",
    "mips",
    "mipsle",
    "mipsel",
    "mips64",
    "mips64n32",
    "mipsel64",
    "mips3l64n32",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv64",
    "s390",
    "s390x",
];

/// The `SCMP_ARCH_*` name of docker's architecture name: the `archMap` entry that applies on
/// this host is the one whose `architecture` is this.
fn scmp_arch_of(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "x86" => "SCMP_ARCH_X86",
        "amd64" => "SCMP_ARCH_X86_64",
        "arm" => "SCMP_ARCH_ARM",
        "arm64" => "SCMP_ARCH_AARCH64",
        "loong64" | "loongarch64" => "SCMP_ARCH_LOONGARCH64",
        "mips64" => "SCMP_ARCH_MIPS64",
        "mips64n32" => "SCMP_ARCH_MIPS64N32",
        "mipsel64" => "SCMP_ARCH_MIPSEL64",
        "mips3l64n32" => "SCMP_ARCH_MIPSEL64N32",
        "mipsle" => "SCMP_ARCH_MIPSEL",
        "ppc" => "SCMP_ARCH_PPC",
        "ppc64" => "SCMP_ARCH_PPC64",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "s390" => "SCMP_ARCH_S390",
        "s390x" => "SCMP_ARCH_S390X",
        _ => return None,
    })
}

/// A rule's condition (docker's `Filter`): capabilities, architectures, a minimum kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Capability names.
    pub caps: Vec<String>,
    /// docker architecture names (`amd64`, ...).
    pub arches: Vec<String>,
    /// Minimum kernel.
    pub min_kernel: Option<KernelVersion>,
}

/// An argument condition of a rule, as in the runtime spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// Argument index, 0-5.
    pub index: u64,
    /// The value (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// The masked value for `SCMP_CMP_MASKED_EQ`.
    pub value_two: Option<u64>,
    /// `SCMP_CMP_*`.
    pub op: String,
}

/// One rule of a docker profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Syscall names (`name` of old profiles folded in).
    pub names: Vec<String>,
    /// `SCMP_ACT_*`.
    pub action: String,
    /// The errno of `SCMP_ACT_ERRNO`/`SCMP_ACT_TRACE`.
    pub errno_ret: Option<u64>,
    /// Argument conditions.
    pub args: Vec<Arg>,
    /// The rule applies only if all of these hold: every capability in the container's set,
    /// the host's architecture among `arches`, the kernel at least `min_kernel`.
    pub includes: Filter,
    /// The rule is dropped if any of these holds: a capability in the container's set, the
    /// host's architecture among `arches`, the kernel at least `min_kernel`.
    pub excludes: Filter,
}

impl Rule {
    /// Whether the rule is kept for `ctx`: dockerd's `setupSeccomp` loop (excludes first,
    /// then includes).
    pub fn applies(&self, ctx: &Context<'_>) -> Result<bool, SeccompError> {
        let has = |c: &String| ctx.caps.contains(c);
        let ex = &self.excludes;
        if ex.arches.iter().any(|a| a == ctx.arch) || ex.caps.iter().any(has) {
            return Ok(false);
        }
        if let Some(min) = ex.min_kernel {
            if ctx.kernel_at_least(min)? {
                return Ok(false);
            }
        }
        let inc = &self.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == ctx.arch) {
            return Ok(false);
        }
        if !inc.caps.iter().all(has) {
            return Ok(false);
        }
        if let Some(min) = inc.min_kernel {
            if !ctx.kernel_at_least(min)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The rule in the runtime spec's form.
    fn to_spec(&self) -> Value {
        let mut r = json!({"names": self.names, "action": self.action});
        if let Some(e) = self.errno_ret {
            r["errnoRet"] = json!(e);
        }
        if !self.args.is_empty() {
            r["args"] = Value::Array(
                self.args
                    .iter()
                    .map(|a| {
                        let mut v = json!({"index": a.index, "value": a.value, "op": a.op});
                        if let Some(two) = a.value_two {
                            v["valueTwo"] = json!(two);
                        }
                        v
                    })
                    .collect(),
            );
        }
        r
    }
}

/// A docker seccomp profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `SCMP_ACT_*`; empty when the profile gave none.
    pub default_action: String,
    /// The errno of the default action.
    pub default_errno_ret: Option<u64>,
    /// `SCMP_ARCH_*` names.
    pub architectures: Vec<String>,
    /// (architecture, sub-architectures): the entry for the host's architecture becomes
    /// `architectures`.
    pub arch_map: Vec<(String, Vec<String>)>,
    /// `SECCOMP_FILTER_FLAG_*` names.
    pub flags: Vec<String>,
    /// The rules, in order.
    pub syscalls: Vec<Rule>,
}

impl Profile {
    /// The `linux.seccomp` of this profile for `ctx`: the rules whose conditions hold,
    /// `architectures` from `archMap`'s entry for the host. `None` for a profile with neither
    /// a default action nor rules (docker runs such containers unconfined).
    ///
    /// Errors: `architectures` and `archMap` both set; a `minKernel` condition on a host
    /// whose kernel release cannot be read.
    pub fn resolve(&self, ctx: &Context<'_>) -> Result<Option<Value>, SeccompError> {
        if self.default_action.is_empty() && self.syscalls.is_empty() {
            return Ok(None);
        }
        if self.default_action.is_empty() {
            return Err(SeccompError::NoDefaultAction);
        }
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(SeccompError::Both("architectures".into(), "archMap".into()));
        }
        let mut arches = self.architectures.clone();
        if let Some(native) = scmp_arch_of(ctx.arch) {
            if let Some((a, subs)) = self.arch_map.iter().find(|(a, _)| a == native) {
                arches.push(a.clone());
                arches.extend(subs.iter().cloned());
            }
        }
        let mut syscalls = Vec::new();
        for rule in &self.syscalls {
            if !rule.names.is_empty() && rule.applies(ctx)? {
                syscalls.push(rule.to_spec());
            }
        }
        let mut out = json!({"defaultAction": self.default_action, "syscalls": syscalls});
        if let Some(e) = self.default_errno_ret {
            out["defaultErrnoRet"] = json!(e);
        }
        if !arches.is_empty() {
            out["architectures"] = json!(arches);
        }
        if !self.flags.is_empty() {
            out["flags"] = json!(self.flags);
        }
        Ok(Some(out))
    }

    /// Read a docker profile (the JSON of `--security-opt seccomp=FILE`).
    ///
    /// The fields are docker's: `defaultAction`, `defaultErrnoRet`, `architectures`,
    /// `archMap` (`architecture`, `subArchitectures`), `flags`, `syscalls` (`names`, `name`,
    /// `action`, `errnoRet`, `args` (`index`, `value`, `valueTwo`, `op`), `comment`,
    /// `includes`/`excludes` (`caps`, `arches`, `minKernel`)); field names match
    /// ASCII case-insensitively and `null` means absent, as with dockerd's decoder.
    /// `listenerPath` and `listenerMetadata` are refused unless empty (berthd runs no seccomp
    /// agent).
    ///
    /// Errors name the field: not JSON, unknown or duplicate fields, wrong types, unknown
    /// actions, operators, architectures, flags and capabilities, `name` with `names`, a bad
    /// `minKernel`, an argument index past 5, an `errnoRet` past 65535.
    pub fn parse(text: &str) -> Result<Profile, SeccompError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| SeccompError::Decode(e.to_string()))?;
        let top = fields(
            &v,
            "profile",
            &[
                "defaultAction",
                "defaultErrnoRet",
                "architectures",
                "archMap",
                "flags",
                "syscalls",
                "listenerPath",
                "listenerMetadata",
            ],
        )?
        .ok_or_else(|| shape("profile", "an object"))?;
        for f in ["listenerPath", "listenerMetadata"] {
            if string(top.get(f), f)?.is_some_and(|s| !s.is_empty()) {
                return Err(SeccompError::Unsupported {
                    field: f.into(),
                    why: "it runs no seccomp agent (SCMP_ACT_NOTIFY)",
                });
            }
        }
        let actions = berth_runtime::seccomp::supported_actions();
        let default_action = match string(top.get("defaultAction"), "defaultAction")? {
            Some(a) if !a.is_empty() => one_of(a, &actions, "defaultAction", "action")?,
            _ => String::new(),
        };
        let scmp_arches = berth_runtime::seccomp::supported_archs();
        let architectures = strings(top.get("architectures"), "architectures")?
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                one_of(
                    a,
                    &scmp_arches,
                    &format!("architectures[{i}]"),
                    "architecture",
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut arch_map = Vec::new();
        for (i, m) in array(top.get("archMap"), "archMap")?.iter().enumerate() {
            let path = format!("archMap[{i}]");
            let o = fields(m, &path, &["architecture", "subArchitectures"])?
                .ok_or_else(|| shape(&path, "an object"))?;
            let f = format!("{path}.architecture");
            let arch = string(o.get("architecture"), &f)?.unwrap_or_default();
            let arch = one_of(arch, &scmp_arches, &f, "architecture")?;
            let f = format!("{path}.subArchitectures");
            let subs = strings(o.get("subArchitectures"), &f)?
                .into_iter()
                .enumerate()
                .map(|(j, a)| one_of(a, &scmp_arches, &format!("{f}[{j}]"), "architecture"))
                .collect::<Result<Vec<_>, _>>()?;
            arch_map.push((arch, subs));
        }
        let known_flags = berth_runtime::seccomp::supported_flags();
        let flags = strings(top.get("flags"), "flags")?
            .into_iter()
            .enumerate()
            .map(|(i, f)| one_of(f, &known_flags, &format!("flags[{i}]"), "flag"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut syscalls = Vec::new();
        for (i, r) in array(top.get("syscalls"), "syscalls")?.iter().enumerate() {
            syscalls.push(parse_rule(r, &format!("syscalls[{i}]"), &actions)?);
        }
        Ok(Profile {
            default_action,
            default_errno_ret: errno(top.get("defaultErrnoRet"), "defaultErrnoRet")?,
            architectures,
            arch_map,
            flags,
            syscalls,
        })
    }
}

fn parse_rule(v: &Value, path: &str, actions: &[&str]) -> Result<Rule, SeccompError> {
    let o = fields(
        v,
        path,
        &[
            "names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes",
        ],
    )?
    .ok_or_else(|| shape(path, "an object"))?;
    string(o.get("comment"), &format!("{path}.comment"))?;
    let mut names = strings(o.get("names"), &format!("{path}.names"))?;
    if let Some(n) = string(o.get("name"), &format!("{path}.name"))?.filter(|n| !n.is_empty()) {
        if !names.is_empty() {
            return Err(SeccompError::Both(
                format!("{path}.name"),
                format!("{path}.names"),
            ));
        }
        names.push(n);
    }
    let f = format!("{path}.action");
    let action = string(o.get("action"), &f)?.unwrap_or_default();
    let action = one_of(action, actions, &f, "action")?;
    let operators = berth_runtime::seccomp::supported_operators();
    let mut args = Vec::new();
    for (i, a) in array(o.get("args"), &format!("{path}.args"))?
        .iter()
        .enumerate()
    {
        let p = format!("{path}.args[{i}]");
        let a = fields(a, &p, &["index", "value", "valueTwo", "op"])?
            .ok_or_else(|| shape(&p, "an object"))?;
        let f = format!("{p}.index");
        let index = uint(a.get("index"), &f)?.unwrap_or(0);
        if index > 5 {
            return Err(shape(&f, "an argument index from 0 to 5"));
        }
        let f = format!("{p}.op");
        let op = string(a.get("op"), &f)?.unwrap_or_default();
        args.push(Arg {
            index,
            value: uint(a.get("value"), &format!("{p}.value"))?.unwrap_or(0),
            value_two: uint(a.get("valueTwo"), &format!("{p}.valueTwo"))?,
            op: one_of(op, &operators, &f, "operator")?,
        });
    }
    Ok(Rule {
        names,
        action,
        errno_ret: errno(o.get("errnoRet"), &format!("{path}.errnoRet"))?,
        args,
        includes: parse_filter(o.get("includes"), &format!("{path}.includes"))?,
        excludes: parse_filter(o.get("excludes"), &format!("{path}.excludes"))?,
    })
}

fn parse_filter(v: Option<&Value>, path: &str) -> Result<Filter, SeccompError> {
    let Some(v) = v else {
        return Ok(Filter::default());
    };
    let Some(o) = fields(v, path, &["caps", "arches", "minKernel"])? else {
        return Ok(Filter::default());
    };
    let f = format!("{path}.caps");
    let caps = strings(o.get("caps"), &f)?
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            if c.parse::<caps::Capability>().is_ok() && c.starts_with("CAP_") {
                Ok(c)
            } else {
                Err(SeccompError::UnknownValue {
                    field: format!("{f}[{i}]"),
                    what: "capability",
                    value: c,
                })
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let f = format!("{path}.arches");
    let arches = strings(o.get("arches"), &f)?
        .into_iter()
        .enumerate()
        .map(|(i, a)| one_of(a, FILTER_ARCHES, &format!("{f}[{i}]"), "architecture"))
        .collect::<Result<Vec<_>, _>>()?;
    let f = format!("{path}.minKernel");
    let min_kernel = match string(o.get("minKernel"), &f)? {
        Some(s) => KernelVersion::of_min_kernel(&s, &f)?,
        None => None,
    };
    Ok(Filter {
        caps,
        arches,
        min_kernel,
    })
}

/// The fields of an object (`None` for `null`), keyed by their canonical names; a field not
/// in `known` (ASCII case-insensitively) or given twice is an error.
fn fields(
    v: &Value,
    path: &str,
    known: &[&'static str],
) -> Result<Option<Map<String, Value>>, SeccompError> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(shape(path, "an object")),
    };
    let mut out = Map::new();
    for (k, val) in obj {
        let canon = known
            .iter()
            .find(|n| **n == k.as_str())
            .or_else(|| known.iter().find(|n| n.eq_ignore_ascii_case(k)))
            .ok_or_else(|| SeccompError::UnknownField(join(path, k)))?;
        if val.is_null() {
            continue;
        }
        if out.insert((*canon).to_owned(), val.clone()).is_some() {
            return Err(SeccompError::Duplicate(join(path, canon)));
        }
    }
    Ok(Some(out))
}

/// `path.field`, or `field` at the top.
fn join(path: &str, field: &str) -> String {
    if path == "profile" {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn shape(field: &str, expected: &'static str) -> SeccompError {
    SeccompError::Shape {
        field: field.to_owned(),
        expected,
    }
}

fn string(v: Option<&Value>, field: &str) -> Result<Option<String>, SeccompError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(shape(field, "a string")),
    }
}

fn array<'a>(v: Option<&'a Value>, field: &str) -> Result<&'a [Value], SeccompError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(shape(field, "an array")),
    }
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, SeccompError> {
    array(v, field)?
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| shape(&format!("{field}[{i}]"), "a string"))
        })
        .collect()
}

fn uint(v: Option<&Value>, field: &str) -> Result<Option<u64>, SeccompError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| shape(field, "an unsigned 64-bit integer")),
    }
}

/// An `errnoRet`: the kernel passes 16 bits of it (`SECCOMP_RET_DATA`).
fn errno(v: Option<&Value>, field: &str) -> Result<Option<u64>, SeccompError> {
    match uint(v, field) {
        Ok(Some(n)) if n > 0xffff => Err(shape(field, "an errno from 0 to 65535")),
        Err(_) => Err(shape(field, "an errno from 0 to 65535")),
        r => r,
    }
}

fn one_of(
    value: String,
    known: &[&str],
    field: &str,
    what: &'static str,
) -> Result<String, SeccompError> {
    if known.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(SeccompError::UnknownValue {
            field: field.to_owned(),
            what,
            value,
        })
    }
}

/// The `linux.seccomp` of a container (`None`: unconfined), from its HostConfig as dockerd
/// decides it:
///
/// - `--security-opt seccomp=unconfined`: none;
/// - `--security-opt seccomp=PROFILE` (the JSON; `seccomp:` is the old spelling): that
///   profile, judged against the container's capabilities (all of berthd's with
///   `--privileged`);
/// - `--security-opt seccomp=builtin`, or nothing: the default profile, except for
///   `--privileged` containers, which get none.
///
/// Errors (400) are those of [`Profile::parse`] and [`Profile::resolve`], and of an unknown
/// capability in CapAdd/CapDrop.
pub fn for_container(hc: &bollard_stubs::models::HostConfig) -> Result<Option<Value>, Error> {
    let opt = hc.security_opt.iter().flatten().find_map(|o| {
        o.strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))
    });
    let privileged = hc.privileged.unwrap_or(false);
    let profile = match opt {
        Some("unconfined") => return Ok(None),
        None if privileged => return Ok(None),
        None | Some("builtin") => default_profile(),
        Some(text) => Profile::parse(text)?,
    };
    let caps = crate::spec::capabilities(
        hc.cap_add.as_deref().unwrap_or_default(),
        hc.cap_drop.as_deref().unwrap_or_default(),
        privileged,
    )?;
    Ok(profile.resolve(&Context::host(&caps))?)
}

/// How a group of the default profile acts on its syscalls.
#[derive(Clone, Copy)]
enum Act {
    /// `SCMP_ACT_ALLOW`.
    Allow,
    /// `SCMP_ACT_ERRNO` with this errno.
    Errno(u64),
}

/// A condition of a group (see [`Filter`]).
#[derive(Clone, Copy)]
struct When {
    caps: &'static [&'static str],
    arches: &'static [&'static str],
    min_kernel: Option<(u64, u64)>,
}

const ALWAYS: When = When {
    caps: &[],
    arches: &[],
    min_kernel: None,
};

const fn with_cap(cap: &'static [&'static str]) -> When {
    When {
        caps: cap,
        arches: &[],
        min_kernel: None,
    }
}

const fn on(arches: &'static [&'static str]) -> When {
    When {
        caps: &[],
        arches,
        min_kernel: None,
    }
}

/// One group of the default profile: syscalls with one action under one condition.
struct Group {
    names: &'static [&'static str],
    act: Act,
    /// (index, value, valueTwo, op).
    args: &'static [(u64, u64, u64, &'static str)],
    includes: When,
    excludes: When,
}

const fn allow(names: &'static [&'static str], includes: When) -> Group {
    Group {
        names,
        act: Act::Allow,
        args: &[],
        includes,
        excludes: ALWAYS,
    }
}

/// `clone` flags that make namespaces: `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`.
const CLONE_NAMESPACES: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// `AF_ALG` (38) and `AF_VSOCK` (40): the socket families docker's default profile refuses.
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

// The default profile's syscalls, in groups. Source: docker's default seccomp profile
// (moby/profiles `seccomp` v0.2.3, `DefaultProfile` in default_linux.go, what dockerd 29
// applies); the groups by topic are berthd's, the set of names is docker's. Syscalls a
// kernel or libseccomp does not know are skipped by the runtime, so the list names syscalls
// of every architecture and of kernels up to 6.13.

/// Files, directories, links, metadata and mount information.
const FILES: &[&str] = &[
    "access",
    "cachestat",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "creat",
    "faccessat",
    "faccessat2",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "lchown",
    "lchown32",
    "link",
    "linkat",
    "listmount",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "readlink",
    "readlinkat",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
];

/// Extended attributes.
const XATTRS: &[&str] = &[
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "getxattr",
    "getxattrat",
    "lgetxattr",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "removexattr",
    "removexattrat",
    "setxattr",
    "setxattrat",
];

/// Reading, writing and managing file descriptors, pipes and splicing.
const FD_IO: &[&str] = &[
    "_llseek",
    "close",
    "close_range",
    "copy_file_range",
    "dup",
    "dup2",
    "dup3",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "flock",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "ioctl",
    "lseek",
    "pipe",
    "pipe2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readv",
    "sendfile",
    "sendfile64",
    "splice",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "vmsplice",
    "write",
    "writev",
];

/// Waiting for events: poll/select/epoll, eventfd, inotify, fanotify marks, signalfd,
/// timerfd, and Linux AIO (io_uring is not here: docker dropped it in 25.0).
const EVENTS: &[&str] = &[
    "_newselect",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "fanotify_mark",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
];

/// Memory mappings, locking, protection keys, memfd.
const MEMORY: &[&str] = &[
    "brk",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "mseal",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
];

/// Processes and threads: exec, fork (clone has rules of its own), exit, wait, ids of the
/// process tree, futexes, thread areas, prctl, capabilities of oneself, pidfds, seccomp and
/// landlock of oneself.
const PROCESSES: &[&str] = &[
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "get_robust_list",
    "get_thread_area",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getsid",
    "gettid",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "process_mrelease",
    "riscv_hwprobe",
    "rseq",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setpgid",
    "setsid",
    "uretprobe",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
];

/// User and group ids.
const CREDENTIALS: &[&str] = &[
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getuid",
    "getuid32",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
];

/// Signals.
const SIGNALS: &[&str] = &[
    "kill",
    "pause",
    "restart_syscall",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
];

/// Clocks, sleeps and timers (reading clocks; `adjtimex`/`clock_adjtime` too, which the
/// kernel lets only CAP_SYS_TIME change anything with).
const TIME: &[&str] = &[
    "adjtimex",
    "alarm",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "times",
];

/// Scheduling, priorities, resource limits and usage, system information.
const SCHEDULING: &[&str] = &[
    "getcpu",
    "getpriority",
    "getrandom",
    "getrlimit",
    "getrusage",
    "ioprio_get",
    "ioprio_set",
    "prlimit64",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "setpriority",
    "setrlimit",
    "sysinfo",
    "ugetrlimit",
    "uname",
];

/// System V and POSIX message queues, semaphores, shared memory.
const IPC: &[&str] = &[
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
];

/// Sockets once made (`socket` itself has rules of its own; `socketcall`, the i386
/// multiplexer, is allowed whole, as docker does).
const SOCKETS: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
];

/// The groups allowed to every container, whatever its capabilities.
const UNCONDITIONAL: &[&[&str]] = &[
    FILES,
    XATTRS,
    FD_IO,
    EVENTS,
    MEMORY,
    PROCESSES,
    CREDENTIALS,
    SIGNALS,
    TIME,
    SCHEDULING,
    IPC,
    SOCKETS,
];

/// The rest of the default profile, in docker's order: argument rules, architecture-specific
/// calls, and the calls a capability of the container allows (the kernel checks the same
/// capability; the filter keeps the attack surface of these calls away from containers
/// without it).
const CONDITIONAL: &[Group] = &[
    // Since Linux 4.8 a tracer cannot bypass its tracee's seccomp filter, so tracing one's own
    // children is allowed; other processes' memory needs CAP_SYS_PTRACE (below).
    Group {
        names: &["process_vm_readv", "process_vm_writev", "ptrace"],
        act: Act::Allow,
        args: &[],
        includes: When {
            caps: &[],
            arches: &[],
            min_kernel: Some((4, 8)),
        },
        excludes: ALWAYS,
    },
    // socket(2) of every family but AF_ALG (kernel crypto) and AF_VSOCK (host sockets).
    Group {
        names: &["socket"],
        act: Act::Allow,
        args: &[(0, AF_ALG, 0, "SCMP_CMP_LT")],
        includes: ALWAYS,
        excludes: ALWAYS,
    },
    Group {
        names: &["socket"],
        act: Act::Allow,
        args: &[(0, AF_ALG + 1, 0, "SCMP_CMP_EQ")],
        includes: ALWAYS,
        excludes: ALWAYS,
    },
    Group {
        names: &["socket"],
        act: Act::Allow,
        args: &[(0, AF_VSOCK, 0, "SCMP_CMP_GT")],
        includes: ALWAYS,
        excludes: ALWAYS,
    },
    // personality(2) only to the personas a container needs: PER_LINUX (0), PER_LINUX32 (8),
    // UNAME26 (0x20000), both (0x20008), and the query (0xffffffff).
    Group {
        names: &["personality"],
        act: Act::Allow,
        args: &[(0, 0, 0, "SCMP_CMP_EQ")],
        includes: ALWAYS,
        excludes: ALWAYS,
    },
    Group {
        names: &["personality"],
        act: Act::Allow,
        args: &[(0, 0x0008, 0, "SCMP_CMP_EQ")],
        includes: ALWAYS,
        excludes: ALWAYS,
    },
    Group {
        names: &["personality"],
        act: Act::Allow,
        args: &[(0, 0x2_0000, 0, "SCMP_CMP_EQ")],
        includes: ALWAYS,
        excludes: ALWAYS,
    },
    Group {
        names: &["personality"],
        act: Act::Allow,
        args: &[(0, 0x2_0008, 0, "SCMP_CMP_EQ")],
        includes: ALWAYS,
        excludes: ALWAYS,
    },
    Group {
        names: &["personality"],
        act: Act::Allow,
        args: &[(0, 0xffff_ffff, 0, "SCMP_CMP_EQ")],
        includes: ALWAYS,
        excludes: ALWAYS,
    },
    // Calls of one architecture family.
    allow(&["swapcontext", "sync_file_range2"], on(&["ppc64le"])),
    allow(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "breakpoint",
            "cacheflush",
            "set_tls",
            "sync_file_range2",
        ],
        on(&["arm", "arm64"]),
    ),
    allow(&["arch_prctl"], on(&["amd64", "x32"])),
    allow(&["modify_ldt"], on(&["amd64", "x32", "x86"])),
    allow(
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        on(&["s390", "s390x"]),
    ),
    allow(&["riscv_flush_icache"], on(&["riscv64"])),
    // Opening files by handle bypasses path checks.
    allow(&["open_by_handle_at"], with_cap(&["CAP_DAC_READ_SEARCH"])),
    // CAP_SYS_ADMIN: mounts, namespaces, quotas, host and domain names, bpf, perf, the kernel
    // log, fanotify groups, LSM attributes, and clone/clone3 with any flags.
    allow(
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        with_cap(&["CAP_SYS_ADMIN"]),
    ),
    // Without CAP_SYS_ADMIN: clone without namespace flags (the flags are argument 0, but
    // argument 1 on s390).
    Group {
        names: &["clone"],
        act: Act::Allow,
        args: &[(0, CLONE_NAMESPACES, 0, "SCMP_CMP_MASKED_EQ")],
        includes: ALWAYS,
        excludes: When {
            caps: &["CAP_SYS_ADMIN"],
            arches: &["s390", "s390x"],
            min_kernel: None,
        },
    },
    Group {
        names: &["clone"],
        act: Act::Allow,
        args: &[(1, CLONE_NAMESPACES, 0, "SCMP_CMP_MASKED_EQ")],
        includes: on(&["s390", "s390x"]),
        excludes: with_cap(&["CAP_SYS_ADMIN"]),
    },
    // Without CAP_SYS_ADMIN: clone3 fails with ENOSYS (its flags are in memory, out of the
    // filter's reach), so libc falls back to clone, whose flags the rule above checks.
    Group {
        names: &["clone3"],
        act: Act::Errno(38),
        args: &[],
        includes: ALWAYS,
        excludes: with_cap(&["CAP_SYS_ADMIN"]),
    },
    allow(&["reboot"], with_cap(&["CAP_SYS_BOOT"])),
    allow(&["chroot"], with_cap(&["CAP_SYS_CHROOT"])),
    allow(
        &["delete_module", "finit_module", "init_module"],
        with_cap(&["CAP_SYS_MODULE"]),
    ),
    allow(&["acct"], with_cap(&["CAP_SYS_PACCT"])),
    allow(
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        with_cap(&["CAP_SYS_PTRACE"]),
    ),
    allow(&["ioperm", "iopl"], with_cap(&["CAP_SYS_RAWIO"])),
    allow(
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
        with_cap(&["CAP_SYS_TIME"]),
    ),
    allow(&["vhangup"], with_cap(&["CAP_SYS_TTY_CONFIG"])),
    allow(
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        with_cap(&["CAP_SYS_NICE"]),
    ),
    allow(&["syslog"], with_cap(&["CAP_SYSLOG"])),
    allow(&["bpf"], with_cap(&["CAP_BPF"])),
    allow(&["perf_event_open"], with_cap(&["CAP_PERFMON"])),
];

/// The architectures of the default profile: on each host, the first of a line and the
/// others its kernel runs (docker's `archMap`).
const ARCH_MAP: &[(&str, &[&str])] = &[
    ("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
    (
        "SCMP_ARCH_MIPS64",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"],
    ),
    (
        "SCMP_ARCH_MIPS64N32",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"],
    ),
    (
        "SCMP_ARCH_MIPSEL64",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
    ),
    (
        "SCMP_ARCH_MIPSEL64N32",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"],
    ),
    ("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
    ("SCMP_ARCH_RISCV64", &[]),
    ("SCMP_ARCH_LOONGARCH64", &[]),
];

fn strs(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| (*x).to_owned()).collect()
}

impl When {
    fn filter(&self) -> Filter {
        Filter {
            caps: strs(self.caps),
            arches: strs(self.arches),
            min_kernel: self
                .min_kernel
                .map(|(kernel, major)| KernelVersion { kernel, major }),
        }
    }
}

/// berthd's default profile: docker's (see the groups above). Every syscall not allowed
/// fails with `EPERM` (`defaultErrnoRet` 1); syscalls newer than the newest it names fail
/// with `ENOSYS` (the runtime's stub).
pub fn default_profile() -> Profile {
    let mut syscalls = vec![Rule {
        names: UNCONDITIONAL
            .iter()
            .flat_map(|g| g.iter())
            .map(|s| (*s).to_owned())
            .collect(),
        action: "SCMP_ACT_ALLOW".into(),
        errno_ret: None,
        args: Vec::new(),
        includes: Filter::default(),
        excludes: Filter::default(),
    }];
    for g in CONDITIONAL {
        let (action, errno_ret) = match g.act {
            Act::Allow => ("SCMP_ACT_ALLOW", None),
            Act::Errno(e) => ("SCMP_ACT_ERRNO", Some(e)),
        };
        syscalls.push(Rule {
            names: strs(g.names),
            action: action.into(),
            errno_ret,
            args: g
                .args
                .iter()
                .map(|&(index, value, two, op)| Arg {
                    index,
                    value,
                    value_two: (op == "SCMP_CMP_MASKED_EQ").then_some(two),
                    op: op.into(),
                })
                .collect(),
            includes: g.includes.filter(),
            excludes: g.excludes.filter(),
        });
    }
    Profile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(1),
        architectures: Vec::new(),
        arch_map: ARCH_MAP
            .iter()
            .map(|(a, subs)| ((*a).to_owned(), strs(subs)))
            .collect(),
        flags: Vec::new(),
        syscalls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(c: &[&str]) -> Vec<String> {
        strs(c)
    }

    fn ctx<'a>(caps: &'a [String], arch: &'static str, kernel: (u64, u64)) -> Context<'a> {
        Context {
            caps,
            arch,
            kernel: Some(KernelVersion {
                kernel: kernel.0,
                major: kernel.1,
            }),
            release: format!("{}.{}.0", kernel.0, kernel.1),
        }
    }

    /// The resolved rules as (names, action, errnoRet, has args).
    fn rules(v: &Value) -> Vec<(Vec<String>, String, Option<u64>, bool)> {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    serde_json::from_value(r["names"].clone()).unwrap(),
                    r["action"].as_str().unwrap().to_owned(),
                    r["errnoRet"].as_u64(),
                    r.get("args").is_some(),
                )
            })
            .collect()
    }

    /// Whether `name` is allowed without argument conditions.
    fn allowed(v: &Value, name: &str) -> bool {
        rules(v)
            .iter()
            .any(|(n, a, _, args)| a == "SCMP_ACT_ALLOW" && !args && n.iter().any(|x| x == name))
    }

    fn named(v: &Value, name: &str) -> usize {
        rules(v)
            .iter()
            .filter(|(n, _, _, _)| n.iter().any(|x| x == name))
            .count()
    }

    fn resolve_default(c: &[&str], arch: &'static str, kernel: (u64, u64)) -> Value {
        let caps = caps(c);
        default_profile()
            .resolve(&ctx(&caps, arch, kernel))
            .unwrap()
            .unwrap()
    }

    fn docker_defaults() -> Vec<&'static str> {
        crate::spec::DEFAULT_CAPS.to_vec()
    }

    #[test]
    fn default_profile_is_an_allow_list_with_eperm() {
        let v = resolve_default(&docker_defaults(), "amd64", (6, 18));
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 1);
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        for ok in [
            "read",
            "openat",
            "execve",
            "clock_adjtime",
            "chroot",
            "ptrace",
            "arch_prctl",
        ] {
            assert!(allowed(&v, ok), "{ok} allowed");
        }
        // Never allowed, whatever the capabilities, and not by default.
        for never in [
            "kexec_load",
            "kexec_file_load",
            "keyctl",
            "add_key",
            "request_key",
            "swapon",
            "swapoff",
            "userfaultfd",
            "io_uring_setup",
            "uselib",
            "_sysctl",
            "nfsservctl",
        ] {
            assert_eq!(named(&v, never), 0, "{never} named");
        }
        for gated in [
            "mount",
            "unshare",
            "setns",
            "open_by_handle_at",
            "kcmp",
            "reboot",
            "init_module",
            "acct",
            "iopl",
            "settimeofday",
            "get_mempolicy",
            "syslog",
            "bpf",
            "perf_event_open",
            "vhangup",
            "fanotify_init",
        ] {
            assert_eq!(named(&v, gated), 0, "{gated} without its capability");
        }
        // clone only without namespace flags, clone3 with ENOSYS, socket and personality with
        // argument rules.
        let r = rules(&v);
        assert!(r.contains(&(vec!["clone".into()], "SCMP_ACT_ALLOW".into(), None, true)));
        assert!(r.contains(&(
            vec!["clone3".into()],
            "SCMP_ACT_ERRNO".into(),
            Some(38),
            false
        )));
        assert_eq!(named(&v, "socket"), 3);
        assert_eq!(named(&v, "personality"), 5);
        assert!(!allowed(&v, "socket") && !allowed(&v, "personality"));
        // The s390 clone rule and other architectures' calls are left out on amd64.
        assert_eq!(named(&v, "clone"), 1);
        assert_eq!(named(&v, "s390_runtime_instr") + named(&v, "set_tls"), 0);
    }

    #[test]
    fn default_lists_have_no_duplicates() {
        let mut all: Vec<&str> = UNCONDITIONAL
            .iter()
            .flat_map(|g| g.iter().copied())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a syscall in two unconditional groups");
        // docker's default profile allows 361 syscalls unconditionally.
        assert_eq!(n, 361);
        for g in CONDITIONAL {
            for name in g.names {
                assert!(
                    all.binary_search(name).is_err(),
                    "{name} is both unconditional and conditional"
                );
            }
        }
    }

    #[test]
    fn capabilities_open_their_groups() {
        let mut c = docker_defaults();
        c.push("CAP_SYS_ADMIN");
        let v = resolve_default(&c, "amd64", (6, 18));
        for ok in [
            "mount",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "bpf",
            "syslog",
            "sethostname",
        ] {
            assert!(allowed(&v, ok), "{ok} with CAP_SYS_ADMIN");
        }
        // The masked clone rule and the clone3 ENOSYS rule go.
        let r = rules(&v);
        assert!(!r.iter().any(|(n, _, _, args)| n == &["clone"] && *args));
        assert!(!r
            .iter()
            .any(|(n, a, _, _)| n == &["clone3"] && a == "SCMP_ACT_ERRNO"));
        assert_eq!(named(&v, "kexec_load"), 0);

        for (cap, calls) in [
            (
                "CAP_SYS_PTRACE",
                &["kcmp", "pidfd_getfd", "process_madvise"][..],
            ),
            (
                "CAP_SYS_MODULE",
                &["init_module", "finit_module", "delete_module"],
            ),
            ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
            ("CAP_SYS_BOOT", &["reboot"]),
            ("CAP_SYS_PACCT", &["acct"]),
            ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
            ("CAP_SYS_NICE", &["mbind", "get_mempolicy", "set_mempolicy"]),
            ("CAP_SYSLOG", &["syslog"]),
            ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
            ("CAP_BPF", &["bpf"]),
            ("CAP_PERFMON", &["perf_event_open"]),
            ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
        ] {
            let without = resolve_default(&docker_defaults(), "amd64", (6, 18));
            let mut c = docker_defaults();
            c.push(cap);
            let with = resolve_default(&c, "amd64", (6, 18));
            for call in calls {
                assert!(!allowed(&without, call), "{call} without {cap}");
                assert!(allowed(&with, call), "{call} with {cap}");
            }
            assert_eq!(named(&with, "mount"), 0, "{cap} opens no mount");
        }
        // Dropping CAP_SYS_CHROOT closes chroot.
        let c: Vec<&str> = docker_defaults()
            .into_iter()
            .filter(|c| *c != "CAP_SYS_CHROOT")
            .collect();
        assert!(!allowed(&resolve_default(&c, "amd64", (6, 18)), "chroot"));
    }

    #[test]
    fn kernel_and_architecture_conditions() {
        // ptrace without CAP_SYS_PTRACE only from 4.8 on.
        assert!(allowed(&resolve_default(&[], "amd64", (4, 8)), "ptrace"));
        assert!(allowed(&resolve_default(&[], "amd64", (5, 0)), "ptrace"));
        assert!(!allowed(&resolve_default(&[], "amd64", (4, 7)), "ptrace"));
        // Architecture-specific calls and the archMap entry of the host.
        let arm = resolve_default(&[], "arm64", (6, 1));
        assert!(allowed(&arm, "set_tls") && !allowed(&arm, "arch_prctl"));
        assert_eq!(
            arm["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        let s390 = resolve_default(&[], "s390x", (6, 1));
        let r = rules(&s390);
        assert_eq!(named(&s390, "clone"), 1);
        let clone = s390["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"] == json!(["clone"]))
            .unwrap();
        assert_eq!(clone["args"][0]["index"], 1, "{r:?}");
        // A host without a readable kernel version cannot judge minKernel.
        let none: Vec<String> = Vec::new();
        let mut c = ctx(&none, "amd64", (6, 1));
        c.kernel = None;
        assert!(matches!(
            default_profile().resolve(&c),
            Err(SeccompError::HostKernel(_))
        ));
    }

    fn user(text: &str, c: &[&str], arch: &'static str, kernel: (u64, u64)) -> Value {
        let caps = caps(c);
        Profile::parse(text)
            .unwrap()
            .resolve(&ctx(&caps, arch, kernel))
            .unwrap()
            .unwrap()
    }

    fn names_of(v: &Value) -> Vec<String> {
        rules(v).into_iter().flat_map(|(n, _, _, _)| n).collect()
    }

    #[test]
    fn user_profile_conditions_are_judged() {
        let p = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["b"], "action": "SCMP_ACT_ERRNO",
             "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}},
            {"names": ["c"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["d"], "action": "SCMP_ACT_ERRNO",
             "excludes": {"caps": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]}},
            {"names": ["e"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["arm64", "amd64"]}},
            {"names": ["f"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["arm64"]}},
            {"names": ["g"], "action": "SCMP_ACT_ERRNO", "excludes": {"arches": ["amd64"]}},
            {"names": ["h"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "5.10"}},
            {"names": ["i"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "5.10"}},
            {"name": "j", "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "comment": "old form",
             "includes": {"caps": ["CAP_SYS_ADMIN"], "minKernel": "4.0"}, "excludes": {}}
        ]}"#;
        let v = user(p, &["CAP_CHOWN"], "amd64", (6, 18));
        assert_eq!(names_of(&v), ["c", "d", "e", "h"]);
        let v = user(p, &["CAP_SYS_ADMIN"], "amd64", (6, 18));
        assert_eq!(names_of(&v), ["a", "e", "h", "j"]);
        let v = user(p, &["CAP_SYS_ADMIN", "CAP_NET_ADMIN"], "amd64", (5, 9));
        assert_eq!(names_of(&v), ["a", "b", "e", "i", "j"]);
        let v = user(p, &["CAP_NET_ADMIN"], "arm64", (5, 10));
        assert_eq!(names_of(&v), ["c", "e", "f", "g", "h"]);
        assert_eq!(
            rules(&user(p, &["CAP_SYS_ADMIN"], "amd64", (6, 1)))[3].2,
            Some(22)
        );
    }

    #[test]
    fn user_profile_fields_pass_through() {
        let p = r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "archMap": [{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"], "listenerPath": "",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": [], "action": "SCMP_ACT_ALLOW"}]}"#;
        let v = user(p, &[], "amd64", (6, 1));
        assert_eq!(
            v,
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}]})
        );
        // Field names match case-insensitively, as in dockerd.
        let v = user(
            r#"{"DefaultAction": "SCMP_ACT_ALLOW", "Syscalls": null}"#,
            &[],
            "amd64",
            (6, 1),
        );
        assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
        // Nothing at all: unconfined, as docker.
        assert!(Profile::parse("{}")
            .unwrap()
            .resolve(&ctx(&[], "amd64", (6, 1)))
            .unwrap()
            .is_none());
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let err = |text: &str| -> String {
            let caps: Vec<String> = Vec::new();
            match Profile::parse(text).and_then(|p| p.resolve(&ctx(&caps, "amd64", (6, 1)))) {
                Ok(v) => panic!("{text} accepted: {v:?}"),
                Err(e) => e.to_string(),
            }
        };
        let rule = |r: &str| format!(r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{r}]}}"#);
        for (text, want) in [
            ("{not json".to_owned(), "decoding seccomp profile failed"),
            ("[]".to_owned(), "profile must be an object"),
            ("null".to_owned(), "profile must be an object"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "bogus": 1}"#.into(),
                "unknown field bogus",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent"}"#.into(),
                "listenerPath is not supported",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}"#.into(),
                "listenerMetadata is not supported",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_NOPE"}"#.into(),
                "defaultAction: unknown action",
            ),
            (
                r#"{"defaultAction": 1}"#.into(),
                "defaultAction must be a string",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": -1}"#.into(),
                "defaultErrnoRet must be an errno",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#
                    .into(),
                "both architectures and archMap",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}"#.into(),
                "architectures[0]: unknown architecture",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"arch": "SCMP_ARCH_X86_64"}]}"#
                    .into(),
                "unknown field archMap[0].arch",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}"#
                    .into(),
                "flags[0]: unknown flag",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}"#.into(),
                "syscalls must be an array",
            ),
            (
                r#"{"syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW"}]}"#.into(),
                "defaultAction is missing",
            ),
            (
                rule(r#"{"names": ["a"], "name": "b", "action": "SCMP_ACT_ERRNO"}"#),
                "both syscalls[0].name and syscalls[0].names",
            ),
            (
                rule(r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "caps": ["CAP_SYS_ADMIN"]}"#),
                "unknown field syscalls[0].caps",
            ),
            (
                rule(r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "includes": {"capz": []}}"#),
                "unknown field syscalls[0].includes.capz",
            ),
            (
                rule(
                    r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["SYS_ADMIN"]}}"#,
                ),
                "syscalls[0].includes.caps[0]: unknown capability",
            ),
            (
                rule(
                    r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "excludes": {"arches": ["x86_64"]}}"#,
                ),
                "syscalls[0].excludes.arches[0]: unknown architecture",
            ),
            (
                rule(
                    r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "4"}}"#,
                ),
                "syscalls[0].includes.minKernel: invalid kernel version",
            ),
            (
                rule(
                    r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "0.0"}}"#,
                ),
                "invalid kernel version",
            ),
            (
                rule(
                    r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": 4.8}}"#,
                ),
                "syscalls[0].includes.minKernel must be a string",
            ),
            (
                rule(r#"{"names": "a", "action": "SCMP_ACT_ERRNO"}"#),
                "syscalls[0].names must be an array",
            ),
            (
                rule(r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}"#),
                "syscalls[0].errnoRet must be an errno",
            ),
            (
                rule(
                    r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}"#,
                ),
                "syscalls[0].args[0].index must be an argument index",
            ),
            (
                rule(
                    r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "EQ"}]}"#,
                ),
                "syscalls[0].args[0].op: unknown operator",
            ),
            (
                rule(
                    r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}"#,
                ),
                "syscalls[0].args[0].value must be an unsigned",
            ),
            (
                rule(r#"{"names": ["a"], "action": "SCMP_ACT_ERRNO", "Names": ["b"]}"#),
                "field syscalls[0].names given twice",
            ),
        ] {
            let e = err(&text);
            assert!(e.contains(want), "{text}: {e:?} does not contain {want:?}");
        }
    }

    #[test]
    fn kernel_versions_parse_as_docker() {
        let kv = |k, m| {
            Some(KernelVersion {
                kernel: k,
                major: m,
            })
        };
        assert_eq!(KernelVersion::of_release("6.18.44-fc-v657"), kv(6, 18));
        assert_eq!(KernelVersion::of_release("3.12-1-amd64"), kv(3, 12));
        assert_eq!(KernelVersion::of_release("5.4"), kv(5, 4));
        assert_eq!(KernelVersion::of_release("5.4rc1"), kv(5, 4));
        assert_eq!(KernelVersion::of_release("five"), None);
        assert_eq!(KernelVersion::of_min_kernel("4.8", "f").unwrap(), kv(4, 8));
        assert_eq!(KernelVersion::of_min_kernel("", "f").unwrap(), None);
        assert!(KernelVersion::of_min_kernel("4.8.1", "f").is_err());
        assert!(KernelVersion::of_min_kernel("256.1", "f").is_err());
        assert!(kv(6, 1) > kv(5, 19) && kv(4, 8) >= kv(4, 8));
    }

    #[test]
    fn host_config_decides_the_filter() {
        use bollard_stubs::models::HostConfig;
        let hc = |opt: Option<&str>, privileged: bool, add: &[&str]| HostConfig {
            security_opt: opt.map(|o| vec![o.to_owned()]),
            privileged: Some(privileged),
            cap_add: Some(strs(add)),
            ..Default::default()
        };
        let default = for_container(&hc(None, false, &[])).unwrap().unwrap();
        assert_eq!(default["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(!allowed(&default, "mount"));
        let admin = for_container(&hc(None, false, &["SYS_ADMIN"]))
            .unwrap()
            .unwrap();
        assert!(allowed(&admin, "mount"));
        assert!(for_container(&hc(Some("seccomp=unconfined"), false, &[]))
            .unwrap()
            .is_none());
        assert!(for_container(&hc(None, true, &[])).unwrap().is_none());
        assert_eq!(
            for_container(&hc(Some("seccomp=builtin"), false, &[]))
                .unwrap()
                .unwrap(),
            default
        );
        // A profile given to a privileged container applies, judged against all capabilities.
        let p = r#"seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}"#;
        let v = for_container(&hc(Some(p), true, &[])).unwrap().unwrap();
        assert_eq!(names_of(&v), ["mkdir"]);
        let v = for_container(&hc(Some(p), false, &[])).unwrap().unwrap();
        assert!(names_of(&v).is_empty());
        match for_container(&hc(
            Some(r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","x":1}"#),
            false,
            &[],
        )) {
            Err(Error::BadParameter(m)) => assert!(m.contains("unknown field x"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
