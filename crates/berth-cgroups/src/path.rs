//! runc's rules for the spec's `linux.cgroupsPath`.

use std::path::{Component, Path, PathBuf};

use crate::error::CgroupError;

/// Resolves the cgroup path of a container inside one hierarchy.
///
/// - an absolute `cgroups_path` is relative to the hierarchy root;
/// - a relative one is relative to the caller's own cgroup in that hierarchy (`own`);
/// - none means `<own>/<container_id>`.
///
/// `..` components are resolved lexically and can never climb above the hierarchy root.
/// The result is absolute (as in `/proc/<pid>/cgroup`) and never the root itself.
pub(crate) fn resolve(
    own: &Path,
    cgroups_path: Option<&str>,
    container_id: &str,
) -> Result<PathBuf, CgroupError> {
    let joined = match cgroups_path {
        Some("") | None => {
            if container_id.is_empty() || container_id.contains('/') || container_id == ".." {
                return Err(CgroupError::InvalidPath {
                    path: container_id.to_string(),
                    reason: "container id is not a valid cgroup name".into(),
                });
            }
            own.join(container_id)
        }
        Some(p) if p.starts_with('/') => PathBuf::from(p),
        Some(p) => own.join(p),
    };
    let cleaned = clean(&joined);
    if cleaned == Path::new("/") {
        return Err(CgroupError::InvalidPath {
            path: cgroups_path.unwrap_or(container_id).to_string(),
            reason: "resolves to the root cgroup".into(),
        });
    }
    Ok(cleaned)
}

/// Lexically cleans `p` as an absolute path (`..` at the root stays at the root).
pub(crate) fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let own = Path::new("/user.slice/me");
        assert_eq!(resolve(own, Some("/a/b"), "id").unwrap(), Path::new("/a/b"));
        assert_eq!(
            resolve(own, Some("a/b"), "id").unwrap(),
            Path::new("/user.slice/me/a/b")
        );
        assert_eq!(
            resolve(own, None, "id").unwrap(),
            Path::new("/user.slice/me/id")
        );
        assert_eq!(
            resolve(own, Some(""), "id").unwrap(),
            Path::new("/user.slice/me/id")
        );
        assert_eq!(
            resolve(Path::new("/"), None, "c1").unwrap(),
            Path::new("/c1")
        );
    }

    #[test]
    fn dotdot_cannot_escape() {
        let own = Path::new("/x");
        assert_eq!(
            resolve(own, Some("/../../etc"), "id").unwrap(),
            Path::new("/etc")
        );
        assert_eq!(
            resolve(own, Some("../y/./z"), "id").unwrap(),
            Path::new("/y/z")
        );
        assert!(resolve(own, Some("/.."), "id").is_err());
        assert!(resolve(own, Some("/"), "id").is_err());
        assert!(resolve(own, None, "a/b").is_err());
        assert!(resolve(own, None, "").is_err());
    }
}
