//! The persisted container records: one directory per container under
//! `DATA_ROOT/containers/ID/`, its record in `config.v2.json` written with write-fsync-rename
//! (as dockerd does), so a kill -9 at any moment leaves the old record or the new one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

use crate::monitor::log::Rotation;

/// Where berthd keeps things.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `--data-root`: images (berth-image's store layout: blobs/, layers/, refs.json) and
    /// `containers/`.
    pub data_root: PathBuf,
    /// `--exec-root`: monitor sockets and berth-runtime's state (`runtime/`).
    pub exec_root: PathBuf,
}

impl Paths {
    /// The container's directory.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.data_root.join("containers").join(id)
    }
    /// The record file.
    pub fn record(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("config.v2.json")
    }
    /// The json-file log.
    pub fn log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }
    /// The monitor's exit record.
    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("exit.json")
    }
    /// The OCI bundle (config.json and the rootfs mount).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("bundle")
    }
    /// The overlay's upper and work directories.
    pub fn overlay(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("overlay")
    }
    /// berth-runtime's state root.
    pub fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }
    /// A monitor's directory (short: unix socket paths are limited to 107 bytes).
    pub fn monitor_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("m").join(&id[..12.min(id.len())])
    }
    /// The monitor's socket.
    pub fn monitor_socket(&self, id: &str) -> PathBuf {
        self.monitor_dir(id).join("s")
    }
}

/// A container's lifecycle state, docker's `State` fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// created, running, paused, restarting, removing, exited, dead.
    pub status: String,
    /// The process runs.
    pub running: bool,
    /// Host pid of the container's init (0 when not running).
    pub pid: i32,
    /// The last exit status.
    pub exit_code: i32,
    /// Set when a start failed.
    pub error: String,
    /// RFC 3339, or docker's zero time.
    pub started_at: String,
    /// RFC 3339, or docker's zero time.
    pub finished_at: String,
    /// The last run ended in an OOM kill.
    pub oom_killed: bool,
    /// Stopped by the user (stop/kill): `unless-stopped` and `always` do not restart it.
    pub stopped_by_user: bool,
    /// The container's address on the bridge network while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::network::Attachment>,
    /// docker's `State.Health` (`Status`, `FailingStreak`, `Log`) when a healthcheck runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<serde_json::Value>,
}

/// Everything berthd knows about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Without docker's leading slash.
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// The image id (`sha256:` + config digest).
    pub image: String,
    /// The image's manifest digest in the store.
    pub manifest: String,
    /// The container's Config as created (image defaults merged in).
    pub config: ContainerConfig,
    /// Its HostConfig.
    pub host_config: HostConfig,
    /// The program and its arguments.
    pub path: String,
    /// Arguments after `path`.
    pub args: Vec<String>,
    /// Lifecycle state.
    pub state: State,
    /// Restarts done by the restart policy.
    pub restart_count: i64,
    /// json-file rotation.
    pub log_rotation: Rotation,
    /// Anonymous volumes made for the image's `VOLUME`s and `-v /path`, as `NAME:/path`
    /// binds (removed with the container by `rm -v`).
    #[serde(default)]
    pub anonymous: Vec<String>,
}

/// Errors of the record store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { op, path, source }
}

/// Save `rec` atomically.
pub fn save(paths: &Paths, rec: &Record) -> Result<(), StoreError> {
    let dir = paths.container_dir(&rec.id);
    fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    let p = paths.record(&rec.id);
    let data = serde_json::to_vec(rec).expect("records serialise");
    crate::util::atomic_write(&p, &data).map_err(io_err("writing", &p))
}

/// Every saved record; a directory without a readable record (a create that died before its
/// first save) is returned in the second list, for removal.
pub fn load_all(paths: &Paths) -> Result<(Vec<Record>, Vec<PathBuf>), StoreError> {
    let dir = paths.data_root.join("containers");
    fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    let mut recs = Vec::new();
    let mut broken = Vec::new();
    for e in fs::read_dir(&dir).map_err(io_err("reading", &dir))? {
        let e = e.map_err(io_err("reading", &dir))?;
        let p = e.path().join("config.v2.json");
        match fs::read(&p)
            .ok()
            .and_then(|d| serde_json::from_slice::<Record>(&d).ok())
        {
            Some(r) => recs.push(r),
            None => broken.push(e.path()),
        }
    }
    Ok((recs, broken))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths {
            data_root: d.path().join("data"),
            exec_root: d.path().join("exec"),
        };
        let rec = Record {
            id: "a".repeat(64),
            name: "web".into(),
            created: crate::util::now(),
            image: "sha256:00".into(),
            manifest: "sha256:11".into(),
            config: Default::default(),
            host_config: Default::default(),
            path: "sh".into(),
            args: vec![],
            state: State::default(),
            restart_count: 0,
            log_rotation: Rotation::default(),
            anonymous: Vec::new(),
        };
        save(&paths, &rec).unwrap();
        fs::create_dir_all(paths.container_dir(&"b".repeat(64))).unwrap();
        let (recs, broken) = load_all(&paths).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].name, "web");
        assert_eq!(broken, [paths.container_dir(&"b".repeat(64))]);
        assert!(
            paths.monitor_socket(&rec.id).as_os_str().len()
                < 40 + paths.exec_root.as_os_str().len()
        );
    }
}
