//! Registry test helpers: Debian's docker-registry on loopback (anonymous, htpasswd or token
//! auth), a Docker token server, pushes with skopeo or plain HTTP (curl), a proxy that can
//! answer `/v2/` itself (per-repository auth) and cut connections, and docker configs.
#![allow(dead_code, missing_docs)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{self, file, oci_layout, tar_of};

pub struct Registry {
    child: Child,
    pub port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub enum Auth<'a> {
    None,
    Htpasswd(&'a Path),
    /// `auth: token:` trusting `cert` for tokens from `realm`.
    Token {
        realm: &'a str,
        cert: &'a Path,
    },
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn start_registry(dir: &Path, auth: Auth<'_>) -> Registry {
    start_registry_with(dir, auth, "")
}

/// [`start_registry`] with more top-level configuration (YAML).
pub fn start_registry_with(dir: &Path, auth: Auth<'_>, extra: &str) -> Registry {
    let port = free_port();
    let auth = match auth {
        Auth::None => String::new(),
        Auth::Htpasswd(p) => format!(
            "auth:\n  htpasswd:\n    realm: berth\n    path: {}\n",
            p.display()
        ),
        Auth::Token { realm, cert } => format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            cert.display()
        ),
    };
    let cfg = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}{extra}",
        dir.join("data").display()
    );
    let cfg_path = dir.join(format!("registry-{port}.yml"));
    fs::write(&cfg_path, cfg).unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reg = Registry { child, port };
    wait_listening(port, "registry");
    reg
}

/// An htpasswd file at `dir/htpasswd` with one user.
pub fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let p = dir.join("htpasswd");
    let out = Command::new("htpasswd")
        .arg("-Bbc")
        .arg(&p)
        .args([user, password])
        .output()
        .unwrap();
    assert!(out.status.success());
    p
}

/// `skopeo copy` the `test` image of an OCI layout to `dest`.
pub fn push(layout: &Path, dest: &str, creds: Option<&str>) {
    let mut c = Command::new("skopeo");
    c.args(["copy", "--dest-tls-verify=false", "--insecure-policy"]);
    if let Some(cr) = creds {
        c.arg(format!("--dest-creds={cr}"));
    }
    let out = c
        .arg(format!("oci:{}:test", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A two-layer image (the second whites out `hello` and adds `bye`) as an OCI layout.
pub fn image(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let l1 = tar_of(|b| {
        common::dir(b, "etc");
        file(b, "etc/passwd", b"root:x:0:0::/:/bin/sh\n");
        file(b, "hello", b"world");
    });
    let l2 = tar_of(|b| {
        file(b, ".wh.hello", b"");
        file(b, "bye", b"moon");
    });
    oci_layout(
        &layout,
        "test",
        &[l1, l2],
        &["gzip", "gzip"],
        serde_json::json!({"Entrypoint": ["/bin/echo"]}),
    );
    layout
}

/// A few MiB of poorly compressible bytes (a deterministic xorshift stream).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Write a docker `config.json` into `dir` with `auths` entries (base64 `user:password`) and
/// any other top-level fields in `extra`.
pub fn docker_config(dir: &Path, entries: &[(&str, &str)], extra: serde_json::Value) {
    use base64::Engine as _;
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(host, creds)| {
            let auth = base64::engine::general_purpose::STANDARD.encode(creds);
            ((*host).to_owned(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    let mut cfg = serde_json::json!({ "auths": auths });
    if let serde_json::Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
}

/// Install `docker-credential-NAME` into `bin`: it logs each call (`ARGS|STDIN`) to
/// `bin/NAME.log`; for the server URL `server` it prints `{"ServerURL","Username","Secret"}`
/// with `user` and `secret`, for any other it says "credentials not found" and exits 1.
pub fn credential_helper(bin: &Path, name: &str, server: &str, user: &str, secret: &str) {
    fs::create_dir_all(bin).unwrap();
    let log = bin.join(format!("{name}.log"));
    let answer = serde_json::json!({"ServerURL": server, "Username": user, "Secret": secret});
    let script = format!(
        "#!/bin/sh\nin=$(cat)\nprintf '%s|%s\\n' \"$*\" \"$in\" >> '{log}'\n\
         if [ \"$1\" = get ] && [ \"$in\" = '{server}' ]; then\n  cat <<'EOF'\n{answer}\nEOF\n  exit 0\nfi\n\
         echo 'credentials not found in native keychain'\nexit 1\n",
        log = log.display(),
    );
    let p = bin.join(format!("docker-credential-{name}"));
    fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `PATH` with `bin` first.
pub fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut paths = vec![bin.to_path_buf()];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).unwrap()
}

// ---- plain HTTP pushes (hand-made manifests and indexes) ----

fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Upload a blob to an anonymous registry; returns its digest.
pub fn push_blob(port: u16, repo: &str, data: &[u8]) -> berth_image::Digest {
    let d = berth_image::Digest::of(data);
    let head = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-X",
        "POST",
        &format!("http://127.0.0.1:{port}/v2/{repo}/blobs/uploads/"),
    ]);
    let head = String::from_utf8(head).unwrap();
    let loc = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_owned())
        })
        .expect("no upload location");
    let loc = if loc.starts_with('/') {
        format!("http://127.0.0.1:{port}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), data).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", tmp.path().display()),
        &format!("{loc}{sep}digest={d}"),
    ]);
    d
}

