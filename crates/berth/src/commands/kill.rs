//! `berth kill`.

use anyhow::{bail, Result};
use berth_runtime::ContainerRef;
use clap::Args;
use nix::sys::signal::Signal;

use crate::cli::GlobalOpts;

/// `kill [--all] ID [SIGNAL]`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Send the signal to every process of the container.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// The container id.
    pub id: String,
    /// Signal name (`KILL`, `SIGKILL`) or number; default SIGTERM.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// Parse a signal as runc does: a number, or a name with or without the `SIG` prefix. 0 is
/// accepted (it checks that the process exists, as liveness probes use it); other numbers must
/// be signals of this kernel (1..=SIGRTMAX).
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.trim().parse::<i64>() {
        if n < 0 || n > i64::from(libc::SIGRTMAX()) {
            bail!(
                "invalid signal {s:?}: a signal number is 0 to {}",
                libc::SIGRTMAX()
            );
        }
        return Ok(n as i32);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    match name.parse::<Signal>() {
        Ok(sig) => Ok(sig as i32),
        Err(_) => bail!("unknown signal {s:?}"),
    }
}

/// `berth kill`.
pub fn run(g: &GlobalOpts, a: KillArgs) -> Result<u8> {
    let sig = parse_signal(&a.signal)?;
    ContainerRef::new(g.root(), &a.id).kill(sig, a.all)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("hup").unwrap(), 1);
        assert!(parse_signal("NOPE").is_err());
        assert_eq!(parse_signal("0").unwrap(), 0);
        assert!(parse_signal("65").is_err());
        assert!(parse_signal("-1").is_err());
        assert!(parse_signal("4294967305").is_err());
    }
}
