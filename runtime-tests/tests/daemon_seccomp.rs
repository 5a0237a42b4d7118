//! berthd's seccomp filters against dockerd's: the same busybox image on berthd and on
//! Debian's dockerd 20.10 (with runc 1.1.5; its own roots, no bridge, no iptables), the same
//! probe (`berth-probe syscalls`, bind-mounted at /probe) in both, and the same errno for
//! every syscall probed, with the default profile, capabilities added and dropped,
//! `seccomp=unconfined`, `--privileged`, and a user profile whose rules carry
//! `includes`/`excludes` conditions.
//!
//! berthd follows docker's current default profile (moby/profiles seccomp v0.2.3, dockerd 25
//! and later), which differs from 20.10's in a few syscalls ([`NEWER_PROFILE`]): those are
//! checked against what each profile says rather than against each other.

use std::collections::BTreeMap;

use runtime_tests::daemon::{Dockerd, OutputExt, TestDaemon};
use serde_json::Value;

/// Both daemons, up, with busybox loaded.
struct Pair {
    d: TestDaemon,
    k: Option<Dockerd>,
    probe: String,
}

impl Pair {
    fn start() -> Pair {
        runtime_tests::require_root();
        let d = TestDaemon::start().expect("start berthd");
        d.load_busybox();
        let k = Dockerd::start(d.dir.path());
        k.load_busybox();
        let probe = runtime_tests::probe_bin().expect("berth-probe");
        Pair {
            d,
            k: Some(k),
            probe: probe.display().to_string(),
        }
    }

    /// The probe's `syscalls` results on one daemon: spec -> errno (0: success) or
    /// `signal N`.
    fn run(&self, on_berthd: bool, opts: &[&str], specs: &[&str]) -> BTreeMap<String, String> {
        let vol = format!("{}:/probe:ro", self.probe);
        let mut args = vec!["run", "--rm", "--network", "none", "-v", &vol];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["busybox", "/probe", "syscalls"]);
        args.extend_from_slice(specs);
        let o = if on_berthd {
            self.d.docker(&args)
        } else {
            self.k.as_ref().unwrap().docker(&args)
        };
        let who = if on_berthd { "berthd" } else { "dockerd" };
        assert!(
            o.status.success(),
            "{who}: docker {args:?}: {}\n{}",
            o.stderr_str(),
            if on_berthd {
                self.d.log()
            } else {
                String::new()
            }
        );
        let v: Value = serde_json::from_str(o.stdout_str().trim())
            .unwrap_or_else(|e| panic!("{who}: probe output {:?}: {e}", o.stdout_str()));
        v["results"]
            .as_object()
            .unwrap_or_else(|| panic!("{who}: no results in {v}"))
            .iter()
            .map(|(k, r)| {
                let s = match r {
                    Value::Number(n) => n.to_string(),
                    o => format!("signal {}", o["signal"]),
                };
                (k.clone(), s)
            })
            .collect()
    }

    /// Stop dockerd (its mounts are under berthd's tempdir) and check nothing is left.
    fn finish(mut self) {
        drop(self.k.take());
        self.d.assert_clean(&[]);
    }
}

