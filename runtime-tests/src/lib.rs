//! Support for tests that create real containers, and the OCI runtime conformance suite.
//!
//! The library drives any runc-compatible runtime through its command line only:
//! [`Runtime`] runs `create`/`start`/`state`/`kill`/`delete`/`run`/`exec` with a private
//! `--root`, a timeout guard and a call log that is printed when a test fails; [`Bundle`] builds
//! a bundle in a temp dir from the busybox rootfs fixture with a mutable `runc spec`-like config;
//! [`LeakSnapshot`] checks that nothing (mount, cgroup, process, state) was left behind; and
//! [`probe`] parses what the static `berth-probe` binary reports from inside a container.
//!
//! ```no_run
//! use runtime_tests::{assert_no_leaks, Bundle, LeakSnapshot, Runtime};
//!
//! let rt = Runtime::new(runtime_tests::berth_bin().unwrap()).unwrap();
//! let mut bundle = Bundle::with_probe().unwrap();
//! bundle.set_args(&["/probe"]).set_hostname("probe-host");
//! let before = LeakSnapshot::take(&rt, &bundle);
//! let id = rt.new_id("hostname");
//! let out = rt.run(&id, &bundle);
//! assert!(out.success(), "{}", rt.dump_log());
//! let seen = runtime_tests::probe::parse(&out.stdout).unwrap();
//! assert_eq!(seen["hostname"], "probe-host");
//! rt.delete(&id);
//! assert_no_leaks(&before, &rt);
//! ```

mod bundle;
mod bystander;
pub mod conformance;
pub mod daemon;
mod error;
mod leaks;
mod locate;
pub mod probe;
mod runtime;
mod spec;
mod wait;

pub use bundle::{Bundle, PROBE_PATH};
pub use bystander::Bystander;
pub use error::SupportError;
pub use leaks::{
    assert_no_leaks, cgroup_dirs, is_zombie, names_id, proc_stat, start_time, Leak, LeakSnapshot,
    CGROUP_ROOT, SECCOMP_CACHE,
};
pub use locate::{
    berth_bin, is_root, probe_bin, require_path, require_root, rootfs_dir, workspace_dir,
    ENV_BERTH_BIN, ENV_PROBE, ENV_ROOTFS,
};
pub use runtime::{RunOutput, Runtime, DEFAULT_TIMEOUT};
pub use spec::{
    default_mounts, default_spec, DEFAULT_CAPS, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS,
};
pub use wait::{wait_for, wait_for_exe, wait_until};
