//! `/images/...`: list, load, save, inspect, history, tag, remove, create (pull).

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;

use super::{json, AppState, Q};
use crate::error::Error;
use crate::images::{familiar, Found};
use crate::util;

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

/// `GET /images/json`.
pub async fn list(State(d): State<AppState>, q: Q) -> Result<Response, Error> {
    let filters = q.filters()?;
    let all = blocking(move || d.images.all()).await?;
    let mut out = Vec::new();
    for f in all {
        if let Some(refs) = filters.get("reference") {
            let t = tags(&f);
            if !refs.iter().any(|r| {
                t.iter()
                    .any(|x| x == r || x.split(':').next() == Some(r.as_str()))
            }) {
                continue;
            }
        }
        let labels = f
            .image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.labels().clone())
            .unwrap_or_default();
        out.push(json!({
            "Id": f.id(),
            "ParentId": "",
            "RepoTags": tags(&f),
            "RepoDigests": digests(&f),
            "Created": created_secs(&f),
            "Size": size(&f),
            "SharedSize": -1,
            "VirtualSize": size(&f),
            "Labels": labels,
            "Containers": -1,
        }));
    }
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
        blocking(move || d.images.tag(&name, &repo, &tag)).await?;
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
    let out = blocking(move || {
        let d2 = d.clone();
        d.images.remove(&name, force, &move |id| d2.image_user(id))
    })
    .await?;
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
    let res = blocking(move || {
        let f = std::fs::File::open(&t2).map_err(|e| Error::internal("open the spool file", e))?;
        d.images.load(f)
    })
    .await;
    let _ = std::fs::remove_file(&tmp);
    let msgs = res?;
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
    let store_root = d.paths.data_root.clone();
    tokio::spawn(async move {
        let res = pull(&store_root, &r, auth, tx.clone()).await;
        match res {
            Ok(digest) => {
                let _ = tx.send(json!({"status": format!("Digest: {digest}")}));
                let _ = tx.send(json!({"status": format!("Status: Downloaded newer image for {}", r.familiar())}));
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

async fn pull(
    root: &std::path::Path,
    r: &berth_image::Reference,
    auth: Option<(String, String)>,
    tx: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
) -> Result<String, String> {
    use berth_image::registry::{LayerState, PullEvent};
    let root = root.to_owned();
    let store = tokio::task::spawn_blocking(move || berth_image::Store::open(&root))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| crate::images::chain(&e))?;
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

/// `POST /images/prune?filters=`: with `dangling=false` (`docker image prune -a`) every image
/// no container uses; always the blobs and layers no image refers to.
pub async fn prune(State(d): State<AppState>, q: Q) -> Result<Response, Error> {
    let filters = q.filters()?;
    let all = filters
        .get("dangling")
        .is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
    let out = blocking(move || {
        let mut out = Vec::new();
        if all {
            for f in d.images.all()? {
                let id = f.id();
                if d.image_user(&id).is_some() {
                    continue;
                }
                let d2 = d.clone();
                if let Ok(r) = d.images.remove(&id, true, &move |i| d2.image_user(i)) {
                    out.extend(r);
                }
            }
        }
        let stats = d
            .images
            .store()
            .prune()
            .map_err(|e| Error::internal("prune the image store", e))?;
        Ok((out, stats.bytes))
    })
    .await?;
    let v: Vec<serde_json::Value> = out.0.into_iter().map(|(k, v)| json!({k: v})).collect();
    Ok(json(
        StatusCode::OK,
        &json!({"ImagesDeleted": v, "SpaceReclaimed": out.1}),
    ))
}
