//! `create` as a list of named steps (README, "How berth create makes a container"), and the
//! one place where the messages the init process sends during its setup are checked against
//! the order the protocol allows ([`Phase`]).

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Spec};

use super::{
    connect_console, hook_state, pass_seccomp_fd, process_death, record_init, seccomp_program,
    write_pid_file, Cleanup, ContainerBuilder,
};
use crate::error::{ContainerError, SysOp};
use crate::exe::ExecStub;
use crate::hooks;
use crate::ns::NsPlan;
use crate::process::channel::{Channel, ToChild, ToParent};
use crate::process::init::InitConfig;
use crate::spec::{Bundle, SpecError};
use crate::state::{self, ContainerState, LockMode, Status};

/// Where init is in its setup, as its messages tell: each message may only come in its
/// phase or a later one, and the one-off ones (the second fork's pid, the hook round trip)
/// at most once. The order is init's (`process::init::setup_and_exec`): it forks into a
/// joined pid namespace first, asks for the createRuntime hooks after its mounts, passes a
/// seccomp notify fd while it prepares its process, then says it is ready; then it execs the
/// exec stub (closing the channel), or reports why it could not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Go was sent; nothing came yet.
    Started,
    /// The real init's pid came (second fork).
    Forked,
    /// The createRuntime/prestart hooks have run.
    Hooked,
    /// A seccomp notify fd came (there may be one per filter load: only one here).
    Seccomp,
    /// Ready: nothing but a failure to exec, or the end of the channel, may follow.
    Ready,
}

impl Phase {
    /// The phase `msg` moves to from `self`, or why it is not allowed now.
    fn next(self, msg: &ToParent, second_fork: bool, has_hooks: bool) -> Result<Phase, String> {
        let (to, allowed) = match msg {
            ToParent::Pid(_) => (Phase::Forked, second_fork && self < Phase::Forked),
            ToParent::RunCreateRuntimeHooks => (Phase::Hooked, has_hooks && self < Phase::Hooked),
            ToParent::SeccompFd => (
                Phase::Seccomp,
                self <= Phase::Seccomp && self != Phase::Ready,
            ),
            ToParent::Ready => (Phase::Ready, self < Phase::Ready),
            ToParent::Failed(_) => (self, true),
            // The spawn helper's message, over before init says anything.
            ToParent::Cloned { .. } => (self, false),
        };
        if allowed {
            Ok(to)
        } else {
            Err(format!("{msg:?} after {self:?}"))
        }
    }
}

/// What a create carries from step to step.
struct Creation<'a> {
    builder: &'a ContainerBuilder,
    bundle: &'a Bundle,
    spec: &'a Spec,
    st: ContainerState,
    /// The cgroup until it exists (then `cleanup` holds it, to remove it on failure).
    cgroup: Option<Box<dyn berth_cgroups::CgroupManager>>,
    cgroup_mounts: Vec<berth_cgroups::HierarchyMount>,
    have_cgroup: bool,
    prestart: Vec<Hook>,
    create_runtime: Vec<Hook>,
    pid: Pid,
    /// Init was cloned into the unified cgroup (else step 5 moves it).
    in_unified_cgroup: bool,
}

impl ContainerBuilder {
    /// Steps 2 to 7 of a create, in the state directory `cleanup` holds; on error the caller
    /// runs `cleanup`, which undoes whatever the steps made.
    pub(super) fn create_in(
        &self,
        bundle: &Bundle,
        ns: NsPlan,
        terminal: bool,
        exec_stub: Option<ExecStub>,
        cleanup: &mut Cleanup,
    ) -> Result<ContainerState, ContainerError> {
        let mut c = Creation::save_first_state(self, bundle, &ns, cleanup)?;
        c.make_cgroup(cleanup)?;
        c.apply_resources(cleanup)?;
        let (cfg, clone_flags) = c.init_config(ns.clone(), terminal, exec_stub, cleanup)?;
        let execs_stub_when_ready = cfg.exec_stub.is_some() && !has_start_hooks(c.spec);
        let (parent_chan, child_chan) =
            Channel::pair().map_err(|e| ContainerError::sys(SysOp::Socketpair, e))?;
        c.spawn_init(cfg, clone_flags, &parent_chan, child_chan, cleanup)?;
        if let Err(e) = c
            .join_cgroup_and_map_ids(&ns, cleanup)
            .and_then(|()| c.let_init_go(&parent_chan, cleanup))
        {
            // Init's own account comes first: its join of the cgroup failed (and it is gone).
            return Err(reported_failure(&parent_chan).unwrap_or(e));
        }
        c.init_handshake(&parent_chan, ns.needs_second_fork(), cleanup)?;
        if execs_stub_when_ready {
            c.wait_for_stub_exec(&parent_chan)?;
        }
        c.until_waiting_for_start(&parent_chan, execs_stub_when_ready, cleanup)?;
        c.finish(cleanup)
    }
}

