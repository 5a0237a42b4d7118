//! Hostile values in config.json: every number is range-checked against the kernel type it
//! ends in, no value makes berth panic, every rejection names the JSON field, an unknown
//! capability is a warning, and a property berth cannot apply is an error at create. Each
//! refusal is checked through both `berth validate` and `berth create`, and nothing may be
//! left behind.

mod common;

use std::path::Path;

use runtime_tests::{assert_no_leaks, LeakSnapshot, RunOutput, Runtime};
use serde_json::{json, Value};

/// Asserts that `out` is a clean refusal: an exit status (no signal, no abort), non-zero and
/// not Rust's panic code, no panic message, and the output names `field`.
#[track_caller]
fn refused_naming(out: &RunOutput, field: &str, what: &str) {
    assert!(!out.timed_out, "{what}: hung\n{}", out.describe());
    let code = out.code();
    assert!(
        code.is_some(),
        "{what}: killed by a signal\n{}",
        out.describe()
    );
    assert_ne!(code, Some(0), "{what}: accepted\n{}", out.describe());
    assert_ne!(code, Some(101), "{what}: panicked\n{}", out.describe());
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !text.contains("panicked at") && !text.contains("RUST_BACKTRACE"),
        "{what}: panicked\n{}",
        out.describe()
    );
    assert!(
        text.contains(field),
        "{what}: the message does not name {field}\n{}",
        out.describe()
    );
}

/// Sets the value at JSON pointer `ptr`, creating the objects on the way.
fn set(v: &mut Value, ptr: &str, value: Value) {
    let (parent, last) = ptr.rsplit_once('/').expect("a JSON pointer");
    let mut cur = v;
    for p in parent.split('/').filter(|p| !p.is_empty()) {
        if cur.get(p).is_none() {
            cur[p] = json!({});
        }
        cur = &mut cur[p];
    }
    cur[last] = value;
}

/// `validate` and `create` of the bundle as it is on disk (config.json already written).
fn validate_and_create(rt: &Runtime, dir: &Path, id: &str) -> (RunOutput, RunOutput) {
    let d = dir.display().to_string();
    let v = rt.cmd(&["validate", "--bundle", &d]);
    let c = rt.cmd(&["create", "--bundle", &d, id]);
    (v, c)
}

/// A value that fits no kernel type: `2^64`, which JSON parsers read as a float.
const TOO_BIG: &str = "18446744073709551616";