/// Put a manifest or index under `reference` (tag or digest); returns its digest.
pub fn put_manifest(
    port: u16,
    repo: &str,
    reference: &str,
    media_type: &str,
    doc: &serde_json::Value,
) -> (berth_image::Digest, usize) {
    let data = serde_json::to_vec(doc).unwrap();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), &data).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {media_type}"),
        "--data-binary",
        &format!("@{}", tmp.path().display()),
        &format!("http://127.0.0.1:{port}/v2/{repo}/manifests/{reference}"),
    ]);
    (berth_image::Digest::of(&data), data.len())
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Push a one-layer image (layer = `files`, gzip) with config os/arch/variant; returns the
/// manifest descriptor's digest and size.
pub fn push_simple_image(
    port: u16,
    repo: &str,
    files: &[(&str, &[u8])],
    platform: (&str, &str, Option<&str>),
) -> (berth_image::Digest, usize) {
    let tar = tar_of(|b| {
        for (n, d) in files {
            file(b, n, d);
        }
    });
    let blob = common::gzip(&tar);
    let ld = push_blob(port, repo, &blob);
    let mut config = serde_json::json!({
        "architecture": platform.1, "os": platform.0,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [berth_image::Digest::of(&tar)]},
    });
    if let Some(v) = platform.2 {
        config["variant"] = v.into();
    }
    let cdata = serde_json::to_vec(&config).unwrap();
    let cd = push_blob(port, repo, &cdata);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cdata.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": blob.len()}],
    });
    let md = berth_image::Digest::of(&serde_json::to_vec(&manifest).unwrap());
    put_manifest(port, repo, &md.to_string(), OCI_MANIFEST, &manifest)
}

/// One layer of [`push_image`].
pub struct LayerSpec {
    /// The blob (compressed as `media_type` says).
    pub blob: Vec<u8>,
    /// The uncompressed tar (its digest is the diff id).
    pub tar: Vec<u8>,
    pub media_type: &'static str,
    /// The descriptor's `urls`.
    pub urls: Vec<String>,
    /// Upload the blob to the registry (false for a foreign layer served elsewhere).
    pub upload: bool,
}

impl LayerSpec {
    /// A gzip layer of `tar`, uploaded.
    pub fn gzip(tar: Vec<u8>) -> Self {
        Self {
            blob: common::gzip(&tar),
            tar,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
            urls: Vec::new(),
            upload: true,
        }
    }
}

/// Push an image made of `layers` as `repo:tag` to an anonymous registry; returns the manifest
/// digest and the layers' blob digests.
pub fn push_image(
    port: u16,
    repo: &str,
    tag: &str,
    layers: &[LayerSpec],
) -> (berth_image::Digest, Vec<berth_image::Digest>) {
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    for l in layers {
        let d = if l.upload {
            push_blob(port, repo, &l.blob)
        } else {
            berth_image::Digest::of(&l.blob)
        };
        let mut desc =
            serde_json::json!({"mediaType": l.media_type, "digest": d, "size": l.blob.len()});
        if !l.urls.is_empty() {
            desc["urls"] = serde_json::json!(l.urls);
        }
        descs.push(desc);
        digests.push(d);
    }
    let diff_ids: Vec<_> = layers
        .iter()
        .map(|l| berth_image::Digest::of(&l.tar))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let cd = push_blob(port, repo, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": descs,
    });
    let (md, _) = put_manifest(port, repo, tag, OCI_MANIFEST, &manifest);
    (md, digests)
}

/// An HTTP server on loopback serving `files` (path -> body; 404 otherwise), one request per
/// connection; returns its port and the paths asked for.
pub fn serve_files(
    files: std::collections::HashMap<String, Vec<u8>>,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Some((head, _)) = read_head(&mut conn) else {
                continue;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            log2.lock().unwrap().push(path.clone());
            let (status, body): (&str, &[u8]) = match files.get(&path) {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", b"no such file"),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(body);
        }
    });
    (port, log)
}

// ---- token server ----

