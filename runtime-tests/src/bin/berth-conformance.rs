//! Runs the OCI runtime conformance suite against a runtime binary.
//!
//! ```text
//! berth-conformance --runtime PATH [--filter PATTERN[,PATTERN]] [--format tap|json|table]
//!                   [--keep-going] [--probe PATH] [--rootfs DIR] [--list]
//! berth-conformance --merge NAME=REPORT.json... [--out FILE]
//! ```
//! Exit status: 0 when no case is not ok, 1 when one is, 2 on usage errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use runtime_tests::conformance::{all_cases, merge_table, run_suite, Options, Report};

const USAGE: &str = "usage: berth-conformance --runtime PATH [--filter PATTERN] \
[--format tap|json|table] [--keep-going] [--probe PATH] [--rootfs DIR] [--list]\n       \
berth-conformance --merge NAME=REPORT.json... [--out FILE]";

struct Args {
    runtime: Option<PathBuf>,
    filter: Option<String>,
    format: String,
    keep_going: bool,
    list: bool,
    merge: Vec<(String, PathBuf)>,
    out: Option<PathBuf>,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        runtime: None,
        filter: None,
        format: "tap".into(),
        keep_going: false,
        list: false,
        merge: Vec::new(),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--runtime" => a.runtime = Some(value("--runtime")?.into()),
            "--filter" => a.filter = Some(value("--filter")?),
            "--format" => a.format = value("--format")?,
            "--keep-going" | "-k" => a.keep_going = true,
            "--list" => a.list = true,
            "--out" => a.out = Some(value("--out")?.into()),
            "--probe" => std::env::set_var(runtime_tests::ENV_PROBE, value("--probe")?),
            "--rootfs" => std::env::set_var(runtime_tests::ENV_ROOTFS, value("--rootfs")?),
            "--merge" => {
                let v = value("--merge")?;
                let (name, file) = v.split_once('=').context("--merge takes NAME=FILE")?;
                a.merge.push((name.into(), file.into()));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if !["tap", "json", "table"].contains(&a.format.as_str()) {
        bail!("--format must be tap, json or table");
    }
    Ok(a)
}

fn emit(text: &str, out: &Option<PathBuf>) -> Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("write {}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let args = parse()?;
    if args.list {
        for c in all_cases() {
            println!("{}\t{}\t{}", c.id, c.spec, c.requirement);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.merge.is_empty() {
        let mut runs = Vec::new();
        for (name, file) in &args.merge {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("read {}", file.display()))?;
            let rep: Report =
                serde_json::from_str(&text).with_context(|| format!("parse {}", file.display()))?;
            runs.push((name.clone(), rep));
        }
        emit(&merge_table(&runs), &args.out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = args.runtime.context("--runtime is required")?;
    let report = run_suite(&Options {
        runtime,
        filter: args.filter,
        keep_going: args.keep_going,
        private_mount_ns: true,
    });
    let text = match args.format.as_str() {
        "json" => report.json() + "\n",
        "table" => report.table(),
        _ => report.tap(),
    };
    emit(&text, &args.out)?;
    let (_, bad, _) = report.counts();
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
