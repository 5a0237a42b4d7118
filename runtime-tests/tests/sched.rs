//! How a container's processes are scheduled (config.md#linux-process `ioPriority`,
//! `scheduler`, `execCPUAffinity`; config-linux.md#memory-policy), seen from inside the
//! container by the probe (`probe sched`: ioprio_get, sched_getattr, get_mempolicy and
//! /proc/self/status), for init and for `exec`; and what the kernel refuses is an error naming
//! the field, at create or at exec, with nothing left behind.
//!
//! This host has one NUMA node (0) and two CPUs (0-1), and its v1 cpu controller has
//! `cpu.rt_runtime_us` (real-time group scheduling): a cgroup gets real-time time only from
//! `linux.resources.cpu.realtimeRuntime`.

mod common;

use std::path::Path;

use common::leak_checked;
use runtime_tests::{Bundle, RunOutput, Runtime};
use serde_json::{json, Value};

/// The probe's `sched` report of a foreground `run` of `/probe sched`.
fn run_sched(rt: &Runtime, b: &mut Bundle, tag: &str) -> Value {
    b.set_args(&["/probe", "sched"]);
    let out = rt.run(&rt.new_id(tag), b);
    assert!(out.success(), "{}", out.describe());
    runtime_tests::probe::parse(&out.stdout).expect("probe sched report")
}

/// Writes `process` as `DIR/NAME` and returns its path for `exec --process`.
fn process_file(dir: &Path, name: &str, process: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(process).unwrap()).unwrap();
    p.display().to_string()
}

