//! The OCI runtime conformance suite: cases, the runner and the reports.
//!
//! Every [`Case`] names the runtime-spec requirement it checks (file, section, and the
//! MUST/SHOULD in our words) and judges the runtime only through its command line and what the
//! probe sees inside the container. Cases run serially in one process, each with its own
//! `--root` and bundles; after each one the runner force-deletes what the case created, checks
//! for leaks and removes whatever a faulty runtime left behind.
//!
//! ```no_run
//! use runtime_tests::conformance::{run_suite, Options};
//!
//! let opts = Options { runtime: "/usr/sbin/runc".into(), filter: Some("lifecycle".into()),
//!                      keep_going: true, private_mount_ns: true };
//! let report = run_suite(&opts);
//! print!("{}", report.tap());
//! ```

mod config;
mod ctx;
mod features;
mod lifecycle;
mod linux;
mod mounts;
mod parity;
mod process;
mod ready;
mod report;
mod sched;
mod teardown;

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use ctx::Ctx;
pub use report::{merge_table, Report};

use crate::{LeakSnapshot, Runtime};

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The runtime does not do what the requirement says.
    NotOk(String),
    /// The case could not be judged here (not root, controller not mounted, feature missing).
    Skip(String),
}

/// What a case function returns: `Ok(())` is "ok".
pub type Verdict = Result<(), Finding>;

/// A not-ok finding with a message.
pub fn not_ok(msg: impl Into<String>) -> Finding {
    Finding::NotOk(msg.into())
}

/// A skip finding with a reason.
pub fn skip(msg: impl Into<String>) -> Finding {
    Finding::Skip(msg.into())
}

/// `Ok(())` if `cond`, else a not-ok finding with `msg`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Verdict {
    if cond {
        Ok(())
    } else {
        Err(Finding::NotOk(msg()))
    }
}

/// How strong the requirement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// A MUST of the runtime spec.
    Must,
    /// A SHOULD (or a MAY the suite checks when the runtime claims it).
    Should,
    /// Not in the OCI spec: the runc command line that runc-compatible runtimes share.
    RuncCli,
}

/// One conformance check.
pub struct Case {
    /// Stable id, `area.name` (used by `--filter` and in the tables).
    pub id: String,
    /// Where the requirement is: `runtime.md#state`, `config-linux.md#namespaces`.
    pub spec: &'static str,
    /// The requirement in our words.
    pub requirement: String,
    /// MUST, SHOULD or runc CLI.
    pub level: Level,
    /// The check.
    pub run: Box<dyn Fn(&Ctx) -> Verdict>,
}

impl Case {
    pub(crate) fn new(
        id: impl Into<String>,
        spec: &'static str,
        level: Level,
        requirement: impl Into<String>,
        run: impl Fn(&Ctx) -> Verdict + 'static,
    ) -> Case {
        Case {
            id: id.into(),
            spec,
            requirement: requirement.into(),
            level,
            run: Box::new(run),
        }
    }
}

/// Every case, in run order.
pub fn all_cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(lifecycle::cases());
    v.extend(process::cases());
    v.extend(linux::cases());
    v.extend(mounts::cases());
    v.extend(features::cases());
    v.extend(parity::cases());
    v.extend(config::cases());
    v.extend(sched::cases());
    v.extend(teardown::cases());
    v.extend(ready::cases());
    v
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The runtime binary.
    pub runtime: PathBuf,
    /// Run only cases whose id contains this (several patterns separated by `,`).
    pub filter: Option<String>,
    /// Run every case even after a not-ok (otherwise stop at the first).
    pub keep_going: bool,
    /// Unshare the mount namespace of the calling thread first (and make `/` rslave), so no
    /// mount the suite or the runtime makes is seen by the host.
    pub private_mount_ns: bool,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The runtime did what the requirement says.
    Ok,
    /// It did not.
    NotOk,
    /// Not judged.
    Skip,
}

/// One case's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case id.
    pub id: String,
    /// Spec file and section.
    pub spec: String,
    /// The requirement.
    pub requirement: String,
    /// MUST/SHOULD/runc CLI.
    pub level: Level,
    /// ok / not ok / skip.
    pub outcome: Outcome,
    /// Why not ok or skipped (empty when ok).
    pub reason: String,
    /// The runtime calls of a not-ok case.
    pub log: String,
    /// Milliseconds the case took.
    pub millis: u64,
}

