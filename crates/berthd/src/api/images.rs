//! `/images/...`: list, load, save, inspect, history, tag, remove, create (pull).

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;

use super::{json, AppState, Q};
use crate::daemon::Daemon;
use crate::error::Error;
use crate::images::{familiar, Found, User};
use crate::util;

/// The container using image `id`, a running one first (dockerd's delete conflicts).
fn image_user(d: &Daemon, id: &str) -> Option<User> {
    let mut stopped = None;
    for e in d.all() {
        let r = e.record();
        if r.image != id {
            continue;
        }
        if r.state.running {
            return Some(User {
                id: e.id.clone(),
                running: true,
            });
        }
        stopped.get_or_insert(User {
            id: e.id.clone(),
            running: false,
        });
    }
    stopped
}

/// Publish an image event as dockerd's `LogImageEvent(id, name, action)`: `Actor.ID` is `id`,
/// its attributes the image's labels (when `labels_of` still finds it) and `name`.
fn image_event(d: &Daemon, id: &str, name: &str, action: &str, labels_of: Option<&Found>) {
    let mut attrs = serde_json::Map::new();
    if let Some(f) = labels_of {
        for (k, v) in f
            .image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.labels().clone())
            .unwrap_or_default()
        {
            attrs.insert(k, v.into());
        }
    }
    attrs.insert("name".into(), name.into());
    let nanos = util::now_nanos();
    d.publish(json!({
        "status": action, "id": id,
        "Type": "image", "Action": action,
        "Actor": {"ID": id, "Attributes": attrs},
        "scope": "local", "time": (nanos / 1_000_000_000) as i64, "timeNano": nanos as i64,
    }));
}