pub const SERVICE: &str = "berth-registry";
pub const ISSUER: &str = "berth-token-issuer";

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// libtrust's key id: the first 240 bits of sha256(SubjectPublicKeyInfo DER), base32 without
/// padding, in groups of four joined by ':' (what distribution 2.x looks `kid` up by).
fn libtrust_kid(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let bytes = &hash.as_ref()[..30];
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    assert_eq!(bits, 0);
    out.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A Docker token server on loopback: checks basic credentials (GET) or an OAuth2 refresh
/// token (POST, docker's identity token) and issues RS256 JWTs signed with the key whose
/// certificate (`DIR/cert.pem`) the registry trusts.
pub struct TokenServer {
    pub port: u16,
    /// Requests refused for missing or wrong credentials.
    pub refused: Arc<AtomicUsize>,
    /// Tokens issued.
    pub issued: Arc<AtomicUsize>,
    /// `METHOD scope...` of every request.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

pub fn start_token_server(
    dir: &Path,
    user: &'static str,
    password: &'static str,
    refresh_token: Option<&'static str>,
) -> TokenServer {
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "key.pem",
        ],
        dir,
    );
    openssl(
        &[
            "rsa",
            "-in",
            "key.pem",
            "-traditional",
            "-outform",
            "DER",
            "-out",
            "key.der",
        ],
        dir,
    );
    openssl(
        &[
            "pkey", "-in", "key.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "key.pem",
            "-subj",
            "/CN=berth-token",
            "-days",
            "2",
            "-out",
            "cert.pem",
        ],
        dir,
    );
    let key =
        ring::signature::RsaKeyPair::from_der(&fs::read(dir.join("key.der")).unwrap()).unwrap();
    let kid = libtrust_kid(&fs::read(dir.join("pub.der")).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let refused = Arc::new(AtomicUsize::new(0));
    let issued = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (r2, i2, q2) = (refused.clone(), issued.clone(), requests.clone());
    std::thread::spawn(move || {
        use base64::Engine as _;
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let rng = ring::rand::SystemRandom::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut rd = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if rd.read_line(&mut line).is_err() {
                continue;
            }
            let mut authorised = false;
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if rd.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") && v.trim() == want {
                        authorised = true;
                    }
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if rd.read_exact(&mut body).is_err() {
                continue;
            }
            let method = line.split_whitespace().next().unwrap_or("").to_owned();
            let target = line.split_whitespace().nth(1).unwrap_or("");
            let query = if method == "POST" {
                String::from_utf8_lossy(&body).into_owned()
            } else {
                target.split_once('?').map_or("", |(_, q)| q).to_owned()
            };
            let mut access = Vec::new();
            let mut scopes = Vec::new();
            let mut grant = (String::new(), String::new());
            for kv in query.split('&') {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                match k {
                    "grant_type" => grant.0 = percent_decode(v),
                    "refresh_token" => grant.1 = percent_decode(v),
                    _ => {}
                }
                if k != "scope" {
                    continue;
                }
                for scope in percent_decode(v).split(' ') {
                    scopes.push(scope.to_owned());
                    // type:name:actions, where name may hold ':' (a port).
                    let Some((ty, rest)) = scope.split_once(':') else {
                        continue;
                    };
                    let Some((name, actions)) = rest.rsplit_once(':') else {
                        continue;
                    };
                    access.push(serde_json::json!({
                        "type": ty, "name": name,
                        "actions": actions.split(',').collect::<Vec<_>>(),
                    }));
                }
            }
            q2.lock()
                .unwrap()
                .push(format!("{method} {}", scopes.join(" ")));
            if method == "POST" {
                authorised = grant.0 == "refresh_token" && Some(grant.1.as_str()) == refresh_token;
            }
            let (status, body) = if authorised {
                i2.fetch_add(1, Ordering::SeqCst);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid});
                let claims = serde_json::json!({
                    "iss": ISSUER, "sub": user, "aud": SERVICE,
                    "exp": now + 300, "nbf": now - 10, "iat": now,
                    "jti": format!("berth-{now}-{}", i2.load(Ordering::SeqCst)),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64url(&serde_json::to_vec(&header).unwrap()),
                    b64url(&serde_json::to_vec(&claims).unwrap())
                );
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                let jwt = format!("{signing_input}.{}", b64url(&sig));
                let body = if method == "POST" {
                    serde_json::json!({"access_token": jwt, "expires_in": 300})
                } else {
                    serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 300})
                };
                ("200 OK", body.to_string())
            } else {
                r2.fetch_add(1, Ordering::SeqCst);
                (
                    "401 Unauthorized",
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                        .to_owned(),
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    TokenServer {
        port,
        refused,
        issued,
        requests,
    }
}

// ---- proxy ----

/// What the proxy does besides forwarding.
#[derive(Default, Clone)]
pub struct ProxyOptions {
    /// Answer `GET /v2/` with 200 itself, so that only repository endpoints challenge
    /// (per-repository auth).
    pub v2_ok: bool,
    /// Cut the connection of responses to requests whose path contains `.0`, after `.1` bytes
    /// of body, `.2` times (then forward normally).
    pub cut: Option<(String, usize, usize)>,
    /// Cut every resumed response (206) after this many body bytes.
    pub cut_resumed: Option<usize>,
    /// Drop `Range` headers from requests (a registry that ignores ranges).
    pub strip_range: bool,
    /// Flip one byte of the first response body that resumes a cut download (a 206).
    pub corrupt_resumed: bool,
    /// Stall responses to requests whose path contains `.0` after `.1` bytes of body: the
    /// connection stays open and silent until the client closes it (a download that cannot
    /// finish, to drop a pull at a known point).
    pub stall: Option<(String, usize)>,
}

pub struct Proxy {
    pub port: u16,
    /// `METHOD PATH [Range: ...]` of every request, and `cut PATH` for each cut.
    pub log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_head(r: &mut impl Read) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(pos + 4);
            return Some((buf, rest));
        }
        let n = r.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A one-request-per-connection HTTP proxy on loopback in front of `127.0.0.1:upstream`.
pub fn start_proxy(upstream: u16, opts: ProxyOptions) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let cuts_left = Arc::new(AtomicUsize::new(opts.cut.as_ref().map_or(0, |c| c.2)));
    let corrupt_left = Arc::new(AtomicBool::new(opts.corrupt_resumed));
    let (log2, stop2) = (log.clone(), stop.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                return;
            }
            let Ok(client) = conn else { continue };
            let (log, opts, cuts_left, corrupt_left) = (
                log2.clone(),
                opts.clone(),
                cuts_left.clone(),
                corrupt_left.clone(),
            );
            std::thread::spawn(move || {
                proxy_one(client, upstream, &opts, &log, &cuts_left, &corrupt_left);
            });
        }
    });
    Proxy { port, log, stop }
}

