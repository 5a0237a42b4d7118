//! Create, add, procs, kill and destroy on the host's real cgroups (root only).

mod common;

use std::time::Duration;

use berth_cgroups::{new_manager, open_saved};
use common::*;

/// Removes the cgroup if the test fails before it does.
struct RemoveOnPanic(berth_cgroups::CgroupSaved);

impl Drop for RemoveOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(cg) = open_saved(&self.0) {
                let _ = cg.kill_all(libc::SIGKILL);
                let _ = cg.destroy();
            }
        }
    }
}

#[test]
fn create_add_kill_destroy() {
    require_root_cgroups();
    let path = unique_path();
    let mut cg = new_manager(Some(&path), "ignored").unwrap();
    cg.create().unwrap();
    let saved = cg.saved();
    let _guard = RemoveOnPanic(saved.clone());
    for h in &saved.hierarchies {
        assert!(h.dir.is_dir(), "{} not created", h.dir.display());
        assert_eq!(h.created, vec![h.dir.clone()]);
    }

    let mut child = Gated::spawn("sleep 100");
    cg.add_task(child.pid()).unwrap();
    // Still blocked at its gate: the one process.
    assert_eq!(cg.procs().unwrap(), vec![child.pid()]);
    let memory = dir_of(&saved, "memory");
    let procs = std::fs::read_to_string(memory.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), child.pid().to_string());
    // Released, the shell may fork `sleep`: its child is in the cgroup too.
    child.release();
    assert!(cg.procs().unwrap().contains(&child.pid()));

    // A later process re-opens it from the saved state.
    let reopened =
        open_saved(&serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap())
            .unwrap();
    reopened.kill_all(libc::SIGKILL).unwrap();
    let (status, _, _) = child.finish(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    reopened.destroy().unwrap();
    assert_nothing_left(&saved);
}

#[test]
fn destroy_never_removes_preexisting_cgroups() {
    require_root_cgroups();
    let parent = unique_path();
    let mut outer = new_manager(Some(&parent), "x").unwrap();
    outer.create().unwrap();
    // The inner manager finds the parent already there: it only records the leaf.
    let mut inner = new_manager(Some(&format!("{parent}/inner")), "x").unwrap();
    inner.create().unwrap();
    for h in inner.saved().hierarchies {
        assert_eq!(h.created.len(), 1);
    }
    inner.destroy().unwrap();
    for h in outer.saved().hierarchies {
        assert!(
            h.dir.is_dir(),
            "pre-existing {} was removed",
            h.dir.display()
        );
        assert!(!h.dir.join("inner").exists());
    }
    outer.destroy().unwrap();
    assert_nothing_left(&outer.saved());
}

#[test]
fn destroy_waits_for_exiting_processes() {
    require_root_cgroups();
    let mut cg = new_manager(Some(&unique_path()), "x").unwrap();
    cg.create().unwrap();
    let mut child = Gated::spawn("sleep 100");
    cg.add_task(child.pid()).unwrap();
    child.release();
    cg.kill_all(libc::SIGKILL).unwrap();
    // Reap concurrently while destroy retries.
    let pid = child.pid();
    let reaper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        child.finish(Duration::from_secs(5))
    });
    cg.destroy().unwrap();
    reaper.join().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_nothing_left(&cg.saved());
}
