//! cgroup v2 device control: a `BPF_PROG_TYPE_CGROUP_DEVICE` program assembled from the
//! spec's device rules.
//!
//! The kernel runs the program on every device access with a context of three `u32`:
//! `access_type` (`access << 16 | type`), `major` and `minor`, and grants the access when
//! the program returns 1. The program checks the rules from the last to the first and
//! returns the verdict of the first that matches, so the last matching rule of the spec
//! wins, as with v1's `devices.allow`/`devices.deny` writes; nothing matching is a deny.
//!
//! An allow rule matches when the requested access is a subset of its access; a deny rule
//! matches when they share any bit (so a deny of `w` refuses an `rw` open).

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::CgroupError;
use crate::sys::bpf;

/// `BPF_DEVCG_DEV_BLOCK`.
const DEV_BLOCK: i32 = 1;
/// `BPF_DEVCG_DEV_CHAR`.
const DEV_CHAR: i32 = 2;
/// `BPF_DEVCG_ACC_MKNOD`.
pub const ACC_MKNOD: u32 = 1;
/// `BPF_DEVCG_ACC_READ`.
pub const ACC_READ: u32 = 2;
/// `BPF_DEVCG_ACC_WRITE`.
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

// eBPF opcodes (linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU64_AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const ALU64_RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers: r1 holds the context on entry and is scratch afterwards.
const R0: u8 = 0;
const R1: u8 = 1;
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

/// One eBPF instruction (`struct bpf_insn`).
///
/// ```
/// let f = berth_cgroups::DeviceFilter::from_rules(&[]).unwrap();
/// assert_eq!(f.instructions().last().unwrap().code, 0x95); // exit
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Offset (jumps, memory access).
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The 8-byte kernel encoding.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A device filter program built from OCI device rules.
///
/// ```
/// use berth_cgroups::DeviceFilter;
/// use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
/// let rules = vec![
///     LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().unwrap(),
///     LinuxDeviceCgroupBuilder::default().allow(true).typ(LinuxDeviceType::C)
///         .major(1).minor(5).access("rw").build().unwrap(),
/// ];
/// let f = DeviceFilter::from_rules(&rules).unwrap();
/// assert!(f.evaluate('c', 1, 5, "r"));   // /dev/zero
/// assert!(!f.evaluate('c', 1, 3, "r"));  // /dev/null
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceFilter {
    insns: Vec<Insn>,
}

fn access_bits(r: &LinuxDeviceCgroup) -> Result<u32, CgroupError> {
    let a = r.access().as_deref().unwrap_or("");
    if a.is_empty() {
        return Ok(ACC_ALL);
    }
    let mut bits = 0;
    for c in a.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(CgroupError::invalid(
                    "devices.access",
                    format!("{a:?} is not made of r, w and m"),
                ))
            }
        };
    }
    Ok(bits)
}

fn dev_number(field: &str, n: Option<i64>) -> Result<Option<i32>, CgroupError> {
    match n {
        None => Ok(None),
        Some(n) if n < 0 => Ok(None),
        Some(n) => u32::try_from(n)
            .map(|v| Some(v as i32))
            .map_err(|_| CgroupError::invalid(field, format!("{n} is out of range"))),
    }
}

