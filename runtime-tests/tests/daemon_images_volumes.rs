//! berthd's images and volumes against what a container uses, driven by the real docker CLI:
//! `rmi -f` of an image a running container uses keeps it (dangling, as dockerd), `image
//! prune -a` never deletes it nor its layers, a tag moved by `load` leaves the old image
//! dangling, rmi of a name that shares its image id with a used image only untags, `volume
//! rm -f` of a used volume is refused (dockerd's 409), `images` filters (dangling, reference
//! with globs, unknown ones a 400), a second pull says "Image is up to date", and the image
//! events (load, tag, untag, delete, pull). Each test starts its own berthd and checks that
//! nothing is left behind.

use runtime_tests::daemon::{busybox_archive_with_config, LocalRegistry, OutputExt, TestDaemon};

fn daemon() -> TestDaemon {
    runtime_tests::require_root();
    TestDaemon::start().expect("start berthd")
}

const BUSYBOX_ID: &str = "sha256:3a301a120c48e6987bf904e1571ae7166a2c610154c2713966a349e2b536d273";

/// Now as `SECS.NANOS`, what `docker events --since/--until` take.
fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// The image events between `since` and now: `ACTION ID NAME` lines.
fn image_events(d: &TestDaemon, since: &str) -> Vec<String> {
    let until = now();
    d.ok(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

fn files_in_bin(d: &TestDaemon, c: &str) -> usize {
    d.ok(&["exec", c, "ls", "/bin"]).lines().count()
}

#[test]
fn daemon_rmi_force_of_a_used_image_keeps_it_dangling_and_prune_spares_it() {
    let d = daemon();
    d.load_busybox();
    let victim = d.track(&d.ok(&["run", "-d", "--name", "victim", "busybox", "sleep", "1000"]));
    let before = files_in_bin(&d, "victim");
    assert!(before > 100, "busybox has its applets in /bin: {before}");
    // Without -f: dockerd's conflict naming the container.
    let o = d.docker(&["rmi", "busybox"]);
    assert_ne!(o.code(), 0);
    assert!(
        o.stderr_str().contains(&format!(
            "conflict: unable to remove repository reference \"busybox\" (must force) - container {} is using its referenced image 3a301a120c48",
            &victim[..12]
        )),
        "{}",
        o.stderr_str()
    );
    // By id, with a running container: a hard conflict, even forced.
    let o = d.docker(&["rmi", "-f", "3a301a120c48"]);
    assert!(
        o.stderr_str().contains(&format!(
            "conflict: unable to delete 3a301a120c48 (cannot be forced) - image is being used by running container {}",
            &victim[..12]
        )),
        "{}",
        o.stderr_str()
    );
    // Forced by name: untagged, not deleted; it stays as <none>.
    let out = d.ok(&["rmi", "-f", "busybox"]);
    assert_eq!(out, "Untagged: busybox:latest");
    assert_eq!(
        d.ok(&["images", "-q", "--no-trunc", "-f", "dangling=true"]),
        BUSYBOX_ID
    );
    assert_eq!(
        d.ok(&[
            "images",
            "-a",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}"
        ]),
        "<none>:<none> 3a301a120c48"
    );
    // Neither prune touches it nor its layers.
    d.ok(&["image", "prune", "-f"]);
    let pruned = d.ok(&["image", "prune", "-a", "-f"]);
    assert!(!pruned.contains("Deleted"), "{pruned}");
    assert_eq!(files_in_bin(&d, "victim"), before);
    assert_eq!(d.ok(&["images", "-q"]), "3a301a120c48");
    // Still usable by id.
    assert_eq!(
        d.ok(&["run", "--rm", "3a301a120c48", "echo", "by-id"]),
        "by-id"
    );
    // Once the container is gone, prune deletes it, its blobs and its layers.
    d.ok(&["rm", "-f", "victim"]);
    let pruned = d.ok(&["image", "prune", "-f"]);
    assert!(
        pruned.contains(&format!("deleted: {BUSYBOX_ID}")),
        "{pruned}"
    );
    assert_eq!(d.ok(&["images", "-qa"]), "");
    let layers: Vec<_> = std::fs::read_dir(d.data.join("layers"))
        .unwrap()
        .flatten()
        .collect();
    assert!(layers.is_empty(), "{layers:?}");
    d.assert_clean(&[]);
}

/// A docker-archive of busybox with one more label (so another image id) tagged
/// `busybox:latest`.
fn relabelled_busybox(dir: &std::path::Path) -> std::path::PathBuf {
    busybox_archive_with_config(
        dir,
        "busybox:latest",
        serde_json::json!({"Labels": {"relabelled": "yes"}}),
    )
}

#[test]
fn daemon_a_tag_moved_by_load_or_tag_leaves_the_used_image_dangling() {
    let d = daemon();
    d.load_busybox();
    d.track(&d.ok(&[
        "run", "-d", "--name", "old-user", "busybox", "sleep", "1000",
    ]));
    let archive = relabelled_busybox(d.dir.path());
    let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains(&format!(
            "The image busybox:latest already exists, renaming the old one with ID {BUSYBOX_ID} to empty string"
        )),
        "{out}"
    );
    let new_id = d.ok(&["images", "--no-trunc", "-q", "busybox"]);
    assert_ne!(new_id, BUSYBOX_ID);
    assert_eq!(
        d.ok(&["images", "-q", "--no-trunc", "-f", "dangling=true"]),
        BUSYBOX_ID
    );
    d.ok(&["image", "prune", "-a", "-f"]);
    // The old image is used: it and its layers stay; the new one is unused and goes.
    assert_eq!(d.ok(&["images", "-q", "--no-trunc"]), BUSYBOX_ID);
    assert!(files_in_bin(&d, "old-user") > 100);
    // `tag` moves a name the same way: the image it named stays, dangling.
    d.ok(&["tag", "3a301a120c48", "bb:1"]);
    assert_eq!(d.ok(&["images", "-q", "-f", "dangling=true"]), "");
    d.ok(&["load", "-i", archive.to_str().unwrap()]);
    d.ok(&["tag", "busybox", "bb:1"]);
    assert_eq!(
        d.ok(&["images", "-q", "--no-trunc", "-f", "dangling=true"]),
        BUSYBOX_ID
    );
    d.ok(&["rm", "-f", "old-user"]);
    let out = d.ok(&["rmi", "3a301a120c48"]);
    assert!(out.contains(&format!("Deleted: {BUSYBOX_ID}")), "{out}");
    d.ok(&["rmi", "busybox", "bb:1"]);
    assert_eq!(d.ok(&["images", "-qa"]), "");
    d.assert_clean(&[]);
}

