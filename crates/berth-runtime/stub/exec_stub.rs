//! berth's exec stub: the last program a container process runs before its own.
//!
//! The runtime does all of a container process's setup as itself, then executes this stub from a
//! sealed memfd, and the stub executes the container's program. So the program never starts with
//! the runtime binary as `/proc/self/exe` (a `#!/proc/self/exe` program gets this stub, which
//! cannot be written), and while the container waits to be started, its init is this stub rather
//! than the runtime (CVE-2019-5736).
//!
//! It is built by `build.rs` as a freestanding static executable: no libc, so it starts in
//! microseconds, and it makes only the system calls below.
//!
//! Arguments: `argv[0]` is `berth-exec`, or `berth-exec:FD` with the exec fifo's fd (an `O_PATH`
//! fd, reopened through `/proc/self/fd` to wait for `start`); `argv[1]` is the program's path and
//! `argv[2..]` the program's own argv. The environment is the program's.
//!
//! Exit status: a failure to wait for `start` (the fifo cannot be opened or written) exits
//! with the errno itself as the status (1..=133; `EINVAL` for a bad fifo fd), so that the
//! runtime, which is still watching in `create`, can name the cause (the program never ran);
//! a failure to exec the program exits 127 for a missing one, else 126, as shells do.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const SYS_WRITE: usize = 1;
const SYS_CLOSE: usize = 3;
const SYS_EXECVE: usize = 59;
const SYS_GETEUID: usize = 107;
const SYS_PRCTL: usize = 157;
const SYS_EXIT_GROUP: usize = 231;
const SYS_OPENAT: usize = 257;
const SYS_RT_SIGACTION: usize = 13;
const SYS_GETPID: usize = 39;
const SYS_KILL: usize = 62;

const SA_RESTORER: u64 = 0x0400_0000;
const SA_NODEFER: u64 = 0x4000_0000;
const SA_RESETHAND: u64 = 0x8000_0000;

/// The signals whose default action ends a process (`signal(7)`): all but KILL and STOP (which
/// cannot be caught), CHLD, CONT, URG and WINCH (ignored) and TSTP, TTIN and TTOU (stop); and
/// the real-time signals 34..=64.
const TERMINATING: [u8; 21] = [
    1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 24, 25, 26, 27, 29, 30,
];
const SIGSYS: usize = 31;
const SIGRTMIN: usize = 34;
const SIGRTMAX: usize = 64;

/// The kernel's `struct sigaction` on x86_64.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

const AT_FDCWD: isize = -100;
const O_WRONLY: usize = 0o1;
const O_CLOEXEC: usize = 0o2000000;
const EINTR: isize = 4;
const EINVAL: isize = 22;
const PR_SET_DUMPABLE: usize = 4;

// The kernel starts us with the stack pointer at argc; hand it to `stub_main` with the stack
// aligned as the C ABI wants.
global_asm!(
    ".globl _start",
    "_start:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym stub_main,
);

/// # Safety
/// `sp` is the initial stack pointer the kernel gave `_start`.
unsafe extern "C" fn stub_main(sp: *const usize) -> ! {
    // SAFETY: the kernel lays out argc, argv[argc + 1] (NULL-terminated), then envp.
    let (argc, argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        (argc, argv, argv.add(argc + 1))
    };
    // SAFETY: argv[0], if present, is a NUL-terminated string.
    let control = if argc > 0 { unsafe { cstr(*argv) } } else { b"" };
    if argc < 3 || !control.starts_with(b"berth-exec") {
        // Not started by the runtime: e.g. a container program `#!/proc/self/exe`.
        fail(b"this is berth's exec stub, not a program", b"", 0);
    }
    // SAFETY: argc >= 3, so argv[1] is a NUL-terminated string.
    let path = unsafe { *argv.add(1) };
    if let Some(fd) = parse_fd(control) {
        wait_for_start(fd);
    }
    default_signal_dispositions();
    // SAFETY: path, argv + 2 and envp are the NULL-terminated arrays the kernel gave us.
    let ret = unsafe { syscall3(SYS_EXECVE, path as usize, argv.add(2) as usize, envp as usize) };
    // SAFETY: path is a NUL-terminated string.
    fail(b"exec ", unsafe { cstr(path) }, -ret);
}

