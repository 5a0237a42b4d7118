//! The error type of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while managing cgroups.
///
/// Every variant that touches the filesystem carries the path, and every variant that wraps an
/// OS error carries it as `#[source]`, so callers can match on the errno.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading a cgroup or proc file failed.
    #[error("read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Opening a cgroup file or directory failed.
    #[error("open {path}")]
    Open {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Writing a value to a cgroup file failed.
    #[error("write {value:?} to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value that was written.
        value: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Creating a cgroup directory failed.
    #[error("create cgroup {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed (after retrying while processes exit).
    #[error("remove cgroup {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file had content that could not be parsed.
    #[error("parse {path}: {reason}")]
    Parse {
        /// The file (or a pseudo path such as `mountinfo` for in-memory input).
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// No cgroup filesystem is mounted.
    #[error("no cgroup filesystem mounted")]
    NotMounted,
    /// The spec's resources ask for a controller that has no hierarchy on this host.
    #[error("controller {controller} is required by the resources but is not available")]
    ControllerMissing {
        /// The controller name, e.g. `hugetlb`.
        controller: String,
    },
    /// The cgroups path given in the spec is not acceptable.
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A resource value cannot be expressed on this cgroup version.
    #[error("invalid resource {field}: {reason}")]
    InvalidResource {
        /// The spec field, e.g. `memory.swap`.
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// An operation is not available on this layout or host.
    #[error("{operation} is not supported: {reason}")]
    Unsupported {
        /// The operation, e.g. `freeze`.
        operation: &'static str,
        /// Why it is not available.
        reason: String,
    },
    /// Sending a signal to a process of the cgroup failed.
    #[error("send signal {signal} to pid {pid}")]
    Signal {
        /// The process.
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A state change (freeze, thaw) did not happen within the bound.
    #[error("timed out waiting for {what} in {path}")]
    Timeout {
        /// What was awaited, e.g. `FROZEN`.
        what: &'static str,
        /// The cgroup directory.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{syscall} on {path}")]
    Sys {
        /// The system call, e.g. `bpf(BPF_PROG_LOAD)`.
        syscall: &'static str,
        /// The file or cgroup involved.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

impl CgroupError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: io::Error) -> Self {
        CgroupError::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        CgroupError::Parse {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::InvalidResource {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
