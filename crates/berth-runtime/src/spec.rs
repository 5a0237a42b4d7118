//! Loading a bundle: its `config.json` and its root filesystem.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

/// The lowest `ociVersion` accepted.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// The highest `ociVersion` accepted (any 1.3 patch release).
pub const OCI_VERSION_MAX: &str = "1.3.0";
/// The version this runtime reports in its state and features output.
pub const OCI_VERSION: &str = "1.3.0";

/// An invalid bundle or configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The bundle directory cannot be used.
    #[error("bundle {path}")]
    Bundle {
        /// The bundle directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// config.json could not be opened.
    #[error("open {path}")]
    Open {
        /// Path of config.json.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// config.json is not valid JSON or does not match the schema.
    #[error("{path}: field {field}")]
    Parse {
        /// Path of config.json.
        path: PathBuf,
        /// JSON path of the offending field (`.` for the document).
        field: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// `ociVersion` is outside the supported range.
    #[error("ociVersion {version:?} is not supported (supported: {OCI_VERSION_MIN} to 1.3.x)")]
    Version {
        /// The version found.
        version: String,
    },
    /// A semantic rule of the runtime spec is broken in a bundle's `config.json`.
    #[error("config.json: {field}: {why}")]
    Invalid {
        /// JSON path of the offending field.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// [`Invalid`](Self::Invalid), in a configuration built in memory
    /// ([`Bundle::from_spec`]): there is no `config.json` to name.
    #[error("spec: {field}: {why}")]
    InvalidInMemory {
        /// JSON path of the offending field.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// The root filesystem is missing or unusable.
    #[error("root.path {path}")]
    Rootfs {
        /// The resolved rootfs path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` could not be written ([`Bundle::save_spec`]).
    #[error("{op} {path}")]
    Write {
        /// What failed ("open bundle directory", "refuse to write through the symlink",
        /// "create", "write", "fsync", "rename to").
        op: &'static str,
        /// The file or directory it failed on.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl SpecError {
    pub(crate) fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            why: why.into(),
        }
    }

    /// The same error about a configuration built in memory: [`Invalid`](Self::Invalid)
    /// becomes [`InvalidInMemory`](Self::InvalidInMemory); anything else is kept.
    pub(crate) fn in_memory(self) -> Self {
        match self {
            SpecError::Invalid { field, why } => SpecError::InvalidInMemory { field, why },
            other => other,
        }
    }
}

/// A loaded bundle: its absolute directory, its configuration and its rootfs path.
///
/// The configuration is kept once, as the JSON document that validation looks at and that
/// `create` saves for later `exec` and hooks; the parsed [`Spec`] is read from that same
/// document. The fields are private, so the two cannot drift apart: read them with
/// [`spec`](Self::spec), [`process`](Self::process), [`rootfs`](Self::rootfs) and
/// [`dir`](Self::dir); to change the configuration, build a new bundle with
/// [`from_spec`](Self::from_spec), or write the change to `config.json` with
/// [`save_spec`](Self::save_spec) (what a daemon that keeps its bundles on disk does).
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    spec: Spec,
    rootfs: PathBuf,
    raw: serde_json::Value,
    /// Made by [`from_spec`](Self::from_spec): errors name the "spec", not `config.json`.
    in_memory: bool,
}

impl Bundle {
    /// Load `DIR/config.json`, check its version and resolve `root.path` against `DIR`.
    ///
    /// ```no_run
    /// let bundle = berth_runtime::spec::Bundle::load("/tmp/bundle".as_ref())?;
    /// println!("{}", bundle.rootfs().display());
    /// # Ok::<(), berth_runtime::spec::SpecError>(())
    /// ```
    pub fn load(dir: &Path) -> Result<Self, SpecError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| SpecError::Bundle {
            path: dir.to_owned(),
            source,
        })?;
        let config = dir.join("config.json");
        let (spec, raw) = load_spec_and_value(&config)?;
        Self::with(dir, spec, raw, false)
    }

    /// A bundle from a configuration built in memory (a daemon makes one from an image's
    /// config), with `dir` as the bundle directory: a relative `root.path` is resolved
    /// against it, and hooks and the state see it as the bundle. Nothing is read from
    /// `dir/config.json`; `create` validates and saves exactly this configuration.
    ///
    /// ```no_run
    /// let mut spec = oci_spec::runtime::Spec::default();
    /// spec.set_root(Some(
    ///     oci_spec::runtime::RootBuilder::default().path("/srv/rootfs").build().unwrap(),
    /// ));
    /// let bundle = berth_runtime::spec::Bundle::from_spec("/srv".as_ref(), spec)?;
    /// # Ok::<(), berth_runtime::spec::SpecError>(())
    /// ```
    pub fn from_spec(dir: &Path, spec: Spec) -> Result<Self, SpecError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| SpecError::Bundle {
            path: dir.to_owned(),
            source,
        })?;
        let raw = serde_json::to_value(&spec).map_err(|e| {
            SpecError::invalid("config", format!("cannot be written as JSON: {e}")).in_memory()
        })?;
        check_version(spec.version())?;
        Self::with(dir, spec, raw, true).map_err(SpecError::in_memory)
    }

    /// Whether the configuration was built in memory ([`from_spec`](Self::from_spec)), not
    /// read from `config.json`: its validation errors are
    /// [`SpecError::InvalidInMemory`].
    pub fn is_in_memory(&self) -> bool {
        self.in_memory
    }

    fn with(
        dir: PathBuf,
        spec: Spec,
        raw: serde_json::Value,
        in_memory: bool,
    ) -> Result<Self, SpecError> {
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| SpecError::invalid("root", "is required on Linux"))?;
        let rootfs = dir.join(root.path());
        let rootfs = std::fs::canonicalize(&rootfs).map_err(|source| SpecError::Rootfs {
            path: rootfs,
            source,
        })?;
        if !rootfs.is_dir() {
            return Err(SpecError::Rootfs {
                path: rootfs,
                source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }
        Ok(Bundle {
            dir,
            spec,
            rootfs,
            raw,
            in_memory,
        })
    }

    /// Absolute path of the bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed configuration (as oci-spec reads it: unknown capability names dropped,
    /// see [`load`](Self::load)). Clone it to change it, then
    /// [`save_spec`](Self::save_spec) or [`from_spec`](Self::from_spec).
    ///
    /// ```no_run
    /// let bundle = berth_runtime::spec::Bundle::load("/srv/bundles/web".as_ref())?;
    /// let hostname = bundle.spec().hostname().clone().unwrap_or_default();
    /// # Ok::<(), berth_runtime::spec::SpecError>(())
    /// ```
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The configuration's `process` (config.md#process), `None` when it has none. An
    /// embedder starts an exec'd process from a copy of it, as docker's exec inherits the
    /// container's user, environment and capabilities:
    ///
    /// ```no_run
    /// let bundle = berth_runtime::spec::Bundle::load("/srv/bundles/web".as_ref())?;
    /// let mut p = bundle.process().cloned().unwrap_or_default();
    /// p.set_args(Some(vec!["ps".into()]));
    /// p.set_terminal(Some(false));
    /// // berth_runtime::ContainerRef::new("/run/berth", "web").exec(p, &Default::default())
    /// # Ok::<(), berth_runtime::spec::SpecError>(())
    /// ```
    pub fn process(&self) -> Option<&oci_spec::runtime::Process> {
        self.spec.process().as_ref()
    }

    /// Absolute, symlink-free path of the root filesystem (`root.path` resolved against the
    /// bundle directory when the bundle was loaded). Files of the image are read through it
    /// (e.g. `/etc/passwd` for a user name), never written by joining paths to it.
    ///
    /// ```no_run
    /// let bundle = berth_runtime::spec::Bundle::load("/srv/bundles/web".as_ref())?;
    /// assert!(bundle.rootfs().is_absolute());
    /// # Ok::<(), berth_runtime::spec::SpecError>(())
    /// ```
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// Replace the configuration with `spec` and write it to `DIR/config.json`, where a
    /// later [`load`](Self::load), `create` or `berth create --bundle DIR` reads it (a daemon
    /// changing a container's limits, or the namespaces it joins, before its next start).
    ///
    /// `spec` is checked as [`from_spec`](Self::from_spec) checks it (`ociVersion`, and
    /// `root.path` resolved against the bundle directory to an existing directory); nothing
    /// is written if that fails, and the bundle is unchanged on any error. It is not
    /// validated further: `create` does that. The file is written as the bundle's state
    /// files are: a new file with a random name, created `O_CREAT | O_EXCL | O_NOFOLLOW`
    /// through a descriptor of the bundle directory (itself opened `O_NOFOLLOW`), `fsync`ed,
    /// renamed over `config.json`, and the directory `fsync`ed, so that after a crash the
    /// file is either the old or the new configuration. A symlink (or anything but a regular
    /// file) at `DIR/config.json`, or a bundle directory replaced by a symlink, is refused,
    /// never written through ([`SpecError::Write`]). The mode of the old file is kept
    /// (`0644` for a new one, less the umask).
    ///
    /// The file is `spec` as oci-spec writes it: a field oci-spec does not model, or an
    /// unknown capability name [`load`](Self::load) dropped, is not kept. Afterwards the
    /// bundle reads as loaded from that file ([`is_in_memory`](Self::is_in_memory) is false).
    ///
    /// ```
    /// use berth_runtime::spec::Bundle;
    /// let dir = tempfile::tempdir()?;
    /// std::fs::create_dir(dir.path().join("rootfs"))?;
    /// let spec = oci_spec::runtime::Spec::default(); // root.path "rootfs"
    /// std::fs::write(dir.path().join("config.json"), serde_json::to_vec(&spec)?)?;
    ///
    /// let mut bundle = Bundle::load(dir.path())?;
    /// let mut spec = bundle.spec().clone();
    /// spec.set_hostname(Some("web".into()));
    /// bundle.save_spec(spec)?;
    /// assert_eq!(bundle.spec().hostname().as_deref(), Some("web"));
    /// let again = Bundle::load(dir.path())?;
    /// assert_eq!(again.spec().hostname().as_deref(), Some("web"));
    ///
    /// // A link planted at config.json is refused, and what it points at is untouched.
    /// std::fs::remove_file(dir.path().join("config.json"))?;
    /// std::os::unix::fs::symlink("/etc/hostname", dir.path().join("config.json"))?;
    /// let err = bundle.save_spec(bundle.spec().clone()).unwrap_err();
    /// assert!(err.to_string().starts_with("refuse to write through the symlink"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save_spec(&mut self, spec: Spec) -> Result<(), SpecError> {
        let raw = serde_json::to_value(&spec).map_err(|e| {
            SpecError::invalid("config", format!("cannot be written as JSON: {e}")).in_memory()
        })?;
        check_version(spec.version())?;
        let text = serde_json::to_vec_pretty(&raw).map_err(|e| {
            SpecError::invalid("config", format!("cannot be written as JSON: {e}")).in_memory()
        })?;
        let next = Self::with(self.dir.clone(), spec, raw, false).map_err(SpecError::in_memory)?;
        write_config(&self.dir, &text)?;
        *self = next;
        Ok(())
    }

    /// The configuration as JSON: what validation checks and `create` saves.
    pub fn raw(&self) -> &serde_json::Value {
        &self.raw
    }
}

