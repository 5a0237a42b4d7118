//! Scheduling system calls that neither `nix` nor `libc` wrap: `ioprio_set(2)`,
//! `sched_setattr(2)` and `set_mempolicy(2)`. Each acts on the calling thread only (which, in
//! the single-threaded container child, is the whole process) and is inherited across `fork`
//! and kept across `execve`.

use nix::errno::Errno;

/// `IOPRIO_WHO_PROCESS` of `<linux/ioprio.h>`: `who` is a thread id, 0 for the caller.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// The I/O class sits above the 13 bits of class data (`IOPRIO_CLASS_SHIFT`).
const IOPRIO_CLASS_SHIFT: u32 = 13;

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, class << 13 | level)`: the I/O priority of the calling
/// thread. `class` is `IOPRIO_CLASS_RT` (1), `_BE` (2) or `_IDLE` (3); `level` 0 (highest)
/// to 7. EPERM for the RT class without `CAP_SYS_ADMIN`, EINVAL for a class or level the
/// kernel does not know.
pub fn ioprio_set_self(class: u32, level: u32) -> Result<(), Errno> {
    let prio = (class << IOPRIO_CLASS_SHIFT) | level;
    // SAFETY: ioprio_set takes three integers and touches no memory of ours; `who` 0 names the
    // calling thread, so no other process can be affected.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_int,
            prio as libc::c_int,
        )
    };
    Errno::result(ret).map(drop)
}

/// `struct sched_attr` of `<linux/sched/types.h>`, in its second version
/// (`SCHED_ATTR_SIZE_VER1`, 56 bytes, with the utilization clamps).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    /// Size of this structure, set by [`sched_setattr_self`].
    pub size: u32,
    /// `SCHED_OTHER` (0), `SCHED_FIFO` (1), `SCHED_RR` (2), `SCHED_BATCH` (3), `SCHED_ISO`
    /// (4, reserved), `SCHED_IDLE` (5), `SCHED_DEADLINE` (6).
    pub policy: u32,
    /// `SCHED_FLAG_*` bits.
    pub flags: u64,
    /// Nice value, -20 to 19 (`SCHED_OTHER`, `SCHED_BATCH`).
    pub nice: i32,
    /// Static priority, 1 to 99 (`SCHED_FIFO`, `SCHED_RR`), else 0.
    pub priority: u32,
    /// `SCHED_DEADLINE` runtime, nanoseconds.
    pub runtime: u64,
    /// `SCHED_DEADLINE` relative deadline, nanoseconds.
    pub deadline: u64,
    /// `SCHED_DEADLINE` period, nanoseconds (0: the deadline).
    pub period: u64,
    /// Minimum utilization clamp (with `SCHED_FLAG_UTIL_CLAMP_MIN`).
    pub util_min: u32,
    /// Maximum utilization clamp (with `SCHED_FLAG_UTIL_CLAMP_MAX`).
    pub util_max: u32,
}

/// `sched_setattr(0, attr, 0)`: the scheduling policy and attributes of the calling thread.
/// EPERM for a real-time or deadline policy (or a lower nice value) without `CAP_SYS_NICE`, or
/// a deadline task whose affinity is narrower than its root domain; EINVAL for a policy or
/// parameter the kernel refuses (`SCHED_ISO` is not implemented by Linux); EBUSY when the
/// deadline bandwidth is not available.
pub fn sched_setattr_self(attr: &SchedAttr) -> Result<(), Errno> {
    let mut attr = *attr;
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a live, initialised `#[repr(C)]` copy whose layout is the kernel's
    // `struct sched_attr` (VER1) and whose `size` says so; the kernel only reads it. pid 0 is the
    // calling thread.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0 as libc::pid_t,
            &attr as *const SchedAttr,
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// `set_mempolicy(mode | flags, nodemask, maxnode)`: the NUMA memory policy of the calling
/// thread. `nodes` is the node mask, bit `n` of word `n / 64` for node `n` (empty for no
/// nodes). EINVAL for a mode, flag or node set the kernel refuses (a node that is offline or
/// outside the cpuset's mems, nodes with `MPOL_DEFAULT`/`MPOL_LOCAL`, none with `MPOL_BIND`).
pub fn set_mempolicy_self(mode: i32, flags: i32, nodes: &[libc::c_ulong]) -> Result<(), Errno> {
    let bits = nodes.len() * libc::c_ulong::BITS as usize;
    // The kernel reads maxnode - 1 bits (get_nodes' historic off-by-one, which numactl's
    // callers compensate for in the same way).
    let maxnode = if nodes.is_empty() { 0 } else { bits + 1 };
    let mask = if nodes.is_empty() {
        std::ptr::null()
    } else {
        nodes.as_ptr()
    };
    // SAFETY: `mask` is null (with maxnode 0) or points to `nodes`, which holds `bits` readable
    // bits for as long as the call runs; the kernel reads at most maxnode - 1 = `bits` bits and
    // writes nothing.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            mode | flags,
            mask,
            maxnode as libc::c_ulong,
        )
    };
    Errno::result(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_attr_is_the_kernels_ver1() {
        // SCHED_ATTR_SIZE_VER1.
        assert_eq!(std::mem::size_of::<SchedAttr>(), 56);
    }

    #[test]
    fn calls_on_self_that_need_no_privilege() {
        // Best effort, level 4 (the default a nice 0 process has), and SCHED_OTHER nice 0, are
        // allowed to anyone; the memory policy default with no nodes too.
        ioprio_set_self(2, 4).unwrap();
        sched_setattr_self(&SchedAttr::default()).unwrap();
        set_mempolicy_self(0, 0, &[]).unwrap();
        // Class 7 does not exist (levels past 7 are not refused by the kernel: since 6.5 the
        // bits above the level are I/O hints, which is why callers must check the level).
        assert_eq!(ioprio_set_self(7, 0), Err(Errno::EINVAL));
        // MPOL_BIND needs a node.
        assert_eq!(set_mempolicy_self(2, 0, &[]), Err(Errno::EINVAL));
    }
}
