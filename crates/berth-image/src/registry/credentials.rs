//! Registry credentials from where docker keeps them: `$DOCKER_CONFIG/config.json` (or
//! `~/.docker/config.json`) with its `credHelpers`, `credsStore` and `auths`.
//!
//! The lookup order is docker's: a `credHelpers` entry for the registry, else the
//! `credsStore` helper, else the `auths` entry (`auth` is base64 `user:password`,
//! `identitytoken` an OAuth2 refresh token). A helper is the program `docker-credential-NAME`
//! on `PATH`, run as `docker-credential-NAME get` with the server URL on stdin; it prints
//! `{"ServerURL":..,"Username":..,"Secret":..}`, and the user name `<token>` means that the
//! secret is an identity token. A helper that answers "credentials not found" means anonymous.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;

use super::RegistryError;

/// The user name with which docker's helpers and config mark an identity token.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// The most a credential helper may print (docker's helpers print a few hundred bytes).
const MAX_HELPER_OUTPUT: u64 = 1 << 20;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or personal access token).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An OAuth2 refresh token, exchanged at the token server's realm (docker's identity token).
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Self::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Credentials {
    /// From a (user, secret) pair as docker stores them: user `<token>` is an identity token.
    pub fn from_pair(username: String, secret: String) -> Self {
        if username == IDENTITY_TOKEN_USER {
            Self::IdentityToken(secret)
        } else {
            Self::Basic {
                username,
                password: secret,
            }
        }
    }
}

fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => Some(PathBuf::from(d).join("config.json")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// The host\[:port\] that a config key names (`https://host/v1/`, `host`, `http://host`).
fn key_host(key: &str) -> &str {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    host.split('/').next().unwrap_or(host)
}

fn same_registry(key: &str, registry: &str) -> bool {
    let host = key_host(key);
    host == registry
        || (registry == "docker.io"
            && matches!(
                host,
                "index.docker.io" | "registry-1.docker.io" | "docker.io"
            ))
}

/// The server URL docker hands its helpers for `registry`.
fn server_url(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        registry.into()
    }
}

#[derive(serde::Deserialize, Default)]
struct Entry {
    auth: Option<String>,
    identitytoken: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct Config {
    #[serde(default)]
    auths: HashMap<String, Entry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// Credentials for `registry` (host\[:port\], `docker.io` for Docker Hub) from the docker
/// config, as (user name, secret); user `<token>` means the secret is an identity token.
///
/// `None` when there is no config, no entry for the registry, or its helper has none.
/// Errors name the config file (unreadable, not JSON) or the helper (not on `PATH`, failed,
/// unparsable answer).
///
/// ```no_run
/// if let Some((user, _)) = berth_image::registry::docker_credentials("127.0.0.1:5000")? {
///     println!("pulling as {user}");
/// }
/// # Ok::<(), berth_image::registry::RegistryError>(())
/// ```
pub fn docker_credentials(registry: &str) -> Result<Option<(String, String)>, RegistryError> {
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RegistryError::Credentials { path, source }),
    };
    let cfg: Config = serde_json::from_slice(&data).map_err(|e| RegistryError::Credentials {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let helper = cfg
        .cred_helpers
        .iter()
        .find(|(k, _)| same_registry(k, registry))
        .map(|(_, h)| h.clone())
        .or(cfg.creds_store.clone())
        .filter(|h| !h.is_empty());
    if let Some(helper) = helper {
        return helper_get(&helper, registry);
    }
    for (key, e) in cfg.auths {
        if !same_registry(&key, registry) {
            continue;
        }
        let mut user = None;
        if let Some(auth) = e.auth.filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| RegistryError::Credentials {
                    path: path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("auths.{key:?}.auth is not base64: {e}"),
                    ),
                })?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            if let Some((u, p)) = raw.split_once(':') {
                user = Some((u.to_owned(), p.to_owned()));
            }
        }
        if let Some(tok) = e.identitytoken.filter(|t| !t.is_empty()) {
            return Ok(Some((IDENTITY_TOKEN_USER.into(), tok)));
        }
        if user.is_some() {
            return Ok(user);
        }
    }
    Ok(None)
}

/// Run `docker-credential-NAME get` for `registry`.
fn helper_get(name: &str, registry: &str) -> Result<Option<(String, String)>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let herr = |reason: String| RegistryError::Helper {
        helper: program.clone(),
        registry: registry.to_owned(),
        reason,
    };
    if name.contains('/') {
        return Err(herr("a helper name may not contain '/'".into()));
    }
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| herr(format!("cannot run it: {e}")))?;
    let url = server_url(registry);
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its exit status below.
        let _ = stdin.write_all(url.as_bytes());
    }
    // stderr is read on a thread of its own and drained to its end, so that a helper that
    // writes more than a pipe holds there before it closes stdout cannot block both sides.
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut err = Vec::new();
        if let Some(mut e) = stderr {
            let _ = (&mut e).take(64 << 10).read_to_end(&mut err);
            let _ = std::io::copy(&mut e, &mut std::io::sink());
        }
        err
    });
    let mut out = Vec::new();
    let read = child
        .stdout
        .take()
        .map(|o| o.take(MAX_HELPER_OUTPUT + 1).read_to_end(&mut out));
    // Past the cap, the pipe's read end is closed (dropped above): the helper's further
    // writes fail, it does not block.
    let too_much = out.len() as u64 > MAX_HELPER_OUTPUT;
    let status = child
        .wait()
        .map_err(|e| herr(format!("waiting for it: {e}")))?;
    let err = err_reader.join().unwrap_or_default();
    if let Some(Err(e)) = read {
        return Err(herr(format!("reading its output: {e}")));
    }
    if too_much {
        return Err(herr(format!(
            "it printed more than {MAX_HELPER_OUTPUT} bytes"
        )));
    }
    let text = String::from_utf8_lossy(&out);
    if !status.success() {
        // docker-credential-helpers' "credentials not found in native keychain".
        if text.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let msg = if text.trim().is_empty() {
            String::from_utf8_lossy(&err).trim().to_owned()
        } else {
            text.trim().to_owned()
        };
        return Err(herr(format!("it failed with {status}: {msg}")));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out)
        .map_err(|e| herr(format!("its answer is not the expected JSON: {e}")))?;
    if a.username.is_empty() && a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((a.username, a.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_server_urls() {
        assert!(same_registry("https://index.docker.io/v1/", "docker.io"));
        assert!(same_registry("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"));
        assert!(!same_registry("127.0.0.1:5001", "127.0.0.1:5000"));
        assert_eq!(server_url("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_url("127.0.0.1:5000"), "127.0.0.1:5000");
        assert!(matches!(
            Credentials::from_pair("<token>".into(), "t".into()),
            Credentials::IdentityToken(t) if t == "t"
        ));
        let dbg = format!("{:?}", Credentials::from_pair("u".into(), "secret".into()));
        assert!(!dbg.contains("secret"), "{dbg}");
    }
}
