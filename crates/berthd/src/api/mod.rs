//! The Docker Engine API over HTTP/1.1: routing (with and without the `/vX.Y` prefix), the
//! JSON error shape, and the connection hijack (`101 UPGRADED`) for attach and exec.
//! Handlers translate HTTP to [`crate::daemon::Daemon`] calls and back.

pub mod containers;
pub mod exec;
pub mod images;
pub mod networks;
pub mod system;
pub mod volumes;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, head, post};
use axum::Router;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::daemon::Daemon;
use crate::error::Error;

/// The newest API version berthd speaks (docker CLI 28.2's).
pub const API_VERSION: &str = "1.50";
/// The oldest.
pub const MIN_API_VERSION: &str = "1.41";

/// The API version a request was made with (from its `/vX.Y` prefix, else the newest).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct ApiVersion(pub u32, pub u32);

/// Shared handler state.
pub type AppState = Arc<Daemon>;

impl IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        if status.is_server_error() {
            tracing::warn!("{self}");
        }
        (
            status,
            axum::Json(serde_json::json!({"message": self.to_string()})),
        )
            .into_response()
    }
}

/// Query parameters as docker sends them.
#[derive(Debug, Default)]
pub struct Q(pub HashMap<String, String>);

impl Q {
    /// `1`, `true`, `True` are true.
    pub fn flag(&self, k: &str) -> bool {
        matches!(
            self.0.get(k).map(|s| s.as_str()),
            Some("1" | "true" | "True" | "yes")
        )
    }
    /// A string parameter.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.as_str()).filter(|s| !s.is_empty())
    }
    /// An integer parameter; a malformed one is a 400 naming it.
    pub fn int(&self, k: &str) -> Result<Option<i64>, Error> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::BadParameter(format!("invalid value for {k}: {v:?}"))),
        }
    }
    /// A time parameter (`since`, `until`: unix seconds with an optional fraction, or RFC
    /// 3339), in nanoseconds since the epoch; a malformed one is a 400 naming it.
    pub fn time(&self, k: &str) -> Result<Option<i128>, Error> {
        self.get(k)
            .map(|v| {
                crate::util::parse_time_filter(v)
                    .ok_or_else(|| Error::BadParameter(format!("invalid {k}: {v:?}")))
            })
            .transpose()
    }
    /// docker's `filters` JSON (`{"status":["running"]}`, or the old `{"status":{"running":true}}`).
    pub fn filters(&self) -> Result<HashMap<String, Vec<String>>, Error> {
        let Some(f) = self.get("filters") else {
            return Ok(HashMap::new());
        };
        let v: serde_json::Value = serde_json::from_str(f)
            .map_err(|e| Error::BadParameter(format!("invalid filters: {e}")))?;
        let mut out = HashMap::new();
        for (k, v) in v.as_object().into_iter().flatten() {
            let vals: Vec<String> = match v {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                serde_json::Value::Object(o) => o.keys().cloned().collect(),
                _ => return Err(Error::BadParameter(format!("invalid filter {k:?}"))),
            };
            out.insert(k.clone(), vals);
        }
        Ok(out)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Q {
    type Rejection = Error;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Error> {
        let q = parts.uri.query().unwrap_or("");
        let map: HashMap<String, String> = url_decode_pairs(q);
        Ok(Q(map))
    }
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_decode_pairs(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

/// A JSON body: malformed JSON or wrong types are a 400 naming the problem.
pub fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Error::BadParameter(format!("invalid JSON body: {e}")))
}

/// A JSON response.
pub fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> axum::response::Response {
    (status, axum::Json(v)).into_response()
}

/// The router (paths without the version prefix).
pub fn router(daemon: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/{id}/export", get(containers::export))
        .route("/containers/{id}/stats", get(containers::stats))
        .route("/containers/{id}/update", post(containers::update))
        .route(
            "/containers/{id}/archive",
            get(containers::archive_get)
                .head(containers::archive_head)
                .put(containers::archive_put),
        )
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/containers/{id}", delete(containers::remove))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/build/prune", post(system::build_prune))
        .route("/system/df", get(system::df))
        .route("/networks/{id}", get(networks::inspect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/images/json", get(images::list))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/create", post(images::create))
        .route("/auth", post(images::auth))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::remove),
        )
        .route(
            "/distribution/{*rest}",
            head(system::not_implemented).get(system::not_implemented),
        )
        .fallback(system::not_found)
        .with_state(daemon)
}

/// Strip `/vX.Y` from the path, remembering the version; an unsupported version is a 400.
pub fn rewrite<B>(req: &mut Request<B>) -> Result<(), Box<Response<Body>>> {
    let path = req.uri().path().to_owned();
    let mut version = ApiVersion(1, 50);
    let mut rest = path.as_str();
    if let Some(after) = path.strip_prefix("/v") {
        if let Some((v, tail)) = after.split_once('/') {
            if let Some((maj, min)) = v.split_once('.') {
                if let (Ok(a), Ok(b)) = (maj.parse::<u32>(), min.parse::<u32>()) {
                    version = ApiVersion(a, b);
                    rest = &path[2 + v.len()..];
                    let _ = tail;
                    let max = ApiVersion(1, 50);
                    if version > max {
                        let msg = format!("client version {a}.{b} is too new. Maximum supported API version is {API_VERSION}");
                        return Err(Box::new(
                            (
                                StatusCode::BAD_REQUEST,
                                axum::Json(serde_json::json!({"message": msg})),
                            )
                                .into_response(),
                        ));
                    }
                    if version < ApiVersion(1, 24) {
                        let msg = format!("client version {a}.{b} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version");
                        return Err(Box::new(
                            (
                                StatusCode::BAD_REQUEST,
                                axum::Json(serde_json::json!({"message": msg})),
                            )
                                .into_response(),
                        ));
                    }
                }
            }
        }
    }
    let new = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    if let Ok(uri) = new.parse() {
        *req.uri_mut() = uri;
    }
    req.extensions_mut().insert(version);
    Ok(())
}

