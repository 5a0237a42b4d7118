//! `berth`: a runc-compatible OCI container runtime.
//!
//! The command line follows runc's: the same global flags, verbs, exit codes and JSON, so that
//! containerd, podman and docker can use `berth` in runc's place.

mod cli;
mod commands;
mod logging;
mod numbers;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    let log = match logging::init(&cli.global) {
        Ok(log) => log,
        Err(e) => {
            output::err_line(format_args!("berth: {e:#}"));
            return ExitCode::from(1);
        }
    };
    match commands::dispatch(&cli.global, cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => match output::find(&e) {
            // The reader went away: nothing to say, and nobody to say it to.
            Some(o) if o.is_broken_pipe() => ExitCode::from(output::BROKEN_PIPE_EXIT),
            _ => {
                log.fatal(&e);
                ExitCode::from(1)
            }
        },
    }
}

/// `--help`, `--version` (to stdout, exit 0) and usage errors (to stderr, exit 2), as clap
/// would print them, but with the write's failure handled instead of ignored.
fn usage(e: &clap::Error) -> ExitCode {
    let text = e.render().to_string();
    if !e.use_stderr() {
        return match output::stdout(text) {
            Ok(()) => ExitCode::from(e.exit_code().clamp(0, 255) as u8),
            Err(o) if o.is_broken_pipe() => ExitCode::from(output::BROKEN_PIPE_EXIT),
            Err(o) => {
                output::err_line(format_args!("berth: {o}: {}", o.source));
                ExitCode::from(1)
            }
        };
    }
    output::err_line(text.trim_end());
    ExitCode::from(e.exit_code().clamp(0, 255) as u8)
}
