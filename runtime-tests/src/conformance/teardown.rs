//! runtime.md#delete: teardown removes what the container's create made, and only that.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{ensure, not_ok, Case, Ctx, Finding, Level, Verdict};

const DELETE: &str = "runtime.md#delete";

/// The cgroup hierarchies under /sys/fs/cgroup (each v1 controller mount, or the v2 root).
fn hierarchies() -> Vec<PathBuf> {
    let root = PathBuf::from(crate::CGROUP_ROOT);
    if root.join("cgroup.procs").exists() {
        return vec![root];
    }
    let Ok(rd) = fs::read_dir(&root) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| !p.is_symlink() && p.join("cgroup.procs").exists())
        .collect()
}

/// A cgroup `name` made in every hierarchy before the container, holding a process that is
/// not the container's; both removed on drop.
struct Preexisting {
    dirs: Vec<PathBuf>,
    child: Child,
}

impl Preexisting {
    fn new(name: &str) -> Result<Preexisting, Finding> {
        let harness = |what: &str, e: std::io::Error| not_ok(format!("harness: {what}: {e}"));
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| harness("spawn sleep", e))?;
        let mut p = Preexisting {
            dirs: Vec::new(),
            child,
        };
        for h in hierarchies() {
            let d = h.join(name);
            fs::create_dir(&d).map_err(|e| harness("mkdir cgroup", e))?;
            p.dirs.push(d.clone());
            // A new v1 cpuset cgroup takes tasks only once it has cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = fs::read_to_string(h.join(f)) {
                    let _ = fs::write(d.join(f), v.trim());
                }
            }
            fs::write(d.join("cgroup.procs"), p.child.id().to_string())
                .map_err(|e| harness("move the process into the cgroup", e))?;
        }
        if p.dirs.is_empty() {
            return Err(super::skip("no cgroup hierarchy under /sys/fs/cgroup"));
        }
        Ok(p)
    }
}

impl Drop for Preexisting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in &self.dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            while d.exists() && fs::remove_dir(d).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

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
                let mut pre = Preexisting::new(&name)?;
                run_and_delete(ctx, &name)?;
                ensure(pre.child.try_wait().ok().flatten().is_none(), || {
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
