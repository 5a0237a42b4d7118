//! `/containers/...`: create, list, inspect, start, stop, restart, kill, wait, logs, attach,
//! resize, remove.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bollard_stubs::models::ContainerCreateBody;
use serde_json::json;

use super::{json, json_body, ApiVersion, AppState, Q};
use crate::error::Error;
use crate::monitor::Request as MonReq;
use crate::store::Record;
use crate::util;

/// `POST /containers/create?name=`.
pub async fn create(State(d): State<AppState>, q: Q, body: Bytes) -> Result<Response, Error> {
    let raw: serde_json::Value = json_body(&body)?;
    restart_policy(&raw["HostConfig"]["RestartPolicy"])?;
    let body: ContainerCreateBody = json_body(&body)?;
    let id = d.create(q.get("name").map(str::to_owned), body).await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"Id": id, "Warnings": []}),
    ))
}

/// Check `HostConfig.RestartPolicy` before it is parsed (an unknown name would be a serde
/// error), with dockerd's messages.
fn restart_policy(p: &serde_json::Value) -> Result<(), Error> {
    let name = p["Name"].as_str().unwrap_or("");
    let retries = p["MaximumRetryCount"].as_i64().unwrap_or(0);
    match name {
        "" => Ok(()),
        "no" | "always" | "unless-stopped" if retries != 0 => Err(Error::BadParameter(format!(
            "maximum retry count cannot be used with restart policy '{name}'"
        ))),
        "no" | "always" | "unless-stopped" => Ok(()),
        "on-failure" if retries < 0 => Err(Error::BadParameter(
            "maximum retry count cannot be negative".into(),
        )),
        "on-failure" => Ok(()),
        _ => Err(Error::BadParameter(format!(
            "invalid restart policy '{name}'"
        ))),
    }
}

/// "Up 3 seconds", "2 minutes", as docker's `units.HumanDuration`.
fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn secs_since(t: &str) -> i64 {
    util::parse_rfc3339(t)
        .map(|t| ((util::now_nanos() - t) / 1_000_000_000) as i64)
        .unwrap_or(0)
}

fn status_text(r: &Record) -> String {
    let s = &r.state;
    let health = s
        .health
        .as_ref()
        .and_then(|h| h["Status"].as_str())
        .map(|h| {
            if h == "starting" {
                " (health: starting)".to_owned()
            } else {
                format!(" ({h})")
            }
        })
        .unwrap_or_default();
    if s.running && s.status == "paused" {
        format!("Up {} (Paused)", human(secs_since(&s.started_at)))
    } else if s.running {
        format!("Up {}{health}", human(secs_since(&s.started_at)))
    } else if s.status == "created" {
        "Created".into()
    } else if s.status == "restarting" {
        format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            human(secs_since(&s.finished_at))
        )
    } else {
        format!(
            "Exited ({}) {} ago",
            s.exit_code,
            human(secs_since(&s.finished_at))
        )
    }
}

fn command_line(r: &Record) -> String {
    let mut v = vec![r.path.clone()];
    v.extend(r.args.iter().cloned());
    v.join(" ")
}