/// (what, JSON pointer, value, the field the refusal must name).
fn hostile_edits() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    let dev = |major: Value, minor: Value| json!([{"type": "c", "path": "/dev/hostile", "major": major, "minor": minor}]);
    vec![
        // Numbers past the kernel type.
        (
            "device major past dev_t",
            "/linux/devices",
            dev(json!(4294967297u64), json!(1)),
            "linux.devices[0].major",
        ),
        (
            "device major 4096",
            "/linux/devices",
            dev(json!(4096), json!(0)),
            "linux.devices[0].major",
        ),
        (
            "device minor past dev_t",
            "/linux/devices",
            dev(json!(1), json!(1048576)),
            "linux.devices[0].minor",
        ),
        (
            "negative device major",
            "/linux/devices",
            dev(json!(-1), json!(3)),
            "linux.devices[0].major",
        ),
        (
            "device fileMode past mode_t",
            "/linux/devices",
            json!([{"type": "c", "path": "/dev/h", "major": 1, "minor": 3, "fileMode": 4294967296u64}]),
            "linux.devices[0].fileMode",
        ),
        (
            "device uid -1",
            "/linux/devices",
            json!([{"type": "c", "path": "/dev/h", "major": 1, "minor": 3, "uid": 4294967295u64}]),
            "linux.devices[0].uid",
        ),
        (
            "uid -1 as uint32",
            "/process/user/uid",
            json!(4294967295u64),
            "process.user.uid",
        ),
        (
            "uid past uint32",
            "/process/user/uid",
            json!(4294967296u64),
            "process.user.uid",
        ),
        (
            "negative uid",
            "/process/user/uid",
            json!(-1),
            "process.user.uid",
        ),
        (
            "negative gid",
            "/process/user/gid",
            json!(-5),
            "process.user.gid",
        ),
        (
            "additional gid -1",
            "/process/user/additionalGids",
            json!([1, 4294967295u64]),
            "process.user.additionalGids",
        ),
        (
            "negative additional gid",
            "/process/user/additionalGids",
            json!([1, -2]),
            "process.user.additionalGids",
        ),
        (
            "umask past 0777",
            "/process/user/umask",
            json!(0o10000),
            "process.user.umask",
        ),
        (
            "negative umask",
            "/process/user/umask",
            json!(-1),
            "process.user.umask",
        ),
        (
            "rlimit soft negative",
            "/process/rlimits",
            json!([{"type": "RLIMIT_NOFILE", "soft": -1, "hard": 10}]),
            "process.rlimits[0].soft",
        ),
        (
            "rlimit hard past u64",
            "/process/rlimits",
            json!([{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1.8446744073709552e19}]),
            "process.rlimits[0].hard",
        ),
        (
            "oomScoreAdj 1001",
            "/process/oomScoreAdj",
            json!(1001),
            "process.oomScoreAdj",
        ),
        (
            "oomScoreAdj past int",
            "/process/oomScoreAdj",
            json!(1u64 << 40),
            "process.oomScoreAdj",
        ),
        (
            "console width past u16",
            "/process/consoleSize",
            json!({"height": 24, "width": 1u64 << 40}),
            "process.consoleSize.width",
        ),
        (
            "cpu shares past the kernel's",
            "/linux/resources/cpu",
            json!({"shares": 1u64 << 62}),
            "linux.resources.cpu.shares",
        ),
        (
            "cpu shares u64 max",
            "/linux/resources/cpu",
            json!({"shares": u64::MAX}),
            "linux.resources.cpu.shares",
        ),
        (
            "cpu quota -5",
            "/linux/resources/cpu",
            json!({"quota": -5}),
            "linux.resources.cpu.quota",
        ),
        (
            "cpu period u64 max",
            "/linux/resources/cpu",
            json!({"period": u64::MAX}),
            "linux.resources.cpu.period",
        ),
        (
            "blkio weight 70000",
            "/linux/resources/blockIO",
            json!({"weight": 70000}),
            "linux.resources.blockIO.weight",
        ),
        (
            "blkio device major",
            "/linux/resources/blockIO",
            json!({"throttleReadBpsDevice": [{"major": 4294967304u64, "minor": 0, "rate": 1}]}),
            "linux.resources.blockIO.throttleReadBpsDevice[0].major",
        ),
        (
            "pids limit i64 max",
            "/linux/resources/pids",
            json!({"limit": i64::MAX}),
            "linux.resources.pids.limit",
        ),
        (
            "memory limit -7",
            "/linux/resources/memory",
            json!({"limit": -7}),
            "linux.resources.memory.limit",
        ),
        (
            "memory limit past i64",
            "/linux/resources/memory",
            json!({"limit": u64::MAX}),
            "linux.resources.memory.limit",
        ),
        (
            "hugepage limit negative",
            "/linux/resources/hugepageLimits",
            json!([{"pageSize": "2MB", "limit": -1}]),
            "linux.resources.hugepageLimits[0].limit",
        ),
        (
            "device rule major past dev_t",
            "/linux/resources/devices",
            json!([{"allow": true, "type": "c", "major": 4294967297u64, "minor": 1, "access": "rwm"}]),
            "linux.resources.devices[0].major",
        ),
        (
            "net classID negative",
            "/linux/resources/network",
            json!({"classID": -1}),
            "linux.resources.network.classID",
        ),
        (
            "seccomp errno past MAX_ERRNO",
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}),
            "linux.seccomp.syscalls[0].errnoRet",
        ),
        (
            "seccomp arg index huge",
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1u64 << 40, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
        (
            "hook timeout i64 max",
            "/hooks/poststop",
            json!([{"path": "/bin/true", "timeout": i64::MAX}]),
            "hooks.poststop[0].timeout",
        ),
        // Strings: NUL bytes, empty, too long.
        (
            "NUL in args",
            "/process/args",
            json!(["sh", "a\u{0}b"]),
            "process.args[1]",
        ),
        (
            "NUL in env",
            "/process/env",
            json!(["A=\u{0}"]),
            "process.env[0]",
        ),
        (
            "NUL in cwd",
            "/process/cwd",
            json!("/\u{0}x"),
            "process.cwd",
        ),
        ("NUL in hostname", "/hostname", json!("a\u{0}b"), "hostname"),
        (
            "NUL in a mount destination",
            "/mounts",
            json!([{"destination": "/x\u{0}y", "type": "tmpfs", "source": "tmpfs"}]),
            "mounts[0].destination",
        ),
        (
            "NUL in a sysctl value",
            "/linux/sysctl",
            json!({"kernel.shmmax": "1\u{0}2"}),
            "linux.sysctl",
        ),
        (
            "NUL in a masked path",
            "/linux/maskedPaths",
            json!(["/proc/k\u{0}core"]),
            "linux.maskedPaths[0]",
        ),
        ("empty cwd", "/process/cwd", json!(""), "process.cwd"),
        (
            "empty executable",
            "/process/args",
            json!([""]),
            "process.args[0]",
        ),
        ("empty root path", "/root/path", json!(""), "root.path"),
        (
            "empty namespace type",
            "/linux/namespaces",
            json!([{"type": "mount"}, {"type": ""}]),
            "linux.namespaces[1].type",
        ),
        (
            "empty capability",
            "/process/capabilities/bounding",
            json!(["CAP_KILL", ""]),
            "process.capabilities.bounding[1]",
        ),
        (
            "empty rlimit type",
            "/process/rlimits",
            json!([{"type": "", "soft": 1, "hard": 1}]),
            "process.rlimits[0].type",
        ),
        (
            "empty sysctl key",
            "/linux/sysctl",
            json!({"": "1"}),
            "linux.sysctl",
        ),
        (
            "empty syscall name",
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]}),
            "linux.seccomp.syscalls[0].names[0]",
        ),
        (
            "very long hostname",
            "/hostname",
            json!("h".repeat(100_000)),
            "hostname",
        ),
        (
            "very long cwd",
            "/process/cwd",
            json!(format!("/{}", "d".repeat(100_000))),
            "process.cwd",
        ),
        (
            "very long executable",
            "/process/args",
            json!([format!("/{}", "x".repeat(100_000))]),
            "process.args[0]",
        ),
        // Wrong types.
        ("process a string", "/process", json!("sh"), "process"),
        (
            "args a string",
            "/process/args",
            json!("sh"),
            "process.args",
        ),
        (
            "terminal a string",
            "/process/terminal",
            json!("yes"),
            "process.terminal",
        ),
        (
            "uid a string",
            "/process/user/uid",
            json!("0"),
            "process.user.uid",
        ),
        (
            "uid a float",
            "/process/user/uid",
            json!(0.5),
            "process.user.uid",
        ),
        (
            "namespaces an object",
            "/linux/namespaces",
            json!({"type": "pid"}),
            "linux.namespaces",
        ),
        (
            "mounts an object",
            "/mounts",
            json!({"destination": "/x"}),
            "mounts",
        ),
        (
            "devices major a string",
            "/linux/devices",
            dev(json!("1"), json!(1)),
            "linux.devices[0].major",
        ),
        (
            "sysctl value a number",
            "/linux/sysctl",
            json!({"kernel.shmmax": 5}),
            "linux.sysctl",
        ),
        ("linux an array", "/linux", json!([]), "linux"),
        ("ociVersion a number", "/ociVersion", json!(1), "ociVersion"),
    ]
}

