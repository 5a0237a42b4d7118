//! Registry auth as registries and docker do it: challenges answered on whatever request they
//! come (per-repository auth: `/v2/` answers 200, the repository's endpoints 401), and
//! credentials from docker's config: `credsStore`, `credHelpers` (docker-credential-NAME
//! helpers provided by the test), `auths`, identity tokens.
//!
//! The registry is Debian's docker-registry with htpasswd or token auth; a proxy in front of it
//! answers `/v2/` itself, as registries with per-repository auth do.

mod common;
mod regutil;

use std::path::Path;

use berth_image::registry::{pull_blocking, PullOptions, RegistryError};
use berth_image::Store;
use regutil::*;

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

fn check_pulled(store: &Store, r: &str, dest: &Path) {
    let (_, d) = store.resolve(r).unwrap();
    let img = store.image(&d).unwrap();
    store.flatten(&img, dest, &|_| {}).unwrap();
    assert_eq!(std::fs::read(dest.join("bye")).unwrap(), b"moon");
    assert!(!dest.join("hello").exists());
}

/// A token-auth registry holding `berth/perrepo:v1`, behind a proxy that answers `/v2/`.
struct TokenSetup {
    _reg: Registry,
    tokens: TokenServer,
    proxy: Proxy,
}

fn token_setup(dir: &Path, refresh: Option<&'static str>) -> TokenSetup {
    let tokens = start_token_server(dir, "berth", "t0ken-pass", refresh);
    let reg = start_registry(
        dir,
        Auth::Token {
            realm: &tokens.realm(),
            cert: &dir.join("cert.pem"),
        },
    );
    let layout = image(dir);
    push(
        &layout,
        &format!("127.0.0.1:{}/berth/perrepo:v1", reg.port),
        Some("berth:t0ken-pass"),
    );
    let proxy = start_proxy(
        reg.port,
        ProxyOptions {
            v2_ok: true,
            ..Default::default()
        },
    );
    TokenSetup {
        _reg: reg,
        tokens,
        proxy,
    }
}

#[test]
fn per_repository_bearer_challenge() {
    let t = tempfile::tempdir().unwrap();
    let s = token_setup(t.path(), None);
    let name = format!("127.0.0.1:{}/berth/perrepo:v1", s.proxy.port);
    let r = name.parse().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    std::env::set_var("DOCKER_CONFIG", t.path().join("no-docker-config"));

    // Anonymous: the token server refuses, and the error says why.
    let err = pull_blocking(&store, &r, &PullOptions::default(), &|_| {}).unwrap_err();
    assert!(matches!(err, RegistryError::Token { .. }), "{err:?}");
    assert!(
        chain(&err).contains("no credentials are configured for 127.0.0.1"),
        "{}",
        chain(&err)
    );
    assert!(store.refs().unwrap().is_empty());

    let opts = PullOptions {
        auth: Some(("berth".into(), "t0ken-pass".into())),
        ..Default::default()
    };
    let before = s.tokens.issued();
    pull_blocking(&store, &r, &opts, &|_| {}).unwrap();
    check_pulled(&store, &name, &t.path().join("rootfs"));
    assert!(s.tokens.issued() > before);
    // The scope came from the repository's challenge, not from /v2/.
    let log = s.tokens.requests.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l == "GET repository:berth/perrepo:pull"),
        "{log:?}"
    );
    let plog = s.proxy.log();
    assert!(
        plog.iter()
            .any(|l| l.starts_with("GET /v2/berth/perrepo/manifests/v1")),
        "{plog:?}"
    );
}

#[test]
fn per_repository_basic_challenge_with_docker_config() {
    let t = tempfile::tempdir().unwrap();
    let pw = htpasswd(t.path(), "berth", "s3cret");
    let reg = start_registry(t.path(), Auth::Htpasswd(&pw));
    push(
        &image(t.path()),
        &format!("127.0.0.1:{}/berth/basic:v1", reg.port),
        Some("berth:s3cret"),
    );
    let proxy = start_proxy(
        reg.port,
        ProxyOptions {
            v2_ok: true,
            ..Default::default()
        },
    );
    let host = format!("127.0.0.1:{}", proxy.port);
    let name = format!("{host}/berth/basic:v1");
    let r = name.parse().unwrap();
    let cfg = t.path().join("docker");
    std::env::set_var("DOCKER_CONFIG", &cfg);
    let store = Store::open(t.path().join("store")).unwrap();

    docker_config(&cfg, &[], serde_json::json!({}));
    let err = pull_blocking(&store, &r, &PullOptions::default(), &|_| {}).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(chain(&err).contains("basic credentials and none are configured"));

    docker_config(&cfg, &[(&host, "berth:wrong")], serde_json::json!({}));
    let err = pull_blocking(&store, &r, &PullOptions::default(), &|_| {}).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(store.refs().unwrap().is_empty());

    docker_config(&cfg, &[(&host, "berth:s3cret")], serde_json::json!({}));
    pull_blocking(&store, &r, &PullOptions::default(), &|_| {}).unwrap();
    check_pulled(&store, &name, &t.path().join("rootfs"));
}