impl DeviceFilter {
    /// Assembles the program for `rules` (in the spec's order; the last match wins and the
    /// default is deny). FIFO rules (`p`) cannot match a device and are skipped.
    pub fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<Self, CgroupError> {
        let mut insns = vec![
            Insn::new(LDX_MEM_W, R_TYPE, R1, 0, 0),
            Insn::new(ALU64_AND_K, R_TYPE, 0, 0, 0xffff),
            Insn::new(LDX_MEM_W, R_ACCESS, R1, 0, 0),
            Insn::new(ALU64_RSH_K, R_ACCESS, 0, 0, 16),
            Insn::new(LDX_MEM_W, R_MAJOR, R1, 4, 0),
            Insn::new(LDX_MEM_W, R_MINOR, R1, 8, 0),
        ];
        let mut catch_all = false;
        for r in rules.iter().rev() {
            let ty = match r.typ().unwrap_or(LinuxDeviceType::A) {
                LinuxDeviceType::A => None,
                LinuxDeviceType::B => Some(DEV_BLOCK),
                LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
                LinuxDeviceType::P => {
                    tracing::debug!(rule = %r, "FIFO device rule skipped in the device filter");
                    continue;
                }
            };
            let acc = access_bits(r)?;
            let major = dev_number("devices.major", r.major())?;
            let minor = dev_number("devices.minor", r.minor())?;
            // Conditions, each a jump past the block when it does not hold.
            let mut conds: Vec<Insn> = Vec::new();
            if let Some(t) = ty {
                conds.push(Insn::new(JMP_JNE_K, R_TYPE, 0, 0, t));
            }
            if acc != ACC_ALL {
                conds.push(Insn::new(ALU64_MOV_X, R1, R_ACCESS, 0, 0));
                if r.allow() {
                    conds.push(Insn::new(ALU64_AND_K, R1, 0, 0, (!acc & ACC_ALL) as i32));
                    conds.push(Insn::new(JMP_JNE_K, R1, 0, 0, 0));
                } else {
                    conds.push(Insn::new(ALU64_AND_K, R1, 0, 0, acc as i32));
                    conds.push(Insn::new(JMP_JEQ_K, R1, 0, 0, 0));
                }
            }
            if let Some(m) = major {
                conds.push(Insn::new(JMP_JNE_K, R_MAJOR, 0, 0, m));
            }
            if let Some(m) = minor {
                conds.push(Insn::new(JMP_JNE_K, R_MINOR, 0, 0, m));
            }
            let unconditional = conds.is_empty();
            conds.push(Insn::new(ALU64_MOV_K, R0, 0, 0, i32::from(r.allow())));
            conds.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
            let n = conds.len();
            for (i, insn) in conds.iter_mut().enumerate() {
                if insn.code == JMP_JNE_K || insn.code == JMP_JEQ_K {
                    insn.off = (n - i - 1) as i16;
                }
            }
            insns.extend(conds);
            if unconditional {
                // Every earlier rule is shadowed by this one.
                catch_all = true;
                break;
            }
        }
        if !catch_all {
            insns.push(Insn::new(ALU64_MOV_K, R0, 0, 0, 0));
            insns.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
        }
        if insns.len() > i16::MAX as usize {
            return Err(CgroupError::invalid(
                "devices",
                "too many rules for one program",
            ));
        }
        Ok(DeviceFilter { insns })
    }

    /// The instructions.
    pub fn instructions(&self) -> &[Insn] {
        &self.insns
    }

    /// The program as the kernel takes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.insns.iter().flat_map(|i| i.to_bytes()).collect()
    }

    /// Runs the program on a device access without the kernel: `kind` is `'b'` or `'c'`,
    /// `access` a combination of `r`, `w`, `m`. Returns true when the access is allowed.
    /// Only the instructions this module emits are interpreted.
    pub fn evaluate(&self, kind: char, major: u32, minor: u32, access: &str) -> bool {
        let ty: u32 = if kind == 'b' {
            DEV_BLOCK as u32
        } else {
            DEV_CHAR as u32
        };
        let mut acc = 0u32;
        for c in access.chars() {
            acc |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => 0,
            };
        }
        let ctx = [(acc << 16) | ty, major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        while let Some(i) = self.insns.get(pc) {
            let imm = i.imm as i64 as u64;
            let (d, s) = (i.dst as usize, i.src as usize);
            match i.code {
                LDX_MEM_W => reg[d] = u64::from(ctx[(i.off / 4) as usize]),
                ALU64_AND_K => reg[d] &= imm,
                ALU64_RSH_K => reg[d] >>= imm,
                ALU64_MOV_K => reg[d] = imm,
                ALU64_MOV_X => reg[d] = reg[s],
                JMP_JNE_K if reg[d] != imm => pc += i.off as usize,
                JMP_JEQ_K if reg[d] == imm => pc += i.off as usize,
                JMP_JNE_K | JMP_JEQ_K => {}
                JMP_EXIT => return reg[0] == 1,
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc += 1;
        }
        false
    }
}

