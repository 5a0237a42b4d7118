//! The state directory of a container: `<root>/<id>/` with `state.json`, the exec fifo and a
//! copy of the configuration, and the lock that serialises operations on one container.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// Name of the state file inside the container's state directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the exec fifo: `start` opens it to let the init process exec the user's program.
pub const EXEC_FIFO: &str = "exec.fifo";
/// Name of the configuration copy kept for `start`, `exec` and `delete`.
pub const CONFIG_FILE: &str = "config.json";

/// An error of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file of the state directory could not be read or written.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `state.json` is corrupt.
    #[error("{path}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The status of a container, as the runtime spec names it (plus runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created: the init process waits for `start`.
    Created,
    /// The user's program runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The container process has exited.
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime remembers of a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// The container id.
    pub id: String,
    /// Host pid of the container's init process.
    pub pid: i32,
    /// Start time of the init process (field 22 of /proc/PID/stat), to detect pid reuse.
    pub pid_start_time: u64,
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 with nanoseconds, UTC.
    pub created: String,
    /// The annotations of the configuration.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// What is needed to reopen the container's cgroup.
    pub cgroup: berth_cgroups::CgroupSaved,
    /// Whether the container has its own pid namespace (then killing init kills all).
    pub own_pid_ns: bool,
    /// Whether the configuration has poststart hooks (so that `start` reads it only then).
    #[serde(default)]
    pub has_poststart_hooks: bool,
    /// Whether the configuration has poststop hooks (so that `delete` reads it only then).
    #[serde(default)]
    pub has_poststop_hooks: bool,
    /// Whether the status was set to stopped explicitly (after a failed start).
    #[serde(default)]
    pub stopped: bool,
}

/// The state of a container in the JSON shape `runc state` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    /// Version of the runtime spec.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Pid of init (0 once stopped).
    pub pid: i32,
    /// Status.
    pub status: Status,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root filesystem.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// Owner (empty for root, like runc).
    pub owner: String,
    /// Annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

/// The state directory of one container, locked for the lifetime of this value.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl StateDir {
    /// Create `<root>/<id>` (failing with `EEXIST` if it exists) and lock it.
    pub fn create(root: &Path, id: &str) -> Result<Self, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(io("create runtime root", root))?;
        let path = root.join(id);
        std::fs::DirBuilder::new()
            .mode(0o711)
            .create(&path)
            .map_err(io("create state directory", &path))?;
        Self::lock(path)
    }

    /// Open and lock an existing `<root>/<id>`; `Ok(None)` if it does not exist.
    pub fn open(root: &Path, id: &str) -> Result<Option<Self>, StateError> {
        let path = root.join(id);
        match Self::lock(path) {
            Err(StateError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    fn lock(path: PathBuf) -> Result<Self, StateError> {
        let dir = File::open(&path).map_err(io("open state directory", &path))?;
        let lock = Flock::lock(dir, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Io {
            op: "lock state directory",
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(StateDir { path, _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the exec fifo.
    pub fn fifo(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    /// The locked directory's fd (for `fstat`-style checks).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self._lock.as_fd()
    }

    /// Read `state.json`.
    pub fn load(&self) -> Result<ContainerState, StateError> {
        let path = self.path.join(STATE_FILE);
        let data = std::fs::read(&path).map_err(io("read", &path))?;
        serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Write `state.json` atomically (temporary file, then rename).
    pub fn save(&self, state: &ContainerState) -> Result<(), StateError> {
        let path = self.path.join(STATE_FILE);
        let tmp = self.path.join(".state.json.tmp");
        let data = serde_json::to_vec(state).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&data).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))
    }

    /// Remove the whole directory.
    pub fn remove(self) -> Result<(), StateError> {
        std::fs::remove_dir_all(&self.path).map_err(io("remove state directory", &self.path))
    }
}

/// Start time of process `pid` in clock ticks since boot, or `None` if it does not exist or is a
/// zombie (a zombie container process is stopped).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); starttime is field 22.
    fields.nth(22 - 4)?.parse().ok()
}

/// Whether the process that was `pid` with `start_time` still runs (and is not a zombie).
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && process_start_time(pid) == Some(start_time)
}

/// Names of all container state directories under `root` (empty if `root` is missing).
pub fn list_ids(root: &Path) -> Result<Vec<String>, StateError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read runtime root", root)(e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Check that `id` is usable as a container id (runc's rule: `^[\w+-\.]+$`, not `.` or `..`).
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id == "." || id == ".." {
        return Err("must not be . or ..");
    }
    if id.len() > 1024 {
        return Err("is too long");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return Err("may only contain letters, digits, '_', '+', '-' and '.'");
    }
    Ok(())
}

/// Now as RFC 3339 with nanoseconds in UTC, like Go's `time.RFC3339Nano`.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Format a Unix time as RFC 3339 UTC with nanoseconds (trailing zeros trimmed, as Go does).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Map an errno from `mkdir` of a state directory to "already exists".
pub(crate) fn is_exists(err: &StateError) -> bool {
    matches!(err, StateError::Io { source, .. } if source.raw_os_error() == Some(Errno::EEXIST as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_go() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 120_000_000), "2000-02-29T00:00:00.12Z");
    }

    #[test]
    fn ids() {
        assert!(check_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_start_time_is_found() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).expect("own stat");
        assert!(is_alive(me, t));
        assert!(!is_alive(me, t + 1));
    }

    #[test]
    fn state_dir_create_is_exclusive() {
        let root = tempfile::tempdir().unwrap();
        let d = StateDir::create(root.path(), "x").unwrap();
        let err = StateDir::create(root.path(), "x").unwrap_err();
        assert!(is_exists(&err));
        d.remove().unwrap();
        assert!(StateDir::open(root.path(), "x").unwrap().is_none());
    }
}
