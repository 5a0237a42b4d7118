//! seccomp: the spec's `linux.seccomp` filter, compiled with libseccomp.
//!
//! The runtime compiles `linux.seccomp` before it clones the container's process: libseccomp
//! turns the profile into a BPF program ([`Program::compile`]), which the runtime takes from
//! its cache when it compiled the same profile before ([`cache::program`]). The container's
//! process loads the program with `seccomp(2)` ([`Program::load`]), with the flags libseccomp's
//! `seccomp_load` would use. Compiling a large profile
//! (containerd's `RuntimeDefault`) takes libseccomp about as long as the rest of `create`;
//! loading takes microseconds.
//!
//! When a rule uses `SCMP_ACT_NOTIFY`, loading yields a notification fd,
//! which init hands to the runtime; the runtime then passes it to the seccomp agent listening
//! on `listenerPath` with [`send_notify_fd`] (the listener is a host path that init, after
//! `pivot_root`, can no longer reach). This is what runc does.
//!
//! The rules follow runc's reading of the spec:
//! - a syscall name this libseccomp does not know is skipped (logged at debug level), so one
//!   profile serves kernels and libraries of different ages;
//! - a rule whose action is the default action is skipped (libseccomp refuses it);
//! - several `args` of one rule must all match (AND), except when two of them test the same
//!   argument index: then each condition becomes a rule of its own (OR);
//! - `errnoRet` counts only with `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` (elsewhere it is
//!   ignored), and defaults to `EPERM` for both;
//! - `SECCOMP_FILTER_FLAG_TSYNC` is accepted and has nothing to do: init is single-threaded;
//! - syscalls newer than any the profile names get `ENOSYS` instead of a non-permissive
//!   default action, from a stub put before libseccomp's program ([`enosys`]).
//!
//! The filter does not set `no_new_privs` by itself (`process.noNewPrivileges` decides that), so
//! without it loading needs `CAP_SYS_ADMIN`.

use std::io::{IoSlice, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use libseccomp::error::{SeccompErrno, SeccompError as ScmpError};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Serialize};

use crate::error::SetupError;

pub mod cache;
mod enosys;

/// The setup step named in errors.
const STEP: &str = "seccomp";

/// The number of syscall arguments a condition can test.
const MAX_ARGS: usize = 6;

/// Syscalls that may not notify: init needs them to hand the notification fd to the runtime,
/// and would wait forever for an agent that cannot have the fd yet.
const NO_NOTIFY: &[&str] = &["write", "sendmsg"];

/// Every action of the runtime spec, in the spelling of `config.json`.
const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// Every comparison operator of the runtime spec.
const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// Every filter flag of the runtime spec.
const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// Every architecture the spec names, with libseccomp's token for it.
const ARCHS: &[(Arch, ScmpArch, &str)] = &[
    (Arch::ScmpArchX86, ScmpArch::X86, "SCMP_ARCH_X86"),
    (Arch::ScmpArchX86_64, ScmpArch::X8664, "SCMP_ARCH_X86_64"),
    (Arch::ScmpArchX32, ScmpArch::X32, "SCMP_ARCH_X32"),
    (Arch::ScmpArchArm, ScmpArch::Arm, "SCMP_ARCH_ARM"),
    (
        Arch::ScmpArchAarch64,
        ScmpArch::Aarch64,
        "SCMP_ARCH_AARCH64",
    ),
    (Arch::ScmpArchMips, ScmpArch::Mips, "SCMP_ARCH_MIPS"),
    (Arch::ScmpArchMips64, ScmpArch::Mips64, "SCMP_ARCH_MIPS64"),
    (
        Arch::ScmpArchMips64n32,
        ScmpArch::Mips64N32,
        "SCMP_ARCH_MIPS64N32",
    ),
    (Arch::ScmpArchMipsel, ScmpArch::Mipsel, "SCMP_ARCH_MIPSEL"),
    (
        Arch::ScmpArchMipsel64,
        ScmpArch::Mipsel64,
        "SCMP_ARCH_MIPSEL64",
    ),
    (
        Arch::ScmpArchMipsel64n32,
        ScmpArch::Mipsel64N32,
        "SCMP_ARCH_MIPSEL64N32",
    ),
    (Arch::ScmpArchPpc, ScmpArch::Ppc, "SCMP_ARCH_PPC"),
    (Arch::ScmpArchPpc64, ScmpArch::Ppc64, "SCMP_ARCH_PPC64"),
    (
        Arch::ScmpArchPpc64le,
        ScmpArch::Ppc64Le,
        "SCMP_ARCH_PPC64LE",
    ),
    (Arch::ScmpArchS390, ScmpArch::S390, "SCMP_ARCH_S390"),
    (Arch::ScmpArchS390x, ScmpArch::S390X, "SCMP_ARCH_S390X"),
    (Arch::ScmpArchParisc, ScmpArch::Parisc, "SCMP_ARCH_PARISC"),
    (
        Arch::ScmpArchParisc64,
        ScmpArch::Parisc64,
        "SCMP_ARCH_PARISC64",
    ),
    (
        Arch::ScmpArchRiscv64,
        ScmpArch::Riscv64,
        "SCMP_ARCH_RISCV64",
    ),
    (
        Arch::ScmpArchLoongarch64,
        ScmpArch::Loongarch64,
        "SCMP_ARCH_LOONGARCH64",
    ),
    (Arch::ScmpArchM68k, ScmpArch::M68k, "SCMP_ARCH_M68K"),
    (Arch::ScmpArchSh, ScmpArch::Sh, "SCMP_ARCH_SH"),
    (Arch::ScmpArchSheb, ScmpArch::Sheb, "SCMP_ARCH_SHEB"),
];

