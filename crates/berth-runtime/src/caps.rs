//! Capabilities of the container process: the five sets of `process.capabilities`.

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::SetupError;

/// The five capability sets, converted from the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapSets {
    /// Bounding set.
    pub bounding: CapsHashSet,
    /// Effective set.
    pub effective: CapsHashSet,
    /// Inheritable set.
    pub inheritable: CapsHashSet,
    /// Permitted set.
    pub permitted: CapsHashSet,
    /// Ambient set.
    pub ambient: CapsHashSet,
}

/// Whether `name` (such as `CAP_CHOWN`) names a capability this build can apply: one that both
/// the `caps` crate and the spec types (`oci_spec::runtime::Capability`) know.
///
/// Any other name, well-formed or not, cannot be mapped: config.md#linux-process says the
/// runtime MUST log a warning for it and SHOULD NOT fail, and runc 1.1 ignores it with a
/// warning, so loading a configuration drops it with a warning (see [`crate::spec`]).
///
/// ```
/// assert!(berth_runtime::caps::is_known("CAP_SYS_ADMIN"));
/// assert!(!berth_runtime::caps::is_known("CAP_FUTURE_THING"));
/// assert!(!berth_runtime::caps::is_known("chown"));
/// ```
pub fn is_known(name: &str) -> bool {
    name.parse::<Capability>().is_ok()
        && serde_json::from_value::<oci_spec::runtime::Capability>(serde_json::Value::from(name))
            .is_ok()
}

/// Convert one spec capability; `None` for a capability this kernel or library does not know
/// (runc ignores those with a warning, so a newer spec still runs on an older kernel).
pub fn convert(cap: &oci_spec::runtime::Capability) -> Option<Capability> {
    format!("CAP_{cap}").parse().ok()
}

fn convert_set(set: &Option<Capabilities>, last_cap: u8) -> CapsHashSet {
    set.iter()
        .flatten()
        .filter_map(|c| {
            let converted = convert(c);
            if converted.is_none() {
                tracing::warn!("ignoring unknown capability CAP_{c}");
            }
            converted
        })
        .filter(|c| {
            let known = c.index() <= last_cap;
            if !known {
                tracing::warn!("ignoring capability {c}: the running kernel does not know it");
            }
            known
        })
        .collect()
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

impl CapSets {
    /// Convert the spec's sets (missing sets are empty), dropping what the kernel lacks.
    pub fn from_spec(c: &LinuxCapabilities) -> Self {
        let last = last_cap();
        CapSets {
            bounding: convert_set(c.bounding(), last),
            effective: convert_set(c.effective(), last),
            inheritable: convert_set(c.inheritable(), last),
            permitted: convert_set(c.permitted(), last),
            ambient: convert_set(c.ambient(), last),
        }
    }
}

fn err(op: &str, e: caps::errors::CapsError) -> SetupError {
    SetupError::msg("capabilities", format!("{op}: {e}"))
}

/// Drop from the bounding set every capability not in `keep` (needs CAP_SETPCAP, so it runs
/// before the user switch and before the other sets shrink).
pub(crate) fn drop_bounding(keep: &CapsHashSet) -> Result<(), SetupError> {
    let last = last_cap();
    for cap in caps::all() {
        if cap.index() > last || keep.contains(&cap) {
            continue;
        }
        caps::drop(None, CapSet::Bounding, cap)
            .map_err(|e| err(&format!("drop {cap} from bounding set"), e))?;
    }
    Ok(())
}

/// Set the inheritable, effective, permitted and ambient sets, in the order the kernel allows:
/// inheritable while CAP_SETPCAP is still effective, then effective before permitted shrinks,
/// then ambient (which needs each capability permitted and inheritable).
pub(crate) fn apply(sets: &CapSets) -> Result<(), SetupError> {
    caps::set(None, CapSet::Inheritable, &sets.inheritable)
        .map_err(|e| err("set inheritable", e))?;
    let effective: CapsHashSet = sets.effective.clone();
    caps::set(None, CapSet::Effective, &effective).map_err(|e| err("set effective", e))?;
    caps::set(None, CapSet::Permitted, &sets.permitted).map_err(|e| err("set permitted", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| err("clear ambient", e))?;
    for cap in &sets.ambient {
        if sets.permitted.contains(cap) && sets.inheritable.contains(cap) {
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(|e| err(&format!("raise ambient {cap}"), e))?;
        } else {
            tracing::debug!("ambient {cap} is not permitted and inheritable: skipped");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_convert() {
        use oci_spec::runtime::Capability as C;
        assert_eq!(convert(&C::Chown), Some(Capability::CAP_CHOWN));
        assert_eq!(
            convert(&C::NetBindService),
            Some(Capability::CAP_NET_BIND_SERVICE)
        );
        assert_eq!(convert(&C::SysAdmin), Some(Capability::CAP_SYS_ADMIN));
        let sets = CapSets::from_spec(&LinuxCapabilities::default());
        assert!(sets.bounding.contains(&Capability::CAP_KILL));
        assert_eq!(sets.bounding.len(), 3);
    }
}