/// Image records as events: `untag` per `Untagged`, `delete` per `Deleted` (dockerd names the
/// image id in both).
fn record_events(d: &Daemon, f: Option<&Found>, id: &str, records: &[(&'static str, String)]) {
    for (k, _) in records {
        match *k {
            "Untagged" => image_event(d, id, id, "untag", f),
            "Deleted" => image_event(d, id, id, "delete", None),
            _ => {}
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal("image task", e))?
}

fn created_secs(f: &Found) -> i64 {
    f.image
        .config
        .created()
        .as_deref()
        .and_then(util::parse_rfc3339)
        .map(|t| (t / 1_000_000_000) as i64)
        .unwrap_or(0)
}

fn size(f: &Found) -> i64 {
    f.image
        .layers()
        .map(|ls| ls.iter().map(|l| l.size as i64).sum())
        .unwrap_or(0)
}

fn tags(f: &Found) -> Vec<String> {
    f.keys
        .iter()
        .filter(|k| !k.contains('@'))
        .map(|k| familiar(k))
        .collect()
}

fn digests(f: &Found) -> Vec<String> {
    f.keys
        .iter()
        .filter_map(|k| k.parse::<berth_image::Reference>().ok())
        .map(|r| {
            let short = familiar(&r.name());
            format!("{short}@{}", f.image.manifest_digest)
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Go's `path.Match` (what dockerd's reference filter uses): `*` any run of characters but
/// `/`, `?` one such character, `[...]` a class (`^` negates, `a-z` ranges), `\\` escapes.
/// Errors: a malformed pattern (dockerd's "syntax error in pattern").
pub fn path_match(pattern: &str, name: &str) -> Result<bool, Error> {
    fn class(p: &[char], c: char) -> Result<(bool, usize), Error> {
        let bad = || Error::BadParameter("syntax error in pattern".into());
        let mut i = 0;
        let negate = p.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let lo = match p.get(i) {
                None => return Err(bad()),
                Some(']') if !first => break,
                Some('\\') => {
                    i += 1;
                    *p.get(i).ok_or_else(bad)?
                }
                Some(&ch) => ch,
            };
            first = false;
            i += 1;
            let mut hi = lo;
            if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
                i += 1;
                hi = match p.get(i) {
                    Some('\\') => {
                        i += 1;
                        *p.get(i).ok_or_else(bad)?
                    }
                    Some(&ch) => ch,
                    None => return Err(bad()),
                };
                i += 1;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
        }
        Ok((matched != negate, i + 1))
    }
    fn go(p: &[char], n: &[char]) -> Result<bool, Error> {
        match p.first() {
            None => Ok(n.is_empty()),
            Some('*') => {
                let rest = &p[1..];
                for k in 0..=n.len() {
                    if k > 0 && n[k - 1] == '/' {
                        break;
                    }
                    if go(rest, &n[k..])? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Some('?') => Ok(n.first().is_some_and(|c| *c != '/') && go(&p[1..], &n[1..])?),
            Some('[') => {
                let Some(&c) = n.first() else {
                    // Still check the pattern's syntax.
                    class(&p[1..], '\0')?;
                    return Ok(false);
                };
                let (ok, used) = class(&p[1..], c)?;
                Ok(ok && c != '/' && go(&p[1 + used..], &n[1..])?)
            }
            Some('\\') => match p.get(1) {
                None => Err(Error::BadParameter("syntax error in pattern".into())),
                Some(e) => Ok(n.first() == Some(e) && go(&p[2..], &n[1..])?),
            },
            Some(c) => Ok(n.first() == Some(c) && go(&p[1..], &n[1..])?),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// dockerd's `reference.FamiliarMatch`: the pattern against `name:tag` (or `name@digest`),
/// then against the name alone.
fn reference_matches(pattern: &str, key: &str) -> Result<bool, Error> {
    let full = familiar(key);
    if path_match(pattern, &full)? {
        return Ok(true);
    }
    let name = key
        .parse::<berth_image::Reference>()
        .map(|r| {
            let full = r.name();
            let short = full.strip_prefix("docker.io/").unwrap_or(&full);
            short.strip_prefix("library/").unwrap_or(short).to_owned()
        })
        .unwrap_or_default();
    Ok(path_match(pattern, &name).unwrap_or(false))
}

/// docker's `label=k` / `label=k=v` filter: every value must match.
fn labels_match(wanted: &[String], labels: &std::collections::HashMap<String, String>) -> bool {
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(w.as_str()),
    })
}

fn labels_of(f: &Found) -> std::collections::HashMap<String, String> {
    f.image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
}

/// The filters dockerd 20.10 accepts for `GET /images/json`.
const LIST_FILTERS: &[&str] = &["dangling", "label", "before", "since", "reference"];

/// dockerd's answer to a filter it does not know.
pub fn invalid_filter(k: &str) -> Error {
    Error::BadParameter(format!("Invalid filter '{k}'"))
}

/// `GET /images/json?filters=` (dangling, label, before, since, reference; others are a 400
/// as dockerd's): newest first; with `reference`, `RepoTags`/`RepoDigests` hold only the
/// matching names (so `docker images busybox:1` shows that tag alone); a dangling image has
/// `<none>:<none>`.
pub async fn list(State(d): State<AppState>, q: Q) -> Result<Response, Error> {
    let filters = q.filters()?;
    if let Some(k) = filters.keys().find(|k| !LIST_FILTERS.contains(&k.as_str())) {
        return Err(invalid_filter(k));
    }
    let dangling_only = match filters.get("dangling").map(|v| v.as_slice()) {
        None => None,
        Some([v]) if v == "true" || v == "1" => Some(true),
        Some([v]) if v == "false" || v == "0" => Some(false),
        Some(v) => {
            return Err(Error::BadParameter(format!(
                "Invalid filter 'dangling=[{}]'",
                v.join(" ")
            )))
        }
    };
    let d2 = d.clone();
    let all = blocking(move || d2.images.all()).await?;
    let mut before = None;
    let mut since = None;
    for (k, slot) in [("before", &mut before), ("since", &mut since)] {
        if let Some(name) = filters.get(k).and_then(|v| v.first()).cloned() {
            let d2 = d.clone();
            let f = blocking(move || d2.images.lookup(&name)).await?;
            *slot = Some(f.image.config.created().clone().unwrap_or_default());
        }
    }
    let created_ns = |f: &Found| {
        f.image
            .config
            .created()
            .as_deref()
            .and_then(util::parse_rfc3339)
            .unwrap_or(0)
    };
    let before = before.as_deref().and_then(util::parse_rfc3339);
    let since = since.as_deref().and_then(util::parse_rfc3339);
    let mut rows: Vec<(i128, serde_json::Value)> = Vec::new();
    for f in all {
        let c = created_ns(&f);
        if before.is_some_and(|b| c >= b) || since.is_some_and(|s| c <= s) {
            continue;
        }
        let labels = labels_of(&f);
        if let Some(want) = filters.get("label") {
            if !labels_match(want, &labels) {
                continue;
            }
        }
        let mut keys = f.keys.clone();
        if let Some(patterns) = filters.get("reference") {
            let mut kept = Vec::new();
            for k in keys {
                let mut hit = false;
                for p in patterns {
                    if reference_matches(p, &k)? {
                        hit = true;
                        break;
                    }
                }
                if hit {
                    kept.push(k);
                }
            }
            keys = kept;
        }
        let shown = Found {
            keys: keys.clone(),
            ..f.clone()
        };
        let (mut repo_tags, mut repo_digests) = (tags(&shown), digests(&shown));
        if keys.is_empty() {
            if dangling_only == Some(false) || filters.contains_key("reference") {
                continue;
            }
            repo_tags = vec!["<none>:<none>".into()];
            repo_digests = vec!["<none>@<none>".into()];
        } else if dangling_only == Some(true) && !tags(&shown).is_empty() {
            continue;
        }
        rows.push((
            c,
            json!({
                "Id": f.id(),
                "ParentId": "",
                "RepoTags": repo_tags,
                "RepoDigests": repo_digests,
                "Created": created_secs(&f),
                "Size": size(&f),
                "SharedSize": -1,
                "VirtualSize": size(&f),
                "Labels": labels,
                "Containers": -1,
            }),
        ));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let out: Vec<serde_json::Value> = rows.into_iter().map(|(_, v)| v).collect();
    Ok(json(StatusCode::OK, &out))
}

fn inspect_json(f: &Found) -> serde_json::Value {
    let c = &f.image.config;
    let cc = c.config().clone().unwrap_or_default();
    json!({
        "Id": f.id(),
        "RepoTags": tags(f),
        "RepoDigests": digests(f),
        "Parent": "",
        "Comment": "",
        "Created": c.created().clone().unwrap_or_default(),
        "DockerVersion": "",
        "Author": c.author().clone().unwrap_or_default(),
        "Config": {
            "User": cc.user().clone().unwrap_or_default(),
            "Env": cc.env().clone(),
            "Cmd": cc.cmd().clone(),
            "Entrypoint": cc.entrypoint().clone(),
            "WorkingDir": cc.working_dir().clone().unwrap_or_default(),
            "Labels": cc.labels().clone(),
            "StopSignal": cc.stop_signal().clone(),
            "ExposedPorts": cc.exposed_ports().clone().map(|p| p.into_iter().map(|k| (k, json!({}))).collect::<serde_json::Map<_, _>>()),
            "Volumes": cc.volumes().clone().map(|p| p.into_iter().map(|k| (k, json!({}))).collect::<serde_json::Map<_, _>>()),
        },
        "Architecture": c.architecture().to_string(),
        "Os": c.os().to_string(),
        "Size": size(f),
        "VirtualSize": size(f),
        "GraphDriver": {"Name": "overlay2", "Data": null},
        "RootFS": {"Type": "layers", "Layers": c.rootfs().diff_ids()},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    })
}

fn split_suffix<'a>(rest: &'a str, suffix: &str) -> Option<&'a str> {
    rest.strip_suffix(suffix).filter(|n| !n.is_empty())
}

/// `GET /images/{name}/json|history|get`.
pub async fn get_dispatch(
    State(d): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Response, Error> {
    if let Some(name) = split_suffix(&rest, "/json") {
        let name = name.to_owned();
        let f = blocking(move || d.images.lookup(&name)).await?;
        return Ok(json(StatusCode::OK, &inspect_json(&f)));
    }
    if let Some(name) = split_suffix(&rest, "/history") {
        let name = name.to_owned();
        let f = blocking(move || d.images.lookup(&name)).await?;
        let hist = f.image.config.history().clone().unwrap_or_default();
        let layers = f.image.layers().unwrap_or_default();
        let mut li = layers.iter().rev();
        let mut out = Vec::new();
        let n = hist.len();
        for (i, h) in hist.iter().rev().enumerate() {
            let empty = h.empty_layer().unwrap_or(false);
            let sz = if empty {
                0
            } else {
                li.next().map(|l| l.size as i64).unwrap_or(0)
            };
            out.push(json!({
                "Id": if i == 0 { f.id() } else { "<missing>".to_owned() },
                "Created": h.created().as_deref().and_then(util::parse_rfc3339).map(|t| (t / 1_000_000_000) as i64).unwrap_or(0),
                "CreatedBy": h.created_by().clone().unwrap_or_default(),
                "Tags": if i == 0 { json!(tags(&f)) } else { json!(null) },
                "Size": sz,
                "Comment": h.comment().clone().unwrap_or_default(),
            }));
        }
        let _ = n;
        return Ok(json(StatusCode::OK, &out));
    }
    if let Some(name) = split_suffix(&rest, "/get") {
        return save(d, vec![name.to_owned()]).await;
    }
    Err(Error::NoSuchImage(rest))
}

/// `POST /images/{name}/tag?repo=&tag=`.
pub async fn post_dispatch(
    State(d): State<AppState>,
    Path(rest): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    if let Some(name) = split_suffix(&rest, "/tag") {
        let name = name.to_owned();
        let repo = q
            .get("repo")
            .ok_or_else(|| Error::BadParameter("repository name (repo) is required".into()))?
            .to_owned();
        let tag = q.get("tag").unwrap_or("latest").to_owned();
        let d2 = d.clone();
        let (id, new_name) = blocking(move || d2.images.tag(&name, &repo, &tag)).await?;
        let d2 = d.clone();
        let f = blocking(move || d2.images.lookup(&id).map(|f| (id, f)))
            .await
            .ok();
        if let Some((id, f)) = f {
            image_event(&d, &id, &new_name, "tag", Some(&f));
        }
        return Ok(StatusCode::CREATED.into_response());
    }
    Err(Error::BadParameter(format!(
        "unsupported image operation: {rest}"
    )))
}

/// `DELETE /images/{name}?force=`.
pub async fn remove(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    let force = q.flag("force");
    let gc = d.images.gc_lock();
    let _gc = gc.write_owned().await;
    let d2 = d.clone();
    let (found, out) = blocking(move || {
        let found = d2.images.lookup(&name).ok();
        let d3 = d2.clone();
        let out = d2
            .images
            .remove(&name, force, &move |id| image_user(&d3, id))?;
        Ok((found, out))
    })
    .await?;
    if let Some(f) = &found {
        record_events(&d, Some(f), &f.id(), &out);
    }
    let v: Vec<serde_json::Value> = out.into_iter().map(|(k, v)| json!({k: v})).collect();
    Ok(json(StatusCode::OK, &v))
}

/// `POST /images/load?quiet=`: a docker-archive body.
pub async fn load(State(d): State<AppState>, req: Request) -> Result<Response, Error> {
    // Spool the archive to the store's tmp dir, then load it on the blocking pool.
    let tmp = d.images.store().tmp_path("load");
    let mut file =
        std::fs::File::create(&tmp).map_err(|e| Error::internal("create a spool file", e))?;
    let mut body = req.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::BadParameter(format!("reading the body: {e}")))?;
        if let Err(e) = file.write_all(&chunk) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::internal("spool the archive", e));
        }
    }
    drop(file);
    let t2 = tmp.clone();
    let gc = d.images.gc_lock();
    let hold = gc.read_owned().await;
    let d2 = d.clone();
    let res = blocking(move || {
        let f = std::fs::File::open(&t2).map_err(|e| Error::internal("open the spool file", e))?;
        d2.images.load(f)
    })
    .await;
    drop(hold);
    let _ = std::fs::remove_file(&tmp);
    let (msgs, ids) = res?;
    for id in ids {
        let d2 = d.clone();
        let i2 = id.clone();
        let f = blocking(move || d2.images.lookup(&i2)).await.ok();
        image_event(&d, &id, &id, "load", f.as_ref());
    }
    let mut body = String::new();
    for m in msgs {
        body.push_str(&json!({"stream": format!("{m}\n")}).to_string());
        body.push('\n');
    }
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert("Content-Type", "application/json".parse().expect("header"));
    Ok(r)
}

async fn save(d: AppState, names: Vec<String>) -> Result<Response, Error> {
    let tmp = d.images.store().tmp_path("save");
    let t2 = tmp.clone();
    let res = blocking(move || {
        let mut f =
            std::fs::File::create(&t2).map_err(|e| Error::internal("create the archive", e))?;
        d.images.save(&names, &mut f)
    })
    .await;
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let data = tokio::fs::read(&tmp)
        .await
        .map_err(|e| Error::internal("read the archive", e));
    let _ = std::fs::remove_file(&tmp);
    let mut r = Response::new(Body::from(data?));
    r.headers_mut()
        .insert("Content-Type", "application/x-tar".parse().expect("header"));
    Ok(r)
}

/// `GET /images/get?names=a&names=b`.
pub async fn save_many(State(d): State<AppState>, req: Request) -> Result<Response, Error> {
    let names: Vec<String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.strip_prefix("names="))
        .map(|n| {
            super::url_decode_pairs(&format!("n={n}"))
                .remove("n")
                .unwrap_or_default()
        })
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(Error::BadParameter("no image names given".into()));
    }
    save(d, names).await
}

/// The credentials an `X-Registry-Auth` header carries: base64url (padded or not) JSON with
/// `username`/`password` or `identitytoken`, as the docker CLI sends them; `None` when the
/// header is absent or holds no credentials (`{}`, which the CLI sends when not logged in).
/// Errors: the header is not base64 or not that JSON.
fn registry_auth(headers: &axum::http::HeaderMap) -> Result<Option<(String, String)>, Error> {
    use base64::Engine as _;
    let Some(v) = headers.get("X-Registry-Auth") else {
        return Ok(None);
    };
    let raw = v.as_bytes().trim_ascii();
    if raw.is_empty() {
        return Ok(None);
    }
    let trimmed: Vec<u8> = raw.iter().copied().filter(|&b| b != b'=').collect();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&trimmed))
        .map_err(|e| Error::BadParameter(format!("X-Registry-Auth is not base64: {e}")))?;
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct AuthConfig {
        username: String,
        password: String,
        identitytoken: String,
    }
    let a: AuthConfig = serde_json::from_slice(&bytes)
        .map_err(|e| Error::BadParameter(format!("X-Registry-Auth is not auth JSON: {e}")))?;
    Ok(if !a.identitytoken.is_empty() {
        Some((
            berth_image::registry::IDENTITY_TOKEN_USER.to_owned(),
            a.identitytoken,
        ))
    } else if !a.username.is_empty() || !a.password.is_empty() {
        Some((a.username, a.password))
    } else {
        None
    })
}

