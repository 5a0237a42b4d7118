//! `berth validate`: check a bundle against the runtime spec, like `oci-runtime-tool validate`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use berth_runtime::validate::{self, Problem, Severity};
use clap::Args;

/// `validate [--bundle DIR | --config FILE]`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Bundle directory: validates DIR/config.json and that root.path is a directory in DIR.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Validate this config.json alone, without looking at a bundle on disk.
    #[arg(long, conflicts_with = "bundle")]
    pub config: Option<PathBuf>,
}

/// Print one line per problem (`error: ...` / `warning: ...`) and a `N errors, M warnings`
/// summary; the exit code is 0 only without errors.
pub fn run(a: ValidateArgs) -> Result<u8> {
    let (config, mut problems) = match &a.config {
        Some(file) => {
            let config = read_json(file)?;
            let problems = validate::validate_value(&config, None);
            (config, problems)
        }
        None => {
            let config = read_json(&a.bundle.join("config.json"))
                .with_context(|| format!("validate bundle {}", a.bundle.display()))?;
            let problems = validate::validate_value(&config, Some(&a.bundle));
            (config, problems)
        }
    };
    // What berth cannot apply here: `create` refuses it, but the bundle itself is valid.
    problems.extend(validate::unsupported(&config).into_iter().map(|mut p| {
        p.severity = Severity::Warning;
        p.message
            .push_str(" (berth create refuses it on this host)");
        p
    }));
    let mut out = String::new();
    let errors = report(&problems, &mut out);
    crate::output::stdout(out)?;
    Ok(u8::from(errors > 0))
}

fn read_json(file: &Path) -> Result<serde_json::Value> {
    let text = berth_runtime::spec::read_config_file(file)
        .with_context(|| format!("read {}", file.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        let mut what = format!("{}: not valid JSON", file.display());
        if let Some(e) = serde_json::from_slice::<serde_json::Value>(&text).err() {
            let field = berth_runtime::spec::json_path_at(&text, e.line(), e.column());
            what.push_str(&format!(" (at {field})"));
        }
        what
    })
}

#[cfg(test)]
fn validate_file(file: &Path) -> Result<Vec<Problem>> {
    Ok(validate::validate_value(&read_json(file)?, None))
}

/// Write the report into `out`; return the number of errors.
fn report(problems: &[Problem], out: &mut String) -> usize {
    use std::fmt::Write as _;
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    for p in problems {
        let _ = writeln!(out, "{}: {p}", p.severity);
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let warnings = problems.len() - errors;
    let _ = writeln!(
        out,
        "{errors} error{}, {warnings} warning{}",
        plural(errors),
        plural(warnings)
    );
    errors
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A scratch directory removed on drop (the crate has no tempfile dev-dependency).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("berth-validate-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ValidateArgs,
    }

    #[test]
    fn flags() {
        let a = Cli::try_parse_from(["validate"]).unwrap().args;
        assert_eq!(a.bundle, PathBuf::from("."));
        assert!(a.config.is_none());
        let a = Cli::try_parse_from(["validate", "--config", "c.json"])
            .unwrap()
            .args;
        assert_eq!(a.config, Some(PathBuf::from("c.json")));
        assert!(Cli::try_parse_from(["validate", "--bundle", "b", "--config", "c"]).is_err());
    }

    #[test]
    fn report_lines_and_exit_code() {
        let dir = TempDir::new("report");
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},"hostname":"h",
                "mounts":[{"destination":"tmp","type":"tmpfs","source":"tmpfs"}]}"#,
        )
        .unwrap();
        let problems = validate_file(&file).unwrap();
        let mut out = String::new();
        assert_eq!(report(&problems, &mut out), 1);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines.iter().any(|l| l.starts_with("error: hostname: ")),
            "{out}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("warning: mounts[0].destination: ")),
            "{out}"
        );
        assert_eq!(lines[2], "1 error, 1 warning");

        // The bundle form also checks root.path on disk.
        assert_eq!(
            run(ValidateArgs {
                bundle: dir.path().into(),
                config: None
            })
            .unwrap(),
            1
        );
        std::fs::write(&file, r#"{"ociVersion":"1.0.0","root":{"path":"rootfs"}}"#).unwrap();
        assert_eq!(
            run(ValidateArgs {
                bundle: dir.path().into(),
                config: None
            })
            .unwrap(),
            1
        );
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        assert_eq!(
            run(ValidateArgs {
                bundle: dir.path().into(),
                config: None
            })
            .unwrap(),
            0
        );
        assert!(run(ValidateArgs {
            bundle: "/nonexistent".into(),
            config: None
        })
        .is_err());
    }
}
