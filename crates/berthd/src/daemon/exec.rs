//! Exec sessions: each runs under a monitor of its own (the container's process model), its
//! record kept in memory while its container exists.

use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};

use super::create::daemon_env;
use super::{console_size, merge_env, Daemon, ExecEntry};
use crate::error::Error;
use crate::monitor::{self, Request};
use crate::supervisor;
use crate::util;

impl Daemon {
    /// Create an exec instance.
    pub async fn exec_create(
        &self,
        name: &str,
        cfg: bollard_stubs::models::ExecConfig,
    ) -> Result<String, Error> {
        let entry = self.get(name)?;
        let rec = entry.record();
        super::refuse_exec(name, &rec)?;
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
        // The container's process (user, environment, capabilities, rlimits) is the base,
        // as docker's exec inherits them; the request overrides what it names.
        let bundle = berth_runtime::spec::Bundle::load(&self.paths.bundle(&rec.id))
            .map_err(|e| Error::internal("load the bundle", e))?;
        let mut process = bundle.process().cloned().unwrap_or_default();
        process.set_args(Some(cmd));
        let tty = cfg.tty.unwrap_or(false);
        process.set_terminal(Some(tty));
        // dockerd's: the container's environment with the exec's own TERM, then its Env.
        process.set_env(Some(merge_env(
            &daemon_env(&rec, tty),
            cfg.env.as_deref().unwrap_or_default(),
        )));
        if let Some(w) = cfg.working_dir.clone().filter(|w| !w.is_empty()) {
            process.set_cwd(w.into());
        }
        if let Some(u) = cfg.user.clone().filter(|u| !u.is_empty()) {
            let user = crate::spec::process_user(
                bundle.rootfs(),
                &u,
                rec.host_config.group_add.as_deref().unwrap_or_default(),
            )?;
            let mut pu = oci_spec::runtime::User::default();
            pu.set_uid(user.uid);
            pu.set_gid(user.gid);
            pu.set_additional_gids(Some(user.additional_gids));
            process.set_user(pu);
        }
        let id = util::random_id();
        let e = Arc::new(ExecEntry {
            id: id.clone(),
            container: rec.id.clone(),
            config: cfg,
            process,
            state: Mutex::new((false, 0, None)),
            done: watch::channel(false).0,
        });
        let action = exec_action("exec_create", &e.config);
        self.execs.lock().expect("execs lock").insert(id.clone(), e);
        self.event(&rec.id, &action, &[("execID", id.clone())]);
        Ok(id)
    }

    /// The ids of the exec instances known for `container` (its `ExecIDs`), sorted.
    pub fn exec_ids(&self, container: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .execs
            .lock()
            .expect("execs lock")
            .values()
            .filter(|e| e.container == container)
            .map(|e| e.id.clone())
            .collect();
        ids.sort();
        ids
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
    /// With `gate`, the process starts once a sender comes through it (the client has its
    /// 101), and whether it started is sent back on that sender (dockerd writes a failed
    /// start's message on the stream).
    pub async fn exec_start(
        self: &Arc<Self>,
        id: &str,
        attach: Option<Request>,
        size: Option<&[usize]>,
        gate: Option<oneshot::Receiver<StartReply>>,
    ) -> Result<Option<tokio::io::BufReader<tokio::net::UnixStream>>, Error> {
        let ex = self.exec_get(id)?;
        if let Ok(c) = self.get(&ex.container) {
            super::refuse_exec(&ex.container, &c.record())?;
        }
        {
            let mut st = ex.state.lock().expect("exec lock");
            if st.0 || st.2.is_some() {
                return Err(Error::Conflict(format!(
                    "exec {id} has already been started"
                )));
            }
            st.0 = true;
        }
        self.event(
            &ex.container,
            &exec_action("exec_start", &ex.config),
            &[("execID", ex.id.clone())],
        );
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
                let me = self.clone();
                tokio::spawn(async move {
                    if let Ok(reply) = gate.await {
                        let _ = reply.send(me.exec_begin(&ex, &cfg, &mdir).await);
                    } else {
                        Self::exec_abandon(&ex, &mdir);
                    }
                });
            }
            None => self.exec_begin(&ex, &cfg, &mdir).await?,
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
        self: &Arc<Self>,
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
                return Err(oci_exec_error(&r.error.unwrap_or_default()));
            }
            Err(e) => {
                Self::exec_abandon(ex, mdir);
                return Err(Error::internal("start the exec", e));
            }
        };
        *ex.state.lock().expect("exec lock") = (true, reply.pid.unwrap_or(0), None);
        let ex2 = ex.clone();
        let mdir = mdir.to_owned();
        let me = self.clone();
        tokio::spawn(async move {
            let exit = supervisor::wait_exit(wait_conn).await;
            let exit = exit.or_else(|| supervisor::read_exit(&mdir.join("exit.json")));
            let code = exit.map_or(126, |e| e.exit_code as i64);
            *ex2.state.lock().expect("exec lock") = (false, 0, Some(code));
            me.event(
                &ex2.container,
                "exec_die",
                &[("execID", ex2.id.clone()), ("exitCode", code.to_string())],
            );
            ex2.done.send_replace(true);
            let _ = std::fs::remove_dir_all(&mdir);
        });
        Ok(())
    }

    /// Forget a finished exec instance (the healthcheck's, which nobody inspects).
    pub fn exec_forget(&self, id: &str) {
        self.execs.lock().expect("execs lock").remove(id);
    }
}

