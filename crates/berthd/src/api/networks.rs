//! `/networks`: the predefined networks (bridge, host, none), read-only. User-defined
//! networks are refused.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{json, AppState};
use crate::error::Error;

fn networks(d: &AppState) -> Vec<Value> {
    let bridge = d.bridge.as_ref();
    let containers = |mode: &[&str]| -> Value {
        let mut m = serde_json::Map::new();
        for e in d.all() {
            let r = e.record();
            let nm = r
                .host_config
                .network_mode
                .clone()
                .unwrap_or_else(|| "default".into());
            if r.state.running && mode.contains(&nm.as_str()) {
                let ip = r
                    .state
                    .network
                    .as_ref()
                    .map(|a| format!("{}/{}", a.ip, a.prefix))
                    .unwrap_or_default();
                m.insert(r.id.clone(), json!({"Name": r.name, "IPv4Address": ip}));
            }
        }
        Value::Object(m)
    };
    let net = |name: &str, driver: &str, ipam: Value, c: Value| {
        json!({"Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Scope": "local",
               "Driver": driver, "EnableIPv6": false, "IPAM": {"Driver": "default", "Config": ipam},
               "Internal": false, "Attachable": false, "Ingress": false, "Containers": c,
               "Options": {}, "Labels": {}})
    };
    vec![
        net(
            "bridge",
            "bridge",
            match bridge {
                Some(b) => json!([{"Subnet": b.subnet}]),
                None => json!([]),
            },
            containers(&["default", "bridge"]),
        ),
        net("host", "host", json!([]), containers(&["host"])),
        net("none", "null", json!([]), containers(&["none"])),
    ]
}

/// `GET /networks`.
pub async fn list(State(d): State<AppState>) -> Result<Response, Error> {
    Ok(json(StatusCode::OK, &networks(&d)))
}

/// `GET /networks/{id}`.
pub async fn inspect(State(d): State<AppState>, Path(id): Path<String>) -> Result<Response, Error> {
    networks(&d)
        .into_iter()
        .find(|n| n["Name"] == id.as_str())
        .map(|n| json(StatusCode::OK, &n))
        .ok_or(Error::NoSuchNetwork(id))
}

/// `POST /networks/create`: refused (no user-defined networks yet).
pub async fn create() -> Result<Response, Error> {
    Err(Error::BadParameter(
        "user-defined networks are not supported by berthd yet".into(),
    ))
}

/// `POST /networks/prune`: there are only the predefined networks, which are never pruned,
/// so nothing is deleted (dockerd answers `NetworksDeleted: null` the same way). Filters are
/// checked as dockerd's (`until`, `label`, `label!`).
pub async fn prune(q: super::Q) -> Result<Response, Error> {
    for k in q.filters()?.keys() {
        if !["until", "label", "label!"].contains(&k.as_str()) {
            return Err(Error::BadParameter(format!("Invalid filter '{k}'")));
        }
    }
    Ok(json(StatusCode::OK, &json!({"NetworksDeleted": null})))
}
