//! A container's lifecycle through its monitor: start (attaches first), exits, restart
//! policies and AutoRemove, signals, stop, removal.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{console_size, should_restart, signal_number, Daemon, Entry, PendingAttach};
use crate::error::Error;
use crate::monitor::{self, Request};
use crate::supervisor;
use crate::util;

impl Daemon {
    /// Start a container (`POST /containers/{id}/start`).
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<(), Error> {
        let entry = self.get(name)?;
        let _op = entry.op.lock().await;
        self.start_locked(&entry, false).await
    }

    /// Start under the container's op lock; `by_policy` is the restart policy's start of a
    /// `restarting` container (any other start of one is a 304, as dockerd's: it counts as
    /// running).
    async fn start_locked(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        by_policy: bool,
    ) -> Result<(), Error> {
        let rec = entry.record();
        if rec.state.status == "paused" {
            return Err(Error::Conflict(
                "cannot start a paused container, try unpause instead".into(),
            ));
        }
        if rec.state.running || (rec.state.status == "restarting" && !by_policy) {
            return Err(Error::NotModified("started"));
        }
        if !by_policy {
            // A start by hand (or by the daemon's start) begins a new series of restarts, as
            // dockerd's containerStart resets the restart manager and RestartCount.
            entry.backoff_ms.store(0, Ordering::Relaxed);
            if rec.restart_count != 0 {
                self.save(entry, |r| r.restart_count = 0)?;
            }
        }
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
        // dockerd makes a missing `-v` source at every start, not only at create.
        super::create::make_bind_sources(&rec)?;
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
            let mut bundle = berth_runtime::spec::Bundle::load(&self.paths.bundle(&id))
                .map_err(|e| Error::internal("load the bundle", e))?;
            let mut spec = serde_json::to_value(bundle.spec())
                .map_err(|e| Error::internal("convert the spec", e))?;
            crate::spec::set_joins(&mut spec, &pids);
            let spec =
                serde_json::from_value(spec).map_err(|e| Error::internal("convert the spec", e))?;
            bundle
                .save_spec(spec)
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
            log: crate::spec::logs_kept(&rec.host_config)
                .then(|| (self.paths.log(&id), rec.log_rotation)),
            exit_file: self.paths.exit_file(&id),
            socket: self.paths.monitor_socket(&id),
            console_socket: mdir.join("c"),
            console_size: console_size(rec.host_config.console_size.as_deref()),
        };
        let init_pid = match self.spawner.spawn(&mdir, &cfg).await {
            Ok(pid) => pid,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&mdir);
                let msg = e.to_string();
                return Err(Error::BadParameter(format!(
                    "failed to create task for container: {msg}"
                )));
            }
        };
        // The default network: the bridge, through CNI, before the process starts.
        let on_bridge = matches!(
            rec.host_config.network_mode.as_deref().unwrap_or("default"),
            "default" | "bridge"
        );
        if let (Some(bridge), Some(pid), true) = (self.bridge.clone(), init_pid, on_bridge) {
            let id2 = id.clone();
            let netns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
            let ports = crate::spec::published(&rec.host_config)?;
            let attached = tokio::task::spawn_blocking(move || {
                let a = bridge.attach(&id2, &netns)?;
                if !ports.is_empty() {
                    if let Err(e) = bridge.publish(&id2, &netns, &a, &ports) {
                        let _ = bridge.detach(&id2);
                        return Err(e);
                    }
                }
                Ok(a)
            })
            .await
            .map_err(|e| Error::internal("network", e))
            .and_then(|r| r);
            match attached {
                Ok(a) => {
                    let hosts = self.paths.container_dir(&id).join("hosts");
                    let name = crate::spec::hostname(&rec);
                    if let Ok(text) = std::fs::read_to_string(&hosts) {
                        let text = text.replace(
                            &format!("127.0.1.1\t{name}\n"),
                            &format!("{}\t{name}\n", a.ip),
                        );
                        // In place: the file is bind-mounted into the container.
                        let _ = std::fs::write(&hosts, text);
                    }
                    self.save(entry, |r| r.state.network = Some(a))?;
                }
                Err(e) => {
                    self.abort_created(&id, &mdir).await;
                    return Err(e);
                }
            }
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
            // As dockerd's SetRunning: a running container has exit code 0 (FinishedAt keeps
            // the last exit's time).
            r.state.exit_code = 0;
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
            // A restart by policy that failed ends the restarts (as dockerd's SetStopped).
            if r.state.status == "restarting" {
                r.state.status = "exited".into();
            }
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

    /// Release the container's bridge address (its namespace died with it).
    async fn release_network(&self, id: &str) {
        if let Some(bridge) = self.bridge.clone() {
            let ports = self
                .get(id)
                .ok()
                .and_then(|e| crate::spec::published(&e.record().host_config).ok())
                .unwrap_or_default();
            let id = id.to_owned();
            let _ = tokio::task::spawn_blocking(move || {
                if !ports.is_empty() {
                    let _ = bridge.unpublish(&id, &ports);
                }
                bridge.detach(&id)
            })
            .await;
        }
    }

    /// Undo a create whose start will not come: the monitor killed, the container deleted.
    async fn abort_created(&self, id: &str, mdir: &std::path::Path) {
        if let Some(pid) = std::fs::read_to_string(mdir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let root = self.paths.runtime_root();
        let id = id.to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = berth_runtime::ContainerRef::new(root, id).delete(true);
        })
        .await;
        let _ = std::fs::remove_dir_all(mdir);
    }

    pub(super) fn watch_exit(
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
    pub(super) async fn finalize(self: &Arc<Self>, entry: Arc<Entry>, exit: Option<monitor::Exit>) {
        let rec = self.record_exit(&entry, exit, true).await;
        let id = entry.id.clone();
        if rec.host_config.auto_remove.unwrap_or(false) {
            if let Err(e) = self.remove_with(&id, true, true).await {
                tracing::warn!(%id, "auto-remove: {e}");
            }
            return;
        }
        if rec.state.status == "restarting" {
            // The backoff; a stop, kill or removal meanwhile ends the status `restarting` (or
            // the container), and a later exit has another finish time: either cancels this.
            // dockerd's restart manager: 100 ms, doubled at each restart up to a minute, back
            // to 100 ms after a run of 10 s or more.
            let ran = util::parse_rfc3339(&rec.state.finished_at)
                .zip(util::parse_rfc3339(&rec.state.started_at))
                .map_or(0, |(f, s)| f - s);
            let prev = entry.backoff_ms.load(Ordering::Relaxed);
            let next = if prev == 0 || ran >= 10_000_000_000 {
                100
            } else {
                (prev * 2).min(60_000)
            };
            entry.backoff_ms.store(next, Ordering::Relaxed);
            let delay = Duration::from_millis(next);
            let token = rec.state.finished_at.clone();
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = entry.op.lock().await;
                let rec = entry.record();
                if rec.state.status != "restarting"
                    || rec.state.finished_at != token
                    || entry.watch.borrow().removed
                {
                    tracing::debug!(id = %entry.id, "pending restart cancelled");
                    return;
                }
                if let Err(e) = me.start_locked(&entry, true).await {
                    tracing::warn!(id = %entry.id, "restart: {e}");
                }
            });
        }
    }

    /// Record the end of a run (the monitor's exit record, or 255 for a monitor that died),
    /// as `restarting` when `policy` and the restart policy asks for another run (docker's
    /// `Restarting (N)`: exit code and finish time of the run that ended), else `exited`;
    /// releases the network and tells waiters. Returns the record.
    pub(super) async fn record_exit(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        exit: Option<monitor::Exit>,
        policy: bool,
    ) -> crate::store::Record {
        let id = entry.id.clone();
        let exit = exit.or_else(|| supervisor::read_exit(&self.paths.exit_file(&id)));
        let exit = match exit {
            Some(e) => e,
            None => {
                // The monitor died without recording an exit (killed): nothing holds the
                // container's stdio or waits for it any more; end it rather than leave it
                // running unseen.
                tracing::warn!(%id, "the container's monitor died: killing the container");
                let root = self.paths.runtime_root();
                let id2 = id.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = berth_runtime::ContainerRef::new(root, id2).delete(true);
                })
                .await;
                monitor::Exit {
                    exit_code: 255,
                    finished_at: util::now(),
                    oom_killed: false,
                }
            }
        };
        let rec = match self.save(entry, |r| {
            r.state.running = false;
            r.state.pid = 0;
            r.state.exit_code = exit.exit_code;
            r.state.finished_at = exit.finished_at.clone();
            r.state.oom_killed = exit.oom_killed;
            r.state.network = None;
            // As dockerd's: RestartCount counts the restart at the exit that decides it, and
            // `Restarting (N)` shows it during the backoff.
            if policy && !r.host_config.auto_remove.unwrap_or(false) && should_restart(r) {
                r.state.status = "restarting".into();
                r.restart_count += 1;
            } else {
                r.state.status = "exited".into();
            }
        }) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%id, "{e}");
                entry.record()
            }
        };
        let _ = std::fs::remove_dir_all(self.paths.monitor_dir(&id));
        self.release_network(&id).await;
        if exit.oom_killed {
            self.event(&id, "oom", &[]);
        }
        self.event(&id, "die", &[("exitCode", exit.exit_code.to_string())]);
        entry.watch.send_modify(|s| {
            s.running = false;
            s.exits += 1;
            s.exit_code = exit.exit_code as i64;
        });
        rec
    }

    /// End a pending restart (stop or kill of a `restarting` container, as dockerd's
    /// restart manager is cancelled): the container stays exited, stopped by the user.
    fn cancel_restart(&self, entry: &Entry) -> Result<(), Error> {
        self.save(entry, |r| {
            r.state.status = "exited".into();
            r.state.stopped_by_user = true;
        })
        .map(drop)
    }

    /// Thaw a paused container that was just signalled (dockerd's kill of a paused container
    /// resumes it so that the signal is delivered): recorded as running, with docker's
    /// `unpause` event.
    async fn unfreeze(&self, entry: &Entry) -> Result<(), Error> {
        let root = self.paths.runtime_root();
        let id = entry.id.clone();
        let res = tokio::task::spawn_blocking(move || {
            berth_runtime::ContainerRef::new(root, &id).resume()
        })
        .await
        .map_err(|e| Error::internal("unpause", e))?;
        match res {
            // Thawed already (a SIGKILL to init thaws), or gone.
            Ok(())
            | Err(berth_runtime::ContainerError::BadStatus { .. })
            | Err(berth_runtime::ContainerError::NotFound { .. })
            | Err(berth_runtime::ContainerError::NotRunning { .. }) => {}
            Err(e) => return Err(Error::internal("unpause", e)),
        }
        let rec = self.save(entry, |r| {
            if r.state.running {
                r.state.status = "running".into();
            }
        })?;
        if rec.state.running {
            self.event(&entry.id, "unpause", &[]);
        }
        Ok(())
    }

    /// Send `signal` (a name or number) to the container's init. As dockerd's: a paused
    /// container is thawed after the signal (for SIGKILL, its stop signal, or any signal when
    /// it has no stop signal of its own), and a kill of a `restarting` container ends its
    /// restarts.
    pub async fn kill(&self, name: &str, signal: Option<&str>) -> Result<(), Error> {
        let entry = self.get(name)?;
        let sig = signal_number(signal.unwrap_or("SIGKILL"))?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        if rec.state.status == "restarting" {
            return self.cancel_restart(&entry);
        }
        if !rec.state.running {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                entry.id
            )));
        }
        let _ = self.save(&entry, |r| r.state.stopped_by_user = true);
        self.signal(&entry.id, sig, false).await?;
        let thaw = match rec.config.stop_signal.as_deref().filter(|s| !s.is_empty()) {
            None => true,
            Some(stop) => sig == libc::SIGKILL || signal_number(stop).ok() == Some(sig),
        };
        if thaw && rec.state.status == "paused" {
            self.unfreeze(&entry).await?;
        }
        Ok(())
    }

    async fn signal(&self, id: &str, sig: i32, all: bool) -> Result<(), Error> {
        let root = self.paths.runtime_root();
        let id2 = id.to_owned();
        let sent = tokio::task::spawn_blocking(move || {
            match berth_runtime::ContainerRef::new(root, &id2).kill(sig, all) {
                Ok(()) => Ok(true),
                Err(berth_runtime::ContainerError::NotFound { .. })
                | Err(berth_runtime::ContainerError::NotRunning { .. }) => Ok(false),
                Err(e) => Err(Error::internal(format!("kill {id2}"), e)),
            }
        })
        .await
        .map_err(|e| Error::internal("kill", e))??;
        if sent {
            // dockerd's `killWithSignal`: every signal sent (kill, stop, rm -f) is an event.
            self.event(id, "kill", &[("signal", sig.to_string())]);
        }
        Ok(())
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
        if rec.state.status == "restarting" {
            // Counts as running (dockerd): the stop cancels the restart.
            self.cancel_restart(entry)?;
            self.event(&entry.id, "stop", &[]);
            return Ok(());
        }
        if !rec.state.running {
            return Err(Error::NotModified("stopped"));
        }
        let sig = signal_number(
            signal
                .or(rec.config.stop_signal.as_deref())
                .unwrap_or("SIGTERM"),
        )?;
        let _ = self.save(entry, |r| r.state.stopped_by_user = true);
        let t = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        self.signal(&entry.id, sig, false).await?;
        if rec.state.status == "paused" {
            // The signal is delivered once thawed (dockerd resumes a paused container it
            // stops); the SIGKILL below would wait on a frozen cgroup otherwise.
            self.unfreeze(entry).await?;
        }
        if t < 0 {
            entry.watch.subscribe().wait_for(|s| !s.running).await.ok();
            self.event(&entry.id, "stop", &[]);
            return Ok(());
        }
        if !self
            .wait_stopped(entry, Duration::from_secs(t as u64))
            .await
        {
            self.signal(&entry.id, libc::SIGKILL, true).await?;
            self.wait_stopped(entry, Duration::from_secs(30)).await;
        }
        self.event(&entry.id, "stop", &[]);
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
        self.start_locked(&entry, false).await
    }

    /// Remove a container (`DELETE /containers/{id}`); `force` kills a running one.
    pub async fn remove(&self, name: &str, force: bool) -> Result<(), Error> {
        self.remove_with(name, force, false).await
    }

    /// [`remove`](Self::remove); with `volumes` (`rm -v`) its anonymous volumes go too.
    pub async fn remove_with(&self, name: &str, force: bool, volumes: bool) -> Result<(), Error> {
        let entry = self.get(name)?;
        let _op = entry.op.lock().await;
        let rec = entry.record();
        if rec.state.status == "restarting" && !force {
            return Err(Error::Conflict(format!(
                "You cannot remove a restarting container {}. Stop the container before attempting removal or force remove",
                entry.id
            )));
        }
        if rec.state.running {
            if !force && rec.state.status == "paused" {
                return Err(Error::Conflict(format!(
                    "You cannot remove a paused container {}. Unpause and then stop the container before attempting removal or force remove",
                    entry.id
                )));
            }
            if !force {
                return Err(Error::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    rec.name
                )));
            }
            let _ = self.save(&entry, |r| r.state.stopped_by_user = true);
            self.signal(&entry.id, libc::SIGKILL, true).await?;
            if rec.state.status == "paused" {
                // A frozen cgroup (v1) holds the SIGKILL until thawed.
                self.unfreeze(&entry).await?;
            }
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
            let _ = berth_runtime::ContainerRef::new(root, &id).delete(true);
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
}
