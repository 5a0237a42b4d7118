//! Bundle validation against the OCI runtime spec: its JSON schema and its semantic rules.
//!
//! Validation works on the raw JSON of `config.json` rather than on a parsed [`oci_spec`]
//! structure, so that a wrong type is one [`Problem`] with its JSON path among all the others
//! instead of a deserialiser error that stops at the first one. Each problem names the field,
//! what is wrong and the rule of the spec (file and section) that it breaks; MUST rules are
//! [`Severity::Error`], SHOULD rules and deprecations [`Severity::Warning`].
//!
//! ```
//! use berth_runtime::validate::{validate_value, Severity};
//!
//! let config = serde_json::json!({
//!     "ociVersion": "1.2.0",
//!     "root": {"path": "rootfs"},
//!     "process": {"cwd": "tmp", "args": ["sh"]},
//!     "hostname": "web",
//! });
//! let problems = validate_value(&config, None);
//! let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
//! assert!(lines.iter().any(|l| l.starts_with("process.cwd: ")));
//! assert!(lines.iter().any(|l| l.starts_with("hostname: ")));
//! assert!(problems.iter().all(|p| p.severity == Severity::Error));
//! ```

mod linux;
mod process;
mod support;
mod tables;

pub use support::Host;

/// The `process.rlimits[].type` names this runtime accepts (those of getrlimit(2), as the
/// runtime spec's config.md#posix-process spells them), for callers that build specs, such as
/// a daemon mapping docker's `--ulimit nofile=...` to `RLIMIT_NOFILE`.
pub const RLIMIT_TYPES: &[&str] = tables::RLIMITS;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::spec::SpecError;
use tables::{Field, Ty};

/// How bad a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Severity {
    /// A SHOULD rule, a deprecation or a value that a runtime will ignore.
    Warning,
    /// A MUST rule or a schema violation: a runtime has to refuse the bundle.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the offending value, e.g. `process.args` or `linux.namespaces[2].type`;
    /// `.` for the document itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What the spec says, with its file and section, e.g.
    /// `config.md#process: args needs at least one entry`.
    pub rule: String,
    /// Error (MUST) or warning (SHOULD).
    pub severity: Severity,
}

impl fmt::Display for Problem {
    /// `PATH: MESSAGE (RULE)`, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.message, self.rule)
    }
}

