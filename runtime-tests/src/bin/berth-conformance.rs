//! Runs the OCI runtime conformance suite against a runtime binary.
fn main() {}