/// Block until the runtime's `start` opens the fifo for reading, then tell it we go.
fn wait_for_start(fifo: usize) {
    end_on_terminating_signals();
    // While we wait, a process exec'd into the container could open our /proc files (the
    // fifo fd is a host file). Root can still reopen the fifo through /proc/self/fd when we
    // are not dumpable; another user cannot (the directory becomes root's), so only root
    // hides. Best effort: the program's exec resets it anyway.
    // SAFETY: plain system calls without pointers.
    unsafe {
        if syscall3(SYS_GETEUID, 0, 0, 0) == 0 {
            syscall3(SYS_PRCTL, PR_SET_DUMPABLE, 0, 0);
        }
    }
    // "/proc/self/fd/" and up to 10 digits, NUL-terminated.
    let mut buf = [0u8; 32];
    let prefix = b"/proc/self/fd/";
    let mut n = 0;
    while n < prefix.len() {
        buf[n] = prefix[n];
        n += 1;
    }
    let mut digits = [0u8; 10];
    let mut d = 0;
    let mut v = fifo;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 || d == digits.len() {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        buf[n] = digits[d];
        n += 1;
    }
    let fd = loop {
        // SAFETY: buf is NUL-terminated.
        let fd = unsafe {
            syscall3(
                SYS_OPENAT,
                AT_FDCWD as usize,
                buf.as_ptr() as usize,
                O_WRONLY | O_CLOEXEC,
            )
        };
        if fd != -EINTR {
            break fd;
        }
    };
    if fd < 0 {
        fail_waiting(b"open exec fifo", -fd);
    }
    // SAFETY: writing one byte from a static.
    let w = unsafe { syscall3(SYS_WRITE, fd as usize, b"0".as_ptr() as usize, 1) };
    if w < 0 {
        fail_waiting(b"write exec fifo", -w);
    }
    // SAFETY: closing fds we own; the program must not inherit the fifo.
    unsafe {
        syscall3(SYS_CLOSE, fd as usize, 0, 0);
        syscall3(SYS_CLOSE, fifo, 0, 0);
    }
}

/// While we wait, a signal whose default action ends a process ends us, as it would end any
/// process, also when we are the init of a pid namespace (whose default actions the kernel
/// skips): `kill ID TERM` of a created container ends it, as runc's Go init dies of it. The
/// program's exec resets these handlers to the default.
fn end_on_terminating_signals() {
    let act = KernelSigaction {
        handler: on_terminating_signal as *const () as usize,
        // Reset to the default on entry, and not blocked in the handler: its kill() of
        // ourselves then ends us at once wherever the kernel allows it.
        flags: SA_RESTORER | SA_NODEFER | SA_RESETHAND,
        restorer: never_returns as *const () as usize,
        mask: 0,
    };
    let all = TERMINATING
        .iter()
        .map(|&s| s as usize)
        .chain(core::iter::once(SIGSYS))
        .chain(SIGRTMIN..=SIGRTMAX);
    for sig in all {
        // SAFETY: act is a valid kernel sigaction that lives across the call; the handler and
        // restorer are functions of this program that never return.
        unsafe {
            syscall4(
                SYS_RT_SIGACTION,
                sig,
                &act as *const KernelSigaction as usize,
                0,
                8,
            )
        };
    }
}

/// Every signal but KILL and STOP back to its default action, so that nothing the runtime or
/// its caller ignores (SIGPIPE, glibc's internal 32 and 33) reaches the program: runc's programs
/// start so (its Go init's handlers are reset by the exec).
fn default_signal_dispositions() {
    let act = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=SIGRTMAX {
        if sig == 9 || sig == 19 {
            continue; // SIGKILL, SIGSTOP
        }
        // SAFETY: act is a valid kernel sigaction that lives across the call.
        unsafe {
            syscall4(
                SYS_RT_SIGACTION,
                sig,
                &act as *const KernelSigaction as usize,
                0,
                8,
            )
        };
    }
}

/// A terminating signal while we wait for start: die of it (the disposition is the default
/// again); as the init of a pid namespace, which the kernel does not let die of its own
/// signal, exit with 128 + the signal's number as shells report a signal death.
extern "C" fn on_terminating_signal(sig: i32) {
    // SAFETY: plain system calls without pointers.
    unsafe {
        let pid = syscall3(SYS_GETPID, 0, 0, 0);
        syscall3(SYS_KILL, pid as usize, sig as usize, 0);
    }
    exit(128 + sig as usize)
}

/// The signal frame's return address: never used, the handler never returns.
extern "C" fn never_returns() {
    exit(128)
}

/// The fifo fd from `argv[0]`: `berth-exec:FD`, or `None` for a bare `berth-exec`.
fn parse_fd(s: &[u8]) -> Option<usize> {
    let mut digits = None;
    for (i, &c) in s.iter().enumerate() {
        if c == b':' {
            digits = Some(&s[i + 1..]);
        }
    }
    let digits = digits?;
    if digits.is_empty() || digits.len() > 9 {
        fail_waiting(b"bad fifo fd", EINVAL);
    }
    let mut v = 0usize;
    for &c in digits {
        if !c.is_ascii_digit() {
            fail_waiting(b"bad fifo fd", EINVAL);
        }
        v = v * 10 + (c - b'0') as usize;
    }
    Some(v)
}