/// Every hostile value is refused by `validate` and by `create`, naming its field, without a
/// panic; nothing is left behind.
#[test]
fn hostile_values_are_refused_by_field_without_panic() {
    let Some((rt, mut bundle)) = common::setup() else {
        return;
    };
    bundle.set_args(&["true"]);
    let base = bundle.spec().clone();
    let before = LeakSnapshot::take(&rt, &bundle);
    let mut failures = Vec::new();
    for (what, ptr, value, field) in hostile_edits() {
        let mut spec = base.clone();
        set(&mut spec, ptr, value);
        *bundle.spec_mut() = spec;
        bundle.save().unwrap();
        let id = rt.new_id("hostile");
        let (v, c) = validate_and_create(&rt, bundle.dir(), &id);
        for (out, verb) in [(&v, "validate"), (&c, "create")] {
            let r = std::panic::catch_unwind(|| {
                refused_naming(out, field, &format!("{what} ({verb})"))
            });
            if let Err(e) = r {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "?".into());
                failures.push(msg);
            }
        }
        if c.success() {
            rt.delete_force(&id);
        }
    }
    rt.cleanup();
    assert_no_leaks(&before, &rt);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Raw documents no JSON value can express: non-UTF-8 bytes, deep nesting, broken syntax.
#[test]
fn hostile_documents_are_refused_by_field_without_panic() {
    let Some((rt, mut bundle)) = common::setup() else {
        return;
    };
    bundle.set_args(&["true"]);
    bundle.save().unwrap();
    let good = std::fs::read_to_string(bundle.config_path()).unwrap();
    let before = LeakSnapshot::take(&rt, &bundle);
    let deep = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "non-UTF-8 hostname",
            insert_after(good.as_bytes(), b"\"hostname\": \"", &[0xff, 0xfe]),
            "hostname",
        ),
        (
            "deeply nested annotations",
            insert_after(
                good.as_bytes(),
                b"{",
                format!("\"annotations\": {{\"x\": {deep}}},").as_bytes(),
            ),
            "annotations",
        ),
        (
            "deeply nested args",
            good.replacen(
                "\"args\": [",
                &format!("\"args\": [{}{}, ", "[".repeat(50_000), "]".repeat(50_000)),
                1,
            )
            .into_bytes(),
            "process.args",
        ),
        (
            "uid 2^64 as a literal",
            good.replacen("\"uid\": 0", &format!("\"uid\": {TOO_BIG}"), 1)
                .into_bytes(),
            "process.user.uid",
        ),
        ("a number", b"5".to_vec(), "."),
        (
            "truncated",
            good.as_bytes()[..good.len() / 2].to_vec(),
            "config.json",
        ),
        ("empty", Vec::new(), "config.json"),
    ];
    let mut failures = Vec::new();
    for (what, bytes, field) in cases {
        std::fs::write(bundle.config_path(), &bytes).unwrap();
        let id = rt.new_id("doc");
        let (v, c) = validate_and_create(&rt, bundle.dir(), &id);
        for (out, verb) in [(&v, "validate"), (&c, "create")] {
            let r = std::panic::catch_unwind(|| {
                refused_naming(out, field, &format!("{what} ({verb})"))
            });
            if let Err(e) = r {
                failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default());
            }
        }
        if c.success() {
            rt.delete_force(&id);
        }
    }
    rt.cleanup();
    assert_no_leaks(&before, &rt);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `text` with `extra` inserted after the first `needle` (which must be there).
