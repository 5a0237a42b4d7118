//! Choosing a manifest from an index for a platform, as containerd's `platforms.Only` does.
//!
//! A wanted platform expands to an ordered list of compatible platforms (best first); the
//! chosen entry is the first entry of the index that matches the earliest platform of that list,
//! never simply the first one listed:
//!
//! - `arm/vN` runs `arm/vN` down to `arm/v5` (`--platform linux/arm/v6` over `[v7, v5]` picks
//!   v5); an `arm` entry without variant is `arm/v7`.
//! - `arm64/v8.x` and `v9.x` run lower arm64 variants (`v9.x` runs `v8.(x+5)`), then 32-bit
//!   `arm/v8` to `arm/v5`; an `arm64` entry without variant is `v8`.
//! - `amd64/vN` (an x86-64 microarchitecture level) runs levels N down to the baseline (`v1`,
//!   the same as no variant), then `386`.
//! - `amd64` without a level (the host's default) prefers the baseline entry and accepts the
//!   levels v2..v4 only where this CPU has them ([`amd64_level`]), then `386`.
//!
//! Architecture and variant spellings are normalised first (`x86_64`, `aarch64`, `armhf`,
//! `armel`, `i386`, `arm/7`, `arm64/v8.0`). Entries with an `unknown` platform (attestations)
//! never match; an entry without any platform is taken only when no entry matches.

use oci_spec::image::{Descriptor, ImageIndex};

use crate::digest::Digest;
use crate::image::{ImageError, Platform};

/// A normalised os/architecture/variant (variant empty when the architecture's default).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Norm {
    os: String,
    arch: String,
    variant: String,
}

fn norm(os: &str, arch: &str, variant: Option<&str>) -> Norm {
    let os = os.to_ascii_lowercase();
    let variant = variant.unwrap_or("").to_ascii_lowercase();
    let (arch, variant) = match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" | "amd64" => (
            "amd64",
            match variant.as_str() {
                "v1" | "1" => String::new(),
                v if v.len() == 1 && v.as_bytes()[0].is_ascii_digit() => format!("v{v}"),
                _ => variant,
            },
        ),
        "i386" | "i486" | "i586" | "i686" | "386" => ("386", String::new()),
        "aarch64" | "arm64" => (
            "arm64",
            match variant.as_str() {
                "8" | "v8" | "v8.0" | "8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".into(),
                v if v.starts_with(|c: char| c.is_ascii_digit()) => format!("v{v}"),
                _ => variant,
            },
        ),
        "armhf" => ("arm", "v7".into()),
        "armel" => ("arm", "v6".into()),
        "arm" => (
            "arm",
            match variant.as_str() {
                "" => "v7".into(),
                "5" | "6" | "7" | "8" => format!("v{variant}"),
                _ => variant,
            },
        ),
        other => {
            return Norm {
                os,
                arch: other.into(),
                variant,
            }
        }
    };
    Norm {
        os,
        arch: arch.into(),
        variant,
    }
}

/// The x86-64 microarchitecture level (1 to 4) of this CPU, from the `flags` of
/// `/proc/cpuinfo` (what the kernel read with cpuid), or from cpuid directly when that file
/// cannot be read; 1 on other architectures.
///
/// Levels follow the x86-64 psABI: v2 adds cx16, lahf_lm, popcnt, sse3, sse4.1, sse4.2 and
/// ssse3; v3 adds avx, avx2, bmi1, bmi2, f16c, fma, lzcnt (abm), movbe and xsave; v4 adds
/// avx512f, avx512bw, avx512cd, avx512dq and avx512vl.
pub fn amd64_level() -> u32 {
    static LEVEL: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::env::consts::ARCH != "x86_64" {
            return 1;
        }
        match std::fs::read_to_string("/proc/cpuinfo") {
            Ok(info) => match info
                .lines()
                .find_map(|l| l.strip_prefix("flags")?.trim_start().strip_prefix(':'))
            {
                Some(flags) => level_of_flags(&flags.split_whitespace().collect::<Vec<_>>()),
                None => level_of_cpuid(),
            },
            Err(_) => level_of_cpuid(),
        }
    })
}

