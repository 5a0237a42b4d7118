//! The daemon's container service: records, lifecycle, restart policies, live restore.
//! The API handlers call these; no HTTP here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use bollard_stubs::models::RestartPolicyNameEnum;
use tokio::sync::{oneshot, watch};

use crate::error::Error;
use crate::images::Images;
use crate::monitor::{log::Rotation, Request};
use crate::store::{self, Paths, Record};
use crate::supervisor::{self, Spawner};
use crate::util;

mod create;
mod events;
mod exec;
mod lifecycle;
mod top;
mod volumes;

/// How many past events `/events?since=` can replay.
pub const EVENT_HISTORY: usize = 1024;

/// What waiters see of a container.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The process runs.
    pub running: bool,
    /// Exits seen so far (for `next-exit`).
    pub exits: u64,
    /// The last exit code.
    pub exit_code: i64,
    /// The container is gone.
    pub removed: bool,
}

/// An attach waiting for its container's monitor.
pub struct PendingAttach {
    /// The attach request for the monitor.
    pub req: Request,
    /// Where the monitor connection goes once it is attached.
    pub tx: oneshot::Sender<tokio::io::BufReader<tokio::net::UnixStream>>,
}

/// One container.
pub struct Entry {
    /// Its id.
    pub id: String,
    rec: Mutex<Record>,
    /// State changes.
    pub watch: watch::Sender<Snapshot>,
    pending: Mutex<Vec<PendingAttach>>,
    op: tokio::sync::Mutex<()>,
    /// The restart policy's last backoff in ms (0: none yet), as dockerd's restart manager
    /// keeps it: in memory, reset by a start by hand and by the daemon's start.
    backoff_ms: std::sync::atomic::AtomicU64,
}

impl Entry {
    /// A copy of the record.
    pub fn record(&self) -> Record {
        self.rec.lock().expect("record lock").clone()
    }
}

/// One exec instance.
pub struct ExecEntry {
    /// Its id.
    pub id: String,
    /// The container's id.
    pub container: String,
    /// What the client asked for.
    pub config: bollard_stubs::models::ExecConfig,
    /// The OCI process.
    pub process: oci_spec::runtime::Process,
    /// (running, pid, exit code once exited).
    pub state: Mutex<(bool, i32, Option<i64>)>,
    /// Signalled when it exits.
    pub done: watch::Sender<bool>,
}

/// The daemon.
pub struct Daemon {
    /// Where things live.
    pub paths: Paths,
    /// The image store.
    pub images: Images,
    containers: RwLock<HashMap<String, Arc<Entry>>>,
    /// Names being given to a container, by the id of the container that will have it: of
    /// creates under way (not yet in `containers`) and of renames under way (not yet saved),
    /// so that two of them never give one name to two containers (taken before `containers`).
    reserved_names: Mutex<HashMap<String, String>>,
    execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
    spawner: Spawner,
    /// Named volumes.
    pub volumes: crate::volumes::Volumes,
    /// Docker events (`/events`), as JSON messages.
    pub events: tokio::sync::broadcast::Sender<serde_json::Value>,
    /// The last [`EVENT_HISTORY`] events, for `/events?since=`.
    pub event_log: Mutex<std::collections::VecDeque<serde_json::Value>>,
    /// The bridge network, when enabled (`--bridge`).
    pub bridge: Option<crate::network::Bridge>,
}

/// A container name as dockerd accepts it (`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`: two characters at
/// least), the leading `/` already stripped.
fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

const ADJ: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zen",
];
const NOUN: &[&str] = &[
    "anchor", "buoy", "cove", "dock", "ferry", "harbor", "jetty", "keel", "mast", "pier", "quay",
    "raft", "sail", "tide", "wharf",
];

/// A container name held for a create or a rename under way; released when dropped (by then
/// the container is in the daemon's map under that name, or the create or rename failed).
pub(crate) struct NameReservation<'a> {
    daemon: &'a Daemon,
    /// The reserved name (without docker's leading `/`).
    pub name: String,
}

