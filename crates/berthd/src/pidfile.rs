//! One daemon per data root, exec root and pid file, as dockerd's pid file check ("pid file
//! found, ensure docker is not running"), but with locks rather than a pid that may have
//! been reused: berthd holds an exclusive `flock` on `DATA_ROOT/berthd.lock`,
//! `EXEC_ROOT/berthd.lock` and its `--pidfile` for its whole life. A second berthd on any of
//! them refuses to start before it touches anything (its sockets included), and never
//! removes a pid file it does not hold. A daemon killed with -9 leaves its files unlocked:
//! the next one takes them over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The name of the lock file in each root.
const LOCK_FILE: &str = "berthd.lock";

/// The held locks; the pid file is removed when this is dropped.
#[derive(Debug)]
pub struct DaemonLock {
    _roots: Vec<File>,
    pidfile: Option<(PathBuf, File)>,
}

/// Open `path` (made if missing, never truncated before it is locked) and take an exclusive
/// lock on it without waiting, then write our pid in it; `Ok(Err(pid))` when another process
/// holds it (`pid`: what that process wrote in it).
fn lock(path: &Path) -> Result<Result<File, String>> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    match rustix::fs::flock(
        f.as_fd(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    ) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim().to_owned();
            // A holder killed a moment ago (`kill -9 PID; berthd`) still holds the lock
            // while the kernel tears it down: wait for that, up to 5 s, and no longer.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                if !pid.parse().is_ok_and(dying) || std::time::Instant::now() > deadline {
                    return Ok(Err(pid));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
                match rustix::fs::flock(
                    f.as_fd(),
                    rustix::fs::FlockOperation::NonBlockingLockExclusive,
                ) {
                    Ok(()) => break,
                    Err(rustix::io::Errno::WOULDBLOCK) => {}
                    Err(e) => return Err(e).with_context(|| format!("lock {}", path.display())),
                }
            }
        }
        Err(e) => return Err(e).with_context(|| format!("lock {}", path.display())),
    }
    // Ours now: our pid in it (the file may hold a dead daemon's).
    f.set_len(0)
        .and_then(|()| f.rewind())
        .and_then(|()| write!(f, "{}", std::process::id()))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(Ok(f))
}

/// Whether process `pid` is gone or on its way out: a zombie, or SIGKILL pending (the
/// state a `kill -9`ed daemon is in while its files are closed).
fn dying(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let sigkill = |mask: String| u64::from_str_radix(&mask, 16).is_ok_and(|m| m & (1 << 8) != 0);
    field("State:").starts_with(['Z', 'X'])
        || sigkill(field("ShdPnd:"))
        || sigkill(field("SigPnd:"))
}

impl DaemonLock {
    /// Lock the data root, the exec root (both made if missing) and the pid file (our pid
    /// written in it). Errors: another berthd holds one of them (naming it and its pid), or
    /// a file operation failed.
    pub fn acquire(data_root: &Path, exec_root: &Path, pidfile: Option<&Path>) -> Result<Self> {
        let mut roots = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        for root in [data_root, exec_root] {
            std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
            let path = root
                .canonicalize()
                .unwrap_or_else(|_| root.to_owned())
                .join(LOCK_FILE);
            if seen.contains(&path) {
                continue;
            }
            match lock(&path)? {
                Ok(f) => roots.push(f),
                Err(pid) => bail!(
                    "another berthd (pid {pid}) is using {}: {} is locked",
                    root.display(),
                    path.display()
                ),
            }
            seen.push(path);
        }
        let pidfile = match pidfile {
            None => None,
            Some(p) => {
                if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("create {}", parent.display()))?;
                }
                match lock(p)? {
                    Ok(f) => Some((p.to_owned(), f)),
                    Err(pid) => bail!(
                        "pid file found, ensure berthd is not running or delete {} (it is locked by pid {pid})",
                        p.display()
                    ),
                }
            }
        };
        Ok(DaemonLock {
            _roots: roots,
            pidfile,
        })
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        // Still locked by us: the file at the path is ours unless someone replaced it, in
        // which case it is left alone.
        if let Some((path, f)) = &self.pidfile {
            use std::os::unix::fs::MetadataExt;
            let same = match (std::fs::metadata(path), f.metadata()) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if same {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_keeps_the_first_ones_pid_file() {
        let d = tempfile::tempdir().unwrap();
        let (data, exec, pid) = (
            d.path().join("data"),
            d.path().join("exec"),
            d.path().join("p"),
        );
        let first = DaemonLock::acquire(&data, &exec, Some(&pid)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&pid).unwrap(),
            std::process::id().to_string()
        );
        // flock locks belong to open files: a second open in this process conflicts too.
        let e = DaemonLock::acquire(&data, &d.path().join("x"), None).unwrap_err();
        assert!(e.to_string().contains("is using"), "{e}");
        let e = DaemonLock::acquire(&d.path().join("y"), &exec, None).unwrap_err();
        assert!(e.to_string().contains("is using"), "{e}");
        let e =
            DaemonLock::acquire(&d.path().join("y"), &d.path().join("z"), Some(&pid)).unwrap_err();
        assert!(e.to_string().contains("pid file found"), "{e}");
        assert!(pid.exists(), "the first holder's pid file was removed");
        drop(first);
        assert!(!pid.exists());
        // The same directory for both roots is one lock.
        let both = DaemonLock::acquire(&data, &data, Some(&pid)).unwrap();
        drop(both);
    }

    /// A holder killed with -9 (a zombie until reaped, as a daemon being torn down) or gone
    /// is dying; a live one is not.
    #[test]
    fn a_killed_holder_is_dying_a_live_one_is_not() {
        assert!(!dying(std::process::id() as i32));
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(!dying(pid));
        child.kill().unwrap();
        // Not reaped yet: a zombie, or SIGKILL still pending.
        assert!(dying(pid));
        child.wait().unwrap();
        assert!(dying(pid));
    }
}
