//! The operations a daemon needs besides the lifecycle: live limits (`update`), statistics,
//! OOM events as a stream, and signals by type.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use berth_cgroups::{OomEvent, OomWatcher, Stats};
use oci_spec::runtime::{LinuxResources, Spec};

use super::Locked;
use crate::error::ContainerError;
use crate::spec::SpecError;
use crate::state::{self, Status};

impl Locked {
    /// Change the resource limits of a running, created or paused container (runc's
    /// `update`): `resources` is applied to the cgroup, and merged field by field into the
    /// configuration saved at create (what is not set in `resources` stays), so that the
    /// state says what the container runs with. A stopped container is
    /// [`ContainerError::BadStatus`].
    pub(super) fn update(&self, resources: &LinuxResources) -> Result<(), ContainerError> {
        let status = self.status();
        if status == Status::Stopped {
            return Err(self.refuse("update", status));
        }
        self.cgroup()?.apply(resources)?;
        let mut spec = self.config()?;
        merge_resources(&mut spec, resources)?;
        let text = serde_json::to_vec_pretty(&spec).map_err(|e| {
            SpecError::invalid("linux.resources", format!("cannot be written as JSON: {e}"))
        })?;
        self.dir.write_file(state::CONFIG_FILE, &text)?;
        Ok(())
    }

    /// The container's cgroup statistics (CPU, memory, pids, block I/O, hugetlb), as
    /// `runc events --stats` reports them.
    pub(super) fn stats(&self) -> Result<Stats, ContainerError> {
        Ok(self.cgroup()?.stats()?)
    }

    /// The container's OOM events as a stream: an iterator that blocks for the next event
    /// and ends when the cgroup is removed, and a pollable fd ([`AsFd`]) for an async caller,
    /// which then reads with [`OomEvents::next_within`]. The stream does not hold the
    /// container's lock.
    pub(super) fn oom_events(&self) -> Result<OomEvents, ContainerError> {
        Ok(OomEvents {
            watcher: self.cgroup()?.oom_events()?,
            done: false,
        })
    }
}

/// Merge `update` into `spec`'s `linux.resources`, field by field (a JSON merge: every value
/// `update` sets replaces the saved one, objects merge recursively).
fn merge_resources(spec: &mut Spec, update: &LinuxResources) -> Result<(), ContainerError> {
    let bad = |e: serde_json::Error| SpecError::invalid("linux.resources", e.to_string());
    let saved = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut merged = serde_json::to_value(&saved).map_err(bad)?;
    merge_json(&mut merged, serde_json::to_value(update).map_err(bad)?);
    let merged: LinuxResources = serde_json::from_value(merged).map_err(bad)?;
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(merged));
    spec.set_linux(Some(linux));
    Ok(())
}

fn merge_json(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    continue;
                }
                match a.get_mut(&k) {
                    Some(slot) => merge_json(slot, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// OOM events of a container ([`super::Container::oom_events`]).
#[derive(Debug)]
pub struct OomEvents {
    watcher: OomWatcher,
    done: bool,
}

impl OomEvents {
    /// The next OOM event within `limit`: `Ok(Some(()))` for an OOM, `Ok(None)` if none came
    /// (or the cgroup is gone: then [`is_done`](Self::is_done)).
    /// `Duration::ZERO` reads a pending event without blocking (after the fd polled
    /// readable, e.g. under tokio's `AsyncFd`).
    pub fn next_within(&mut self, limit: Duration) -> Result<Option<()>, ContainerError> {
        if self.done {
            return Ok(None);
        }
        match self.watcher.wait_timeout(limit)? {
            Some(OomEvent::Oom) => Ok(Some(())),
            Some(_) => {
                self.done = true;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Whether the cgroup has been removed: no event will come any more.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl Iterator for OomEvents {
    type Item = Result<(), ContainerError>;

    /// Block until the next OOM; `None` once the cgroup is gone.
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.watcher.wait() {
            Ok(OomEvent::Oom) => Some(Ok(())),
            Ok(_) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e.into()))
            }
        }
    }
}

impl AsFd for OomEvents {
    /// Readable when an event (or the cgroup's removal) is pending.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.watcher.as_fd()
    }
}

impl std::os::fd::AsRawFd for OomEvents {
    /// The fd of [`AsFd`] (what tokio's `AsyncFd` wants): readable when an event is pending;
    /// then read it with [`OomEvents::next_within`]`(Duration::ZERO)`.
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_events_can_be_wrapped_by_an_async_fd() {
        // tokio's `AsyncFd<T>` wants `T: AsRawFd`, as `ProcessHandle` has.
        fn pollable<T: AsFd + std::os::fd::AsRawFd>() {}
        pollable::<OomEvents>();
        pollable::<crate::handle::ProcessHandle>();
    }

    #[test]
    fn update_merges_field_by_field() {
        let mut spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"resources": {
                "memory": {"limit": 1048576, "swap": 2097152},
                "pids": {"limit": 10}
            }}
        }))
        .unwrap();
        let update: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 4194304},
            "cpu": {"shares": 512}
        }))
        .unwrap();
        merge_resources(&mut spec, &update).unwrap();
        let r = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let mem = r.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(4194304));
        assert_eq!(mem.swap(), Some(2097152), "a field not updated stays");
        assert_eq!(r.pids().as_ref().unwrap().limit(), 10);
        assert_eq!(r.cpu().as_ref().unwrap().shares(), Some(512));
    }
}
