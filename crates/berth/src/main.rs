//! `berth`: a runc-compatible OCI container runtime.
//!
//! The command line follows runc's: the same global flags, verbs, exit codes and JSON, so that
//! containerd, podman and docker can use `berth` in runc's place.

mod cli;
mod commands;
mod logging;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let log = match logging::init(&cli.global) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("berth: {e:#}");
            return ExitCode::from(1);
        }
    };
    match commands::dispatch(&cli.global, cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log.fatal(&e);
            ExitCode::from(1)
        }
    }
}