/// The failure init reported before it died, if its message is already waiting on `chan` (a
/// dead peer's last message is): the cause of whatever the runtime then failed to do with it
/// (send `Go`, write its id maps).
fn reported_failure(chan: &Channel) -> Option<ContainerError> {
    let now = std::time::Duration::from_millis(1);
    match crate::spawn::recv_within(chan, now, "init's report") {
        Ok(Some((ToParent::Failed(e), _))) => Some(e.into()),
        _ => None,
    }
}

fn has_start_hooks(spec: &Spec) -> bool {
    spec.hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .is_some_and(|h| !h.is_empty())
}

impl<'a> Creation<'a> {
    /// Step 2: a first `state.json` (status creating) naming every cgroup directory that does
    /// not exist yet: before each step that cannot be taken back, the state says what to
    /// undo, so that a `delete` after a crash of this command finishes the job.
    fn save_first_state(
        builder: &'a ContainerBuilder,
        bundle: &'a Bundle,
        ns: &NsPlan,
        cleanup: &mut Cleanup,
    ) -> Result<Self, ContainerError> {
        let spec = bundle.spec();
        let cgroups_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .and_then(|p| p.to_str());
        let cgroup = berth_cgroups::new_manager(cgroups_path, &builder.id)?;
        let hooks = spec.hooks().as_ref();
        let st = ContainerState {
            id: builder.id.clone(),
            pid: 0,
            pid_start_time: 0,
            bundle: bundle.dir().to_owned(),
            rootfs: bundle.rootfs().to_owned(),
            created: state::now_rfc3339(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            // Every directory of the cgroup path that does not exist yet is ours to remove.
            cgroup: cgroup.saved().with_missing_as_created(),
            own_pid_ns: ns.new.contains(CloneFlags::CLONE_NEWPID),
            has_poststart_hooks: hooks
                .is_some_and(|h| h.poststart().as_ref().is_some_and(|v| !v.is_empty())),
            has_poststop_hooks: hooks
                .is_some_and(|h| h.poststop().as_ref().is_some_and(|v| !v.is_empty())),
            stopped: false,
            creating: true,
            namespaces: Vec::new(),
        };
        cleanup.dir().save(&st)?;
        state::crash_point("create:state");
        Ok(Creation {
            builder,
            bundle,
            spec,
            st,
            cgroup: Some(cgroup),
            cgroup_mounts: Vec::new(),
            have_cgroup: true,
            prestart: hooks.and_then(|h| h.prestart().clone()).unwrap_or_default(),
            create_runtime: hooks
                .and_then(|h| h.create_runtime().clone())
                .unwrap_or_default(),
            pid: Pid::from_raw(0),
            in_unified_cgroup: false,
        })
    }

    /// Step 3: the cgroup in every hierarchy (rootless without a delegated cgroup: none, the
    /// container runs in the caller's).
    fn make_cgroup(&mut self, cleanup: &mut Cleanup) -> Result<(), ContainerError> {
        let mut cgroup = self.cgroup.take().expect("set by save_first_state");
        if let Err(e) = cgroup.create() {
            if nix::unistd::geteuid().is_root() {
                return Err(e.into());
            }
            tracing::debug!("rootless container without a cgroup of its own: {e}");
            self.have_cgroup = false;
            cgroup = berth_cgroups::open_saved(&berth_cgroups::CgroupSaved {
                layout: berth_cgroups::Layout::V1,
                hierarchies: Vec::new(),
            })?;
        }
        self.cgroup_mounts = cgroup.container_mounts();
        self.st.cgroup = cgroup.saved();
        cleanup.cgroup = Some(cgroup);
        cleanup.dir().save(&self.st)?;
        state::crash_point("create:cgroup");
        Ok(())
    }

    /// Step 4's preparation: the exec fifo, the configuration saved exactly as validated and
    /// used (not config.json read again, which may have changed, or never existed for a spec
    /// built in memory), the console socket, and what init needs.
    fn init_config(
        &self,
        ns: NsPlan,
        terminal: bool,
        exec_stub: Option<ExecStub>,
        cleanup: &Cleanup,
    ) -> Result<(InitConfig, CloneFlags), ContainerError> {
        let b = self.builder;
        let fifo = cleanup.dir().make_fifo()?;
        let config = serde_json::to_vec_pretty(self.bundle.raw())
            .map_err(|e| SpecError::invalid("config", format!("cannot be written as JSON: {e}")))?;
        cleanup.dir().write_file(state::CONFIG_FILE, &config)?;
        let console_socket = connect_console(b.console_socket.as_deref(), terminal)?;
        let clone_flags = ns.clone_flags();
        let cfg = InitConfig {
            id: b.id.clone(),
            spec: self.spec.clone(),
            rootfs: self.bundle.rootfs().to_owned(),
            bundle: self.bundle.dir().to_owned(),
            ns,
            cgroup_mounts: self.cgroup_mounts.clone(),
            cgroup_join: match &cleanup.cgroup {
                Some(cgroup) if self.have_cgroup => Some(cgroup.self_join()?),
                _ => None,
            },
            fifo: Some(fifo),
            console_socket,
            no_pivot: b.no_pivot,
            no_new_keyring: b.no_new_keyring,
            // The fds passed by number follow the kept ones: the init keeps them all.
            preserve_fds: b.preserve_fds + b.stdio.fds.len() as u32,
            has_create_runtime_hooks: self.has_create_runtime_hooks(),
            unprivileged_runtime: !nix::unistd::geteuid().is_root(),
            exec_stub,
            seccomp: seccomp_program(self.spec.linux().as_ref(), Some(&b.root))?,
        };
        Ok((cfg, clone_flags))
    }

    fn has_create_runtime_hooks(&self) -> bool {
        !self.prestart.is_empty() || !self.create_runtime.is_empty()
    }

    /// Step 4: init, with its new namespaces (cloned from here when this caller is
    /// single-threaded, else through the spawn helper); its pid, start time and the
    /// namespaces the clone made are saved at once.
    fn spawn_init(
        &mut self,
        cfg: InitConfig,
        clone_flags: CloneFlags,
        parent_chan: &Channel,
        child_chan: Channel,
        cleanup: &mut Cleanup,
    ) -> Result<(), ContainerError> {
        let spawned = crate::spawn::spawn(
            crate::spawn::Child::Init(Box::new(cfg), clone_flags),
            &self.builder.stdio,
            parent_chan,
            child_chan,
            self.builder.setup_timeout,
        )?;
        self.pid = spawned.pid;
        self.in_unified_cgroup = spawned.in_unified_cgroup;
        if self.have_cgroup {
            tracing::debug!(
                pid = self.pid.as_raw(),
                "init {} and joins its v1 cgroups itself",
                if self.in_unified_cgroup {
                    "was cloned into its unified cgroup"
                } else {
                    "is moved into its unified cgroup from here (clone3 refused)"
                }
            );
        }
        cleanup.init = Some(self.pid);
        state::crash_point("create:clone");
        // The namespaces made by the clone itself identify the container's processes.
        self.st.namespaces = [
            CloneFlags::CLONE_NEWNS,
            CloneFlags::CLONE_NEWUTS,
            CloneFlags::CLONE_NEWIPC,
            CloneFlags::CLONE_NEWNET,
            CloneFlags::CLONE_NEWPID,
            CloneFlags::CLONE_NEWUSER,
        ]
        .into_iter()
        .filter(|flag| clone_flags.contains(*flag))
        .filter_map(|flag| state::NsIdentity::of(self.pid.as_raw(), crate::ns::proc_name(flag)))
        .collect();
        record_init(&mut self.st, self.pid, cleanup.dir())?;
        state::crash_point("create:pid");
        Ok(())
    }

    /// Step 3's end: `linux.resources` written, before any process is in the cgroup (as runc
    /// does for the realtime settings, without which a `SCHED_FIFO`/`SCHED_RR` process
    /// cannot join a v1 cpu cgroup).
    fn apply_resources(&self, cleanup: &Cleanup) -> Result<(), ContainerError> {
        let cgroup = cleanup.cgroup.as_ref().expect("set by make_cgroup");
        match crate::rootfs::devices::effective_resources(self.spec) {
            Some(resources) if self.have_cgroup => cgroup.apply(&resources)?,
            Some(_)
                if self
                    .spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.resources().as_ref())
                    .is_some_and(|r| berth_cgroups::Wants::of(r).any_limit()) =>
            {
                return Err(SpecError::invalid(
                    "linux.resources",
                    "resource limits need a cgroup, and this rootless caller cannot create one",
                )
                .into())
            }
            _ => {}
        }
        Ok(())
    }

