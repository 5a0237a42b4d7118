//! A cache of compiled seccomp programs in the runtime root.
//!
//! Compiling a profile with libseccomp is most of the cost of `create` when the profile is
//! large: containerd's `RuntimeDefault` (about 360 syscalls on three architectures) takes
//! libseccomp some 10-20 ms, nearly all of it in adding the rules and generating the BPF
//! program, while loading the program takes microseconds. Kubernetes gives every container
//! of a node the same profile, so [`program`] keeps each compiled program in
//! `<root>/@seccomp-cache/<key>`, where `<key>` is the SHA-256 of everything the program
//! depends on:
//!
//! - the profile (`linux.seccomp` serialised again, so key order and spacing of
//!   `config.json` do not matter);
//! - libseccomp's version and API level (the API level is what libseccomp found the kernel
//!   supports), and the kernel's release and version strings;
//! - the target architecture, berth's version, a fingerprint of the seccomp sources taken at
//!   build time (so a development build that changes the translation never reuses an older
//!   build's programs) and [`FORMAT`] (bumped whenever the cache's file format changes).
//!
//! The cache is trusted no more than the runtime root it lives in:
//! - the directory is made `0700` by the runtime's user and is used only while it is a real
//!   directory (not a symlink) owned by that user with no group or other access; every entry
//!   is opened through the directory's fd with `O_NOFOLLOW` and used only if it is a regular
//!   file owned by that user, not writable by others, of a sane size;
//! - an entry holds a magic string, its key, the filter flags and the program, and ends
//!   with the SHA-256 of all that: a truncated, corrupted or misplaced entry fails the check and is compiled and
//!   written again;
//! - entries are written to a new file (`O_CREAT | O_EXCL | O_NOFOLLOW`, `0600`) and renamed
//!   into place, so a reader sees a whole entry or none; two runtimes racing write the same
//!   bytes.
//!
//! The cache only saves time: any failure to use it (no root, a directory of someone else's,
//! a full disk) is logged at debug level and the profile is compiled as if there were none.
//! `@` is not allowed in container ids, so no container's state directory can take the
//! cache's name.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest as _, Sha256};

use super::{decode, Program, INSN_LEN};
use crate::error::SetupError;

/// The cache directory's name in the runtime root.
pub const DIR_NAME: &str = "@seccomp-cache";

/// The version of berth's translation of profiles (and of the entry layout); part of every
/// key. Bump it when a change to `seccomp.rs` can change the program of some profile.
pub const FORMAT: u32 = 2;

/// The first bytes of every entry.
const MAGIC: &[u8; 8] = b"BRTHSCMP";

/// The kernel's limit on the instructions of one filter (`BPF_MAXINSNS`): longer programs
/// cannot be loaded, so they are not cached.
const MAX_INSNS: usize = 4096;

/// The size of a SHA-256 digest.
const HASH_LEN: usize = 32;

/// The size of the flags in an entry (a little-endian `u64`).
const FLAGS_LEN: usize = 8;

/// The `SECCOMP_FILTER_FLAG_*` bits a compiled program can carry.
const KNOWN_FLAGS: libc::c_ulong = libc::SECCOMP_FILTER_FLAG_LOG
    | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
    | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;

/// The largest entry: magic, key, flags, `MAX_INSNS` instructions and the digest.
const MAX_ENTRY: usize = MAGIC.len() + HASH_LEN + FLAGS_LEN + MAX_INSNS * INSN_LEN + HASH_LEN;

/// Past this many files in the directory, a miss empties it before writing its entry (a
/// node runs few distinct profiles; this bounds the space a stream of distinct ones takes).
const MAX_ENTRIES: usize = 256;

