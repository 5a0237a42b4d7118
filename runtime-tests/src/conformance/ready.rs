//! runtime.md#lifecycle and #state: a `create` that succeeds leaves a container that is
//! `created`, waiting for `start`, whatever its process's limits (issue 11: berth reported
//! success while its init had already died of its own rlimits).

use std::time::Duration;

use super::{ensure, Case, Ctx, Level, Verdict};

const LIFECYCLE: &str = "runtime.md#lifecycle";

/// Create with `rlimits`: an error is fine (the runtime could not make that environment), a
/// success must leave status `created` (and the program must not have run yet), also a little
/// later.
fn create_with_limits(ctx: &Ctx, rlimits: &[(&str, u64, u64)]) -> Verdict {
    let mut b = ctx.bundle()?;
    b.set_args(&["sleep", "100"]).set_rlimits(rlimits);
    let id = ctx.id("ready");
    let out = ctx.rt.create(&id, &b);
    if out.timed_out {
        return Err(super::not_ok("create hung"));
    }
    if !out.success() {
        return Ok(());
    }
    // Whatever ends the waiting init does so at once: give it a moment to show.
    let gone = crate::wait_for(Duration::from_millis(500), || {
        ctx.rt.status(&id).as_deref() != Some("created")
    });
    let status = ctx.rt.status(&id);
    ctx.rt.delete_force(&id);
    ensure(!gone, || {
        format!("create succeeded but the container is {status:?}, not created")
    })
}

#[rustfmt::skip]
pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new("ready.create.nofile-3", LIFECYCLE, Level::Must,
            "a create that succeeds leaves the container created (the runtime had to report an error if it could not make that environment): with process.rlimits RLIMIT_NOFILE 3",
            |ctx| create_with_limits(ctx, &[("RLIMIT_NOFILE", 3, 3)])),
        Case::new("ready.create.as-16k", LIFECYCLE, Level::Must,
            "a create that succeeds leaves the container created: with process.rlimits RLIMIT_AS 16 KiB",
            |ctx| create_with_limits(ctx, &[("RLIMIT_AS", 16384, 16384)])),
    ]
}
