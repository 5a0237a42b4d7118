//! Container isolation library and OCI container lifecycle.