/// Write `text` to `dir/config.json` for [`Bundle::save_spec`]: durably, through a descriptor
/// of `dir` opened without following a link, never through a link at `config.json`, keeping
/// the old file's mode.
fn write_config(dir: &Path, text: &[u8]) -> Result<(), SpecError> {
    use nix::fcntl::{AtFlags, OFlag};
    use std::os::fd::AsFd;
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| SpecError::Write {
        op: "open bundle directory",
        path: dir.to_owned(),
        source: e.into(),
    })?;
    let mode =
        match nix::sys::stat::fstatat(fd.as_fd(), "config.json", AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => st.st_mode & 0o7777,
            _ => 0o644,
        };
    crate::state::write_new_file_durably_at(fd.as_fd(), dir, "config.json", text, mode)
        .map_err(|(op, path, source)| SpecError::Write { op, path, source })
}

/// Parse a `config.json` file, naming the offending field on a schema error.
pub fn load_spec(path: &Path) -> Result<Spec, SpecError> {
    Ok(load_spec_and_value(path)?.0)
}

/// The largest configuration file read: 16 MiB, what the state directory keeps of one.
pub const MAX_CONFIG_FILE: u64 = 16 << 20;

/// Read a configuration file that a user hands in (`config.json`, `exec --process`,
/// `update --resources`): only a regular file of at most [`MAX_CONFIG_FILE`] bytes. A FIFO, a
/// device (`/dev/zero`), a socket or a directory is refused without blocking or reading it
/// (`InvalidInput`, naming what it is); a larger file is refused (`FileTooLarge`). A symlink
/// to a regular file is followed, as runc follows it.
///
/// ```
/// let err = berth_runtime::spec::read_config_file("/dev/zero".as_ref()).unwrap_err();
/// assert_eq!(err.to_string(), "not a regular file but a character device");
/// ```
pub fn read_config_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = f.metadata()?;
    let t = meta.file_type();
    if !t.is_file() {
        let kind = if t.is_fifo() {
            "a fifo"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_dir() {
            "a directory"
        } else {
            "something else"
        };
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("not a regular file but {kind}"),
        ));
    }
    let too_big = |len: u64| {
        Error::new(
            ErrorKind::FileTooLarge,
            format!("{len} bytes, more than the {MAX_CONFIG_FILE} read"),
        )
    };
    if meta.len() > MAX_CONFIG_FILE {
        return Err(too_big(meta.len()));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_CONFIG_FILE + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_CONFIG_FILE {
        return Err(too_big(data.len() as u64));
    }
    Ok(data)
}

