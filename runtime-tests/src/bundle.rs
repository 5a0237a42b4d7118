//! OCI bundles in temp dirs: a copy of the busybox rootfs plus a mutable config.json.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::{default_spec, SupportError};

/// Where [`Bundle::with_probe`] puts the probe inside the container.
pub const PROBE_PATH: &str = "/probe";

/// An OCI bundle in a temp dir (removed on drop): `rootfs/` copied from the busybox fixture and
/// a config spec held as a [`serde_json::Value`] that is written to `config.json` by
/// [`save`](Bundle::save) (the [`Runtime`](crate::Runtime) calls it before `create`/`run`).
///
/// The spec starts as [`default_spec`]; the mutators return `&mut Self` so they chain, and
/// [`spec_mut`](Bundle::spec_mut) gives the raw value for anything they do not cover.
///
/// ```no_run
/// use runtime_tests::Bundle;
/// use serde_json::json;
///
/// let mut b = Bundle::with_probe().unwrap();
/// b.set_args(&["/probe"])
///     .set_hostname("box")
///     .set_readonly_root(false)
///     .add_env("FOO=bar")
///     .set_caps(&["CAP_KILL"])
///     .add_mount(json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs"}))
///     .set_resources(json!({"memory": {"limit": 64 << 20}}));
/// b.spec_mut()["annotations"] = json!({"org.example.key": "value"});
/// ```
pub struct Bundle {
    dir: TempDir,
    spec: Value,
    raw_config: Option<String>,
    has_probe: bool,
}

impl Bundle {
    /// A bundle with a copy of the busybox rootfs ([`crate::rootfs_dir`]) and the default spec.
    pub fn new() -> Result<Bundle, SupportError> {
        let src = crate::rootfs_dir()?;
        Bundle::from_rootfs(&src)
    }

    /// Like [`new`](Bundle::new), with the bundle's temp dir created inside `parent`.
    pub fn new_in(parent: &Path) -> Result<Bundle, SupportError> {
        let src = crate::rootfs_dir()?;
        Bundle::from_rootfs_in(&src, parent)
    }

    /// Like [`with_probe`](Bundle::with_probe), with the bundle's temp dir inside `parent`.
    pub fn with_probe_in(parent: &Path) -> Result<Bundle, SupportError> {
        let mut b = Bundle::new_in(parent)?;
        b.install_probe()?;
        Ok(b)
    }

    /// Like [`new`](Bundle::new), plus the static probe ([`crate::probe_bin`]) at `/probe`.
    pub fn with_probe() -> Result<Bundle, SupportError> {
        let mut b = Bundle::new()?;
        b.install_probe()?;
        Ok(b)
    }

    /// A bundle whose rootfs is a copy of `src` (`cp -a`).
    pub fn from_rootfs(src: &Path) -> Result<Bundle, SupportError> {
        Bundle::from_rootfs_in(src, &std::env::temp_dir())
    }

