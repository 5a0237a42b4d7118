//! The `bpf(2)` commands needed for cgroup v2 device programs.
//!
//! The attribute structs mirror the prefixes of `union bpf_attr` in `linux/bpf.h` that these
//! commands read; the kernel accepts a shorter struct as long as it covers the fields.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::error::CgroupError;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoByFdAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Issues `bpf(cmd, attr, sizeof(attr))`.
///
/// # Safety
/// `T` must be the `bpf_attr` layout `cmd` reads, and every pointer stored in `attr` must
/// point to memory that is valid (and writable where the kernel writes) for the length the
/// attr gives it, for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: the caller guarantees that `attr` has the layout `cmd` expects and that the
    // pointers it carries are valid; the size passed is exactly the struct's.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    Errno::result(r)
}

fn fd_from(r: libc::c_long) -> OwnedFd {
    // SAFETY: `r` was just returned by a successful bpf() call that creates a new fd, so it
    // is an open descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

fn sys_err(syscall: &'static str, path: &Path, source: Errno) -> CgroupError {
    CgroupError::Sys {
        syscall,
        path: path.to_path_buf(),
        source,
    }
}

/// Opens a cgroup directory as the target of attach/query.
pub(crate) fn open_dir(dir: &Path) -> Result<OwnedFd, CgroupError> {
    open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| sys_err("open", dir, e))
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program from its encoded instructions. `dir` only
/// names the cgroup in errors. On a verifier refusal the verifier log is logged at debug.
pub(crate) fn load_device_program(insns: &[u8], dir: &Path) -> Result<OwnedFd, CgroupError> {
    const LICENSE: &CStr = c"Apache-2.0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: (insns.len() / 8) as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"berth_device");
    // SAFETY: ProgLoadAttr is the BPF_PROG_LOAD prefix of bpf_attr; `insns` (insn_cnt * 8
    // bytes) and the NUL-terminated license outlive the call; no log buffer is given.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => Ok(fd_from(fd)),
        Err(e) => {
            let mut log = vec![0u8; 1 << 16];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            // SAFETY: as above, plus `log` is a writable buffer of log_size bytes that lives
            // until after the call.
            if let Err(_e2) = unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                tracing::debug!(verifier_log = %String::from_utf8_lossy(&log[..end]), "device program refused");
            }
            Err(sys_err("bpf(BPF_PROG_LOAD)", dir, e))
        }
    }
}

/// Attaches `prog` to the cgroup `cgroup` as a device program, next to the others.
pub(crate) fn attach_device_program(
    cgroup: &OwnedFd,
    prog: &OwnedFd,
    dir: &Path,
) -> Result<(), CgroupError> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: AttachAttr is the BPF_PROG_ATTACH prefix of bpf_attr and holds no pointers;
    // both fds are open for the call.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }
        .map(drop)
        .map_err(|e| sys_err("bpf(BPF_PROG_ATTACH)", dir, e))
}

/// Detaches the device program `prog` from `cgroup`.
pub(crate) fn detach_device_program(
    cgroup: &OwnedFd,
    prog: &OwnedFd,
    dir: &Path,
) -> Result<(), CgroupError> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: BPF_PROG_DETACH reads the same prefix as attach; no pointers, fds open.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }
        .map(drop)
        .map_err(|e| sys_err("bpf(BPF_PROG_DETACH)", dir, e))
}

/// The ids of the device programs attached directly to `cgroup`.
pub(crate) fn query_device_programs(cgroup: &OwnedFd, dir: &Path) -> Result<Vec<u32>, CgroupError> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: QueryAttr is the BPF_PROG_QUERY prefix of bpf_attr; `prog_ids` points to a
    // writable array of prog_cnt u32 that outlives the call.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }
        .map_err(|e| sys_err("bpf(BPF_PROG_QUERY)", dir, e))?;
    ids.truncate((attr.prog_cnt as usize).min(64));
    Ok(ids)
}

/// An fd for the program with id `id`.
pub(crate) fn prog_fd_by_id(id: u32, dir: &Path) -> Result<OwnedFd, CgroupError> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    // SAFETY: GetFdByIdAttr is the BPF_PROG_GET_FD_BY_ID prefix of bpf_attr, no pointers.
    unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }
        .map(fd_from)
        .map_err(|e| sys_err("bpf(BPF_PROG_GET_FD_BY_ID)", dir, e))
}

/// The id of the program behind `prog`.
pub(crate) fn prog_id(prog: &OwnedFd, dir: &Path) -> Result<u32, CgroupError> {
    // struct bpf_prog_info starts with `__u32 type; __u32 id;`.
    let mut info = [0u32; 4];
    let mut attr = InfoByFdAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: InfoByFdAttr is the BPF_OBJ_GET_INFO_BY_FD prefix of bpf_attr; `info` is a
    // writable buffer of info_len bytes that outlives the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }
        .map_err(|e| sys_err("bpf(BPF_OBJ_GET_INFO_BY_FD)", dir, e))?;
    Ok(info[1])
}