/// The compiled program of `seccomp`, from the cache in `root` when it has it, else compiled
/// with [`Program::compile`] and stored there.
///
/// `root` is the runtime root (`--root`); `None` compiles without the cache. Errors are those
/// of [`Program::compile`]: the cache itself never fails a call.
pub fn program(seccomp: &LinuxSeccomp, root: Option<&Path>) -> Result<Program, SetupError> {
    let Some(root) = root else {
        return Program::compile(seccomp);
    };
    let key = match key(seccomp) {
        Ok(k) => k,
        Err(e) => {
            tracing::debug!("seccomp cache: no key ({e}); compiling");
            return Program::compile(seccomp);
        }
    };
    let name = hex(&key);
    let dir = match open_dir(root) {
        Ok(d) => d,
        Err(why) => {
            tracing::debug!(root = %root.display(), "seccomp cache unusable: {why}");
            return Program::compile(seccomp);
        }
    };
    match read_entry(dir.as_fd(), &name, &key) {
        Ok(p) => return Ok(p),
        Err(why) => tracing::debug!(entry = %name, "seccomp cache miss: {why}"),
    }
    let program = Program::compile(seccomp)?;
    if let Err(why) = write_entry(dir.as_fd(), &name, &key, &program) {
        tracing::debug!(entry = %name, "seccomp cache not written: {why}");
    }
    Ok(program)
}

/// The cache key of `seccomp` on this host with this libseccomp and this berth.
pub fn key(seccomp: &LinuxSeccomp) -> Result<[u8; HASH_LEN], String> {
    let profile = serde_json::to_vec(seccomp).map_err(|e| format!("serialise the profile: {e}"))?;
    let lib = libseccomp::ScmpVersion::current().map_err(|e| format!("libseccomp version: {e}"))?;
    let uts = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(b"berth seccomp program");
    field(&FORMAT.to_le_bytes());
    field(env!("CARGO_PKG_VERSION").as_bytes());
    field(env!("BERTH_SECCOMP_SOURCE_ID").as_bytes());
    field(std::env::consts::ARCH.as_bytes());
    field(format!("{}.{}.{}", lib.major, lib.minor, lib.micro).as_bytes());
    field(&libseccomp::get_api().to_le_bytes());
    field(uts.release().as_encoded_bytes());
    field(uts.version().as_encoded_bytes());
    field(&profile);
    Ok(h.finalize().into())
}

/// Open (making it if missing) the cache directory in `root`, checked to be ours alone.
fn open_dir(root: &Path) -> Result<OwnedFd, String> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open runtime root: {e}"))?;
    match nix::sys::stat::mkdirat(&root_fd, DIR_NAME, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(format!("mkdir {DIR_NAME}: {e}")),
    }
    let dir = nix::fcntl::openat(
        &root_fd,
        DIR_NAME,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {DIR_NAME}: {e}"))?;
    let st = nix::sys::stat::fstat(&dir).map_err(|e| format!("fstat {DIR_NAME}: {e}"))?;
    let euid = nix::unistd::geteuid().as_raw();
    if st.st_uid != euid {
        return Err(format!(
            "{DIR_NAME} is owned by uid {}, not {euid}",
            st.st_uid
        ));
    }
    if st.st_mode & 0o077 != 0 {
        return Err(format!(
            "{DIR_NAME} has mode {:o}, open to others",
            st.st_mode & 0o7777
        ));
    }
    Ok(dir)
}

/// The program stored under `name`, if the entry is ours, whole and of `key`.
fn read_entry(dir: BorrowedFd<'_>, name: &str, key: &[u8; HASH_LEN]) -> Result<Program, String> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT => "no entry".to_owned(),
        e => format!("open: {e}"),
    })?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| format!("fstat: {e}"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err("not a regular file".into());
    }
    let euid = nix::unistd::geteuid().as_raw();
    if st.st_uid != euid {
        return Err(format!("owned by uid {}, not {euid}", st.st_uid));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(format!(
            "mode {:o} is writable by others",
            st.st_mode & 0o7777
        ));
    }
    let size = usize::try_from(st.st_size).unwrap_or(usize::MAX);
    if size > MAX_ENTRY {
        return Err(format!("{size} bytes is too large"));
    }
    let mut bytes = vec![0u8; size];
    let mut file = std::fs::File::from(fd);
    std::io::Read::read_exact(&mut file, &mut bytes).map_err(|e| format!("read: {e}"))?;
    parse_entry(&bytes, key).ok_or_else(|| "corrupt or of another key".to_owned())
}

