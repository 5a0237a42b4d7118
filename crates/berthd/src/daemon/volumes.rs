//! The daemon's side of named volumes: who uses one, and removal.

use super::Daemon;
use crate::error::Error;

impl Daemon {
    /// The containers using volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|e| {
                crate::spec::all_mounts(&e.record()).is_ok_and(|ms| {
                    ms.iter().any(|m| matches!(m, crate::spec::MountSpec::Volume { name: n, .. } if n == name))
                })
            })
            .map(|e| e.id.clone())
            .collect()
    }

    /// Remove a volume unless a container uses it: 409 "remove NAME: volume is in use -
    /// [IDS]" as dockerd's, with `force` too (dockerd's force only purges a volume its driver
    /// fails to remove, and makes a missing volume no error).
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<(), Error> {
        match self.volumes.get(name) {
            Err(Error::NoSuchVolume(_)) if force => return Ok(()),
            r => r?,
        };
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.volumes.remove(name)?;
        self.volume_event(name, "destroy");
        Ok(())
    }
}