/// A failure to hand the notification fd to the seccomp agent (in the runtime, not in init).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// The configuration uses `SCMP_ACT_NOTIFY` without `listenerPath`.
    #[error("linux.seccomp.listenerPath is not set")]
    NoListener,
    /// The agent's socket could not be reached.
    #[error("connect to seccomp agent at {path}")]
    Connect {
        /// The listener path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The container process state could not be sent.
    #[error("send container process state to seccomp agent at {path}")]
    Send {
        /// The listener path.
        path: PathBuf,
        /// The errno of `sendmsg`.
        #[source]
        source: Errno,
    },
    /// The container process state could not be encoded.
    #[error("encode container process state")]
    Encode(#[source] serde_json::Error),
}

/// A filter compiled to the classic BPF program the kernel runs, with the
/// `SECCOMP_FILTER_FLAG_*` bits to load it with: made by the runtime before it clones the
/// container's process (from [`cache::program`] or [`Program::compile`]), loaded by that
/// process with [`Program::load`].
///
/// Loading it is what runc does with the same filter: the program is libseccomp's own
/// (`seccomp_export_bpf`) after the `ENOSYS` stub runc puts before it (see [`enosys`]; none for
/// a permissive default action), the flags those `seccomp_load` would pass.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ProgramWire", try_from = "ProgramWire")]
pub struct Program {
    /// The BPF instructions.
    code: Vec<libc::sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` bits, `NEW_LISTENER` included when a rule notifies.
    flags: libc::c_ulong,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("instructions", &self.code.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl Program {
    /// Compile `linux.seccomp` with libseccomp (the rules as described in the module docs),
    /// after the `ENOSYS` stub.
    ///
    /// Errors: a profile libseccomp or this kernel cannot express (unknown action, flag or
    /// architecture, `SCMP_ACT_NOTIFY` misuse, `errnoRet` or argument index out of range), or
    /// a failure to export the program (`memfd_create`, `seccomp_export_bpf`, read).
    pub fn compile(seccomp: &LinuxSeccomp) -> Result<Program, SetupError> {
        let filter = build(seccomp)?;
        let mut flags = filter.flags;
        if filter.notify {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        }
        let mut out =
            nix::sys::memfd::memfd_create(c"berth-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map(std::fs::File::from)
                .map_err(|e| SetupError::sys(STEP, "memfd_create", e))?;
        filter
            .ctx
            .export_bpf(&out)
            .map_err(|e| scmp_err("seccomp_export_bpf", &e))?;
        let mut bytes = Vec::new();
        out.seek(SeekFrom::Start(0))
            .and_then(|_| out.read_to_end(&mut bytes))
            .map_err(|e| SetupError::sys(STEP, "read the exported filter", io_errno(&e)))?;
        let mut code = enosys::stub(seccomp)?;
        code.extend(decode(&bytes).ok_or_else(|| {
            SetupError::msg(
                STEP,
                format!(
                    "seccomp_export_bpf wrote {} bytes, not whole instructions",
                    bytes.len()
                ),
            )
        })?);
        Ok(Program { code, flags })
    }

    /// Load the program into the calling process (`seccomp(SECCOMP_SET_MODE_FILTER)`).
    ///
    /// Returns the notification fd (close-on-exec) when a rule uses `SCMP_ACT_NOTIFY`; the
    /// caller must pass it on to [`send_notify_fd`] (in the runtime process) and close its own
    /// copy. The calling process must be single-threaded, and must either have set
    /// `no_new_privs` or hold `CAP_SYS_ADMIN` (else `EACCES`).
    pub fn load(&self) -> Result<Option<OwnedFd>, SetupError> {
        crate::sys::seccomp_set_mode_filter(self.flags, &self.code)
            .map_err(|e| SetupError::sys(STEP, "seccomp(SECCOMP_SET_MODE_FILTER)", e))
    }

    /// Whether loading yields a notification fd (a rule uses `SCMP_ACT_NOTIFY`).
    pub fn notifies(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }

    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.code.len()
    }

    /// Whether the program has no instructions (never true of a compiled one).
    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// The instructions as the kernel's `struct sock_filter` array in host byte order (what
    /// `seccomp_export_bpf` writes).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.code.len() * INSN_LEN);
        for i in &self.code {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }
}

/// [`Program`] as it travels to the spawn helper: the flags and the instructions as
/// `(code, jt, jf, k)`.
#[derive(Serialize, Deserialize)]
struct ProgramWire {
    flags: u64,
    code: Vec<(u16, u8, u8, u32)>,
}

impl From<Program> for ProgramWire {
    // `c_ulong` is `u32` on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    fn from(p: Program) -> Self {
        ProgramWire {
            flags: u64::from(p.flags),
            code: p.code.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect(),
        }
    }
}

impl TryFrom<ProgramWire> for Program {
    type Error = String;

    fn try_from(w: ProgramWire) -> Result<Self, String> {
        if w.code.is_empty() {
            return Err("a seccomp program without instructions".into());
        }
        Ok(Program {
            flags: libc::c_ulong::try_from(w.flags).map_err(|e| e.to_string())?,
            code: w
                .code
                .into_iter()
                .map(|(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
                .collect(),
        })
    }
}

/// The size of one BPF instruction (`struct sock_filter`).
const INSN_LEN: usize = 8;

/// BPF instructions from their host-byte-order encoding; `None` unless `bytes` holds a whole,
/// non-zero number of them.
fn decode(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if bytes.is_empty() || bytes.len() % INSN_LEN != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(INSN_LEN)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// The errno of an I/O error (`EIO` when it has none).
fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Send the seccomp notification `fd` of a container to the agent at `listenerPath`.
///
/// Connects to the unix stream socket at `seccomp.listenerPath` and sends a
/// `ContainerProcessState` JSON (`{"ociVersion", "fds": ["seccompFd"], "pid", "metadata",
/// "state"}`) with `fd` attached by `SCM_RIGHTS`, as runc does. `pid` is the container process'
/// pid as the runtime sees it; `state` is the container's state in the runtime spec's shape
/// (such as [`crate::state::OciState`], status `creating`).
pub fn send_notify_fd<S: Serialize + ?Sized>(
    seccomp: &LinuxSeccomp,
    pid: i32,
    state: &S,
    fd: BorrowedFd<'_>,
) -> Result<(), SeccompError> {
    let path = seccomp
        .listener_path()
        .as_deref()
        .ok_or(SeccompError::NoListener)?;
    let msg = ProcessState {
        oci_version: crate::spec::OCI_VERSION,
        fds: [oci_spec::runtime::SECCOMP_FD_NAME],
        pid,
        metadata: seccomp.listener_metadata().as_deref(),
        state,
    };
    let data = serde_json::to_vec(&msg).map_err(SeccompError::Encode)?;
    let stream = UnixStream::connect(path).map_err(|source| SeccompError::Connect {
        path: path.to_owned(),
        source,
    })?;
    send_with_fd(&stream, &data, fd).map_err(|source| SeccompError::Send {
        path: path.to_owned(),
        source,
    })
}

/// The runtime spec's `ContainerProcessState`, with any serializable state.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessState<'a, S: Serialize + ?Sized> {
    oci_version: &'a str,
    fds: [&'a str; 1],
    pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a str>,
    state: &'a S,
}

/// Send `data` on a stream socket, the fd riding on the first `sendmsg`.
fn send_with_fd(stream: &UnixStream, data: &[u8], fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let fds = [fd.as_raw_fd()];
    let mut sent = 0;
    while sent < data.len() {
        let iov = [IoSlice::new(&data[sent..])];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 {
            &[ControlMessage::ScmRights(&fds)]
        } else {
            &[]
        };
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A compiled filter, not yet loaded.
struct Filter {
    ctx: ScmpFilterContext,
    /// Whether a rule uses `SCMP_ACT_NOTIFY`.
    notify: bool,
    /// The `SECCOMP_FILTER_FLAG_*` bits of `linux.seccomp.flags` that `seccomp_load` would
    /// pass (`NEW_LISTENER` aside).
    flags: libc::c_ulong,
}

/// Turn `linux.seccomp` into a libseccomp filter.
fn build(seccomp: &LinuxSeccomp) -> Result<Filter, SetupError> {
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SetupError::msg(
            STEP,
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| scmp_err("seccomp_init", &e))?;
    // `process.noNewPrivileges` decides about no_new_privs, not libseccomp.
    ctx.set_ctl_nnp(false)
        .map_err(|e| scmp_err("seccomp_attr_set(SCMP_FLTATR_CTL_NNP)", &e))?;
    // Report the kernel's errno when loading fails, not libseccomp's ECANCELED (best effort:
    // libseccomp before 2.5 has no such attribute).
    let _ = ctx.set_api_sysrawrc(true);

    for arch in seccomp.architectures().iter().flatten() {
        let scmp = scmp_arch(*arch);
        let present = ctx
            .is_arch_present(scmp)
            .map_err(|e| scmp_err(format!("seccomp_arch_exist({arch})"), &e))?;
        if present {
            continue;
        }
        match ctx.add_arch(scmp) {
            Ok(_) => {}
            // libseccomp keeps to one byte order per filter; a kernel of the other byte order
            // cannot run such programs, so there is nothing to filter.
            Err(e) if e.errno() == Some(SeccompErrno::EDOM) => {
                tracing::debug!(%arch, "seccomp: architecture of the other byte order skipped");
            }
            Err(e) => return Err(scmp_err(format!("seccomp_arch_add({arch})"), &e)),
        }
    }

    // Setting the attribute checks that libseccomp and the kernel support the flag.
    let mut flags = 0;
    for flag in seccomp.flags().iter().flatten() {
        let (set, bit) = match flag {
            // Init is single-threaded: there are no other threads to synchronise.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => continue,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                (ctx.set_ctl_log(true), libc::SECCOMP_FILTER_FLAG_LOG)
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                (ctx.set_ctl_ssb(true), libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW)
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => (
                ctx.set_ctl_waitkill(true),
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            ),
        };
        set.map_err(|e| scmp_err(format!("set flag {flag}"), &e))?;
        flags |= bit;
    }

    let mut notify = false;
    for call in seccomp.syscalls().iter().flatten() {
        let act = action(call.action(), call.errno_ret())?;
        if act == default {
            continue;
        }
        if act == ScmpAction::Notify {
            if let Some(name) = call
                .names()
                .iter()
                .find(|n| NO_NOTIFY.contains(&n.as_str()))
            {
                return Err(SetupError::msg(
                    STEP,
                    format!("SCMP_ACT_NOTIFY cannot be used for the {name} syscall"),
                ));
            }
            if seccomp.listener_path().is_none() {
                return Err(SetupError::msg(
                    STEP,
                    "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath",
                ));
            }
            notify = true;
        }
        let rules = conditions(call)?;
        for name in call.names() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: unknown syscall skipped");
                continue;
            };
            for conds in &rules {
                let added = if conds.is_empty() {
                    ctx.add_rule(act, nr)
                } else {
                    ctx.add_rule_conditional(act, nr, conds)
                };
                added.map_err(|e| scmp_err(format!("add rule for {name}"), &e))?;
            }
        }
    }
    Ok(Filter { ctx, notify, flags })
}

/// The condition sets of a syscall rule: one rule with all conditions (AND), or, when an
/// argument index repeats, one rule per condition (OR), as runc does.
fn conditions(call: &LinuxSyscall) -> Result<Vec<Vec<ScmpArgCompare>>, SetupError> {
    let args = call.args().as_deref().unwrap_or_default();
    let mut per_index = [0u32; MAX_ARGS];
    let mut conds = Vec::with_capacity(args.len());
    for arg in args {
        let index = arg.index();
        if index >= MAX_ARGS {
            return Err(SetupError::msg(
                STEP,
                format!("syscall argument index {index} is out of range (0-5)"),
            ));
        }
        per_index[index] += 1;
        conds.push(condition(arg));
    }
    if per_index.iter().any(|&n| n > 1) {
        Ok(conds.into_iter().map(|c| vec![c]).collect())
    } else {
        Ok(vec![conds])
    }
}

/// One argument condition (`index` is checked by the caller).
fn condition(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let index = arg.index() as u32;
    let value = arg.value();
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // `value` is the mask, `valueTwo` what the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(value),
                arg.value_two().unwrap_or(0),
            )
        }
    };
    ScmpArgCompare::new(index, op, value)
}