/// Whether `id` matches the comma-separated substring filter.
pub fn matches(filter: Option<&str>, id: &str) -> bool {
    match filter {
        None => true,
        Some(f) => f.split(',').any(|p| !p.is_empty() && id.contains(p.trim())),
    }
}

/// Enters a private mount namespace (calling thread and its children): `/` is made rslave, so
/// nothing mounted here reaches the host, then rshared within the namespace, like the shared `/`
/// of a systemd host, so that a runtime's rootfsPropagation has something to act on.
pub fn enter_private_mount_ns() -> Result<(), nix::Error> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    for flag in [MsFlags::MS_SLAVE, MsFlags::MS_SHARED] {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | flag,
            None::<&str>,
        )?;
    }
    Ok(())
}

/// Runs the selected cases against `opts.runtime`.
pub fn run_suite(opts: &Options) -> Report {
    let mut report = Report {
        runtime: opts.runtime.display().to_string(),
        version: runtime_version(&opts.runtime),
        results: Vec::new(),
    };
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|c| matches(opts.filter.as_deref(), &c.id))
        .collect();
    let global_skip = if !crate::is_root() {
        Some("not root".to_string())
    } else if !opts.runtime.is_file() {
        Some(format!("runtime {} not found", opts.runtime.display()))
    } else if let Err(e) = crate::rootfs_dir().and_then(|_| crate::probe_bin()) {
        Some(format!("harness: {e}"))
    } else if opts.private_mount_ns {
        enter_private_mount_ns()
            .err()
            .map(|e| format!("cannot enter a private mount namespace: {e}"))
    } else {
        None
    };
    for case in cases {
        let r = match &global_skip {
            Some(why) => result_of(&case, Outcome::Skip, why.clone(), String::new(), 0),
            None => run_case(&case, &opts.runtime),
        };
        let stop = r.outcome == Outcome::NotOk && !opts.keep_going;
        report.results.push(r);
        if stop {
            break;
        }
    }
    report
}

fn result_of(case: &Case, outcome: Outcome, reason: String, log: String, ms: u64) -> CaseResult {
    CaseResult {
        id: case.id.clone(),
        spec: case.spec.to_string(),
        requirement: case.requirement.clone(),
        level: case.level,
        outcome,
        reason,
        log,
        millis: ms,
    }
}

fn runtime_version(bin: &std::path::Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Runs one case with a fresh runtime state dir, then cleans up and checks for leaks.
pub fn run_case(case: &Case, runtime: &std::path::Path) -> CaseResult {
    let start = Instant::now();
    let rt = match Runtime::new(runtime) {
        Ok(mut rt) => {
            rt.timeout = Duration::from_secs(15);
            rt
        }
        Err(e) => {
            return result_of(
                case,
                Outcome::NotOk,
                format!("harness: {e}"),
                String::new(),
                0,
            )
        }
    };
    let ctx = match Ctx::new(&rt) {
        Ok(c) => c,
        Err(e) => {
            return result_of(
                case,
                Outcome::NotOk,
                format!("harness: {e}"),
                String::new(),
                0,
            )
        }
    };
    let before = LeakSnapshot::take_for(&rt, ctx.dir());
    let verdict = panic::catch_unwind(AssertUnwindSafe(|| (case.run)(&ctx))).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(not_ok(format!("case panicked: {msg}")))
    });
    let log = rt.dump_log();
    rt.cleanup();
    let leaks = before.leaks(&rt);
    ctx::reap(&leaks);
    let (mut outcome, mut reason) = match verdict {
        Ok(()) => (Outcome::Ok, String::new()),
        Err(Finding::NotOk(m)) => (Outcome::NotOk, m),
        Err(Finding::Skip(m)) => (Outcome::Skip, m),
    };
    // Leaks after the runtime's own `delete --force` are the runtime's.
    if !leaks.is_empty() {
        let list: Vec<String> = leaks.iter().map(|l| l.to_string()).collect();
        let note = format!("left behind after delete --force: {}", list.join("; "));
        if outcome == Outcome::Ok {
            outcome = Outcome::NotOk;
            reason = note;
        } else {
            reason = format!("{reason} ({note})");
        }
    }
    let log = if outcome == Outcome::NotOk {
        log
    } else {
        String::new()
    };
    drop(ctx);
    result_of(
        case,
        outcome,
        reason,
        log,
        start.elapsed().as_millis() as u64,
    )
}

#[cfg(test)]
mod tests;
