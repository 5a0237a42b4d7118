//! The `ENOSYS` stub put before a filter, as runc does: a syscall newer than any the profile
//! names fails with `ENOSYS`, not with the profile's default action.
//!
//! A profile is written against the syscalls of its time; the syscalls a later kernel adds
//! fall to its default action, typically `EPERM` for an allow list such as docker's. libc
//! probes new syscalls and falls back to older ones only on `ENOSYS` (glibc's `clone3`,
//! `faccessat2`, `fchmodat2`, `close_range`, ...): `EPERM` breaks it. runc (1.0 and later,
//! `libcontainer/seccomp/patchbpf`) therefore prepends a stub to libseccomp's program that,
//! for each architecture the profile lists, returns `ENOSYS` for syscall numbers above the
//! largest one the profile names on that architecture, and otherwise falls through to the
//! filter. [`stub`] makes the same stub:
//!
//! - only when the default action is not permissive (not `SCMP_ACT_ALLOW`, `SCMP_ACT_LOG` or
//!   `SCMP_ACT_TRACE`);
//! - per architecture of `linux.seccomp.architectures` (none listed: no stub), with the
//!   largest number among all names of all rules, whatever their action, that libseccomp
//!   resolves on that architecture; an architecture where none resolves is left out;
//! - x86_64 and x32 share the kernel's `AUDIT_ARCH_X86_64` and are told apart by the x32 bit
//!   of the syscall number (`__X32_SYSCALL_BIT`);
//! - on s390 and s390x syscall 0 (the multiplexer that unknown syscalls arrive as) also gets
//!   `ENOSYS`;
//! - numbers in holes below the largest named one keep the default action (runc's stub has
//!   the same limit).
//!
//! Unlike runc's stub (whose section order follows Go's map iteration), the sections are in
//! ascending order of architecture, so one profile always compiles to one program (which the
//! cache relies on).

use std::collections::BTreeMap;

use libseccomp::{ScmpArch, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction};

use super::{scmp_arch, STEP};
use crate::error::SetupError;

/// The x32 bit of an x86_64 syscall number (`__X32_SYSCALL_BIT`).
const X32_BIT: u32 = 0x4000_0000;

/// `SECCOMP_RET_ERRNO | ENOSYS`.
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

// Classic BPF opcodes (linux/bpf_common.h), as `sock_filter.code` holds them.
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The kernel's `AUDIT_ARCH_*` value of a libseccomp architecture (linux/audit.h: the ELF
/// machine, `0x80000000` for 64-bit, `0x40000000` for little-endian, `0x20000000` for the
/// MIPS n32 convention). x32 reports itself as x86_64.
fn audit_arch(arch: ScmpArch) -> Option<u32> {
    const B64: u32 = 0x8000_0000;
    const LE: u32 = 0x4000_0000;
    const N32: u32 = 0x2000_0000;
    Some(match arch {
        ScmpArch::X86 => 3 | LE,
        ScmpArch::X8664 | ScmpArch::X32 => 62 | B64 | LE,
        ScmpArch::Arm => 40 | LE,
        ScmpArch::Aarch64 => 183 | B64 | LE,
        ScmpArch::Mips => 8,
        ScmpArch::Mipsel => 8 | LE,
        ScmpArch::Mips64 => 8 | B64,
        ScmpArch::Mipsel64 => 8 | B64 | LE,
        ScmpArch::Mips64N32 => 8 | B64 | N32,
        ScmpArch::Mipsel64N32 => 8 | B64 | LE | N32,
        ScmpArch::Ppc => 20,
        ScmpArch::Ppc64 => 21 | B64,
        ScmpArch::Ppc64Le => 21 | B64 | LE,
        ScmpArch::S390 => 22,
        ScmpArch::S390X => 22 | B64,
        ScmpArch::Parisc => 15,
        ScmpArch::Parisc64 => 15 | B64,
        ScmpArch::Riscv64 => 243 | B64 | LE,
        ScmpArch::Loongarch64 => 258 | B64 | LE,
        ScmpArch::M68k => 4,
        ScmpArch::Sh => 42 | LE,
        ScmpArch::Sheb => 42,
        _ => return None,
    })
}

