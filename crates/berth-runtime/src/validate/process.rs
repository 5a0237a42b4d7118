//! `process`: the container's first process.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{index, join, obj_of, str_of, tables, Checker};
use crate::process::sched::{parse_list, MAX_CPU};

const SECTION: &str = "config.md#process";

pub(super) fn check(c: &mut Checker, doc: &Map<String, Value>) {
    let Some(p) = obj_of(doc, "process") else {
        return;
    };
    c.fields(p, "process", tables::PROCESS, SECTION);
    args(c, p);
    c.absolute(
        p,
        "process",
        "cwd",
        "config.md#process: cwd MUST be an absolute path",
    );
    super::env_entries(c, p, "process", SECTION);
    console(c, p);
    c.range(
        p,
        "process",
        "oomScoreAdj",
        -1000,
        1000,
        "config.md#linux-process: oomScoreAdj is written to /proc/[pid]/oom_score_adj, which takes -1000 to 1000",
    );
    if let Some(u) = obj_of(p, "user") {
        user(c, u);
    }
    capabilities(c, p);
    rlimits(c, p);
    if let Some(io) = obj_of(p, "ioPriority") {
        let path = "process.ioPriority";
        c.fields(io, path, tables::IO_PRIORITY, "config.md#linux-process");
        c.known_value(io, path, "class", tables::IO_PRIORITY_CLASSES, "config.md#linux-process: ioPriority.class is IOPRIO_CLASS_RT, IOPRIO_CLASS_BE or IOPRIO_CLASS_IDLE");
        c.range(io, path, "priority", 0, 7, "config.md#linux-process: ioPriority.priority is a level 0 (highest) to 7 within its class, see ioprio_set(2)");
    }
    if let Some(s) = obj_of(p, "scheduler") {
        scheduler(c, s);
    }
    if let Some(a) = obj_of(p, "execCPUAffinity") {
        let path = "process.execCPUAffinity";
        c.fields(
            a,
            path,
            tables::EXEC_CPU_AFFINITY,
            "config.md#linux-process",
        );
        for n in ["initial", "final"] {
            if let Some(list) = str_of(a, n) {
                if let Err(e) = parse_list(list, MAX_CPU) {
                    c.error(&join(path, n), format!("{list:?} is not a CPU list like 0-3,7: {e}"), "config.md#linux-process: execCPUAffinity values are comma-separated CPU numbers and ranges (CPUs 0 to 1023, as cpu_set_t holds)");
                }
            }
        }
    }
}

