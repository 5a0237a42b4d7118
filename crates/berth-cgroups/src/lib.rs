//! Cgroup v1 and v2 management for OCI containers.
