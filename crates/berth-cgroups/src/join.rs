//! A process entering the container's cgroup by itself, without the kernel's global lock.
//!
//! Writing a pid to `cgroup.procs` (any hierarchy, v1 or v2) takes the kernel's
//! `cgroup_threadgroup_rwsem` for writing. That lock is global and per-cpu: taking it for
//! writing waits for an RCU grace period whenever it was idle before, which is typically
//! several to tens of milliseconds, the largest single cost of starting a container on an
//! otherwise quiet host. Two ways in avoid it (Linux `cgroup_procs_write_start` and
//! `cgroup_css_set_fork`):
//!
//! - **v1**: a *single-threaded* process writing `0` to a v1 hierarchy's `tasks` file moves
//!   itself (the calling thread, which is the whole process) without that lock;
//! - **unified (cgroup2)**: there is no such file (`cgroup.threads` works only inside a
//!   threaded subtree), but `clone3(CLONE_INTO_CGROUP)` (Linux 5.7) starts the child in the
//!   cgroup while holding the lock only for reading.
//!
//! [`SelfJoin`] holds what both need, opened by the runtime *before* it clones the process:
//! the kernel checks a write to `tasks` against the credentials of whoever opened the file,
//! so the child can join even once it is in a new user namespace, before its id maps exist.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::CgroupError;

/// A cgroup file or directory that [`SelfJoin`] holds open, with its path (for messages).
pub type OpenedPath = (PathBuf, OwnedFd);

/// The files through which a process enters a container's cgroup by itself: each v1
/// hierarchy's `tasks` file, open for writing, and the unified hierarchy's directory, open
/// `O_PATH`, for `clone3`'s `cgroup` argument. Every fd is close-on-exec.
///
/// Made by [`crate::CgroupManager::self_join`]; the process to be moved calls
/// [`SelfJoin::join_v1`] itself, its parent clones it with [`SelfJoin::unified`].
#[derive(Debug)]
pub struct SelfJoin {
    tasks: Vec<OpenedPath>,
    unified: Option<OpenedPath>,
}

impl SelfJoin {
    /// Opens `<dir>/tasks` of each v1 directory in `v1_dirs` for writing, and `unified_dir`
    /// (if any) `O_PATH | O_DIRECTORY`. An open that fails is [`CgroupError::Open`].
    pub(crate) fn open<'a>(
        v1_dirs: impl Iterator<Item = &'a Path>,
        unified_dir: Option<&Path>,
    ) -> Result<Self, CgroupError> {
        let open = |path: PathBuf, opts: &std::fs::OpenOptions| match opts.open(&path) {
            Ok(f) => Ok((path, OwnedFd::from(f))),
            Err(source) => Err(CgroupError::Open { path, source }),
        };
        let mut write = std::fs::OpenOptions::new();
        write.write(true).custom_flags(libc::O_CLOEXEC);
        let tasks = v1_dirs
            .map(|d| open(d.join("tasks"), &write))
            .collect::<Result<Vec<_>, _>>()?;
        let mut dir = std::fs::OpenOptions::new();
        dir.read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC);
        let unified = unified_dir
            .map(|d| open(d.to_path_buf(), &dir))
            .transpose()?;
        Ok(SelfJoin { tasks, unified })
    }

    /// Re-assembles a [`SelfJoin`] from its parts (as [`SelfJoin::into_parts`] gave them),
    /// e.g. after passing the fds to another process.
    pub fn from_parts(tasks: Vec<OpenedPath>, unified: Option<OpenedPath>) -> Self {
        SelfJoin { tasks, unified }
    }

    /// The open `tasks` files with their paths, and the unified directory with its path.
    pub fn into_parts(self) -> (Vec<OpenedPath>, Option<OpenedPath>) {
        (self.tasks, self.unified)
    }

    /// The unified hierarchy's cgroup directory (`O_PATH`), for `clone3`'s `cgroup` field
    /// with `CLONE_INTO_CGROUP`; `None` on a v1-only host.
    pub fn unified(&self) -> Option<BorrowedFd<'_>> {
        self.unified.as_ref().map(|(_, fd)| fd.as_fd())
    }

    /// Every fd it holds (for a caller that closes all fds but those it keeps).
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.tasks
            .iter()
            .chain(self.unified.iter())
            .map(|(_, fd)| fd.as_fd())
    }

    /// Moves the calling thread into the cgroup of every v1 hierarchy (writes `0` to each
    /// `tasks` file), then closes the files. Call it from a single-threaded process: it then
    /// moves the whole process. The first write that fails is [`CgroupError::Write`] naming
    /// the file (e.g. `ENOSPC` from a cpuset cgroup without cpus).
    pub fn join_v1(self) -> Result<(), CgroupError> {
        for (path, fd) in self.tasks {
            let file = std::fs::File::from(fd);
            if let Err(source) = std::io::Write::write_all(&mut &file, b"0") {
                return Err(CgroupError::Write {
                    path,
                    value: "0".into(),
                    source,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_v1_writes_0_to_each_tasks_file_and_names_the_one_that_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("tasks"), "").unwrap();
        // A write that fails as the kernel's does for a cpuset without cpus: ENOSPC.
        std::os::unix::fs::symlink("/dev/full", b.join("tasks")).unwrap();
        let join = SelfJoin::open([a.as_path()].into_iter(), Some(tmp.path())).unwrap();
        assert!(join.unified().is_some());
        join.join_v1().unwrap();
        assert_eq!(std::fs::read_to_string(a.join("tasks")).unwrap(), "0");
        let join = SelfJoin::open([a.as_path(), b.as_path()].into_iter(), None).unwrap();
        match join.join_v1() {
            Err(CgroupError::Write {
                path,
                value,
                source,
            }) => {
                assert_eq!(path, b.join("tasks"));
                assert_eq!(value, "0");
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_cgroup_is_an_open_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone");
        match SelfJoin::open([gone.as_path()].into_iter(), None) {
            Err(CgroupError::Open { path, .. }) => assert_eq!(path, gone.join("tasks")),
            other => panic!("{other:?}"),
        }
        match SelfJoin::open(std::iter::empty(), Some(&gone)) {
            Err(CgroupError::Open { path, .. }) => assert_eq!(path, gone),
            other => panic!("{other:?}"),
        }
    }
}