#[test]
fn daemon_images_filters_as_dockerd() {
    let d = daemon();
    d.load_busybox();
    d.ok(&["tag", "busybox", "acktag:2"]);
    d.ok(&["tag", "busybox", "other/bu:x"]);
    let fmt = ["--format", "{{.Repository}}:{{.Tag}}"];
    let list = |args: &[&str]| {
        let mut a = vec!["images"];
        a.extend_from_slice(args);
        a.extend_from_slice(&fmt);
        let mut v: Vec<String> = d.ok(&a).lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(
        list(&[]),
        ["acktag:2", "busybox:latest", "other/bu:x"].map(String::from)
    );
    // Tagged images are not dangling: `docker rmi $(docker images -qf dangling=true)` must
    // not reach them.
    assert_eq!(d.ok(&["images", "-q", "-f", "dangling=true"]), "");
    assert_eq!(list(&["-f", "dangling=false"]).len(), 3);
    // A name shows that name only, not every tag of its image id.
    assert_eq!(list(&["acktag:2"]), ["acktag:2"]);
    assert_eq!(list(&["busybox"]), ["busybox:latest"]);
    // Globs (Go's path.Match, on name:tag and on the name alone; `*` stops at `/`).
    assert_eq!(list(&["ack*"]), ["acktag:2"]);
    assert_eq!(list(&["-f", "reference=*:2"]), ["acktag:2"]);
    assert_eq!(list(&["-f", "reference=b?sy*"]), ["busybox:latest"]);
    assert_eq!(list(&["-f", "reference=*/bu"]), ["other/bu:x"]);
    assert_eq!(list(&["-f", "reference=bu"]), Vec::<String>::new());
    assert_eq!(
        list(&["-f", "reference=acktag", "-f", "reference=busybox:latest"]),
        ["acktag:2", "busybox:latest"].map(String::from)
    );
    // Unknown filters and bad values are a 400, as dockerd's.
    let o = d.docker(&["images", "-f", "bogus=1"]);
    assert_ne!(o.code(), 0);
    o.assert_stderr_contains("Invalid filter 'bogus'");
    let o = d.docker(&["images", "-f", "dangling=maybe"]);
    o.assert_stderr_contains("Invalid filter 'dangling=[maybe]'");
    let o = d.docker(&["image", "prune", "-f", "--filter", "bogus=1"]);
    o.assert_stderr_contains("Invalid filter 'bogus'");
    let o = d.docker(&["volume", "ls", "-f", "bogus=1"]);
    o.assert_stderr_contains("Invalid filter 'bogus'");
    // label filters.
    assert_eq!(list(&["-f", "label=nosuch"]), Vec::<String>::new());
    d.assert_clean(&[]);
}

#[test]
fn daemon_volume_rm_force_of_a_used_volume_is_refused() {
    let d = daemon();
    d.load_busybox();
    d.ok(&["volume", "create", "vol1"]);
    let id = d.track(&d.ok(&[
        "run",
        "-d",
        "--name",
        "v1",
        "-v",
        "vol1:/data",
        "busybox",
        "sh",
        "-c",
        "echo hi >/data/f; sleep 1000",
    ]));
    let f = d.data.join("volumes/vol1/_data/f");
    d.wait_until("the container's write to the volume", 20, || {
        std::fs::read_to_string(&f).is_ok_and(|s| s == "hi\n")
    });
    for args in [
        &["volume", "rm", "-f", "vol1"][..],
        &["volume", "rm", "vol1"][..],
    ] {
        let o = d.docker(args);
        assert_ne!(o.code(), 0, "{args:?}: {}", o.stdout_str());
        assert!(
            o.stderr_str()
                .contains(&format!("remove vol1: volume is in use - [{id}]")),
            "{args:?}: {}",
            o.stderr_str()
        );
    }
    // prune (even -a) skips it, also once the container has stopped.
    d.ok(&["volume", "prune", "-a", "-f"]);
    d.ok(&["stop", "-t", "1", "v1"]);
    d.ok(&["volume", "prune", "-a", "-f"]);
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "vol1");
    assert_eq!(
        d.ok(&["run", "--rm", "-v", "vol1:/d", "busybox", "cat", "/d/f"]),
        "hi"
    );
    // dockerd's force makes a missing volume no error.
    assert_eq!(d.ok(&["volume", "rm", "-f", "nosuch"]), "nosuch");
    d.ok(&["rm", "v1"]);
    let pruned = d.ok(&["volume", "prune", "-a", "-f"]);
    assert!(pruned.contains("vol1"), "{pruned}");
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    d.assert_clean(&[]);
}