/// A bundle whose `config.json` cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// config.json could not be read.
    #[error("read {path}")]
    Read {
        /// Path of config.json.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// config.json is not JSON.
    #[error("{path}: not valid JSON")]
    Parse {
        /// Path of config.json.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Validate `DIR/config.json`, including the checks that need the bundle on disk
/// (`root.path` is a directory relative to `DIR`). `config.json` is read with
/// [`crate::spec::read_config_file`]: a FIFO, a device or a file past its cap is
/// [`ValidateError::Read`].
///
/// ```no_run
/// let problems = berth_runtime::validate::validate_bundle("/srv/bundles/web".as_ref())?;
/// for p in &problems {
///     println!("{}: {p}", p.severity);
/// }
/// # Ok::<(), berth_runtime::validate::ValidateError>(())
/// ```
pub fn validate_bundle(dir: &Path) -> Result<Vec<Problem>, ValidateError> {
    let path = dir.join("config.json");
    // A regular file of a sane size only (a FIFO must not hang us, /dev/zero fill memory).
    let text = crate::spec::read_config_file(&path).map_err(|source| ValidateError::Read {
        path: path.clone(),
        source,
    })?;
    let config: Value =
        serde_json::from_slice(&text).map_err(|source| ValidateError::Parse { path, source })?;
    Ok(validate_value(&config, Some(dir)))
}

/// Validate a configuration given as JSON; with `bundle`, also check the paths it names
/// relative to the bundle directory. Problems come in document order, errors and warnings mixed.
///
/// ```
/// let config = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}});
/// assert!(berth_runtime::validate::validate_value(&config, None).is_empty());
/// ```
pub fn validate_value(config: &Value, bundle: Option<&Path>) -> Vec<Problem> {
    let mut c = Checker::default();
    let Some(doc) = c.object(config, ".", "config.md: the configuration is a JSON object") else {
        return c.problems;
    };
    c.fields(doc, "", tables::TOP, "config.md");
    nul_bytes(&mut c, config, "");
    path_lengths(&mut c, doc);
    version(&mut c, doc);
    root(&mut c, doc, bundle);
    let ns = linux::Namespaces::collect(doc);
    process::check(&mut c, doc);
    mounts(&mut c, doc);
    hooks(&mut c, doc);
    annotations(&mut c, doc);
    names(&mut c, doc, &ns);
    linux::check(&mut c, doc, &ns);
    c.problems
}

/// The properties of a configuration that berth cannot apply on this host (see
/// [`Host::detect`]): AppArmor and SELinux labels (`process.apparmorProfile`,
/// `process.selinuxLabel`, `linux.mountLabel`; without the module, or berth does not apply
/// them), the `SCHED_ISO` scheduler policy (Linux never merged it), and fields berth does not
/// implement (`linux.intelRdt`, `linux.netDevices`). Each is an error for `create`
/// (runtime.md#create); personality flags are a warning (runc ignores them). Scheduling
/// fields that Linux can apply (`process.ioPriority`, `process.scheduler`,
/// `process.execCPUAffinity`, `linux.memoryPolicy`) are not in the list.
///
/// ```
/// use berth_runtime::validate::Severity;
/// let config = serde_json::json!({
///     "ociVersion": "1.2.0", "root": {"path": "rootfs"},
///     "process": {"cwd": "/", "args": ["sh"], "ioPriority": {"class": "IOPRIO_CLASS_BE"}},
///     "linux": {"intelRdt": {"closID": "guaranteed_group"}},
/// });
/// let p = berth_runtime::validate::unsupported(&config);
/// assert_eq!(p.len(), 1, "{p:?}");
/// assert_eq!(p[0].path, "linux.intelRdt");
/// assert_eq!(p[0].severity, Severity::Error);
/// ```
pub fn unsupported(config: &Value) -> Vec<Problem> {
    unsupported_on(config, Host::detect())
}

/// [`unsupported`] for a given host.
pub fn unsupported_on(config: &Value, host: Host) -> Vec<Problem> {
    let mut c = Checker::default();
    if let Some(doc) = config.as_object() {
        support::check(&mut c, doc, host);
    }
    c.problems
}

/// Validate a `process` object on its own (an `exec --process` file) with the rules of
/// `config.json`'s `process`, and what berth cannot apply of it on this host (as errors, as
/// [`unsupported`] says them for create). Paths start with `process.`.
///
/// ```
/// let p = serde_json::json!({"cwd": "/", "args": ["sh"], "user": {"uid": 4294967295u32, "gid": 0}});
/// let problems = berth_runtime::validate::validate_process(&p);
/// assert_eq!(problems[0].path, "process.user.uid");
/// ```
pub fn validate_process(process: &Value) -> Vec<Problem> {
    let mut c = Checker::default();
    let mut doc = Map::new();
    doc.insert("process".into(), process.clone());
    let Some(p) = c.object(
        process,
        "process",
        "config.md#process: process is an object",
    ) else {
        return c.problems;
    };
    nul_bytes(&mut c, process, "process");
    path_lengths(&mut c, &doc);
    process::check(&mut c, &doc);
    support::process(&mut c, p, "process", Host::detect());
    c.problems
}

/// The first error of [`validate_value`] and then of [`unsupported`] as a
/// [`SpecError::Invalid`], for `create` to refuse an invalid bundle, or one with a property
/// it cannot apply, before it sets anything up. Warnings are not errors.
///
/// ```
/// let bundle = tempfile::tempdir()?;
/// std::fs::create_dir(bundle.path().join("rootfs"))?;
/// let bad = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "hostname": "h"});
/// let err = berth_runtime::validate::check(&bad, bundle.path()).unwrap_err();
/// assert!(err.to_string().starts_with("config.json: hostname: "));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn check(config: &Value, bundle: &Path) -> Result<(), SpecError> {
    let problems = validate_value(config, Some(bundle));
    let unsupported = || unsupported(config);
    let first = |v: Vec<Problem>| v.into_iter().find(|p| p.severity == Severity::Error);
    match first(problems).or_else(|| first(unsupported())) {
        Some(p) => Err(SpecError::invalid(
            p.path,
            format!("{} ({})", p.message, p.rule),
        )),
        None => Ok(()),
    }
}

/// Collects problems; helpers for the typed walk over the raw JSON.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn push(&mut self, severity: Severity, path: &str, message: String, rule: &str) {
        let path = if path.is_empty() { "." } else { path };
        self.problems.push(Problem {
            path: path.to_owned(),
            message,
            rule: rule.to_owned(),
            severity,
        });
    }

    fn error(&mut self, path: &str, message: impl Into<String>, rule: &str) {
        self.push(Severity::Error, path, message.into(), rule);
    }

    fn warn(&mut self, path: &str, message: impl Into<String>, rule: &str) {
        self.push(Severity::Warning, path, message.into(), rule);
    }

    /// `v` as an object, reporting it if it is something else.
    fn object<'a>(
        &mut self,
        v: &'a Value,
        path: &str,
        rule: &str,
    ) -> Option<&'a Map<String, Value>> {
        let o = v.as_object();
        if o.is_none() {
            self.error(
                path,
                format!("must be an object, found {}", describe(v)),
                rule,
            );
        }
        o
    }

    /// Check the type of every field of `obj` listed in `table` and that required ones are
    /// there. `section` is the spec file#section the table comes from.
    fn fields(&mut self, obj: &Map<String, Value>, path: &str, table: &[Field], section: &str) {
        for f in table {
            let fpath = join(path, f.name);
            let rule = format!(
                "{section}: {} ({}, {})",
                f.name,
                f.ty.name(),
                if f.required { "REQUIRED" } else { "OPTIONAL" }
            );
            match obj.get(f.name) {
                None if f.required => self.error(&fpath, "is missing", &rule),
                None => {}
                Some(v) => self.typed(v, &fpath, f.ty, &rule),
            }
        }
    }

    fn typed(&mut self, v: &Value, path: &str, ty: Ty, rule: &str) {
        let ok = match ty {
            Ty::StrArray | Ty::U32Array => {
                let Some(items) = v.as_array() else {
                    self.error(
                        path,
                        format!("must be an array, found {}", describe(v)),
                        rule,
                    );
                    return;
                };
                let item = if ty == Ty::StrArray { Ty::Str } else { Ty::U32 };
                for (i, x) in items.iter().enumerate() {
                    self.typed(x, &index(path, i), item, rule);
                }
                return;
            }
            Ty::StrMap => {
                let Some(map) = v.as_object() else {
                    self.error(
                        path,
                        format!("must be an object, found {}", describe(v)),
                        rule,
                    );
                    return;
                };
                for (k, x) in map {
                    self.typed(x, &key(path, k), Ty::Str, rule);
                }
                return;
            }
            other => other.accepts(v),
        };
        if !ok {
            self.error(
                path,
                format!("must be {}, found {}", ty.article(), describe(v)),
                rule,
            );
        }
    }

    /// The elements of the array at `obj[name]` that are objects, each with its path, after
    /// checking them against `table`. Elements of other types are reported.
    fn objects<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        path: &str,
        name: &str,
        table: &[Field],
        section: &str,
    ) -> Vec<(String, &'a Map<String, Value>)> {
        let Some(items) = obj.get(name).and_then(Value::as_array) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = index(&join(path, name), i);
            let rule = format!("{section}: each entry of {name} is an object");
            if let Some(o) = self.object(item, &ipath, &rule) {
                self.fields(o, &ipath, table, section);
                out.push((ipath, o));
            }
        }
        out
    }

    /// A path field that MUST be absolute: report it if it is relative.
    fn absolute(&mut self, obj: &Map<String, Value>, path: &str, name: &str, rule: &str) {
        if let Some(p) = str_of(obj, name) {
            if !p.starts_with('/') {
                self.error(
                    &join(path, name),
                    format!("{p:?} is not an absolute path"),
                    rule,
                );
            }
        }
    }

    /// Each entry of a string list must be one of `known`.
    fn known_names(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        name: &str,
        known: &[&str],
        rule: &str,
    ) {
        let Some(items) = obj.get(name).and_then(Value::as_array) else {
            return;
        };
        for (i, v) in items.iter().enumerate() {
            if let Some(s) = v.as_str() {
                if !known.contains(&s) {
                    self.error(
                        &index(&join(path, name), i),
                        format!("unknown value {s:?}"),
                        rule,
                    );
                }
            }
        }
    }

    /// A string field that must be one of `known`.
    fn known_value(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        name: &str,
        known: &[&str],
        rule: &str,
    ) {
        if let Some(s) = str_of(obj, name) {
            if !known.contains(&s) {
                self.error(
                    &join(path, name),
                    format!("unknown value {s:?} (known: {})", known.join(", ")),
                    rule,
                );
            }
        }
    }

    /// An integer field that ends in a kernel type or interface taking `lo..=hi`: report a
    /// value outside as `N is out of range for WHAT (LO..=HI)`. Non-integers are left to the
    /// type check.
    #[allow(clippy::too_many_arguments)]
    fn int_range(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        name: &str,
        lo: i128,
        hi: i128,
        what: &str,
        rule: &str,
    ) {
        if let Some(n) = obj.get(name).and_then(int_of) {
            if n < lo || n > hi {
                self.error(
                    &join(path, name),
                    format!("{n} is out of range for {what} ({lo}..={hi})"),
                    rule,
                );
            }
        }
    }

    /// A uid or gid field (`what` is `a uid` or `a gid`) must not be 4294967295, the kernel's
    /// (uid_t)-1 that setresuid(2), setresgid(2) and chown(2) take as "leave unchanged".
    fn id_not_minus_one(&mut self, obj: &Map<String, Value>, path: &str, name: &str, what: &str) {
        if obj.get(name).and_then(Value::as_u64) == Some(u64::from(u32::MAX)) {
            self.error(
                &join(path, name),
                format!("4294967295 is (uid_t)-1, which is not {what}: the kernel takes it as \"leave unchanged\""),
                "config.md#user: ids are uint32 ids of the kernel, where 4294967295 is the invalid id",
            );
        }
    }

    /// An integer field that must lie in `lo..=hi` (any JSON integer, uint64 ones past
    /// int64's range included).
    fn range(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        name: &str,
        lo: i64,
        hi: i64,
        rule: &str,
    ) {
        if let Some(n) = obj.get(name).and_then(int_of) {
            if n < i128::from(lo) || n > i128::from(hi) {
                self.error(
                    &join(path, name),
                    format!("{n} is outside {lo}..={hi}"),
                    rule,
                );
            }
        }
    }
}