impl Drop for NameReservation<'_> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.daemon.reserved_names.lock() {
            held.remove(&self.name);
        }
    }
}

impl Daemon {
    /// Reserves `wanted` for container `id` (a create under way, or a rename), or with `None`
    /// a generated name as dockerd makes them (`adjective_noun`, a random number added after a
    /// few draws that are taken): checked against existing containers and the creates and
    /// renames under way, and taken, in one step, so that two of them never give one name to
    /// two containers. A name in use is a 409 in dockerd's words, naming the container that
    /// has it or is getting it (as dockerd's name reservation does).
    pub(crate) fn reserve_name(
        &self,
        wanted: Option<String>,
        id: &str,
    ) -> Result<NameReservation<'_>, Error> {
        let mut held = self.reserved_names.lock().expect("reserved names lock");
        let map = self.containers.read().expect("containers lock");
        let owner = |n: &str| {
            map.values()
                .find(|e| e.record().name == n)
                .map(|e| e.id.clone())
                .or_else(|| held.get(n).cloned())
        };
        let name = match wanted {
            Some(n) => {
                if let Some(other) = owner(&n) {
                    return Err(Error::Conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                    )));
                }
                n
            }
            None => {
                let mut attempt = 0;
                loop {
                    let r = util::random_id();
                    let a = usize::from_str_radix(&r[..4], 16).unwrap_or(0);
                    let b = usize::from_str_radix(&r[4..8], 16).unwrap_or(0);
                    let mut name = format!("{}_{}", ADJ[a % ADJ.len()], NOUN[b % NOUN.len()]);
                    if attempt >= 3 {
                        let n = usize::from_str_radix(&r[8..14], 16).unwrap_or(0);
                        name.push_str(&(n % 1_000_000).to_string());
                    }
                    if owner(&name).is_none() {
                        break name;
                    }
                    attempt += 1;
                }
            }
        };
        held.insert(name.clone(), id.to_owned());
        Ok(NameReservation { daemon: self, name })
    }
}

fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for e in over {
        let key = e.split('=').next().unwrap_or(e);
        match out.iter_mut().find(|x| x.split('=').next() == Some(key)) {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

fn signal_number(s: &str) -> Result<i32, Error> {
    crate::spec::parse_signal(s).ok_or_else(|| Error::BadParameter(format!("invalid signal: {s}")))
}

impl Daemon {
    /// Open the stores, start the spawner and restore every container (live restore).
    pub async fn new(
        paths: Paths,
        bridge: Option<crate::network::Bridge>,
    ) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&paths.data_root)?;
        std::fs::create_dir_all(paths.exec_root.join("m"))?;
        let images = Images::open(&paths.data_root)?;
        let paths_data_root = paths.data_root.clone();
        let exe = std::fs::read_link("/proc/self/exe")?;
        let d = Arc::new(Daemon {
            paths,
            images,
            containers: RwLock::new(HashMap::new()),
            reserved_names: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            spawner: Spawner::new(exe)?,
            events: tokio::sync::broadcast::channel(1024).0,
            event_log: Mutex::new(std::collections::VecDeque::new()),
            bridge,
            volumes: crate::volumes::Volumes::new(&paths_data_root),
        });
        d.restore().await?;
        Ok(d)
    }

    async fn restore(self: &Arc<Self>) -> anyhow::Result<()> {
        let (recs, broken) = store::load_all(&self.paths)?;
        for dir in broken {
            tracing::warn!("removing {}: no record (a create that died)", dir.display());
            let _ = berth_image::unpack::unmount_overlay(
                &dir.join("bundle/rootfs"),
                &dir.join("overlay"),
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        for rec in recs {
            let running = rec.state.running;
            let entry = self.insert(rec);
            if running {
                let socket = self.paths.monitor_socket(&entry.id);
                match supervisor::call(&socket, &Request::Wait).await {
                    Ok((_, conn)) => {
                        tracing::info!(id = %entry.id, "live restore: the monitor is alive");
                        self.reconcile_paused(&entry).await;
                        self.watch_exit(entry.clone(), conn);
                        continue;
                    }
                    Err(_) => {
                        // The monitor finished while we were away (or died): its exit is
                        // recorded, and the daemon's start decides what comes next (below).
                        self.record_exit(&entry, None, false).await;
                    }
                }
            }
            self.restore_stopped(&entry).await;
        }
        self.remove_stale_monitor_dirs();
        Ok(())
    }

    /// A container found stopped when the daemon starts, as dockerd's restore: restarted now
    /// (its restart count reset) when it ran before and its policy asks for it at a daemon
    /// start (`always` even after a stop by hand, `unless-stopped` unless stopped by hand,
    /// `on-failure` after a non-zero exit under the retry limit); else removed if AutoRemove
    /// (`--rm`: its client may be gone with the old daemon); else left exited.
    async fn restore_stopped(self: &Arc<Self>, entry: &Arc<Entry>) {
        let rec = entry.record();
        if rec_auto_restart(&rec) {
            let _ = self.save(entry, |r| {
                r.restart_count = 0;
                r.state.status = "exited".into();
            });
            if let Err(e) = self.start(&entry.id).await {
                tracing::warn!(id = %entry.id, "restart at the daemon's start: {e}");
            }
        } else if rec.host_config.auto_remove.unwrap_or(false) {
            if let Err(e) = self.remove_with(&entry.id, true, true).await {
                tracing::warn!(id = %entry.id, "auto-remove at the daemon's start: {e}");
            }
        } else if rec.state.status == "restarting" {
            // A backoff cut short by the daemon's death, under a policy that no longer asks.
            let _ = self.save(entry, |r| r.state.status = "exited".into());
        }
    }

    /// A running container's paused state from its freezer (the truth: a daemon killed in
    /// the middle of a pause or unpause froze or thawed it without recording it).
    async fn reconcile_paused(&self, entry: &Entry) {
        let root = self.paths.runtime_root();
        let id = entry.id.clone();
        let status = tokio::task::spawn_blocking(move || {
            berth_runtime::ContainerRef::new(root, id).status()
        })
        .await;
        let want = match status {
            Ok(Ok(berth_runtime::Status::Paused)) => "paused",
            Ok(Ok(berth_runtime::Status::Running)) => "running",
            _ => return,
        };
        if entry.record().state.status != want {
            tracing::info!(id = %entry.id, "live restore: the container is {want}");
            if let Err(e) = self.save(entry, |r| r.state.status = want.into()) {
                tracing::warn!(id = %entry.id, "{e}");
            }
        }
    }

    /// Monitor directories that no container owns (exec sessions of a previous daemon) are
    /// removed once their monitor has exited.
    fn remove_stale_monitor_dirs(&self) {
        let owned: std::collections::HashSet<std::path::PathBuf> = self
            .containers
            .read()
            .expect("containers lock")
            .keys()
            .map(|id| self.paths.monitor_dir(id))
            .collect();
        for e in std::fs::read_dir(self.paths.exec_root.join("m"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = e.path();
            if owned.contains(&dir) {
                continue;
            }
            let alive = std::fs::read_to_string(dir.join("pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .is_some_and(|pid| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                        && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
                            std::fs::read_link("/proc/self/exe")
                                .is_ok_and(|me| exe.file_name() == me.file_name())
                        })
                });
            if !alive {
                tracing::debug!("removing the stale monitor dir {}", dir.display());
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    fn insert(&self, rec: Record) -> Arc<Entry> {
        let snap = Snapshot {
            running: rec.state.running,
            exits: 0,
            exit_code: rec.state.exit_code as i64,
            removed: false,
        };
        let entry = Arc::new(Entry {
            id: rec.id.clone(),
            rec: Mutex::new(rec),
            watch: watch::channel(snap).0,
            pending: Mutex::new(Vec::new()),
            op: tokio::sync::Mutex::new(()),
            backoff_ms: std::sync::atomic::AtomicU64::new(0),
        });
        self.containers
            .write()
            .expect("containers lock")
            .insert(entry.id.clone(), entry.clone());
        entry
    }

    /// Every container.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        let mut v: Vec<Arc<Entry>> = self
            .containers
            .read()
            .expect("containers lock")
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.record().created));
        v
    }

    /// Find a container by full id, name (with or without `/`), or unique id prefix.
    pub fn get(&self, name: &str) -> Result<Arc<Entry>, Error> {
        let map = self.containers.read().expect("containers lock");
        if let Some(e) = map.get(name) {
            return Ok(e.clone());
        }
        let n = name.strip_prefix('/').unwrap_or(name);
        if let Some(e) = map.values().find(|e| e.record().name == n) {
            return Ok(e.clone());
        }
        if !name.is_empty() {
            let hits: Vec<_> = map.values().filter(|e| e.id.starts_with(name)).collect();
            if hits.len() == 1 {
                return Ok(hits[0].clone());
            }
        }
        Err(Error::NoSuchContainer(name.to_owned()))
    }

    /// Pause (freeze) a running container, or unpause it. Whether it is paused is read from
    /// its freezer (which a daemon killed in the middle of a pause may have left frozen
    /// without recording it), not from the record alone.
    pub async fn pause(&self, name: &str, pause: bool) -> Result<(), Error> {
        let entry = self.get(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        if rec.state.status == "restarting" {
            return Err(Error::Conflict(format!(
                "Container {} is restarting, wait until the container is running",
                rec.id
            )));
        }
        if !rec.state.running {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        self.reconcile_paused(&entry).await;
        let paused = entry.record().state.status == "paused";
        if pause && paused {
            return Err(Error::Conflict(format!(
                "Container {} is already paused",
                rec.id
            )));
        }
        if !pause && !paused {
            return Err(Error::Conflict(format!(
                "Container {} is not paused",
                rec.id
            )));
        }
        let root = self.paths.runtime_root();
        let id = rec.id.clone();
        tokio::task::spawn_blocking(move || {
            let c = berth_runtime::ContainerRef::new(root, id);
            if pause {
                c.pause()
            } else {
                c.resume()
            }
        })
        .await
        .map_err(|e| Error::internal("pause", e))?
        .map_err(|e| Error::internal(if pause { "pause" } else { "unpause" }, e))?;
        self.save(&entry, |r| {
            r.state.status = if pause {
                "paused".into()
            } else {
                "running".into()
            }
        })?;
        self.event(&entry.id, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// Rename a container (`POST /containers/{id}/rename?name=`), as dockerd does: an empty
    /// name, the container's own name or an invalid one is a 400, a name another container
    /// has, or that a create or rename under way is giving, a 409. The new name is reserved
    /// (checked and taken in one step, as a create reserves its name) until the record is
    /// saved under it, so that concurrent renames and creates never give one name to two
    /// containers.
    pub async fn rename(&self, name: &str, new: &str) -> Result<(), Error> {
        if name.is_empty() || new.is_empty() {
            return Err(Error::BadParameter(
                "Neither old nor new names may be empty".into(),
            ));
        }
        let entry = self.get(name)?;
        let new = new.strip_prefix('/').unwrap_or(new);
        if entry.record().name == new {
            return Err(Error::BadParameter(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if !valid_name(new) {
            return Err(Error::BadParameter(format!(
                "Error when allocating new name: Invalid container name (/{new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let reservation =
            self.reserve_name(Some(new.to_owned()), &entry.id)
                .map_err(|e| match e {
                    Error::Conflict(m) => {
                        Error::Conflict(format!("Error when allocating new name: {m}"))
                    }
                    e => e,
                })?;
        let old = {
            let mut rec = entry.rec.lock().expect("record lock");
            let old = std::mem::replace(&mut rec.name, reservation.name.clone());
            if let Err(e) = store::save(&self.paths, &rec) {
                rec.name = old;
                return Err(Error::internal("save the container record", e));
            }
            old
        };
        // The record has the name now: the reservation may go.
        drop(reservation);
        self.event(&entry.id, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    /// Change resources (and the restart policy) of a container: saved in its record and
    /// config.json, and applied to the cgroup of a running one (`docker update`).
    pub async fn update(&self, name: &str, body: serde_json::Value) -> Result<Vec<String>, Error> {
        let entry = self.get(name)?;
        let _op = entry.op.lock().await;
        let hc_patch: bollard_stubs::models::HostConfig = serde_json::from_value(body.clone())
            .map_err(|e| Error::BadParameter(format!("invalid update: {e}")))?;
        let mut rec = entry.record();
        let hc = &mut rec.host_config;
        // As dockerd's update: the CLI sends every field, and a zero (or empty) one means
        // "unchanged"; only PidsLimit is taken whenever present (0 or -1: unlimited).
        if hc_patch.nano_cpus.is_some_and(|n| n > 0) && hc.cpu_quota.is_some_and(|q| q > 0) {
            return Err(Error::Conflict(
                "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"
                    .into(),
            ));
        }
        if hc_patch.cpu_quota.is_some_and(|q| q > 0) && hc.nano_cpus.is_some_and(|n| n > 0) {
            return Err(Error::Conflict(
                "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
                    .into(),
            ));
        }
        let swap = hc.memory_swap.unwrap_or(0);
        if hc_patch
            .memory
            .is_some_and(|m| m > 0 && swap > 0 && m > swap)
            && hc_patch.memory_swap.unwrap_or(0) == 0
        {
            return Err(Error::BadParameter(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"
                    .into(),
            ));
        }
        macro_rules! take_nonzero {
            ($($f:ident),*) => {$(
                if hc_patch.$f.is_some_and(|v| v != 0) {
                    hc.$f = hc_patch.$f;
                }
            )*};
        }
        take_nonzero!(
            memory,
            memory_swap,
            nano_cpus,
            cpu_shares,
            cpu_quota,
            cpu_period
        );
        if hc_patch
            .cpuset_cpus
            .as_deref()
            .is_some_and(|c| !c.is_empty())
        {
            hc.cpuset_cpus = hc_patch.cpuset_cpus.clone();
        }
        if hc_patch.pids_limit.is_some() {
            hc.pids_limit = hc_patch.pids_limit;
        }
        if hc_patch
            .restart_policy
            .as_ref()
            .is_some_and(|p| p.name.is_some_and(|n| n != RestartPolicyNameEnum::EMPTY))
        {
            hc.restart_policy = hc_patch.restart_policy.clone();
        }
        crate::spec::validate_resources(&rec.host_config, true)?;
        let res = crate::spec::resources(
            &rec.host_config,
            rec.host_config.privileged.unwrap_or(false),
        );
        let lr: oci_spec::runtime::LinuxResources = serde_json::from_value(res)
            .map_err(|e| Error::BadParameter(format!("invalid resources: {e}")))?;
        let bundle_dir = self.paths.bundle(&rec.id);
        let running = rec.state.running;
        let (root, id) = (self.paths.runtime_root(), rec.id.clone());
        tokio::task::spawn_blocking(move || {
            let mut bundle = berth_runtime::spec::Bundle::load(&bundle_dir)
                .map_err(|e| Error::internal("load the bundle", e))?;
            if running {
                // Applied to the cgroup, and kept in the runtime's saved configuration.
                berth_runtime::ContainerRef::new(root, &id)
                    .update(&lr)
                    .map_err(|e| {
                        Error::BadParameter(format!(
                            "Cannot update container {id}: {}",
                            crate::images::chain(&e)
                        ))
                    })?;
            }
            // For the next start.
            let mut spec = bundle.spec().clone();
            let mut linux = spec.linux().clone().unwrap_or_default();
            linux.set_resources(Some(lr));
            spec.set_linux(Some(linux));
            bundle
                .save_spec(spec)
                .map_err(|e| Error::internal("write config.json", e))
        })
        .await
        .map_err(|e| Error::internal("update", e))??;
        let hc_new = rec.host_config.clone();
        self.save(&entry, |r| r.host_config = hc_new)?;
        self.event(&entry.id, "update", &[]);
        Ok(Vec::new())
    }

    /// The container's root as its processes see it (with their mounts: volumes, binds,
    /// tmpfs) when it runs, else its rootfs.
    pub fn fs_root(&self, name: &str) -> Result<std::path::PathBuf, Error> {
        let r = self.get(name)?.record();
        Ok(if r.state.running && r.state.pid > 0 {
            std::path::PathBuf::from(format!("/proc/{}/root", r.state.pid))
        } else {
            self.paths.bundle(&r.id).join("rootfs")
        })
    }

    /// The container's cgroup statistics (berth-cgroups' view), `None` when it is not running.
    pub async fn cgroup_stats(&self, id: &str) -> Result<Option<berth_cgroups::Stats>, Error> {
        let entry = self.get(id)?;
        if !entry.record().state.running {
            return Ok(None);
        }
        let root = self.paths.runtime_root();
        let id = entry.id.clone();
        tokio::task::spawn_blocking(move || berth_runtime::ContainerRef::new(root, id).stats().ok())
            .await
            .map_err(|e| Error::internal("stats", e))
    }

    fn save(&self, entry: &Entry, f: impl FnOnce(&mut Record)) -> Result<Record, Error> {
        let mut rec = entry.rec.lock().expect("record lock");
        f(&mut rec);
        store::save(&self.paths, &rec)
            .map_err(|e| Error::internal("save the container record", e))?;
        Ok(rec.clone())
    }

    /// Register an attach that must be connected before the container starts; returns the
    /// receiver of the monitor connection. If the container already runs, connects now.
    pub async fn attach(
        &self,
        entry: &Arc<Entry>,
        req: Request,
    ) -> Result<oneshot::Receiver<tokio::io::BufReader<tokio::net::UnixStream>>, Error> {
        let (tx, rx) = oneshot::channel();
        let running = entry.watch.borrow().running;
        if running {
            let socket = self.paths.monitor_socket(&entry.id);
            match supervisor::call(&socket, &req).await {
                Ok((r, conn)) if r.ok => {
                    let _ = tx.send(conn);
                }
                Ok((r, _)) => {
                    return Err(Error::Internal {
                        what: "attach".into(),
                        cause: r.error.unwrap_or_default(),
                    })
                }
                Err(e) => return Err(Error::internal("attach to the monitor", e)),
            }
        } else {
            entry
                .pending
                .lock()
                .expect("pending lock")
                .push(PendingAttach { req, tx });
        }
        self.event(&entry.id, "attach", &[]);
        Ok(rx)
    }

    /// Record the container's health (`State.Health`).
    pub fn set_health(&self, entry: &Entry, health: serde_json::Value) -> Result<(), Error> {
        self.save(entry, |r| r.state.health = Some(health))
            .map(drop)
    }

    /// Resize the terminal of a container or exec (by its monitor directory key).
    pub async fn resize(&self, key: &str, height: u16, width: u16) -> Result<(), Error> {
        let socket = self.paths.monitor_dir(key).join("s");
        match supervisor::call(&socket, &Request::Resize { height, width }).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Conflict(format!("cannot resize: {e}"))),
        }
    }
}

/// dockerd's 409s for an exec into a container that is paused (an exec would hang frozen) or
/// restarting (no process to join), naming it as the client did.
fn refuse_exec(name: &str, rec: &Record) -> Result<(), Error> {
    match rec.state.status.as_str() {
        "paused" if rec.state.running => Err(Error::Conflict(format!(
            "Container {name} is paused, unpause the container before exec"
        ))),
        "restarting" => Err(Error::Conflict(format!(
            "Container {} is restarting, wait until the container is running",
            rec.id
        ))),
        _ => Ok(()),
    }
}

fn console_size(s: Option<&[usize]>) -> Option<(u16, u16)> {
    match s {
        Some([h, w]) if *h > 0 && *w > 0 => Some((
            (*h).min(u16::MAX as usize) as u16,
            (*w).min(u16::MAX as usize) as u16,
        )),
        _ => None,
    }
}

/// Whether the daemon restarts this stopped container when it starts, as dockerd's restore
/// (a fresh restart manager: a stop by hand cancelled only the old daemon's): one that ran
/// before (not `created`) under `always`, `unless-stopped` not stopped by hand, or
/// `on-failure` after a non-zero exit below its retry limit.
fn rec_auto_restart(rec: &Record) -> bool {
    if !matches!(rec.state.status.as_str(), "exited" | "restarting") {
        return false;
    }
    let p = rec.host_config.restart_policy.clone().unwrap_or_default();
    match p.name {
        Some(RestartPolicyNameEnum::ALWAYS) => true,
        Some(RestartPolicyNameEnum::UNLESS_STOPPED) => !rec.state.stopped_by_user,
        Some(RestartPolicyNameEnum::ON_FAILURE) => {
            rec.state.exit_code != 0
                && p.maximum_retry_count
                    .is_none_or(|m| m <= 0 || rec.restart_count < m)
        }
        _ => false,
    }
}

fn should_restart(rec: &Record) -> bool {
    let p = rec.host_config.restart_policy.clone().unwrap_or_default();
    match p.name {
        Some(RestartPolicyNameEnum::ALWAYS) | Some(RestartPolicyNameEnum::UNLESS_STOPPED) => {
            !rec.state.stopped_by_user
        }
        Some(RestartPolicyNameEnum::ON_FAILURE) => {
            !rec.state.stopped_by_user
                && rec.state.exit_code != 0
                && p.maximum_retry_count
                    .is_none_or(|m| m <= 0 || rec.restart_count < m)
        }
        _ => false,
    }
}

fn log_rotation(hc: &bollard_stubs::models::HostConfig) -> Result<Rotation, Error> {
    let mut rot = Rotation {
        max_size: 0,
        max_files: 1,
    };
    if let Some(lc) = &hc.log_config {
        match lc.typ.as_deref() {
            None | Some("") | Some("json-file") => {}
            // No log at all: the monitor writes none and `logs` is refused, as dockerd.
            Some("none") => return Ok(rot),
            Some(t) => {
                return Err(Error::BadParameter(format!(
                    "logging driver {t:?} is not supported (json-file, none)"
                )))
            }
        }
        for (k, v) in lc.config.clone().unwrap_or_default() {
            match k.as_str() {
                "max-size" => {
                    rot.max_size = parse_size(&v)
                        .ok_or_else(|| Error::BadParameter(format!("invalid max-size: {v}")))?
                }
                "max-file" => {
                    rot.max_files = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| Error::BadParameter(format!("invalid max-file: {v}")))?
                }
                _ => {}
            }
        }
    }
    Ok(rot)
}

/// `10m`, `1k`, `5g`, `100` (bytes), docker's units (powers of 1024).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merge_and_sizes() {
        assert_eq!(
            merge_env(
                &["PATH=/bin".into(), "A=1".into()],
                &["A=2".into(), "B=3".into()]
            ),
            ["PATH=/bin", "A=2", "B=3"]
        );
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
        assert_eq!(signal_number("TERM").unwrap(), 15);
        assert_eq!(signal_number("SIGKILL").unwrap(), 9);
        assert_eq!(signal_number("9").unwrap(), 9);
        assert!(signal_number("NOPE").is_err());
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-x"));
    }
}
