//! The container's filesystem view (issue 11): a container without a mount namespace of its
//! own stays in its rootfs for init and every exec; mount options are applied or refused by
//! name, and `features` lists exactly the applied ones; read-only and masked paths only add
//! what they say; a tmpfs keeps the mode of what it covers; a bind-mounted /dev is left alone;
//! a missing cwd is created. Where runc 1.1.5 (Debian's /usr/sbin/runc) decides, the same
//! bundle runs under runc in the same test.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::leak_checked;
use runtime_tests::{Bundle, Runtime};
use serde_json::json;

const RUNC: &str = "/usr/sbin/runc";

/// runc 1.1.5 with a private root. Its absence is a failure: these tests compare with it.
fn runc() -> Runtime {
    assert!(
        Path::new(RUNC).exists(),
        "{RUNC} is missing (apt-get install runc)"
    );
    Runtime::new(RUNC).expect("runc runtime")
}

/// A mount this test made on the host, unmounted (detached) when dropped, so the leak check
/// that follows sees nothing.
struct HostMount(PathBuf);

impl HostMount {
    fn new(source: &str, target: &Path, fstype: &str, data: Option<&str>) -> HostMount {
        nix::mount::mount(
            Some(source),
            target,
            Some(fstype),
            nix::mount::MsFlags::empty(),
            data,
        )
        .unwrap_or_else(|e| panic!("mount {fstype} on {}: {e}", target.display()));
        HostMount(target.to_owned())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A process in a mount namespace of its own (a copy of the host's), killed when dropped.
struct MountNsHolder(Child);

impl MountNsHolder {
    fn new() -> MountNsHolder {
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "1000"])
            .spawn()
            .expect("spawn unshare");
        let holder = MountNsHolder(child);
        // Wait until the child is in its new namespace (unshare has exec'd sleep).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mine = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        loop {
            let theirs = std::fs::read_link(holder.ns_path()).ok();
            let exe = std::fs::read_link(format!("/proc/{}/exe", holder.0.id())).ok();
            if theirs.is_some_and(|t| t != mine)
                && exe.is_some_and(|e| e.to_string_lossy().contains("sleep"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "unshare did not start");
            std::thread::yield_now();
        }
        holder
    }

    fn ns_path(&self) -> String {
        format!("/proc/{}/ns/mnt", self.0.id())
    }
}

impl Drop for MountNsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The mount options (per-mount, then superblock) of the topmost mount at `mount_point` in a
/// /proc/self/mountinfo text.
fn mount_opts(mountinfo: &str, mount_point: &str) -> Option<(Vec<String>, Vec<String>)> {
    mountinfo.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() < 10 || f[4] != mount_point {
            return None;
        }
        let sep = f.iter().position(|x| *x == "-")?;
        let per: Vec<String> = f[5].split(',').map(str::to_owned).collect();
        let sb: Vec<String> = f.get(sep + 3)?.split(',').map(str::to_owned).collect();
        Some((per, sb))
    })
}

/// A bundle for `sh -c SCRIPT`, with a writable root.
fn sh_bundle(b: &mut Bundle, script: &str) {
    b.set_args(&["sh", "-c", script]).set_readonly_root(false);
}

fn ok_run(rt: &Runtime, tag: &str, b: &Bundle) -> String {
    let id = rt.new_id(tag);
    let out = rt.run(&id, b);
    assert!(out.success(), "{}\n{}", out.describe(), rt.dump_log());
    out.stdout
}

// --- 1. no mount namespace: init and exec in the rootfs, create fails if init cannot wait ---