fn matches(r: &Record, filters: &std::collections::HashMap<String, Vec<String>>) -> bool {
    for (k, vals) in filters {
        let ok = match k.as_str() {
            "status" => vals.iter().any(|v| v == &r.state.status),
            "id" => vals.iter().any(|v| r.id.starts_with(v.as_str())),
            "name" => vals
                .iter()
                .any(|v| r.name.contains(v.trim_start_matches('/'))),
            "label" => vals.iter().all(|v| {
                let labels = r.config.labels.clone().unwrap_or_default();
                match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                    None => labels.contains_key(v.as_str()),
                }
            }),
            "ancestor" => vals.iter().any(|v| {
                r.config.image.as_deref() == Some(v.as_str())
                    || r.image
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
            }),
            "health" => {
                let h = r
                    .state
                    .health
                    .as_ref()
                    .and_then(|h| h["Status"].as_str())
                    .unwrap_or("none");
                vals.iter().any(|v| v == h)
            }
            "label!" => vals.iter().all(|v| {
                let labels = r.config.labels.clone().unwrap_or_default();
                match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_none_or(|x| x != val),
                    None => !labels.contains_key(v.as_str()),
                }
            }),
            "until" => vals.iter().all(|v| {
                let created = util::parse_rfc3339(&r.created).unwrap_or(0);
                until_nanos(v).is_some_and(|u| created < u)
            }),
            // The others are matched by `ListFilter`.
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The container states docker knows (`status` filter values).
const STATES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

/// The filters `GET /containers/json` and `POST /containers/prune` accept, as dockerd's
/// `acceptedPsFilterTags` (`isolation` is accepted and matches every container: berthd has
/// one isolation, the default).
const PS_FILTERS: &[&str] = &[
    "ancestor",
    "before",
    "expose",
    "exited",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
];

/// The networks a container is on, by name: `bridge` for the default network (as dockerd
/// names it), `host`, `none`; none for `container:NAME`.
fn network_names(r: &Record) -> Vec<String> {
    match r.host_config.network_mode.as_deref().unwrap_or("default") {
        "default" | "bridge" | "" => vec!["bridge".into()],
        m if m.starts_with("container:") => Vec::new(),
        m => vec![m.to_owned()],
    }
}

/// The container's ports as docker lists them: (private port, public port, protocol), the
/// published ones and the exposed ones not published (public port `None`).
fn ports(r: &Record) -> Vec<(u16, Option<u16>, String)> {
    let mut v: Vec<(u16, Option<u16>, String)> = crate::spec::published(&r.host_config)
        .unwrap_or_default()
        .into_iter()
        .map(|(h, c, p)| (c, Some(h), p))
        .collect();
    for e in r.config.exposed_ports.iter().flatten() {
        let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        if let Ok(c) = port.parse::<u16>() {
            if !v.iter().any(|(pc, _, pp)| *pc == c && pp == proto) {
                v.push((c, None, proto.to_owned()));
            }
        }
    }
    v
}

/// `PORT[/PROTO]` or `START-END[/PROTO]` of the `publish`/`expose` filters, as
/// (port, protocol) pairs; errors as dockerd's `portOp`.
fn port_filter(key: &str, value: &str) -> Result<Vec<(u16, String)>, Error> {
    if value.contains(':') {
        return Err(Error::BadParameter(format!(
            "filter for '{key}' should not contain ':': {value}"
        )));
    }
    let (port, proto) = value.split_once('/').unwrap_or((value, "tcp"));
    let bad = || {
        Error::BadParameter(format!(
            "error while looking up for {key} {port}: invalid port"
        ))
    };
    let (start, end) = match port.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = port.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end)
        .map(|p| (p, proto.to_ascii_lowercase()))
        .collect())
}

/// The filters of a container listing, checked and resolved once (dockerd's `foldFilter`):
/// unknown filters and malformed values are a 400, `since`/`before` name containers (404).
struct ListFilter {
    filters: std::collections::HashMap<String, Vec<String>>,
    exited: Vec<i32>,
    /// Listing starts after this container (newest first: older ones than it only).
    before: Option<String>,
    /// Listing stops at this container (only newer ones).
    since: Option<String>,
    /// `is-task`: berthd runs no swarm tasks, so `true` matches nothing.
    is_task: Option<bool>,
    publish: Vec<(u16, String)>,
    expose: Vec<(u16, String)>,
}