/// Parse a `config.json` file into the typed spec and the raw JSON (for validation).
pub fn load_spec_and_value(path: &Path) -> Result<(Spec, serde_json::Value), SpecError> {
    let text = read_config_file(path).map_err(|source| SpecError::Open {
        path: path.to_owned(),
        source,
    })?;
    let parse_error = |source: serde_json::Error| SpecError::Parse {
        path: path.to_owned(),
        field: json_path_at(&text, source.line(), source.column()),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(parse_error)?;
    let spec: Spec = parse_dropping_unknown_caps(path, &text, &value, Some("process"))?;
    check_version(spec.version())?;
    Ok((spec, value))
}

/// Parse a `process.json` (`exec --process`) read from `path`: a `process` object of the spec.
/// Unknown capability names are dropped with a warning, as in `config.json`; a schema error
/// names the JSON field, as [`load_spec`] does.
///
/// ```
/// let p = berth_runtime::spec::parse_process(
///     "process.json".as_ref(),
///     br#"{"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
///          "capabilities": {"bounding": ["CAP_KILL", "CAP_FUTURE_THING"]}}"#,
/// )?;
/// assert_eq!(p.capabilities().as_ref().unwrap().bounding().as_ref().unwrap().len(), 1);
/// let err = berth_runtime::spec::parse_process("p.json".as_ref(), br#"{"cwd": 5}"#).unwrap_err();
/// assert_eq!(err.to_string(), "p.json: field cwd");
/// # Ok::<(), berth_runtime::spec::SpecError>(())
/// ```
pub fn parse_process(path: &Path, text: &[u8]) -> Result<oci_spec::runtime::Process, SpecError> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| parse_error_at(path, text, e))?;
    parse_dropping_unknown_caps(path, text, &value, None)
}

