//! `/_ping`, `/version`, `/info`, and the answers for what is not there.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::{
    SystemInfo, SystemVersion, SystemVersionComponents, SystemVersionPlatform,
};

use super::{json, AppState, API_VERSION, MIN_API_VERSION};

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `GET|HEAD /_ping`: `OK` with the version headers clients negotiate with.
pub async fn ping(method: Method) -> Response {
    let mut r = if method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from("OK"))
    };
    let h = r.headers_mut();
    h.insert(
        "Content-Type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    r
}

/// `GET /version`.
pub async fn version() -> Response {
    let v = SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: "Berth Engine".into(),
        }),
        components: Some(vec![SystemVersionComponents {
            name: "Engine".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            details: Some(
                [
                    ("ApiVersion", API_VERSION.to_owned()),
                    ("MinAPIVersion", MIN_API_VERSION.to_owned()),
                    ("GitCommit", "berthd".to_owned()),
                    ("GoVersion", "none (Rust)".to_owned()),
                    ("Os", "linux".to_owned()),
                    ("Arch", "amd64".to_owned()),
                    ("KernelVersion", kernel()),
                    ("Experimental", "false".to_owned()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            ),
        }]),
        version: Some(env!("CARGO_PKG_VERSION").into()),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some("berthd".into()),
        go_version: Some("none (Rust)".into()),
        os: Some("linux".into()),
        arch: Some("amd64".into()),
        kernel_version: Some(kernel()),
        experimental: Some(false),
        build_time: None,
    };
    json(StatusCode::OK, &v)
}

/// `GET /info`.
pub async fn info(State(d): State<AppState>) -> Response {
    let all = d.all();
    let states: Vec<_> = all.iter().map(|e| e.record().state).collect();
    let running = states.iter().filter(|s| s.running).count() as i64;
    let paused = states
        .iter()
        .filter(|s| s.running && s.status == "paused")
        .count() as i64;
    let images = tokio::task::spawn_blocking({
        let d = d.clone();
        move || d.images.all().map(|v| v.len()).unwrap_or(0)
    })
    .await
    .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let info = SystemInfo {
        id: Some("berthd".into()),
        containers: Some(all.len() as i64),
        // As dockerd: running counts paused ones out.
        containers_running: Some(running - paused),
        containers_paused: Some(paused),
        containers_stopped: Some(all.len() as i64 - running),
        images: Some(images as i64),
        driver: Some("overlay2".into()),
        docker_root_dir: Some(d.paths.data_root.display().to_string()),
        logging_driver: Some("json-file".into()),
        cgroup_driver: Some(bollard_stubs::models::SystemInfoCgroupDriverEnum::CGROUPFS),
        kernel_version: Some(kernel()),
        operating_system: Some("Berth".into()),
        os_type: Some("linux".into()),
        architecture: Some("x86_64".into()),
        ncpu: Some(
            std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
        ),
        mem_total: Some(mem),
        name: nix::unistd::gethostname()
            .ok()
            .map(|h| h.to_string_lossy().into_owned()),
        server_version: Some(env!("CARGO_PKG_VERSION").into()),
        live_restore_enabled: Some(true),
        // Never part of a swarm: dockerd's answer when it is not (scripts test it).
        swarm: Some(bollard_stubs::models::SwarmInfo {
            node_id: Some(String::new()),
            node_addr: Some(String::new()),
            local_node_state: Some(bollard_stubs::models::LocalNodeState::INACTIVE),
            control_available: Some(false),
            error: Some(String::new()),
            ..Default::default()
        }),
        ..Default::default()
    };
    json(StatusCode::OK, &info)
}

/// Unknown endpoints: docker's 404 shape.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    let msg = format!("page not found: {method} {}", uri.path());
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"message": msg})),
    )
        .into_response()
}

/// Endpoints berthd has not implemented yet.
pub async fn not_implemented(uri: Uri) -> Response {
    let msg = format!("{} is not implemented by berthd", uri.path());
    (
        StatusCode::NOT_IMPLEMENTED,
        axum::Json(serde_json::json!({"message": msg})),
    )
        .into_response()
}