/// `process.scheduler`: names, ranges, and what sched_setattr(2) requires of each policy.
fn scheduler(c: &mut Checker, s: &Map<String, Value>) {
    const PATH: &str = "process.scheduler";
    const RULE: &str = "config.md#linux-process: scheduler is applied with sched_setattr(2)";
    c.fields(s, PATH, tables::SCHEDULER, "config.md#linux-process");
    c.known_value(
        s,
        PATH,
        "policy",
        tables::SCHED_POLICIES,
        "config.md#linux-process: scheduler.policy is a sched_setattr(2) policy",
    );
    c.known_names(
        s,
        PATH,
        "flags",
        tables::SCHED_FLAGS,
        "config.md#linux-process: scheduler.flags are SCHED_FLAG_* names",
    );
    c.range(
        s,
        PATH,
        "nice",
        -20,
        19,
        "config.md#linux-process: scheduler.nice is -20 to 19, see sched_setattr(2)",
    );
    c.range(
        s,
        PATH,
        "priority",
        0,
        99,
        "config.md#linux-process: scheduler.priority is sched_priority, 0 to 99 (sched(7))",
    );
    let Some(policy) = str_of(s, "policy") else {
        return;
    };
    // Unset numbers are 0 (config.md#linux-process: "the runtime must use the value 0").
    let num = |name: &str| s.get(name).and_then(Value::as_u64).unwrap_or(0);
    let priority = s.get("priority").and_then(Value::as_i64).unwrap_or(0);
    match policy {
        "SCHED_FIFO" | "SCHED_RR" if priority == 0 => c.error(
            &join(PATH, "priority"),
            format!("{policy} needs a priority of 1 to 99"),
            "sched(7): real-time policies take a static priority 1 (low) to 99 (high); sched_setattr(2) refuses 0",
        ),
        "SCHED_OTHER" | "SCHED_BATCH" | "SCHED_IDLE" | "SCHED_DEADLINE" if priority != 0 => c.error(
            &join(PATH, "priority"),
            format!("{policy} takes no priority (0), found {priority}"),
            "sched(7): only SCHED_FIFO and SCHED_RR have a static priority; sched_setattr(2) refuses one for other policies",
        ),
        _ => {}
    }
    if policy == "SCHED_DEADLINE" {
        let (runtime, deadline, period) = (num("runtime"), num("deadline"), num("period"));
        const DL: &str = "sched(7): SCHED_DEADLINE needs 1024 <= runtime <= deadline <= period (period 0: the deadline), in nanoseconds";
        if runtime < 1024 {
            c.error(
                &join(PATH, "runtime"),
                format!("SCHED_DEADLINE needs a runtime of at least 1024 ns, found {runtime}"),
                DL,
            );
        } else if deadline < runtime {
            c.error(
                &join(PATH, "deadline"),
                format!("the deadline {deadline} is below the runtime {runtime}"),
                DL,
            );
        } else if period != 0 && period < deadline {
            c.error(
                &join(PATH, "period"),
                format!("the period {period} is below the deadline {deadline}"),
                DL,
            );
        }
    } else {
        for name in ["runtime", "deadline", "period"] {
            if num(name) != 0 {
                c.warn(
                    &join(PATH, name),
                    format!("only SCHED_DEADLINE uses it; {policy} ignores it"),
                    RULE,
                );
            }
        }
    }
}

/// `process.user`: ids as the kernel takes them.
fn user(c: &mut Checker, u: &Map<String, Value>) {
    const PATH: &str = "process.user";
    c.fields(u, PATH, tables::USER, "config.md#user");
    // (uid_t)-1 and (gid_t)-1 are not ids: setresuid(2), setresgid(2) and chown(2) read them
    // as "leave unchanged", so the process would keep the runtime's root.
    c.id_not_minus_one(u, PATH, "uid", "a uid");
    c.id_not_minus_one(u, PATH, "gid", "a gid");
    if let Some(gids) = u.get("additionalGids").and_then(Value::as_array) {
        let gpath = join(PATH, "additionalGids");
        for (i, g) in gids.iter().enumerate() {
            if g.as_u64() == Some(u64::from(u32::MAX)) {
                c.error(&index(&gpath, i), "4294967295 is (gid_t)-1, which is not a group id", "config.md#user: additionalGids are gids of the container's user namespace (setgroups(2))");
            }
        }
        if gids.len() > NGROUPS_MAX {
            c.error(&gpath, format!("{} groups are more than the kernel's NGROUPS_MAX ({NGROUPS_MAX})", gids.len()), "config.md#user: additionalGids are set with setgroups(2), which takes at most NGROUPS_MAX groups");
        }
    }
    c.int_range(
        u,
        PATH,
        "umask",
        0,
        0o777,
        "a umask",
        "config.md#user: umask is the process's umask(2), of which only the 0777 bits exist",
    );
}

/// The most supplementary groups setgroups(2) takes (`/proc/sys/kernel/ngroups_max`).
const NGROUPS_MAX: usize = 65536;

fn args(c: &mut Checker, p: &Map<String, Value>) {
    let rule =
        "config.md#process: args needs at least one entry (non-Windows), used like execvp's file";
    match p.get("args").and_then(Value::as_array) {
        None if !p.contains_key("args") => c.error(
            "process.args",
            "is missing: the process has nothing to run",
            rule,
        ),
        Some(a) if a.is_empty() => c.error(
            "process.args",
            "is empty: the process has nothing to run",
            rule,
        ),
        Some(a) if a[0].as_str() == Some("") => {
            c.error("process.args[0]", "is an empty executable name", rule)
        }
        _ => {}
    }
}