/// A [`SpecError::Parse`] for `source`, naming the field of `text` where serde_json stopped.
fn parse_error_at(path: &Path, text: &[u8], source: serde_json::Error) -> SpecError {
    SpecError::Parse {
        path: path.to_owned(),
        field: json_path_at(text, source.line(), source.column()),
        source,
    }
}

/// Deserialize `text` (whose JSON is `value`); if it fails, drop the unknown capability names
/// of the process object (`value[key]`, or `value` itself without a key) with a warning, respell
/// what the spec allows and oci-spec 0.10 does not read
/// ([`crate::process::sched::respell_for_oci_spec`]), and try again. A remaining schema error
/// names its field (in the document without those names).
fn parse_dropping_unknown_caps<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &[u8],
    value: &serde_json::Value,
    key: Option<&str>,
) -> Result<T, SpecError> {
    let first = match serde_json::from_slice(text) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let mut known = value.clone();
    let (mut process, at) = match key {
        Some(k) => (known.get_mut(k), k),
        None => (Some(&mut known), ""),
    };
    // Spec spellings of the scheduler and CPU affinity that oci-spec 0.10 does not read.
    let respelled = process
        .as_deref_mut()
        .map_or(0, crate::process::sched::respell_for_oci_spec);
    let dropped = drop_unknown_capabilities(process, at);
    if dropped.is_empty() && respelled == 0 {
        return Err(parse_error_at(path, text, first));
    }
    // Parse the document without them as text, so that an error still has a position.
    let stripped = serde_json::to_vec_pretty(&known).map_err(|e| parse_error_at(path, text, e))?;
    let t = serde_json::from_slice(&stripped).map_err(|e| parse_error_at(path, &stripped, e))?;
    warn_dropped(&dropped);
    Ok(t)
}