/// Add the headers docker puts on every response.
pub fn common_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static("Docker/28.2.2-berthd (linux)"),
    );
}

/// The 101 response of a hijack, and the future of the upgraded connection.
pub fn hijack(
    req: &mut Request<Body>,
    multiplexed: bool,
) -> (axum::response::Response, hyper::upgrade::OnUpgrade) {
    let on = hyper::upgrade::on(req);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("Connection", HeaderValue::from_static("Upgrade"));
    h.insert("Upgrade", HeaderValue::from_static("tcp"));
    h.insert(
        "Content-Type",
        HeaderValue::from_static(if multiplexed {
            "application/vnd.docker.multiplexed-stream"
        } else {
            "application/vnd.docker.raw-stream"
        }),
    );
    (resp, on)
}

/// Docker's `detachKeys` (`ctrl-p,ctrl-q`, `a,ctrl-x`) as bytes; `None` when malformed.
pub fn detach_keys(spec: &str) -> Option<Vec<u8>> {
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            match k.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => {
                    let c = c.as_bytes()[0].to_ascii_lowercase();
                    match c {
                        b'a'..=b'z' => Some(c - b'a' + 1),
                        b'@' => Some(0),
                        b'[' => Some(27),
                        b'\\' => Some(28),
                        b']' => Some(29),
                        b'^' => Some(30),
                        b'_' => Some(31),
                        _ => None,
                    }
                }
                None if k.len() == 1 => Some(k.as_bytes()[0]),
                _ => None,
            }
        })
        .collect()
}

/// Relay between a hijacked client connection and a monitor connection: input until the
/// client closes its side (then the monitor's input is closed), output until the monitor
/// ends it; `before_close` runs before the client's connection is closed. With `detach`
/// (the detach key sequence), that sequence in the input ends the session without closing
/// the process's stdin (the keys themselves are not forwarded).
pub async fn relay<C, M, F>(client: C, monitor: M, detach: Option<Vec<u8>>, before_close: F)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    M: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut mr, mut mw) = tokio::io::split(monitor);
    let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<tokio::io::WriteHalf<M>>();
    let input = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        let keys = detach.unwrap_or_default();
        // Bytes matching a prefix of the detach keys, held back until the match fails.
        let mut held: Vec<u8> = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if keys.is_empty() {
                    out.push(b);
                    continue;
                }
                held.push(b);
                if held.len() == keys.len() && held == keys {
                    if !out.is_empty() {
                        let _ = mw.write_all(&out).await;
                    }
                    // Hand the monitor's write half over, unshut: the process keeps stdin.
                    let _ = detached_tx.send(mw);
                    return;
                }
                if !keys.starts_with(&held) {
                    out.append(&mut held);
                }
            }
            if !out.is_empty() && mw.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = mw.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    let mut detached_mw = None;
    // Until the input side ends one way or the other (a completed receiver is not polled).
    let mut input_live = true;
    loop {
        tokio::select! {
            r = mr.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = cw.flush().await;
                }
            },
            w = &mut detached, if input_live => {
                input_live = false;
                if let Ok(w) = w {
                    detached_mw = Some(w);
                    break;
                }
            }
        }
    }
    if detached_mw.is_none() {
        before_close.await;
    }
    let _ = cw.shutdown().await;
    input.abort();
    // Both halves of the monitor connection dropped: closed both ways.
    drop(detached_mw);
    drop(mr);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_key_specs() {
        assert_eq!(detach_keys("ctrl-p,ctrl-q"), Some(vec![16, 17]));
        assert_eq!(detach_keys("a,ctrl-x"), Some(vec![b'a', 24]));
        assert_eq!(detach_keys("ctrl-[,ctrl-@"), Some(vec![27, 0]));
        assert_eq!(detach_keys("ctrl-pp"), None);
    }

    #[test]
    fn version_prefix() {
        let mut r = Request::builder()
            .uri("/v1.41/containers/json?all=1")
            .body(())
            .unwrap();
        rewrite(&mut r).unwrap();
        assert_eq!(r.uri().path(), "/containers/json");
        assert_eq!(r.uri().query(), Some("all=1"));
        assert_eq!(r.extensions().get::<ApiVersion>(), Some(&ApiVersion(1, 41)));
        let mut r = Request::builder().uri("/_ping").body(()).unwrap();
        rewrite(&mut r).unwrap();
        assert_eq!(r.uri().path(), "/_ping");
        let mut r = Request::builder().uri("/v1.12/info").body(()).unwrap();
        assert!(rewrite(&mut r).is_err());
        let mut r = Request::builder().uri("/v9.99/version").body(()).unwrap();
        assert!(rewrite(&mut r).is_err());
        let mut r = Request::builder().uri("/v1.51/version").body(()).unwrap();
        assert!(rewrite(&mut r).is_err());
    }

    #[test]
    fn query_decoding() {
        let m = url_decode_pairs("filters=%7B%22status%22%3A%5B%22running%22%5D%7D&all=1&x=a+b");
        assert_eq!(m["filters"], r#"{"status":["running"]}"#);
        assert_eq!(m["x"], "a b");
        let q = Q(m);
        assert!(q.flag("all"));
        assert_eq!(q.filters().unwrap()["status"], ["running"]);
    }
}