/// Without a `mount` namespace init chroots into the rootfs; an exec must land there too
/// (before: it ran in the host's root). runc 1.1.5 does put the exec in the host's root, which
/// is the fault.
#[test]
fn exec_without_mount_namespace_runs_in_init_root() {
    leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]).set_readonly_root(false);
        b.remove_namespace("mount");
        b.set_mounts(json!([]));
        b.spec_mut()["linux"]["maskedPaths"] = json!([]);
        b.spec_mut()["linux"]["readonlyPaths"] = json!([]);
        std::fs::write(b.rootfs().join("marker-in-rootfs"), "inside").unwrap();
        // The container shares our mount namespace: give its rootfs a procfs (ours, removed
        // before the leak check).
        let _proc = HostMount::new("proc", &b.rootfs().join("proc"), "proc", None);
        let id = rt.new_id("nomntns");
        assert!(rt.create(&id, b).success(), "{}", rt.dump_log());
        assert!(rt.start(&id).success(), "{}", rt.dump_log());
        let out = rt.exec(&id, &["cat", "/marker-in-rootfs"]);
        assert!(out.success(), "{}", out.describe());
        assert_eq!(out.stdout, "inside");
        // The same root as init's, by identity.
        let pid = rt.state_json(&id).unwrap()["pid"].as_i64().unwrap();
        let out = rt.exec(&id, &["sh", "-c", "ls -id / | cut -d' ' -f1"]);
        let init_root = std::fs::metadata(format!("/proc/{pid}/root/")).unwrap();
        assert_eq!(
            out.stdout.trim(),
            init_root.ino().to_string(),
            "{}",
            out.describe()
        );
        assert!(rt.delete_force(&id).success());
    });
}

/// A mount namespace joined by path: init chroots into the rootfs inside it, and an exec
/// (which joins that namespace, whose root is the host's copy) must land in the rootfs too.
#[test]
fn exec_into_joined_mount_namespace_runs_in_init_root() {
    leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]).set_readonly_root(false);
        b.set_mounts(json!([]));
        b.spec_mut()["linux"]["maskedPaths"] = json!([]);
        b.spec_mut()["linux"]["readonlyPaths"] = json!([]);
        std::fs::write(b.rootfs().join("marker-in-rootfs"), "inside").unwrap();
        let holder = MountNsHolder::new();
        // A procfs for the rootfs inside the holder's private namespace only.
        let st = Command::new("nsenter")
            .arg("-t")
            .arg(holder.0.id().to_string())
            .args(["-m", "mount", "-t", "proc", "proc"])
            .arg(b.rootfs().join("proc"))
            .status()
            .unwrap();
        assert!(st.success());
        b.set_namespace("mount", Some(&holder.ns_path()));
        let id = rt.new_id("joinexec");
        assert!(rt.create(&id, b).success(), "{}", rt.dump_log());
        assert!(rt.start(&id).success(), "{}", rt.dump_log());
        let out = rt.exec(&id, &["cat", "/marker-in-rootfs"]);
        assert!(out.success(), "{}", out.describe());
        assert_eq!(out.stdout, "inside");
        assert!(rt.delete_force(&id).success());
        drop(holder);
    });
}

/// Init waits for `start` by reopening the exec fifo through /proc/self/fd: without a procfs
/// in its root that cannot work, and create must fail then (before: create exited 0 and init
/// was already dead, status stopped, pid 0). runc 1.1.5 fails its create here too.
#[test]
fn create_fails_when_init_cannot_wait_for_start() {
    leak_checked(|rt, b| {
        b.set_args(&["true"]).set_readonly_root(false);
        b.remove_namespace("mount");
        b.set_mounts(json!([]));
        b.spec_mut()["linux"]["maskedPaths"] = json!([]);
        b.spec_mut()["linux"]["readonlyPaths"] = json!([]);
        let id = rt.new_id("noproc");
        let out = rt.create(&id, b);
        assert!(!out.success(), "create succeeded: {}", rt.dump_log());
        assert!(
            out.stderr.contains("exec fifo") && out.stderr.contains("/proc"),
            "{}",
            out.describe()
        );
        assert!(
            !rt.state(&id).success(),
            "the failed container is still there"
        );

        // A mount namespace joined by path (a copy of the host's: no procfs in the rootfs).
        let holder = MountNsHolder::new();
        b.set_namespace("mount", Some(&holder.ns_path()));
        let id = rt.new_id("joinmnt");
        let out = rt.create(&id, b);
        assert!(!out.success(), "create succeeded: {}", rt.dump_log());
        assert!(out.stderr.contains("exec fifo"), "{}", out.describe());
        assert!(!rt.state(&id).success());
        drop(holder);

        // As runc. Without a mount namespace runc prepares the rootfs in the namespace it
        // shares with its caller: it makes `/` rslave (on this host that turns the host's
        // shared `/` private, which changed how every daemon started later saw its mounts) and
        // binds the rootfs onto itself. So this thread (nextest runs one test a process; the
        // leak check reads the process's, the host's, mounts) moves to a private copy first.
        runtime_tests::conformance::enter_private_mount_ns()
            .expect("a private mount namespace for runc without one of its own");
        let runc = runc();
        b.remove_namespace("mount");
        let id = runc.new_id("noproc");
        assert!(!runc.create(&id, b).success(), "{}", runc.dump_log());
        runc.cleanup();
        let _ = nix::mount::umount2(&b.rootfs(), nix::mount::MntFlags::MNT_DETACH);
    });
}

