//! The async pull from inside tokio runtimes (multi-thread and current-thread) against Debian's
//! docker-registry on loopback, its per-layer progress events, cancellation by dropping the
//! future, and the blocking wrapper called where a runtime is running.

mod common;
mod regutil;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::registry::{pull, pull_blocking, PullOptions};
use berth_image::{Digest, LayerProgress, LayerState, PullEvent, Reference, Store};
use common::{file, tar_of};
use regutil::*;

/// A registry holding a four-layer image (more layers than download at once), one of them a
/// few MiB of noise so that its download is reported in many steps.
struct Fixture {
    _t: tempfile::TempDir,
    _reg: Registry,
    dir: std::path::PathBuf,
    name: String,
    /// The registry's port (`name` is `127.0.0.1:PORT/...`).
    port: u16,
    manifest: Digest,
    /// (blob digest, blob size), bottom first.
    layers: Vec<(Digest, u64)>,
}

const BIG: usize = 6 << 20;

fn fixture() -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_owned();
    let reg = start_registry(&dir, Auth::None);
    let specs = vec![
        LayerSpec::gzip(tar_of(|b| file(b, "one", b"1"))),
        LayerSpec::gzip(tar_of(|b| file(b, "big.bin", &noise(BIG, 7)))),
        LayerSpec::gzip(tar_of(|b| file(b, "three", &noise(300 << 10, 3)))),
        LayerSpec::gzip(tar_of(|b| file(b, "four", b"4"))),
    ];
    let (manifest, digests) = push_image(reg.port, "berth/async", "v1", &specs);
    let layers = digests
        .into_iter()
        .zip(&specs)
        .map(|(d, s)| (d, s.blob.len() as u64))
        .collect();
    Fixture {
        name: format!("127.0.0.1:{}/berth/async:v1", reg.port),
        port: reg.port,
        _reg: reg,
        dir,
        _t: t,
        manifest,
        layers,
    }
}

/// Collects events from any thread.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<PullEvent>>>);

