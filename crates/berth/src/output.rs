//! A command's output: a failed write is an error that `main` reports, never a panic.
//!
//! `println!` panics when stdout is a closed pipe (`berth state ID | true`) or a full disk,
//! and with `panic = "abort"` that is a SIGABRT and a backtrace. Every command writes through
//! here instead; `main` ends quietly on a closed pipe, as other command-line tools do, and
//! reports any other failure (such as ENOSPC) as the command's error.

use std::fmt::Display;
use std::io::{self, Write};

/// A write to one of the standard streams failed.
#[derive(Debug)]
pub struct OutputError {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The cause: `BrokenPipe` for a closed pipe, `StorageFull` for a full disk, ...
    pub source: io::Error,
}

impl Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "write to {}", self.stream)
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl OutputError {
    /// The reader went away (EPIPE): the command ends quietly.
    pub fn is_broken_pipe(&self) -> bool {
        self.source.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Write `bytes` to stdout and flush them, so that any failure is this call's.
pub fn stdout(bytes: impl AsRef<[u8]>) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes.as_ref())
        .and_then(|()| out.flush())
        .map_err(|source| OutputError {
            stream: "stdout",
            source,
        })
}

/// Write `text` and a newline to stdout.
pub fn line(text: impl Display) -> Result<(), OutputError> {
    stdout(format!("{text}\n"))
}

/// Write `text` and a newline to stderr; a failure there has nowhere to be reported, so it is
/// ignored (`eprintln!` would panic).
pub fn err_line(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// The output error in `e`'s chain, if a write to a standard stream is what failed.
pub fn find(e: &anyhow::Error) -> Option<&OutputError> {
    e.chain().find_map(|c| c.downcast_ref::<OutputError>())
}

/// The exit status for a closed output pipe: what a shell reports for a tool killed by
/// SIGPIPE (128 + 13), as runc, a Go program, is on a write to a closed stdout.
pub const BROKEN_PIPE_EXIT: u8 = 128 + libc::SIGPIPE as u8;