/// `GET /events?filters=&since=&until=`: a stream of JSON events until `until` or the
/// client goes away (events before the request are not kept).
pub async fn events(
    State(d): State<AppState>,
    q: super::Q,
) -> Result<Response, crate::error::Error> {
    let filters = q.filters()?;
    let until = q.time("until")?;
    let since = q.time("since")?;
    // Subscribe before reading the history, so that nothing falls between them (an event
    // in both is skipped by its time).
    let rx = d.events.subscribe();
    let mut past: std::collections::VecDeque<serde_json::Value> = match since {
        Some(s) => d
            .event_log
            .lock()
            .expect("event log lock")
            .iter()
            .filter(|e| e["timeNano"].as_i64().is_some_and(|t| t as i128 >= s))
            .filter(|e| {
                until.is_none_or(|u| e["timeNano"].as_i64().is_some_and(|t| (t as i128) < u))
            })
            .cloned()
            .collect(),
        None => Default::default(),
    };
    let last_past = past
        .back()
        .and_then(|e| e["timeNano"].as_i64())
        .unwrap_or(i64::MIN);
    let keep = move |ev: &serde_json::Value| {
        filters.iter().all(|(k, vals)| {
            let field = match k.as_str() {
                "type" => ev["Type"].as_str().map(str::to_owned),
                "event" => ev["Action"].as_str().map(str::to_owned),
                "container" => {
                    let id = ev["id"].as_str().unwrap_or("");
                    let name = ev["Actor"]["Attributes"]["name"].as_str().unwrap_or("");
                    return vals.iter().any(|v| id.starts_with(v.as_str()) || name == v);
                }
                "label" => {
                    let attrs = &ev["Actor"]["Attributes"];
                    return vals.iter().all(|v| match v.split_once('=') {
                        Some((k, val)) => attrs[k].as_str() == Some(val),
                        None => !attrs[v.as_str()].is_null(),
                    });
                }
                _ => return true,
            };
            field.is_some_and(|f| vals.contains(&f))
        })
    };
    let deadline = until.map(|u| {
        let now = crate::util::now_nanos();
        tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64)
    });
    past.retain(|e| keep(e));
    let stream = futures_util::stream::unfold(
        (rx, keep, deadline, past),
        move |(mut rx, keep, deadline, mut past)| async move {
            if let Some(ev) = past.pop_front() {
                let line = axum::body::Bytes::from(ev.to_string() + "\n");
                return Some((
                    Ok::<_, std::convert::Infallible>(line),
                    (rx, keep, deadline, past),
                ));
            }
            loop {
                let next = match deadline {
                    Some(t) => match tokio::time::timeout_at(t, rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => return None,
                    },
                    None => rx.recv().await,
                };
                match next {
                    Ok(ev)
                        if keep(&ev) && ev["timeNano"].as_i64().is_some_and(|t| t > last_past) =>
                    {
                        let line = axum::body::Bytes::from(ev.to_string() + "\n");
                        return Some((
                            Ok::<_, std::convert::Infallible>(line),
                            (rx, keep, deadline, past),
                        ));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return None,
                }
            }
        },
    );
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /build/prune`: berthd has no builder, so there is no build cache; nothing is
/// deleted (dockerd with an empty cache answers the same).
pub async fn build_prune() -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({"CachesDeleted": null, "SpaceReclaimed": 0}),
    )
}

/// Bytes used by the files under `dir` (not following links, each inode once).
fn disk_usage(dir: &std::path::Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total: i64 = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
                total += m.len() as i64;
            }
        }
    }
    total
}

/// The JSON array a list handler answered with; its error, or an internal one naming `what`
/// when its body is not read or not an array.
async fn body_array(
    what: &str,
    r: Result<Response, crate::error::Error>,
) -> Result<Vec<serde_json::Value>, crate::error::Error> {
    let bytes = axum::body::to_bytes(r?.into_body(), usize::MAX)
        .await
        .map_err(|e| crate::error::Error::internal(format!("read the {what} list"), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| crate::error::Error::internal(format!("parse the {what} list"), e))
}

/// `GET /system/df`: images (as `GET /images/json` lists them, with the number of
/// containers using each), containers (as `GET /containers/json?all=1`, with the size of
/// their writable layer), volumes (with their size and the containers using them) and an
/// empty build cache, as dockerd's.
pub async fn df(State(d): State<AppState>) -> Result<Response, crate::error::Error> {
    let mut images = body_array(
        "image",
        super::images::list(State(d.clone()), super::Q::default()).await,
    )
    .await?;
    let all = super::Q([("all".to_owned(), "1".to_owned())].into_iter().collect());
    let mut containers = body_array(
        "container",
        super::containers::list(State(d.clone()), all).await,
    )
    .await?;
    let mut layers: i64 = 0;
    for img in &mut images {
        let id = img["Id"].clone();
        layers += img["Size"].as_i64().unwrap_or(0);
        img["Containers"] =
            serde_json::json!(containers.iter().filter(|c| c["ImageID"] == id).count());
    }
    let d2 = d.clone();
    let (sizes, volumes) = tokio::task::spawn_blocking(move || {
        let sizes: Vec<(String, i64)> = d2
            .all()
            .iter()
            .map(|e| {
                let size = disk_usage(&d2.paths.overlay(&e.id).join("upper"));
                (e.id.clone(), size)
            })
            .collect();
        let volumes: Vec<(serde_json::Value, i64)> = d2
            .volumes
            .list()
            .iter()
            .map(|v| {
                (
                    d2.volumes.json(v),
                    disk_usage(&d2.volumes.data_path(&v.name)),
                )
            })
            .collect();
        (sizes, volumes)
    })
    .await
    .map_err(|e| crate::error::Error::internal("disk usage", e))?;
    for c in &mut containers {
        let size = sizes
            .iter()
            .find(|(id, _)| c["Id"] == id.as_str())
            .map_or(0, |(_, size)| *size);
        c["SizeRw"] = serde_json::json!(size);
        let image_size = images
            .iter()
            .find(|i| i["Id"] == c["ImageID"])
            .and_then(|i| i["Size"].as_i64())
            .unwrap_or(0);
        c["SizeRootFs"] = serde_json::json!(size + image_size);
    }
    let volumes: Vec<serde_json::Value> = volumes
        .into_iter()
        .map(|(mut v, size)| {
            let refs = containers
                .iter()
                .filter(|c| {
                    c["Mounts"]
                        .as_array()
                        .is_some_and(|ms| ms.iter().any(|m| m["Name"] == v["Name"]))
                })
                .count();
            v["UsageData"] = serde_json::json!({"Size": size, "RefCount": refs});
            v
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "LayersSize": layers,
            "Images": images,
            "Containers": containers,
            "Volumes": volumes,
            "BuildCache": [],
        }),
    ))
}
