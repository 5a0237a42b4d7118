//! Helpers for tests that create real containers.