#[test]
fn credential_helpers_from_docker_config() {
    let t = tempfile::tempdir().unwrap();
    let s = token_setup(t.path(), Some("refresh-me"));
    let host = format!("127.0.0.1:{}", s.proxy.port);
    let name = format!("{host}/berth/perrepo:v1");
    let r = name.parse().unwrap();
    let bin = t.path().join("bin");
    credential_helper(&bin, "berthstore", &host, "berth", "t0ken-pass");
    credential_helper(&bin, "berthone", &host, "<token>", "refresh-me");
    credential_helper(&bin, "berthnone", "other.example", "x", "y");
    std::env::set_var("PATH", path_with(&bin));
    let cfg = t.path().join("docker");
    std::env::set_var("DOCKER_CONFIG", &cfg);

    // credsStore serves every registry; the `auths` entry is only a placeholder then.
    docker_config(
        &cfg,
        &[(&host, "berth:wrong")],
        serde_json::json!({"credsStore": "berthstore"}),
    );
    assert_eq!(
        berth_image::registry::docker_credentials(&host).unwrap(),
        Some(("berth".into(), "t0ken-pass".into()))
    );
    let store = Store::open(t.path().join("store")).unwrap();
    pull_blocking(&store, &r, &PullOptions::default(), &|_| {}).unwrap();
    check_pulled(&store, &name, &t.path().join("rootfs"));
    let calls = std::fs::read_to_string(bin.join("berthstore.log")).unwrap();
    assert!(calls.lines().any(|l| l == format!("get|{host}")), "{calls}");

    // credHelpers for this registry wins over credsStore; its `<token>` user is an identity
    // token, exchanged with the token server's OAuth2 POST.
    docker_config(
        &cfg,
        &[],
        serde_json::json!({"credsStore": "berthnone", "credHelpers": {host.clone(): "berthone"}}),
    );
    let store2 = Store::open(t.path().join("store2")).unwrap();
    pull_blocking(&store2, &r, &PullOptions::default(), &|_| {}).unwrap();
    check_pulled(&store2, &name, &t.path().join("rootfs2"));
    let log = s.tokens.requests.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|l| l == "POST repository:berth/perrepo:pull"),
        "{log:?}"
    );
    assert!(!bin.join("berthnone.log").exists());

    // A helper without credentials for the registry means anonymous, which is refused.
    docker_config(&cfg, &[], serde_json::json!({"credsStore": "berthnone"}));
    let store3 = Store::open(t.path().join("store3")).unwrap();
    let err = pull_blocking(&store3, &r, &PullOptions::default(), &|_| {}).unwrap_err();
    assert!(
        chain(&err).contains("no credentials are configured"),
        "{}",
        chain(&err)
    );
    assert!(std::fs::read_to_string(bin.join("berthnone.log"))
        .unwrap()
        .contains(&format!("get|{host}")));

    // A helper that is not installed is an error naming it.
    docker_config(
        &cfg,
        &[],
        serde_json::json!({"credsStore": "missing-helper"}),
    );
    let err = pull_blocking(&store3, &r, &PullOptions::default(), &|_| {}).unwrap_err();
    assert!(matches!(err, RegistryError::Helper { .. }), "{err:?}");
    assert!(err.to_string().contains("docker-credential-missing-helper"));
    assert!(store3.refs().unwrap().is_empty());
}

#[test]
fn public_pulls_run_no_credential_helper() {
    let t = tempfile::tempdir().unwrap();
    let reg = start_registry(t.path(), Auth::None);
    let name = format!("127.0.0.1:{}/berth/public:v1", reg.port);
    push(&image(t.path()), &name, None);
    // A helper that is not installed matters only once a registry asks for credentials.
    let cfg = t.path().join("docker");
    std::env::set_var("DOCKER_CONFIG", &cfg);
    docker_config(
        &cfg,
        &[],
        serde_json::json!({"credsStore": "not-installed"}),
    );
    let store = Store::open(t.path().join("store")).unwrap();
    pull_blocking(
        &store,
        &name.parse().unwrap(),
        &PullOptions::default(),
        &|_| {},
    )
    .unwrap();
    check_pulled(&store, &name, &t.path().join("rootfs"));
}