/// `POST /auth` (`docker login`): the body's `username`/`password` (or `identitytoken`) are
/// checked against `serveraddress` with `GET /v2/` (see [`berth_image::registry::login`]);
/// `{"Status":"Login Succeeded"}` when the registry accepts them, 401 naming the registry and
/// its answer when it refuses, 400 for a body without credentials or server. Nothing is stored:
/// the CLI keeps the credentials and sends them with each pull (`X-Registry-Auth`).
pub async fn auth(body: Bytes) -> Result<Response, Error> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Login {
        username: String,
        password: String,
        identitytoken: String,
        serveraddress: String,
    }
    let l: Login = serde_json::from_slice(&body)
        .map_err(|e| Error::BadParameter(format!("login body: {e}")))?;
    let server = l
        .serveraddress
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let server = server.split('/').next().unwrap_or_default().to_owned();
    if server.is_empty() {
        return Err(Error::BadParameter("serveraddress is required".into()));
    }
    let creds = if !l.identitytoken.is_empty() {
        (
            berth_image::registry::IDENTITY_TOKEN_USER.to_owned(),
            l.identitytoken,
        )
    } else if !l.username.is_empty() {
        (l.username, l.password)
    } else {
        return Err(Error::BadParameter("username is required".into()));
    };
    berth_image::registry::login(&server, creds, false)
        .await
        .map_err(|e| {
            Error::Unauthorized(format!(
                "login to {server} failed: {}",
                crate::images::chain(&e)
            ))
        })?;
    Ok(json(
        StatusCode::OK,
        &json!({"Status": "Login Succeeded", "IdentityToken": ""}),
    ))
}