impl ListFilter {
    fn new(
        d: &crate::daemon::Daemon,
        filters: std::collections::HashMap<String, Vec<String>>,
    ) -> Result<Self, Error> {
        for k in filters.keys() {
            if !PS_FILTERS.contains(&k.as_str()) {
                return Err(Error::BadParameter(format!("Invalid filter '{k}'")));
            }
        }
        let vals = |k: &str| filters.get(k).cloned().unwrap_or_default();
        let exited = vals("exited")
            .iter()
            .map(|v| {
                v.parse::<i32>()
                    .map_err(|_| Error::BadParameter(format!("Invalid filter 'exited={v}'")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for v in vals("status") {
            if !STATES.contains(&v.as_str()) {
                return Err(Error::BadParameter(format!("Invalid filter 'status={v}'")));
            }
        }
        for v in vals("health") {
            if !["starting", "healthy", "unhealthy", "none"].contains(&v.as_str()) {
                return Err(Error::BadParameter(format!(
                    "Unrecognised filter value for health: {v}"
                )));
            }
        }
        let is_task = match filters.get("is-task").map(Vec::as_slice) {
            None => None,
            Some([v]) if v == "true" => Some(true),
            Some([v]) if v == "false" => Some(false),
            Some(v) => {
                return Err(Error::BadParameter(format!(
                    "Invalid filter 'is-task=[{}]'",
                    v.join(" ")
                )))
            }
        };
        let one = |k: &str| -> Result<Option<String>, Error> {
            let mut last = None;
            for v in vals(k) {
                last = Some(d.get(&v)?.id.clone());
            }
            Ok(last)
        };
        let ports = |k: &str| -> Result<Vec<(u16, String)>, Error> {
            let mut out = Vec::new();
            for v in vals(k) {
                out.extend(port_filter(k, &v)?);
            }
            Ok(out)
        };
        Ok(ListFilter {
            exited,
            before: one("before")?,
            since: one("since")?,
            is_task,
            publish: ports("publish")?,
            expose: ports("expose")?,
            filters,
        })
    }

    /// Whether `r` matches every filter but `since`/`before` (which depend on the order).
    fn matches(&self, d: &crate::daemon::Daemon, r: &Record) -> bool {
        if self.is_task == Some(true) {
            return false;
        }
        let exited_with = |codes: &[i32]| {
            r.state.status == "exited"
                && r.state.started_at != util::ZERO_TIME
                && codes.contains(&r.state.exit_code)
        };
        if !self.exited.is_empty() && !exited_with(&self.exited) {
            return false;
        }
        if !matches(r, &self.filters) {
            return false;
        }
        if let Some(vals) = self.filters.get("volume") {
            let ms = mounts(d, r);
            let hit = vals.iter().any(|v| {
                ms.iter().any(|m| {
                    m["Destination"] == v.as_str()
                        || m["Name"] == v.as_str()
                        || (m["Name"].is_null() && m["Source"] == v.as_str())
                })
            });
            if !hit {
                return false;
            }
        }
        if let Some(vals) = self.filters.get("network") {
            let nets = network_names(r);
            if !vals
                .iter()
                .any(|v| nets.iter().any(|n| n.starts_with(v.as_str())))
            {
                return false;
            }
        }
        if !self.publish.is_empty() || !self.expose.is_empty() {
            let hit = ports(r).into_iter().any(|(c, h, p)| {
                h.is_some_and(|h| self.publish.contains(&(h, p.clone())))
                    || self.expose.contains(&(c, p))
            });
            if !hit {
                return false;
            }
        }
        true
    }
}

/// `GET /containers/json?all=&filters=&limit=`: newest first, as dockerd's list: stopped
/// containers only with `all`, a `status` filter or a `limit`; `before`/`since` skip the
/// containers up to and including the one named, or stop there.
pub async fn list(State(d): State<AppState>, q: Q) -> Result<Response, Error> {
    let limit = q.int("limit")?.filter(|l| *l > 0);
    let filters = q.filters()?;
    let all = q.flag("all") || filters.contains_key("status") || limit.is_some();
    let f = ListFilter::new(&d, filters)?;
    let mut before = f.before.clone();
    let mut out = Vec::new();
    for e in d.all() {
        let r = e.record();
        if let Some(b) = &before {
            if *b == r.id {
                before = None;
            }
            continue;
        }
        if f.since.as_deref() == Some(r.id.as_str()) {
            break;
        }
        // A restarting container counts as running (dockerd's State.Running).
        if !all && !r.state.running && r.state.status != "restarting" {
            continue;
        }
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
        if !f.matches(&d, &r) {
            continue;
        }
        let created = util::parse_rfc3339(&r.created)
            .map(|t| (t / 1_000_000_000) as i64)
            .unwrap_or(0);
        let nets: serde_json::Map<String, serde_json::Value> = network_names(&r)
            .into_iter()
            .map(|n| (n.clone(), json!({"NetworkID": n})))
            .collect();
        out.push(json!({
            "Id": r.id,
            "Names": [format!("/{}", r.name)],
            "Image": r.config.image,
            "ImageID": r.image,
            "Command": command_line(&r),
            "Created": created,
            "Ports": ports(&r).into_iter()
                .map(|(c, h, p)| match h {
                    Some(h) => json!({"IP": "0.0.0.0", "PrivatePort": c, "PublicPort": h, "Type": p}),
                    None => json!({"PrivatePort": c, "Type": p}),
                })
                .collect::<Vec<_>>(),
            "Labels": r.config.labels.clone().unwrap_or_default(),
            "State": r.state.status,
            "Status": status_text(&r),
            "HostConfig": {"NetworkMode": r.host_config.network_mode.clone().unwrap_or_else(|| "default".into())},
            "NetworkSettings": {"Networks": nets},
            "Mounts": mounts(&d, &r),
        }));
    }
    Ok(json(StatusCode::OK, &out))
}

fn mounts(d: &crate::daemon::Daemon, r: &Record) -> Vec<serde_json::Value> {
    use crate::spec::MountSpec;
    let mut v = Vec::new();
    for m in crate::spec::all_mounts(r).unwrap_or_default() {
        v.push(match m {
            MountSpec::Bind { src, dst, ro } => {
                json!({"Type": "bind", "Source": src, "Destination": dst,
                "Mode": if ro { "ro" } else { "" }, "RW": !ro, "Propagation": "rprivate"})
            }
            MountSpec::Volume { name, dst, ro } => json!({"Type": "volume", "Name": name,
                "Source": d.volumes.data_path(&name), "Destination": dst, "Driver": "local",
                "Mode": if ro { "ro" } else { "z" }, "RW": !ro, "Propagation": ""}),
            MountSpec::Tmpfs { dst, .. } => {
                json!({"Type": "tmpfs", "Source": "", "Destination": dst,
                "Mode": "", "RW": true, "Propagation": ""})
            }
        });
    }
    v
}

fn network_settings(r: &Record) -> serde_json::Value {
    match &r.state.network {
        Some(a) => {
            let ep = json!({"IPAddress": a.ip, "IPPrefixLen": a.prefix, "Gateway": a.gateway,
                            "MacAddress": a.mac, "NetworkID": "berth"});
            let mut ports = serde_json::Map::new();
            for (h, c, p) in crate::spec::published(&r.host_config).unwrap_or_default() {
                ports.insert(
                    format!("{c}/{p}"),
                    json!([{"HostIp": "0.0.0.0", "HostPort": h.to_string()}]),
                );
            }
            json!({"Networks": {"bridge": ep}, "Ports": ports, "SandboxKey": "",
                   "IPAddress": a.ip, "IPPrefixLen": a.prefix, "Gateway": a.gateway,
                   "MacAddress": a.mac})
        }
        None => {
            let nets: serde_json::Map<String, serde_json::Value> = network_names(r)
                .into_iter()
                .map(|n| (n.clone(), json!({"NetworkID": n})))
                .collect();
            json!({"Networks": nets, "Ports": {}, "SandboxKey": "", "IPAddress": "",
                   "Gateway": "", "MacAddress": ""})
        }
    }
}

/// The container's Config as dockerd shows it: every field docker-py and templates read is
/// there (`User`, `Entrypoint`, `Hostname`, `Volumes`, `OnBuild`, ...), null or empty when
/// unset, as Go's encoder writes them.
fn config_json(r: &Record) -> serde_json::Value {
    let mut v = serde_json::to_value(&r.config).unwrap_or_else(|_| json!({}));
    let defaults = [
        ("Hostname", json!(crate::spec::hostname(r))),
        ("Domainname", json!("")),
        ("User", json!("")),
        ("AttachStdin", json!(false)),
        ("AttachStdout", json!(false)),
        ("AttachStderr", json!(false)),
        ("Tty", json!(false)),
        ("OpenStdin", json!(false)),
        ("StdinOnce", json!(false)),
        ("Env", json!([])),
        ("Cmd", json!(null)),
        ("Image", json!("")),
        ("Volumes", json!(null)),
        ("WorkingDir", json!("")),
        ("Entrypoint", json!(null)),
        ("OnBuild", json!(null)),
        ("Labels", json!({})),
    ];
    if let Some(o) = v.as_object_mut() {
        for (k, d) in defaults {
            o.entry(k).or_insert(d);
        }
    }
    v
}

/// `GET /containers/{id}/json`.
pub async fn inspect(
    State(d): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let e = d.get(&name)?;
    let r = e.record();
    let dir = d.paths.container_dir(&r.id);
    let s = &r.state;
    let v = json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": s.status,
            "Running": s.running || s.status == "restarting",
            "Paused": s.status == "paused",
            "Restarting": s.status == "restarting",
            "OOMKilled": s.oom_killed,
            "Dead": false,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at,
            "FinishedAt": s.finished_at,
            "Health": s.health,
        },
        "Image": r.image,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": if crate::spec::logs_kept(&r.host_config) {
            d.paths.log(&r.id).display().to_string()
        } else {
            String::new()
        },
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": Some(d.exec_ids(&r.id)).filter(|v| !v.is_empty()),
        "HostConfig": r.host_config,
        "GraphDriver": {"Name": "overlay2", "Data": {"MergedDir": d.paths.bundle(&r.id).join("rootfs"), "UpperDir": d.paths.overlay(&r.id).join("upper"), "WorkDir": d.paths.overlay(&r.id).join("work")}},
        "Mounts": mounts(&d, &r),
        "Config": config_json(&r),
        "NetworkSettings": network_settings(&r),
    });
    Ok(json(StatusCode::OK, &v))
}

