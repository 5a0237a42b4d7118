//! Builds the exec stub (`stub/exec_stub.rs`) as a freestanding static executable that the
//! library embeds (see `src/exe.rs`). x86_64 only: elsewhere the library does without it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=stub/exec_stub.rs");
    println!("cargo::rustc-check-cfg=cfg(berth_exec_stub)");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64")
        || std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
    {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let bin = out.join("exec-stub");
    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "bin"])
        .args(["--crate-name", "berth_exec_stub", "--target", &target])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "debuginfo=0",
        ])
        .args(["-C", "relocation-model=static", "-C", "strip=symbols"])
        // No C runtime at all: the stub has its own _start and makes raw system calls.
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args([
            "-C",
            "link-arg=-static",
            "-C",
            "link-arg=-Wl,--build-id=none",
        ])
        .args(["-C", "link-arg=-Wl,-z,noseparate-code"])
        .arg("-o")
        .arg(&bin)
        .arg("stub/exec_stub.rs")
        .status()
        .expect("run rustc for the exec stub");
    assert!(status.success(), "building the exec stub failed");
    println!("cargo::rustc-cfg=berth_exec_stub");
}