/// Syscalls probed (label, `NR[:ARG...]` for x86_64). Arguments are chosen so that a call the
/// filter lets through fails harmlessly in the kernel (a null or invalid pointer, a bad fd, an
/// invalid mode) or does nothing outside the probe's own child, and so that "allowed" and
/// "refused by the filter" give different errnos where the kernel allows it.
const CALLS: &[(&str, &str)] = &[
    ("read(-1)", "0:-1"),
    ("getpid", "39"),
    ("clock_adjtime(0, NULL)", "305:0:0"),
    ("adjtimex(NULL)", "159:0"),
    ("modify_ldt(0, NULL, 0)", "154:0:0:0"),
    ("arch_prctl(ARCH_GET_FS, NULL)", "158:0x1003:0"),
    ("socket(AF_INET, SOCK_DGRAM)", "41:2:2:0"),
    ("socket(AF_UNIX, SOCK_STREAM)", "41:1:1:0"),
    ("socket(AF_NETLINK, SOCK_RAW)", "41:16:3:0"),
    ("socket(39)", "41:39:1:0"),
    ("socket(AF_XDP)", "41:44:3:0"),
    ("personality(PER_LINUX32)", "135:8"),
    ("personality(query)", "135:0xffffffff"),
    ("personality(ADDR_NO_RANDOMIZE)", "135:0x40000"),
    ("personality(PER_BSD)", "135:6"),
    ("clone(SIGCHLD)", "56:17"),
    ("clone(CLONE_NEWUSER|SIGCHLD)", "56:0x10000011"),
    ("clone(CLONE_NEWNS|SIGCHLD)", "56:0x20011"),
    ("clone3(NULL, 88)", "435:0:88"),
    ("unshare(0)", "272:0"),
    ("unshare(CLONE_NEWUTS)", "272:0x4000000"),
    ("setns(-1, 0)", "308:-1:0"),
    ("mount(NULL, 1, ...)", "165:0:1:0:0:0"),
    ("umount2(1, 0)", "166:1:0"),
    ("pivot_root(1, 1)", "155:1:1"),
    ("sethostname(NULL, 1000)", "170:0:1000"),
    ("setdomainname(NULL, 1000)", "171:0:1000"),
    ("syslog(99)", "103:99:0:0"),
    ("fanotify_init(FAN_REPORT_FID)", "300:0x200:0"),
    ("bpf(0, NULL, 0)", "321:0:0:0"),
    ("perf_event_open(NULL)", "298:0:0:-1:-1:0"),
    ("quotactl_fd(-1)", "443:-1:0:0:0"),
    ("lookup_dcookie", "212:0:0:0"),
    ("open_by_handle_at(-1)", "304:-1:0:0"),
    ("ptrace(PTRACE_ATTACH, -1)", "101:16:-1:0:0"),
    ("kcmp(-1, -1)", "312:-1:-1:0:0:0"),
    ("pidfd_getfd(-1)", "438:-1:0:0"),
    ("process_madvise(-1)", "440:-1:0:0:0:0"),
    ("get_mempolicy", "239:0:0:0:0:0"),
    ("set_mempolicy(99)", "238:99:0:0"),
    ("mbind(mode 99)", "237:0:0:99:0:0:0"),
    ("move_pages(count 0)", "279:0:0:0:0:0:0"),
    ("migrate_pages(self, 0)", "256:0:0:0:0"),
    ("reboot(no magic)", "169:0:0:0:0"),
    ("kexec_load(bad flags)", "246:0:0:0:0xffffffff"),
    ("kexec_file_load(bad flags)", "320:-1:-1:0:0:0xffffffff"),
    ("init_module(NULL, 0)", "175:0:0:0"),
    ("finit_module(-1)", "313:-1:0:0"),
    ("delete_module(1)", "176:1:0"),
    ("acct(1)", "163:1"),
    ("settimeofday(1, NULL)", "164:1:0"),
    ("clock_settime(0, 1)", "227:0:1"),
    ("iopl(4)", "172:4"),
    ("ioperm(0x10000, 1, 1)", "173:0x10000:1:1"),
    ("vhangup", "153"),
    ("chroot(1)", "161:1"),
    ("keyctl(0, 0)", "250:0:0"),
    ("add_key(NULL)", "248:0:0:0:0:0"),
    ("request_key(NULL)", "249:0:0:0:0"),
    ("swapon(1, 0)", "167:1:0"),
    ("swapoff(1)", "168:1"),
    ("userfaultfd(0)", "323:0"),
    ("uselib(1)", "134:1"),
    ("sysfs(99)", "139:99"),
    ("ustat(0, NULL)", "136:0:0"),
    ("create_module", "174:0:0"),
    ("nfsservctl", "180"),
    ("_sysctl(NULL)", "156:0"),
    ("tuxcall", "184"),
    ("landlock_create_ruleset(VERSION)", "444:0:0:1"),
    ("memfd_secret(0)", "447:0"),
    ("process_mrelease(-1)", "448:-1:0"),
    ("futex_waitv(NULL)", "449:0:0:0:0:0"),
    (
        "statmount (457, unknown to libseccomp 2.5.4)",
        "457:0:0:0:0",
    ),
    ("mseal (462)", "462:0:0:0"),
    ("400 (a hole below the newest syscall named)", "400"),
    ("1000 (no such syscall)", "1000"),
    ("x32 getpid", "0x40000027"),
    ("x32 mount", "0x400000a5"),
    ("x32 1000", "0x400003e8"),
];

