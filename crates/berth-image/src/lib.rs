//! OCI image store and unpacker.
#![forbid(unsafe_code)]
