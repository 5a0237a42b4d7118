//! What a registry sends before its digest is known is read only up to a cap (manifests and
//! indexes 4 MiB as containerd and docker, configs 8 MiB, token responses 1 MiB), with or
//! without `Content-Length`, and sizes a descriptor declares above the cap are refused before
//! anything is fetched. A registry written here serves the oversized documents.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use berth_image::registry::{
    pull_blocking, PullOptions, RegistryError, MAX_CONFIG, MAX_MANIFEST, MAX_TOKEN_RESPONSE,
};
use berth_image::{Digest, Store};

/// A response: status line, extra headers, body, and whether to send `Content-Length` (else
/// the body ends when the connection closes).
#[derive(Clone)]
struct Reply {
    status: &'static str,
    headers: Vec<String>,
    body: Vec<u8>,
    length: bool,
}

fn ok(body: Vec<u8>, length: bool) -> Reply {
    Reply {
        status: "200 OK",
        headers: vec![],
        body,
        length,
    }
}

/// A registry on loopback answering GETs from `routes` (path -> reply; 404 otherwise).
struct Fake {
    port: u16,
    asked: Arc<Mutex<Vec<String>>>,
}

fn fake(routes: HashMap<String, Reply>) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let a2 = asked.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let routes = routes.clone();
            let a2 = a2.clone();
            std::thread::spawn(move || serve(c, &routes, &a2));
        }
    });
    Fake { port, asked }
}

fn serve(mut c: TcpStream, routes: &HashMap<String, Reply>, asked: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    asked.lock().unwrap().push(path.clone());
    let r = routes.get(&path).cloned().unwrap_or(Reply {
        status: "404 Not Found",
        headers: vec![],
        body: br#"{"errors":[{"code":"NOT_FOUND","message":"nothing here"}]}"#.to_vec(),
        length: true,
    });
    let mut out = format!("HTTP/1.1 {}\r\nConnection: close\r\n", r.status);
    for h in &r.headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    if r.length {
        out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    out.push_str("\r\n");
    let _ = c.write_all(out.as_bytes());
    let _ = c.write_all(&r.body);
}

/// A JSON manifest padded with an annotation to `size` bytes or more.
fn padded_manifest(size: u64) -> Vec<u8> {
    let pad = "x".repeat(size as usize);
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(b"c"), "size": 1},
        "layers": [],
        "annotations": {"pad": pad},
    }))
    .unwrap()
}

fn manifest_with_config(config: &[u8], declared: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(config), "size": declared},
        "layers": [],
    }))
    .unwrap()
}

type Pulled = (
    Result<berth_image::Image, RegistryError>,
    Store,
    tempfile::TempDir,
);

fn try_pull(port: u16, tag: &str) -> Pulled {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let r = format!("127.0.0.1:{port}/berth/caps:{tag}");
    let res = pull_blocking(
        &store,
        &r.parse().unwrap(),
        &PullOptions::default(),
        &|_| {},
    );
    (res, store, t)
}

#[test]
fn oversized_manifests_are_refused_with_or_without_length() {
    let big = padded_manifest(MAX_MANIFEST + 1);
    let fine = padded_manifest(MAX_MANIFEST - 4096);
    let f = fake(HashMap::from([
        ("/v2/berth/caps/manifests/len".into(), ok(big.clone(), true)),
        ("/v2/berth/caps/manifests/nolen".into(), ok(big, false)),
        ("/v2/berth/caps/manifests/fine".into(), ok(fine, false)),
    ]));
    for tag in ["len", "nolen"] {
        let (res, store, _t) = try_pull(f.port, tag);
        match res {
            Err(RegistryError::TooLarge { what, limit, url }) => {
                assert_eq!(what, "manifest");
                assert_eq!(limit, MAX_MANIFEST);
                assert!(url.ends_with(&format!("/manifests/{tag}")), "{url}");
            }
            other => panic!("{tag}: {other:?}"),
        }
        assert!(store.refs().unwrap().is_empty());
    }
    // Just under the cap, the manifest is read (and the pull goes on to its config).
    let (res, _, _t) = try_pull(f.port, "fine");
    assert!(
        matches!(res, Err(RegistryError::Status { status: 404, ref url, .. }) if url.contains("/blobs/")),
        "{res:?}"
    );
}