/// What a filter does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Refused with EPERM.
    Eperm,
    /// Refused with ENOSYS (the runtime's stub for numbers past the profile's newest).
    Enosys,
    /// Let through: what the kernel answers (as without a filter).
    Kernel,
}

/// Where docker's profile changed after 20.10 (label, spec, berthd as docker 25+,
/// dockerd 20.10), for a container with docker's default capabilities:
/// - AF_ALG and AF_VSOCK sockets are refused (profiles v0.2.x);
/// - name_to_handle_at no longer needs CAP_SYS_ADMIN; io_uring is refused (docker 25);
/// - process_vm_readv/writev are allowed from Linux 4.8 as ptrace is, without
///   CAP_SYS_PTRACE (docker 23);
/// - pkey_*, cachestat, fchmodat2 and futex_wake/wait/requeue are allowed: on this host's
///   libseccomp (2.5.4 with Debian's newer syscall table) they raise the newest named syscall
///   from futex_waitv (449) to futex_requeue (456), so set_mempolicy_home_node (450) gets the
///   default EPERM, not the stub's ENOSYS.
const NEWER_PROFILE: &[(&str, &str, Outcome, Outcome)] = &[
    (
        "socket(AF_ALG)",
        "41:38:5:0",
        Outcome::Eperm,
        Outcome::Kernel,
    ),
    (
        "socket(AF_VSOCK)",
        "41:40:1:0",
        Outcome::Eperm,
        Outcome::Kernel,
    ),
    (
        "name_to_handle_at(AT_FDCWD, 1)",
        "303:-100:1:0:0:0",
        Outcome::Kernel,
        Outcome::Eperm,
    ),
    (
        "io_uring_setup(0, NULL)",
        "425:0:0",
        Outcome::Eperm,
        Outcome::Kernel,
    ),
    (
        "process_vm_readv(flags 1)",
        "310:0:0:0:0:0:1",
        Outcome::Kernel,
        Outcome::Eperm,
    ),
    (
        "process_vm_writev(flags 1)",
        "311:0:0:0:0:0:1",
        Outcome::Kernel,
        Outcome::Eperm,
    ),
    (
        "pkey_alloc(0, 0)",
        "330:0:0",
        Outcome::Kernel,
        Outcome::Eperm,
    ),
    (
        "set_mempolicy_home_node (450)",
        "450:0:0:0:0",
        Outcome::Eperm,
        Outcome::Enosys,
    ),
    (
        "cachestat (451)",
        "451:-1:0:0:0",
        Outcome::Kernel,
        Outcome::Enosys,
    ),
    (
        "fchmodat2 (452)",
        "452:-1:0:0:0",
        Outcome::Kernel,
        Outcome::Enosys,
    ),
];

/// The container configurations compared, as docker CLI options (the same on both daemons).
const CONFIGS: &[(&str, &[&str])] = &[
    ("default", &[]),
    ("--cap-add SYS_ADMIN", &["--cap-add", "SYS_ADMIN"]),
    ("--cap-add SYS_PTRACE", &["--cap-add", "SYS_PTRACE"]),
    (
        "--cap-add of every other gated capability",
        &[
            "--cap-add",
            "SYS_NICE",
            "--cap-add",
            "SYS_TIME",
            "--cap-add",
            "SYS_BOOT",
            "--cap-add",
            "DAC_READ_SEARCH",
            "--cap-add",
            "SYS_MODULE",
            "--cap-add",
            "SYS_RAWIO",
            "--cap-add",
            "SYSLOG",
            "--cap-add",
            "SYS_PACCT",
            "--cap-add",
            "SYS_TTY_CONFIG",
        ],
    ),
    ("--cap-drop SYS_CHROOT", &["--cap-drop", "SYS_CHROOT"]),
    ("--cap-drop ALL", &["--cap-drop", "ALL"]),
    (
        "seccomp=unconfined",
        &["--security-opt", "seccomp=unconfined"],
    ),
];

/// Capabilities dockerd 20.10 does not know.
const DOCKERD_20_UNKNOWN: &[&str] = &["PERFMON", "BPF", "CHECKPOINT_RESTORE"];