fn console(c: &mut Checker, p: &Map<String, Value>) {
    let Some(size) = obj_of(p, "consoleSize") else {
        return;
    };
    c.fields(
        size,
        "process.consoleSize",
        tables::CONSOLE,
        "config.md#process",
    );
    if p.get("terminal").and_then(Value::as_bool) != Some(true) {
        c.warn(
            "process.consoleSize",
            "is set but process.terminal is not true",
            "config.md#process: runtimes MUST ignore consoleSize if terminal is false or unset",
        );
    }
    for dim in ["height", "width"] {
        if size.get(dim).and_then(Value::as_u64) == Some(0) {
            c.warn(
                &join("process.consoleSize", dim),
                "is 0",
                "config.md#process: consoleSize is the console size in characters",
            );
        }
        if size
            .get(dim)
            .and_then(Value::as_u64)
            .is_some_and(|n| n > u64::from(u16::MAX))
        {
            c.error(
                &join("process.consoleSize", dim),
                "does not fit a terminal size (at most 65535)",
                "config.md#process: consoleSize is set with TIOCSWINSZ, whose fields are 16-bit",
            );
        }
    }
}

fn capabilities(c: &mut Checker, p: &Map<String, Value>) {
    let Some(caps) = p.get("capabilities") else {
        return;
    };
    let path = "process.capabilities";
    let Some(caps) = caps.as_object() else {
        return; // the table reported it (an array is the pre-1.0 form)
    };
    c.fields(caps, path, tables::CAPABILITIES, "config.md#linux-process");
    for set in tables::CAPABILITIES {
        let Some(list) = caps.get(set.name).and_then(Value::as_array) else {
            continue;
        };
        for (i, v) in list.iter().enumerate() {
            let Some(name) = v.as_str() else { continue };
            let at = index(&join(path, set.name), i);
            if !is_cap_name(name) {
                c.error(
                    &at,
                    format!("{name:?} is not a capability name"),
                    "config.md#linux-process: capabilities are CAP_* names from capabilities(7)",
                );
            } else if !crate::caps::is_known(name) {
                c.warn(&at, format!("unknown capability {name:?} (ignored)"), "config.md#linux-process: a capability that cannot be mapped MUST be logged as a warning by the runtime and SHOULD NOT fail");
            }
        }
    }
}