impl Recorder {
    fn sink(&self) -> impl Fn(PullEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |e| events.lock().unwrap().push(e)
    }
    fn take(&self) -> Vec<PullEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Check the events of one pull of `f`'s image and return each layer's events: one `Resolved`
/// naming the layers first; per layer `Waiting` first, states and byte counts never going
/// back, nothing after the final event, which is `last` with every byte counted.
fn check_events(
    f: &Fixture,
    events: &[PullEvent],
    last: LayerState,
) -> HashMap<Digest, Vec<LayerProgress>> {
    let Some(PullEvent::Resolved { manifest, layers }) = events.first() else {
        panic!("the first event is not Resolved: {events:?}");
    };
    assert_eq!(manifest, &f.manifest);
    assert_eq!(layers, &f.layers);
    let mut per: HashMap<Digest, Vec<LayerProgress>> = HashMap::new();
    for e in &events[1..] {
        match e {
            PullEvent::Layer(l) => per.entry(l.digest.clone()).or_default().push(l.clone()),
            other => panic!("a second non-layer event: {other:?}"),
        }
    }
    assert_eq!(per.len(), f.layers.len(), "{per:?}");
    let mut counted = 0;
    for (d, size) in &f.layers {
        let ev = &per[d];
        assert_eq!(
            (ev[0].state, ev[0].current),
            (LayerState::Waiting, 0),
            "{ev:?}"
        );
        for w in ev.windows(2) {
            assert!(
                !w[0].state.is_final(),
                "an event after the final one: {ev:?}"
            );
            assert!(w[0].state <= w[1].state, "state went back: {ev:?}");
            assert!(w[0].current <= w[1].current, "bytes went back: {ev:?}");
        }
        for l in ev {
            assert_eq!(l.total, *size);
            assert!(l.current <= l.total, "{ev:?}");
        }
        let end = ev.last().unwrap();
        assert_eq!(end.state, last, "{ev:?}");
        assert_eq!(end.current, *size, "{ev:?}");
        counted += end.current;
    }
    assert_eq!(counted, f.layers.iter().map(|(_, s)| s).sum::<u64>());
    per
}

/// A fresh pull: every layer was downloaded to its last byte, then verified, then done; the
/// big one in several steps.
fn check_downloaded(f: &Fixture, events: &[PullEvent]) {
    let per = check_events(f, events, LayerState::Done);
    for (d, size) in &f.layers {
        let ev = &per[d];
        let states: Vec<LayerState> = ev.iter().map(|l| l.state).collect();
        assert!(states.contains(&LayerState::Downloading), "{ev:?}");
        assert!(!states.contains(&LayerState::Extracting), "{ev:?}");
        let downloaded = ev
            .iter()
            .filter(|l| l.state == LayerState::Downloading)
            .map(|l| l.current)
            .max();
        assert_eq!(downloaded, Some(*size), "{ev:?}");
        let verifying = ev.iter().find(|l| l.state == LayerState::Verifying);
        assert_eq!(verifying.map(|l| l.current), Some(*size), "{ev:?}");
    }
    let big = &per[&f.layers[1].0];
    let steps = big
        .iter()
        .filter(|l| l.state == LayerState::Downloading)
        .count();
    assert!(
        steps >= 4,
        "the big layer's download came in {steps} events"
    );
}

fn check_unpacked(store: &Store, f: &Fixture) {
    let (_, d) = store.resolve(&f.name).unwrap();
    assert_eq!(d, f.manifest);
    let img = store.image(&d).unwrap();
    for l in img.layers().unwrap() {
        assert!(store.layer_path(&l.diff_id).is_dir());
    }
    let rootfs = f.dir.join(format!("rootfs-{}", rand_suffix()));
    store.flatten(&img, &rootfs, &|_| {}).unwrap();
    assert_eq!(fs::read(rootfs.join("big.bin")).unwrap(), noise(BIG, 7));
    assert_eq!(fs::read(rootfs.join("four")).unwrap(), b"4");
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `f`, or a failure after two minutes (a pull that hangs is a bug, not a slow test).
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the pull did not finish within two minutes")
}

fn tmp_is_empty(store: &Path) -> bool {
    fs::read_dir(store.join("tmp")).unwrap().next().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_on_a_multi_thread_runtime_reports_every_layer() {
    let f = fixture();
    let root = f.dir.join("store");
    let rec = Recorder::default();
    let (store, r, sink) = (
        Store::open(&root).unwrap(),
        f.name.parse::<Reference>().unwrap(),
        rec.sink(),
    );
    // Spawned: the future is Send and runs on the runtime's workers.
    let img = tokio::spawn(async move {
        within(pull(&store, &r, &PullOptions::default(), &sink))
            .await
            .map(|img| (img, store))
    })
    .await
    .unwrap()
    .unwrap();
    let (img, store) = img;
    assert_eq!(img.manifest_digest, f.manifest);
    check_downloaded(&f, &rec.take());
    check_unpacked(&store, &f);
    assert!(tmp_is_empty(&root));

    // Again: every layer already exists, and says so at once.
    let r = f.name.parse().unwrap();
    within(pull(&store, &r, &PullOptions::default(), &rec.sink()))
        .await
        .unwrap();
    let per = check_events(&f, &rec.take(), LayerState::AlreadyExists);
    for ev in per.values() {
        assert_eq!(ev.len(), 2, "{ev:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn pull_on_a_current_thread_runtime_then_extract_stored_blobs() {
    let f = fixture();
    let root = f.dir.join("store");
    let store = Store::open(&root).unwrap();
    let r: Reference = f.name.parse().unwrap();
    let rec = Recorder::default();

    // Blobs only: downloaded, verified, done; no layer directory.
    let opts = PullOptions {
        no_unpack: true,
        ..Default::default()
    };
    within(pull(&store, &r, &opts, &rec.sink())).await.unwrap();
    check_downloaded(&f, &rec.take());
    let img = store.image(&f.manifest).unwrap();
    for l in img.layers().unwrap() {
        assert!(store.has_blob(&l.digest));
        assert!(!store.layer_path(&l.diff_id).exists());
    }

    // Then unpacking: the stored blobs are extracted (nothing downloaded), byte by byte.
    within(pull(&store, &r, &PullOptions::default(), &rec.sink()))
        .await
        .unwrap();
    let per = check_events(&f, &rec.take(), LayerState::Done);
    for (d, size) in &f.layers {
        let ev = &per[d];
        assert!(
            ev.iter().all(|l| l.state != LayerState::Downloading),
            "{ev:?}"
        );
        let extracted = ev
            .iter()
            .filter(|l| l.state == LayerState::Extracting)
            .map(|l| l.current)
            .max();
        assert_eq!(extracted, Some(*size), "{ev:?}");
    }
    check_unpacked(&store, &f);
    assert!(tmp_is_empty(&root));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pull_stops_it_and_leaves_nothing_half_done() {
    let f = fixture();
    let root = f.dir.join("store");
    let store = Store::open(&root).unwrap();
    let big = f.layers[1].0.clone();
    // The big layer's blob stalls after 5 of its 6 MiB, so the pull cannot finish whatever
    // the machine's load: it is dropped while its unpacker has begun writing into tmp/.
    let proxy = start_proxy(
        f.port,
        ProxyOptions {
            stall: Some((big.to_string(), 5 << 20)),
            ..ProxyOptions::default()
        },
    );
    let proxied = f
        .name
        .replacen(&f.port.to_string(), &proxy.port.to_string(), 1);
    let r: Reference = proxied.parse().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let sink = |e: PullEvent| {
        if let PullEvent::Layer(l) = e {
            if l.digest == big && l.state == LayerState::Downloading && l.current >= 4 << 20 {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
        }
    };
    let opts = PullOptions::default();
    tokio::select! {
        res = within(pull(&store, &r, &opts, &sink)) => {
            panic!("the pull ended before it was dropped: {res:?}")
        }
        _ = rx => {}
    }
    assert!(
        !tmp_is_empty(&root),
        "nothing was being written when the pull was dropped"
    );
    // The unpacker of the big layer sees its stream end short, refuses it and cleans up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tmp_is_empty(&root) {
        assert!(
            Instant::now() < deadline,
            "the store's tmp/ was never emptied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!store.has_blob(&big));
    assert!(store.refs().unwrap().is_empty());
    drop(proxy);

    // A later pull (straight from the registry) completes.
    let r: Reference = f.name.parse().unwrap();
    let rec = Recorder::default();
    within(pull(&store, &r, &PullOptions::default(), &rec.sink()))
        .await
        .unwrap();
    check_unpacked(&store, &f);
}

/// Called inside a runtime, the blocking wrapper runs the pull on a thread of its own instead
/// of panicking ("Cannot start a runtime from within a runtime"), on both flavours.
#[tokio::test(flavor = "current_thread")]
async fn blocking_wrapper_inside_a_current_thread_runtime() {
    let f = fixture();
    let store = Store::open(f.dir.join("store")).unwrap();
    let rec = Recorder::default();
    let img = pull_blocking(
        &store,
        &f.name.parse().unwrap(),
        &PullOptions::default(),
        &rec.sink(),
    )
    .unwrap();
    assert_eq!(img.manifest_digest, f.manifest);
    check_downloaded(&f, &rec.take());
    check_unpacked(&store, &f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_wrapper_inside_a_multi_thread_runtime() {
    let f = fixture();
    let store = Store::open(f.dir.join("store")).unwrap();
    let rec = Recorder::default();
    let img = pull_blocking(
        &store,
        &f.name.parse().unwrap(),
        &PullOptions::default(),
        &rec.sink(),
    )
    .unwrap();
    assert_eq!(img.manifest_digest, f.manifest);
    check_downloaded(&f, &rec.take());
}

/// Without a runtime it builds its own, as before.
#[test]
fn blocking_wrapper_without_a_runtime() {
    let f = fixture();
    let store = Store::open(f.dir.join("store")).unwrap();
    let rec = Recorder::default();
    pull_blocking(
        &store,
        &f.name.parse().unwrap(),
        &PullOptions::default(),
        &rec.sink(),
    )
    .unwrap();
    check_downloaded(&f, &rec.take());
}
