//! The raw system calls of the crate; every `unsafe` block lives below this module.

pub(crate) mod bpf;