/// `path.name`, or `name` at the top.
fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// `path[i]`.
fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// `path["key"]`, for map keys that may contain dots.
fn key(path: &str, k: &str) -> String {
    format!("{path}[{k:?}]")
}

/// An integer JSON number as i128 (covers both int64 and uint64); `None` for anything else.
fn int_of(v: &Value) -> Option<i128> {
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
}

fn str_of<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name).and_then(Value::as_str)
}

fn obj_of<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Map<String, Value>> {
    obj.get(name).and_then(Value::as_object)
}

/// What a JSON value is, for messages: `a string`, `a number (-1)`, ...
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// No string of the configuration (keys included) may hold a NUL byte: every one of them ends
/// in a C string of some system call or file, which would cut it there. Annotations are only
/// passed on as JSON and are left alone.
fn nul_bytes(c: &mut Checker, v: &Value, path: &str) {
    const RULE: &str =
        "config.md: strings end in system calls and files as C strings, which cannot hold NUL";
    match v {
        Value::String(s) if s.contains('\0') => {
            c.error(path, "contains a NUL byte", RULE);
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                nul_bytes(c, x, &index(path, i));
            }
        }
        Value::Object(map) => {
            for (k, x) in map {
                if path.is_empty() && k == "annotations" {
                    continue;
                }
                let kpath = if k.contains(['.', '[', '"', '\0']) || k.is_empty() {
                    key(path, k)
                } else {
                    join(path, k)
                };
                if k.contains('\0') {
                    c.error(&kpath, "the key contains a NUL byte", RULE);
                }
                nul_bytes(c, x, &kpath);
            }
        }
        _ => {}
    }
}