/// The level that a set of `/proc/cpuinfo` flags reaches.
fn level_of_flags(flags: &[&str]) -> u32 {
    const V2: &[&str] = &[
        "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3",
    ];
    const V3: &[&str] = &[
        "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
    ];
    const V4: &[&str] = &["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"];
    let has = |set: &[&str]| set.iter().all(|f| flags.contains(f));
    let mut level = 1;
    for set in [V2, V3, V4] {
        if !has(set) {
            break;
        }
        level += 1;
    }
    level
}

#[cfg(target_arch = "x86_64")]
fn level_of_cpuid() -> u32 {
    use std::arch::is_x86_feature_detected as has;
    let v2 = has!("cmpxchg16b")
        && has!("popcnt")
        && has!("sse3")
        && has!("sse4.1")
        && has!("sse4.2")
        && has!("ssse3");
    let v3 = v2
        && has!("avx")
        && has!("avx2")
        && has!("bmi1")
        && has!("bmi2")
        && has!("f16c")
        && has!("fma")
        && has!("lzcnt")
        && has!("movbe")
        && has!("xsave");
    let v4 = v3
        && has!("avx512f")
        && has!("avx512bw")
        && has!("avx512cd")
        && has!("avx512dq")
        && has!("avx512vl");
    1 + u32::from(v2) + u32::from(v3) + u32::from(v4)
}

#[cfg(not(target_arch = "x86_64"))]
fn level_of_cpuid() -> u32 {
    1
}

fn num(v: &str) -> Option<u32> {
    v.strip_prefix('v')?.parse().ok()
}

/// The compatible platforms for `want`, best first (containerd's platform vector), with
/// `cpu_level` deciding which amd64 levels a level-less amd64 request accepts.
fn vector(want: &Norm, cpu_level: u32) -> Vec<Norm> {
    let with = |arch: &str, variant: String| Norm {
        os: want.os.clone(),
        arch: arch.into(),
        variant,
    };
    let mut out = vec![want.clone()];
    match want.arch.as_str() {
        "amd64" => {
            if want.variant.is_empty() {
                for l in (2..=cpu_level.min(4)).rev() {
                    out.push(with("amd64", format!("v{l}")));
                }
            } else if let Some(n) = num(&want.variant) {
                for l in (2..n).rev() {
                    out.push(with("amd64", format!("v{l}")));
                }
                out.push(with("amd64", String::new()));
            }
            out.push(with("386", String::new()));
        }
        "arm" => out.extend(arm_lower(&want.variant).map(|v| with("arm", v))),
        "arm64" => {
            let variant = if want.variant.is_empty() {
                "v8"
            } else {
                want.variant.as_str()
            };
            let (major, minor) = variant.split_once('.').unwrap_or((variant, "0"));
            if let (Some(mut major), Ok(mut minor)) = (num(major), minor.parse::<u32>()) {
                if major >= 8 {
                    let name = |maj: u32, min: u32| match (maj, min) {
                        (8, 0) => String::new(),
                        (m, 0) => format!("v{m}"),
                        (m, n) => format!("v{m}.{n}"),
                    };
                    if major == 9 {
                        for m in (0..minor).rev() {
                            out.push(with("arm64", name(9, m)));
                        }
                        // v9.0 branched from v8.5: v9.x runs what v8.(x+5) runs.
                        minor = (minor + 5).min(9);
                        major = 8;
                        out.push(with("arm64", name(8, minor)));
                    }
                    if major == 8 {
                        for m in (0..minor).rev() {
                            out.push(with("arm64", name(8, m)));
                        }
                    }
                    out.push(with("arm", "v8".into()));
                    out.extend(arm_lower("v8").map(|v| with("arm", v)));
                }
            }
        }
        _ => {}
    }
    out
}

fn arm_lower(variant: &str) -> impl Iterator<Item = String> {
    let n = num(variant).unwrap_or(0);
    (5..n.max(5)).rev().map(|l| format!("v{l}"))
}

fn entry_norm(p: &oci_spec::image::Platform) -> Norm {
    norm(
        &p.os().to_string(),
        &p.architecture().to_string(),
        p.variant().as_deref(),
    )
}

