//! A reference that names a single image manifest (no index) is checked against
//! `--platform` with the same compatibility as an index's entries: docker ("does not match
//! the specified platform") and containerd ("no match for platform in manifest") refuse an
//! image for another platform; berth pulled it silently. Without `--platform` the host's
//! platform only warns, as docker does.

mod common;
mod regutil;

use berth_image::registry::{pull_blocking, PullOptions, RegistryError};
use berth_image::Store;
use regutil::*;

fn pull(port: u16, image: &str, platform: Option<&str>) -> Result<(), Box<RegistryError>> {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let opts = PullOptions {
        platform: platform.map(|p| p.parse().unwrap()),
        ..Default::default()
    };
    let r = format!("127.0.0.1:{port}/{image}").parse().unwrap();
    pull_blocking(&store, &r, &opts, &|_| {})
        .map(|_| ())
        .map_err(Box::new)
}

#[test]
fn a_single_manifest_for_another_platform_is_refused_when_one_is_asked_for() {
    let t = tempfile::tempdir().unwrap();
    let reg = start_registry(t.path(), Auth::None);
    let port = reg.port;
    let push = |repo: &str, p| {
        let (d, _) = push_simple_image(port, repo, &[("f", b"1")], p);
        format!("{repo}@{d}")
    };
    let arm64 = push("arm64", ("linux", "arm64", Some("v8")));
    let amd64 = push("amd64", ("linux", "amd64", None));
    let armv5 = push("armv5", ("linux", "arm", Some("v5")));

    match pull(port, &arm64, Some("linux/amd64")).map_err(|e| *e) {
        Err(e @ RegistryError::PlatformMismatch { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("linux/arm64/v8") && msg.contains("linux/amd64"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        pull(port, &amd64, Some("linux/arm/v7")).map_err(|e| *e),
        Err(RegistryError::PlatformMismatch { .. })
    ));
    // What the platform runs is taken: the same spelling, a lower arm variant, the amd64
    // baseline for a level, arm64 without its default variant.
    pull(port, &amd64, Some("linux/amd64")).unwrap();
    pull(port, &amd64, Some("linux/amd64/v2")).unwrap();
    pull(port, &armv5, Some("linux/arm/v7")).unwrap();
    pull(port, &arm64, Some("linux/arm64")).unwrap();
    // Without --platform: pulled (with a warning) whatever it is for.
    pull(port, &arm64, None).unwrap();
}