// --- 2. mount options: applied or refused, features lists exactly the applied ones ---

/// Every option `berth features` lists works in a real container, and the ones whose effect
/// shows in mountinfo have it (before: tmpcopyup, nosymfollow, rro... were dropped unseen).
#[test]
fn every_option_features_lists_applies() {
    leak_checked(|rt, b| {
        let feats = rt.features();
        let doc = feats.json().expect("features JSON");
        let listed: Vec<String> = doc["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        for must in [
            "tmpcopyup",
            "nosymfollow",
            "rro",
            "rnosuid",
            "lazytime",
            "strictatime",
        ] {
            assert!(listed.iter().any(|o| o == must), "{must} not listed");
        }
        for refused in ["idmap", "ridmap", "mand", "copy-symlink"] {
            assert!(!listed.iter().any(|o| o == refused), "{refused} listed");
        }
        let src = b.dir().join("bind-src");
        std::fs::create_dir(&src).unwrap();
        let binds = ["bind", "rbind"];
        let mut script = String::from("set -e\n");
        for (i, opt) in listed.iter().enumerate() {
            let dest = format!("/opt/o{i}");
            let m = if binds.contains(&opt.as_str()) {
                json!({"destination": dest, "type": "bind", "source": src, "options": [opt]})
            } else if opt == "remount" {
                // A remount needs a mount there already.
                b.add_mount(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}));
                json!({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                       "options": ["remount", "ro"]})
            } else {
                json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": [opt]})
            };
            b.add_mount(m);
            script.push_str(&format!("grep -q ' {dest} ' /proc/self/mountinfo\n"));
        }
        script.push_str("cat /proc/self/mountinfo\n");
        sh_bundle(b, &script);
        let mountinfo = ok_run(rt, "allopts", b);
        let opts_of = |opt: &str| {
            let i = listed.iter().position(|o| o == opt).unwrap();
            mount_opts(&mountinfo, &format!("/opt/o{i}")).unwrap()
        };
        for (opt, per_mount) in [
            ("nosymfollow", "nosymfollow"),
            ("rnosymfollow", "nosymfollow"),
            ("noatime", "noatime"),
            ("rnoatime", "noatime"),
            ("rro", "ro"),
            ("rnosuid", "nosuid"),
            ("rnodev", "nodev"),
            ("rnoexec", "noexec"),
            ("rnodiratime", "nodiratime"),
        ] {
            let (per, _) = opts_of(opt);
            assert!(per.iter().any(|o| o == per_mount), "{opt}: {per:?}");
        }
        for opt in ["strictatime", "rstrictatime"] {
            let (per, _) = opts_of(opt);
            assert!(
                !per.iter().any(|o| o == "relatime" || o == "noatime"),
                "{opt}: {per:?}"
            );
        }
        for opt in ["lazytime", "dirsync", "sync"] {
            let (_, sb) = opts_of(opt);
            assert!(sb.iter().any(|o| o == opt), "{opt}: {sb:?}");
        }
        let (per, _) = opts_of("remount");
        assert!(per.iter().any(|o| o == "ro"), "remount ro: {per:?}");
    });
}

