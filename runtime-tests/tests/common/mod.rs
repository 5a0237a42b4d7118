//! Shared set-up of berth's own integration tests.

#![allow(dead_code)]

use runtime_tests::{assert_no_leaks, berth_bin, require_root, Bundle, LeakSnapshot, Runtime};

/// A berth runtime with a private root and a bundle with the probe (panics when not root: a
/// missing prerequisite is a failure). `Option` for the callers' `let ... else`.
pub fn setup() -> Option<(Runtime, Bundle)> {
    require_root();
    let bin = berth_bin().expect("berth binary (set BERTH_BIN or build -p berth)");
    let rt = Runtime::new(bin).expect("runtime");
    let bundle = Bundle::with_probe().expect("bundle");
    Some((rt, bundle))
}

/// Runs `f`, then checks that nothing the test made is left on the host.
pub fn leak_checked(f: impl FnOnce(&Runtime, &mut Bundle)) {
    let Some((rt, mut bundle)) = setup() else {
        return;
    };
    let before = LeakSnapshot::take(&rt, &bundle);
    f(&rt, &mut bundle);
    rt.cleanup();
    assert_no_leaks(&before, &rt);
}

/// Polling a condition with a deadline: the one helper of the runtime-tests library.
#[allow(unused_imports)] // not every test binary polls
pub use runtime_tests::wait_for;

/// Host cgroup directories (in any hierarchy) whose name is `id`.
pub fn cgroup_dirs_named(id: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(hs) = std::fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    for h in hs.flatten() {
        walk(&h.path(), id, 0, &mut out);
    }
    out
}

fn walk(dir: &std::path::Path, id: &str, depth: usize, out: &mut Vec<std::path::PathBuf>) {
    if depth > 4 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            if e.file_name() == id {
                out.push(e.path());
            }
            walk(&e.path(), id, depth + 1, out);
        }
    }
}

/// Debian's runc, the reference that tests run side by side with berth.
pub const RUNC: &str = "/usr/sbin/runc";

/// A berth runtime (and with `with_runc`, a runc one) and a bundle; root, berth and runc are
/// prerequisites, so their absence fails the test. `f` runs, then every container is removed
/// and the host must show no leak, also when `f` panicked (the runtimes' logs are printed).
pub fn with_runtimes(with_runc: bool, f: impl FnOnce(&[&Runtime], &mut Bundle)) {
    require_root();
    let berth = Runtime::new(berth_bin().expect("berth binary (BERTH_BIN)")).expect("runtime");
    let runc = with_runc.then(|| {
        runtime_tests::require_path(RUNC, "runc");
        Runtime::new(RUNC).expect("runtime")
    });
    let mut bundle = Bundle::with_probe().expect("bundle");
    let before = LeakSnapshot::take(&berth, &bundle);
    let rts: Vec<&Runtime> = std::iter::once(&berth).chain(runc.as_ref()).collect();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&rts, &mut bundle)));
    for rt in &rts {
        rt.cleanup();
    }
    if let Err(p) = result {
        for rt in &rts {
            eprintln!("{}", rt.dump_log());
        }
        std::panic::resume_unwind(p);
    }
    for rt in &rts {
        assert_no_leaks(&before, rt);
    }
}

/// "runc" or "berth", for messages of side-by-side tests.
pub fn runtime_name(rt: &Runtime) -> &'static str {
    if rt.bin == std::path::Path::new(RUNC) {
        "runc"
    } else {
        "berth"
    }
}