/// libseccomp's action for a spec action and its `errnoRet`.
fn action(act: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction, SetupError> {
    let ret = match errno_ret {
        None => libc::EPERM as u16,
        Some(v) => u16::try_from(v).map_err(|_| {
            SetupError::msg(STEP, format!("errnoRet {v} is out of range (0-65535)"))
        })?,
    };
    if errno_ret.is_some()
        && !matches!(
            act,
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        )
    {
        // runc ignores it too; profiles that set it everywhere must keep working.
        tracing::debug!(action = %act, "seccomp: errnoRet ignored for this action");
    }
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret)),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// libseccomp's architecture for a spec architecture.
fn scmp_arch(arch: Arch) -> ScmpArch {
    ARCHS
        .iter()
        .find(|(a, _, _)| *a == arch)
        .map_or(ScmpArch::Native, |(_, s, _)| *s)
}

/// A libseccomp failure as a setup error, keeping its errno.
fn scmp_err(op: impl Into<String>, e: &ScmpError) -> SetupError {
    let errno = if let Some(rc) = e.sysrawrc() {
        Errno::from_raw(rc.abs())
    } else {
        match e.errno() {
            Some(SeccompErrno::EACCES) => Errno::EACCES,
            Some(SeccompErrno::ECANCELED) => Errno::ECANCELED,
            Some(SeccompErrno::EDOM) => Errno::EDOM,
            Some(SeccompErrno::EEXIST) => Errno::EEXIST,
            Some(SeccompErrno::EFAULT) => Errno::EFAULT,
            Some(SeccompErrno::ENOENT) => Errno::ENOENT,
            Some(SeccompErrno::ENOMEM) => Errno::ENOMEM,
            Some(SeccompErrno::EOPNOTSUPP) => Errno::EOPNOTSUPP,
            Some(SeccompErrno::ERANGE) => Errno::ERANGE,
            Some(SeccompErrno::ESRCH) => Errno::ESRCH,
            Some(SeccompErrno::EINVAL) => Errno::EINVAL,
            // Not an errno (such as an API level too low for the attribute): say it in words.
            _ => return SetupError::msg(STEP, format!("{}: {e}", op.into())),
        }
    };
    SetupError::sys(STEP, op, errno)
}