fn describe(d: &Descriptor) -> String {
    match d.platform() {
        Some(p) => {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        }
        None => "(no platform)".into(),
    }
}

/// Whether an image whose config says `os`/`architecture`/`variant` runs on `platform`, by
/// the compatibility [`select_platform`] uses (an `arm/v5` image runs on `linux/arm/v7`, a
/// baseline `amd64` one on every level), with this CPU's amd64 level.
///
/// ```
/// use berth_image::{platform::runs_on, Platform};
/// let arm7: Platform = "linux/arm/v7".parse().unwrap();
/// assert!(runs_on(&arm7, "linux", "arm", Some("v5")));
/// assert!(!runs_on(&arm7, "linux", "arm64", None));
/// ```
pub fn runs_on(platform: &Platform, os: &str, architecture: &str, variant: Option<&str>) -> bool {
    let want = norm(
        &platform.os,
        &platform.architecture,
        platform.variant.as_deref(),
    );
    vector(&want, amd64_level()).contains(&norm(os, architecture, variant))
}

/// Pick the manifest for `platform` from an index, with this CPU's amd64 level.
///
/// See the module documentation for the rules. Errors with [`ImageError::NoPlatform`], which
/// lists every platform the index offers.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    index_digest: &Digest,
    platform: &Platform,
) -> Result<&'a Descriptor, ImageError> {
    select_with_level(index, index_digest, platform, amd64_level())
}

/// [`select_platform`] for a CPU of x86-64 level `cpu_level` (1 to 4).
pub fn select_with_level<'a>(
    index: &'a ImageIndex,
    index_digest: &Digest,
    platform: &Platform,
    cpu_level: u32,
) -> Result<&'a Descriptor, ImageError> {
    let want = norm(
        &platform.os,
        &platform.architecture,
        platform.variant.as_deref(),
    );
    let ms = index.manifests();
    for candidate in vector(&want, cpu_level) {
        if let Some(d) = ms.iter().find(|d| {
            d.platform()
                .as_ref()
                .is_some_and(|p| entry_norm(p) == candidate)
        }) {
            return Ok(d);
        }
    }
    if let Some(d) = ms
        .iter()
        .find(|d| d.platform().is_none() && !is_attestation(d))
    {
        return Ok(d);
    }
    let offered: Vec<String> = ms.iter().map(describe).collect();
    Err(ImageError::NoPlatform {
        platform: platform.clone(),
        index: index_digest.clone(),
        offered: if offered.is_empty() {
            "nothing".into()
        } else {
            offered.join(", ")
        },
    })
}

