//! `berth`: a runc-compatible OCI runtime.
fn main() {}