/// The program of an entry, if the entry is whole and stored under `key`.
fn parse_entry(bytes: &[u8], key: &[u8; HASH_LEN]) -> Option<Program> {
    let body_len = bytes.len().checked_sub(HASH_LEN)?;
    let (body, digest) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != digest {
        return None;
    }
    let rest = body.strip_prefix(MAGIC)?;
    let rest = rest.strip_prefix(key)?;
    let (flags, code) = rest.split_first_chunk::<FLAGS_LEN>()?;
    let flags = libc::c_ulong::try_from(u64::from_le_bytes(*flags)).ok()?;
    if flags & !KNOWN_FLAGS != 0 || code.len() > MAX_INSNS * INSN_LEN {
        return None;
    }
    Some(Program {
        code: decode(code)?,
        flags,
    })
}

/// The bytes of an entry of `program` under `key`.
fn entry_bytes(program: &Program, key: &[u8; HASH_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        MAGIC.len() + HASH_LEN + FLAGS_LEN + program.len() * INSN_LEN + HASH_LEN,
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key);
    // `c_ulong` is `u32` on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let flags = u64::from(program.flags);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&program.encode());
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Store `program` as entry `name`: written to a fresh file, then renamed into place.
fn write_entry(
    dir: BorrowedFd<'_>,
    name: &str,
    key: &[u8; HASH_LEN],
    program: &Program,
) -> Result<(), String> {
    if program.len() > MAX_INSNS {
        return Err(format!("{} instructions: too many to load", program.len()));
    }
    trim(dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = format!(".tmp-{}-{nanos}", std::process::id());
    let fd = nix::fcntl::openat(
        dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| format!("create {tmp}: {e}"))?;
    let written = std::fs::File::from(fd)
        .write_all(&entry_bytes(program, key))
        .map_err(|e| format!("write {tmp}: {e}"))
        .and_then(|()| {
            nix::fcntl::renameat(dir, tmp.as_str(), dir, name)
                .map_err(|e| format!("rename {tmp} to {name}: {e}"))
        });
    if written.is_err() {
        let _ = nix::unistd::unlinkat(dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
    }
    written
}

/// Empty the directory when it holds [`MAX_ENTRIES`] files or more.
fn trim(dir: BorrowedFd<'_>) -> Result<(), String> {
    // A new open file description: reading the directory moves its offset.
    let fd = nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open {DIR_NAME}: {e}"))?;
    let mut d = nix::dir::Dir::from_fd(fd).map_err(|e| format!("opendir: {e}"))?;
    let names: Vec<std::ffi::CString> = d
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    if names.len() < MAX_ENTRIES {
        return Ok(());
    }
    tracing::debug!(entries = names.len(), "seccomp cache full: emptied");
    for n in &names {
        let _ = nix::unistd::unlinkat(dir, n.as_c_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
    }
    Ok(())
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).expect("valid linux.seccomp")
    }

    fn profile() -> LinuxSeccomp {
        spec(json!({"defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}))
    }

    fn entries(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root.join(DIR_NAME))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn miss_writes_an_entry_and_hit_returns_the_same_program() {
        let root = tempfile::tempdir().unwrap();
        let p = profile();
        let compiled = Program::compile(&p).unwrap();
        assert_eq!(compiled.flags, libc::SECCOMP_FILTER_FLAG_LOG);
        let first = program(&p, Some(root.path())).unwrap();
        assert_eq!(first, compiled);
        let names = entries(root.path());
        assert_eq!(names, [hex(&key(&p).unwrap())]);
        let meta = std::fs::metadata(root.path().join(DIR_NAME)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o700
        );
        // A hit: the entry is read, not compiled again (a marker byte changed in the
        // program with a digest that still checks out proves it came from the file).
        let path = root.path().join(DIR_NAME).join(&names[0]);
        let mut changed = compiled.clone();
        changed.code[0].k ^= 1;
        std::fs::write(&path, entry_bytes(&changed, &key(&p).unwrap())).unwrap();
        assert_eq!(program(&p, Some(root.path())).unwrap(), changed);
    }

    #[test]
    fn corrupt_foreign_and_misplaced_entries_are_rebuilt() {
        let root = tempfile::tempdir().unwrap();
        let p = profile();
        let compiled = program(&p, Some(root.path())).unwrap();
        let k = key(&p).unwrap();
        let path = root.path().join(DIR_NAME).join(hex(&k));
        let good = std::fs::read(&path).unwrap();

        // Truncated, one bit flipped, and an entry of another key under this name.
        let mut flipped = good.clone();
        flipped[MAGIC.len() + HASH_LEN + FLAGS_LEN + 3] ^= 0x10;
        let other = entry_bytes(&compiled, &[7u8; HASH_LEN]);
        for bad in [good[..good.len() - 9].to_vec(), flipped, other, Vec::new()] {
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(program(&p, Some(root.path())).unwrap(), compiled);
            assert_eq!(std::fs::read(&path).unwrap(), good, "entry rewritten");
        }

        // A symlink in its place is not followed, and is replaced.
        std::fs::remove_file(&path).unwrap();
        let target = root.path().join("elsewhere");
        std::fs::write(&target, &good).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(read_entry(open_dir(root.path()).unwrap().as_fd(), &hex(&k), &k).is_err());
        assert_eq!(program(&p, Some(root.path())).unwrap(), compiled);
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());

        // An entry of another owner is ignored.
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let e = read_entry(open_dir(root.path()).unwrap().as_fd(), &hex(&k), &k);
        assert!(e.unwrap_err().contains("owned by uid 65534"));
        assert_eq!(program(&p, Some(root.path())).unwrap(), compiled);
    }

    #[test]
    fn a_directory_open_to_others_or_not_ours_is_not_used() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(DIR_NAME);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        assert!(open_dir(root.path())
            .unwrap_err()
            .contains("open to others"));
        let p = profile();
        assert_eq!(
            program(&p, Some(root.path())).unwrap(),
            Program::compile(&p).unwrap()
        );
        assert!(entries(root.path()).is_empty());

        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        assert!(open_dir(root.path())
            .unwrap_err()
            .contains("owned by uid 65534"));

        // A symlink to a good directory is not followed either.
        std::fs::remove_dir(&dir).unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        std::os::unix::fs::symlink(&real, &dir).unwrap();
        assert!(open_dir(root.path()).is_err());
        program(&p, Some(root.path())).unwrap();
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn keys_follow_the_profile_not_its_spelling() {
        let a = profile();
        let b: LinuxSeccomp = serde_json::from_str(
            r#"{ "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["read", "write", "exit_group"]},
                {"args": [{"op": "SCMP_CMP_EQ", "value": 8, "index": 0}], "names": ["personality"],
                 "action": "SCMP_ACT_ALLOW"}],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "defaultAction": "SCMP_ACT_ERRNO" }"#,
        )
        .unwrap();
        assert_eq!(key(&a).unwrap(), key(&b).unwrap());
        let c = spec(
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}),
        );
        assert_ne!(key(&a).unwrap(), key(&c).unwrap());
    }

    #[test]
    fn a_full_directory_is_emptied_before_writing() {
        let root = tempfile::tempdir().unwrap();
        let p = profile();
        program(&p, Some(root.path())).unwrap();
        for i in 0..MAX_ENTRIES {
            std::fs::write(root.path().join(DIR_NAME).join(format!("junk{i}")), b"x").unwrap();
        }
        let other = spec(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}));
        program(&other, Some(root.path())).unwrap();
        assert_eq!(entries(root.path()), [hex(&key(&other).unwrap())]);
    }

    #[test]
    fn without_a_root_it_compiles() {
        let p = profile();
        assert_eq!(program(&p, None).unwrap(), Program::compile(&p).unwrap());
    }
}
