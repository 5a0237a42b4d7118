//! OOM event notification.
//!
//! On v1 the kernel signals an eventfd registered through `cgroup.event_control` for
//! `memory.oom_control`; on v2 the `oom` and `oom_kill` counters of `memory.events` grow and
//! the file is modified (inotify). Both are wrapped by [`OomWatcher`], a blocking API for a
//! plain thread; its fd ([`AsFd`]) can also go into a caller's own poll loop.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::error::CgroupError;
use crate::fsutil;

/// What [`OomWatcher::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomEvent {
    /// The cgroup hit its memory limit and the OOM killer ran (or, with the killer
    /// disabled, the cgroup is under OOM).
    Oom,
    /// The cgroup was removed; no further events will come.
    CgroupRemoved,
}

enum Kind {
    /// `removed`: the cgroup went away after an OOM that was reported first.
    V1 {
        efd: EventFd,
        _oom_control: File,
        removed: bool,
    },
    V2 {
        inotify: Inotify,
        seen: u64,
    },
}

/// Waits for OOM events of one cgroup. Obtain it from [`crate::CgroupManager::oom_events`].
///
/// ```no_run
/// use berth_cgroups::{new_manager, OomEvent};
/// let cg = new_manager(Some("/berth/c1"), "c1")?;
/// let mut w = cg.oom_events()?;
/// std::thread::spawn(move || {
///     while let Ok(OomEvent::Oom) = w.wait() {
///         eprintln!("container c1 ran out of memory");
///     }
/// });
/// # Ok::<(), berth_cgroups::CgroupError>(())
/// ```
pub struct OomWatcher {
    dir: PathBuf,
    kind: Kind,
}

impl std::fmt::Debug for OomWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::V1 { .. } => "v1",
            Kind::V2 { .. } => "v2",
        };
        f.debug_struct("OomWatcher")
            .field("dir", &self.dir)
            .field("kind", &kind)
            .finish()
    }
}