/// `POST /images/create?fromImage=&tag=`: pull, with docker's JSON progress stream; the
/// `X-Registry-Auth` header's credentials (see [`registry_auth`]) are used for this pull.
pub async fn create(
    State(d): State<AppState>,
    headers: axum::http::HeaderMap,
    q: Q,
) -> Result<Response, Error> {
    let auth = registry_auth(&headers)?;
    let from = q.get("fromImage").ok_or_else(|| {
        Error::BadParameter("fromImage is required (import is not supported)".into())
    })?;
    let reference = match q.get("tag") {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_owned(),
    };
    let r: berth_image::Reference = reference
        .parse()
        .map_err(|e: berth_image::reference::ReferenceError| Error::BadParameter(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let _ = tx.send(json!({"status": format!("Pulling from {}", r.repository), "id": r.tag.clone().unwrap_or_else(|| "latest".into())}));
    tokio::spawn(async move {
        // Held until the pulled image is referenced: no prune deletes its blobs meanwhile.
        let hold = d.images.gc_lock().read_owned().await;
        let key = berth_image::Reference {
            digest: if r.tag.is_some() {
                None
            } else {
                r.digest.clone()
            },
            ..r.clone()
        }
        .to_string();
        let d2 = d.clone();
        let before = blocking(move || d2.images.refs()).await.unwrap_or_default();
        let id_of = |refs: &std::collections::BTreeMap<String, berth_image::Digest>| {
            refs.get(&key)
                .and_then(|m| d.images.store().image(m).ok())
                .map(|i| i.config_digest)
        };
        let old_id = id_of(&before);
        let res = pull(d.images.store().clone(), &r, auth, tx.clone()).await;
        let d2 = d.clone();
        let b2 = before.clone();
        let kept = blocking(move || {
            d2.images.keep_replaced(&b2)?;
            d2.images.refs()
        })
        .await;
        drop(hold);
        let res = res.and_then(|digest| kept.map(|now| (digest, now)).map_err(|e| e.to_string()));
        match res {
            Ok((digest, now)) => {
                let new_id = id_of(&now);
                let _ = tx.send(json!({"status": format!("Digest: {digest}")}));
                let status = if old_id.is_some() && old_id == new_id {
                    "Image is up to date for"
                } else {
                    "Downloaded newer image for"
                };
                let _ = tx.send(json!({"status": format!("Status: {status} {}", r.familiar())}));
                let d2 = d.clone();
                let fam = r.familiar();
                let f = blocking(move || d2.images.lookup(&fam)).await.ok();
                // dockerd: `LogImageEvent(FamiliarString(ref), repoInfo.Name.Name(), "pull")`.
                image_event(&d, &r.familiar(), &r.name(), "pull", f.as_ref());
            }
            Err(e) => {
                let _ = tx.send(json!({"errorDetail": {"message": e}, "error": e}));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|v| {
            (
                Ok::<_, std::convert::Infallible>(Bytes::from(v.to_string() + "\r\n")),
                rx,
            )
        })
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert("Content-Type", "application/json".parse().expect("header"));
    Ok(resp)
}

/// Pull `r` into the daemon's store (not reopened: opening would make the data root 0700,
/// where the daemon keeps dockerd's 0710).
async fn pull(
    store: berth_image::Store,
    r: &berth_image::Reference,
    auth: Option<(String, String)>,
    tx: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
) -> Result<String, String> {
    use berth_image::registry::{LayerState, PullEvent};
    let progress = move |ev: PullEvent| {
        let v = match ev {
            PullEvent::Resolved { .. } => return,
            PullEvent::Layer(l) => {
                let id = l.digest.hex()[..12].to_owned();
                let status = match l.state {
                    LayerState::Waiting => "Waiting",
                    LayerState::Downloading => "Downloading",
                    LayerState::Verifying => "Verifying Checksum",
                    LayerState::Extracting => "Extracting",
                    LayerState::Done => "Pull complete",
                    LayerState::AlreadyExists => "Already exists",
                    _ => "Working",
                };
                // Only moving states carry numbers: the CLI draws those as bars, and skips
                // them without a terminal.
                let detail = match l.state {
                    LayerState::Downloading | LayerState::Extracting => {
                        json!({"current": l.current, "total": l.total})
                    }
                    _ => json!({}),
                };
                json!({"status": status, "id": id, "progressDetail": detail})
            }
            _ => return,
        };
        let _ = tx.send(v);
    };
    let opts = berth_image::registry::PullOptions {
        auth,
        ..Default::default()
    };
    let img = berth_image::registry::pull(&store, r, &opts, &progress)
        .await
        .map_err(|e| crate::images::chain(&e))?;
    Ok(img.manifest_digest.to_string())
}

/// The filters dockerd 20.10 accepts for `POST /images/prune`.
const PRUNE_FILTERS: &[&str] = &["dangling", "label", "label!", "until"];

/// `POST /images/prune?filters=`: the dangling images no container uses, or with
/// `dangling=false` (`docker image prune -a`) every image no container uses (running or not);
/// `label`/`label!` and `until` (an RFC 3339 time or a Unix time) narrow it; other filters are
/// a 400 as dockerd's. Then the blobs and layers no image refers to. The write side of the
/// gc lock is held throughout: no create, pull or load is between its lookup and its record.
pub async fn prune(State(d): State<AppState>, q: Q) -> Result<Response, Error> {
    let filters = q.filters()?;
    if let Some(k) = filters
        .keys()
        .find(|k| !PRUNE_FILTERS.contains(&k.as_str()))
    {
        return Err(invalid_filter(k));
    }
    let dangling_only = match filters.get("dangling").map(|v| v.as_slice()) {
        None => true,
        Some([v]) if v == "true" || v == "1" => true,
        Some([v]) if v == "false" || v == "0" => false,
        Some(v) => {
            return Err(Error::BadParameter(format!(
                "Invalid filter 'dangling=[{}]'",
                v.join(" ")
            )))
        }
    };
    let until = match filters.get("until").and_then(|v| v.first()) {
        None => None,
        Some(u) => Some(
            util::parse_rfc3339(u)
                .or_else(|| u.parse::<f64>().ok().map(|s| (s * 1e9) as i128))
                .ok_or_else(|| Error::BadParameter(format!("invalid until filter: {u:?}")))?,
        ),
    };
    let gc = d.images.gc_lock();
    let _gc = gc.write_owned().await;
    let d2 = d.clone();
    let (deleted, bytes, events) = blocking(move || {
        let mut out = Vec::new();
        let mut events = Vec::new();
        let before = d2
            .images
            .store()
            .prune()
            .map_err(|e| Error::internal("prune the image store", e))?;
        let mut bytes = before.bytes;
        for f in d2.images.all()? {
            if dangling_only && !f.dangling() {
                continue;
            }
            let created = f
                .image
                .config
                .created()
                .as_deref()
                .and_then(util::parse_rfc3339)
                .unwrap_or(0);
            if until.is_some_and(|u| created > u) {
                continue;
            }
            let labels = labels_of(&f);
            if filters
                .get("label")
                .is_some_and(|w| !labels_match(w, &labels))
                || filters.get("label!").is_some_and(|w| {
                    w.iter()
                        .any(|x| labels_match(std::slice::from_ref(x), &labels))
                })
            {
                continue;
            }
            let id = f.id();
            if image_user(&d2, &id).is_some() {
                continue;
            }
            let size_before = dir_bytes(&d2.images.store().root().join("blobs"));
            let d3 = d2.clone();
            if let Ok(r) = d2.images.remove(&id, true, &move |i| image_user(&d3, i)) {
                bytes +=
                    size_before.saturating_sub(dir_bytes(&d2.images.store().root().join("blobs")));
                events.push((f.clone(), r.clone()));
                out.extend(r);
            }
        }
        Ok((out, bytes, events))
    })
    .await?;
    for (f, r) in &events {
        record_events(&d, Some(f), &f.id(), r);
    }
    let v: Vec<serde_json::Value> = deleted.into_iter().map(|(k, v)| json!({k: v})).collect();
    Ok(json(
        StatusCode::OK,
        &json!({"ImagesDeleted": v, "SpaceReclaimed": bytes}),
    ))
}

/// The bytes of the regular files under `dir` (what a prune frees).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += dir_bytes(&e.path()),
            Ok(t) if t.is_file() => n += e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_match_as_go() {
        for (p, n, want) in [
            ("busybox", "busybox", true),
            ("b?sy*", "busybox:latest", true),
            ("*", "a/b", false),
            ("*/b", "a/b", true),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("a\\*", "a*", true),
            ("*:2", "acktag:2", true),
        ] {
            assert_eq!(path_match(p, n).unwrap(), want, "{p} {n}");
        }
        assert!(path_match("[a", "a").is_err());
        assert!(reference_matches("busybox", "docker.io/library/busybox:latest").unwrap());
        assert!(!reference_matches("bu", "docker.io/library/busybox:latest").unwrap());
    }
}