/// The longest path a system call takes, with its NUL (PATH_MAX).
const PATH_MAX: usize = 4096;

/// Every field that ends in a path of a system call fits PATH_MAX.
fn path_lengths(c: &mut Checker, doc: &Map<String, Value>) {
    // (JSON path, length in bytes) of every path string.
    let mut paths: Vec<(String, usize)> = Vec::new();
    let mut at = |path: String, v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            paths.push((path, s.len()));
        }
    };
    let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    at(
        "root.path".into(),
        doc.get("root").and_then(|r| r.get("path")),
    );
    if let Some(p) = obj_of(doc, "process") {
        at("process.cwd".into(), p.get("cwd"));
        at(
            "process.args[0]".into(),
            p.get("args").and_then(|a| a.get(0)),
        );
    }
    let mounts = list(doc.get("mounts"));
    for (i, m) in mounts.iter().enumerate() {
        for f in ["destination", "source"] {
            at(format!("mounts[{i}].{f}"), m.get(f));
        }
    }
    let hooks = obj_of(doc, "hooks").cloned().unwrap_or_default();
    for (kind, hs) in &hooks {
        for (i, h) in list(Some(hs)).iter().enumerate() {
            at(format!("hooks.{kind}[{i}].path"), h.get("path"));
        }
    }
    let linux = obj_of(doc, "linux").cloned().unwrap_or_default();
    for (name, field) in [("devices", "path"), ("namespaces", "path")] {
        for (i, d) in list(linux.get(name)).iter().enumerate() {
            at(format!("linux.{name}[{i}].{field}"), d.get(field));
        }
    }
    for name in ["maskedPaths", "readonlyPaths"] {
        for (i, p) in list(linux.get(name)).iter().enumerate() {
            at(format!("linux.{name}[{i}]"), Some(p));
        }
    }
    at("linux.cgroupsPath".into(), linux.get("cgroupsPath"));
    at(
        "linux.seccomp.listenerPath".into(),
        linux.get("seccomp").and_then(|s| s.get("listenerPath")),
    );
    for (path, len) in paths.into_iter().filter(|(_, len)| *len >= PATH_MAX) {
        c.error(
            &path,
            format!(
                "is {len} bytes long: a path has at most {} bytes (PATH_MAX)",
                PATH_MAX - 1
            ),
            "config.md: paths end in system calls, which take at most PATH_MAX bytes with the NUL",
        );
    }
}