/// What an attached exec's start reports back through its gate: `Ok` once the process runs,
/// else the error dockerd writes on the stream.
pub(crate) type StartReply = oneshot::Sender<Result<(), Error>>;

/// dockerd's action of an exec event: `exec_create: sh -c exit 3` (the command joined with
/// spaces after its first word, so `exec_create: true ` ends with one).
fn exec_action(what: &str, cfg: &bollard_stubs::models::ExecConfig) -> String {
    let cmd = cfg.cmd.as_deref().unwrap_or_default();
    let first = cmd.first().map(String::as_str).unwrap_or_default();
    let rest = cmd.get(1..).unwrap_or_default().join(" ");
    format!("{what}: {first} {rest}")
}

/// The error of an exec that did not start, in the words of dockerd + runc
/// (`OCI runtime exec failed: exec failed: unable to start container process: exec:
/// "nosuchcmd": executable file not found in $PATH: unknown`), from the monitor's message
/// (`container init: STEP: OP: ERRNO`, berth-runtime's setup error, possibly repeated by its
/// source chain).
fn oci_exec_error(raw: &str) -> Error {
    let mut msg = raw
        .rsplit_once("container init: ")
        .map_or(raw, |(_, m)| m)
        .trim()
        .to_owned();
    // The chain repeats the setup error as its own source: `A: A`.
    let half = msg.len().saturating_sub(2) / 2;
    if msg.len() > 2 && msg.is_char_boundary(half) && msg[half..].starts_with(": ") {
        let (a, b) = (&msg[..half], &msg[half + 2..]);
        if a == b {
            msg = a.to_owned();
        }
    }
    // runc's wording for the working directory and a file that is no program.
    if let Some(rest) = msg.strip_prefix("process: chdir to cwd ") {
        if let Some((cwd, errno)) = rest.split_once(": ") {
            msg = format!("chdir to cwd ({cwd}) set in config.json failed: {errno}");
        }
    }
    msg = msg.replace(
        ": not a regular file: permission denied",
        ": permission denied",
    );
    Error::Internal {
        what: "OCI runtime exec failed".into(),
        cause: format!("exec failed: unable to start container process: {msg}: unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_errors_in_runc_words() {
        let e = |raw: &str| oci_exec_error(raw).to_string();
        assert_eq!(
            e(
                r#"container init: exec: "nosuchcmd": executable file not found in $PATH: exec: "nosuchcmd": executable file not found in $PATH"#
            ),
            r#"OCI runtime exec failed: exec failed: unable to start container process: exec: "nosuchcmd": executable file not found in $PATH: unknown"#
        );
        assert_eq!(
            e(
                r#"container init: process: chdir to cwd "/bad": no such file or directory: process: chdir to cwd "/bad": no such file or directory"#
            ),
            r#"OCI runtime exec failed: exec failed: unable to start container process: chdir to cwd ("/bad") set in config.json failed: no such file or directory: unknown"#
        );
        assert_eq!(
            e(
                r#"container init: exec: "/etc": not a regular file: permission denied: exec: "/etc": not a regular file: permission denied"#
            ),
            r#"OCI runtime exec failed: exec failed: unable to start container process: exec: "/etc": permission denied: unknown"#
        );
        let mut cfg = bollard_stubs::models::ExecConfig {
            cmd: Some(vec!["true".into()]),
            ..Default::default()
        };
        assert_eq!(exec_action("exec_create", &cfg), "exec_create: true ");
        cfg.cmd = Some(vec!["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(exec_action("exec_start", &cfg), "exec_start: sh -c exit 3");
    }
}
