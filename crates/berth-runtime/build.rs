//! Builds the exec stub (`stub/exec_stub.rs`) as a freestanding static executable that the
//! library embeds (see `src/exe.rs`). x86_64 only: elsewhere the library does without it.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Command;

fn main() {
    seccomp_source_id();
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

/// A fingerprint of the code that turns a seccomp profile into a program
/// (`src/seccomp.rs`, `src/seccomp/`), part of the compiled-program cache key: a development
/// build that changes the translation never gets a program an earlier build cached, without
/// anyone having to remember to bump `cache::FORMAT`.
fn seccomp_source_id() {
    let mut files = vec![PathBuf::from("src/seccomp.rs")];
    if let Ok(dir) = std::fs::read_dir("src/seccomp") {
        files.extend(dir.flatten().map(|e| e.path()));
    }
    files.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in &files {
        println!("cargo::rerun-if-changed={}", f.display());
        f.hash(&mut h);
        std::fs::read(f)
            .unwrap_or_else(|e| panic!("read {}: {e}", f.display()))
            .hash(&mut h);
    }
    println!("cargo::rerun-if-changed=src/seccomp");
    println!(
        "cargo::rustc-env=BERTH_SECCOMP_SOURCE_ID={:016x}",
        h.finish()
    );
}
