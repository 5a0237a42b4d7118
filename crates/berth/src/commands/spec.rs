//! `berth spec`: write a default config.json, like `runc spec`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

/// `spec [--bundle DIR] [--rootless]`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Directory to write config.json into.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// A spec for a rootless container (user namespace mapping the caller).
    #[arg(long)]
    pub rootless: bool,
}

/// The default configuration: busybox-friendly, like runc's, with a cgroup namespace (the
/// one definition, shared with image bundles: [`berth_image::default_spec`]); with
/// `rootless`, runc's `--rootless` shape mapping root to the caller.
pub fn default_spec(rootless: bool) -> serde_json::Value {
    let mut spec = berth_image::default_spec::default_spec(berth_runtime::spec::OCI_VERSION);
    if rootless {
        berth_image::default_spec::make_rootless(
            &mut spec,
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
    }
    spec
}

/// `berth spec`.
pub fn run(a: SpecArgs) -> Result<u8> {
    let path = a.bundle.join("config.json");
    let text = serde_json::to_string_pretty(&default_spec(a.rootless))?;
    // O_EXCL: a file that exists, or a symlink (even a dangling one) planted at config.json,
    // is refused instead of written through.
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("File {} exists. Remove it first", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
    };
    f.write_all((text + "\n").as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_parses_and_validates() {
        for rootless in [false, true] {
            let v = default_spec(rootless);
            let spec: oci_spec::runtime::Spec = serde_json::from_value(v).unwrap();
            berth_runtime::ns::NsPlan::from_spec(&spec).unwrap();
        }
    }
}
