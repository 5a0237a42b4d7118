//! Reports what a container process sees, as JSON.
fn main() {}