fn proxy_one(
    mut client: TcpStream,
    upstream: u16,
    opts: &ProxyOptions,
    log: &Mutex<Vec<String>>,
    cuts_left: &AtomicUsize,
    corrupt_left: &AtomicBool,
) {
    let Some((head, body_start)) = read_head(&mut client) else {
        return;
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_owned();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = Vec::new();
    let mut range = None;
    let mut length = 0usize;
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().unwrap_or(0);
        }
        if k.eq_ignore_ascii_case("range") {
            range = Some(v.trim().to_owned());
            if opts.strip_range {
                continue;
            }
        }
        headers.push(l.to_owned());
    }
    log.lock().unwrap().push(match &range {
        Some(r) => format!("{method} {path} Range: {r}"),
        None => format!("{method} {path}"),
    });
    if opts.v2_ok && method == "GET" && (path == "/v2/" || path == "/v2") {
        let _ = client.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        );
        return;
    }
    let mut body = body_start;
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let mut req = format!("{request_line}\r\n");
    for h in &headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    if up.write_all(req.as_bytes()).is_err() || up.write_all(&body).is_err() {
        return;
    }
    let Some((rhead, mut rest)) = read_head(&mut up) else {
        return;
    };
    let status = String::from_utf8_lossy(&rhead)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    // Armed while cuts are left; a cut counts only when it happens (a response shorter than
    // `after` bytes goes through whole).
    let cut_after = match &opts.cut {
        Some((pat, after, _))
            if path.contains(pat.as_str())
                && status == "200"
                && cuts_left.load(Ordering::SeqCst) > 0 =>
        {
            Some(*after)
        }
        _ if status == "206" => opts.cut_resumed,
        _ => None,
    };
    let stall_after = match &opts.stall {
        Some((pat, after)) if path.contains(pat.as_str()) && status == "200" => Some(*after),
        _ => None,
    };
    let counted = status == "200";
    let corrupt = status == "206" && corrupt_left.swap(false, Ordering::SeqCst);
    if client.write_all(&rhead).is_err() {
        return;
    }
    let mut sent = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut chunk = if rest.is_empty() {
            match up.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf[..n].to_vec(),
            }
        } else {
            std::mem::take(&mut rest)
        };
        if corrupt && sent == 0 && !chunk.is_empty() {
            chunk[0] ^= 0x55;
        }
        if let Some(after) = stall_after.filter(|a| sent + chunk.len() > *a) {
            let _ = client.write_all(&chunk[..after - sent]);
            log.lock()
                .unwrap()
                .push(format!("stall {path} after {after}"));
            // Silent until the client goes away.
            let mut sink = [0u8; 1024];
            while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        if let Some(after) = cut_after {
            if sent + chunk.len() > after
                && (!counted
                    || cuts_left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok())
            {
                let _ = client.write_all(&chunk[..after - sent]);
                log.lock()
                    .unwrap()
                    .push(format!("cut {path} after {after}"));
                let _ = client.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        if client.write_all(&chunk).is_err() {
            return;
        }
        sent += chunk.len();
    }
}
