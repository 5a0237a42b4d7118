//! HTTP with a registry: requests that answer auth challenges, size-capped reads of what has
//! no digest yet, and blob downloads that survive dropped connections.
//!
//! A request refused with 401 gets its challenge answered once ([`super::auth`]) and is sent
//! again; connection failures, 429 and 5xx answers are retried with exponential backoff. A blob
//! whose connection drops is resumed with a `Range` request from the byte where it stopped
//! (as containerd does); a registry that ignores the range sends the blob again from the
//! start and the bytes already received are skipped. The digest of the whole blob is checked
//! by the store once the last byte is in, so a resumed blob is verified like any other.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_RANGE, RANGE, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::auth::{self, Challenge};
use super::credentials::Credentials;
use super::RegistryError;
use crate::digest::Digest;

/// The largest manifest or index read (containerd's limit is about 4 MiB; docker's 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The largest image config read.
pub const MAX_CONFIG: u64 = 8 << 20;
/// The largest token server response read.
pub const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// The most of an error response read for its message.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// Attempts of one request beyond the first, and drops in a row (without progress) of a blob
/// download.
const RETRIES: u32 = 5;
/// Dropped connections tolerated during one blob download, however much each brought.
const MAX_DROPS: u32 = 50;
/// The first backoff; it doubles at each retry.
const BACKOFF: Duration = Duration::from_millis(200);
/// A connection that brings no byte for this long is treated as dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

async fn backoff(attempt: u32) {
    tokio::time::sleep(BACKOFF * 2u32.saturating_pow(attempt.min(5))).await;
}

/// The message of a distribution error body (`{"errors":[{"code":..,"message":..}]}`), else
/// its first line.
pub(super) fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<E>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        if !e.errors.is_empty() {
            return e
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "(no message)".into()
    } else {
        line.chars().take(300).collect()
    }
}

/// Read a whole response body, refusing more than `limit` bytes (by `Content-Length` before
/// reading, and while reading).
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    limit: u64,
    what: &'static str,
    url: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what,
        url: url.to_owned(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if (out.len() + c.len()) as u64 > limit {
                    return Err(too_large());
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(source) => {
                return Err(RegistryError::Http {
                    url: url.to_owned(),
                    source,
                })
            }
        }
    }
}

async fn error_body(resp: reqwest::Response, url: &str) -> String {
    match read_capped(resp, MAX_ERROR_BODY, "error response", url).await {
        Ok(b) => error_message(&b),
        Err(_) => "(unreadable message)".into(),
    }
}

/// The host serving the distribution API of `registry`: Docker Hub's names resolve to
/// `registry-1.docker.io`, as in docker.
fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// One pull's connection to one repository of a registry.
pub(super) struct Session {
    http: reqwest::Client,
    /// `http[s]://host[:port]`.
    base: String,
    registry: String,
    repository: String,
    /// Credentials given by the caller; when `None`, looked up in docker's config at the first
    /// challenge (so a public pull never runs a credential helper).
    given: Option<Credentials>,
    /// The credentials in use, once looked up (an async lock: held while a credential helper
    /// runs, so that concurrent challenges run it once).
    creds: tokio::sync::Mutex<Option<Option<Credentials>>>,
    /// The `Authorization` value in use (none until a challenge asks for one).
    authorization: Mutex<Option<String>>,
}

fn retryable_status(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || matches!(s.as_u16(), 500 | 502 | 503 | 504)
}

impl Session {
    pub fn new(
        registry: &str,
        repository: &str,
        plain_http: bool,
        given: Option<Credentials>,
    ) -> Result<Self, RegistryError> {
        // reqwest is built without a default crypto provider; ring is the one linked in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RegistryError::HttpClient)?;
        let scheme = if plain_http { "http" } else { "https" };
        Ok(Self {
            http,
            base: format!("{scheme}://{}", api_host(registry)),
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            given,
            creds: tokio::sync::Mutex::new(None),
            authorization: Mutex::new(None),
        })
    }