/// Say on stderr why we could not wait for `start`, and exit with the errno as the status
/// (see the module docs): the runtime's `create` reads it.
fn fail_waiting(what: &[u8], errno: isize) -> ! {
    say(what, b"", errno);
    let code = if (1..=133).contains(&errno) {
        errno as usize
    } else {
        EINVAL as usize
    };
    exit(code)
}

/// Say what failed on stderr (the container's, where the runtime's own messages would go once
/// nobody listens) and exit 127 for a missing program, else 126, as shells do.
fn fail(what: &[u8], arg: &[u8], errno: isize) -> ! {
    say(what, arg, errno);
    exit(if errno == 2 { 127 } else { 126 })
}

/// `berth: WHAT ARG: ERRNO MESSAGE` on stderr (the container's, where the runtime's own
/// messages would go once nobody listens).
fn say(what: &[u8], arg: &[u8], errno: isize) {
    let (msg, unnamed): (&[u8], bool) = match errno {
        0 => (&b""[..], false),
        1 => (b": operation not permitted (EPERM)", false),
        2 => (b": no such file or directory (ENOENT)", false),
        4 => (b": interrupted system call (EINTR)", false),
        5 => (b": input/output error (EIO)", false),
        6 => (b": no such device or address (ENXIO)", false),
        7 => (b": argument list too long (E2BIG)", false),
        8 => (b": exec format error (ENOEXEC)", false),
        9 => (b": bad file descriptor (EBADF)", false),
        11 => (b": resource temporarily unavailable (EAGAIN)", false),
        12 => (b": cannot allocate memory (ENOMEM)", false),
        13 => (b": permission denied (EACCES)", false),
        14 => (b": bad address (EFAULT)", false),
        19 => (b": no such device (ENODEV)", false),
        20 => (b": not a directory (ENOTDIR)", false),
        21 => (b": is a directory (EISDIR)", false),
        22 => (b": invalid argument (EINVAL)", false),
        23 => (b": too many open files in system (ENFILE)", false),
        24 => (b": too many open files (EMFILE)", false),
        26 => (b": text file busy (ETXTBSY)", false),
        27 => (b": file too large (EFBIG)", false),
        32 => (b": broken pipe (EPIPE)", false),
        36 => (b": file name too long (ENAMETOOLONG)", false),
        38 => (b": function not implemented (ENOSYS)", false),
        40 => (b": too many levels of symbolic links (ELOOP)", false),
        80 => (b": accessing a corrupted shared library (ELIBBAD)", false),
        _ => (b": errno ", true),
    };
    // The number, for an errno the table does not name.
    let mut num = [0u8; 20];
    let mut n = num.len();
    if unnamed {
        let mut v = errno.unsigned_abs();
        loop {
            n -= 1;
            num[n] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 || n == 0 {
                break;
            }
        }
    }
    for part in [&b"berth: "[..], what, arg, msg, &num[n..], b"\n"] {
        // SAFETY: writing a valid slice to fd 2; failures are ignored (nothing else to do).
        unsafe { syscall3(SYS_WRITE, 2, part.as_ptr() as usize, part.len()) };
    }
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group does not return.
    unsafe { syscall3(SYS_EXIT_GROUP, code, 0, 0) };
    loop {}
}

/// The bytes of a NUL-terminated string, without the NUL.
///
/// # Safety
/// `s` is a NUL-terminated string that lives for the rest of the process.
unsafe fn cstr(s: *const u8) -> &'static [u8] {
    let mut n = 0;
    // SAFETY: the caller's: we stop at the NUL. (A volatile read keeps the compiler from
    // turning the loop into a call to `strlen`, which nothing here provides.)
    unsafe {
        while core::ptr::read_volatile(s.add(n)) != 0 {
            n += 1;
        }
        core::slice::from_raw_parts(s, n)
    }
}

/// A raw system call with up to three arguments; returns the kernel's result (`-errno` on error).
///
/// # Safety
/// The arguments must be valid for the call.
unsafe fn syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller's; the syscall instruction clobbers rcx and r11 only.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw system call with four arguments (the fourth in r10), as [`syscall3`].
///
/// # Safety
/// The arguments must be valid for the call.
unsafe fn syscall4(nr: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller's; the syscall instruction clobbers rcx and r11 only.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail(b"internal error", b"", 0)
}