/// Loads `filter` and attaches it to the cgroup2 directory `dir` (`BPF_F_ALLOW_MULTI`),
/// then detaches the device programs that were attached there before, so an update never
/// leaves the cgroup without a filter.
pub fn attach_device_filter(dir: &Path, filter: &DeviceFilter) -> Result<(), CgroupError> {
    let cgroup = bpf::open_dir(dir)?;
    let old = bpf::query_device_programs(&cgroup, dir)?;
    let prog = bpf::load_device_program(&filter.to_bytes(), dir)?;
    bpf::attach_device_program(&cgroup, &prog, dir)?;
    let new_id = bpf::prog_id(&prog, dir)?;
    for id in old.into_iter().filter(|id| *id != new_id) {
        match bpf::prog_fd_by_id(id, dir) {
            Ok(fd) => bpf::detach_device_program(&cgroup, &fd, dir)?,
            // The program went away meanwhile.
            Err(CgroupError::Sys {
                source: nix::Error::ENOENT,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Builds the program for `rules` and attaches it to `dir`.
pub(crate) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let f = DeviceFilter::from_rules(rules)?;
    attach_device_filter(dir, &f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        t: Option<LinuxDeviceType>,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access(acc);
        if let Some(t) = t {
            b = b.typ(t);
        }
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().unwrap()
    }
    use LinuxDeviceType::{B, C, P, U};

    /// runc's default container devices after a deny-all.
    fn default_rules() -> Vec<LinuxDeviceCgroup> {
        vec![
            rule(false, None, None, None, "rwm"),
            rule(true, Some(C), Some(1), Some(3), "rwm"),
            rule(true, Some(C), Some(1), Some(5), "rwm"),
            rule(true, Some(C), Some(136), None, "rwm"),
            rule(true, Some(C), None, None, "m"),
            rule(true, Some(B), None, None, "m"),
            rule(true, Some(C), Some(5), Some(0), "rw"),
        ]
    }

    #[test]
    fn empty_rules_deny_everything() {
        let f = DeviceFilter::from_rules(&[]).unwrap();
        assert!(!f.evaluate('c', 1, 3, "r"));
        assert!(!f.evaluate('b', 8, 0, "m"));
        assert_eq!(f.instructions().len(), 8);
    }

    #[test]
    fn default_rule_set() {
        let f = DeviceFilter::from_rules(&default_rules()).unwrap();
        assert!(f.evaluate('c', 1, 3, "rw"));
        assert!(f.evaluate('c', 1, 5, "r"));
        assert!(f.evaluate('c', 136, 7, "rw"));
        assert!(f.evaluate('c', 99, 1, "m"));
        assert!(f.evaluate('b', 8, 0, "m"));
        assert!(!f.evaluate('b', 8, 0, "r"));
        assert!(!f.evaluate('c', 1, 7, "r"));
        assert!(!f.evaluate('c', 99, 1, "rm"));
        assert!(f.evaluate('c', 5, 0, "rw"));
        assert!(f.evaluate('c', 5, 0, "m")); // c *:* m
        assert!(!f.evaluate('c', 5, 1, "w"));
        // The deny-all rule makes a catch-all: nothing follows it in the program.
        let last = f.instructions()[f.instructions().len() - 2];
        assert_eq!((last.code, last.imm), (ALU64_MOV_K, 0));
    }

    #[test]
    fn last_matching_rule_wins() {
        let rules = vec![
            rule(true, None, None, None, "rwm"),
            rule(false, Some(C), Some(1), Some(3), "w"),
            rule(true, Some(C), Some(1), None, "w"),
        ];
        let f = DeviceFilter::from_rules(&rules).unwrap();
        assert!(f.evaluate('c', 1, 3, "w")); // the later allow of 1:* w wins
        assert!(f.evaluate('c', 1, 3, "r"));
        assert!(!f.evaluate('c', 1, 3, "rw")); // the allow needs a subset, the deny overlaps
        assert!(f.evaluate('b', 7, 7, "rwm")); // allow-all at the start
    }

    #[test]
    fn deny_overlap_and_allow_subset() {
        let rules = vec![
            rule(true, Some(C), Some(10), Some(200), "r"),
            rule(true, Some(C), Some(10), Some(200), "w"),
        ];
        let f = DeviceFilter::from_rules(&rules).unwrap();
        assert!(f.evaluate('c', 10, 200, "r"));
        assert!(f.evaluate('c', 10, 200, "w"));
        assert!(!f.evaluate('c', 10, 200, "rw"));
        assert!(!f.evaluate('b', 10, 200, "r"));
    }

    #[test]
    fn unbuffered_is_char_and_fifo_is_skipped() {
        let f = DeviceFilter::from_rules(&[
            rule(true, Some(U), Some(4), Some(1), "rw"),
            rule(true, Some(P), None, None, "rwm"),
        ])
        .unwrap();
        assert!(f.evaluate('c', 4, 1, "rw"));
        assert!(!f.evaluate('c', 4, 2, "r"));
        assert!(!f.evaluate('b', 4, 1, "r"));
    }

    #[test]
    fn invalid_rules() {
        assert!(DeviceFilter::from_rules(&[rule(true, None, None, None, "rx")]).is_err());
        assert!(
            DeviceFilter::from_rules(&[rule(true, Some(C), Some(1 << 33), None, "r")]).is_err()
        );
    }

    #[test]
    fn encoding() {
        let i = Insn::new(JMP_JNE_K, R_MAJOR, 0, 3, 136);
        assert_eq!(i.to_bytes(), [0x55, 0x04, 3, 0, 136, 0, 0, 0]);
        let i = Insn::new(LDX_MEM_W, R_MINOR, R1, 8, 0);
        assert_eq!(i.to_bytes(), [0x61, 0x15, 8, 0, 0, 0, 0, 0]);
        let f = DeviceFilter::from_rules(&default_rules()).unwrap();
        assert_eq!(f.to_bytes().len(), f.instructions().len() * 8);
    }
}
