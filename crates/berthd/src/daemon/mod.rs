//! The daemon's container service: records, lifecycle, restart policies, live restore.
//! The API handlers call these; no HTTP here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bollard_stubs::models::{ContainerConfig, ContainerCreateBody, RestartPolicyNameEnum};
use tokio::sync::{oneshot, watch};

use crate::error::Error;
use crate::images::Images;
use crate::monitor::{self, log::Rotation, Request};
use crate::store::{self, Paths, Record, State};
use crate::supervisor::{self, Spawner};
use crate::util;

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
    execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
    spawner: Spawner,
    /// Named volumes.
    pub volumes: crate::volumes::Volumes,
    /// Docker events (`/events`), as JSON messages.
    pub events: tokio::sync::broadcast::Sender<serde_json::Value>,
    /// The last [`EVENT_HISTORY`] events, for `/events?since=`.
    pub event_log: Mutex<std::collections::VecDeque<serde_json::Value>>,
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
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
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::BadParameter(format!("invalid signal: {s}")))
}

impl Daemon {
    /// Open the stores, start the spawner and restore every container (live restore).
    pub async fn new(paths: Paths) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&paths.data_root)?;
        std::fs::create_dir_all(paths.exec_root.join("m"))?;
        let images = Images::open(&paths.data_root)?;
        let paths_data_root = paths.data_root.clone();
        let exe = std::fs::read_link("/proc/self/exe")?;
        let d = Arc::new(Daemon {
            paths,
            images,
            containers: RwLock::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            spawner: Spawner::new(exe)?,
            events: tokio::sync::broadcast::channel(1024).0,
            event_log: Mutex::new(std::collections::VecDeque::new()),
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
                        self.watch_exit(entry.clone(), conn);
                    }
                    Err(_) => {
                        // The monitor finished while we were away (or died).
                        self.finalize(entry.clone(), None).await;
                    }
                }
            } else if rec_auto_restart(&entry.record()) {
                let _ = self.start(&entry.id).await;
            }
        }
        self.remove_stale_monitor_dirs();
        Ok(())
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

    /// A container using image id `image`, if any.
    pub fn image_user(&self, image: &str) -> Option<String> {
        self.containers
            .read()
            .expect("containers lock")
            .values()
            .find(|e| e.record().image == image)
            .map(|e| e.id.clone())
    }

    /// Publish a container event (`create`, `start`, `die`, `destroy`, ...).
    pub fn event(&self, id: &str, action: &str, extra: &[(&str, String)]) {
        let rec = self
            .containers
            .read()
            .expect("containers lock")
            .get(id)
            .map(|e| e.record());
        self.event_of(id, rec.as_ref(), action, extra)
    }

    /// [`event`](Self::event) with the record given (for a container no longer listed).
    fn event_of(&self, id: &str, rec: Option<&Record>, action: &str, extra: &[(&str, String)]) {
        let mut attrs = serde_json::Map::new();
        if let Some(r) = &rec {
            attrs.insert("name".into(), r.name.clone().into());
            attrs.insert(
                "image".into(),
                r.config.image.clone().unwrap_or_default().into(),
            );
            for (k, v) in r.config.labels.clone().unwrap_or_default() {
                attrs.insert(k, v.into());
            }
        }
        for (k, v) in extra {
            attrs.insert((*k).to_owned(), v.clone().into());
        }
        let nanos = util::now_nanos();
        let ev = serde_json::json!({
            "status": action,
            "id": id,
            "from": rec.and_then(|r| r.config.image.clone()).unwrap_or_default(),
            "Type": "container",
            "Action": action,
            "Actor": {"ID": id, "Attributes": attrs},
            "scope": "local",
            "time": (nanos / 1_000_000_000) as i64,
            "timeNano": nanos as i64,
        });
        self.publish(ev);
    }

    /// Send an event to the subscribers and keep it in the history.
    pub fn publish(&self, ev: serde_json::Value) {
        {
            let mut log = self.event_log.lock().expect("event log lock");
            if log.len() >= EVENT_HISTORY {
                log.pop_front();
            }
            log.push_back(ev.clone());
        }
        let _ = self.events.send(ev);
    }

    /// Publish a volume event.
    pub fn volume_event(&self, name: &str, action: &str) {
        let nanos = util::now_nanos();
        self.publish(serde_json::json!({
            "Type": "volume", "Action": action,
            "Actor": {"ID": name, "Attributes": {"driver": "local"}},
            "scope": "local", "time": (nanos / 1_000_000_000) as i64, "timeNano": nanos as i64,
        }));
    }

    /// The containers using volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|e| {
                crate::spec::all_mounts(&e.record()).is_ok_and(|ms| {
                    ms.iter().any(|m| matches!(m, crate::spec::MountSpec::Volume { name: n, .. } if n == name))
                })
            })
            .map(|e| e.id.clone())
            .collect()
    }

    /// Remove a volume unless a container uses it (409).
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<(), Error> {
        self.volumes.get(name)?;
        let users = self.volume_users(name);
        if !users.is_empty() && !force {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.volumes.remove(name)?;
        self.volume_event(name, "destroy");
        Ok(())
    }

    /// Pause (freeze) a running container.
    pub async fn pause(&self, name: &str, pause: bool) -> Result<(), Error> {
        let entry = self.get(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        if !rec.state.running {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let paused = rec.state.status == "paused";
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
            let c = berth_runtime::Container::load(&root, &id)?;
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

    /// Rename a container.
    pub async fn rename(&self, name: &str, new: &str) -> Result<(), Error> {
        let new = new.strip_prefix('/').unwrap_or(new);
        if !valid_name(new) {
            return Err(Error::BadParameter(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let entry = self.get(name)?;
        {
            let map = self.containers.read().expect("containers lock");
            if let Some(other) = map
                .values()
                .find(|e| e.record().name == new && e.id != entry.id)
            {
                return Err(Error::Conflict(format!(
                    "Conflict. The container name \"/{new}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    other.id
                )));
            }
        }
        let old = entry.record().name;
        self.save(&entry, |r| r.name = new.to_owned())?;
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
        macro_rules! take {
            ($($f:ident),*) => {$(
                if hc_patch.$f.is_some() {
                    hc.$f = hc_patch.$f.clone();
                }
            )*};
        }
        take!(
            memory,
            memory_swap,
            nano_cpus,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpuset_cpus,
            pids_limit,
            restart_policy
        );
        if hc.nano_cpus.is_some_and(|n| n > 0) && hc.cpu_quota.is_some_and(|q| q > 0) {
            return Err(Error::Conflict(
                "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
                    .into(),
            ));
        }
        let cfg_path = self.paths.bundle(&rec.id).join("config.json");
        let mut spec: serde_json::Value = std::fs::read(&cfg_path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .ok_or_else(|| Error::Internal {
                what: "read config.json".into(),
                cause: cfg_path.display().to_string(),
            })?;
        let res = crate::spec::resources(
            &rec.host_config,
            rec.host_config.privileged.unwrap_or(false),
        );
        spec["linux"]["resources"] = res.clone();
        if rec.state.running {
            let root = self.paths.runtime_root();
            let id = rec.id.clone();
            let lr: oci_spec::runtime::LinuxResources = serde_json::from_value(res)
                .map_err(|e| Error::BadParameter(format!("invalid resources: {e}")))?;
            tokio::task::spawn_blocking(move || {
                let c = berth_runtime::Container::load_shared(&root, &id)?;
                c.cgroup()?.apply(&lr)?;
                Ok::<_, berth_runtime::ContainerError>(())
            })
            .await
            .map_err(|e| Error::internal("update", e))?
            .map_err(|e| {
                Error::BadParameter(format!(
                    "Cannot update container {}: {}",
                    rec.id,
                    crate::images::chain(&e)
                ))
            })?;
        }
        util::atomic_write(&cfg_path, &serde_json::to_vec_pretty(&spec).expect("json"))
            .map_err(|e| Error::internal("write config.json", e))?;
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
        tokio::task::spawn_blocking(move || {
            let c = berth_runtime::Container::load_shared(&root, &id).ok()?;
            let cg = c.cgroup().ok()?;
            cg.stats().ok()
        })
        .await
        .map_err(|e| Error::internal("stats", e))
    }

    /// The container's processes as (pid, ppid, uid, command line).
    pub async fn top(&self, name: &str) -> Result<Vec<(i32, i32, u32, String)>, Error> {
        let entry = self.get(name)?;
        if !entry.record().state.running {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                entry.id
            )));
        }
        let root = self.paths.runtime_root();
        let id = entry.id.clone();
        let pids = tokio::task::spawn_blocking(move || {
            let c = berth_runtime::Container::load_shared(&root, &id)?;
            let cg = c.cgroup()?;
            Ok::<_, berth_runtime::ContainerError>(c.own_processes(cg.as_ref()))
        })
        .await
        .map_err(|e| Error::internal("top", e))?
        .map_err(|e| Error::internal("list the container's processes", e))?;
        let mut out = Vec::new();
        for pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0);
            let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                })
                .unwrap_or(0);
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .split('\0')
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            out.push((pid, ppid, uid, cmd));
        }
        Ok(out)
    }

    fn save(&self, entry: &Entry, f: impl FnOnce(&mut Record)) -> Result<Record, Error> {
        let mut rec = entry.rec.lock().expect("record lock");
        f(&mut rec);
        store::save(&self.paths, &rec)
            .map_err(|e| Error::internal("save the container record", e))?;
        Ok(rec.clone())
    }

    /// Create a container (docker's `POST /containers/create`).
    pub async fn create(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> Result<String, Error> {
        let image_name = body
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::BadParameter("config.Image is required".into()))?;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(&n).to_owned();
                if !valid_name(&n) {
                    return Err(Error::BadParameter(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n
            }
            None => {
                let r = util::random_id();
                let a = usize::from_str_radix(&r[..4], 16).unwrap_or(0);
                let b = usize::from_str_radix(&r[4..8], 16).unwrap_or(0);
                format!("{}_{}", ADJ[a % ADJ.len()], NOUN[b % NOUN.len()]) + &format!("{}", a % 100)
            }
        };
        let me = self.clone();
        let lookup = image_name.clone();
        let found = tokio::task::spawn_blocking(move || me.images.lookup(&lookup))
            .await
            .map_err(|e| Error::internal("look up the image", e))??;
        let img_cfg = found.image.config.config().clone().unwrap_or_default();
        let mut config: ContainerConfig = serde_json::from_value(
            serde_json::to_value(&body).map_err(|e| Error::internal("convert the config", e))?,
        )
        .map_err(|e| Error::BadParameter(format!("invalid config: {e}")))?;
        let host_config = body.host_config.clone().unwrap_or_default();
        config.env = Some(merge_env(
            img_cfg.env().as_deref().unwrap_or_default(),
            body.env.as_deref().unwrap_or_default(),
        ));
        let entrypoint = match &body.entrypoint {
            Some(e) => e.clone(),
            None => img_cfg.entrypoint().clone().unwrap_or_default(),
        };
        let cmd = match (&body.cmd, &body.entrypoint) {
            (Some(c), _) => c.clone(),
            (None, None) => img_cfg.cmd().clone().unwrap_or_default(),
            (None, Some(_)) => Vec::new(),
        };
        config.entrypoint = (!entrypoint.is_empty()).then(|| entrypoint.clone());
        config.cmd = Some(cmd.clone());
        if config.working_dir.as_deref().unwrap_or("").is_empty() {
            config.working_dir = img_cfg.working_dir().clone();
        }
        if config.user.as_deref().unwrap_or("").is_empty() {
            config.user = img_cfg.user().clone();
        }
        let mut labels: HashMap<String, String> = img_cfg
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        labels.extend(body.labels.clone().unwrap_or_default());
        config.labels = Some(labels);
        if config.stop_signal.is_none() {
            config.stop_signal = img_cfg.stop_signal().clone();
        }
        config.image = Some(image_name);
        let mut argv = entrypoint;
        argv.extend(cmd);
        if argv.is_empty() {
            return Err(Error::BadParameter("no command specified".into()));
        }
        let log_rotation = log_rotation(&host_config)?;
        let mut host_config = host_config;
        let lc = host_config.log_config.get_or_insert_with(Default::default);
        if lc.typ.as_deref().unwrap_or("").is_empty() {
            lc.typ = Some("json-file".into());
        }
        if host_config.network_mode.as_deref().unwrap_or("").is_empty() {
            host_config.network_mode = Some("default".into());
        }
        let id = util::random_id();
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: util::now(),
            image: found.id(),
            manifest: found.image.manifest_digest.to_string(),
            config,
            host_config,
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            state: State {
                status: "created".into(),
                started_at: util::ZERO_TIME.into(),
                finished_at: util::ZERO_TIME.into(),
                ..Default::default()
            },
            restart_count: 0,
            log_rotation,
            anonymous: Vec::new(),
        };
        crate::spec::validate(&rec)?;
        // The image's VOLUMEs and `-v /path` (Config.Volumes) not covered by a mount get an
        // anonymous volume each.
        let mut rec = rec;
        let covered: Vec<String> = crate::spec::mounts_of(&rec.host_config)?
            .iter()
            .map(|m| m.destination().trim_end_matches('/').to_owned())
            .collect();
        let mut wanted: Vec<String> = img_cfg.volumes().clone().unwrap_or_default();
        wanted.extend(body.volumes.clone().unwrap_or_default());
        for path in wanted {
            let p = path.trim_end_matches('/').to_owned();
            if p.starts_with('/')
                && !covered.contains(&p)
                && !rec.anonymous.iter().any(|b| b.ends_with(&format!(":{p}")))
            {
                rec.anonymous.push(format!("{}:{p}", util::random_id()));
            }
        }
        for m in crate::spec::all_mounts(&rec)? {
            if let crate::spec::MountSpec::Volume { name, .. } = m {
                if self.volumes.get(&name).is_err() {
                    self.volumes
                        .create(Some(&name), HashMap::new(), HashMap::new())?;
                    self.volume_event(&name, "create");
                }
            }
        }
        {
            // Reserve the name under the lock; the entry is visible from here on.
            let map = self.containers.read().expect("containers lock");
            if let Some(other) = map.values().find(|e| e.record().name == name) {
                return Err(Error::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    other.id
                )));
            }
        }
        let me = self.clone();
        let r2 = rec.clone();
        let image = found.image.clone();
        tokio::task::spawn_blocking(move || me.prepare(&r2, &image))
            .await
            .map_err(|e| Error::internal("prepare the container", e))??;
        if let Err(e) = store::save(&self.paths, &rec) {
            self.teardown(&id);
            return Err(Error::internal("save the container record", e));
        }
        self.insert(rec);
        tracing::info!(%id, %name, "container created");
        self.event(&id, "create", &[]);
        Ok(id)
    }

    /// The rootfs (overlay over the image's layers), /etc files and config.json.
    fn prepare(&self, rec: &Record, img: &berth_image::Image) -> Result<(), Error> {
        let id = &rec.id;
        let bundle = self.paths.bundle(id);
        let rootfs = bundle.join("rootfs");
        let res = (|| {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| Error::internal("create the rootfs dir", e))?;
            self.images
                .store()
                .mount_overlay(img, &rootfs, &self.paths.overlay(id), &|_| {})
                .map_err(|e| Error::internal("mount the rootfs", e))?;
            // A new (empty) volume starts with what the image has at its path (docker's
            // copy-up), read inside the rootfs and written with the layer applier.
            for m in crate::spec::all_mounts(rec)? {
                if let crate::spec::MountSpec::Volume { name, dst, .. } = m {
                    let data = self.volumes.data_path(&name);
                    let empty = std::fs::read_dir(&data)
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(false);
                    if !empty
                        || crate::archive::stat(&rootfs, &dst)
                            .map(|s| s.mode & (1 << 31) == 0)
                            .unwrap_or(true)
                    {
                        continue;
                    }
                    let mut tar = Vec::new();
                    crate::archive::export_as(&rootfs, &dst, std::ffi::OsStr::new("."), &mut tar)?;
                    crate::archive::import(&data, "/", std::io::Cursor::new(tar))?;
                }
            }
            let dir = self.paths.container_dir(id);
            let files = crate::spec::EtcFiles {
                hosts: &dir.join("hosts"),
                hostname: &dir.join("hostname"),
                resolv: &dir.join("resolv.conf"),
            };
            crate::spec::write_etc_files(rec, &files)
                .map_err(|e| Error::internal("write /etc files", e))?;
            let spec = crate::spec::build(rec, img, &rootfs, &files, &self.volumes)?;
            util::atomic_write(
                &bundle.join("config.json"),
                &serde_json::to_vec_pretty(&spec).expect("json"),
            )
            .map_err(|e| Error::internal("write config.json", e))
        })();
        if res.is_err() {
            self.teardown(id);
        }
        res
    }

    /// Unmount and remove everything of container `id` on disk.
    fn teardown(&self, id: &str) {
        let rootfs = self.paths.bundle(id).join("rootfs");
        if let Err(e) = berth_image::unpack::unmount_overlay(&rootfs, &self.paths.overlay(id)) {
            tracing::warn!(%id, "unmount the rootfs: {}", crate::images::chain(&e));
        }
        let _ = std::fs::remove_dir_all(self.paths.container_dir(id));
        let _ = std::fs::remove_dir_all(self.paths.monitor_dir(id));
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
        Ok(rx)
    }

    /// Start a container (`POST /containers/{id}/start`).
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<(), Error> {
        let entry = self.get(name)?;
        let _op = entry.op.lock().await;
        self.start_locked(&entry).await
    }

    async fn start_locked(self: &Arc<Self>, entry: &Arc<Entry>) -> Result<(), Error> {
        match self.start_inner(entry).await {
            Err(Error::NotModified(m)) => Err(Error::NotModified(m)),
            Err(e) => {
                self.start_failed(entry, &e.to_string());
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    async fn start_inner(self: &Arc<Self>, entry: &Arc<Entry>) -> Result<(), Error> {
        let rec = entry.record();
        if rec.state.running {
            return Err(Error::NotModified("started"));
        }
        let id = rec.id.clone();
        // Namespaces of other containers (container:NAME modes), as they are now.
        let joins = crate::spec::joins(&rec.host_config);
        if !joins.is_empty() {
            let mut pids = Vec::new();
            for (ns, name) in &joins {
                let other = self.get(name)?.record();
                if !other.state.running {
                    return Err(Error::Conflict(format!(
                        "cannot join the {ns} namespace of container {name}: it is not running"
                    )));
                }
                pids.push((*ns, other.state.pid));
            }
            let cfg_path = self.paths.bundle(&id).join("config.json");
            let mut spec: serde_json::Value = std::fs::read(&cfg_path)
                .ok()
                .and_then(|d| serde_json::from_slice(&d).ok())
                .ok_or_else(|| Error::Internal {
                    what: "read config.json".into(),
                    cause: cfg_path.display().to_string(),
                })?;
            crate::spec::set_joins(&mut spec, &pids);
            util::atomic_write(&cfg_path, &serde_json::to_vec_pretty(&spec).expect("json"))
                .map_err(|e| Error::internal("write config.json", e))?;
        }
        let _ = std::fs::remove_file(self.paths.exit_file(&id));
        let mdir = self.paths.monitor_dir(&id);
        let _ = std::fs::remove_dir_all(&mdir);
        let cfg = monitor::Config {
            id: id.clone(),
            runtime_root: self.paths.runtime_root(),
            bundle: self.paths.bundle(&id),
            exec: None,
            tty: rec.config.tty.unwrap_or(false),
            open_stdin: rec.config.open_stdin.unwrap_or(false),
            stdin_once: rec.config.stdin_once.unwrap_or(false),
            log: Some((self.paths.log(&id), rec.log_rotation)),
            exit_file: self.paths.exit_file(&id),
            socket: self.paths.monitor_socket(&id),
            console_socket: mdir.join("c"),
            console_size: console_size(rec.host_config.console_size.as_deref()),
        };
        if let Err(e) = self.spawner.spawn(&mdir, &cfg).await {
            let _ = std::fs::remove_dir_all(&mdir);
            let msg = e.to_string();
            return Err(Error::BadParameter(format!(
                "failed to create task for container: {msg}"
            )));
        }
        // Attaches registered before the start get their streams first.
        let pending: Vec<PendingAttach> =
            std::mem::take(&mut *entry.pending.lock().expect("pending lock"));
        for p in pending {
            if let Ok((r, conn)) = supervisor::call(&cfg.socket, &p.req).await {
                if r.ok {
                    let _ = p.tx.send(conn);
                }
            }
        }
        let wait_conn = supervisor::call(&cfg.socket, &Request::Wait)
            .await
            .map_err(|e| Error::internal("wait on the monitor", e))?
            .1;
        let reply = match supervisor::call(&cfg.socket, &Request::Start).await {
            Ok((r, _)) => r,
            Err(e) => return Err(Error::internal("start through the monitor", e)),
        };
        if !reply.ok {
            let msg = reply.error.unwrap_or_default();
            return Err(Error::BadParameter(format!(
                "failed to start container {id}: {msg}"
            )));
        }
        self.save(entry, |r| {
            r.state.status = "running".into();
            r.state.running = true;
            r.state.pid = reply.pid.unwrap_or(0);
            r.state.started_at = reply.started_at.clone().unwrap_or_else(util::now);
            r.state.error.clear();
            r.state.oom_killed = false;
            r.state.stopped_by_user = false;
        })?;
        entry.watch.send_modify(|s| s.running = true);
        self.event(&entry.id, "start", &[]);
        crate::health::spawn(self.clone(), entry.clone());
        self.watch_exit(entry.clone(), wait_conn);
        Ok(())
    }

    /// A start that failed: docker's exit code for the cause (127 not found, 126 not
    /// executable, 128 otherwise), waiters told, and an AutoRemove container removed.
    fn start_failed(self: &Arc<Self>, entry: &Arc<Entry>, msg: &str) {
        let code = if msg.contains("no such file or directory") || msg.contains("not found") {
            127
        } else if msg.contains("permission denied") || msg.contains("Permission denied") {
            126
        } else {
            128
        };
        let rec = self.save(entry, |r| {
            r.state.error = msg.to_owned();
            r.state.exit_code = code;
        });
        entry.watch.send_modify(|s| {
            s.exits += 1;
            s.exit_code = code as i64;
        });
        if rec.is_ok_and(|r| r.host_config.auto_remove.unwrap_or(false)) {
            let me = self.clone();
            let id = entry.id.clone();
            tokio::spawn(async move {
                if let Err(e) = me.remove_with(&id, true, true).await {
                    tracing::warn!(%id, "auto-remove after a failed start: {e}");
                }
            });
        }
    }

    fn watch_exit(
        self: &Arc<Self>,
        entry: Arc<Entry>,
        conn: tokio::io::BufReader<tokio::net::UnixStream>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let exit = supervisor::wait_exit(conn).await;
            me.finalize(entry, exit).await;
        });
    }

    /// Record the end of a run, then apply AutoRemove or the restart policy.
    async fn finalize(self: &Arc<Self>, entry: Arc<Entry>, exit: Option<monitor::Exit>) {
        let id = entry.id.clone();
        let exit = exit.or_else(|| supervisor::read_exit(&self.paths.exit_file(&id)));
        let exit = exit.unwrap_or_else(|| monitor::Exit {
            exit_code: 255,
            finished_at: util::now(),
            oom_killed: false,
        });
        let rec = match self.save(&entry, |r| {
            r.state.status = "exited".into();
            r.state.running = false;
            r.state.pid = 0;
            r.state.exit_code = exit.exit_code;
            r.state.finished_at = exit.finished_at.clone();
            r.state.oom_killed = exit.oom_killed;
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%id, "{e}");
                entry.record()
            }
        };
        let _ = std::fs::remove_dir_all(self.paths.monitor_dir(&id));
        if exit.oom_killed {
            self.event(&id, "oom", &[]);
        }
        self.event(&id, "die", &[("exitCode", exit.exit_code.to_string())]);
        entry.watch.send_modify(|s| {
            s.running = false;
            s.exits += 1;
            s.exit_code = exit.exit_code as i64;
        });
        if rec.host_config.auto_remove.unwrap_or(false) {
            if let Err(e) = self.remove_with(&id, true, true).await {
                tracing::warn!(%id, "auto-remove: {e}");
            }
            return;
        }
        if should_restart(&rec) {
            let delay = Duration::from_millis(100u64 << rec.restart_count.clamp(0, 8));
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = entry.op.lock().await;
                let rec = entry.record();
                if rec.state.running || entry.watch.borrow().removed || !should_restart(&rec) {
                    return;
                }
                let _ = me.save(&entry, |r| r.restart_count += 1);
                if let Err(e) = me.start_locked(&entry).await {
                    tracing::warn!(id = %entry.id, "restart: {e}");
                }
            });
        }
    }

    /// Send `signal` (a name or number) to the container's init.
    pub async fn kill(&self, name: &str, signal: Option<&str>) -> Result<(), Error> {
        let entry = self.get(name)?;
        let sig = signal_number(signal.unwrap_or("SIGKILL"))?;
        if !entry.record().state.running {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                entry.id
            )));
        }
        let _ = self.save(&entry, |r| r.state.stopped_by_user = true);
        self.signal(&entry.id, sig, false).await
    }

    async fn signal(&self, id: &str, sig: i32, all: bool) -> Result<(), Error> {
        let root = self.paths.runtime_root();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            match berth_runtime::Container::load_shared(&root, &id).and_then(|c| c.kill(sig, all)) {
                Ok(()) => Ok(()),
                Err(berth_runtime::ContainerError::NotFound { .. })
                | Err(berth_runtime::ContainerError::NotRunning { .. }) => Ok(()),
                Err(e) => Err(Error::internal(format!("kill {id}"), e)),
            }
        })
        .await
        .map_err(|e| Error::internal("kill", e))?
    }

    /// Wait until the container is not running (or `deadline` passes); true if it stopped.
    async fn wait_stopped(&self, entry: &Entry, deadline: Duration) -> bool {
        let mut rx = entry.watch.subscribe();
        let res = tokio::time::timeout(deadline, rx.wait_for(|s| !s.running)).await;
        res.is_ok()
    }

    /// Stop: the stop signal, then SIGKILL after `timeout` seconds (docker's `stop -t`).
    pub async fn stop(
        &self,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), Error> {
        let entry = self.get(name)?;
        let _op = entry.op.lock().await;
        self.stop_locked(&entry, timeout, signal).await
    }

    async fn stop_locked(
        &self,
        entry: &Entry,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), Error> {
        let rec = entry.record();
        if !rec.state.running {
            return Err(Error::NotModified("stopped"));
        }
        let _ = self.save(entry, |r| r.state.stopped_by_user = true);
        let sig = signal_number(
            signal
                .or(rec.config.stop_signal.as_deref())
                .unwrap_or("SIGTERM"),
        )?;
        let t = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        self.signal(&entry.id, sig, false).await?;
        if t < 0 {
            entry.watch.subscribe().wait_for(|s| !s.running).await.ok();
            return Ok(());
        }
        if !self
            .wait_stopped(entry, Duration::from_secs(t as u64))
            .await
        {
            self.signal(&entry.id, libc::SIGKILL, true).await?;
            self.wait_stopped(entry, Duration::from_secs(30)).await;
        }
        Ok(())
    }

    /// Restart: stop (if running) then start.
    pub async fn restart(self: &Arc<Self>, name: &str, timeout: Option<i64>) -> Result<(), Error> {
        let entry = self.get(name)?;
        let _op = entry.op.lock().await;
        match self.stop_locked(&entry, timeout, None).await {
            Ok(()) | Err(Error::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        self.start_locked(&entry).await
    }

    /// Remove a container (`DELETE /containers/{id}`); `force` kills a running one.
    pub async fn remove(&self, name: &str, force: bool) -> Result<(), Error> {
        self.remove_with(name, force, false).await
    }

    /// [`remove`](Self::remove); with `volumes` (`rm -v`) its anonymous volumes go too.
    pub async fn remove_with(&self, name: &str, force: bool, volumes: bool) -> Result<(), Error> {
        let entry = self.get(name)?;
        let _op = entry.op.lock().await;
        if entry.record().state.running {
            if !force {
                return Err(Error::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    entry.record().name
                )));
            }
            let _ = self.save(&entry, |r| r.state.stopped_by_user = true);
            self.signal(&entry.id, libc::SIGKILL, true).await?;
            if !self.wait_stopped(&entry, Duration::from_secs(30)).await {
                return Err(Error::Conflict(format!(
                    "container {} did not stop",
                    entry.id
                )));
            }
        }
        self.containers
            .write()
            .expect("containers lock")
            .remove(&entry.id);
        entry.pending.lock().expect("pending lock").clear();
        self.execs
            .lock()
            .expect("execs lock")
            .retain(|_, x| x.container != entry.id);
        let id = entry.id.clone();
        let paths = self.paths.clone();
        let root = self.paths.runtime_root();
        tokio::task::spawn_blocking(move || {
            // A runtime state left by a monitor that died.
            if let Ok(c) = berth_runtime::Container::load(&root, &id) {
                let _ = c.delete(true);
            }
            let rootfs = paths.bundle(&id).join("rootfs");
            if let Err(e) = berth_image::unpack::unmount_overlay(&rootfs, &paths.overlay(&id)) {
                tracing::warn!(%id, "unmount the rootfs: {}", crate::images::chain(&e));
            }
            let _ = std::fs::remove_dir_all(paths.container_dir(&id));
            let _ = std::fs::remove_dir_all(paths.monitor_dir(&id));
        })
        .await
        .map_err(|e| Error::internal("remove", e))?;
        if volumes {
            for b in &entry.record().anonymous {
                if let Some((vol, _)) = b.split_once(':') {
                    if let Err(e) = self.volume_remove(vol, false) {
                        tracing::warn!(id = %entry.id, "remove anonymous volume {vol}: {e}");
                    }
                }
            }
        }
        self.event_of(&entry.id, Some(&entry.record()), "destroy", &[]);
        entry.watch.send_modify(|s| s.removed = true);
        Ok(())
    }

    /// Create an exec instance.
    pub async fn exec_create(
        &self,
        name: &str,
        cfg: bollard_stubs::models::ExecConfig,
    ) -> Result<String, Error> {
        let entry = self.get(name)?;
        let rec = entry.record();
        if !rec.state.running {
            return Err(Error::Conflict(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let cmd = cfg.cmd.clone().unwrap_or_default();
        if cmd.is_empty() {
            return Err(Error::BadParameter("No exec command specified".into()));
        }
        let bundle = self.paths.bundle(&rec.id);
        let spec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(bundle.join("config.json"))
                .map_err(|e| Error::internal("read config.json", e))?,
        )
        .map_err(|e| Error::internal("parse config.json", e))?;
        let mut p = spec["process"].clone();
        p["args"] = serde_json::json!(cmd);
        p["terminal"] = serde_json::json!(cfg.tty.unwrap_or(false));
        let env: Vec<String> = serde_json::from_value(p["env"].clone()).unwrap_or_default();
        p["env"] = serde_json::json!(merge_env(&env, cfg.env.as_deref().unwrap_or_default()));
        if let Some(w) = cfg.working_dir.clone().filter(|w| !w.is_empty()) {
            p["cwd"] = serde_json::json!(w);
        }
        if let Some(u) = cfg.user.clone().filter(|u| !u.is_empty()) {
            let user = berth_image::bundle::resolve_user(&bundle.join("rootfs"), &u)
                .map_err(|e| Error::BadParameter(crate::images::chain(&e)))?;
            p["user"] = serde_json::json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
        }
        let process: oci_spec::runtime::Process =
            serde_json::from_value(p).map_err(|e| Error::internal("exec process", e))?;
        let id = util::random_id();
        let e = Arc::new(ExecEntry {
            id: id.clone(),
            container: rec.id.clone(),
            config: cfg,
            process,
            state: Mutex::new((false, 0, None)),
            done: watch::channel(false).0,
        });
        self.execs.lock().expect("execs lock").insert(id.clone(), e);
        Ok(id)
    }

    /// An exec instance.
    pub fn exec_get(&self, id: &str) -> Result<Arc<ExecEntry>, Error> {
        self.execs
            .lock()
            .expect("execs lock")
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NoSuchExec(id.to_owned()))
    }

    /// Start an exec; with `attach`, the monitor connection for its stdio is returned.
    pub async fn exec_start(
        self: &Arc<Self>,
        id: &str,
        attach: Option<Request>,
        size: Option<&[usize]>,
        gate: Option<oneshot::Receiver<()>>,
    ) -> Result<Option<tokio::io::BufReader<tokio::net::UnixStream>>, Error> {
        let ex = self.exec_get(id)?;
        {
            let mut st = ex.state.lock().expect("exec lock");
            if st.0 || st.2.is_some() {
                return Err(Error::Conflict(format!(
                    "exec {id} has already been started"
                )));
            }
            st.0 = true;
        }
        let mdir = self.paths.monitor_dir(&ex.id);
        let cfg = monitor::Config {
            id: ex.container.clone(),
            runtime_root: self.paths.runtime_root(),
            bundle: self.paths.bundle(&ex.container),
            exec: Some(ex.process.clone()),
            tty: ex.config.tty.unwrap_or(false),
            open_stdin: ex.config.attach_stdin.unwrap_or(false),
            stdin_once: true,
            log: None,
            exit_file: mdir.join("exit.json"),
            socket: mdir.join("s"),
            console_socket: mdir.join("c"),
            console_size: console_size(size.or(ex.config.console_size.as_deref())),
        };
        if let Err(e) = self.spawner.spawn(&mdir, &cfg).await {
            *ex.state.lock().expect("exec lock") = (false, 0, None);
            return Err(e);
        }
        let conn = match attach {
            Some(req) => Some(
                supervisor::call(&cfg.socket, &req)
                    .await
                    .map_err(|e| Error::internal("attach to the exec", e))?
                    .1,
            ),
            None => None,
        };
        match gate {
            // Attached: the process starts once the client has the 101 (docker-py before 6
            // reads the output from the raw socket after parsing the response, and loses what
            // arrived with it).
            Some(gate) => {
                let ex = ex.clone();
                tokio::spawn(async move {
                    if gate.await.is_ok() {
                        let _ = Self::exec_begin(&ex, &cfg, &mdir).await;
                    } else {
                        Self::exec_abandon(&ex, &mdir);
                    }
                });
            }
            None => Self::exec_begin(&ex, &cfg, &mdir).await?,
        }
        Ok(conn)
    }

    fn exec_abandon(ex: &ExecEntry, mdir: &std::path::Path) {
        // The monitor waits for a start that will not come: its socket closes with it.
        if let Ok(pid) = std::fs::read_to_string(mdir.join("pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_dir_all(mdir);
        *ex.state.lock().expect("exec lock") = (false, 0, Some(126));
        ex.done.send_replace(true);
    }

    async fn exec_begin(
        ex: &Arc<ExecEntry>,
        cfg: &monitor::Config,
        mdir: &std::path::Path,
    ) -> Result<(), Error> {
        let wait_conn = match supervisor::call(&cfg.socket, &Request::Wait).await {
            Ok((_, c)) => c,
            Err(e) => {
                Self::exec_abandon(ex, mdir);
                return Err(Error::internal("wait on the exec", e));
            }
        };
        let reply = match supervisor::call(&cfg.socket, &Request::Start).await {
            Ok((r, _)) if r.ok => r,
            Ok((r, _)) => {
                Self::exec_abandon(ex, mdir);
                return Err(Error::internal(
                    "start the exec",
                    std::io::Error::other(r.error.unwrap_or_default()),
                ));
            }
            Err(e) => {
                Self::exec_abandon(ex, mdir);
                return Err(Error::internal("start the exec", e));
            }
        };
        *ex.state.lock().expect("exec lock") = (true, reply.pid.unwrap_or(0), None);
        let ex2 = ex.clone();
        let mdir = mdir.to_owned();
        tokio::spawn(async move {
            let exit = supervisor::wait_exit(wait_conn).await;
            let exit = exit.or_else(|| supervisor::read_exit(&mdir.join("exit.json")));
            *ex2.state.lock().expect("exec lock") =
                (false, 0, Some(exit.map_or(126, |e| e.exit_code as i64)));
            ex2.done.send_replace(true);
            let _ = std::fs::remove_dir_all(&mdir);
        });
        Ok(())
    }

    /// Forget a finished exec instance (the healthcheck's, which nobody inspects).
    pub fn exec_forget(&self, id: &str) {
        self.execs.lock().expect("execs lock").remove(id);
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

fn console_size(s: Option<&[usize]>) -> Option<(u16, u16)> {
    match s {
        Some([h, w]) if *h > 0 && *w > 0 => Some((
            (*h).min(u16::MAX as usize) as u16,
            (*w).min(u16::MAX as usize) as u16,
        )),
        _ => None,
    }
}

/// Whether the daemon restarts this stopped container when it starts: one that ran and
/// ended on its own (not stopped by the user, not never started) under a restart policy that
/// asks for it, e.g. one whose backoff was running when the daemon died.
fn rec_auto_restart(rec: &Record) -> bool {
    rec.state.status == "exited" && should_restart(rec)
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
            Some(t) => {
                return Err(Error::BadParameter(format!(
                    "logging driver {t:?} is not supported (json-file)"
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
