//! Image references (`name[:tag][@digest]`) with Docker's normalisation.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry assumed when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// Error parsing a reference.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is empty or malformed.
    #[error("invalid reference {reference:?}: {reason}")]
    Invalid {
        /// The text given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A fully qualified image reference.
///
/// ```
/// let r: berth_image::Reference = "busybox".parse().unwrap();
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// let r: berth_image::Reference = "localhost:5000/a/b:1.0".parse().unwrap();
/// assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()), ("localhost:5000", "a/b", Some("1.0")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host\[:port\], e.g. `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Manifest digest, when pinned.
    pub digest: Option<Digest>,
}

impl Reference {
    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Docker's short form: `busybox:latest` for `docker.io/library/busybox:latest`.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        let short = full.strip_prefix("docker.io/").unwrap_or(&full);
        short.strip_prefix("library/").unwrap_or(short).to_owned()
    }
}

fn invalid(reference: &str, reason: &'static str) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_owned(),
        reason,
    }
}

fn valid_path_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(invalid(s, "empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|_| invalid(s, "bad digest"))?),
            ),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(s, "bad tag"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first, path)
            }
            _ => (DEFAULT_REGISTRY, name),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        if registry.is_empty() || registry.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(invalid(s, "bad registry"));
        }
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        if !repository.split('/').all(valid_path_component) {
            return Err(invalid(
                s,
                "repository must be lowercase [a-z0-9._-] components",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn normalisation() {
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            n("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(n("quay.io/a/b/c"), "quay.io/a/b/c:latest");
        assert_eq!(n("localhost/x"), "localhost/x:latest");
        assert_eq!(n("127.0.0.1:5000/x:tag"), "127.0.0.1:5000/x:tag");
        let d = Digest::of(b"x");
        assert_eq!(
            n(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            n(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        assert_eq!(
            "busybox:1".parse::<Reference>().unwrap().familiar(),
            "busybox:1"
        );
    }

    #[test]
    fn rejects() {
        for bad in ["", "UPPER", "a:b:c", "a@sha256:12", "a:", "a//b", "x/-y"] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }
}