/// The actions [`Program::compile`] accepts, as spelled in `config.json`.
pub fn supported_actions() -> Vec<&'static str> {
    ACTIONS.to_vec()
}

/// The argument comparison operators [`Program::compile`] accepts.
pub fn supported_operators() -> Vec<&'static str> {
    OPERATORS.to_vec()
}

/// The architectures the linked libseccomp knows, which [`Program::compile`] accepts.
///
/// Those of the other byte order than the host's are accepted and skipped: libseccomp cannot
/// mix byte orders in one filter, and this kernel cannot run their programs.
pub fn supported_archs() -> Vec<&'static str> {
    ARCHS
        .iter()
        .filter(|(_, scmp, _)| {
            let Ok(mut ctx) = ScmpFilterContext::new(ScmpAction::Allow) else {
                return false;
            };
            ctx.remove_arch(ScmpArch::native()).is_ok() && ctx.add_arch(*scmp).is_ok()
        })
        .map(|(_, _, name)| *name)
        .collect()
}

/// The filter flags the runtime spec defines.
pub fn known_flags() -> Vec<&'static str> {
    FLAGS.to_vec()
}

/// The filter flags that both the linked libseccomp and the running kernel support.
///
/// Uses libseccomp's API level, which probes the kernel: 3 brings `SECCOMP_FILTER_FLAG_LOG`,
/// 4 `SECCOMP_FILTER_FLAG_SPEC_ALLOW`, 7 `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`.
pub fn supported_flags() -> Vec<&'static str> {
    let api = libseccomp::get_api();
    let mut flags = vec!["SECCOMP_FILTER_FLAG_TSYNC"];
    if api >= 4 {
        flags.push("SECCOMP_FILTER_FLAG_SPEC_ALLOW");
    }
    if api >= 3 {
        flags.push("SECCOMP_FILTER_FLAG_LOG");
    }
    if api >= 7 {
        flags.push("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV");
    }
    flags
}

