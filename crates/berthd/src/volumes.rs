//! Named volumes, local driver: `DATA_ROOT/volumes/NAME/_data`, with the volume's record in
//! `DATA_ROOT/volumes/NAME/volume.json` (written atomically).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A volume's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// User labels.
    #[serde(default)]
    pub labels: HashMap<String, String>,
    /// Driver options (kept, not interpreted: the local driver's plain directory).
    #[serde(default)]
    pub options: HashMap<String, String>,
}

/// The volume store.
#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
}

/// Whether `s` is a volume name (docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

impl Volumes {
    /// The store under `data_root/volumes`.
    pub fn new(data_root: &Path) -> Self {
        Volumes {
            root: data_root.join("volumes"),
        }
    }

    /// Where a volume's data is (its mount source).
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.root.join(name).join("volume.json")
    }

    /// A volume by name.
    pub fn get(&self, name: &str) -> Result<Volume, Error> {
        if !valid_name(name) {
            return Err(Error::NoSuchVolume(name.to_owned()));
        }
        fs::read(self.record_path(name))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .ok_or_else(|| Error::NoSuchVolume(name.to_owned()))
    }

    /// Create a volume (an existing one of that name is returned as it is, as docker does).
    pub fn create(
        &self,
        name: Option<&str>,
        labels: HashMap<String, String>,
        options: HashMap<String, String>,
    ) -> Result<Volume, Error> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_owned(),
            None => crate::util::random_id(),
        };
        if !valid_name(&name) {
            return Err(Error::BadParameter(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
            )));
        }
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let data = self.data_path(&name);
        fs::create_dir_all(&data)
            .map_err(|e| Error::internal(format!("create {}", data.display()), e))?;
        let v = Volume {
            name: name.clone(),
            created: crate::util::now(),
            labels,
            options,
        };
        crate::util::atomic_write(
            &self.record_path(&name),
            &serde_json::to_vec(&v).expect("json"),
        )
        .map_err(|e| Error::internal("write the volume record", e))?;
        Ok(v)
    }

    /// Every volume.
    pub fn list(&self) -> Vec<Volume> {
        let mut v: Vec<Volume> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| self.get(&e.file_name().to_string_lossy()).ok())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Remove a volume and its data.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        self.get(name)?;
        let dir = self.root.join(name);
        // The record goes first: a crash leaves a directory that is no volume, never a volume
        // with half its data.
        fs::remove_file(self.record_path(name))
            .map_err(|e| Error::internal("remove the volume record", e))?;
        fs::remove_dir_all(&dir)
            .map_err(|e| Error::internal(format!("remove {}", dir.display()), e))
    }

    /// docker's JSON for a volume.
    pub fn json(&self, v: &Volume) -> serde_json::Value {
        serde_json::json!({
            "Name": v.name,
            "Driver": "local",
            "Mountpoint": self.data_path(&v.name),
            "CreatedAt": v.created,
            "Labels": v.labels,
            "Scope": "local",
            "Options": v.options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let vs = Volumes::new(d.path());
        let v = vs
            .create(Some("data"), HashMap::new(), HashMap::new())
            .unwrap();
        assert!(vs.data_path("data").is_dir());
        fs::write(vs.data_path("data").join("f"), "x").unwrap();
        let again = vs
            .create(Some("data"), HashMap::new(), HashMap::new())
            .unwrap();
        assert_eq!(again.created, v.created);
        assert_eq!(vs.list().len(), 1);
        assert!(vs
            .create(Some("../x"), HashMap::new(), HashMap::new())
            .is_err());
        vs.remove("data").unwrap();
        assert!(vs.list().is_empty());
        assert!(matches!(vs.get("data"), Err(Error::NoSuchVolume(_))));
    }
}