/// The largest syscall numbers of one kernel architecture: the plain ABI's and, on x86_64,
/// x32's (with its bit set).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Last {
    plain: Option<u32>,
    x32: Option<u32>,
    /// s390/s390x: syscall 0 is the multiplexer unknown syscalls arrive as.
    s390: bool,
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The stub to put before the program libseccomp made of `seccomp` (empty when none is
/// needed). Every path of the stub either returns `ENOSYS` or jumps to the instruction
/// right after it, the filter's first.
///
/// Errors: an architecture libseccomp or this stub does not know (the filter itself would
/// fail on it too).
pub(crate) fn stub(seccomp: &LinuxSeccomp) -> Result<Vec<libc::sock_filter>, SetupError> {
    if matches!(
        seccomp.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    ) {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = seccomp
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|r| r.names().iter().map(String::as_str))
        .collect();
    let mut last: BTreeMap<u32, Last> = BTreeMap::new();
    for arch in seccomp.architectures().iter().flatten() {
        let scmp = resolve_arch(*arch);
        let audit = audit_arch(scmp).ok_or_else(|| {
            SetupError::msg(STEP, format!("no AUDIT_ARCH value for architecture {arch}"))
        })?;
        let largest = names
            .iter()
            .filter_map(|n| ScmpSyscall::from_name_by_arch(n, scmp).ok())
            .map(|s| s.as_raw_syscall())
            .filter(|&nr| nr >= 0)
            .max()
            .map(|nr| nr as u32);
        let Some(largest) = largest else {
            tracing::debug!(%arch, "seccomp: no syscall of the profile on this architecture");
            continue;
        };
        let entry = last.entry(audit).or_default();
        if scmp == ScmpArch::X32 {
            entry.x32 = Some(largest);
        } else {
            entry.plain = Some(largest);
        }
        entry.s390 |= matches!(scmp, ScmpArch::S390 | ScmpArch::S390X);
    }
    if last.is_empty() {
        return Ok(Vec::new());
    }
    assemble(&last)
}

/// `SCMP_ARCH_NATIVE`-free libseccomp architecture of a spec architecture.
fn resolve_arch(arch: Arch) -> ScmpArch {
    match scmp_arch(arch) {
        ScmpArch::Native => ScmpArch::native(),
        a => a,
    }
}

/// One architecture's section: load the number, compare, return `ENOSYS` or jump on. The
/// last instruction is the jump to the filter, whose distance the caller fills in.
fn section(audit: u32, last: &Last) -> Vec<libc::sock_filter> {
    let mut s = vec![insn(LD_W_ABS, 0, 0, NR_OFFSET)];
    if last.s390 {
        // Syscall 0 goes to the ret, three instructions on (past the jgt).
        s.push(insn(JEQ_K, 1, 0, 0));
    }
    let x86_64 = audit_arch(ScmpArch::X8664) == Some(audit);
    if x86_64 {
        // jset x32: to the x32 test; else the plain test. Each test: above its largest
        // number to the ret, else to the jump. A missing ABI jumps straight on.
        s.push(insn(JSET_K, 1, 0, X32_BIT));
        s.push(match last.plain {
            Some(max) => insn(JGT_K, 1, 2, max),
            None => insn(JA, 0, 0, 2),
        });
        s.push(match last.x32 {
            Some(max) => insn(JGT_K, 0, 1, max),
            None => insn(JA, 0, 0, 1),
        });
    } else {
        s.push(insn(JGT_K, 0, 1, last.plain.unwrap_or(u32::MAX)));
    }
    s.push(insn(RET_K, 0, 0, RET_ENOSYS));
    s.push(insn(JA, 0, 0, 0));
    s
}

/// Dispatch on the architecture, then the sections; jumps to the filter land right after.
fn assemble(last: &BTreeMap<u32, Last>) -> Result<Vec<libc::sock_filter>, SetupError> {
    let sections: Vec<(u32, Vec<libc::sock_filter>)> = last
        .iter()
        .map(|(audit, l)| (*audit, section(*audit, l)))
        .collect();
    // ld arch, one jeq per section, ja to the filter.
    let head = 1 + sections.len() + 1;
    let total = head + sections.iter().map(|(_, s)| s.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.push(insn(LD_W_ABS, 0, 0, ARCH_OFFSET));
    let mut start = head;
    for (i, (audit, s)) in sections.iter().enumerate() {
        let at = 1 + i;
        let skip = u8::try_from(start - at - 1)
            .map_err(|_| SetupError::msg(STEP, "ENOSYS stub: too many architectures"))?;
        out.push(insn(JEQ_K, skip, 0, *audit));
        start += s.len();
    }
    out.push(insn(JA, 0, 0, (total - head) as u32));
    for (_, s) in sections {
        out.extend(s);
        let at = out.len() - 1;
        out[at].k = (total - at - 1) as u32;
    }
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use serde_json::{json, Value};

    use super::*;
    use crate::seccomp::Program;

    fn spec(v: Value) -> LinuxSeccomp {
        serde_json::from_value(v).expect("valid linux.seccomp")
    }

    const X86_64: u32 = 0xC000_003E;
    const I386: u32 = 0x4000_0003;

    /// Run the stub on (nr, arch): `Some(ret)` if it returns, `None` if it falls through to the
    /// filter (reaches the instruction after it).
    fn run(stub: &[libc::sock_filter], nr: u32, arch: u32) -> Option<u32> {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            if pc == stub.len() {
                return None;
            }
            let i = stub[pc];
            let next = pc + 1;
            pc = match i.code {
                LD_W_ABS => {
                    acc = if i.k == NR_OFFSET { nr } else { arch };
                    next
                }
                JA => next + i.k as usize,
                RET_K => return Some(i.k),
                op => {
                    let hit = match op {
                        JEQ_K => acc == i.k,
                        JGT_K => acc > i.k,
                        JSET_K => acc & i.k != 0,
                        _ => panic!("unexpected opcode {op:#x}"),
                    };
                    next + usize::from(if hit { i.jt } else { i.jf })
                }
            };
            assert!(pc <= stub.len(), "jump past the stub's end");
        }
    }

    fn profile(default: &str, arches: Value) -> LinuxSeccomp {
        spec(
            json!({"defaultAction": default, "architectures": arches, "syscalls": [
            {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
            // Named with the default action: counts all the same (as in runc).
            {"names": ["process_mrelease"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"}]}),
        )
    }

    #[test]
    fn permissive_defaults_and_no_architectures_get_no_stub() {
        for d in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"] {
            assert!(stub(&profile(d, json!(["SCMP_ARCH_X86_64"])))
                .unwrap()
                .is_empty());
        }
        assert!(stub(&profile("SCMP_ACT_ERRNO", json!([])))
            .unwrap()
            .is_empty());
        assert!(stub(&spec(json!({"defaultAction": "SCMP_ACT_ERRNO"})))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn numbers_above_the_largest_named_get_enosys_per_architecture() {
        let s = stub(&profile(
            "SCMP_ACT_KILL_PROCESS",
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        ))
        .unwrap();
        // process_mrelease: 448 on x86_64, 448 on i386, 448 | x32 bit on x32.
        let mrelease = ScmpSyscall::from_name_by_arch("process_mrelease", ScmpArch::X32)
            .unwrap()
            .as_raw_syscall() as u32;
        assert_eq!(mrelease, X32_BIT | 448, "x32 numbers carry the x32 bit");
        for (nr, arch, want) in [
            (0, X86_64, None),
            (448, X86_64, None),
            (449, X86_64, Some(RET_ENOSYS)),
            (1000, X86_64, Some(RET_ENOSYS)),
            (400, X86_64, None),
            (X32_BIT | 448, X86_64, None),
            (X32_BIT | 449, X86_64, Some(RET_ENOSYS)),
            (448, I386, None),
            (449, I386, Some(RET_ENOSYS)),
            // An architecture the profile does not list: the filter decides.
            (1000, 0xC000_00B7, None),
        ] {
            assert_eq!(run(&s, nr, arch), want, "nr {nr:#x} arch {arch:#x}");
        }
        // Without x32 in the profile, x32 numbers go to the filter.
        let s = stub(&profile("SCMP_ACT_ERRNO", json!(["SCMP_ARCH_X86_64"]))).unwrap();
        assert_eq!(run(&s, X32_BIT | 1000, X86_64), None);
        assert_eq!(run(&s, 1000, X86_64), Some(RET_ENOSYS));
        // Only x32: plain x86_64 numbers go to the filter.
        let s = stub(&profile("SCMP_ACT_ERRNO", json!(["SCMP_ARCH_X32"]))).unwrap();
        assert_eq!(run(&s, 1000, X86_64), None);
        assert_eq!(run(&s, X32_BIT | 1000, X86_64), Some(RET_ENOSYS));
    }

    #[test]
    fn s390_multiplexer_gets_enosys() {
        let s = stub(&profile("SCMP_ACT_ERRNO", json!(["SCMP_ARCH_S390X"]))).unwrap();
        let s390x = audit_arch(ScmpArch::S390X).unwrap();
        assert_eq!(run(&s, 0, s390x), Some(RET_ENOSYS));
        assert_eq!(run(&s, 3, s390x), None);
        assert_eq!(run(&s, 5000, s390x), Some(RET_ENOSYS));
    }

    #[test]
    fn compiled_programs_start_with_the_stub() {
        let p = profile("SCMP_ACT_ERRNO", json!(["SCMP_ARCH_X86_64"]));
        let s = stub(&p).unwrap();
        assert!(!s.is_empty());
        let program = Program::compile(&p).unwrap();
        assert!(program.code.len() > s.len());
        for (a, b) in program.code.iter().zip(&s) {
            assert_eq!((a.code, a.jt, a.jf, a.k), (b.code, b.jt, b.jf, b.k));
        }
        let allow = profile("SCMP_ACT_ALLOW", json!(["SCMP_ARCH_X86_64"]));
        assert_eq!(Program::compile(&allow).unwrap().code[0].k, ARCH_OFFSET);
    }

    /// In a child: load a profile that allows little, then report the errno of a syscall above
    /// the largest named one (ENOSYS), of one in a hole below it and of an unlisted one
    /// (both the default EPERM).
    #[test]
    fn a_loaded_filter_answers_enosys_above_and_eperm_below() {
        let p = spec(
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["exit_group", "exit", "rt_sigreturn", "brk", "mmap",
                "munmap", "futex", "write", "process_mrelease"], "action": "SCMP_ACT_ALLOW"}]}),
        );
        let program = Program::compile(&p).unwrap();
        // SAFETY: the test process runs one test (nextest); the child makes raw syscalls and
        // leaves with `_exit`.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let errno = |nr: libc::c_long| {
                    // SAFETY: none of these numbers is a syscall that may run under this
                    // filter with no arguments except as probed (1000 and 400 do not exist;
                    // getcwd with a null buffer fails with EFAULT if it runs at all).
                    let rc = unsafe { libc::syscall(nr, 0, 0) };
                    if rc < 0 {
                        nix::errno::Errno::last_raw()
                    } else {
                        0
                    }
                };
                let ok = nix::sys::prctl::set_no_new_privs().is_ok()
                    && program.load().is_ok()
                    && errno(1000) == libc::ENOSYS
                    && errno(449) == libc::ENOSYS
                    && errno(400) == libc::EPERM
                    && errno(libc::SYS_getcwd) == libc::EPERM;
                // SAFETY: ends the forked child at once, running nothing of the parent's.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            ForkResult::Parent { child } => {
                assert!(matches!(
                    waitpid(child, None).unwrap(),
                    WaitStatus::Exited(_, 0)
                ));
            }
        }
    }
}