fn is_cap_name(s: &str) -> bool {
    s.strip_prefix("CAP_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

fn rlimits(c: &mut Checker, p: &Map<String, Value>) {
    let mut seen = HashSet::new();
    for (path, r) in c.objects(
        p,
        "process",
        "rlimits",
        tables::RLIMIT,
        "config.md#posix-process",
    ) {
        if let Some(t) = str_of(r, "type") {
            if !tables::RLIMITS.contains(&t) {
                c.error(&join(&path, "type"), format!("unknown rlimit {t:?}"), "config.md#posix-process: the runtime MUST generate an error for any rlimit type which cannot be mapped to a relevant kernel interface (getrlimit(2))");
            } else if !seen.insert(t) {
                c.error(&join(&path, "type"), format!("duplicate rlimit {t}"), "config.md#posix-process: if rlimits contains duplicated entries with same type, the runtime MUST generate an error");
            }
        }
        let soft = r.get("soft").and_then(Value::as_u64);
        let hard = r.get("hard").and_then(Value::as_u64);
        if let (Some(soft), Some(hard)) = (soft, hard) {
            if soft > hard {
                c.error(&join(&path, "soft"), format!("soft limit {soft} is above hard limit {hard}"), "config.md#posix-process: the hard limit is the ceiling for the soft limit (setrlimit(2) fails with EINVAL)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::validate::tests::{has, lines};

    #[test]
    fn args_required_and_non_empty() {
        has(
            &lines(|v| {
                v["process"].as_object_mut().unwrap().remove("args");
            }),
            "error: process.args: is missing",
        );
        has(
            &lines(|v| v["process"]["args"] = json!([])),
            "error: process.args: is empty",
        );
        has(
            &lines(|v| v["process"]["args"] = json!([""])),
            "error: process.args[0]: is an empty executable name",
        );
    }

    #[test]
    fn cwd_required_and_absolute() {
        has(
            &lines(|v| {
                v["process"].as_object_mut().unwrap().remove("cwd");
            }),
            "error: process.cwd: is missing",
        );
        has(
            &lines(|v| v["process"]["cwd"] = json!("home")),
            "error: process.cwd: \"home\" is not an absolute path",
        );
    }

    #[test]
    fn user_ids_are_uint32() {
        let l = lines(|v| v["process"]["user"] = json!({"uid": -1, "additionalGids": [1, "2"]}));
        has(&l, "error: process.user.uid: must be a uint32");
        has(&l, "error: process.user.gid: is missing");
        has(
            &l,
            "error: process.user.additionalGids[1]: must be a uint32",
        );
    }

    #[test]
    fn user_ids_are_real_ids() {
        let l = lines(|v| {
            v["process"]["user"] = json!({"uid": 4294967295u64, "gid": 4294967295u64,
                "additionalGids": [1, 4294967295u64], "umask": 0o1777});
        });
        has(&l, "error: process.user.uid: 4294967295 is (uid_t)-1");
        has(
            &l,
            "error: process.user.gid: 4294967295 is (uid_t)-1, which is not a gid",
        );
        has(
            &l,
            "error: process.user.additionalGids[1]: 4294967295 is (gid_t)-1",
        );
        has(
            &l,
            "error: process.user.umask: 1023 is out of range for a umask (0..=511)",
        );
        let l = lines(|v| {
            v["process"]["user"] = json!({"uid": 4294967294u64, "gid": 0, "umask": 0o777,
                "additionalGids": (0..65537).collect::<Vec<u32>>()});
        });
        has(
            &l,
            "error: process.user.additionalGids: 65537 groups are more than",
        );
        assert_eq!(l.len(), 1, "{l:?}");
    }

    #[test]
    fn exec_cpu_affinity_and_priority() {
        let l = lines(|v| {
            v["process"]["execCPUAffinity"] = json!({"initial": "0-1", "final": "a"});
            v["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 100});
        });
        has(
            &l,
            "error: process.execCPUAffinity.final: \"a\" is not a CPU list",
        );
        has(
            &l,
            "error: process.scheduler.priority: 100 is outside 0..=99",
        );
        assert_eq!(l.len(), 2, "{l:?}");
    }

    #[test]
    fn env_form() {
        has(
            &lines(|v| v["process"]["env"] = json!(["PATH=/bin", "JUNK"])),
            "warning: process.env[1]:",
        );
    }

    #[test]
    fn console_size() {
        let l = lines(|v| v["process"]["consoleSize"] = json!({"height": 0, "width": 70000}));
        has(
            &l,
            "warning: process.consoleSize: is set but process.terminal is not true",
        );
        has(&l, "warning: process.consoleSize.height: is 0");
        has(&l, "error: process.consoleSize.width: does not fit");
        let l = lines(|v| {
            v["process"]["terminal"] = json!(true);
            v["process"]["consoleSize"] = json!({"height": 24});
        });
        has(&l, "error: process.consoleSize.width: is missing");
    }

    #[test]
    fn oom_score_adj_range() {
        has(
            &lines(|v| v["process"]["oomScoreAdj"] = json!(1001)),
            "error: process.oomScoreAdj: 1001 is outside -1000..=1000",
        );
        assert!(lines(|v| v["process"]["oomScoreAdj"] = json!(-1000)).is_empty());
    }

    #[test]
    fn capabilities() {
        let l = lines(|v| {
            v["process"]["capabilities"] = json!({
                "bounding": ["CAP_CHOWN", "CAP_FUTURE_THING", "chown"],
                "ambient": "CAP_KILL"
            });
        });
        has(
            &l,
            "warning: process.capabilities.bounding[1]: unknown capability \"CAP_FUTURE_THING\" (ignored)",
        );
        assert!(!l.iter().any(|x| x.contains("bounding[0]")), "{l:?}");
        has(
            &l,
            "error: process.capabilities.bounding[2]: \"chown\" is not a capability name",
        );
        has(&l, "error: process.capabilities.ambient: must be an array");
        has(
            &lines(|v| v["process"]["capabilities"] = json!(["CAP_KILL"])),
            "error: process.capabilities: must be an object",
        );
    }

    #[test]
    fn rlimits() {
        let l = lines(|v| {
            v["process"]["rlimits"] = json!([
                {"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024},
                {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
                {"type": "RLIMIT_FOO", "soft": 1, "hard": 1},
                {"type": "RLIMIT_CORE", "soft": -1, "hard": 1}
            ]);
        });
        has(
            &l,
            "error: process.rlimits[0].soft: soft limit 2048 is above hard limit 1024",
        );
        has(
            &l,
            "error: process.rlimits[1].type: duplicate rlimit RLIMIT_NOFILE",
        );
        has(&l, "error: process.rlimits[2].type: unknown rlimit");
        has(&l, "error: process.rlimits[3].soft: must be a uint64");
    }

    #[test]
    fn io_priority_and_scheduler() {
        let l = lines(|v| {
            v["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_X", "priority": 9});
            v["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "nice": 30});
        });
        has(&l, "error: process.ioPriority.class: unknown value");
        has(&l, "error: process.ioPriority.priority: 9 is outside 0..=7");
        has(&l, "error: process.scheduler.nice: 30 is outside -20..=19");
    }

    #[test]
    fn scheduler_per_policy() {
        let sched = |s: serde_json::Value| lines(move |v| v["process"]["scheduler"] = s);
        has(
            &sched(json!({"policy": "SCHED_FIFO"})),
            "error: process.scheduler.priority: SCHED_FIFO needs a priority of 1 to 99",
        );
        has(
            &sched(json!({"policy": "SCHED_BATCH", "priority": 5})),
            "error: process.scheduler.priority: SCHED_BATCH takes no priority",
        );
        has(
            &sched(json!({"policy": "SCHED_OTHER", "flags": ["SCHED_RESET_ON_FORK"]})),
            "error: process.scheduler.flags[0]: unknown value \"SCHED_RESET_ON_FORK\"",
        );
        has(
            &sched(json!({"policy": "SCHED_DEADLINE", "runtime": 100})),
            "error: process.scheduler.runtime: SCHED_DEADLINE needs a runtime of at least 1024 ns",
        );
        has(
            &sched(json!({"policy": "SCHED_DEADLINE", "runtime": 2000, "deadline": 1500})),
            "error: process.scheduler.deadline: the deadline 1500 is below the runtime 2000",
        );
        has(
            &sched(
                json!({"policy": "SCHED_DEADLINE", "runtime": 2000, "deadline": 3000, "period": 2500}),
            ),
            "error: process.scheduler.period: the period 2500 is below the deadline 3000",
        );
        has(
            &sched(json!({"policy": "SCHED_OTHER", "period": 2500})),
            "warning: process.scheduler.period: only SCHED_DEADLINE uses it",
        );
        for ok in [
            json!({"policy": "SCHED_RR", "priority": 99, "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN"]}),
            json!({"policy": "SCHED_DEADLINE", "runtime": 1024, "deadline": 1000000, "period": 0}),
            json!({"policy": "SCHED_IDLE", "nice": 19}),
        ] {
            assert!(sched(ok.clone()).is_empty(), "{ok}");
        }
    }

    #[test]
    fn exec_cpu_affinity_lists() {
        let aff = |a: serde_json::Value| lines(move |v| v["process"]["execCPUAffinity"] = a);
        has(
            &aff(json!({"initial": "0,,1"})),
            "error: process.execCPUAffinity.initial: \"0,,1\" is not a CPU list like 0-3,7: element 1 is empty",
        );
        has(
            &aff(json!({"final": "3-1"})),
            "error: process.execCPUAffinity.final: \"3-1\" is not a CPU list like 0-3,7: range \"3-1\" ends before it starts",
        );
        has(
            &aff(json!({"final": "1024"})),
            "error: process.execCPUAffinity.final: \"1024\" is not a CPU list like 0-3,7: 1024 is past the highest allowed, 1023",
        );
        assert!(aff(json!({"initial": "0-1, 3", "final": ""})).is_empty());
    }
}