/// Capability names by bit (linux/capability.h).
const CAP_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// `--cap-add` of every capability in our bounding set that dockerd 20.10 knows (up to
/// CAP_AUDIT_READ: it refuses CAP_PERFMON, CAP_BPF and CAP_CHECKPOINT_RESTORE, which berthd's
/// "every capability" adds too; CAP_SYS_ADMIN, held by both, opens the same calls).
/// dockerd's `--privileged` and `--cap-add ALL` ask runc for every capability the kernel
/// knows, which fails where the bounding set lacks one (these machines run without
/// CAP_SYS_RESOURCE); berthd's ask for those of its own bounding set. Naming them gets
/// dockerd the same set.
fn cap_add_bounding_set() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapBnd in /proc/self/status");
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, name)| bnd & (1 << bit) != 0 && !DOCKERD_20_UNKNOWN.contains(name))
        .flat_map(|(_, name)| ["--cap-add".to_owned(), (*name).to_owned()])
        .collect()
}

#[test]
fn daemon_seccomp_errnos_match_dockerd() {
    let p = Pair::start();
    let mut specs: Vec<&str> = CALLS.iter().map(|(_, s)| *s).collect();
    specs.extend(NEWER_PROFILE.iter().map(|(_, s, _, _)| *s));
    let label = |spec: &str| {
        CALLS
            .iter()
            .map(|(l, s)| (*l, *s))
            .chain(NEWER_PROFILE.iter().map(|(l, s, _, _)| (*l, *s)))
            .find(|(_, s)| *s == spec)
            .map(|(l, _)| l)
            .unwrap_or("?")
    };
    // (name, berthd's options, dockerd's options, whether a filter applies).
    let all_caps = cap_add_bounding_set();
    let all_caps: Vec<&str> = all_caps.iter().map(String::as_str).collect();
    let mut unconfined_all = all_caps.clone();
    unconfined_all.extend(["--security-opt", "seccomp=unconfined"]);
    let mut configs: Vec<(&str, Vec<&str>, Vec<&str>, bool)> = CONFIGS
        .iter()
        .map(|(n, o)| {
            (
                *n,
                o.to_vec(),
                o.to_vec(),
                !o.contains(&"seccomp=unconfined"),
            )
        })
        .collect();
    // docker's default profile with every capability: CAP_SYS_ADMIN's groups and the others
    // at once (berthd: --cap-add ALL).
    configs.push((
        "every capability",
        vec!["--cap-add", "ALL"],
        all_caps.clone(),
        true,
    ));
    // --privileged: no filter, every capability (dockerd: the same, spelled out, as its own
    // --privileged cannot start here; see cap_add_bounding_set).
    configs.push(("--privileged", vec!["--privileged"], unconfined_all, false));
    let mut mismatches = Vec::new();
    let mut results = BTreeMap::new();
    for (name, b_opts, k_opts, filtered) in &configs {
        let b = p.run(true, b_opts, &specs);
        let k = p.run(false, k_opts, &specs);
        for spec in &specs {
            if *filtered && NEWER_PROFILE.iter().any(|(_, s, _, _)| s == spec) {
                continue;
            }
            let (bv, kv) = (&b[*spec], &k[*spec]);
            if bv != kv {
                mismatches.push(format!(
                    "{name}: {} [{spec}]: berthd {bv}, dockerd {kv}",
                    label(spec)
                ));
            }
        }
        results.insert(*name, (b, k));
    }
    assert!(
        mismatches.is_empty(),
        "berthd and dockerd differ on {} calls:\n  {}",
        mismatches.len(),
        mismatches.join("\n  ")
    );

    // Not vacuous: the filters did refuse, with docker's errnos.
    let (b, _) = &results["default"];
    let (u, _) = &results["seccomp=unconfined"];
    for (spec, want) in [
        ("435:0:88", "38"),
        ("1000", "38"),
        ("400", "1"),
        ("135:0x40000", "1"),
        ("239:0:0:0:0:0", "1"),
        ("56:0x10000011", "1"),
        ("246:0:0:0:0xffffffff", "1"),
        ("161:1", "14"),
        ("305:0:0", "14"),
    ] {
        assert_eq!(b[spec], want, "default: {}", label(spec));
    }
    assert_eq!(u["239:0:0:0:0:0"], "0", "get_mempolicy unconfined");
    assert_eq!(u["435:0:88"], "14", "clone3 unconfined");
    let (a, _) = &results["--cap-add SYS_ADMIN"];
    assert_eq!(a["435:0:88"], "14", "clone3 with CAP_SYS_ADMIN");
    assert_eq!(a["272:0"], "0", "unshare(0) with CAP_SYS_ADMIN");
    let (c, _) = &results["--cap-drop SYS_CHROOT"];
    assert_eq!(c["161:1"], "1", "chroot without CAP_SYS_CHROOT");

    // Where the profiles differ: each as its profile says.
    let (_, ku) = &results["seccomp=unconfined"];
    let (_, kd) = &results["default"];
    let expect = |o: Outcome, unconfined: &str| match o {
        Outcome::Eperm => "1".to_owned(),
        Outcome::Enosys => "38".to_owned(),
        Outcome::Kernel => unconfined.to_owned(),
    };
    for (l, spec, berthd, dockerd20) in NEWER_PROFILE {
        assert_eq!(b[*spec], expect(*berthd, &u[*spec]), "berthd: {l}");
        assert_eq!(
            kd[*spec],
            expect(*dockerd20, &ku[*spec]),
            "dockerd 20.10: {l}"
        );
    }
    p.finish();
}

