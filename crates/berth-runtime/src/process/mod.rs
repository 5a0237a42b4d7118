//! The container's processes: the init process and its setup, the parent/child channel and
//! the terminal.

pub mod channel;
pub mod console;
pub mod exec;
pub mod init;
pub mod sched;
pub(crate) mod waiting;

/// Close every fd from `first` up except those in `keep`: whatever the runtime had open (the
/// state directory's lock, log files, ...) must not live on in a container process.
pub(crate) fn close_fds_except(first: std::os::fd::RawFd, keep: &[Option<std::os::fd::RawFd>]) {
    let mut keep: Vec<std::os::fd::RawFd> = keep
        .iter()
        .flatten()
        .copied()
        .filter(|&fd| fd >= first)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    // The ranges between the kept fds, then everything above the last one.
    let mut from = first;
    let mut ranges = Vec::with_capacity(keep.len() + 1);
    for &fd in &keep {
        if fd > from {
            ranges.push((from, fd - 1));
        }
        from = fd + 1;
    }
    ranges.push((from, std::os::fd::RawFd::MAX));
    if ranges
        .iter()
        .all(|&(a, b)| crate::sys::close_range(a, b).is_ok())
    {
        return;
    }
    // Without close_range (Linux < 5.9): whatever /proc/self/fd lists.
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<std::os::fd::RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        // The read_dir's own fd is in the list and already closed: EBADF is fine.
        if fd >= first && keep.binary_search(&fd).is_err() {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// End a container-side child after a setup failure: tell the runtime, or, once `create` has
/// returned and nobody listens on the channel, say it on stderr (where the container's output
/// goes). `_exit`, not `exit`: the atexit handlers and stdio buffers are the runtime's, copied
/// into this child by clone.
pub(crate) fn report_and_exit(
    chan: &channel::Channel,
    what: &str,
    err: crate::error::SetupError,
) -> ! {
    if chan.send(&channel::ToParent::Failed(err.clone())).is_err() {
        eprintln!("berth: {what}: {err}");
    }
    crate::sys::exit_now(1)
}

/// A failed [`berth_cgroups::SelfJoin::join_v1`] as a container process reports it: the file, and the errno where there is one.
pub(crate) fn cgroup_join_error(e: berth_cgroups::CgroupError) -> crate::error::SetupError {
    match e {
        berth_cgroups::CgroupError::Write { path, source, .. } => match source.raw_os_error() {
            Some(n) => crate::error::SetupError::sys(
                "cgroup",
                format!("join {}", path.display()),
                nix::errno::Errno::from_raw(n),
            ),
            None => crate::error::SetupError::msg(
                "cgroup",
                format!("join {}: {source}", path.display()),
            ),
        },
        other => crate::error::SetupError::msg("cgroup", other.to_string()),
    }
}