    /// Step 5: init into the cgroup, the id maps written.
    ///
    /// Init enters the v1 hierarchies itself, first thing, and was cloned into the unified
    /// one (see [`berth_cgroups::SelfJoin`]: a write of its pid to `cgroup.procs` from here
    /// would wait for the kernel's global cgroup lock, most of a create's time on a quiet
    /// host); only where that clone was refused is it moved from here. It waits for `Go`
    /// before it does anything else.
    fn join_cgroup_and_map_ids(
        &self,
        ns: &NsPlan,
        cleanup: &Cleanup,
    ) -> Result<(), ContainerError> {
        let cgroup = cleanup.cgroup.as_ref().expect("set by make_cgroup");
        if self.have_cgroup && !self.in_unified_cgroup {
            cgroup.add_task_unified(self.pid.as_raw())?;
        }
        // Init's own join of the v1 hierarchies may still be under way: a `delete` after a
        // crash here kills init by its recorded pid and removes the cgroups all the same.
        state::crash_point("create:cgroup-joined");
        if ns.new_user() {
            let pid = self.pid;
            crate::ns::write_id_mappings(pid.as_raw(), ns).map_err(|source| {
                ContainerError::Io {
                    op: "write id mappings of",
                    path: format!("/proc/{pid}").into(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Why init is gone: how it ended (it is reaped, never to be signalled again).
    fn died(&self, cleanup: &mut Cleanup) -> ContainerError {
        let e = process_death(self.pid, self.spec, "init");
        cleanup.init = None;
        e
    }

    /// Step 5's end: tell init to go on.
    fn let_init_go(&self, chan: &Channel, cleanup: &mut Cleanup) -> Result<(), ContainerError> {
        if chan.send(&ToChild::Go).is_err() {
            return Err(self.died(cleanup));
        }
        state::crash_point("create:go");
        Ok(())
    }

    /// Step 6, from the runtime's side: answer init's messages, in the order [`Phase`]
    /// allows, until it is ready; each wait bounded by the setup timeout.
    fn init_handshake(
        &mut self,
        chan: &Channel,
        second_fork: bool,
        cleanup: &mut Cleanup,
    ) -> Result<(), ContainerError> {
        let step = "the container's init to finish its setup";
        let has_hooks = self.has_create_runtime_hooks();
        let mut phase = Phase::Started;
        loop {
            let Some((msg, fd)) =
                crate::spawn::recv_within(chan, self.builder.setup_timeout, step)?
            else {
                return Err(self.died(cleanup));
            };
            phase = phase
                .next(&msg, second_fork, has_hooks)
                .map_err(|got| ContainerError::Protocol { step, got })?;
            match msg {
                ToParent::Pid(p) => {
                    // The first child forked the real init (CLONE_PARENT: ours too) and exits.
                    let _ = waitpid(self.pid, None);
                    self.pid = Pid::from_raw(p);
                    cleanup.init = Some(self.pid);
                    record_init(&mut self.st, self.pid, cleanup.dir())?;
                }
                ToParent::RunCreateRuntimeHooks => {
                    self.run_create_hooks(cleanup)?;
                    chan.send(&ToChild::HooksDone)
                        .map_err(|e| ContainerError::sys(SysOp::Send { peer: "init" }, e))?;
                }
                ToParent::SeccompFd => {
                    let st = self.hook_state();
                    pass_seccomp_fd(self.spec, self.pid, &st, fd, chan)?;
                }
                ToParent::Ready => break,
                ToParent::Failed(e) => return Err(e.into()),
                ToParent::Cloned { .. } => unreachable!("Phase::next refuses it"),
            }
        }
        state::crash_point("create:ready");
        Ok(())
    }

    fn hook_state(&self) -> crate::state::OciState {
        hook_state(
            &self.builder.id,
            Status::Creating,
            self.pid.as_raw(),
            self.bundle.dir(),
            self.spec,
        )
    }

    /// The prestart and createRuntime hooks, with the lock shared: a hook may call back into
    /// the runtime (`berth state`).
    fn run_create_hooks(&self, cleanup: &Cleanup) -> Result<(), ContainerError> {
        let st = self.hook_state();
        cleanup.dir().relock(LockMode::Shared)?;
        hooks::run_hooks("prestart", &self.prestart, &st)?;
        hooks::run_hooks("createRuntime", &self.create_runtime, &st)?;
        cleanup.dir().relock(LockMode::Exclusive)?;
        state::crash_point("create:hooks");
        Ok(())
    }

    /// Step 7: init's end of the channel closes when it execs the stub; a failure to (E2BIG,
    /// ...) still comes as a message, a death as the end of the channel (seen next).
    fn wait_for_stub_exec(&self, chan: &Channel) -> Result<(), ContainerError> {
        let step = "the container's init to exec the exec stub";
        match crate::spawn::recv_within(chan, self.builder.setup_timeout, step)? {
            Some((ToParent::Failed(e), _)) => Err(e.into()),
            Some((other, _)) => Err(ContainerError::Protocol {
                step,
                got: format!("{other:?} after Ready"),
            }),
            None => Ok(()),
        }
    }

    /// Step 7: init (the exec stub, or init itself when startContainer hooks must run first)
    /// asleep in the exec fifo's open, which only `start` completes: not merely alive, so
    /// that whatever stops it between its last message and that open (rlimits, seccomp, ...)
    /// fails this create with the cause instead of leaving a stopped container behind.
    fn until_waiting_for_start(
        &self,
        chan: &Channel,
        via_stub: bool,
        cleanup: &mut Cleanup,
    ) -> Result<(), ContainerError> {
        use crate::process::waiting::{self, NotWaiting};
        let step = "the container's init to wait for start";
        let limit = self.builder.setup_timeout;
        match waiting::until_waiting(self.pid.as_raw(), self.st.pid_start_time, limit) {
            // Not ours to see (some rootless setups): `finish` still checks that init lives.
            Ok(()) | Err(NotWaiting::CannotTell) => Ok(()),
            Err(NotWaiting::Timeout) => Err(ContainerError::Timeout { step, limit }),
            Err(NotWaiting::Gone) if via_stub => {
                // Dead: reap it here, its status is the stub's report.
                let status = waitpid(self.pid, None);
                cleanup.init = None;
                Err(ContainerError::DiedDuringSetup(match status {
                    Ok(status) => waiting::stub_death(status, self.spec),
                    Err(e) => {
                        format!("the container's init died before it was waiting for start ({e})")
                    }
                }))
            }
            Err(NotWaiting::Gone) => {
                // Init itself says why, if it could.
                match crate::spawn::recv_within(chan, std::time::Duration::from_millis(200), step) {
                    Ok(Some((ToParent::Failed(e), _))) => {
                        let _ = waitpid(self.pid, None);
                        cleanup.init = None;
                        Err(e.into())
                    }
                    _ => Err(self.died(cleanup)),
                }
            }
        }
    }

    /// Step 7's end: init lives (else how it died), the final state (status created), the
    /// pid file.
    fn finish(mut self, cleanup: &mut Cleanup) -> Result<ContainerState, ContainerError> {
        if !state::is_alive(self.pid.as_raw(), self.st.pid_start_time) {
            return Err(self.died(cleanup));
        }
        self.st.creating = false;
        cleanup.dir().save(&self.st)?;
        state::crash_point("create:saved");
        if let Some(pid_file) = &self.builder.pid_file {
            write_pid_file(pid_file, self.pid.as_raw())?;
        }
        Ok(self.st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SetupError;

    fn run(msgs: &[ToParent], second_fork: bool, hooks: bool) -> Result<Phase, String> {
        msgs.iter()
            .try_fold(Phase::Started, |p, m| p.next(m, second_fork, hooks))
    }

    #[test]
    fn the_protocol_allows_init_s_order() {
        use ToParent::*;
        assert_eq!(run(&[Ready], false, false), Ok(Phase::Ready));
        assert_eq!(
            run(
                &[Pid(7), RunCreateRuntimeHooks, SeccompFd, Ready],
                true,
                true
            ),
            Ok(Phase::Ready)
        );
        let failed = Failed(SetupError::msg("mounts", "x"));
        assert_eq!(run(&[Pid(7), failed], true, false), Ok(Phase::Forked));
    }

    #[test]
    fn the_protocol_refuses_what_init_cannot_send() {
        use ToParent::*;
        // A pid without a second fork, or twice; hooks nobody asked for, or twice.
        assert!(run(&[Pid(7)], false, false).is_err());
        assert!(run(&[Pid(7), Pid(8)], true, false).is_err());
        assert!(run(&[RunCreateRuntimeHooks], false, false).is_err());
        assert!(run(&[RunCreateRuntimeHooks, RunCreateRuntimeHooks], false, true).is_err());
        // Out of order: hooks after seccomp, a pid after hooks, anything after ready.
        assert!(run(&[SeccompFd, RunCreateRuntimeHooks], false, true).is_err());
        assert!(run(&[RunCreateRuntimeHooks, Pid(7)], true, true).is_err());
        assert!(run(&[Ready, SeccompFd], false, false).is_err());
        assert!(run(&[Ready, Ready], false, false).is_err());
    }
}
