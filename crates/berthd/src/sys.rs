//! The few raw calls berthd makes that neither std nor nix wraps safely.

use nix::errno::Errno;

/// Restore the default action of SIGPIPE (Rust's start-up code ignores it, and an ignored
/// signal stays ignored across exec: the container's processes must get the default).
pub fn default_sigpipe() -> Result<(), Errno> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installing SIG_DFL runs no handler code, so no async-signal-safety concern;
    // the monitor is single-threaded when it calls this.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(drop)
}

/// Fork; the parent exits at once (status 0) and the child goes on, no longer a child of
/// whoever started us (the daemon does not own its monitors: they outlive it).
///
/// Must be called while the process is single-threaded (the monitor, before it creates
/// anything).
pub fn detach() -> Result<(), Errno> {
    // SAFETY: the monitor is single-threaded here (it is a freshly exec'd process that has
    // started no thread), so the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { .. } => {
            // SAFETY: `_exit` ends the process without running atexit handlers or
            // destructors, which the child (that carries on) still owns the state of.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Child => Ok(()),
    }
}