/// Remove from the capability sets of `process` (the JSON of a `process` object, at JSON path
/// `at`) every string that [`crate::caps::is_known`] does not know; returns the JSON path and
/// name of each one removed. Entries that are not strings are left for the parser to report.
fn drop_unknown_capabilities(
    process: Option<&mut serde_json::Value>,
    at: &str,
) -> Vec<(String, String)> {
    let mut dropped = Vec::new();
    let Some(caps) = process
        .and_then(|p| p.get_mut("capabilities"))
        .and_then(serde_json::Value::as_object_mut)
    else {
        return dropped;
    };
    for (set, list) in caps.iter_mut() {
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        let mut i = 0;
        list.retain(|v| {
            let keep = v.as_str().is_none_or(crate::caps::is_known);
            if !keep {
                let prefix = if at.is_empty() {
                    String::new()
                } else {
                    format!("{at}.")
                };
                dropped.push((
                    format!("{prefix}capabilities.{set}[{i}]"),
                    v.as_str().unwrap_or_default().to_owned(),
                ));
            }
            i += 1;
            keep
        });
    }
    dropped
}

fn warn_dropped(dropped: &[(String, String)]) {
    for (path, name) in dropped {
        tracing::warn!(
            "{path}: ignoring unknown capability {name:?} (config.md#linux-process: a capability \
             that cannot be mapped is logged as a warning)"
        );
    }
}