/// `nosymfollow` stops symlinks on the mount, `rro` reaches the mounts beneath a bind (plain
/// `ro` does not), as runc 1.1.5 does.
#[test]
fn nosymfollow_and_recursive_read_only_take_effect_as_runc() {
    leak_checked(|rt, b| {
        let src = b.dir().join("tree");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        let sub = HostMount::new("tmpfs", &src.join("sub"), "tmpfs", Some("size=1m"));
        b.add_mount(
            json!({"destination": "/nsf", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosymfollow"]}),
        );
        b.add_mount(json!({"destination": "/rro", "type": "bind", "source": src,
                           "options": ["rbind", "rro"]}));
        b.add_mount(json!({"destination": "/ro", "type": "bind", "source": src,
                           "options": ["rbind", "ro"]}));
        sh_bundle(
            b,
            "echo x > /nsf/f; ln -s f /nsf/l; cat /nsf/l >/dev/null 2>&1 && echo follow=yes || echo follow=no\n\
             for d in /rro /rro/sub /ro /ro/sub; do touch $d/w 2>/dev/null && echo $d=rw || echo $d=ro; done",
        );
        let want = "follow=no\n/rro=ro\n/rro/sub=ro\n/ro=ro\n/ro/sub=rw\n";
        assert_eq!(ok_run(rt, "rro", b), want);
        std::fs::remove_file(src.join("sub/w")).unwrap();
        let runc = runc();
        assert_eq!(ok_run(&runc, "rro", b), want);
        runc.cleanup();
        drop(sub);
    });
}

/// Options berth cannot apply fail create (and `validate`) naming the option (before: they
/// were skipped, or passed as data a bind mount ignores).
#[test]
fn unapplicable_mount_options_fail_create_naming_them() {
    leak_checked(|rt, b| {
        let src = b.dir().join("bind-src");
        std::fs::create_dir(&src).unwrap();
        b.set_args(&["true"]);
        let cases = [
            (
                json!({"destination": "/m", "type": "bind", "source": src,
                    "options": ["rbind", "idmap"]}),
                "idmap",
            ),
            (
                json!({"destination": "/m", "type": "bind", "source": src,
                    "options": ["rbind", "ridmap"]}),
                "ridmap",
            ),
            (
                json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs",
                    "options": ["mand"]}),
                "mand",
            ),
            (
                json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs",
                    "options": ["rsync"]}),
                "rsync",
            ),
            (
                json!({"destination": "/m", "type": "bind", "source": src,
                    "options": ["rbind", "copy-symlink"]}),
                "copy-symlink",
            ),
            (
                json!({"destination": "/m", "type": "bind", "source": src,
                    "options": ["rbind", "sync"]}),
                "sync",
            ),
            (
                json!({"destination": "/m", "type": "bind", "source": src,
                    "options": ["rbind", "mode=700"]}),
                "mode=700",
            ),
            (
                json!({"destination": "/m", "type": "proc", "source": "proc",
                    "options": ["tmpcopyup"]}),
                "tmpcopyup",
            ),
        ];
        let base = b.spec()["mounts"].clone();
        for (m, opt) in cases {
            b.set_mounts(base.clone());
            b.add_mount(m);
            let id = rt.new_id("badopt");
            let out = rt.create(&id, b);
            assert!(!out.success(), "{opt} accepted: {}", rt.dump_log());
            assert!(
                out.stderr.contains(&format!("mount option \"{opt}\"")),
                "{opt}: {}",
                out.describe()
            );
            assert!(!rt.state(&id).success());
            let v = rt.cmd(&["validate", "--bundle", &b.dir().display().to_string()]);
            assert!(!v.success(), "validate accepts {opt}");
            assert!(
                v.stdout.contains(&format!("mount option \"{opt}\""))
                    || v.stderr.contains(&format!("mount option \"{opt}\"")),
                "{}",
                v.describe()
            );
        }
    });
}

