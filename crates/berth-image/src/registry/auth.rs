//! Answering a registry's authentication challenge (`WWW-Authenticate`), wherever it comes.
//!
//! A registry may challenge on `/v2/` or only on a repository's endpoints (per-repository
//! auth); [`super::transfer::Session`] answers the challenge of whatever request was refused,
//! once per request, and retries it. `Basic` challenges get the credentials; `Bearer`
//! challenges get a token from the challenge's realm (docker's token protocol: a `GET` with
//! `service`, `scope` and the credentials as basic auth, or, for an identity token, the OAuth2
//! `POST` with `grant_type=refresh_token`), for the challenge's scope and this pull's.

use base64::Engine as _;

use super::credentials::Credentials;
use super::transfer::{read_capped, MAX_TOKEN_RESPONSE};
use super::RegistryError;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Challenge {
    /// `bearer` or `basic` (lowercase).
    pub scheme: String,
    /// Parameters, names lowercase.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a `WWW-Authenticate` value (RFC 9110 §11.6.1): one or more challenges, each a scheme
/// followed by comma-separated `name=value` or `name="quoted value"` parameters.
pub(super) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
        }
    };
    while i < b.len() {
        skip(&mut i, b" \t,");
        let start = i;
        while i < b.len() && !b" \t,=".contains(&b[i]) {
            i += 1;
        }
        if start == i {
            break;
        }
        let token = &header[start..i];
        let mut j = i;
        skip(&mut j, b" \t");
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            // name=value of the current challenge.
            j += 1;
            skip(&mut j, b" \t");
            let value = if j < b.len() && b[j] == b'"' {
                j += 1;
                let mut v = String::new();
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' && j + 1 < b.len() {
                        j += 1;
                    }
                    let ch = header[j..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    j += ch.len_utf8();
                }
                j += 1;
                v
            } else {
                let s = j;
                while j < b.len() && b[j] != b',' {
                    j += 1;
                }
                header[s..j].trim().to_owned()
            };
            if let Some(c) = out.last_mut() {
                c.params.push((token.to_ascii_lowercase(), value));
            }
            i = j;
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            });
            // token68 (e.g. `Negotiate abc==`) is not used by registries; skip it.
        }
    }
    out
}

/// A token response (docker's `token`, OAuth2's `access_token`).
#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

/// The `Authorization` header value that answers `challenges` for a pull of `repository`.
pub(super) async fn answer(
    http: &reqwest::Client,
    registry: &str,
    repository: &str,
    creds: Option<&Credentials>,
    challenges: &[Challenge],
    url: &str,
) -> Result<String, RegistryError> {
    if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
        return bearer(http, registry, repository, creds, c).await;
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        return match creds {
            Some(Credentials::Basic { username, password }) => Ok(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Some(Credentials::IdentityToken(_)) => Err(RegistryError::Unauthorized {
                url: url.to_owned(),
                message: format!(
                    "the registry asks for basic credentials; {registry} has only an identity token configured"
                ),
            }),
            None => Err(RegistryError::Unauthorized {
                url: url.to_owned(),
                message: format!(
                    "the registry asks for basic credentials and none are configured for {registry}"
                ),
            }),
        };
    }
    Err(RegistryError::Challenge {
        url: url.to_owned(),
        header: challenges
            .iter()
            .map(|c| c.scheme.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

async fn bearer(
    http: &reqwest::Client,
    registry: &str,
    repository: &str,
    creds: Option<&Credentials>,
    c: &Challenge,
) -> Result<String, RegistryError> {
    let realm = c.param("realm").unwrap_or("");
    let terr = |status: Option<u16>, message: String| RegistryError::Token {
        realm: realm.to_owned(),
        status,
        message,
    };
    let mut url = reqwest::Url::parse(realm)
        .map_err(|e| terr(None, format!("the challenge's realm is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(terr(None, "the challenge's realm is not http(s)".into()));
    }
    let mut scopes: Vec<String> = c
        .param("scope")
        .map(|s| {
            s.split(' ')
                .filter(|s| !s.is_empty())
                .map(Into::into)
                .collect()
        })
        .unwrap_or_default();
    let ours = format!("repository:{repository}:pull");
    if !scopes.contains(&ours) {
        scopes.push(ours);
    }
    let service = c.param("service");
    let req = match creds {
        Some(Credentials::IdentityToken(tok)) => {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("client_id", "berth"),
                ("refresh_token", tok.as_str()),
            ];
            if let Some(s) = service {
                form.push(("service", s));
            }
            let scope = scopes.join(" ");
            form.push(("scope", &scope));
            let body = reqwest::Url::parse_with_params("http://x/", &form)
                .map(|u| u.query().unwrap_or("").to_owned())
                .unwrap_or_default();
            http.post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
        }
        other => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in &scopes {
                    q.append_pair("scope", s);
                }
                if let Some(Credentials::Basic { username, .. }) = other {
                    q.append_pair("account", username);
                }
            }
            let req = http.get(url);
            match other {
                Some(Credentials::Basic { username, password }) => {
                    req.basic_auth(username, Some(password))
                }
                _ => req,
            }
        }
    };
    let resp = req
        .send()
        .await
        .map_err(|e| terr(None, format!("request failed: {e}")))?;
    let status = resp.status();
    let body = read_capped(resp, MAX_TOKEN_RESPONSE, "token response", realm).await?;
    if !status.is_success() {
        let who = match creds {
            Some(_) => format!("the credentials for {registry} were refused"),
            None => format!("no credentials are configured for {registry}"),
        };
        return Err(terr(
            Some(status.as_u16()),
            format!("{who}: {}", super::transfer::error_message(&body)),
        ));
    }
    let t: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| terr(Some(status.as_u16()), format!("not a token response: {e}")))?;
    let token = if t.token.is_empty() {
        t.access_token
    } else {
        t.token
    };
    if token.is_empty() {
        return Err(terr(
            Some(status.as_u16()),
            "the response has no token".into(),
        ));
    }
    Ok(format!("Bearer {token}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
        let c = parse_challenges(r#"Basic realm="x, y", Bearer realm=http://t/token ,service=s"#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("realm"), Some("x, y"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("http://t/token"));
        assert_eq!(c[1].param("service"), Some("s"));
        let c = parse_challenges(r#"basic realm="a\"b""#);
        assert_eq!(c[0].param("realm"), Some("a\"b"));
        assert!(parse_challenges("").is_empty());
    }
}
