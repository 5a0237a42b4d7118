//! `/volumes`: create, list, inspect, remove, prune (local driver).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{json, json_body, AppState, Q};
use crate::error::Error;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    #[serde(default)]
    driver_opts: Option<HashMap<String, String>>,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

/// `POST /volumes/create`.
pub async fn create(State(d): State<AppState>, body: Bytes) -> Result<Response, Error> {
    let b: CreateBody = json_body(&body)?;
    if let Some(drv) = b
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "local")
    {
        return Err(Error::BadParameter(format!(
            "volume driver {drv:?} is not supported (local)"
        )));
    }
    let existed = b.name.as_deref().is_some_and(|n| d.volumes.get(n).is_ok());
    let v = d.volumes.create(
        b.name.as_deref(),
        b.labels.unwrap_or_default(),
        b.driver_opts.unwrap_or_default(),
    )?;
    if !existed {
        d.volume_event(&v.name, "create");
    }
    Ok(json(StatusCode::CREATED, &d.volumes.json(&v)))
}

/// `GET /volumes?filters=` (name, label, dangling).
pub async fn list(State(d): State<AppState>, q: Q) -> Result<Response, Error> {
    let filters = q.filters()?;
    if let Some(k) = filters
        .keys()
        .find(|k| !["name", "label", "dangling", "driver"].contains(&k.as_str()))
    {
        return Err(crate::api::images::invalid_filter(k));
    }
    let mut out = Vec::new();
    for v in d.volumes.list() {
        let ok = filters.iter().all(|(k, vals)| match k.as_str() {
            "name" => vals.iter().any(|x| v.name.contains(x.as_str())),
            "label" => vals.iter().all(|x| match x.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|y| y == val),
                None => v.labels.contains_key(x.as_str()),
            }),
            "dangling" => {
                let dangling = d.volume_users(&v.name).is_empty();
                vals.iter().any(|x| (x == "true" || x == "1") == dangling)
            }
            // "driver"; the others were refused above.
            _ => vals.iter().any(|x| x == "local"),
        });
        if ok {
            out.push(d.volumes.json(&v));
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({"Volumes": out, "Warnings": []}),
    ))
}

/// `GET /volumes/{name}`.
pub async fn inspect(
    State(d): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let v = d.volumes.get(&name)?;
    Ok(json(StatusCode::OK, &d.volumes.json(&v)))
}

/// `DELETE /volumes/{name}?force=`.
pub async fn remove(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    d.volume_remove(&name, q.flag("force"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /volumes/prune`: remove the volumes no container uses.
pub async fn prune(State(d): State<AppState>, q: Q) -> Result<Response, Error> {
    let filters = q.filters()?;
    if let Some(k) = filters
        .keys()
        .find(|k| !["label", "label!", "all"].contains(&k.as_str()))
    {
        return Err(crate::api::images::invalid_filter(k));
    }
    // docker 23+ prunes only anonymous volumes unless all=true.
    let all = filters
        .get("all")
        .is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
    let labels_ok = |v: &crate::volumes::Volume| {
        let has = |x: &String| match x.split_once('=') {
            Some((k, val)) => v.labels.get(k).is_some_and(|y| y == val),
            None => v.labels.contains_key(x.as_str()),
        };
        filters.get("label").is_none_or(|w| w.iter().all(has))
            && filters.get("label!").is_none_or(|w| !w.iter().any(has))
    };
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for v in d.volumes.list() {
        let anonymous = v.name.len() == 64 && v.name.bytes().all(|b| b.is_ascii_hexdigit());
        // In use (by any container, running or not): never pruned; volume_remove checks again.
        if !(all || anonymous) || !labels_ok(&v) || !d.volume_users(&v.name).is_empty() {
            continue;
        }
        let size = tree_bytes(&d.volumes.data_path(&v.name));
        if d.volume_remove(&v.name, false).is_ok() {
            reclaimed += size;
            deleted.push(v.name);
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}

/// The bytes of the regular files under `dir`, symlinks not followed.
fn tree_bytes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => n += tree_bytes(&e.path()),
            Ok(t) if t.is_file() => n += e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => {}
        }
    }
    n
}