fn version(c: &mut Checker, doc: &Map<String, Value>) {
    if let Some(v) = str_of(doc, "ociVersion") {
        if crate::spec::check_version(v).is_err() {
            c.error(
                "ociVersion",
                format!("{v:?} is not a SemVer version from 1.0.0 to 1.3.x"),
                "config.md#specification-version: ociVersion MUST be in SemVer v2.0.0 format; \
                 this runtime implements 1.0.0 to 1.3.x",
            );
        }
    }
}

fn root(c: &mut Checker, doc: &Map<String, Value>, bundle: Option<&Path>) {
    let Some(root) = doc.get("root") else {
        c.error(
            "root",
            "is missing",
            "config.md#root: on Linux, root is REQUIRED",
        );
        return;
    };
    let Some(root) = root.as_object() else { return };
    c.fields(root, "root", tables::ROOT, "config.md#root");
    let (Some(path), Some(bundle)) = (str_of(root, "path"), bundle) else {
        return;
    };
    let rule = "config.md#root: a directory MUST exist at root.path, relative to the bundle";
    if path.is_empty() {
        c.error("root.path", "is empty", rule);
        return;
    }
    let full = bundle.join(path);
    match std::fs::metadata(&full) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => c.error(
            "root.path",
            format!("{} is not a directory", full.display()),
            rule,
        ),
        Err(e) => c.error("root.path", format!("{}: {e}", full.display()), rule),
    }
}