fn insert_after(text: &[u8], needle: &[u8], extra: &[u8]) -> Vec<u8> {
    let at = text
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in the default config")
        + needle.len();
    [&text[..at], extra, &text[at..]].concat()
}

/// linux.devices major 4294967297 minor 1 used to be truncated to 1:1 (/dev/mem) by mknod.
#[test]
fn device_major_past_dev_t_is_refused_not_truncated() {
    common::leak_checked(|rt, b| {
        b.set_args(&["/probe", "stat", "/dev/hostile"]);
        b.add_device(json!({"type": "c", "path": "/dev/hostile", "major": 4294967297u64, "minor": 1, "fileMode": 0o666}));
        let id = rt.new_id("major");
        let out = rt.create(&id, b);
        refused_naming(
            &out,
            "linux.devices[0].major: 4294967297 is out of range for a device major (0..=4095)",
            "create",
        );
        assert!(
            rt.state(&id).code() != Some(0),
            "a refused container exists"
        );
        let d = b.dir().display().to_string();
        let v = rt.cmd(&["validate", "--bundle", &d]);
        refused_naming(
            &v,
            "linux.devices[0].major: 4294967297 is out of range",
            "validate",
        );
        // The largest numbers dev_t has still work.
        b.spec_mut()["linux"]["devices"][0]["major"] = json!(4095);
        b.spec_mut()["linux"]["devices"][0]["minor"] = json!(1048575);
        let out = rt.run(&id, b);
        assert!(out.success(), "{}", rt.dump_log());
        let seen = runtime_tests::probe::parse(&out.stdout).expect("probe report");
        assert_eq!(
            (seen["rdev_major"].clone(), seen["rdev_minor"].clone()),
            (json!(4095), json!(1048575)),
            "{seen}"
        );
    });
}

