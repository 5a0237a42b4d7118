//! The container's processes: the init process and its setup, the parent/child channel and
//! the terminal.

pub mod channel;
pub mod console;
pub mod init;