/// The JSON path (`process.user.uid`, `mounts[2].type`, `.` for the document) of the value
/// serde_json was reading when it reported an error at `line`:`column` of `text` (1-based; the
/// column is that of the last byte it read): the field a type error is about, or the object a
/// missing field belongs in.
pub fn json_path_at(text: &[u8], line: usize, column: usize) -> String {
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    let line_start = match line {
        0 | 1 => 0,
        _ => text
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1),
    };
    let end = (line_start + column.saturating_sub(1)).min(text.len());
    let mut stack: Vec<Frame> = Vec::new();
    // Inside an object, whether the next string is a key.
    let mut want_key = false;
    let mut i = 0;
    while i < end {
        match text[i] {
            b'{' => {
                stack.push(Frame::Object(None));
                want_key = true;
            }
            b'[' => {
                stack.push(Frame::Array(0));
                want_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                want_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(key)) => {
                    *key = None;
                    want_key = true;
                }
                None => {}
            },
            b':' => want_key = false,
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < end && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                if let (true, Some(Frame::Object(key))) = (want_key, stack.last_mut()) {
                    *key = Some(String::from_utf8_lossy(&text[start..i.min(end)]).into_owned());
                }
            }
            _ => {}
        }
        i += 1;
    }
    if text.get(end) == Some(&b'}') {
        // The error is at the end of an object: a field missing from it.
        if let Some(Frame::Object(key)) = stack.last_mut() {
            *key = None;
        }
    }
    let mut out = String::new();
    for f in &stack {
        match f {
            Frame::Object(Some(k)) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => out.push_str(&format!("[{n}]")),
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// Accept `ociVersion` from 1.0.0 up to any 1.3.x (pre-release suffixes allowed).
pub fn check_version(version: &str) -> Result<(), SpecError> {
    let bad = || SpecError::Version {
        version: version.to_owned(),
    };
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.').map(|p| p.parse::<u32>());
    let (Some(Ok(major)), Some(Ok(minor)), Some(Ok(_patch)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if major == 1 && minor <= 3 {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field path reported for a config that fails to deserialize.
    fn field_of(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, text).unwrap();
        match load_spec_and_value(&p) {
            Err(SpecError::Parse { field, .. }) => field,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        let f = field_of(
            r#"{"ociVersion": "1.0.2", "process": {"cwd": "/", "user": {"uid": "root", "gid": 0}}}"#,
        );
        assert_eq!(f, "process.user.uid");
        let f = field_of(
            "{\n  \"ociVersion\": \"1.0.2\",\n  \"mounts\": [\n    {\"destination\": \"/a\"},\n    {\"destination\": 5}\n  ]\n}",
        );
        assert_eq!(f, "mounts[1].destination");
        // A missing field: the object it belongs in.
        let f = field_of(r#"{"ociVersion": "1.0.2", "mounts": [{"type": "tmpfs"}]}"#);
        assert_eq!(f, "mounts[0]");
        let f = field_of(
            r#"{"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "pid"}, {"type": "nope"}]}}"#,
        );
        assert_eq!(f, "linux.namespaces[1].type");
        // Keys with escapes and strings with brackets do not confuse it.
        let f =
            field_of(r#"{"ociVersion": "1.0.2", "annotations": {"a\"[{": "x"}, "hostname": 7}"#);
        assert_eq!(f, "hostname");
        assert_eq!(field_of("{\"ociVersion\": "), "ociVersion");
        assert_eq!(field_of("\"x\""), ".");
    }

    #[test]
    fn versions() {
        for ok in [
            "1.0.0",
            "1.0.2-dev",
            "1.1.0",
            "1.2.1",
            "1.3.0",
            "1.3.7+dirty",
        ] {
            check_version(ok).unwrap();
        }
        for bad in ["", "1", "1.4.0", "2.0.0", "0.9.0", "1.x.0", "1.0.0.0"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_error_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"ociVersion":"1.0.0","process":{"cwd":"/","user":{"uid":"zero","gid":0}}}"#,
        )
        .unwrap();
        let err = load_spec(&path).unwrap_err().to_string();
        assert!(err.contains("process.user.uid"), "{err}");
    }

    #[test]
    fn unknown_capabilities_are_dropped_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"ociVersion":"1.0.0","process":{"cwd":"/","user":{"uid":0,"gid":0},
                "capabilities":{"bounding":["CAP_KILL","CAP_FUTURE_THING","CAP_CHOWN"],
                                "ambient":["CAP_NOT_YET"]}}}"#,
        )
        .unwrap();
        let (spec, raw) = load_spec_and_value(&path).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 2);
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        // The raw JSON keeps them, for validation to warn about.
        assert_eq!(
            raw["process"]["capabilities"]["bounding"][1],
            "CAP_FUTURE_THING"
        );
        // Another schema error is still reported where it is.
        std::fs::write(
            &path,
            r#"{"ociVersion":"1.0.0","process":{"cwd":"/","user":{"uid":"x","gid":0},
                "capabilities":{"bounding":["CAP_FUTURE_THING"]}}}"#,
        )
        .unwrap();
        let err = load_spec(&path).unwrap_err().to_string();
        assert!(err.contains("process.user.uid"), "{err}");
        // Also when the unknown name comes first in the document.
        std::fs::write(
            &path,
            r#"{"ociVersion":"1.0.0","process":{"cwd":"/",
                "capabilities":{"bounding":["CAP_FUTURE_THING"]},"user":{"uid":-1,"gid":0}}}"#,
        )
        .unwrap();
        let err = load_spec(&path).unwrap_err().to_string();
        assert!(err.contains("process.user.uid"), "{err}");
    }

    /// A bundle in a tempdir: `rootfs/` and a default `config.json`.
    fn bundle_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec(&Spec::default()).unwrap(),
        )
        .unwrap();
        dir
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn save_spec_replaces_config_json_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = bundle_dir();
        let cfg = dir.path().join("config.json");
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut b = Bundle::load(dir.path()).unwrap();
        let mut spec = b.spec().clone();
        let mut p = b.process().cloned().unwrap();
        p.set_args(Some(vec!["top".into()]));
        spec.set_process(Some(p));
        b.save_spec(spec).unwrap();
        assert_eq!(b.process().unwrap().args().as_deref().unwrap(), ["top"]);
        assert_eq!(b.raw()["process"]["args"][0], "top");
        assert!(!b.is_in_memory());
        let again = Bundle::load(dir.path()).unwrap();
        assert_eq!(again.process().unwrap().args().as_deref().unwrap(), ["top"]);
        let meta = std::fs::metadata(&cfg).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        // No temporary file is left beside it.
        assert_eq!(names_in(dir.path()), ["config.json", "rootfs"]);
    }

    #[test]
    fn save_spec_checks_before_writing() {
        let dir = bundle_dir();
        let cfg = dir.path().join("config.json");
        let before = std::fs::read(&cfg).unwrap();
        let mut b = Bundle::load(dir.path()).unwrap();
        let mut spec = b.spec().clone();
        spec.set_root(Some(
            oci_spec::runtime::RootBuilder::default()
                .path("nope")
                .build()
                .unwrap(),
        ));
        let err = b.save_spec(spec).unwrap_err();
        assert!(matches!(err, SpecError::Rootfs { .. }), "{err:?}");
        let mut spec = b.spec().clone();
        spec.set_version("2.0.0".into());
        let err = b.save_spec(spec).unwrap_err();
        assert!(matches!(err, SpecError::Version { .. }), "{err:?}");
        assert_eq!(std::fs::read(&cfg).unwrap(), before);
        assert_eq!(
            b.spec().root().as_ref().unwrap().path(),
            Path::new("rootfs")
        );
        assert_eq!(names_in(dir.path()), ["config.json", "rootfs"]);
    }

    #[test]
    fn save_spec_never_writes_through_a_link_or_into_a_fifo() {
        let dir = bundle_dir();
        let cfg = dir.path().join("config.json");
        let mut b = Bundle::load(dir.path()).unwrap();
        let spec = b.spec().clone();

        // A symlink at config.json: refused, its target untouched.
        let target = dir.path().join("elsewhere.json");
        std::fs::write(&target, b"precious").unwrap();
        std::fs::remove_file(&cfg).unwrap();
        std::os::unix::fs::symlink(&target, &cfg).unwrap();
        let err = b.save_spec(spec.clone()).unwrap_err();
        assert!(
            matches!(
                err,
                SpecError::Write {
                    op: "refuse to write through the symlink",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&cfg)
            .unwrap()
            .file_type()
            .is_symlink());

        // A FIFO: refused without opening it (which would block).
        std::fs::remove_file(&cfg).unwrap();
        nix::unistd::mkfifo(&cfg, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = b.save_spec(spec.clone()).unwrap_err();
        assert!(matches!(err, SpecError::Write { .. }), "{err:?}");
        std::fs::remove_file(&cfg).unwrap();

        // The bundle directory swapped for a symlink to another directory: refused there
        // too, nothing written in the other directory.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(other.path().join("rootfs")).unwrap();
        let moved = dir.path().with_extension("moved");
        std::fs::rename(dir.path(), &moved).unwrap();
        std::os::unix::fs::symlink(other.path(), dir.path()).unwrap();
        let err = b.save_spec(spec).unwrap_err();
        std::fs::remove_file(dir.path()).unwrap();
        std::fs::rename(&moved, dir.path()).unwrap();
        assert!(
            matches!(
                err,
                SpecError::Write {
                    op: "open bundle directory",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(names_in(other.path()), ["rootfs"]);
    }

    #[test]
    fn missing_rootfs_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"nope"}}"#,
        )
        .unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("root.path ") && err.contains("nope"),
            "{err}"
        );
    }
}