/// An unknown, well-formed capability name is dropped with a warning (in --log), as runc 1.1
/// does; the container runs with the capabilities that are known.
#[test]
fn unknown_capability_is_a_warning_not_an_error() {
    let Some((rt, mut b)) = common::setup() else {
        return;
    };
    let before = LeakSnapshot::take(&rt, &b);
    b.set_args(&["/probe"]);
    for set in ["bounding", "effective", "permitted"] {
        b.set_cap_set(set, &["CAP_KILL", "CAP_FUTURE_THING", "CAP_CHOWN"]);
    }
    let log = b.dir().join("berth.log");
    let mut logged = Runtime::new(runtime_tests::berth_bin().unwrap()).unwrap();
    logged.global_args = vec!["--log".into(), log.display().to_string()];
    let id = logged.new_id("cap");
    let out = logged.run(&id, &b);
    assert!(out.success(), "{}", logged.dump_log());
    let seen = runtime_tests::probe::parse(&out.stdout).expect("probe report");
    let eff = runtime_tests::probe::caps(&seen, "CapEff");
    assert!(
        eff.iter().any(|c| c == "CAP_KILL")
            && eff.iter().any(|c| c == "CAP_CHOWN")
            && eff.len() == 2,
        "effective {eff:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("level=warning") && text.contains("CAP_FUTURE_THING"),
        "no warning in the log: {text}"
    );
    // validate says the same: a warning, exit 0.
    let d = b.dir().display().to_string();
    let v = rt.cmd(&["validate", "--bundle", &d]);
    assert!(v.success(), "{}", v.describe());
    assert!(
        v.stdout.contains(
            "warning: process.capabilities.bounding[1]: unknown capability \"CAP_FUTURE_THING\""
        ),
        "{}",
        v.describe()
    );
    // runc 1.1 runs the same bundle.
    let runc = Runtime::new("/usr/sbin/runc").expect("runc");
    let rid = runc.new_id("cap");
    let r = runc.run(&rid, &b);
    assert!(r.success(), "runc refused it too? {}", r.describe());
    logged.cleanup();
    runc.cleanup();
    assert_no_leaks(&before, &logged);
    assert_no_leaks(&before, &runc);
}