#[test]
fn index_entries_and_configs_declaring_too_much_are_not_fetched() {
    let child = Digest::of(b"child");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": child,
                       "size": MAX_MANIFEST + 1, "platform": {"os": "linux", "architecture": "amd64"}}],
    }))
    .unwrap();
    let config = b"{}".to_vec();
    let huge_config = manifest_with_config(&config, MAX_CONFIG + 1);
    // Declares 2 bytes, sends 3 MiB without a length.
    let lying = manifest_with_config(&config, config.len() as u64);
    let cd = Digest::of(&config);
    let f = fake(HashMap::from([
        ("/v2/berth/caps/manifests/index".into(), ok(index, true)),
        (
            "/v2/berth/caps/manifests/huge".into(),
            ok(huge_config, true),
        ),
        ("/v2/berth/caps/manifests/lying".into(), ok(lying, true)),
        (
            format!("/v2/berth/caps/blobs/{cd}"),
            ok(vec![b' '; 3 << 20], false),
        ),
    ]));
    let (res, _, _t) = try_pull(f.port, "index");
    assert!(
        matches!(res, Err(RegistryError::DeclaredTooLarge { what: "manifest", ref digest, .. }) if *digest == child),
        "{res:?}"
    );
    let (res, _, _t) = try_pull(f.port, "huge");
    assert!(
        matches!(
            res,
            Err(RegistryError::DeclaredTooLarge {
                what: "image config",
                ..
            })
        ),
        "{res:?}"
    );
    let asked = f.asked.lock().unwrap().clone();
    assert!(
        !asked
            .iter()
            .any(|p| p.contains(&child.to_string()) || p.contains("/blobs/")),
        "{asked:?}"
    );
    let (res, store, _t) = try_pull(f.port, "lying");
    assert!(
        matches!(res, Err(RegistryError::BlobTooLarge { ref digest, size: 2 }) if *digest == cd),
        "{res:?}"
    );
    assert!(!store.has_blob(&cd));
    // With a Content-Length above the declared size, the body is not even read.
    let f2 = fake(HashMap::from([
        (
            "/v2/berth/caps/manifests/lyinglen".into(),
            ok(manifest_with_config(&config, 2), true),
        ),
        (
            format!("/v2/berth/caps/blobs/{cd}"),
            ok(vec![b' '; 3], true),
        ),
    ]));
    let (res, store, _t) = try_pull(f2.port, "lyinglen");
    assert!(
        matches!(res, Err(RegistryError::BlobTooLarge { ref digest, size: 2 }) if *digest == cd),
        "{res:?}"
    );
    assert!(!store.has_blob(&cd));
}

#[test]
fn oversized_token_responses_are_refused() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let challenge = format!(
        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"caps\""
    );
    let token = serde_json::to_vec(&serde_json::json!({
        "token": "t".repeat(MAX_TOKEN_RESPONSE as usize),
    }))
    .unwrap();
    let routes = HashMap::from([
        (
            "/v2/berth/caps/manifests/v1".to_owned(),
            Reply {
                status: "401 Unauthorized",
                headers: vec![challenge],
                body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"token please"}]}"#.to_vec(),
                length: true,
            },
        ),
        (
            "/token?service=caps&scope=repository%3Aberth%2Fcaps%3Apull".to_owned(),
            ok(token, false),
        ),
    ]);
    // The registry and its token server on one port (the one just freed).
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let a2 = asked.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            serve(c, &routes, &a2);
        }
    });
    let (res, _, _t) = try_pull(port, "v1");
    match res {
        Err(RegistryError::TooLarge { what, limit, .. }) => {
            assert_eq!(what, "token response");
            assert_eq!(limit, MAX_TOKEN_RESPONSE);
        }
        other => panic!("{other:?} (asked {:?})", asked.lock().unwrap()),
    }
}
