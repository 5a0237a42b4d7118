//! Range checks of the numbers given on the command line, with the same limits as the
//! configuration's (a number that ends in a kernel type must fit it). Each is a clap value
//! parser, so a bad value is an error that names its flag and exits non-zero.

use nix::sys::resource::{getrlimit, Resource};

/// `(uid_t)-1` / `(gid_t)-1`: the kernel reads it as "leave unchanged", never as an id.
const NO_ID: u32 = u32::MAX;

/// `--preserve-fds N`: fds 3 to 3+N-1 are passed, so 3+N must stay within this process's
/// `RLIMIT_NOFILE` soft limit (no such fd could exist beyond it).
pub fn preserve_fds(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a count of file descriptors (0 or more)"))?;
    let (soft, _) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit(RLIMIT_NOFILE): {e}"))?;
    let max = soft.saturating_sub(3);
    if u64::from(n) > max {
        return Err(format!(
            "{n} is more than the {max} file descriptors after stdio that this process may \
             have open (RLIMIT_NOFILE {soft})"
        ));
    }
    Ok(n)
}

/// A user or group id: 0 to 4294967294 (`-1` is not an id).
pub fn id(s: &str) -> Result<u32, String> {
    let n: i64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a numeric id"))?;
    match u32::try_from(n) {
        Ok(id) if id != NO_ID => Ok(id),
        _ => Err(format!("{n} is outside 0..={}", NO_ID - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(id("0"), Ok(0));
        assert_eq!(id("4294967294"), Ok(4_294_967_294));
        assert!(id("4294967295").is_err());
        assert!(id("-1").is_err());
        assert!(id("4294967296").is_err());
        assert!(id("x").is_err());
    }

    #[test]
    fn preserved_fds() {
        assert_eq!(preserve_fds("0"), Ok(0));
        assert_eq!(preserve_fds("2"), Ok(2));
        assert!(preserve_fds("4294967295").is_err());
        assert!(preserve_fds("-1").is_err());
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert!(preserve_fds(&(soft - 2).to_string()).is_err());
        assert!(preserve_fds(&(soft - 3).to_string()).is_ok());
    }
}