/// `tmpcopyup` starts the tmpfs with the image's content (files, modes, owners, symlinks,
/// subdirectories), as runc 1.1.5 does; writes stay in the tmpfs.
#[test]
fn tmpcopyup_copies_the_covered_content_as_runc() {
    leak_checked(|rt, b| {
        let dir = b.rootfs().join("copied");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("f"), "content").unwrap();
        std::fs::set_permissions(dir.join("f"), std::fs::Permissions::from_mode(0o604)).unwrap();
        std::os::unix::fs::chown(dir.join("f"), Some(1234), Some(5678)).unwrap();
        std::fs::write(dir.join("sub/g"), "deeper").unwrap();
        std::fs::set_permissions(dir.join("sub"), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::os::unix::fs::symlink("f", dir.join("link")).unwrap();
        nix::unistd::mkfifo(
            &dir.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::create_dir(b.rootfs().join("copied-ro")).unwrap();
        std::fs::write(b.rootfs().join("copied-ro/r"), "read-only copy").unwrap();
        b.add_mount(
            json!({"destination": "/copied", "type": "tmpfs", "source": "tmpfs",
                           "options": ["tmpcopyup", "nosuid"]}),
        );
        // Read-only too: copied first, then made read-only.
        b.add_mount(
            json!({"destination": "/copied-ro", "type": "tmpfs", "source": "tmpfs",
                           "options": ["tmpcopyup", "ro"]}),
        );
        sh_bundle(
            b,
            "cd /copied && for p in . f sub sub/g link fifo; do stat -c '%n %a %u %g %F' $p; done\n\
             cat f sub/g; readlink link\n\
             grep -c ' /copied .* - tmpfs ' /proc/self/mountinfo; echo new > /copied/new\n\
             cat /copied-ro/r; touch /copied-ro/w 2>/dev/null && echo ro=no || echo ro=yes",
        );
        let out = ok_run(rt, "copyup", b);
        let want = ". 750 0 0 directory\nf 604 1234 5678 regular file\nsub 711 0 0 directory\n\
                    sub/g 644 0 0 regular file\nlink 777 0 0 symbolic link\nfifo 600 0 0 fifo\n\
                    contentdeeperf\n1\nread-only copyro=yes\n";
        assert_eq!(out, want);
        assert!(!dir.join("new").exists(), "the write reached the image");
        // runc 1.1.5 cannot copy a fifo (its copy fails with ENOENT at lchown): compare the
        // rest.
        std::fs::remove_file(dir.join("fifo")).unwrap();
        let runc = runc();
        let want_runc = want.replace("fifo 600 0 0 fifo\n", "");
        let got = ok_run(&runc, "copyup", b)
            .replace("stat: can't stat 'fifo': No such file or directory\n", "");
        assert_eq!(got, want_runc, "{}", runc.dump_log());
        runc.cleanup();
    });
}

// --- 3. read-only and masked paths only add what they say ---

/// A read-only path keeps nosuid, nodev and noexec of its mount (before: remounted `ro` alone,
/// so a binary ran from a noexec mount), as runc 1.1.5.
#[test]
fn readonly_paths_keep_the_mount_flags_as_runc() {
    leak_checked(|rt, b| {
        let t = b.rootfs().join("mnt/t");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::copy(b.rootfs().join("bin/busybox"), t.join("bb")).unwrap();
        let mut mounts = b.spec()["mounts"].clone();
        mounts[0]["options"] = json!(["nosuid", "noexec", "nodev"]);
        b.set_mounts(mounts);
        b.add_mount(
            json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "noexec", "tmpcopyup"]}),
        );
        b.set_readonly_paths(&["/proc/sys", "/mnt/t"]);
        sh_bundle(
            b,
            "/mnt/t/bb true 2>/dev/null && echo exec=yes || echo exec=no; cat /proc/self/mountinfo",
        );
        let check = |rt: &Runtime| {
            let out = ok_run(rt, "roflags", b);
            assert!(
                out.starts_with("exec=no\n"),
                "a binary ran from a noexec mount:\n{out}"
            );
            for mp in ["/proc/sys", "/mnt/t"] {
                let (per, _) = mount_opts(&out, mp).unwrap_or_else(|| panic!("{mp}:\n{out}"));
                for f in ["ro", "nosuid", "nodev", "noexec"] {
                    assert!(per.iter().any(|o| o == f), "{mp} lacks {f}: {per:?}");
                }
            }
        };
        check(rt);
        let runc = runc();
        check(&runc);
        runc.cleanup();
    });
}

