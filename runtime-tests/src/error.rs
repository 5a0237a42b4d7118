//! The error type of the test-support library.

use std::io;
use std::path::PathBuf;

/// What can go wrong while preparing a test (bundle, rootfs, binaries).
///
/// Runtime calls themselves never fail with this type: a runtime that cannot be started or that
/// hangs is reported in its [`RunOutput`](crate::RunOutput) so the test can judge it.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// A file-system operation on `path` failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`create dir`, `write`, `copy`, ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An external helper command (cp, build-rootfs.sh) failed.
    #[error("command {command} failed: {detail}")]
    Command {
        /// The command line, for the message.
        command: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// A binary the test needs was not found.
    #[error("{what} not found (tried {tried:?}); set {env}")]
    NotFound {
        /// Which binary or directory.
        what: &'static str,
        /// The environment variable that overrides the search.
        env: &'static str,
        /// Places that were looked at.
        tried: Vec<PathBuf>,
    },
    /// config.json could not be serialised.
    #[error("serialise config.json")]
    Json(#[source] serde_json::Error),
}

impl SupportError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SupportError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
