//! Creating a container: the record, its rootfs (overlayfs over the image's layers), its
//! volumes, /etc files and config.json.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, ContainerCreateBody};

use super::{log_rotation, merge_env, valid_name, Daemon};
use crate::error::Error;
use crate::store::{self, Record, State};
use crate::util;

impl Daemon {
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
        let wanted = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(&n).to_owned();
                if !valid_name(&n) {
                    return Err(Error::BadParameter(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                Some(n)
            }
            None => None,
        };
        let id = util::random_id();
        // Held until the container is in the map (or the create failed).
        let reservation = self.reserve_name(wanted, &id)?;
        let name = reservation.name.clone();
        // Until the record is in the map: no rmi or prune deletes the image meanwhile.
        let _gc = self.images.gc_lock().read_owned().await;
        let me = self.clone();
        let lookup = image_name.clone();
        let (found, image_health) = tokio::task::spawn_blocking(move || {
            let found = me.images.lookup(&lookup)?;
            let health = image_healthcheck(me.images.store(), &found.image.config_digest)?;
            Ok::<_, Error>((found, health))
        })
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
        let crate::spec::Command {
            entrypoint,
            cmd,
            argv,
        } = crate::spec::command(body.entrypoint.as_deref(), body.cmd.as_deref(), &img_cfg)?;
        config.entrypoint = entrypoint;
        config.cmd = Some(cmd);
        crate::spec::complete_config(&mut config, &img_cfg, &host_config, &id);
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
        // The container's own Healthcheck (`--health-*`, or `NONE` from `--no-healthcheck`)
        // replaces the image's; docker fills only the fields left unset.
        if let Some(img_hc) = image_health {
            let hc = config.healthcheck.get_or_insert_with(Default::default);
            if hc.test.as_ref().is_none_or(|t| t.is_empty()) {
                hc.test = img_hc.test;
            }
            if hc.interval.unwrap_or(0) == 0 {
                hc.interval = img_hc.interval;
            }
            if hc.timeout.unwrap_or(0) == 0 {
                hc.timeout = img_hc.timeout;
            }
            if hc.start_period.unwrap_or(0) == 0 {
                hc.start_period = img_hc.start_period;
            }
            if hc.retries.unwrap_or(0) == 0 {
                hc.retries = img_hc.retries;
            }
        }
        config.image = Some(image_name);
        let log_rotation = log_rotation(&host_config)?;
        let mut host_config = host_config;
        let lc = host_config.log_config.get_or_insert_with(Default::default);
        if lc.typ.as_deref().unwrap_or("").is_empty() {
            lc.typ = Some("json-file".into());
        }
        if host_config.network_mode.as_deref().unwrap_or("").is_empty() {
            host_config.network_mode = Some("default".into());
        }
        // dockerd 20.10's defaults, shown by inspect: a 64 MiB /dev/shm (what the spec's
        // /dev/shm mount has anyway) and a private IPC namespace (what "" means here).
        if host_config.shm_size.unwrap_or(0) == 0 {
            host_config.shm_size = Some(crate::spec::DEFAULT_SHM_SIZE);
        }
        if host_config.ipc_mode.as_deref().unwrap_or("").is_empty() {
            host_config.ipc_mode = Some("private".into());
        }
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
        let on_bridge = matches!(
            rec.host_config.network_mode.as_deref().unwrap_or("default"),
            "default" | "bridge"
        );
        if !crate::spec::published(&rec.host_config)?.is_empty()
            && (self.bridge.is_none() || !on_bridge)
        {
            return Err(Error::BadParameter(
                "publishing ports (-p) needs the bridge network (berthd --bridge NAME)".into(),
            ));
        }
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
            crate::archive::init_layer(&rootfs)?;
            // A new (empty) volume starts with what the image has at its path (docker's
            // copy-up), read inside the rootfs and written with the layer applier.
            for m in crate::spec::all_mounts(rec)? {
                if let crate::spec::MountSpec::Volume { name, dst, .. } = m {
                    if self.volume_device(&name).is_some() {
                        // Mounted from its device when the container starts (dockerd's
                        // copy-up there goes to a mount that is gone by the start).
                        continue;
                    }
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
            self.write_etc_files(rec, &files)?;
            let mut spec = crate::spec::build(rec, img, &rootfs, &files, &self.volumes)?;
            spec["process"]["env"] =
                serde_json::json!(daemon_env(rec, rec.config.tty.unwrap_or(false)));
            self.volume_driver_mounts(rec, &mut spec)?;
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

    /// The container's /etc/hosts, /etc/hostname and /etc/resolv.conf, as libnetwork makes
    /// them (see [`crate::network::hosts_file`] and [`crate::network::resolv_conf`]).
    /// Errors: 400 for a bad `ExtraHosts` entry; writing the files.
    fn write_etc_files(
        &self,
        rec: &Record,
        files: &crate::spec::EtcFiles<'_>,
    ) -> Result<(), Error> {
        use crate::network::{self, EtcNetwork};
        let hc = &rec.host_config;
        let net = match hc.network_mode.as_deref().unwrap_or("default") {
            "host" => EtcNetwork::Host,
            "default" | "bridge" if self.bridge.is_some() => EtcNetwork::Bridge,
            _ => EtcNetwork::Isolated,
        };
        let gateway = self.bridge.as_ref().and_then(network::gateway);
        let extra = hc
            .extra_hosts
            .iter()
            .flatten()
            .map(|e| network::extra_host(e, gateway.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        let host = network::HostFiles::read();
        let name = container_hostname(rec);
        let dns = network::Dns {
            servers: hc.dns.as_deref().unwrap_or_default(),
            search: hc.dns_search.as_deref().unwrap_or_default(),
            options: hc.dns_options.as_deref().unwrap_or_default(),
        };
        let w = |path: &std::path::Path, text: String| {
            std::fs::write(path, text)
                .map_err(|e| Error::internal(format!("write {}", path.display()), e))
        };
        w(files.hosts, network::hosts_file(net, &host, &name, &extra))?;
        w(files.hostname, format!("{name}\n"))?;
        w(files.resolv, network::resolv_conf(net, &host, &dns))
    }

    /// The `device` driver option of volume `name` (`volume create -o type=tmpfs -o
    /// device=tmpfs -o o=size=10m`), with its type and mount options; `None` for a plain one.
    fn volume_device(&self, name: &str) -> Option<(String, String, String)> {
        let v = self.volumes.get(name).ok()?;
        let device = v.options.get("device").filter(|d| !d.is_empty())?.clone();
        let typ = v.options.get("type").cloned().unwrap_or_default();
        let o = v.options.get("o").cloned().unwrap_or_default();
        Some((typ, device, o))
    }

    /// Volumes of the local driver with a `device` (tmpfs, nfs, a block device, or a bind with
    /// `o=bind`) are mounted from it instead of their directory, with their `type` and `o`
    /// options, as dockerd's local driver mounts them; each container mounts its own (dockerd
    /// mounts one per volume for all its containers: a tmpfs is not shared here).
    fn volume_driver_mounts(
        &self,
        rec: &Record,
        spec: &mut serde_json::Value,
    ) -> Result<(), Error> {
        for m in crate::spec::all_mounts(rec)? {
            let crate::spec::MountSpec::Volume { name, dst, ro } = m else {
                continue;
            };
            let Some((typ, device, o)) = self.volume_device(&name) else {
                continue;
            };
            let mut options: Vec<String> = o
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect();
            let bind = options.iter().any(|x| x == "bind" || x == "rbind");
            options.push(if ro { "ro" } else { "rw" }.into());
            let typ = if bind || typ.is_empty() {
                "bind".to_owned()
            } else {
                typ
            };
            for mount in spec["mounts"].as_array_mut().into_iter().flatten() {
                if mount["destination"] == dst.as_str() {
                    *mount = serde_json::json!({"destination": dst, "type": typ,
                        "source": device, "options": options});
                }
            }
        }
        Ok(())
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
}

/// The image config's `config.Healthcheck` (a docker extension oci-spec does not model), read
/// from the config blob `digest`; `None` when the image has none. Errors: the blob cannot be
/// read (a malformed Healthcheck is ignored, as dockerd ignores unknown config).
fn image_healthcheck(
    store: &berth_image::Store,
    digest: &berth_image::Digest,
) -> Result<Option<bollard_stubs::models::HealthConfig>, Error> {
    let raw = store
        .read_blob(digest)
        .map_err(|e| Error::internal("read the image config", e))?;
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
    Ok(v.get("config")
        .and_then(|c| c.get("Healthcheck"))
        .and_then(|h| serde_json::from_value(h.clone()).ok()))
}

/// dockerd's default PATH (`system.DefaultPathEnv`), given to every container and exec.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The container's hostname as its processes see it: the host's on the host's network or
/// UTS namespace, else its Config.Hostname or short id.
pub(super) fn container_hostname(rec: &Record) -> String {
    let hc = &rec.host_config;
    if hc.network_mode.as_deref() == Some("host") || hc.uts_mode.as_deref() == Some("host") {
        if let Ok(h) = nix::unistd::gethostname() {
            return h.to_string_lossy().into_owned();
        }
    }
    crate::spec::hostname(rec)
}

/// The environment of a container's process or of an exec in it (`tty`: the exec's own),
/// as dockerd's `CreateDaemonEnvironment`: `PATH` (its default), `HOSTNAME`, `TERM=xterm`
/// with a terminal, then the container's Env replacing or adding to those.
pub(super) fn daemon_env(rec: &Record, tty: bool) -> Vec<String> {
    let mut base = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={}", container_hostname(rec)),
    ];
    if tty {
        base.push("TERM=xterm".into());
    }
    merge_env(&base, rec.config.env.as_deref().unwrap_or_default())
}

/// Create the missing host directories of the container's `-v` binds (mode 0755), as dockerd
/// does for `Binds` at each start (`--mount type=bind` is refused at create instead).
pub(super) fn make_bind_sources(rec: &Record) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    for b in rec.host_config.binds.iter().flatten() {
        let src = b.split(':').next().unwrap_or("");
        if !src.starts_with('/') || std::path::Path::new(src).exists() {
            continue;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(src)
            .map_err(|e| {
                Error::BadParameter(format!(
                    "error while creating mount source path '{src}': {e}"
                ))
            })?;
    }
    Ok(())
}