/// A masked or read-only path that is a symlink applies to its target inside the container,
/// as runc 1.1.5 (its mount(2) follows the link); a dangling one is skipped, as runc.
#[test]
fn symlinked_masked_and_readonly_paths_follow_the_link_as_runc() {
    leak_checked(|rt, b| {
        let etc = b.rootfs().join("etc");
        std::fs::create_dir(etc.join("rotarget")).unwrap();
        std::fs::create_dir(etc.join("maskdirtarget")).unwrap();
        std::fs::write(etc.join("maskdirtarget/f"), "x").unwrap();
        std::fs::write(etc.join("masktarget"), "secret").unwrap();
        std::os::unix::fs::symlink("rotarget", etc.join("rolink")).unwrap();
        std::os::unix::fs::symlink("/etc/masktarget", etc.join("masklink")).unwrap();
        std::os::unix::fs::symlink("maskdirtarget", etc.join("maskdirlink")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", etc.join("dangling")).unwrap();
        b.set_readonly_paths(&["/etc/rolink", "/etc/dangling"]);
        b.set_masked_paths(&["/etc/masklink", "/etc/maskdirlink", "/etc/dangling"]);
        sh_bundle(
            b,
            "touch /etc/rotarget/w 2>/dev/null && echo ro=no || echo ro=yes\n\
             echo masked=$(cat /etc/masktarget)\n\
             ls /etc/maskdirtarget/f >/dev/null 2>&1 && echo maskdir=no || echo maskdir=yes\n\
             for l in /etc/rolink /etc/masklink /etc/dangling; do readlink $l; done\n\
             for m in /etc/rotarget /etc/masktarget /etc/maskdirtarget /etc/rolink /etc/dangling; do\n\
               grep -c \" $m \" /proc/self/mountinfo; done; true",
        );
        let want = "ro=yes\nmasked=\nmaskdir=yes\nrotarget\n/etc/masktarget\n/nonexistent\n\
                    1\n1\n1\n0\n0\n";
        assert_eq!(ok_run(rt, "symlinks", b), want);
        let runc = runc();
        assert_eq!(ok_run(&runc, "symlinks", b), want, "{}", runc.dump_log());
        runc.cleanup();
    });
}

/// Masking binds /dev/null only if it is the null device (char 1:3): a /dev whose `null` is
/// something else makes create fail (before: the file was bound over the masked path).
#[test]
fn masking_refuses_a_dev_null_that_is_not_the_null_device() {
    leak_checked(|rt, b| {
        let dev = b.dir().join("fake-dev");
        std::fs::create_dir(&dev).unwrap();
        std::fs::write(dev.join("null"), "not a device").unwrap();
        b.set_mounts(json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]},
        ]));
        b.set_masked_paths(&["/etc/passwd"]);
        b.set_readonly_paths(&[]);
        b.set_args(&["true"]);
        let id = rt.new_id("fakenull");
        let out = rt.create(&id, b);
        assert!(!out.success(), "create succeeded: {}", rt.dump_log());
        assert!(
            out.stderr.contains("/dev/null is not the null device"),
            "{}",
            out.describe()
        );
        assert_eq!(
            std::fs::read_to_string(dev.join("null")).unwrap(),
            "not a device"
        );
    });
}

// --- 4. a tmpfs keeps the mode of the directory it covers ---

