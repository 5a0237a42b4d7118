//! The OCI runtime conformance suite (cases, runner, reports).