#[test]
fn daemon_image_events_as_dockerd() {
    let d = daemon();
    let since = now();
    d.load_busybox();
    d.ok(&["tag", "busybox", "ev:1"]);
    d.ok(&["rmi", "ev:1"]);
    d.ok(&["rmi", "busybox"]);
    let ev = image_events(&d, &since);
    assert_eq!(
        ev,
        [
            format!("load {BUSYBOX_ID} {BUSYBOX_ID}"),
            format!("tag {BUSYBOX_ID} ev:1"),
            format!("untag {BUSYBOX_ID} {BUSYBOX_ID}"),
            format!("untag {BUSYBOX_ID} {BUSYBOX_ID}"),
            format!("delete {BUSYBOX_ID} {BUSYBOX_ID}"),
        ]
    );
    d.assert_clean(&[]);
}

#[test]
fn daemon_second_pull_is_up_to_date_and_rmi_of_a_shared_id_untags() {
    let d = daemon();
    let registry = LocalRegistry::start(&d, None);
    let port = registry.port;
    let image = registry.push_busybox("library/bb:1", None);
    let since = now();
    let out = d.ok(&["pull", &image]);
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {image}")),
        "{out}"
    );
    let out = d.ok(&["pull", &image]);
    assert!(
        out.contains(&format!("Status: Image is up to date for {image}")),
        "{out}"
    );
    let pulls: Vec<String> = image_events(&d, &since);
    let want = format!("pull {image} 127.0.0.1:{port}/library/bb");
    assert_eq!(pulls, [want.clone(), want]);
    // The data root keeps dockerd's 0710 after a pull.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&d.data).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o710, "{mode:o}");
    // busybox (loaded: another manifest) has the same image id; a container uses it.
    d.load_busybox();
    assert_eq!(
        d.ok(&["images", "-q", "--no-trunc", &image]),
        d.ok(&["images", "-q", "--no-trunc", "busybox"])
    );
    d.track(&d.ok(&["run", "-d", "--name", "user", "busybox", "sleep", "1000"]));
    assert_eq!(d.ok(&["rmi", &image]), format!("Untagged: {image}"));
    assert_eq!(
        d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "busybox:latest"
    );
    assert!(files_in_bin(&d, "user") > 100);
    d.ok(&["rm", "-f", "user"]);
    d.assert_clean(&[]);
}