    /// The registry's base URL followed by `path` (which starts with `/`).
    pub fn base_url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `…/v2/<repository>/<kind>/<reference>`.
    pub fn url(&self, kind: &str, reference: &str) -> String {
        format!("{}/v2/{}/{kind}/{reference}", self.base, self.repository)
    }

    fn current_auth(&self) -> Option<String> {
        self.authorization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The credentials for this registry: given, else from docker's config (looked up once,
    /// on the blocking pool: it reads files and may run a credential helper).
    async fn credentials(&self) -> Result<Option<Credentials>, RegistryError> {
        let mut c = self.creds.lock().await;
        if let Some(found) = &*c {
            return Ok(found.clone());
        }
        let found = match &self.given {
            Some(g) => Some(g.clone()),
            None => {
                let registry = self.registry.clone();
                tokio::task::spawn_blocking(move || super::docker_credentials(&registry))
                    .await
                    .map_err(|source| RegistryError::Task {
                        what: "looking up docker credentials",
                        source,
                    })??
                    .map(|(u, p)| Credentials::from_pair(u, p))
            }
        };
        *c = Some(found.clone());
        Ok(found)
    }

    /// Answer the challenge of a refused request that was sent with `sent`.
    async fn authenticate(
        &self,
        resp: reqwest::Response,
        sent: Option<&str>,
        url: &str,
    ) -> Result<(), RegistryError> {
        if self.current_auth().as_deref() != sent {
            // Another request answered a challenge meanwhile: try its answer.
            return Ok(());
        }
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .collect();
        if challenges.is_empty() {
            return Err(RegistryError::Unauthorized {
                url: url.to_owned(),
                message: format!(
                    "refused without a challenge: {}",
                    error_body(resp, url).await
                ),
            });
        }
        let value = auth::answer(
            &self.http,
            &self.registry,
            &self.repository,
            self.credentials().await?.as_ref(),
            &challenges,
            url,
        )
        .await?;
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }

    /// Send a GET to the registry, answering one auth challenge and retrying transient
    /// failures; returns the first response that is neither (any status).
    pub async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        range_from: u64,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut challenged = false;
        let mut attempt = 0;
        loop {
            let sent = self.current_auth();
            let mut req = self.http.get(url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if range_from > 0 {
                req = req.header(RANGE, format!("bytes={range_from}-"));
            }
            if let Some(a) = &sent {
                let mut v = HeaderValue::from_str(a).map_err(|_| RegistryError::Token {
                    realm: self.registry.clone(),
                    status: None,
                    message: "the token is not a valid header value".into(),
                })?;
                v.set_sensitive(true);
                req = req.header(AUTHORIZATION, v);
            }
            match req.send().await {
                Err(source) => {
                    if attempt >= RETRIES {
                        return Err(RegistryError::Http {
                            url: url.to_owned(),
                            source,
                        });
                    }
                    tracing::debug!(url, attempt, error = %source, "retrying");
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    if challenged {
                        return Err(RegistryError::Unauthorized {
                            url: url.to_owned(),
                            message: error_body(resp, url).await,
                        });
                    }
                    challenged = true;
                    self.authenticate(resp, sent.as_deref(), url).await?;
                    continue;
                }
                Ok(resp) if retryable_status(resp.status()) && attempt < RETRIES => {
                    tracing::debug!(url, attempt, status = %resp.status(), "retrying");
                }
                Ok(resp) => return Ok(resp),
            }
            backoff(attempt).await;
            attempt += 1;
        }
    }

    /// GET a document without a known digest, at most `limit` bytes, retried whole if the
    /// connection drops while it is read. Returns the body and its `Content-Type`.
    pub async fn get_small(
        &self,
        url: &str,
        accept: Option<&str>,
        limit: u64,
        what: &'static str,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let mut attempt = 0;
        loop {
            let resp = self.get(url, accept, 0).await?;
            let status = resp.status();
            if !status.is_success() {
                return Err(RegistryError::Status {
                    url: url.to_owned(),
                    status: status.as_u16(),
                    message: error_body(resp, url).await,
                });
            }
            let ct = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match read_capped(resp, limit, what, url).await {
                Err(RegistryError::Http { source, .. }) if attempt < RETRIES => {
                    tracing::debug!(url, attempt, error = %source, "retrying");
                }
                Err(e) => return Err(e),
                Ok(body) => return Ok((body, ct)),
            }
            backoff(attempt).await;
            attempt += 1;
        }
    }

    /// Start downloading the blob `digest` of `size` bytes; `urls` are where a foreign layer
    /// may be fetched from when the registry does not have it.
    pub fn blob(&self, digest: &Digest, size: u64, urls: Vec<String>) -> BlobDownload<'_> {
        BlobDownload {
            session: self,
            digest: digest.clone(),
            size,
            urls,
            source: None,
            resp: None,
            received: 0,
            skip: 0,
            drops: 0,
            total_drops: 0,
            received_at_drop: 0,
        }
    }
}