/// A property berth cannot apply on this host is an error at create naming the field; the
/// bundle is still valid (validate warns). AppArmor on a host without it is refused by runc
/// too, and runc is checked in the same test.
#[test]
fn properties_that_cannot_be_applied_are_refused_at_create() {
    let Some((rt, mut b)) = common::setup() else {
        return;
    };
    assert!(
        !std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|x| x.starts_with(b"Y")),
        "this test expects a host without AppArmor"
    );
    b.set_args(&["true"]);
    let base = b.spec().clone();
    let before = LeakSnapshot::take(&rt, &b);
    let runc = Runtime::new("/usr/sbin/runc").expect("runc");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/process/apparmorProfile",
            json!("docker-default"),
            "process.apparmorProfile: AppArmor is not enabled on this host",
        ),
        (
            "/process/selinuxLabel",
            json!("system_u:system_r:container_t:s0:c1,c2"),
            "process.selinuxLabel: SELinux is not enabled",
        ),
        (
            "/linux/mountLabel",
            json!("system_u:object_r:container_file_t:s0"),
            "linux.mountLabel: SELinux is not enabled",
        ),
        // ioPriority, scheduler, execCPUAffinity and memoryPolicy are applied (tests/sched.rs);
        // only what Linux has no implementation of is refused here.
        (
            "/process/scheduler",
            json!({"policy": "SCHED_ISO"}),
            "process.scheduler.policy: SCHED_ISO is not implemented by Linux",
        ),
        (
            "/linux/intelRdt",
            json!({"closID": "berth"}),
            "linux.intelRdt: berth does not implement",
        ),
        (
            "/linux/netDevices",
            json!({"lo0": {"name": "lo0"}}),
            "linux.netDevices: berth does not move",
        ),
    ];
    for (ptr, value, want) in cases {
        let mut spec = base.clone();
        set(&mut spec, ptr, value);
        *b.spec_mut() = spec;
        let id = rt.new_id("unsup");
        let out = rt.create(&id, &b);
        refused_naming(&out, want, ptr);
        assert_ne!(
            rt.state(&id).code(),
            Some(0),
            "{ptr}: a refused container exists"
        );
        let d = b.dir().display().to_string();
        let v = rt.cmd(&["validate", "--bundle", &d]);
        assert!(v.success(), "{ptr}: {}", v.describe());
        assert!(
            v.stdout.contains(&format!("warning: {want}")),
            "{ptr}: {}",
            v.describe()
        );
        if ptr == "/process/apparmorProfile" {
            let rid = runc.new_id("aa");
            let r = runc.create(&rid, &b);
            assert!(
                !r.success(),
                "runc accepted an AppArmor profile: {}",
                r.describe()
            );
        }
    }
    rt.cleanup();
    runc.cleanup();
    assert_no_leaks(&before, &rt);
    assert_no_leaks(&before, &runc);
}

/// A change to a process document.
type Edit = dyn Fn(&mut Value);

