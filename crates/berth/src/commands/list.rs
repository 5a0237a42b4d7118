//! `berth list`.

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::cli::GlobalOpts;
use crate::output;

/// Output format of `list` and `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// `list [--format table|json] [-q]`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only the ids.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// `berth list`.
pub fn run(g: &GlobalOpts, a: ListArgs) -> Result<u8> {
    let states = berth_runtime::container::list(&g.root())?;
    if a.quiet {
        let ids: String = states.iter().map(|s| format!("{}\n", s.id)).collect();
        output::stdout(ids)?;
        return Ok(0);
    }
    match a.format {
        Format::Json => {
            let items: Vec<serde_json::Value> = states
                .iter()
                .map(|s| {
                    let mut v = serde_json::to_value(s).expect("state serialises");
                    v["owner"] = "root".into();
                    v
                })
                .collect();
            output::line(serde_json::Value::Array(items))?;
        }
        Format::Table => {
            let mut rows = vec![[
                "ID".to_owned(),
                "PID".to_owned(),
                "STATUS".to_owned(),
                "BUNDLE".to_owned(),
                "CREATED".to_owned(),
                "OWNER".to_owned(),
            ]];
            for s in &states {
                rows.push([
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    "root".to_owned(),
                ]);
            }
            output::stdout(table(&rows))?;
        }
    }
    Ok(0)
}

/// Left-aligned columns separated by at least three spaces, like Go's tabwriter in runc.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i + 1 < N {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push('\n');
    }
    out
}