/// A blob coming in chunk by chunk, resumed after dropped connections.
pub(super) struct BlobDownload<'a> {
    session: &'a Session,
    digest: Digest,
    size: u64,
    /// Foreign URLs to try when the registry has no such blob.
    urls: Vec<String>,
    /// Where the bytes come from, once a source answered.
    source: Option<String>,
    resp: Option<reqwest::Response>,
    received: u64,
    /// Bytes to drop from the current response (a registry that ignored the range).
    skip: u64,
    /// Drops since bytes last came in.
    drops: u32,
    total_drops: u32,
    /// `received` at the last drop.
    received_at_drop: u64,
}

impl BlobDownload<'_> {
    /// Open the first source that has the blob: the registry, else each foreign URL.
    async fn open_first(&mut self) -> Result<reqwest::Response, RegistryError> {
        let registry_url = self.session.url("blobs", &self.digest.to_string());
        let resp = self.session.get(&registry_url, None, 0).await?;
        let status = resp.status();
        if status.is_success() {
            self.source = Some(registry_url);
            return Ok(resp);
        }
        let message = error_body(resp, &registry_url).await;
        if status != StatusCode::NOT_FOUND || self.urls.is_empty() {
            return Err(RegistryError::Status {
                url: registry_url,
                status: status.as_u16(),
                message,
            });
        }
        let mut failures = Vec::new();
        for u in self.urls.clone() {
            match self.open_foreign(&u).await {
                Ok(resp) => {
                    self.source = Some(u);
                    return Ok(resp);
                }
                Err(e) => failures.push(format!("{u}: {e}")),
            }
        }
        Err(RegistryError::ForeignLayer {
            digest: self.digest.clone(),
            urls: self.urls.join(", "),
            reason: format!(
                "the registry has no such blob ({message}) and no url served it: {}",
                failures.join("; ")
            ),
        })
    }

    /// GET a foreign URL (no registry credentials go there), with retries.
    async fn open_foreign(&self, url: &str) -> Result<reqwest::Response, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("only http and https URLs are fetched".into());
        }
        let mut attempt = 0;
        loop {
            match self.session.http.get(parsed.clone()).send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) if retryable_status(r.status()) && attempt < RETRIES => {}
                Ok(r) => {
                    let status = r.status();
                    return Err(format!("{status}: {}", error_body(r, url).await));
                }
                Err(e) if attempt < RETRIES => tracing::debug!(url, error = %e, "retrying"),
                Err(e) => return Err(e.to_string()),
            }
            backoff(attempt).await;
            attempt += 1;
        }
    }

    /// Reopen the source from the first byte not yet received.
    async fn resume(&mut self) -> Result<reqwest::Response, RegistryError> {
        let url = self.source.clone().unwrap_or_default();
        let resp = if self.urls.contains(&url) {
            let mut req = self.session.http.get(&url);
            if self.received > 0 {
                req = req.header(RANGE, format!("bytes={}-", self.received));
            }
            req.send().await.map_err(|source| RegistryError::Http {
                url: url.clone(),
                source,
            })?
        } else {
            self.session.get(&url, None, self.received).await?
        };
        let status = resp.status();
        if status == StatusCode::PARTIAL_CONTENT {
            let start = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if start != Some(self.received) {
                return Err(RegistryError::Status {
                    url,
                    status: status.as_u16(),
                    message: format!(
                        "asked for bytes from {} and got a different range",
                        self.received
                    ),
                });
            }
            self.skip = 0;
        } else if status.is_success() {
            // The range was ignored: the whole blob again, minus what we have.
            self.skip = self.received;
        } else {
            let message = error_body(resp, &url).await;
            return Err(RegistryError::Status {
                url,
                status: status.as_u16(),
                message,
            });
        }
        Ok(resp)
    }

    /// Count a dropped connection; fails after [`RETRIES`] drops in a row that brought no
    /// byte, or [`MAX_DROPS`] in all.
    async fn dropped(&mut self, why: String) -> Result<(), RegistryError> {
        self.resp = None;
        if self.received > self.received_at_drop {
            self.drops = 0;
        }
        self.received_at_drop = self.received;
        self.drops += 1;
        self.total_drops += 1;
        tracing::debug!(digest = %self.digest, received = self.received, %why, "connection dropped");
        if self.drops > RETRIES || self.total_drops > MAX_DROPS {
            return Err(RegistryError::Interrupted {
                digest: self.digest.clone(),
                received: self.received,
                size: self.size,
                attempts: self.total_drops,
                reason: why,
            });
        }
        backoff(self.drops - 1).await;
        Ok(())
    }

    /// The next bytes of the blob, `None` once all `size` bytes are in.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>, RegistryError> {
        loop {
            if self.resp.is_none() {
                let resp = if self.source.is_none() {
                    self.open_first().await?
                } else if self.received >= self.size {
                    return Ok(None);
                } else {
                    match self.resume().await {
                        Ok(r) => r,
                        Err(RegistryError::Http { source, .. }) => {
                            self.dropped(source.to_string()).await?;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                };
                // What the answer says it holds must fit the blob (the whole blob again when
                // the range was ignored).
                let room = if self.skip > 0 {
                    self.size
                } else {
                    self.size - self.received
                };
                if resp.content_length().is_some_and(|n| n > room) {
                    return Err(RegistryError::BlobTooLarge {
                        digest: self.digest.clone(),
                        size: self.size,
                    });
                }
                self.resp = Some(resp);
            }
            let Some(resp) = self.resp.as_mut() else {
                continue;
            };

            match resp.chunk().await {
                Ok(Some(mut c)) => {
                    if self.skip > 0 {
                        let n = self.skip.min(c.len() as u64) as usize;
                        self.skip -= n as u64;
                        c = c.slice(n..);
                        if c.is_empty() {
                            continue;
                        }
                    }
                    if self.received + c.len() as u64 > self.size {
                        return Err(RegistryError::BlobTooLarge {
                            digest: self.digest.clone(),
                            size: self.size,
                        });
                    }
                    self.received += c.len() as u64;
                    return Ok(Some(c));
                }
                Ok(None) => {
                    if self.received >= self.size {
                        self.resp = None;
                        return Ok(None);
                    }
                    self.dropped(format!(
                        "the connection ended after {} of {} bytes",
                        self.received, self.size
                    ))
                    .await?;
                }
                Err(e) => self.dropped(e.to_string()).await?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_messages() {
        let s = Session::new("docker.io", "library/busybox", false, None).unwrap();
        assert_eq!(
            s.url("manifests", "latest"),
            "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
        );
        let s = Session::new("127.0.0.1:5000", "a/b", true, None).unwrap();
        assert_eq!(s.url("blobs", "x"), "http://127.0.0.1:5000/v2/a/b/blobs/x");
        assert_eq!(
            error_message(br#"{"errors":[{"code":"DENIED","message":"no"}]}"#),
            "DENIED: no"
        );
        assert_eq!(error_message(b"plain\nmore"), "plain");
        assert_eq!(error_message(b""), "(no message)");
    }
}
