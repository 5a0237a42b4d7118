//! features.md: the features document, and whether the runtime does what it claims.

use std::time::Duration;

use serde_json::{json, Value};

use super::{ensure, not_ok, Case, Ctx, Finding, Level};

const FEATURES: &str = "features.md";

fn doc(ctx: &Ctx) -> Result<Value, Finding> {
    let out = ctx.rt.features();
    ctx.must(out.clone(), "features")?;
    out.json()
        .ok_or_else(|| not_ok(format!("features printed no JSON: {:?}", out.stdout)))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new("features.document", FEATURES, Level::Should,
            "features prints a JSON document with ociVersionMin, ociVersionMax, hooks, mountOptions and linux.namespaces/capabilities",
            |ctx| {
                let d = doc(ctx)?;
                for k in ["ociVersionMin", "ociVersionMax"] {
                    ensure(d[k].is_string(), || format!("{k} missing"))?;
                }
                for k in ["hooks", "mountOptions"] {
                    ensure(d[k].is_array(), || format!("{k} missing"))?;
                }
                ensure(d["linux"]["namespaces"].is_array(), || "linux.namespaces missing".into())?;
                ensure(d["linux"]["capabilities"].is_array(), || "linux.capabilities missing".into())
            }),
        Case::new("features.namespaces-work", FEATURES, Level::Must,
            "every namespace type features lists (but user and time, which need more config) can be created",
            |ctx| {
                let d = doc(ctx)?;
                let mut bad = Vec::new();
                for ns in strings(&d["linux"]["namespaces"]) {
                    if ns == "user" || ns == "time" {
                        continue;
                    }
                    let mut b = ctx.bundle()?;
                    b.set_args(&["true"]).set_namespace(&ns, None);
                    if let Err(Finding::NotOk(m)) = ctx.observe_output(&b) {
                        bad.push(format!("{ns}: {m}"));
                    }
                }
                ensure(bad.is_empty(), || bad.join("; "))
            }),
        Case::new("features.hooks-run", FEATURES, Level::Must,
            "every hook stage features lists runs during the lifecycle",
            |ctx| {
                let d = doc(ctx)?;
                let stages = strings(&d["hooks"]);
                let mut b = ctx.bundle()?;
                b.set_args(&["true"]);
                let dir = ctx.dir().join("fhooks");
                std::fs::create_dir_all(&dir).map_err(|e| not_ok(format!("harness: {e}")))?;
                b.add_mount(json!({"destination": "/fhooks", "type": "bind", "source": dir.display().to_string(), "options": ["rbind"]}));
                for s in &stages {
                    // startContainer runs inside the container, where the dir is /fhooks.
                    let target = if s == "startContainer" { format!("/fhooks/{s}") } else { dir.join(s).display().to_string() };
                    b.add_hook(s, json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {target}")]}));
                }
                let id = ctx.create(&b, "fh")?;
                ctx.must(ctx.rt.start(&id), "start")?;
                ctx.rt.wait_status(&id, "stopped", Duration::from_secs(5));
                ctx.must(ctx.rt.delete(&id), "delete")?;
                let missing: Vec<&String> = stages.iter().filter(|s| !dir.join(s.as_str()).exists()).collect();
                ensure(missing.is_empty(), || format!("listed hooks that did not run: {missing:?}"))
            }),
        Case::new("features.capabilities-grantable", FEATURES, Level::Must,
            "every capability features lists that the kernel knows (and the suite holds) can be granted",
            |ctx| {
                let d = doc(ctx)?;
                let listed = strings(&d["linux"]["capabilities"]);
                let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                    .ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
                // A runtime cannot grant what its caller lacks (root here lacks CAP_SYS_RESOURCE).
                let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                let own = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap_or("0");
                let held = crate::probe::decode_caps(own);
                let known: Vec<&str> = crate::probe::CAP_NAMES.iter().take(last + 1).copied()
                    .filter(|c| held.iter().any(|h| h == c)).collect();
                let want: Vec<&str> = listed.iter().map(String::as_str).filter(|c| known.contains(c)).collect();
                let mut b = ctx.bundle()?;
                b.set_args(&["/probe"]).set_caps(&want);
                let r = ctx.observe(&b)?;
                let got = crate::probe::caps(&r, "CapBnd");
                let missing: Vec<&&str> = want.iter().filter(|c| !got.iter().any(|g| g == **c)).collect();
                ensure(missing.is_empty(), || format!("listed but not granted: {missing:?}"))
            }),
    ]
}