/// Whether the kernel supports seccomp (its `/proc/<pid>/status` has a `Seccomp:` line).
pub fn enabled() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::io::{IoSliceMut, Read};
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixListener;
    use std::panic::AssertUnwindSafe;

    use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signal::{kill, Signal};
    use nix::sys::socket::{
        recvmsg, socket, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    };
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult, Pid};
    use serde_json::{json, Value};

    use super::*;

    /// Compile `seccomp` and load it into the calling process (what the runtime and the
    /// container process do between them); the notify fd when a rule uses `SCMP_ACT_NOTIFY`.
    fn apply(seccomp: &LinuxSeccomp) -> Result<Option<OwnedFd>, SetupError> {
        Program::compile(seccomp)?.load()
    }

    fn spec(v: Value) -> LinuxSeccomp {
        serde_json::from_value(v).expect("valid linux.seccomp")
    }

    /// Run `f` in a forked child with no_new_privs set; its return value is the exit code.
    fn in_child(f: impl FnOnce() -> i32) -> Pid {
        // SAFETY: the test process runs one test (nextest) and the child only runs `f`, which
        // uses glibc's fork-safe allocator, then leaves with `_exit` without unwinding into the
        // harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
                    f()
                }))
                .unwrap_or(101);
                // SAFETY: `_exit` ends this forked child at once, running no atexit handler or
                // destructor that belongs to the parent's state.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => child,
        }
    }

    fn wait(pid: Pid) -> WaitStatus {
        waitpid(pid, None).expect("waitpid")
    }

    fn errno_of<T>(r: nix::Result<T>) -> i32 {
        match r {
            Ok(_) => 0,
            Err(e) => e as i32,
        }
    }

    fn assert_exit0(status: WaitStatus) {
        assert!(
            matches!(status, WaitStatus::Exited(_, 0)),
            "child ended with {status:?}"
        );
    }

    fn builds(v: Value) -> Result<Filter, SetupError> {
        build(&spec(v))
    }

    #[test]
    fn builds_every_action_with_every_operator() {
        for act in supported_actions() {
            let default = if act == "SCMP_ACT_ALLOW" {
                "SCMP_ACT_KILL_PROCESS"
            } else {
                "SCMP_ACT_ALLOW"
            };
            for op in supported_operators() {
                let f = builds(json!({
                    "defaultAction": default,
                    "listenerPath": "/run/agent.sock",
                    "syscalls": [
                        {"names": ["getcwd", "mkdirat"], "action": act},
                        {"names": ["personality"], "action": act,
                         "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": op},
                                  {"index": 1, "value": 3, "op": op}]},
                    ],
                }))
                .unwrap_or_else(|e| panic!("{act} {op}: {e}"));
                assert_eq!(f.notify, act == "SCMP_ACT_NOTIFY");
            }
        }
    }

    #[test]
    fn errno_ret_counts_with_errno_and_trace_only() {
        for act in ["SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"] {
            builds(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["getcwd"], "action": act, "errnoRet": 38}]}))
            .unwrap();
        }
        builds(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}))
            .expect("defaultErrnoRet");
        builds(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1, "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}),
        )
        .expect("errnoRet ignored with kill and allow");
        assert!(
            builds(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}))
            .is_err()
        );
    }

    #[test]
    fn builds_every_supported_arch_and_refuses_the_rest() {
        let supported = supported_archs();
        assert!(supported.contains(&"SCMP_ARCH_X86_64"));
        assert!(supported.contains(&"SCMP_ARCH_X86"));
        for (_, _, name) in ARCHS {
            let r = builds(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_NATIVE", name],
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}],
            }));
            assert_eq!(r.is_ok(), supported.contains(name), "{name}");
        }
        let all: Vec<_> = supported.iter().collect();
        builds(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": all,
            "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]}),
        )
        .expect("all supported archs in one filter");
    }

    #[test]
    fn builds_every_supported_flag_and_refuses_the_rest() {
        let supported = supported_flags();
        assert!(supported.contains(&"SECCOMP_FILTER_FLAG_LOG"));
        for flag in known_flags() {
            let r = builds(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]}));
            assert_eq!(r.is_ok(), supported.contains(&flag), "{flag}");
        }
        let all = supported.clone();
        builds(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": all})).unwrap();
    }

    #[test]
    fn refuses_bad_notify_setups() {
        let e = builds(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"}));
        assert!(e.is_err());
        let e = builds(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        assert!(e.err().unwrap().op.contains("write"));
        let e = builds(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]}));
        assert!(e.err().unwrap().op.contains("listenerPath"));
    }

    #[test]
    fn skips_unknown_syscalls_and_default_action_rules() {
        builds(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["no_such_syscall", "getcwd"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"},
        ]}))
        .unwrap();
        let e = builds(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
        assert!(e.err().unwrap().op.contains("index 6"));
    }

    #[test]
    fn same_index_conditions_become_separate_rules() {
        let call = |args: Value| -> LinuxSyscall {
            serde_json::from_value(json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                "args": args}))
            .unwrap()
        };
        let and = conditions(&call(json!([
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}])))
        .unwrap();
        assert_eq!(and.iter().map(Vec::len).collect::<Vec<_>>(), [2]);
        let or = conditions(&call(json!([
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}])))
        .unwrap();
        assert_eq!(or.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(
            condition(
                &serde_json::from_value(json!(
                {"index": 2, "value": 0xf0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}))
                .unwrap()
            ),
            ScmpArgCompare::new(2, ScmpCompareOp::MaskedEqual(0xf0), 0x10)
        );
    }

    #[test]
    fn feature_lists() {
        assert_eq!(supported_actions().len(), 9);
        assert_eq!(supported_operators().len(), 7);
        assert_eq!(known_flags().len(), 4);
        assert!(enabled());
    }

    #[test]
    fn errno_action_denies_with_eperm_and_errno_ret() {
        let s = spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ]}));
        let child = in_child(|| {
            assert_eq!(errno_of(nix::unistd::getcwd()), 0);
            assert!(apply(&s).unwrap().is_none());
            assert_eq!(errno_of(nix::unistd::getcwd()), libc::EPERM);
            let r = nix::sys::stat::mkdirat(
                nix::fcntl::AT_FDCWD,
                "/nonexistent-berth-test/x",
                nix::sys::stat::Mode::from_bits_truncate(0o755),
            );
            assert_eq!(errno_of(r), libc::ENOSYS);
            0
        });
        assert_exit0(wait(child));
    }

    #[test]
    fn default_errno_ret_applies_to_unlisted_syscalls() {
        let s = spec(
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": ["exit_group", "exit", "rt_sigreturn", "brk", "mmap",
                "munmap", "futex", "write"], "action": "SCMP_ACT_ALLOW"}]}),
        );
        let child = in_child(|| {
            apply(&s).unwrap();
            let mut buf = [0u8; 256];
            // SAFETY: `buf` is a live stack buffer of the length passed, getcwd writes within it.
            let rc = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
            if rc == -1 && Errno::last_raw() == libc::ENOSYS {
                0
            } else {
                1
            }
        });
        assert_exit0(wait(child));
    }

    #[test]
    fn kill_actions_end_the_child_with_sigsys() {
        for act in [
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_TRAP",
        ] {
            let s = spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["getcwd"], "action": act}]}));
            let child = in_child(|| {
                apply(&s).unwrap();
                let _ = nix::unistd::getcwd();
                0
            });
            match wait(child) {
                WaitStatus::Signaled(_, Signal::SIGSYS, _) => {}
                other => panic!("{act}: child ended with {other:?}"),
            }
        }
    }

    #[test]
    fn log_and_allow_let_the_call_through() {
        let s = spec(
            json!({"defaultAction": "SCMP_ACT_LOG", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ALLOW"}]}),
        );
        let child = in_child(|| {
            apply(&s).unwrap();
            errno_of(nix::unistd::getcwd())
                + errno_of(
                    nix::unistd::getppid()
                        .as_raw()
                        .ge(&0)
                        .then_some(())
                        .ok_or(Errno::EINVAL),
                )
        });
        assert_exit0(wait(child));
    }

    fn socket_errno(family: AddressFamily, ty: SockType) -> i32 {
        errno_of(socket(family, ty, SockFlag::empty(), None))
    }

    #[test]
    fn arg_conditions_select_the_calls() {
        // AF_INET (2) or AF_INET6 (10) denied: same index, so OR; AF_UNIX (1) datagram sockets
        // denied: two indexes, so AND; a masked test on the type of AF_NETLINK (16) sockets.
        let s = spec(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
                {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 0xf, "valueTwo": 3, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 0xffff_ffff_u64, "op": "SCMP_CMP_NE"}]},
        ]}));
        let child = in_child(|| {
            apply(&s).unwrap();
            assert_eq!(
                socket_errno(AddressFamily::Inet, SockType::Stream),
                libc::EPERM
            );
            assert_eq!(
                socket_errno(AddressFamily::Inet6, SockType::Datagram),
                libc::EPERM
            );
            assert_eq!(socket_errno(AddressFamily::Unix, SockType::Stream), 0);
            assert_eq!(
                socket_errno(AddressFamily::Unix, SockType::Datagram),
                libc::EINVAL
            );
            // SOCK_RAW (3) | SOCK_CLOEXEC masked with 0xf is 3.
            let netlink = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                None,
            );
            assert_eq!(errno_of(netlink), libc::EACCES);
            // personality(0xffffffff) only queries: allowed; anything else denied.
            // SAFETY: personality takes a plain integer and touches no memory of ours.
            let query = unsafe { libc::personality(0xffff_ffff) };
            assert!(query >= 0);
            // SAFETY: as above.
            let set = unsafe { libc::personality(query as libc::c_ulong) };
            assert_eq!((set, Errno::last_raw()), (-1, libc::EPERM));
            0
        });
        assert_exit0(wait(child));
    }

    /// Kills the child if the test fails before reaping it.
    struct Reap(Option<Pid>);

    impl Drop for Reap {
        fn drop(&mut self) {
            if let Some(pid) = self.0.take() {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
            }
        }
    }

    fn wait_readable(fd: BorrowedFd<'_>) {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(10_000u16)).expect("poll");
        assert_eq!(n, 1, "timed out waiting for the child");
    }

    #[test]
    fn notify_hands_the_fd_to_the_listener() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let s = spec(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock,
            "listenerMetadata": "hello agent",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        let mut child = Reap(Some(in_child(|| {
            let fd = apply(&s).unwrap().expect("a notify fd");
            let state = json!({"ociVersion": "1.3.0", "id": "seccomp-test",
                "status": "creating", "pid": std::process::id(), "bundle": "/b"});
            send_notify_fd(&s, std::process::id() as i32, &state, fd.as_fd()).unwrap();
            drop(fd);
            // The agent answers 4242 instead of running the call.
            if nix::unistd::getppid().as_raw() == 4242 {
                0
            } else {
                1
            }
        })));

        wait_readable(listener.as_fd());
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .unwrap();
            let mut fd = None;
            for c in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: SCM_RIGHTS just installed these fds in this process; we own them.
                    fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
                }
            }
            (msg.bytes, fd.expect("an fd with the state"))
        };
        buf.truncate(n);
        conn.read_to_end(&mut buf).unwrap();
        let state: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(state["fds"], json!(["seccompFd"]));
        assert_eq!(state["metadata"], "hello agent");
        assert_eq!(state["state"]["id"], "seccomp-test");
        assert!(state["pid"].as_i64().unwrap() > 0);

        wait_readable(fd.as_fd());
        let req = ScmpNotifReq::receive(fd.as_raw_fd()).unwrap();
        assert_eq!(req.data.syscall, ScmpSyscall::from_name("getppid").unwrap());
        ScmpNotifResp::new_val(req.id, 4242, ScmpNotifRespFlags::empty())
            .respond(fd.as_raw_fd())
            .unwrap();
        let pid = child.0.take().unwrap();
        assert_exit0(wait(pid));
    }

    /// `PTRACE_SECCOMP_GET_FILTER` (linux/ptrace.h), which the libc crate does not define.
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;

    /// `ptrace(req, pid, 0, buf)`: the requests used here take the filter index 0 (or nothing)
    /// as `addr`, and `buf` is null or has room for the filter the kernel reports.
    fn ptrace(req: libc::c_uint, pid: Pid, buf: *mut libc::sock_filter) -> libc::c_long {
        // SAFETY: ATTACH and CONT ignore `addr` and `data`; SECCOMP_GET_FILTER writes at most
        // the filter's length of instructions to `buf`, which the callers size from the same
        // call with a null buffer (which writes nothing), on a stopped tracee.
        unsafe { libc::ptrace(req, pid.as_raw(), 0usize, buf) }
    }

    /// The filter the kernel holds after libseccomp's own `seccomp_load` in a child, read back
    /// with `PTRACE_SECCOMP_GET_FILTER`.
    fn loaded_by_libseccomp(s: &LinuxSeccomp) -> Vec<libc::sock_filter> {
        // The child says when its filter is loaded: a byte on a pipe (its death ends the
        // pipe too).
        let (loaded_r, loaded_w) = nix::unistd::pipe().unwrap();
        let child = Reap(Some(in_child(|| {
            let filter = build(s).unwrap();
            filter.ctx.load().unwrap();
            nix::unistd::write(&loaded_w, b"l").unwrap();
            loop {
                nix::unistd::pause();
            }
        })));
        drop(loaded_w);
        let pid = child.0.unwrap();
        let mut fds = [PollFd::new(loaded_r.as_fd(), PollFlags::POLLIN)];
        assert_eq!(
            poll(&mut fds, PollTimeout::try_from(30_000).unwrap()).unwrap(),
            1,
            "the child did not load its filter within 30 s"
        );
        let mut byte = [0u8; 1];
        assert_eq!(
            nix::unistd::read(&loaded_r, &mut byte).unwrap(),
            1,
            "the child died before it loaded its filter"
        );
        // Attaching stops the child (in its pause): then the kernel hands over its filter.
        ptrace(libc::PTRACE_ATTACH, pid, std::ptr::null_mut());
        let _ = waitpid(pid, Some(nix::sys::wait::WaitPidFlag::__WALL));
        // With a null buffer: the length of the child's newest filter (index 0).
        let n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, std::ptr::null_mut());
        assert!(n > 0, "no filter in the child: {n}");
        let mut code = vec![
            libc::sock_filter {
                code: 0,
                jt: 0,
                jf: 0,
                k: 0
            };
            n as usize
        ];
        // `code` has room for the `n` instructions just reported for this filter (the child is
        // stopped: it cannot add another meanwhile).
        assert_eq!(ptrace(PTRACE_SECCOMP_GET_FILTER, pid, code.as_mut_ptr()), n);
        drop(child);
        code
    }

    fn same_code(a: &[libc::sock_filter], b: &[libc::sock_filter]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
    }

    #[test]
    fn the_exported_program_is_the_one_seccomp_load_installs() {
        // The shape of containerd's RuntimeDefault: an allow list on three architectures,
        // argument conditions, an errno rule; and profiles with log and notify.
        let allow = [
            "read",
            "write",
            "exit",
            "exit_group",
            "pause",
            "rt_sigreturn",
            "rt_sigprocmask",
            "socket",
            "socketcall",
            "connect",
            "ipc",
            "shmget",
            "futex",
            "mmap",
            "munmap",
            "brk",
            "getpid",
            "kill",
            "clock_nanosleep",
            "nanosleep",
            "restart_syscall",
        ];
        let profiles = [
            json!({"defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": allow, "action": "SCMP_ACT_ALLOW"},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
                    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}),
            json!({"defaultAction": "SCMP_ACT_LOG", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL_PROCESS"},
                    {"names": ["mkdirat"], "action": "SCMP_ACT_TRAP"}]}),
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}),
        ];
        let mut loaded = Vec::new();
        for p in profiles {
            let s = spec(p.clone());
            let program = Program::compile(&s).unwrap();
            let installed = loaded_by_libseccomp(&s);
            // libseccomp's program follows the ENOSYS stub (only the first profile, whose
            // default is not permissive, has one).
            let stub = enosys::stub(&s).unwrap();
            assert_eq!(stub.is_empty(), p["defaultAction"] != "SCMP_ACT_ERRNO");
            assert!(
                same_code(&program.code[..stub.len()], &stub)
                    && same_code(&program.code[stub.len()..], &installed),
                "{p}: the exported program differs from the loaded one"
            );
            assert_eq!(program.notifies(), p.get("listenerPath").is_some());
            loaded.push(installed);
        }
        // Not vacuous: three architectures make a long program, and the programs differ.
        assert!(loaded[0].len() > 50, "{} instructions", loaded[0].len());
        assert!(!same_code(&loaded[0], &loaded[1]) && !same_code(&loaded[1], &loaded[2]));
    }
}
