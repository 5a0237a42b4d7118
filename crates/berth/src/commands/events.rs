//! `berth events`: OOM notifications and statistics as JSON lines, like runc's.

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_runtime::{Container, Status};
use clap::Args;
use serde_json::json;

use crate::cli::GlobalOpts;

/// `events [--stats] [--interval D] ID`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print the statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between statistics events (`5s`, `500ms`, `1m`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The container id.
    pub id: String,
}

/// Parse a Go-style duration: a number with `ms`, `s`, `m` or `h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}")),
    };
    if secs <= 0.0 {
        return Err("duration must be positive".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration {s:?} is too long"))
}

fn stats_event(id: &str, c: &Container) -> Result<serde_json::Value> {
    let stats = c.stats()?;
    Ok(json!({"type": "stats", "id": id, "data": stats}))
}

/// `berth events`.
pub fn run(g: &GlobalOpts, a: EventsArgs) -> Result<u8> {
    let root = g.root();
    let c = Container::load(&root, &a.id)?;
    if c.status()? == Status::Stopped {
        anyhow::bail!("container {} is not running", a.id);
    }
    if a.stats {
        crate::output::line(stats_event(&a.id, &c)?)?;
        return Ok(0);
    }
    let mut watcher = c.cgroup()?.oom_events().context("watch OOM events")?;
    drop(c);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(berth_cgroups::OomEvent::Oom) = watcher.wait() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    let oom = || crate::output::line(json!({"type": "oom", "id": a.id}));
    loop {
        match rx.recv_timeout(a.interval) {
            Ok(()) => oom()?,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
        }
        let c = match Container::load(&root, &a.id) {
            Ok(c) if c.status().is_ok_and(|s| s != Status::Stopped) => c,
            _ => {
                // An OOM kill often ends the container: report what the watcher saw last,
                // until it ends with the cgroup (or briefly, if it does not notice).
                while let Ok(()) = rx.recv_timeout(Duration::from_millis(200)) {
                    oom()?;
                }
                return Ok(0);
            }
        };
        if let Ok(ev) = stats_event(&a.id, &c) {
            crate::output::line(ev)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
    }
}