/// `POST /containers/{id}/start`.
pub async fn start(State(d): State<AppState>, Path(name): Path<String>) -> Result<Response, Error> {
    d.start(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/stop?t=&signal=`.
pub async fn stop(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    d.stop(&name, q.int("t")?, q.get("signal")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/restart?t=`.
pub async fn restart(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    d.restart(&name, q.int("t")?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/kill?signal=`.
pub async fn kill(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    d.kill(&name, q.get("signal")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /containers/{id}?force=&v=`.
pub async fn remove(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    d.remove_with(&name, q.flag("force"), q.flag("v")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/wait?condition=not-running|next-exit|removed`: the headers go out
/// at once, the body when the condition is met.
pub async fn wait(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    let e = d.get(&name)?;
    let condition = q.get("condition").unwrap_or("not-running").to_owned();
    if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(Error::BadParameter(format!(
            "invalid condition: {condition:?}"
        )));
    }
    let mut rx = e.watch.subscribe();
    let start = rx.borrow().clone();
    drop(e);
    let fut = async move {
        let res = match condition.as_str() {
            "next-exit" => rx
                .wait_for(|s| s.exits > start.exits || s.removed)
                .await
                .map(|s| s.clone()),
            "removed" => rx.wait_for(|s| s.removed).await.map(|s| s.clone()),
            _ => rx.wait_for(|s| !s.running).await.map(|s| s.clone()),
        };
        // A removed container's sender is gone: its last state is the answer.
        let s = res.unwrap_or_else(|_| rx.borrow().clone());
        let body = json!({"StatusCode": s.exit_code, "Error": null}).to_string() + "\n";
        Ok::<_, std::convert::Infallible>(Bytes::from(body))
    };
    let body = Body::from_stream(futures_util::stream::once(fut));
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("Content-Type", "application/json".parse().expect("header"));
    Ok(r)
}

/// `GET /containers/{id}/logs`.
pub async fn logs(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    let e = d.get(&name)?;
    let r = e.record();
    if !crate::spec::logs_kept(&r.host_config) {
        return Ok(json(
            StatusCode::NOT_IMPLEMENTED,
            &json!({"message": "configured logging driver does not support reading"}),
        ));
    }
    // `0` is no bound, as the docker CLI sends it when none is given.
    let time = |k| match q.get(k) {
        Some("0") => Ok(None),
        _ => q.time(k),
    };
    let opts = crate::logs::Options {
        follow: q.flag("follow"),
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
        timestamps: q.flag("timestamps"),
        // As dockerd: a count, else (`all`, negative, not a number) everything.
        tail: q.get("tail").and_then(|t| t.parse::<usize>().ok()),
        since: time("since")?,
        until: time("until")?,
    };
    if !opts.stdout && !opts.stderr {
        return Err(Error::BadParameter(
            "Bad parameters: you must choose at least one stream".into(),
        ));
    }
    let tty = r.config.tty.unwrap_or(false);
    let watcher = opts.follow.then(crate::logs::Watcher::shared).flatten();
    let rx = crate::logs::stream(
        d.paths.log(&r.id),
        r.log_rotation,
        tty,
        opts,
        e.watch.subscribe(),
        watcher,
    );
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    resp.headers_mut()
        .insert("Content-Type", ct.parse().expect("header"));
    Ok(resp)
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=`: hijacked.
pub async fn attach(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
    mut req: Request,
) -> Result<Response, Error> {
    let e = d.get(&name)?;
    let r = e.record();
    let tty = r.config.tty.unwrap_or(false);
    let version = req
        .extensions()
        .get::<ApiVersion>()
        .copied()
        .unwrap_or(ApiVersion(1, 50));
    let mreq = MonReq::Attach {
        stdin: q.flag("stdin"),
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
    };
    let detach = if tty && q.flag("stdin") {
        let spec = q.get("detachKeys").unwrap_or("ctrl-p,ctrl-q");
        Some(
            super::detach_keys(spec)
                .ok_or_else(|| Error::BadParameter(format!("invalid detach keys: {spec:?}")))?,
        )
    } else {
        None
    };
    let conn = d.attach(&e, mreq).await?;
    let (resp, on) = super::hijack(&mut req, !tty && version >= ApiVersion(1, 42));
    let watch = e.watch.subscribe();
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let client = hyper_util::rt::TokioIo::new(up);
        match conn.await {
            Ok(m) => super::relay(client, m, detach, async {}).await,
            Err(_) => {
                // Never started, or removed: nothing to relay.
                let mut client = client;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut client).await;
            }
        }
        drop(watch);
    });
    Ok(resp)
}

/// `POST /containers/{id}/resize?h=&w=`.
pub async fn resize(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    let e = d.get(&name)?;
    let h = q.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = q.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    if !e.record().state.running {
        return Err(Error::Conflict(format!(
            "Container {} is not running",
            e.id
        )));
    }
    d.resize(&e.id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /containers/{id}/pause`.
pub async fn pause(State(d): State<AppState>, Path(name): Path<String>) -> Result<Response, Error> {
    d.pause(&name, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/unpause`.
pub async fn unpause(
    State(d): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    d.pause(&name, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/rename?name=`.
pub async fn rename(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    // A missing name is an empty one, as dockerd reads it.
    let new = q.get("name").unwrap_or_default().to_owned();
    d.rename(&name, &new).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /containers/{id}/top?ps_args=`: dockerd's (`ps -ef` by default).
pub async fn top(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    let t = d.top(&name, q.get("ps_args")).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"Titles": t.titles, "Processes": t.processes}),
    ))
}

/// Host CPU time in nanoseconds (the first line of /proc/stat, in USER_HZ ticks), docker's
/// `system_cpu_usage`.
fn system_cpu_nanos() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let l = s.lines().next()?.to_owned();
            Some(
                l.split_whitespace()
                    .skip(1)
                    .take(7)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>()
                    * 10_000_000,
            )
        })
        .unwrap_or(0)
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn cpu_json(s: Option<&berth_cgroups::Stats>, system: u64) -> serde_json::Value {
    let online = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match s {
        None => json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}}),
        Some(s) => json!({
            "cpu_usage": {
                "total_usage": s.cpu.usage.total,
                "percpu_usage": s.cpu.usage.percpu,
                "usage_in_kernelmode": s.cpu.usage.kernel,
                "usage_in_usermode": s.cpu.usage.user,
            },
            "system_cpu_usage": system,
            "online_cpus": online,
            "throttling_data": {
                "periods": s.cpu.throttling.periods,
                "throttled_periods": s.cpu.throttling.throttled_periods,
                "throttled_time": s.cpu.throttling.throttled_time,
            },
        }),
    }
}

