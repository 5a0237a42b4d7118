//! Whether a created container's init is really waiting for `start`.
//!
//! `create` may report success only once init blocks in its `open` of the exec fifo (the
//! OCI create rule, and runc's behaviour: runc's init fails inside `create` when it cannot
//! wait). Init reaches that `open` after its last message to the runtime (and, with the exec
//! stub, after an `execve`), so anything that bites between the two (an `RLIMIT_NOFILE` that
//! leaves no fd free, an `RLIMIT_AS` too small for the stub, a seccomp profile that denies
//! `openat` or `write`) would otherwise surface as a container that is already stopped when
//! `create` exits 0. [`until_waiting`] watches `/proc/PID/syscall` instead: the kernel shows
//! the system call only of a task that is asleep in it, and the only system call init sleeps
//! in once it is ready is that `openat`.

use std::time::{Duration, Instant};

/// `openat` on x86_64 (the exec stub's only `open`, and what `open(2)` ends in).
const SYS_OPENAT: i64 = 257;

/// How [`until_waiting`] ended when init is not waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotWaiting {
    /// Init is dead (a zombie or reaped): its exit status says why.
    Gone,
    /// Still not asleep in the fifo's `open` after the limit.
    Timeout,
    /// `/proc/PID/syscall` cannot tell (not readable for this caller, or no such file): the
    /// caller falls back to checking that init lives.
    CannotTell,
}

/// Wait (at most `limit`) until process `pid` (started at `start_time`, in clock ticks as in
/// `/proc/PID/stat`) sleeps in `openat`, which for a ready init is the exec fifo's open that
/// `start` completes.
pub(crate) fn until_waiting(pid: i32, start_time: u64, limit: Duration) -> Result<(), NotWaiting> {
    let deadline = Instant::now() + limit;
    let path = format!("/proc/{pid}/syscall");
    let mut pause = Duration::from_micros(50);
    loop {
        if !crate::state::is_alive(pid, start_time) || is_zombie(pid) {
            return Err(NotWaiting::Gone);
        }
        match std::fs::read_to_string(&path) {
            Ok(text) if sleeps_in_openat(&text) => {
                // Asleep in openat: but a task that died meanwhile shows its last call too.
                return if is_zombie(pid) {
                    Err(NotWaiting::Gone)
                } else {
                    Ok(())
                };
            }
            Ok(_) => {}
            // Gone between the checks.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(NotWaiting::Gone),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if crate::state::is_alive(pid, start_time) {
                    NotWaiting::CannotTell
                } else {
                    NotWaiting::Gone
                })
            }
            Err(_) => return Err(NotWaiting::CannotTell),
        }
        if Instant::now() >= deadline {
            return Err(NotWaiting::Timeout);
        }
        // Polling a process's state (nothing to wait on): short pauses, growing to 5 ms.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// `/proc/PID/syscall` of a task asleep in `openat`: `257 0x... ...`; a running task reads
/// `running`, one outside any system call `-1 ...`.
fn sleeps_in_openat(text: &str) -> bool {
    text.split_whitespace()
        .next()
        .and_then(|nr| nr.parse::<i64>().ok())
        == Some(SYS_OPENAT)
}

fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the command name, which is in parentheses and may hold any byte.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_none_or(|s| s == "Z" || s == "X" || s == "x")
}

/// Why the exec stub ended before it was waiting for `start`, from how it ended: with an errno
/// as its status (the stub's convention for a failure to open the exec fifo) or by a signal;
/// with the likely cause in `spec` (its rlimits or seccomp profile).
pub(crate) fn stub_death(
    status: nix::sys::wait::WaitStatus,
    spec: &oci_spec::runtime::Spec,
) -> String {
    use nix::errno::Errno;
    use nix::sys::wait::WaitStatus;
    let process = spec.process().as_ref();
    let rlimit = |want: oci_spec::runtime::PosixRlimitType| {
        process
            .and_then(|p| p.rlimits().as_ref())
            .and_then(|l| l.iter().find(|l| l.typ() == want))
            .map(|l| l.soft())
    };
    let seccomp = spec.linux().as_ref().is_some_and(|l| l.seccomp().is_some());
    let seccomp_hint = " (the seccomp profile may deny a system call the exec stub makes to wait: \
                        openat, write, close, prctl, geteuid)";
    match status {
        WaitStatus::Exited(_, code) if (1..=133).contains(&code) => {
            let errno = Errno::from_raw(code);
            let mut m = format!(
                "the container's init (the exec stub) could not open the exec fifo to wait for \
                 start: {} ({errno:?})",
                errno.desc().to_lowercase()
            );
            match errno {
                Errno::EMFILE => {
                    if let Some(n) = rlimit(oci_spec::runtime::PosixRlimitType::RlimitNofile) {
                        m.push_str(&format!(
                            " (process.rlimits RLIMIT_NOFILE soft limit {n} leaves no file \
                             descriptor free for it)"
                        ));
                    }
                }
                Errno::ENOMEM => {
                    if let Some(n) = rlimit(oci_spec::runtime::PosixRlimitType::RlimitAs) {
                        m.push_str(&format!(
                            " (process.rlimits RLIMIT_AS soft limit {n} is too small)"
                        ));
                    }
                }
                Errno::EPERM | Errno::EACCES | Errno::ENOSYS if seccomp => m.push_str(seccomp_hint),
                _ => {}
            }
            m
        }
        WaitStatus::Exited(_, code) => format!(
            "the container's init (the exec stub) exited with status {code} before it was \
             waiting for start"
        ),
        WaitStatus::Signaled(_, sig, _) => {
            let mut m = format!(
                "the container's init (the exec stub) was killed by {} before it was waiting for \
                 start",
                sig.as_str()
            );
            if let Some(n) = rlimit(oci_spec::runtime::PosixRlimitType::RlimitAs) {
                m.push_str(&format!(
                    " (process.rlimits RLIMIT_AS soft limit {n} may be too small for it)"
                ));
            } else if seccomp && sig == nix::sys::signal::Signal::SIGSYS {
                m.push_str(seccomp_hint);
            }
            m
        }
        other => format!(
            "the container's init (the exec stub) ended before it was waiting for start \
             ({other:?})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_system_call_number() {
        assert!(sleeps_in_openat(
            "257 0xffffff9c 0x7ffd2 0x80001 0x0 0x0 0x0 0x7ffd 0x40107a\n"
        ));
        assert!(!sleeps_in_openat("running\n"));
        assert!(!sleeps_in_openat("-1 0x7ffd 0x40107a\n"));
        assert!(!sleeps_in_openat(
            "0 0x3 0x7ffd 0x1 0x0 0x0 0x0 0x7ffd 0x40107a\n"
        ));
    }

    #[test]
    fn a_process_asleep_in_a_fifo_open_is_waiting_and_a_dead_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // A writer that blocks in open until a reader comes, as init does.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3>{}", fifo.display()))
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = crate::state::process_start_time(pid).unwrap();
        assert_eq!(until_waiting(pid, start, Duration::from_secs(10)), Ok(()));
        drop(std::fs::File::open(&fifo).unwrap());
        child.wait().unwrap();
        assert_eq!(
            until_waiting(pid, start, Duration::from_secs(10)),
            Err(NotWaiting::Gone)
        );
        // One that never opens anything is not waiting.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = sleeper.id() as i32;
        let start = crate::state::process_start_time(pid).unwrap();
        assert_eq!(
            until_waiting(pid, start, Duration::from_millis(200)),
            Err(NotWaiting::Timeout)
        );
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }
}