/// A user profile whose rules hold only under conditions (and the old `name` form), probed
/// with syscalls neither the probe nor runc's init make after the filter is loaded.
const USER_PROFILE: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "archMap": [{"architecture": "SCMP_ARCH_X86_64",
               "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
  "syscalls": [
    {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
     "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    {"names": ["getsid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 14,
     "includes": {"caps": ["CAP_SYS_ADMIN"]}},
    {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 15,
     "includes": {"arches": ["amd64"]}},
    {"names": ["getcpu"], "action": "SCMP_ACT_ERRNO", "errnoRet": 16,
     "includes": {"arches": ["arm64"]}},
    {"names": ["sysinfo"], "action": "SCMP_ACT_ERRNO", "errnoRet": 17,
     "includes": {"minKernel": "4.0"}},
    {"names": ["times"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
     "includes": {"minKernel": "99.0"}},
    {"names": ["getrusage"], "action": "SCMP_ACT_ERRNO", "errnoRet": 19,
     "excludes": {"minKernel": "4.0"}},
    {"names": ["getitimer"], "action": "SCMP_ACT_ERRNO", "errnoRet": 20,
     "excludes": {"arches": ["amd64"]}},
    {"names": ["sched_getscheduler"], "action": "SCMP_ACT_ERRNO", "errnoRet": 21,
     "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}},
    {"name": "sched_get_priority_max", "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
     "comment": "the old single-name form"},
    {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 23,
     "includes": {"caps": ["CAP_SYS_ADMIN"]}, "excludes": {"caps": ["CAP_NET_ADMIN"]}},
    {"names": ["sched_get_priority_min"], "action": "SCMP_ACT_ERRNO", "errnoRet": 24,
     "excludes": {"caps": ["CAP_CHOWN"]}}
  ]
}"#;

/// (syscall, probe spec, the errno of its rule) for [`USER_PROFILE`]'s rules.
const USER_CALLS: &[(&str, &str, &str)] = &[
    ("getpgid(0)", "121:0", "13"),
    ("getsid(0)", "124:0", "14"),
    ("getpriority(PRIO_PROCESS, 0)", "140:0:0", "15"),
    ("getcpu(NULL, NULL)", "309:0:0:0", "16"),
    ("sysinfo(NULL)", "99:0", "17"),
    ("times(NULL)", "100:0", "18"),
    ("getrusage(0, NULL)", "98:0:0", "19"),
    ("getitimer(0, NULL)", "36:0:0", "20"),
    ("sched_getscheduler(0)", "145:0", "21"),
    ("sched_get_priority_max(0)", "146:0", "22"),
    ("mkdirat(AT_FDCWD, 1)", "258:-100:1:0", "23"),
    ("sched_get_priority_min(0)", "147:0", "24"),
];

#[test]
fn daemon_seccomp_user_profile_conditions_match_dockerd() {
    let p = Pair::start();
    let file = p.d.dir.path().join("profile.json");
    std::fs::write(&file, USER_PROFILE).unwrap();
    let opt = format!("seccomp={}", file.display());
    let specs: Vec<&str> = USER_CALLS.iter().map(|(_, s, _)| *s).collect();
    let configs: &[(&str, &[&str])] = &[
        ("default capabilities", &[]),
        ("--cap-add SYS_ADMIN", &["--cap-add", "SYS_ADMIN"]),
        (
            "--cap-add SYS_ADMIN --cap-add NET_ADMIN",
            &["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN"],
        ),
        ("--cap-drop CHOWN", &["--cap-drop", "CHOWN"]),
    ];
    let mut mismatches = Vec::new();
    let mut results = BTreeMap::new();
    for (name, caps) in configs {
        let mut opts = vec!["--security-opt", opt.as_str()];
        opts.extend_from_slice(caps);
        let b = p.run(true, &opts, &specs);
        let k = p.run(false, &opts, &specs);
        for (l, spec, _) in USER_CALLS {
            if b[*spec] != k[*spec] {
                mismatches.push(format!(
                    "{name}: {l}: berthd {}, dockerd {}",
                    b[*spec], k[*spec]
                ));
            }
        }
        results.insert(*name, b);
    }
    assert!(
        mismatches.is_empty(),
        "berthd and dockerd differ:\n  {}",
        mismatches.join("\n  ")
    );
    // Not vacuous: which rules applied, by their errnos.
    let applied = |name: &str| -> Vec<&str> {
        USER_CALLS
            .iter()
            .filter(|(_, s, errno)| results[name][*s] == *errno)
            .map(|(l, _, _)| *l)
            .collect()
    };
    assert_eq!(
        applied("default capabilities"),
        [
            "getpgid(0)",
            "getpriority(PRIO_PROCESS, 0)",
            "sysinfo(NULL)",
            "sched_get_priority_max(0)"
        ]
    );
    assert_eq!(
        applied("--cap-add SYS_ADMIN"),
        [
            "getsid(0)",
            "getpriority(PRIO_PROCESS, 0)",
            "sysinfo(NULL)",
            "sched_get_priority_max(0)",
            "mkdirat(AT_FDCWD, 1)"
        ]
    );
    assert!(applied("--cap-add SYS_ADMIN --cap-add NET_ADMIN").contains(&"sched_getscheduler(0)"));
    assert!(applied("--cap-drop CHOWN").contains(&"sched_get_priority_min(0)"));

    // With --privileged, docker 25 and later (and berthd) apply a given profile, judged
    // against every capability (dockerd 20.10 ignored it; its --privileged cannot start
    // here, see cap_add_bounding_set): compared with dockerd given every capability.
    let all_caps = cap_add_bounding_set();
    let mut k_opts: Vec<&str> = all_caps.iter().map(String::as_str).collect();
    k_opts.extend(["--security-opt", opt.as_str()]);
    let b = p.run(
        true,
        &["--privileged", "--security-opt", opt.as_str()],
        &specs,
    );
    let k = p.run(false, &k_opts, &specs);
    assert_eq!(b, k, "--privileged with a profile");
    assert_eq!(b["124:0"], "14", "getsid refused (CAP_SYS_ADMIN held)");
    assert_eq!(b["121:0"], "0", "getpgid allowed (CAP_SYS_ADMIN held)");
    p.finish();
}

/// A profile berthd cannot honour is a 400 naming the field, before anything is made.
#[test]
fn daemon_seccomp_bad_profiles_are_refused_naming_the_field() {
    runtime_tests::require_root();
    let d = TestDaemon::start().expect("start berthd");
    d.load_busybox();
    for (profile, want) in [
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
                "action": "SCMP_ACT_ERRNO", "includes": {"capz": ["CAP_SYS_ADMIN"]}}]}"#,
            "unknown field syscalls[0].includes.capz",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}"#,
            "listenerPath is not supported",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
                "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "4"}}]}"#,
            "syscalls[0].excludes.minKernel: invalid kernel version",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}]}"#,
            "both architectures and archMap",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "EQ"}]}]}"#,
            "syscalls[0].args[0].op: unknown operator \"EQ\"",
        ),
    ] {
        let body = serde_json::json!({"Image": "busybox", "Cmd": ["true"],
            "HostConfig": {"SecurityOpt": [format!("seccomp={profile}")]}});
        let (status, _, resp) = d
            .http(
                "POST",
                "/containers/create",
                Some(body.to_string().as_bytes()),
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&resp).unwrap_or_default();
        let msg = v["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{profile}: {}", String::from_utf8_lossy(&resp));
        assert!(msg.contains(want), "{profile}: {msg}");
    }
    // Nothing was created.
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    d.assert_clean(&[]);
}