/// One stats object; `read` is when `now` was sampled, `pre` the previous sample with its host
/// CPU time and its `read`.
fn stats_json(
    r: &Record,
    pre: Option<(&berth_cgroups::Stats, u64, String)>,
    now: Option<&berth_cgroups::Stats>,
    system: u64,
    read: &str,
) -> serde_json::Value {
    let mem = now.map(|s| {
        let limit = s.memory.usage.limit.min(host_memory());
        json!({"usage": s.memory.usage.usage, "max_usage": s.memory.usage.max,
               "failcnt": s.memory.usage.failcnt, "limit": limit, "stats": s.memory.raw})
    });
    json!({
        "read": read,
        "preread": pre.as_ref().map(|p| p.2.clone()).unwrap_or_else(|| util::ZERO_TIME.to_owned()),
        "id": r.id,
        "name": format!("/{}", r.name),
        "num_procs": 0,
        "pids_stats": now.map(|s| json!({"current": s.pids.current, "limit": s.pids.limit})).unwrap_or(json!({})),
        "cpu_stats": cpu_json(now, system),
        "precpu_stats": match &pre { Some((s, sys, _)) => cpu_json(Some(s), *sys), None => cpu_json(None, 0) },
        "memory_stats": mem.unwrap_or(json!({})),
        "blkio_stats": {},
        "storage_stats": {},
        "networks": {},
    })
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: berth-cgroups' statistics in docker's
/// shape, once (with a 200 ms earlier sample as `precpu_stats`, unless one-shot) or every
/// second (each with the previous sample as `precpu_stats`/`preread`) until the container is
/// removed or the client goes away.
pub async fn stats(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    let e = d.get(&name)?;
    let stream = q
        .get("stream")
        .is_none_or(|v| v == "1" || v == "true" || v == "True");
    let one_shot = q.flag("one-shot");
    if !stream {
        let r = e.record();
        let first = d.cgroup_stats(&e.id).await?;
        let (pre, now) = if one_shot || first.is_none() {
            (None, first)
        } else {
            let sys = system_cpu_nanos();
            let t = util::now();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            (first.map(|f| (f, sys, t)), d.cgroup_stats(&e.id).await?)
        };
        let v = stats_json(
            &r,
            pre.as_ref().map(|(s, sys, t)| (s, *sys, t.clone())),
            now.as_ref(),
            system_cpu_nanos(),
            &util::now(),
        );
        return Ok(json(StatusCode::OK, &v));
    }
    // As dockerd: a sample a second, each one's `precpu_stats` and `preread` the previous
    // one's; the stream ends when the container is removed or the client goes away.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let mut state = e.watch.subscribe();
    tokio::spawn(async move {
        let mut pre: Option<(berth_cgroups::Stats, u64, String)> = None;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                biased;
                _ = state.wait_for(|s| s.removed) => break "container removed",
                _ = tx.closed() => break "client gone",
                _ = tick.tick() => {}
            }
            let r = e.record();
            let now = d.cgroup_stats(&e.id).await.ok().flatten();
            let sys = system_cpu_nanos();
            let read = util::now();
            let v = stats_json(
                &r,
                pre.as_ref().map(|(s, sys, t)| (s, *sys, t.clone())),
                now.as_ref(),
                sys,
                &read,
            );
            if tx.send(Bytes::from(v.to_string() + "\n")).await.is_err() {
                break "client gone";
            }
            pre = now.map(|s| (s, sys, read));
        };
        tracing::debug!(id = %e.id, "stats stream of {} ended: {why}", e.id);
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok(Response::new(Body::from_stream(body)))
}

/// A prune `until`: a timestamp (unix seconds or RFC 3339) or a Go duration before now
/// (`24h`, `1h30m`, `90s`), in nanoseconds since the epoch, as dockerd's `GetTimestamp`.
fn until_nanos(v: &str) -> Option<i128> {
    if let Some(t) = util::parse_time_filter(v) {
        return Some(t);
    }
    let mut total: f64 = 0.0;
    let mut rest = v;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|n| *n > 0)?;
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Some(util::now_nanos() - total as i128)
}