fn is_attestation(d: &Descriptor) -> bool {
    d.annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[Option<&str>]) -> ImageIndex {
        let ms: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut d = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": Digest::of(i.to_string().as_bytes()),
                    "size": i,
                });
                if let Some(p) = p {
                    let parts: Vec<&str> = p.split('/').collect();
                    let mut plat = serde_json::json!({"os": parts[0], "architecture": parts[1]});
                    if let Some(v) = parts.get(2) {
                        plat["variant"] = (*v).into();
                    }
                    d["platform"] = plat;
                }
                d
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": ms})).unwrap()
    }

    /// The position in `entries` chosen for `want` on a CPU of `level`.
    fn pick(entries: &[Option<&str>], want: &str, level: u32) -> Result<u64, String> {
        let idx = index(entries);
        select_with_level(&idx, &Digest::of(b"i"), &want.parse().unwrap(), level)
            .map(|d| d.size())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn arm_picks_the_best_lower_variant() {
        let e = [Some("linux/arm/v7"), Some("linux/arm/v5")];
        assert_eq!(pick(&e, "linux/arm/v6", 1), Ok(1));
        assert_eq!(pick(&e, "linux/arm/v7", 1), Ok(0));
        assert_eq!(pick(&e, "linux/arm/v8", 1), Ok(0));
        let e = [
            Some("linux/arm/v5"),
            Some("linux/arm/v6"),
            Some("linux/arm/v7"),
        ];
        assert_eq!(pick(&e, "linux/arm/v6", 1), Ok(1));
        assert!(pick(&[Some("linux/arm/v7")], "linux/arm/v6", 1).is_err());
    }

    #[test]
    fn arm_without_variant_is_v7() {
        let e = [Some("linux/amd64"), Some("linux/arm")];
        assert_eq!(pick(&e, "linux/arm/v7", 1), Ok(1));
        assert!(pick(&e, "linux/arm/v6", 1).is_err());
        assert_eq!(pick(&[Some("linux/armhf")], "linux/arm/v7", 1), Ok(0));
    }

    #[test]
    fn arm64_variants() {
        let e = [Some("linux/arm64/v8"), Some("linux/amd64")];
        assert_eq!(pick(&e, "linux/arm64", 1), Ok(0));
        let e = [Some("linux/arm/v7"), Some("linux/arm64")];
        assert_eq!(pick(&e, "linux/arm64/v8", 1), Ok(1));
        assert_eq!(pick(&[Some("linux/arm/v7")], "linux/arm64", 1), Ok(0));
        let e = [Some("linux/arm64/v8.2"), Some("linux/arm64/v8")];
        assert_eq!(pick(&e, "linux/arm64/v8.1", 1), Ok(1));
        assert_eq!(pick(&e, "linux/arm64/v9", 1), Ok(0));
        assert_eq!(pick(&[Some("linux/aarch64")], "linux/arm64/v8", 1), Ok(0));
    }

    #[test]
    fn amd64_levels_follow_the_cpu() {
        // Listed first, but this CPU cannot run it: the baseline wins.
        let e = [
            Some("linux/amd64/v3"),
            Some("linux/arm64"),
            Some("linux/amd64"),
        ];
        assert_eq!(pick(&e, "linux/amd64", 2), Ok(2));
        // The baseline is preferred even where the CPU runs more.
        assert_eq!(pick(&e, "linux/amd64", 4), Ok(2));
        // Without a baseline, the highest level the CPU runs, and never one above it.
        let e = [
            Some("linux/amd64/v4"),
            Some("linux/amd64/v2"),
            Some("linux/amd64/v3"),
        ];
        assert_eq!(pick(&e, "linux/amd64", 3), Ok(2));
        assert_eq!(pick(&e, "linux/amd64", 2), Ok(1));
        let err = pick(&e, "linux/amd64", 1).unwrap_err();
        assert!(
            err.contains("linux/amd64/v4, linux/amd64/v2, linux/amd64/v3"),
            "{err}"
        );
        // An unknown level is nothing a CPU runs.
        assert_eq!(
            pick(
                &[Some("linux/amd64/v5"), Some("linux/amd64/v1")],
                "linux/amd64",
                4
            ),
            Ok(1)
        );
        // An explicit level runs the levels below it, whatever this CPU is.
        assert_eq!(pick(&e, "linux/amd64/v3", 1), Ok(2));
        assert_eq!(pick(&[Some("linux/386")], "linux/amd64", 4), Ok(0));
        assert_eq!(pick(&[Some("linux/x86_64")], "linux/amd64", 1), Ok(0));
    }

    #[test]
    fn unplatformed_and_attestations() {
        assert_eq!(
            pick(&[Some("unknown/unknown"), None], "linux/amd64", 1),
            Ok(1)
        );
        let err = pick(
            &[Some("linux/s390x"), Some("linux/arm/v7")],
            "linux/amd64",
            4,
        )
        .unwrap_err();
        assert!(err.contains("linux/amd64"), "{err}");
        assert!(err.contains("offers linux/s390x, linux/arm/v7"), "{err}");
    }

    #[test]
    fn cpu_flags_to_level() {
        let v2 = [
            "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3",
        ];
        assert_eq!(level_of_flags(&v2[1..]), 1);
        assert_eq!(level_of_flags(&v2), 2);
        let mut v3 = v2.to_vec();
        v3.extend([
            "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
        ]);
        assert_eq!(level_of_flags(&v3), 3);
        let mut v4 = v3.clone();
        v4.extend(["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]);
        assert_eq!(level_of_flags(&v4), 4);
        // AVX-512 without v3 is still v2.
        let mut odd = v2.to_vec();
        odd.extend(["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]);
        assert_eq!(level_of_flags(&odd), 2);
        assert!((1..=4).contains(&amd64_level()));
    }
}