fn mounts(c: &mut Checker, doc: &Map<String, Value>) {
    const SECTION: &str = "config.md#mounts";
    for (path, m) in c.objects(doc, "", "mounts", tables::MOUNT, SECTION) {
        if let Some(dest) = str_of(m, "destination") {
            if dest.is_empty() {
                c.error(
                    &join(&path, "destination"),
                    "is empty",
                    "config.md#mounts: destination is a path inside the container",
                );
            } else if !dest.starts_with('/') {
                c.warn(
                    &join(&path, "destination"),
                    format!("{dest:?} is relative (taken as relative to /)"),
                    "config.md#mounts: on Linux destination SHOULD be an absolute path; relative paths are deprecated",
                );
            }
        }
        let options: Vec<&str> = m
            .get("options")
            .and_then(Value::as_array)
            .map(|o| o.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let bind = str_of(m, "type") == Some("bind")
            || options.iter().any(|o| *o == "bind" || *o == "rbind");
        if bind && str_of(m, "source").is_none_or(str::is_empty) {
            c.error(
                &join(&path, "source"),
                "a bind mount has no source",
                "config.md#mounts: source is the file or directory to bind; a mount is a bind mount if it has bind or rbind in options",
            );
        }
        mount_mappings(c, m, &path);
        for (i, o) in options.iter().enumerate() {
            if o.is_empty() {
                c.warn(
                    &index(&join(&path, "options"), i),
                    "empty mount option",
                    "config.md#mounts: options are mount(8) options",
                );
            }
        }
        mount_options(c, m, &path, &options);
    }
}

/// Options berth cannot apply are errors (config.md: the runtime MUST generate an error when a
/// property cannot be applied), named by their index.
fn mount_options(c: &mut Checker, m: &Map<String, Value>, path: &str, options: &[&str]) {
    let typ = str_of(m, "type").unwrap_or("");
    if let Err(e) = crate::rootfs::mount::MountOptions::for_mount(typ, options) {
        let at = options.iter().position(|o| *o == e.option);
        let p = match at {
            Some(i) => index(&join(path, "options"), i),
            None => join(path, "options"),
        };
        c.error(
            &p,
            e.to_string(),
            "config.md#mounts: a runtime MUST generate an error when it cannot apply a mount option",
        );
    }
}

/// The id mappings of an idmapped mount are 32-bit ranges like the user namespace's.
fn mount_mappings(c: &mut Checker, m: &Map<String, Value>, path: &str) {
    for name in ["uidMappings", "gidMappings"] {
        for (mpath, map) in c.objects(
            m,
            path,
            name,
            tables::ID_MAPPING,
            "config.md#mounts: uidMappings and gidMappings are id mappings as in config-linux.md",
        ) {
            linux::mapping_end(c, map, &mpath);
        }
    }
}

fn hooks(c: &mut Checker, doc: &Map<String, Value>) {
    const SECTION: &str = "config.md#posix-platform-hooks";
    let Some(hooks) = obj_of(doc, "hooks") else {
        return;
    };
    c.fields(hooks, "hooks", tables::HOOKS, SECTION);
    for name in hooks.keys() {
        if !tables::HOOKS.iter().any(|f| f.name == name) {
            c.warn(
                &join("hooks", name),
                format!("unknown hook kind {name:?}"),
                "config.md#posix-platform-hooks: the hooks are prestart, createRuntime, createContainer, startContainer, poststart and poststop",
            );
        }
    }
    if hooks.contains_key("prestart") {
        c.warn(
            "hooks.prestart",
            "prestart hooks are deprecated",
            "config.md#prestart: prestart is DEPRECATED in favor of createRuntime, createContainer and startContainer",
        );
    }
    for kind in tables::HOOKS {
        for (path, h) in c.objects(hooks, "hooks", kind.name, tables::HOOK, SECTION) {
            c.absolute(
                h,
                &path,
                "path",
                "config.md#posix-platform-hooks: path MUST be absolute",
            );
            match h.get("timeout").and_then(int_of) {
                Some(t) if t <= 0 => c.error(
                    &join(&path, "timeout"),
                    format!("{t} is not positive"),
                    "config.md#posix-platform-hooks: if set, timeout MUST be greater than zero",
                ),
                _ => c.int_range(h, &path, "timeout", 1, HOOK_TIMEOUT_MAX, "a hook timeout in seconds", "config.md#posix-platform-hooks: timeout is a number of seconds (berth takes up to 2147483647, 68 years)"),
            }
            env_entries(c, h, &path, SECTION);
        }
    }
}

/// The longest hook timeout taken, in seconds (a deadline must stay a point in time).
const HOOK_TIMEOUT_MAX: i128 = i32::MAX as i128;

/// `env` entries are `KEY=value`.
fn env_entries(c: &mut Checker, obj: &Map<String, Value>, path: &str, section: &str) {
    let Some(env) = obj.get("env").and_then(Value::as_array) else {
        return;
    };
    for (i, e) in env.iter().enumerate() {
        if let Some(e) = e.as_str() {
            if !e.contains('=') || e.starts_with('=') {
                c.warn(
                    &index(&join(path, "env"), i),
                    format!("{e:?} is not KEY=value"),
                    &format!(
                        "{section}: env has the same semantics as IEEE Std 1003.1-2008's environ"
                    ),
                );
            }
        }
    }
}

fn annotations(c: &mut Checker, doc: &Map<String, Value>) {
    let Some(a) = obj_of(doc, "annotations") else {
        return;
    };
    if a.contains_key("") {
        c.error(
            &key("annotations", ""),
            "empty key",
            "config.md#annotations: keys MUST NOT be an empty string",
        );
    }
}

/// The longest host or domain name the kernel takes (`__NEW_UTS_LEN`).
const HOST_NAME_MAX: usize = 64;

/// hostname and domainname need a UTS namespace.
fn names(c: &mut Checker, doc: &Map<String, Value>, ns: &linux::Namespaces) {
    for name in ["hostname", "domainname"] {
        if let Some(h) = str_of(doc, name).filter(|h| h.len() > HOST_NAME_MAX) {
            c.error(
                name,
                format!("is {} bytes long, more than the kernel's {HOST_NAME_MAX}", h.len()),
                &format!("config.md#{name}: the name is set with set{name}(2), which takes at most {HOST_NAME_MAX} bytes"),
            );
        }
        if str_of(doc, name).is_some_and(|h| !h.is_empty()) && !ns.has("uts") {
            c.error(
                name,
                format!("{name} is set but linux.namespaces has no uts namespace"),
                &format!(
                    "config.md#{name}: on Linux, {name} can only be set with a new UTS namespace"
                ),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn a_bundle_config_that_is_a_fifo_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        nix::unistd::mkfifo(&config, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = validate_bundle(dir.path()).unwrap_err();
        let why = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(
            why.as_deref(),
            Some("not a regular file but a fifo"),
            "{err}"
        );
    }

    /// A valid base configuration to break in each test.
    pub(crate) fn base() -> Value {
        json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]}
        })
    }

    /// Apply `edit` to [`base`] and return the problem lines with their severity.
    pub(crate) fn lines(edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut v = base();
        edit(&mut v);
        validate_value(&v, None)
            .iter()
            .map(|p| format!("{}: {p}", p.severity))
            .collect()
    }

    /// Assert that some problem line starts with `prefix` (severity and path, say).
    #[track_caller]
    pub(crate) fn has(lines: &[String], prefix: &str) {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "no line starts with {prefix:?} in {lines:#?}"
        );
    }

    #[test]
    fn base_is_valid() {
        assert_eq!(lines(|_| {}), Vec::<String>::new());
    }

    #[test]
    fn display_is_one_line() {
        let p = Problem {
            path: "process.args".into(),
            message: "is missing".into(),
            rule: "config.md#process: args".into(),
            severity: Severity::Error,
        };
        assert_eq!(
            p.to_string(),
            "process.args: is missing (config.md#process: args)"
        );
    }

    #[test]
    fn not_an_object() {
        let p = validate_value(&json!([1]), None);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, ".");
    }

    #[test]
    fn type_errors_have_paths() {
        let l = lines(|v| {
            v["process"]["user"]["uid"] = json!("zero");
            v["process"]["args"] = json!(["sh", 1]);
            v["root"]["readonly"] = json!("yes");
        });
        has(
            &l,
            "error: process.user.uid: must be a uint32, found a string",
        );
        has(&l, "error: process.args[1]: must be a string");
        has(&l, "error: root.readonly: must be a boolean");
    }

    #[test]
    fn version_range() {
        has(
            &lines(|v| v["ociVersion"] = json!("2.0.0")),
            "error: ociVersion:",
        );
        has(
            &lines(|v| v["ociVersion"] = json!("1.4.0")),
            "error: ociVersion:",
        );
        has(
            &lines(|v| {
                v.as_object_mut().unwrap().remove("ociVersion");
            }),
            "error: ociVersion: is missing",
        );
        assert!(lines(|v| v["ociVersion"] = json!("1.0.2-dev")).is_empty());
    }

    #[test]
    fn root_required_and_checked_on_disk() {
        has(
            &lines(|v| {
                v.as_object_mut().unwrap().remove("root");
            }),
            "error: root: is missing",
        );
        let dir = tempfile::tempdir().unwrap();
        let v = base();
        let p = validate_value(&v, Some(dir.path()));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "root.path");
        std::fs::write(dir.path().join("rootfs"), "").unwrap();
        let p = validate_value(&v, Some(dir.path()));
        assert!(p[0].message.contains("not a directory"), "{p:?}");
        std::fs::remove_file(dir.path().join("rootfs")).unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        assert!(validate_value(&v, Some(dir.path())).is_empty());
        check(&v, dir.path()).unwrap();
    }

    #[test]
    fn mounts() {
        let l = lines(|v| {
            v["mounts"] = json!([
                {"destination": "data", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/b", "type": "bind", "options": ["rbind"]},
                {"destination": "/c", "type": "none", "source": "", "options": ["bind"]},
                {"type": "tmpfs"}
            ]);
        });
        has(&l, "warning: mounts[0].destination: \"data\" is relative");
        has(&l, "error: mounts[1].source: a bind mount has no source");
        has(&l, "error: mounts[2].source: a bind mount has no source");
        has(&l, "error: mounts[3].destination: is missing");
    }

    #[test]
    fn hooks() {
        let l = lines(|v| {
            v["hooks"] = json!({
                "prestart": [{"path": "/bin/true"}],
                "createRuntime": [{"path": "bin/true", "timeout": 0}],
                "poststop": [{"args": ["x"]}],
                "later": []
            });
        });
        has(&l, "warning: hooks.prestart: prestart hooks are deprecated");
        has(
            &l,
            "error: hooks.createRuntime[0].path: \"bin/true\" is not an absolute path",
        );
        has(
            &l,
            "error: hooks.createRuntime[0].timeout: 0 is not positive",
        );
        has(&l, "error: hooks.poststop[0].path: is missing");
        has(&l, "warning: hooks.later: unknown hook kind");
    }

    #[test]
    fn hostname_needs_uts() {
        assert!(lines(|v| v["hostname"] = json!("h")).is_empty());
        let l = lines(|v| {
            v["hostname"] = json!("h");
            v["domainname"] = json!("d");
            v["linux"]["namespaces"] = json!([{"type": "pid"}]);
        });
        has(
            &l,
            "error: hostname: hostname is set but linux.namespaces has no uts namespace",
        );
        has(&l, "error: domainname: ");
    }

    #[test]
    fn annotations() {
        let l = lines(|v| v["annotations"] = json!({"": "x", "k": 1}));
        has(&l, "error: annotations[\"\"]: empty key");
        has(&l, "error: annotations[\"k\"]: must be a string");
    }

    #[test]
    fn nul_bytes_and_long_names() {
        let l = lines(|v| {
            v["process"]["args"] = json!(["sh", "a\u{0}b"]);
            v["process"]["env"] = json!(["A=\u{0}"]);
            v["mounts"] = json!([{"destination": "/x\u{0}", "type": "tmpfs", "source": "t"}]);
            v["linux"]["sysctl"] = json!({"kernel.sh\u{0}m": "1"});
            v["annotations"] = json!({"k": "v\u{0}"});
            v["hostname"] = json!("h".repeat(65));
        });
        has(&l, "error: process.args[1]: contains a NUL byte");
        has(&l, "error: process.env[0]: contains a NUL byte");
        has(&l, "error: mounts[0].destination: contains a NUL byte");
        has(
            &l,
            "error: linux.sysctl[\"kernel.sh\\0m\"]: the key contains a NUL byte",
        );
        has(
            &l,
            "error: hostname: is 65 bytes long, more than the kernel's 64",
        );
        assert!(!l.iter().any(|x| x.contains("annotations")), "{l:?}");
    }

    #[test]
    fn hook_timeout_is_bounded() {
        has(
            &lines(|v| v["hooks"] = json!({"poststop": [{"path": "/bin/true", "timeout": i64::MAX}]})),
            "error: hooks.poststop[0].timeout: 9223372036854775807 is out of range for a hook timeout in seconds (1..=2147483647)",
        );
        // The lowest numbers are "not positive", never a range starting at i64::MIN.
        let l = lines(|v| {
            v["hooks"] = json!({"poststop": [{"path": "/bin/true", "timeout": i64::MIN}]})
        });
        has(
            &l,
            "error: hooks.poststop[0].timeout: -9223372036854775808 is not positive",
        );
        assert!(!l.iter().any(|x| x.contains("out of range")), "{l:?}");
    }

    #[test]
    fn idmapped_mount_ranges() {
        has(
            &lines(|v| {
                v["mounts"] = json!([{"destination": "/m", "type": "bind", "source": "/tmp",
                    "uidMappings": [{"containerID": 0, "hostID": 4294967000u64, "size": 1000}]}]);
            }),
            "error: mounts[0].uidMappings[0].size: hostID 4294967000 + size 1000 is out of range",
        );
    }

    #[test]
    fn check_refuses_what_cannot_be_applied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let mut v = base();
        v["linux"]["intelRdt"] = json!({"closID": "x"});
        match check(&v, dir.path()).unwrap_err() {
            SpecError::Invalid { field, why } => {
                assert_eq!(field, "linux.intelRdt");
                assert!(why.contains("berth does not implement Intel RDT"), "{why}");
            }
            e => panic!("{e}"),
        }
        // A spec error comes first.
        v["process"]["cwd"] = json!("rel");
        assert!(check(&v, dir.path())
            .unwrap_err()
            .to_string()
            .contains("process.cwd"));
        let p = validate_process(
            &json!({"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
            "scheduler": {"policy": "SCHED_ISO"}}),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "process.scheduler.policy");
        let p = validate_process(
            &json!({"cwd": "/\u{0}", "args": ["sh"], "user": {"uid": 0, "gid": 0}}),
        );
        assert_eq!(p[0].path, "process.cwd");
    }

    #[test]
    fn check_returns_first_error_only() {
        let mut v = base();
        v["mounts"] = json!([{"destination": "rel", "type": "tmpfs", "source": "t"}]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        check(&v, dir.path()).unwrap(); // a warning only
        v["process"]["cwd"] = json!("rel");
        match check(&v, dir.path()).unwrap_err() {
            SpecError::Invalid { field, why } => {
                assert_eq!(field, "process.cwd");
                assert!(why.contains("config.md#process"), "{why}");
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn bundle_read_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            validate_bundle(dir.path()),
            Err(ValidateError::Read { .. })
        ));
        std::fs::write(dir.path().join("config.json"), "{").unwrap();
        assert!(matches!(
            validate_bundle(dir.path()),
            Err(ValidateError::Parse { .. })
        ));
    }
}
