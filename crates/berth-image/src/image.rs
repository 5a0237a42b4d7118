//! Manifests, indexes, image configs and platform selection.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;

/// Error interpreting manifests and configs.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A JSON document could not be parsed.
    #[error("parsing {what} {digest}")]
    Parse {
        /// What kind of document.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A descriptor carried an invalid digest.
    #[error("invalid digest in {what}")]
    Digest {
        /// Where.
        what: &'static str,
        /// The error.
        #[source]
        source: crate::digest::DigestError,
    },
    /// No manifest in an index matches the platform.
    #[error("no manifest for platform {platform} in index {index}: it offers {offered}")]
    NoPlatform {
        /// The platform wanted.
        platform: Platform,
        /// The index digest.
        index: Digest,
        /// The platforms of the index's entries, comma-separated.
        offered: String,
    },
    /// Layer count and diff id count differ.
    #[error("manifest {0} has {1} layers but its config lists {2} diff ids")]
    LayerCount(Digest, usize, usize),
    /// Invalid platform string.
    #[error("invalid platform {0:?}: expected os/arch[/variant]")]
    BadPlatform(String),
}

/// An OS/architecture/variant triple.
///
/// ```
/// let p: berth_image::Platform = "linux/arm64/v8".parse().unwrap();
/// assert_eq!(p.to_string(), "linux/arm64/v8");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// GOARCH spelling, e.g. `amd64`.
    pub architecture: String,
    /// e.g. `v8`.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on.
    pub fn host() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Self {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }
}

impl FromStr for Platform {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, ImageError> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(ImageError::BadPlatform(s.to_owned()));
        }
        Ok(Self {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A manifest-like document: either an index (manifest list) or an image manifest.
#[derive(Debug)]
pub enum Manifest {
    /// OCI image index or Docker manifest list.
    Index(Box<ImageIndex>),
    /// OCI or Docker schema2 image manifest.
    Image(Box<ImageManifest>),
}

impl Manifest {
    /// Parse a manifest blob (whose digest is `digest`, for errors).
    pub fn parse(data: &[u8], digest: &Digest) -> Result<Self, ImageError> {
        #[derive(serde::Deserialize)]
        struct Probe {
            manifests: Option<serde_json::Value>,
        }
        let perr = |what, source| ImageError::Parse {
            what,
            digest: digest.clone(),
            source,
        };
        let probe: Probe = serde_json::from_slice(data).map_err(|e| perr("manifest", e))?;
        if probe.manifests.is_some() {
            Ok(Self::Index(Box::new(
                serde_json::from_slice(data).map_err(|e| perr("image index", e))?,
            )))
        } else {
            Ok(Self::Image(Box::new(
                serde_json::from_slice(data).map_err(|e| perr("image manifest", e))?,
            )))
        }
    }
}

pub use crate::platform::select_platform;

/// Digest of a descriptor, validated.
pub fn descriptor_digest(d: &Descriptor, what: &'static str) -> Result<Digest, ImageError> {
    d.digest()
        .to_string()
        .parse()
        .map_err(|source| ImageError::Digest { what, source })
}

/// A resolved image: a platform manifest and its config.
#[derive(Debug, Clone)]
pub struct Image {
    /// Digest of the manifest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// Digest of the config blob.
    pub config_digest: Digest,
    /// The config.
    pub config: ImageConfiguration,
}

/// One layer of an image.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Digest of the (compressed) blob.
    pub digest: Digest,
    /// Size of the blob.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The descriptor's media type (e.g. `application/vnd.oci.image.layer.v1.tar+zstd`),
    /// which with the blob's magic number decides how it is decompressed.
    pub media_type: String,
}

impl Image {
    /// Build from a parsed manifest and config, checking that they agree.
    pub fn new(
        manifest_digest: Digest,
        manifest: ImageManifest,
        config: ImageConfiguration,
    ) -> Result<Self, ImageError> {
        let config_digest = descriptor_digest(manifest.config(), "manifest config")?;
        let img = Self {
            manifest_digest,
            manifest,
            config_digest,
            config,
        };
        img.layers()?;
        Ok(img)
    }

    /// Layers bottom to top, with their diff ids.
    pub fn layers(&self) -> Result<Vec<Layer>, ImageError> {
        let ls = self.manifest.layers();
        let ids = self.config.rootfs().diff_ids();
        if ls.len() != ids.len() {
            return Err(ImageError::LayerCount(
                self.manifest_digest.clone(),
                ls.len(),
                ids.len(),
            ));
        }
        ls.iter()
            .zip(ids)
            .map(|(l, id)| {
                Ok(Layer {
                    digest: descriptor_digest(l, "layer descriptor")?,
                    size: l.size(),
                    diff_id: id.parse().map_err(|source| ImageError::Digest {
                        what: "config diff_ids",
                        source,
                    })?,
                    media_type: l.media_type().to_string(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parse() {
        assert!("linux".parse::<Platform>().is_err());
        let p: Platform = "linux/amd64".parse().unwrap();
        assert_eq!(p.variant, None);
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn select_from_index() {
        let idx: ImageIndex = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{a}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{b}","size":2,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            a = Digest::of(b"a"),
            b = Digest::of(b"b")
        ))
        .unwrap();
        let d = Digest::of(b"i");
        let amd = select_platform(&idx, &d, &"linux/amd64".parse().unwrap()).unwrap();
        assert_eq!(amd.size(), 2);
        let arm = select_platform(&idx, &d, &"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm.size(), 1);
        assert!(select_platform(&idx, &d, &"linux/s390x".parse().unwrap()).is_err());
    }
}