/// As runc 1.1.5: a tmpfs over /root (0700) without `mode=` is 0700 (before: 1777); `mode=`
/// still decides when given; a new directory's tmpfs is the kernel's 1777.
#[test]
fn tmpfs_keeps_the_mode_of_the_covered_directory_as_runc() {
    leak_checked(|rt, b| {
        std::fs::set_permissions(
            b.rootfs().join("root"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::create_dir(b.rootfs().join("sticky")).unwrap();
        std::fs::set_permissions(
            b.rootfs().join("sticky"),
            std::fs::Permissions::from_mode(0o1750),
        )
        .unwrap();
        b.add_mount(
            json!({"destination": "/root", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid"]}),
        );
        b.add_mount(json!({"destination": "/sticky", "type": "tmpfs", "source": "tmpfs"}));
        b.add_mount(
            json!({"destination": "/given", "type": "tmpfs", "source": "tmpfs",
                           "options": ["mode=751"]}),
        );
        sh_bundle(b, "stat -c '%n %a' /root /sticky /given");
        let want = "/root 700\n/sticky 1750\n/given 751\n";
        assert_eq!(ok_run(rt, "tmpfsmode", b), want);
        // berth made /given (0755) in the image: runc 1.1.5 would then chmod its tmpfs to that
        // mode over the explicit mode= (a runc 1.1 fault, not followed): start it afresh.
        std::fs::remove_dir(b.rootfs().join("given")).unwrap();
        let runc = runc();
        assert_eq!(ok_run(&runc, "tmpfsmode", b), want, "{}", runc.dump_log());
        runc.cleanup();
    });
}

// --- 5. a bind-mounted /dev is left alone ---

/// What a directory holds: name, file type, inode, mode.
fn listing(dir: &Path) -> Vec<(String, String, u64, u32)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_char_device() {
                "char"
            } else if ft.is_symlink() {
                "link"
            } else if ft.is_dir() {
                "dir"
            } else {
                "file"
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                kind.to_owned(),
                md.ino(),
                md.mode(),
            )
        })
        .collect();
    v.sort();
    v
}

/// runc skips its /dev setup when /dev is a bind mount; so does berth now (before: it made
/// `ptmx` a symlink, replaced `null`, added std* links, all in the bind's source). The source
/// here is a temp dir, never the host's /dev.
#[test]
fn bind_mounted_dev_is_left_alone_as_runc() {
    leak_checked(|rt, b| {
        let dev = b.dir().join("dev-src");
        std::fs::create_dir(&dev).unwrap();
        nix::sys::stat::mknod(
            &dev.join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        std::fs::write(dev.join("ptmx"), "a plain file").unwrap();
        std::fs::write(dev.join("marker"), "mine").unwrap();
        let before = listing(&dev);
        b.set_mounts(json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind", "rw"]},
        ]));
        sh_bundle(b, "echo hi > /dev/null && ls /dev | tr '\\n' ' '");
        let want = "marker null ptmx ";
        assert_eq!(ok_run(rt, "devbind", b), want);
        assert_eq!(listing(&dev), before, "berth changed the /dev bind source");
        let runc = runc();
        assert_eq!(ok_run(&runc, "devbind", b), want, "{}", runc.dump_log());
        assert_eq!(listing(&dev), before, "runc changed the /dev bind source");
        runc.cleanup();
    });
}

// --- 6. a missing cwd is created ---

/// As runc 1.1.5: a process.cwd that is not in the image is created (0755, root's), even with
/// a read-only root (before: create failed with chdir ENOENT); `exec --cwd` to a missing
/// directory still fails, as runc.
#[test]
fn missing_cwd_is_created_and_exec_cwd_is_not_as_runc() {
    leak_checked(|rt, b| {
        let check = |rt: &Runtime, b: &mut Bundle| {
            b.set_args(&["sh", "-c", "pwd; stat -c '%a %u' .; exec sleep 100"])
                .set_cwd("/work/dir/missing")
                .set_readonly_root(true);
            let id = rt.new_id("cwd");
            assert!(
                rt.run_with(&id, b, &["--detach"]).success(),
                "{}",
                rt.dump_log()
            );
            let out = rt.exec(&id, &["sh", "-c", "cd /work/dir/missing && pwd && stat -c '%a %u' /work /work/dir /work/dir/missing"]);
            assert_eq!(
                out.stdout,
                "/work/dir/missing\n755 0\n755 0\n755 0\n",
                "{}",
                out.describe()
            );
            let out = rt.exec_with(&id, &["--cwd", "/not/there"], &["true"]);
            assert!(
                !out.success(),
                "exec --cwd to a missing dir: {}",
                out.describe()
            );
            assert!(rt.delete_force(&id).success());
            wait_gone(rt, &id);
        };
        check(rt, b);
        let runc = runc();
        let mut b2 = Bundle::new().unwrap();
        check(&runc, &mut b2);
        runc.cleanup();
    });
}

fn wait_gone(rt: &Runtime, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.state(id).success() {
        assert!(Instant::now() < deadline, "{id} still there");
        std::thread::yield_now();
    }
}
