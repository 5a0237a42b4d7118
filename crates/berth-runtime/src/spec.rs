//! Loading a bundle: its `config.json` and its root filesystem.

use std::fs::File;
use std::io::BufReader;
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
    /// A semantic rule of the runtime spec is broken.
    #[error("config.json: {field}: {why}")]
    Invalid {
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
}

impl SpecError {
    pub(crate) fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            why: why.into(),
        }
    }
}

/// A loaded bundle: its absolute directory, its parsed configuration and its rootfs path.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// The parsed `config.json`.
    pub spec: Spec,
    /// Absolute, symlink-free path of the root filesystem.
    pub rootfs: PathBuf,
    /// `config.json` as raw JSON (what validation looks at).
    pub raw: serde_json::Value,
}

impl Bundle {
    /// Load `DIR/config.json`, check its version and resolve `root.path` against `DIR`.
    ///
    /// ```no_run
    /// let bundle = berth_runtime::spec::Bundle::load("/tmp/bundle".as_ref())?;
    /// println!("{}", bundle.rootfs.display());
    /// # Ok::<(), berth_runtime::spec::SpecError>(())
    /// ```
    pub fn load(dir: &Path) -> Result<Self, SpecError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| SpecError::Bundle {
            path: dir.to_owned(),
            source,
        })?;
        let config = dir.join("config.json");
        let (spec, raw) = load_spec_and_value(&config)?;
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
        })
    }
}

/// Parse a `config.json` file, naming the offending field on a schema error.
pub fn load_spec(path: &Path) -> Result<Spec, SpecError> {
    Ok(load_spec_and_value(path)?.0)
}

/// Parse a `config.json` file into the typed spec and the raw JSON (for validation).
pub fn load_spec_and_value(path: &Path) -> Result<(Spec, serde_json::Value), SpecError> {
    let file = File::open(path).map_err(|source| SpecError::Open {
        path: path.to_owned(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_reader(BufReader::new(file)).map_err(|source| SpecError::Parse {
            path: path.to_owned(),
            field: ".".into(),
            source,
        })?;
    let spec: Spec = serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = e.path().to_string();
        SpecError::Parse {
            path: path.to_owned(),
            field,
            source: e.into_inner(),
        }
    })?;
    check_version(spec.version())?;
    Ok((spec, value))
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
