//! berth's cache of compiled seccomp programs (`<root>/@seccomp-cache`): a container whose
//! program came from the cache behaves exactly as one whose program was just compiled (errno,
//! kill, notify and allowed calls, checked from inside), and an entry that is corrupt, of
//! another profile, of another owner, or in a directory open to others is never used.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::leak_checked;
use runtime_tests::{Bundle, Runtime, SECCOMP_CACHE};
use serde_json::json;

/// What the container reports about its filter: each line is a call and its outcome.
const SCRIPT: &str = "mkdir /tmp/e 2>&1; echo mkdir=$?; \
    chroot / true; echo chroot=$?; \
    ln -s x /tmp/l 2>&1; echo ln=$?; \
    echo allowed; grep '^Seccomp:' /proc/self/status";

/// The lines `SCRIPT` prints when the filter works: mkdir denied with EACCES (errno action),
/// chroot's process killed by SIGSYS (128 + 31), symlink notified to an agent that closed
/// its fd (the kernel then fails the call with ENOSYS), the rest allowed.
const EXPECTED: &[&str] = &[
    "Permission denied",
    "mkdir=1",
    "chroot=159",
    "Function not implemented",
    "ln=1",
    "allowed",
    "Seccomp:\t2",
];

/// A profile with every kind of action, on the three x86 architectures as containerd's
/// RuntimeDefault has them, notifying the agent at `sock`.
fn profile(sock: &Path) -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "listenerPath": sock.to_str().unwrap(),
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["chroot"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["symlink", "symlinkat"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"}
        ]
    })
}

/// Runs the bundle once with a seccomp agent at `sock` that takes the notify fd and closes
/// it; returns the container's output lines (asserting the agent got an fd).
fn run_once(rt: &Runtime, b: &Bundle, sock: &Path, tag: &str) -> Vec<String> {
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock).unwrap();
    let agent = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .unwrap();
        let mut fds = 0;
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(f) = c {
                fds += f.len();
                for fd in f {
                    let _ = nix::unistd::close(fd);
                }
            }
        }
        fds
    });
    let out = rt.run(&rt.new_id(tag), b);
    assert_eq!(
        agent.join().unwrap(),
        1,
        "{tag}: no notify fd reached the agent"
    );
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.rsplit(": ").next().unwrap_or(l).to_owned())
        .collect();
    assert_eq!(lines, EXPECTED, "{tag}: {}", out.describe());
    lines
}

fn cache_dir(rt: &Runtime) -> PathBuf {
    rt.root.join(SECCOMP_CACHE)
}

/// The cache's entries (name, inode, owner).
fn entries(rt: &Runtime) -> Vec<(String, u64, u32)> {
    let mut v: Vec<_> = std::fs::read_dir(cache_dir(rt))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    (e.file_name().into_string().unwrap(), m.ino(), m.uid())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn cached_and_compiled_programs_behave_the_same_inside_the_container() {
    leak_checked(|rt, b| {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        b.set_seccomp(profile(&sock));
        b.set_readonly_root(false);
        b.set_no_new_privileges(true);
        b.set_args(&["sh", "-c", SCRIPT]);

        // A miss: compiled, and written to the cache (owner-only directory, one entry).
        assert!(entries(rt).is_empty());
        let compiled = run_once(rt, b, &sock, "sc-miss");
        let first = entries(rt);
        assert_eq!(first.len(), 1, "{first:?}");
        let (name, ino, uid) = first[0].clone();
        assert_eq!(uid, 0);
        let mode = std::fs::metadata(cache_dir(rt))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let good = std::fs::read(cache_dir(rt).join(&name)).unwrap();

        // A hit: the same entry (not written again), the same behaviour.
        assert_eq!(run_once(rt, b, &sock, "sc-hit"), compiled);
        assert_eq!(entries(rt), [(name.clone(), ino, 0)]);

        // Without no_new_privs the program loads before capabilities are dropped: same.
        b.set_no_new_privileges(false);
        assert_eq!(run_once(rt, b, &sock, "sc-hit-nnp0"), compiled);
        b.set_no_new_privileges(true);

        // A corrupt entry (one bit of the program flipped) is not used but rebuilt.
        let path = cache_dir(rt).join(&name);
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(run_once(rt, b, &sock, "sc-corrupt"), compiled);
        assert_eq!(std::fs::read(&path).unwrap(), good, "entry rebuilt");

        // A truncated one too.
        std::fs::write(&path, &good[..good.len() / 3]).unwrap();
        assert_eq!(run_once(rt, b, &sock, "sc-truncated"), compiled);
        assert_eq!(std::fs::read(&path).unwrap(), good);

        // Someone else's entry is ignored and replaced by ours.
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        assert_eq!(run_once(rt, b, &sock, "sc-foreign"), compiled);
        let now = entries(rt);
        assert_eq!((now.len(), now[0].2), (1, 0), "{now:?}");
        assert_eq!(std::fs::read(&path).unwrap(), good);

        // A symlink in the entry's place is not followed (its target is left alone).
        let decoy = dir.path().join("decoy");
        std::fs::write(&decoy, &good).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&decoy, &path).unwrap();
        assert_eq!(run_once(rt, b, &sock, "sc-symlink"), compiled);
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(std::fs::read(&decoy).unwrap(), good);
    });
}

#[test]
fn entries_of_another_profile_or_in_an_open_directory_are_not_used() {
    leak_checked(|rt, b| {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        b.set_readonly_root(false);
        b.set_no_new_privileges(true);
        b.set_args(&["sh", "-c", SCRIPT]);

        // The entry of a profile that allows everything but getppid, under the name of ours:
        // if it were used, mkdir, chroot and ln would all succeed.
        b.set_seccomp(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]}));
        let out = rt.run(&rt.new_id("sc-other"), b);
        assert!(out.stdout.contains("mkdir=0"), "{}", out.describe());
        let other = entries(rt);
        assert_eq!(other.len(), 1);
        let other_bytes = std::fs::read(cache_dir(rt).join(&other[0].0)).unwrap();

        b.set_seccomp(profile(&sock));
        let compiled = run_once(rt, b, &sock, "sc-ours");
        let ours = entries(rt)
            .into_iter()
            .find(|e| e.0 != other[0].0)
            .expect("our entry");
        let path = cache_dir(rt).join(&ours.0);
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, &other_bytes).unwrap();
        assert_eq!(run_once(rt, b, &sock, "sc-misplaced"), compiled);
        assert_eq!(std::fs::read(&path).unwrap(), good, "entry rebuilt");

        // A cache directory open to others is not used at all: nothing read, nothing written.
        std::fs::write(&path, &other_bytes).unwrap();
        std::fs::set_permissions(cache_dir(rt), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(run_once(rt, b, &sock, "sc-open-dir"), compiled);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            other_bytes,
            "entry left alone"
        );

        // Nor is one of another owner.
        std::fs::set_permissions(cache_dir(rt), std::fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(
            &cache_dir(rt),
            Some(nix::unistd::Uid::from_raw(65534)),
            None,
        )
        .unwrap();
        assert_eq!(run_once(rt, b, &sock, "sc-foreign-dir"), compiled);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            other_bytes,
            "entry left alone"
        );
    });
}