/// A process object for `exec --process` running `/probe sched`, with `extra` merged in.
fn exec_process(extra: Value) -> Value {
    let mut p = json!({"cwd": "/", "args": ["/probe", "sched"], "user": {"uid": 0, "gid": 0}});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// The output failed (an exit status, not a signal or a panic) and names `field`.
#[track_caller]
fn refused_naming(out: &RunOutput, field: &str) {
    assert!(!out.timed_out, "hung\n{}", out.describe());
    assert!(
        out.code().is_some_and(|c| c != 0 && c != 101),
        "{}",
        out.describe()
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!text.contains("panicked at"), "{}", out.describe());
    assert!(
        text.contains(field),
        "the error does not name {field}\n{}",
        out.describe()
    );
}

/// A created-then-started container whose init sleeps, for `exec`.
fn running(rt: &Runtime, b: &mut Bundle, tag: &str) -> String {
    b.set_args(&["/probe", "sleep", "600"]);
    let id = rt.new_id(tag);
    let out = rt.run_with(&id, b, &["--detach"]);
    assert!(out.success(), "{}", out.describe());
    id
}

#[test]
fn init_gets_io_priority_scheduler_and_memory_policy() {
    leak_checked(|rt, b| {
        let p = &mut b.spec_mut()["process"];
        p["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
        // The spec's spelling of the flag (oci-spec 0.10 reads it differently).
        p["scheduler"] =
            json!({"policy": "SCHED_BATCH", "nice": 5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
        b.linux_mut()["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
        let s = run_sched(rt, b, "sched-init");
        assert_eq!(s["ioprio"], json!({"class": 2, "level": 6}), "{s}");
        assert_eq!(s["sched"]["policy"], 3, "SCHED_BATCH: {s}");
        assert_eq!(s["sched"]["nice"], 5, "{s}");
        assert_eq!(
            s["sched"]["flags"].as_u64().unwrap() & 1,
            1,
            "RESET_ON_FORK: {s}"
        );
        assert_eq!(s["mempolicy"]["mode"], 2, "MPOL_BIND: {s}");
        assert_eq!(s["mempolicy"]["nodes"], json!([0]), "{s}");

        // The idle classes, and a preferred node.
        let p = &mut b.spec_mut()["process"];
        p["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
        p["scheduler"] = json!({"policy": "SCHED_IDLE"});
        b.linux_mut()["memoryPolicy"] = json!({"mode": "MPOL_PREFERRED", "nodes": "0"});
        let s = run_sched(rt, b, "sched-idle");
        assert_eq!(s["ioprio"]["class"], 3, "IOPRIO_CLASS_IDLE: {s}");
        assert_eq!(s["sched"]["policy"], 5, "SCHED_IDLE: {s}");
        assert_eq!(s["mempolicy"]["mode"], 1, "MPOL_PREFERRED: {s}");
        assert_eq!(s["mempolicy"]["nodes"], json!([0]), "{s}");

        // Without the fields nothing changes: the kernel's defaults.
        let p = &mut b.spec_mut()["process"];
        p.as_object_mut().unwrap().remove("ioPriority");
        p.as_object_mut().unwrap().remove("scheduler");
        b.linux_mut()
            .as_object_mut()
            .unwrap()
            .remove("memoryPolicy");
        let s = run_sched(rt, b, "sched-none");
        assert_eq!(s["sched"]["policy"], 0, "{s}");
        assert_eq!(s["mempolicy"]["mode"], 0, "MPOL_DEFAULT: {s}");
        assert_ne!(s["ioprio"]["class"], 3, "{s}");
    });
}

#[test]
fn real_time_policy_and_io_class_with_real_time_cgroup_time() {
    // The prerequisite this host has: real-time group scheduling in the v1 cpu controller.
    assert!(
        Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists(),
        "this host should have CONFIG_RT_GROUP_SCHED (cpu.rt_runtime_us)"
    );
    leak_checked(|rt, b| {
        let p = &mut b.spec_mut()["process"];
        p["ioPriority"] = json!({"class": "IOPRIO_CLASS_RT", "priority": 3});
        p["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 10});
        // Without real-time time in its cgroup the kernel refuses the policy: an error at
        // create that names the field, never a container that runs as SCHED_OTHER.
        b.set_args(&["/probe", "sched"]);
        let id = rt.new_id("sched-rt-refused");
        let out = rt.create(&id, b);
        refused_naming(&out, "process.scheduler");
        assert!(
            out.stderr.contains("sched_setattr SCHED_FIFO"),
            "{}",
            out.describe()
        );
        let _ = rt.delete_force(&id);

        b.set_resources(json!({"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 1000000}}));
        let s = run_sched(rt, b, "sched-rt");
        assert_eq!(s["sched"]["policy"], 1, "SCHED_FIFO: {s}");
        assert_eq!(s["sched"]["priority"], 10, "{s}");
        assert_eq!(s["ioprio"], json!({"class": 1, "level": 3}), "{s}");
    });
}

#[test]
fn deadline_policy_with_its_runtime_deadline_and_period() {
    leak_checked(|rt, b| {
        // 2 ms of every 10 ms; reset on fork, as a deadline task may not fork otherwise.
        b.spec_mut()["process"]["scheduler"] = json!({"policy": "SCHED_DEADLINE",
            "runtime": 2_000_000, "deadline": 10_000_000, "period": 10_000_000,
            "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
        let s = run_sched(rt, b, "sched-dl");
        let a = &s["sched"];
        assert_eq!(a["policy"], 6, "SCHED_DEADLINE: {s}");
        assert_eq!(
            (&a["runtime"], &a["deadline"], &a["period"]),
            (&json!(2_000_000), &json!(10_000_000), &json!(10_000_000)),
            "{s}"
        );
    });
}

#[test]
fn exec_gets_the_process_files_scheduling_and_cpu_affinity() {
    leak_checked(|rt, b| {
        b.linux_mut()["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
        // execCPUAffinity is not applied to init (config.md: "not applicable to the
        // container's init process").
        b.spec_mut()["process"]["execCPUAffinity"] = json!({"final": "1"});
        let id = running(rt, b, "sched-exec");
        let init = rt.exec(&id, &["cat", "/proc/1/status"]);
        assert!(init.success(), "{}", init.describe());
        assert!(
            init.stdout.contains("Cpus_allowed_list:\t0-1"),
            "{}",
            init.describe()
        );

        // `exec ARGS` starts from config.json's process: its execCPUAffinity applies.
        let out = rt.exec(&id, &["/probe", "sched"]);
        assert!(out.success(), "{}", out.describe());
        let s = runtime_tests::probe::parse(&out.stdout).expect("probe");
        assert_eq!(s["cpus_allowed"], "1", "{s}");
        assert_eq!(
            s["mempolicy"]["mode"], 2,
            "the container's memory policy: {s}"
        );

        // A process file: its own affinity, I/O priority and scheduler.
        let pf = process_file(
            b.dir(),
            "p1.json",
            &exec_process(json!({
                "execCPUAffinity": {"initial": "1", "final": "0"},
                "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 7},
                "scheduler": {"policy": "SCHED_OTHER", "nice": 7},
            })),
        );
        let out = rt.exec_with(&id, &["--process", &pf], &[]);
        assert!(out.success(), "{}", out.describe());
        let s = runtime_tests::probe::parse(&out.stdout).expect("probe");
        assert_eq!(s["cpus_allowed"], "0", "{s}");
        assert_eq!(s["ioprio"], json!({"class": 2, "level": 7}), "{s}");
        assert_eq!(s["sched"]["nice"], 7, "{s}");

        // Blank and spaced lists, as the schema allows: "" changes nothing.
        let pf = process_file(
            b.dir(),
            "p2.json",
            &exec_process(json!({"execCPUAffinity": {"initial": "0, 1", "final": ""}})),
        );
        let out = rt.exec_with(&id, &["--process", &pf], &[]);
        assert!(out.success(), "{}", out.describe());
        let s = runtime_tests::probe::parse(&out.stdout).expect("probe");
        assert_eq!(s["cpus_allowed"], "0-1", "{s}");

        // CPUs the host does not have: `initial` is really applied, before the cgroup, and
        // `final` after it; both fail naming the field.
        for (name, aff) in [
            ("initial", json!({"initial": "7"})),
            ("final", json!({"final": "5-6"})),
        ] {
            let pf = process_file(
                b.dir(),
                "p3.json",
                &exec_process(json!({"execCPUAffinity": aff})),
            );
            let out = rt.exec_with(&id, &["--process", &pf], &[]);
            refused_naming(&out, &format!("process.execCPUAffinity.{name}"));
        }
        // A malformed list is refused before anything runs.
        let pf = process_file(
            b.dir(),
            "p4.json",
            &exec_process(json!({"execCPUAffinity": {"final": "1-0"}})),
        );
        let out = rt.exec_with(&id, &["--process", &pf], &[]);
        refused_naming(&out, "process.execCPUAffinity.final");
        // The container is still there and running.
        let st = rt.state_json(&id).expect("state");
        assert_eq!(st["status"], "running", "{st}");
    });
}

#[test]
fn what_the_kernel_refuses_fails_create_naming_the_field() {
    leak_checked(|rt, b| {
        b.set_args(&["/probe", "sched"]);
        // Node 5 does not exist on this one-node host.
        b.linux_mut()["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "5"});
        let id = rt.new_id("sched-node5");
        let out = rt.create(&id, b);
        refused_naming(&out, "linux.memoryPolicy");
        assert!(out.stderr.contains("nodes \"5\""), "{}", out.describe());
        let _ = rt.delete_force(&id);
        // ... while a relative node set folds onto the nodes there are.
        b.linux_mut()["memoryPolicy"] =
            json!({"mode": "MPOL_BIND", "nodes": "5", "flags": ["MPOL_F_RELATIVE_NODES"]});
        let s = run_sched(rt, b, "sched-node5-rel");
        assert_eq!(s["mempolicy"]["mode"], 2, "{s}");
        b.linux_mut()
            .as_object_mut()
            .unwrap()
            .remove("memoryPolicy");

        // Values the spec or sched_setattr(2) rule out are refused before any process runs,
        // by validate and by create alike.
        let d = b.dir().display().to_string();
        for (what, field, edit) in [
            (
                "priority for SCHED_FIFO missing",
                "process.scheduler.priority",
                json!({"scheduler": {"policy": "SCHED_FIFO"}}),
            ),
            (
                "SCHED_ISO",
                "process.scheduler.policy",
                json!({"scheduler": {"policy": "SCHED_ISO"}}),
            ),
            (
                "I/O level 8",
                "process.ioPriority.priority",
                json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}),
            ),
            (
                "oci-spec's flag spelling",
                "process.scheduler.flags[0]",
                json!({"scheduler": {"policy": "SCHED_OTHER", "flags": ["SCHED_RESET_ON_FORK"]}}),
            ),
        ] {
            let mut p = b.spec()["process"].clone();
            for (k, v) in edit.as_object().unwrap() {
                p[k] = v.clone();
            }
            let saved = std::mem::replace(&mut b.spec_mut()["process"], p);
            b.save().unwrap();
            let v = rt.cmd(&["validate", "--bundle", &d]);
            assert!(
                v.stdout.contains(field) || v.stderr.contains(field),
                "{what}: {}",
                v.describe()
            );
            let id = rt.new_id("sched-bad");
            let out = rt.create(&id, b);
            refused_naming(&out, field);
            let _ = rt.delete_force(&id);
            b.spec_mut()["process"] = saved;
        }
    });
}

#[test]
fn in_a_user_namespace_what_needs_host_privilege_is_eperm_naming_the_field() {
    // CAP_SYS_NICE and CAP_SYS_ADMIN of a user namespace do not reach the host's scheduler:
    // a lower nice value or the RT I/O class is refused by the kernel (EPERM), and create says
    // which field; a higher nice value and the BE class need no privilege and apply.
    leak_checked(|rt, b| {
        b.set_namespace("user", None);
        b.linux_mut()["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        b.linux_mut()["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        b.set_args(&["/probe", "sched"]);
        for (field, process) in [
            (
                "process.scheduler",
                json!({"scheduler": {"policy": "SCHED_OTHER", "nice": -5}}),
            ),
            (
                "process.ioPriority",
                json!({"ioPriority": {"class": "IOPRIO_CLASS_RT", "priority": 0}}),
            ),
        ] {
            for (k, v) in process.as_object().unwrap() {
                b.spec_mut()["process"][k] = v.clone();
            }
            let id = rt.new_id("sched-userns-eperm");
            let out = rt.create(&id, b);
            refused_naming(&out, field);
            assert!(
                out.stderr.contains("operation not permitted"),
                "{}",
                out.describe()
            );
            let _ = rt.delete_force(&id);
            let p = b.spec_mut()["process"].as_object_mut().unwrap();
            p.remove("scheduler");
            p.remove("ioPriority");
        }
        let p = &mut b.spec_mut()["process"];
        p["scheduler"] = json!({"policy": "SCHED_OTHER", "nice": 10});
        p["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 5});
        let s = run_sched(rt, b, "sched-userns");
        assert_eq!(s["sched"]["nice"], 10, "{s}");
        assert_eq!(s["ioprio"], json!({"class": 2, "level": 5}), "{s}");
    });
}
