//! runtime.md#delete: teardown removes what the container's create made, and only that.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::{ensure, not_ok, Case, Ctx, Finding, Level, Verdict};
use crate::bystander::cgroup_hierarchies as hierarchies;

const DELETE: &str = "runtime.md#delete";

/// Create and start a sleeper with `cgroupsPath` `/NAME`, kill it, wait for stopped, delete.
fn run_and_delete(ctx: &Ctx, name: &str) -> Result<String, Finding> {
    let mut b = ctx.bundle()?;
    b.set_args(&["sleep", "100"]);
    b.linux_mut()["cgroupsPath"] = json!(format!("/{name}"));
    let id = ctx.create(&b, "teardown")?;
    ctx.must(ctx.rt.start(&id), "start")?;
    ctx.must(ctx.rt.kill(&id, "KILL"), "kill")?;
    let st = ctx.rt.wait_status(&id, "stopped", Duration::from_secs(10));
    ensure(
        st.as_ref().and_then(|v| v["status"].as_str()) == Some("stopped"),
        || "the container did not stop after kill KILL".into(),
    )?;
    ctx.must(ctx.rt.delete(&id), "delete")?;
    Ok(id)
}

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "conformance-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

#[rustfmt::skip]
pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new("teardown.delete.keeps-what-create-did-not-make", DELETE, Level::Must,
            "delete must not delete resources associated with the container that it did not create: a cgroup named by cgroupsPath that existed before, and a process in it, stay",
            |ctx| -> Verdict {
                let name = unique("shared");
                if hierarchies().is_empty() {
                    return Err(super::skip("no cgroup hierarchy under /sys/fs/cgroup"));
                }
                let mut pre = crate::Bystander::try_start(&name)
                    .map_err(|e| not_ok(format!("harness: {e}")))?;
                run_and_delete(ctx, &name)?;
                ensure(pre.alive(), || {
                    "delete killed a process of the pre-existing cgroup that was not the container's".into()
                })?;
                let gone: Vec<String> = pre.dirs.iter().filter(|d| !d.is_dir())
                    .map(|d| d.display().to_string()).collect();
                ensure(gone.is_empty(), || format!("delete removed the pre-existing cgroup: {}", gone.join(", ")))
            }),
        Case::new("teardown.delete.removes-the-cgroup-it-made", DELETE, Level::Must,
            "delete must delete the resources create made: a cgroup named by cgroupsPath that did not exist is gone afterwards",
            |ctx| -> Verdict {
                let name = unique("own");
                let dirs: Vec<PathBuf> = hierarchies().into_iter().map(|h| h.join(&name)).collect();
                if dirs.is_empty() {
                    return Err(super::skip("no cgroup hierarchy under /sys/fs/cgroup"));
                }
                let mut b = ctx.bundle()?;
                b.set_args(&["sleep", "100"]);
                b.linux_mut()["cgroupsPath"] = json!(format!("/{name}"));
                let id = ctx.create(&b, "teardown")?;
                let made = dirs.iter().any(|d| d.is_dir());
                ctx.must(ctx.rt.kill(&id, "KILL"), "kill")?;
                ctx.rt.wait_status(&id, "stopped", Duration::from_secs(10));
                ctx.must(ctx.rt.delete(&id), "delete")?;
                let left: Vec<String> = dirs.iter().filter(|d| d.is_dir())
                    .map(|d| d.display().to_string()).collect();
                // Never leave the case's own cgroup behind, whatever the runtime did.
                for d in &dirs {
                    let _ = fs::remove_dir(d);
                }
                ensure(made, || "create made no cgroup at cgroupsPath".into())?;
                ensure(left.is_empty(), || format!("delete left the cgroup create made: {}", left.join(", ")))
            }),
    ]
}
