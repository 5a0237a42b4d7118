//! OCI hooks: run a hook program with the container state on its stdin.

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::state::OciState;

/// A hook that could not be run or that failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook program could not be started.
    #[error("{kind} hook {path}: start")]
    Spawn {
        /// Which hook list it belongs to.
        kind: &'static str,
        /// The hook's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The hook exited with a non-zero status or was killed.
    #[error("{kind} hook {path}: {status}{}", if stderr.is_empty() { String::new() } else { format!(": {}", stderr.trim_end()) })]
    Failed {
        /// Which hook list it belongs to.
        kind: &'static str,
        /// The hook's path.
        path: PathBuf,
        /// How it ended.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The hook ran past its `timeout` and was killed.
    #[error("{kind} hook {path}: timed out after {secs}s")]
    Timeout {
        /// Which hook list it belongs to.
        kind: &'static str,
        /// The hook's path.
        path: PathBuf,
        /// The timeout.
        secs: i64,
    },
}

/// Run every hook of `hooks` in order with `state` as JSON on stdin; stop at the first failure.
///
/// `kind` names the hook list in errors (`prestart`, `createRuntime`, ...).
pub fn run_hooks(kind: &'static str, hooks: &[Hook], state: &OciState) -> Result<(), HookError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let input = serde_json::to_vec(state).expect("state serialises");
    for hook in hooks {
        run_hook(kind, hook, &input)?;
    }
    Ok(())
}

/// Run the hooks of a list whose failures must not stop the lifecycle (poststart, poststop):
/// each failure is logged as a warning and the next hook still runs.
pub fn run_hooks_warn(kind: &'static str, hooks: &[Hook], state: &OciState) {
    let input = serde_json::to_vec(state).expect("state serialises");
    for hook in hooks {
        if let Err(e) = run_hook(kind, hook, &input) {
            tracing::warn!("{e}");
        }
    }
}

fn run_hook(kind: &'static str, hook: &Hook, input: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let mut cmd = Command::new(&path);
    if let Some(args) = hook.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let spawn_err = |source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin closes the pipe: that is not an error.
        let _ = stdin.write_all(input);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = if deadline.is_none() {
        child.wait().map_err(spawn_err)?
    } else {
        loop {
            match child.try_wait().map_err(spawn_err)? {
                Some(status) => break status,
                None => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(HookError::Timeout {
                            kind,
                            path,
                            secs: hook.timeout().unwrap_or_default(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut stderr);
    }
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    };
    Err(HookError::Failed {
        kind,
        path,
        status,
        stderr,
    })
}