/// `POST /containers/prune?filters=`: remove every container that is not running (and
/// matches the `label`, `label!` and `until` filters).
pub async fn prune(State(d): State<AppState>, q: Q) -> Result<Response, Error> {
    let filters = q.filters()?;
    // As dockerd: only `label`, `label!` and `until`.
    for (k, vals) in &filters {
        if !["label", "label!", "until"].contains(&k.as_str()) {
            return Err(Error::BadParameter(format!("Invalid filter '{k}'")));
        }
        if k == "until" {
            for v in vals {
                if until_nanos(v).is_none() {
                    return Err(Error::BadParameter(format!("invalid until: {v:?}")));
                }
            }
        }
    }
    let mut deleted = Vec::new();
    for e in d.all() {
        let r = e.record();
        if r.state.running || !matches(&r, &filters) {
            continue;
        }
        if d.remove(&r.id, false).await.is_ok() {
            deleted.push(r.id);
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({"ContainersDeleted": deleted, "SpaceReclaimed": 0}),
    ))
}

/// `POST /containers/{id}/update`.
pub async fn update(
    State(d): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let v: serde_json::Value = json_body(&body)?;
    let warnings = d.update(&name, v).await?;
    Ok(json(StatusCode::OK, &json!({"Warnings": warnings})))
}