/// `exec` checks its process as `create` checks config.json's: an unknown capability (in
/// `--cap` or in `--process`) is a warning, as in runc; a number the kernel cannot hold, a NUL
/// byte or a property berth cannot apply (`--apparmor`, `apparmorProfile`) is refused naming
/// the field, and nothing is run.
#[test]
fn exec_checks_its_process_like_create() {
    common::leak_checked(|rt, b| {
        b.set_args(&["sleep", "100"]);
        let id = rt.new_id("exec");
        assert!(rt.create(&id, b).success(), "{}", rt.dump_log());
        assert!(rt.start(&id).success(), "{}", rt.dump_log());

        let out = rt.cmd(&["exec", "--cap", "CAP_FUTURE_THING", &id, "/probe"]);
        assert!(out.success(), "{}", out.describe());
        assert!(
            out.stderr.contains("CAP_FUTURE_THING"),
            "no warning: {}",
            out.describe()
        );

        let pf = b.dir().join("process.json");
        let pfs = pf.display().to_string();
        let caps = json!(["CAP_KILL", "CAP_FUTURE_THING"]);
        let process = |edit: &dyn Fn(&mut Value)| {
            let mut p = json!({"cwd": "/", "args": ["/probe"], "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}});
            edit(&mut p);
            std::fs::write(&pf, serde_json::to_vec(&p).unwrap()).unwrap();
        };
        process(&|_| {});
        let out = rt.cmd(&["exec", "--process", &pfs, &id]);
        assert!(out.success(), "{}", out.describe());
        let seen = runtime_tests::probe::parse(&out.stdout).expect("probe report");
        assert_eq!(
            runtime_tests::probe::caps(&seen, "CapEff"),
            ["CAP_KILL"],
            "{seen}"
        );
        assert!(
            out.stderr.contains("CAP_FUTURE_THING"),
            "no warning: {}",
            out.describe()
        );

        let refused: Vec<(&Edit, &str)> = vec![
            (
                &|p| p["apparmorProfile"] = json!("x"),
                "process.apparmorProfile",
            ),
            (
                &|p| p["user"]["uid"] = json!(4294967295u64),
                "process.user.uid",
            ),
            (
                &|p| p["user"]["additionalGids"] = json!([1, -1]),
                "additionalGids",
            ),
            (
                &|p| p["args"] = json!(["/probe", "a\u{0}"]),
                "process.args[1]",
            ),
            (&|p| p["oomScoreAdj"] = json!(5000), "process.oomScoreAdj"),
            (
                &|p| p["user"]["umask"] = json!(0o10000),
                "process.user.umask",
            ),
        ];
        for (edit, field) in refused {
            process(edit);
            let out = rt.cmd(&["exec", "--process", &pfs, &id]);
            refused_naming(&out, field, "exec --process");
            assert!(
                !out.stdout.contains("CapEff"),
                "the process ran: {}",
                out.describe()
            );
        }
        let out = rt.cmd(&["exec", "--apparmor", "docker-default", &id, "/probe"]);
        refused_naming(
            &out,
            "--apparmor: process.apparmorProfile",
            "exec --apparmor",
        );
        assert!(
            !out.stdout.contains("CapEff"),
            "the process ran: {}",
            out.describe()
        );

        rt.kill(&id, "KILL");
        rt.wait_stopped(&id);
        assert!(rt.delete(&id).success(), "{}", rt.dump_log());
    });
}

/// A configuration file that a user hands in (config.json for `validate` and `create`,
/// `update --resources`) is read only if it is a regular file of a sane size: a FIFO, a link
/// to /dev/zero and a 17 MB file are refused at once, naming what they are (the old code
/// blocked on the FIFO and read /dev/zero until memory ran out); a link to a regular file is
/// read, as runc reads it.
#[test]
fn config_files_are_regular_files_of_a_sane_size() {
    let Some((mut rt, mut bundle)) = common::setup() else {
        return;
    };
    rt.timeout = std::time::Duration::from_secs(10);
    bundle.set_args(&["sleep", "100"]);
    bundle.save().unwrap();
    let good = bundle.dir().join("good.json");
    std::fs::rename(bundle.config_path(), &good).unwrap();
    let before = LeakSnapshot::take(&rt, &bundle);
    let config = bundle.config_path();
    let big = bundle.dir().join("big.json");
    std::fs::write(&big, vec![b' '; 17_000_000]).unwrap();
    type Make<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Make, &str); 3] = [
        (
            "a fifo",
            &|p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap(),
            "not a regular file but a fifo",
        ),
        (
            "a link to /dev/zero",
            &|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
            "not a regular file but a character device",
        ),
        (
            "a 17 MB file",
            &|p| std::os::unix::fs::symlink(&big, p).unwrap(),
            "more than the 16777216 read",
        ),
    ];
    let mut failures = Vec::new();
    for (what, make, says) in cases {
        let _ = std::fs::remove_file(&config);
        make(&config);
        let id = rt.new_id("cfgfile");
        let (v, c) = validate_and_create(&rt, bundle.dir(), &id);
        for (out, verb) in [(&v, "validate"), (&c, "create")] {
            let r = std::panic::catch_unwind(|| {
                refused_naming(out, says, &format!("config.json as {what} ({verb})"))
            });
            if let Err(e) = r {
                failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default());
            }
        }
        if c.success() {
            rt.delete_force(&id);
        }
    }
    // A link to a regular file is fine; then update --resources gets the same care.
    let _ = std::fs::remove_file(&config);
    std::os::unix::fs::symlink(&good, &config).unwrap();
    let id = rt.new_id("cfgfile");
    let (v, c) = validate_and_create(&rt, bundle.dir(), &id);
    assert!(v.success(), "{}", v.describe());
    assert!(c.success(), "{}", c.describe());
    let res = bundle.dir().join("res.json");
    nix::unistd::mkfifo(&res, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let u = rt.cmd(&["update", "--resources", res.to_str().unwrap(), &id]);
    let r = std::panic::catch_unwind(|| {
        refused_naming(
            &u,
            "not a regular file but a fifo",
            "update --resources FIFO",
        )
    });
    if let Err(e) = r {
        failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default());
    }
    assert!(rt.delete_force(&id).success());
    rt.cleanup();
    assert_no_leaks(&before, &rt);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
