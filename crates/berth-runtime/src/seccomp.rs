//! seccomp: the spec's `linux.seccomp` filter.

use oci_spec::runtime::LinuxSeccomp;

use crate::error::SetupError;

/// Load the filter described by `seccomp` into the calling process.
pub fn apply(_seccomp: &LinuxSeccomp) -> Result<(), SetupError> {
    Err(SetupError::msg(
        "seccomp",
        "linux.seccomp is not supported by this build of berth yet",
    ))
}