fn path_stat_header(st: &crate::archive::PathStat) -> axum::http::HeaderValue {
    use base64::Engine as _;
    let json = serde_json::to_vec(st).expect("json");
    base64::engine::general_purpose::STANDARD
        .encode(json)
        .parse()
        .expect("base64 is a valid header value")
}

/// The `path` query parameter of the archive endpoints (a 400 when missing) and the root of
/// container `name`'s filesystem it is read in.
fn archive_target(d: &AppState, name: &str, q: &Q) -> Result<(std::path::PathBuf, String), Error> {
    let path = q
        .get("path")
        .ok_or_else(|| Error::BadParameter("path is required".into()))?
        .to_owned();
    Ok((d.fs_root(name)?, path))
}

/// `HEAD /containers/{id}/archive?path=`: the path's stat in `X-Docker-Container-Path-Stat`.
pub async fn archive_head(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    let (root, path) = archive_target(&d, &name, &q)?;
    let st = tokio::task::spawn_blocking(move || crate::archive::stat(&root, &path))
        .await
        .map_err(|e| Error::internal("stat", e))??;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut()
        .insert("X-Docker-Container-Path-Stat", path_stat_header(&st));
    Ok(r)
}

/// `GET /containers/{id}/archive?path=`: a tar of the path.
pub async fn archive_get(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Response, Error> {
    let (root, path) = archive_target(&d, &name, &q)?;
    let (st, data) = tokio::task::spawn_blocking(move || {
        let st = crate::archive::stat(&root, &path)?;
        let mut buf = Vec::new();
        crate::archive::export(&root, &path, &mut buf)?;
        Ok::<_, Error>((st, buf))
    })
    .await
    .map_err(|e| Error::internal("archive", e))??;
    let mut r = Response::new(Body::from(data));
    r.headers_mut()
        .insert("X-Docker-Container-Path-Stat", path_stat_header(&st));
    r.headers_mut()
        .insert("Content-Type", "application/x-tar".parse().expect("header"));
    Ok(r)
}

/// `PUT /containers/{id}/archive?path=`: extract the tar body into the directory `path`.
pub async fn archive_put(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Q,
    body: axum::body::Body,
) -> Result<Response, Error> {
    let (root, path) = archive_target(&d, &name, &q)?;
    let data = axum::body::to_bytes(body, 1 << 30)
        .await
        .map_err(|e| Error::BadParameter(format!("reading the body: {e}")))?;
    tokio::task::spawn_blocking(move || {
        crate::archive::import(&root, &path, std::io::Cursor::new(data))
    })
    .await
    .map_err(|e| Error::internal("extract", e))??;
    Ok(StatusCode::OK.into_response())
}

/// A `Write` that hands its bytes, in chunks, to an async response body (for a tar written
/// on a blocking thread); a write fails once the client has gone.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 64 * 1024;
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

/// `GET /containers/{id}/export`: a tar of the container's filesystem (its rootfs, without
/// the volumes, binds and tmpfs mounted over it), streamed, as dockerd's export. The rootfs
/// is read from the daemon's side of the overlay, which the container's mounts are not on.
pub async fn export(
    State(d): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let e = d.get(&name)?;
    let rootfs = d.paths.bundle(&e.id).join("rootfs");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let id = e.id.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::new(),
        };
        crate::archive::export_as(&rootfs, "/", std::ffi::OsStr::new(""), &mut w)
    });
    // The first chunk (or the error) before the headers: a container whose rootfs cannot be
    // read is an error response, not a truncated tar.
    let Some(first) = rx.recv().await else {
        task.await.map_err(|e| Error::internal("export", e))??;
        return Err(Error::internal(
            "export",
            std::io::Error::other("the archive was empty"),
        ));
    };
    tokio::spawn(async move {
        match task.await {
            Ok(Err(err)) => tracing::warn!(%id, "export of {id} ended early: {err}"),
            Err(err) => tracing::warn!(%id, "export of {id}: {err}"),
            Ok(Ok(())) => {}
        }
    });
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(first) }),
        rest,
    );
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("Content-Type", "application/x-tar".parse().expect("header"));
    Ok(r)
}