fn oom_count(dir: &Path) -> Result<Option<u64>, CgroupError> {
    let Some(text) = fsutil::read_opt(dir, "memory.events")? else {
        return Ok(None);
    };
    let ev = fsutil::parse_flat_keyed(&text);
    let get = |k: &str| {
        ev.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    Ok(Some(get("oom") + get("oom_kill")))
}

impl OomWatcher {
    /// Registers an eventfd for `memory.oom_control` of the v1 memory cgroup `dir`.
    pub fn v1(dir: &Path) -> Result<Self, CgroupError> {
        let control_path = dir.join("memory.oom_control");
        let control = File::open(&control_path).map_err(|e| CgroupError::read(&control_path, e))?;
        let efd =
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC).map_err(|source| CgroupError::Sys {
                syscall: "eventfd",
                path: dir.to_path_buf(),
                source,
            })?;
        fsutil::write(
            dir,
            "cgroup.event_control",
            format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
        )?;
        Ok(OomWatcher {
            dir: dir.to_path_buf(),
            kind: Kind::V1 {
                efd,
                _oom_control: control,
                removed: false,
            },
        })
    }

    /// Watches `memory.events` of the v2 cgroup `dir`; only OOMs after this call count.
    pub fn v2(dir: &Path) -> Result<Self, CgroupError> {
        let sys = |source| CgroupError::Sys {
            syscall: "inotify",
            path: dir.join("memory.events"),
            source,
        };
        if !dir.join("memory.events").exists() {
            return Err(CgroupError::ControllerMissing {
                controller: "memory".into(),
            });
        }
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(sys)?;
        inotify
            .add_watch(&dir.join("memory.events"), AddWatchFlags::IN_MODIFY)
            .map_err(sys)?;
        // Read after the watch is in place so no event between the two is lost.
        let seen = oom_count(dir)?.ok_or_else(|| CgroupError::ControllerMissing {
            controller: "memory".into(),
        })?;
        Ok(OomWatcher {
            dir: dir.to_path_buf(),
            kind: Kind::V2 { inotify, seen },
        })
    }

    /// Blocks until the next event.
    pub fn wait(&mut self) -> Result<OomEvent, CgroupError> {
        loop {
            if let Some(ev) = self.wait_timeout(Duration::from_secs(3600))? {
                return Ok(ev);
            }
        }
    }

    /// Blocks until the next event or until `timeout` passes (`Ok(None)`). The fd is polled
    /// at least once, so `Duration::ZERO` reads a pending event without blocking.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<OomEvent>, CgroupError> {
        let deadline = Instant::now() + timeout;
        let mut polled = false;
        loop {
            if let Kind::V1 { removed: true, .. } = self.kind {
                return Ok(Some(OomEvent::CgroupRemoved));
            }
            if let Kind::V2 { seen, .. } = &mut self.kind {
                match oom_count(&self.dir)? {
                    None => return Ok(Some(OomEvent::CgroupRemoved)),
                    Some(n) if n > *seen => {
                        *seen = n;
                        return Ok(Some(OomEvent::Oom));
                    }
                    Some(_) => {}
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && polled {
                return Ok(None);
            }
            polled = true;
            // v2 wakes up at least every second to notice a removed cgroup.
            let slice = match self.kind {
                Kind::V1 { .. } => left,
                Kind::V2 { .. } => left.min(Duration::from_secs(1)),
            };
            // Past the deadline: one poll that does not block.
            let ms = if slice.is_zero() {
                PollTimeout::ZERO
            } else {
                PollTimeout::try_from(slice.as_millis().clamp(1, i32::MAX as u128) as i32)
                    .unwrap_or(PollTimeout::MAX)
            };
            let mut fds = [PollFd::new(self.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(source) => {
                    return Err(CgroupError::Sys {
                        syscall: "poll",
                        path: self.dir.clone(),
                        source,
                    })
                }
            }
            match &mut self.kind {
                Kind::V1 { efd, removed, .. } => {
                    let n = efd.read().map_err(|source| CgroupError::Sys {
                        syscall: "read(eventfd)",
                        path: self.dir.clone(),
                        source,
                    })?;
                    // The eventfd also counts the cgroup's removal, signalled shortly after
                    // the directory is gone. Gone with a count of two or more, there was an
                    // OOM before; with one, it was an OOM if the removal's signal still comes.
                    if !self.dir.join("cgroup.event_control").exists() {
                        let oom = n >= 2 || {
                            let mut fds = [PollFd::new(efd.as_fd(), PollFlags::POLLIN)];
                            matches!(poll(&mut fds, PollTimeout::from(1000u16)), Ok(1))
                        };
                        if !oom {
                            return Ok(Some(OomEvent::CgroupRemoved));
                        }
                        *removed = true;
                    }
                    return Ok(Some(OomEvent::Oom));
                }
                Kind::V2 { inotify, .. } => {
                    // Drain; the counter is re-read at the top of the loop.
                    let _ = inotify.read_events();
                }
            }
        }
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::V1 { efd, .. } => efd.as_fd(),
            Kind::V2 { inotify, .. } => inotify.as_fd(),
        }
    }
}

impl AsRawFd for OomWatcher {
    /// The same fd as [`AsFd`]'s (what tokio's `AsyncFd` wants).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fake_dir;

    #[test]
    fn v2_counter_growth_and_removal() {
        let d = fake_dir(&[("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")]);
        let mut w = OomWatcher::v2(d.path()).unwrap();
        // Earlier OOMs do not count.
        assert_eq!(w.wait_timeout(Duration::from_millis(50)).unwrap(), None);
        let path = d.path().join("memory.events");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(path, "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n").unwrap();
        });
        let start = Instant::now();
        assert_eq!(
            w.wait_timeout(Duration::from_secs(5)).unwrap(),
            Some(OomEvent::Oom)
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "inotify did not wake the waiter"
        );
        writer.join().unwrap();
        assert_eq!(w.wait_timeout(Duration::from_millis(50)).unwrap(), None);
        std::fs::remove_file(d.path().join("memory.events")).unwrap();
        assert_eq!(w.wait().unwrap(), OomEvent::CgroupRemoved);
    }

    /// A v1 watcher over `efd`, in a fake cgroup directory (kept alive by the returned dir).
    fn v1_over(efd: EventFd) -> (tempfile::TempDir, OomWatcher) {
        let d = fake_dir(&[("cgroup.event_control", ""), ("memory.oom_control", "")]);
        let w = OomWatcher {
            dir: d.path().to_path_buf(),
            kind: Kind::V1 {
                efd,
                _oom_control: File::open(d.path().join("memory.oom_control")).unwrap(),
                removed: false,
            },
        };
        (d, w)
    }

    #[test]
    fn a_zero_timeout_reads_a_pending_v1_event() {
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).unwrap();
        efd.write(1).unwrap();
        let (_d, mut w) = v1_over(efd);
        assert_eq!(w.wait_timeout(Duration::ZERO).unwrap(), Some(OomEvent::Oom));
        // Read: nothing is pending now, and a zero timeout does not block.
        assert_eq!(w.wait_timeout(Duration::ZERO).unwrap(), None);
    }

    #[test]
    fn a_zero_timeout_reads_a_pending_v2_event() {
        let d = fake_dir(&[("memory.events", "oom 0\n")]);
        let mut w = OomWatcher::v2(d.path()).unwrap();
        assert_eq!(w.wait_timeout(Duration::ZERO).unwrap(), None);
        std::fs::write(d.path().join("memory.events"), "oom 1\n").unwrap();
        assert_eq!(w.wait_timeout(Duration::ZERO).unwrap(), Some(OomEvent::Oom));
    }

    #[test]
    fn v2_without_memory_controller() {
        let d = fake_dir(&[("cgroup.procs", "")]);
        assert!(matches!(
            OomWatcher::v2(d.path()),
            Err(CgroupError::ControllerMissing { .. })
        ));
    }
}
