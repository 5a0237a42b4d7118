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
            return Ok(Err(pid.trim().to_owned()));
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
}