    /// A bundle whose rootfs is a copy of `src`, in a temp dir inside `parent`.
    pub fn from_rootfs_in(src: &Path, parent: &Path) -> Result<Bundle, SupportError> {
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle-")
            .tempdir_in(parent)
            .map_err(|e| SupportError::io("create temp dir", parent, e))?;
        // Readable by everyone: a runtime in a user namespace must be able to reach rootfs/.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| SupportError::io("chmod", dir.path(), e))?;
        let rootfs = dir.path().join("rootfs");
        let out = Command::new("cp")
            .arg("-a")
            .arg(src)
            .arg(&rootfs)
            .output()
            .map_err(|e| SupportError::io("run cp", src, e))?;
        if !out.status.success() {
            return Err(SupportError::Command {
                command: format!("cp -a {} {}", src.display(), rootfs.display()),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(Bundle {
            dir,
            spec: default_spec(),
            raw_config: None,
            has_probe: false,
        })
    }

    /// Copies the probe binary to `rootfs/probe` (mode 0755).
    pub fn install_probe(&mut self) -> Result<&mut Self, SupportError> {
        let probe = crate::probe_bin()?;
        let dest = self.rootfs().join("probe");
        fs::copy(&probe, &dest).map_err(|e| SupportError::io("copy", &probe, e))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))
            .map_err(|e| SupportError::io("chmod", &dest, e))?;
        self.has_probe = true;
        Ok(self)
    }

    /// Whether `/probe` is installed in the rootfs.
    pub fn has_probe(&self) -> bool {
        self.has_probe
    }

    /// The bundle directory (what `--bundle` gets).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs directory on the host.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// The path of config.json.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// The spec as it will be written.
    pub fn spec(&self) -> &Value {
        &self.spec
    }

    /// The raw spec, for changes the mutators do not cover.
    pub fn spec_mut(&mut self) -> &mut Value {
        &mut self.spec
    }

    /// Writes `text` verbatim as config.json on every save instead of the spec (for tests that
    /// need an invalid config). `None` goes back to the spec.
    pub fn set_raw_config(&mut self, text: Option<&str>) -> &mut Self {
        self.raw_config = text.map(str::to_string);
        self
    }

    /// Writes config.json.
    pub fn save(&self) -> Result<(), SupportError> {
        let text = match &self.raw_config {
            Some(t) => t.clone(),
            None => serde_json::to_string_pretty(&self.spec).map_err(SupportError::Json)?,
        };
        let p = self.config_path();
        fs::write(&p, text).map_err(|e| SupportError::io("write", &p, e))
    }

    /// Writes an executable script into the bundle dir (not the rootfs), for hooks; returns
    /// its host path.
    pub fn write_script(&self, name: &str, body: &str) -> Result<PathBuf, SupportError> {
        let p = self.dir.path().join(name);
        fs::write(&p, body).map_err(|e| SupportError::io("write", &p, e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
            .map_err(|e| SupportError::io("chmod", &p, e))?;
        Ok(p)
    }

    fn process(&mut self) -> &mut Value {
        &mut self.spec["process"]
    }

    /// The `linux` object, created if missing.
    pub fn linux_mut(&mut self) -> &mut Value {
        if !self.spec["linux"].is_object() {
            self.spec["linux"] = json!({});
        }
        &mut self.spec["linux"]
    }

    /// `process.args`.
    pub fn set_args(&mut self, args: &[&str]) -> &mut Self {
        self.process()["args"] = json!(args);
        self
    }

    /// `process.env`, replacing it.
    pub fn set_env(&mut self, env: &[&str]) -> &mut Self {
        self.process()["env"] = json!(env);
        self
    }

    /// Appends `KEY=VALUE` to `process.env`.
    pub fn add_env(&mut self, kv: &str) -> &mut Self {
        push(&mut self.process()["env"], json!(kv));
        self
    }

    /// `process.cwd`.
    pub fn set_cwd(&mut self, cwd: &str) -> &mut Self {
        self.process()["cwd"] = json!(cwd);
        self
    }

    /// `process.user.uid` and `gid`.
    pub fn set_user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.process()["user"]["uid"] = json!(uid);
        self.process()["user"]["gid"] = json!(gid);
        self
    }

    /// `process.user.additionalGids`.
    pub fn set_additional_gids(&mut self, gids: &[u32]) -> &mut Self {
        self.process()["user"]["additionalGids"] = json!(gids);
        self
    }

    /// `process.user.umask`.
    pub fn set_umask(&mut self, umask: u32) -> &mut Self {
        self.process()["user"]["umask"] = json!(umask);
        self
    }

    /// `process.terminal`.
    pub fn set_terminal(&mut self, on: bool) -> &mut Self {
        self.process()["terminal"] = json!(on);
        self
    }

    /// Sets all five capability sets (bounding, effective, permitted, inheritable, ambient).
    pub fn set_caps(&mut self, caps: &[&str]) -> &mut Self {
        self.process()["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": caps, "ambient": caps
        });
        self
    }

    /// Sets one capability set (`"bounding"`, `"effective"`, ...).
    pub fn set_cap_set(&mut self, set: &str, caps: &[&str]) -> &mut Self {
        self.process()["capabilities"][set] = json!(caps);
        self
    }

    /// `process.rlimits`, replacing them: `(type, soft, hard)`.
    pub fn set_rlimits(&mut self, limits: &[(&str, u64, u64)]) -> &mut Self {
        let v: Vec<Value> = limits
            .iter()
            .map(|(t, s, h)| json!({"type": t, "soft": s, "hard": h}))
            .collect();
        self.process()["rlimits"] = json!(v);
        self
    }

    /// `process.noNewPrivileges`.
    pub fn set_no_new_privileges(&mut self, on: bool) -> &mut Self {
        self.process()["noNewPrivileges"] = json!(on);
        self
    }

    /// `process.oomScoreAdj`.
    pub fn set_oom_score_adj(&mut self, adj: i32) -> &mut Self {
        self.process()["oomScoreAdj"] = json!(adj);
        self
    }

    /// `hostname`.
    pub fn set_hostname(&mut self, name: &str) -> &mut Self {
        self.spec["hostname"] = json!(name);
        self
    }

    /// `domainname`.
    pub fn set_domainname(&mut self, name: &str) -> &mut Self {
        self.spec["domainname"] = json!(name);
        self
    }

    /// `root.readonly`.
    pub fn set_readonly_root(&mut self, ro: bool) -> &mut Self {
        self.spec["root"]["readonly"] = json!(ro);
        self
    }

    /// Appends a mount object (`{"destination", "type", "source", "options"}`).
    pub fn add_mount(&mut self, mount: Value) -> &mut Self {
        push(&mut self.spec["mounts"], mount);
        self
    }

    /// Replaces `mounts`.
    pub fn set_mounts(&mut self, mounts: Value) -> &mut Self {
        self.spec["mounts"] = mounts;
        self
    }

    /// Sets `annotations[key] = value`.
    pub fn set_annotation(&mut self, key: &str, value: &str) -> &mut Self {
        if !self.spec["annotations"].is_object() {
            self.spec["annotations"] = json!({});
        }
        self.spec["annotations"][key] = json!(value);
        self
    }

    /// Appends a hook (`{"path", "args", "env", "timeout"}`) to `hooks[stage]`
    /// (`prestart`, `createRuntime`, `createContainer`, `startContainer`, `poststart`,
    /// `poststop`).
    pub fn add_hook(&mut self, stage: &str, hook: Value) -> &mut Self {
        if !self.spec["hooks"].is_object() {
            self.spec["hooks"] = json!({});
        }
        push(&mut self.spec["hooks"][stage], hook);
        self
    }

    /// Replaces `linux.namespaces` with new namespaces of the given types.
    pub fn set_namespaces(&mut self, types: &[&str]) -> &mut Self {
        let v: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        self.linux_mut()["namespaces"] = json!(v);
        self
    }

    /// Adds (or replaces) the namespace `ty`, joined at `path` when given.
    pub fn set_namespace(&mut self, ty: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(ty);
        let ns = match path {
            Some(p) => json!({"type": ty, "path": p}),
            None => json!({"type": ty}),
        };
        push(&mut self.linux_mut()["namespaces"], ns);
        self
    }

    /// Removes the namespace `ty` from `linux.namespaces` (the container shares the host's).
    pub fn remove_namespace(&mut self, ty: &str) -> &mut Self {
        if let Some(a) = self.linux_mut()["namespaces"].as_array_mut() {
            a.retain(|n| n["type"] != ty);
        }
        self
    }

    /// Sets `linux.uidMappings` and `linux.gidMappings` to one range each.
    pub fn set_id_mappings(&mut self, host_uid: u32, host_gid: u32, size: u32) -> &mut Self {
        self.linux_mut()["uidMappings"] =
            json!([{"containerID": 0, "hostID": host_uid, "size": size}]);
        self.linux_mut()["gidMappings"] =
            json!([{"containerID": 0, "hostID": host_gid, "size": size}]);
        self
    }

    /// Merges `resources` into `linux.resources` (top-level keys replaced).
    pub fn set_resources(&mut self, resources: Value) -> &mut Self {
        let linux = self.linux_mut();
        if !linux["resources"].is_object() {
            linux["resources"] = json!({});
        }
        if let Some(obj) = resources.as_object() {
            for (k, v) in obj {
                linux["resources"][k] = v.clone();
            }
        }
        self
    }

    /// `linux.cgroupsPath`.
    pub fn set_cgroups_path(&mut self, path: &str) -> &mut Self {
        self.linux_mut()["cgroupsPath"] = json!(path);
        self
    }

    /// Sets `linux.sysctl[key] = value`.
    pub fn set_sysctl(&mut self, key: &str, value: &str) -> &mut Self {
        let linux = self.linux_mut();
        if !linux["sysctl"].is_object() {
            linux["sysctl"] = json!({});
        }
        linux["sysctl"][key] = json!(value);
        self
    }

    /// `linux.seccomp`.
    pub fn set_seccomp(&mut self, seccomp: Value) -> &mut Self {
        self.linux_mut()["seccomp"] = seccomp;
        self
    }

    /// `linux.maskedPaths`.
    pub fn set_masked_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.linux_mut()["maskedPaths"] = json!(paths);
        self
    }

    /// `linux.readonlyPaths`.
    pub fn set_readonly_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.linux_mut()["readonlyPaths"] = json!(paths);
        self
    }

    /// `linux.rootfsPropagation`.
    pub fn set_rootfs_propagation(&mut self, prop: &str) -> &mut Self {
        self.linux_mut()["rootfsPropagation"] = json!(prop);
        self
    }

    /// Appends a device (`{"path", "type", "major", "minor", "fileMode", "uid", "gid"}`) to
    /// `linux.devices`.
    pub fn add_device(&mut self, device: Value) -> &mut Self {
        push(&mut self.linux_mut()["devices"], device);
        self
    }
}

fn push(slot: &mut Value, item: Value) {
    if !slot.is_array() {
        *slot = json!([]);
    }
    if let Some(a) = slot.as_array_mut() {
        a.push(item);
    }
}
