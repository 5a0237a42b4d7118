//! `docker top`: the host's `ps` run over the container's processes, as dockerd 20.10 does.

use super::Daemon;
use crate::error::Error;

/// What `docker top` answers: ps's column titles and one row per process of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    /// ps's header, split on ASCII whitespace (`UID PID PPID C STIME TTY TIME CMD`).
    pub titles: Vec<String>,
    /// The container's processes, each with as many fields as titles (the last takes the
    /// rest of the line, spaces kept single).
    pub processes: Vec<Vec<String>>,
}

impl Daemon {
    /// `ps ARGS` (default `-ef`) over the processes of container `name`, as dockerd's
    /// `ContainerTop`: first with `-q PIDS`, then (options such as `f` refuse `-q`) over all
    /// processes, keeping the container's rows (and the thread rows after them, `-m`).
    /// Errors: 409 when it is not running; 500 for a `KEY=PID...` format other than `pid`,
    /// for a failed ps (its first stderr line, as `ps: ...`) and for output without a PID
    /// column.
    pub async fn top(&self, name: &str, ps_args: Option<&str>) -> Result<Top, Error> {
        let entry = self.get(name)?;
        if !entry.record().state.running {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                entry.id
            )));
        }
        let args = ps_args
            .filter(|a| !a.is_empty())
            .unwrap_or("-ef")
            .to_owned();
        validate_ps_args(&args)?;
        let root = self.paths.runtime_root();
        let id = entry.id.clone();
        tokio::task::spawn_blocking(move || {
            // One lock (load); the cgroup and its processes are read without it.
            let c = berth_runtime::Container::load(&root, &id)
                .map_err(|e| Error::internal("list the container's processes", e))?;
            let cg = c
                .cgroup()
                .map_err(|e| Error::internal("list the container's processes", e))?;
            let pids: Vec<i32> = c.own_processes(cg.as_ref());
            let split: Vec<&str> = args.split(' ').collect();
            let q = format!(
                "-q{}",
                pids.iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let run = |extra: Option<&str>| {
                std::process::Command::new("ps")
                    .args(&split)
                    .args(extra)
                    .output()
                    .map_err(|e| Error::internal("run ps", e))
            };
            let mut out = run(Some(&q))?;
            if !out.status.success() {
                out = run(None)?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    let first = err.lines().next().filter(|l| !l.is_empty());
                    return Err(Error::Internal {
                        what: "ps".into(),
                        cause: first.map_or_else(|| format!("{}", out.status), str::to_owned),
                    });
                }
            }
            parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
        })
        .await
        .map_err(|e| Error::internal("top", e))?
    }
}

/// dockerd's `validatePSArgs`: a `KEY=PID...` user format (renaming the PID column) is only
/// allowed for `pid`, the column the rows are matched by.
fn validate_ps_args(args: &str) -> Result<(), Error> {
    // \s+([^\s]*)=\s*(PID[^\s]*) in dockerd's words.
    for (i, _) in args.match_indices('=') {
        let before = &args[..i];
        let key_start = before
            .rfind(|c: char| c.is_ascii_whitespace())
            .map(|p| p + 1);
        let Some(ks) = key_start else { continue };
        let key = &before[ks..];
        let value = args[i + 1..].trim_start();
        let value: String = value
            .chars()
            .take_while(|c| !c.is_ascii_whitespace())
            .collect();
        if value.starts_with("PID") && key != "pid" {
            return Err(Error::Internal {
                what: "top".into(),
                cause: format!("specifying \"{key}={value}\" is not allowed"),
            });
        }
    }
    Ok(())
}

/// dockerd's `parsePSOutput`: titles from the first line; a row is kept when its PID is one
/// of `pids` (a `-` PID, a thread line of `-m`, goes with the row before it).
fn parse_ps(output: &str, pids: &[i32]) -> Result<Top, Error> {
    let ascii_fields = |l: &str| -> Vec<String> {
        l.split(['\t', '\n', '\x0c', '\r', ' '])
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut lines = output.split('\n');
    let titles = ascii_fields(lines.next().unwrap_or(""));
    let pid_at = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::Internal {
            what: "top".into(),
            cause: "Couldn't find PID field in ps output".into(),
        })?;
    let row = |fields: Vec<String>| {
        let n = titles.len().max(1);
        let mut r: Vec<String> = fields.iter().take(n - 1).cloned().collect();
        r.push(fields.get(n - 1..).unwrap_or_default().join(" "));
        r
    };
    let mut processes = Vec::new();
    let mut after_ours = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let fields = ascii_fields(line);
        let Some(p) = fields.get(pid_at) else {
            continue;
        };
        if p == "-" {
            if after_ours {
                processes.push(row(fields));
            }
            continue;
        }
        let pid: i32 = p.parse().map_err(|e| Error::Internal {
            what: "top".into(),
            cause: format!("Unexpected pid '{p}': {e}"),
        })?;
        after_ours = pids.contains(&pid);
        if after_ours {
            processes.push(row(fields));
        }
    }
    Ok(Top { titles, processes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_output_as_dockerd_parses_it() {
        let out = "UID   PID  PPID  C STIME TTY  TIME     CMD\n\
                   root  10   1     0 05:11 ?    00:00:00 sleep 1000\n\
                   root  11   1     0 05:11 ?    00:00:00 other  x\n";
        let t = parse_ps(out, &[10]).unwrap();
        assert_eq!(
            t.titles,
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        assert_eq!(
            t.processes,
            [[
                "root",
                "10",
                "1",
                "0",
                "05:11",
                "?",
                "00:00:00",
                "sleep 1000"
            ]]
        );
        let m = "PID TTY TIME CMD\n10 ? 0:00 sh\n- - 0:00 -\n11 ? 0:00 x\n- - 0:00 -\n";
        let t = parse_ps(m, &[10]).unwrap();
        assert_eq!(t.processes.len(), 2);
        assert!(parse_ps("USER X\nroot 1\n", &[1]).is_err());
        assert!(validate_ps_args("-o pid=PID").is_ok());
        assert!(validate_ps_args("-o user=PID").is_err());
        assert!(validate_ps_args("aux").is_ok());
    }
}
