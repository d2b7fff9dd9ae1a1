//! The HTTP side of the registry client, where a registry is outside data:
//! every exchange ends within a time limit (connecting, each wait for the
//! next bytes, and the whole), every body is read to a size limit and no
//! further, and credentials go only to the hosts they are for and never in
//! clear off this machine. (oci-client, used before, read whole bodies and
//! sent the credentials to whatever token realm a registry named.)

use std::{collections::HashMap, sync::Mutex, time::Duration};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode, Uri,
    body::Bytes,
    header::{self, HeaderMap, HeaderValue},
};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};

/// How long one exchange may take unless `PROVISION_REGISTRY_TIMEOUT` (in
/// seconds) says otherwise, and how long a registry may go silent.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_secs(15);
const CONNECT: Duration = Duration::from_secs(10);
/// Error bodies and token answers are small; more is not an answer.
const ERROR_BODY: u64 = 8 << 10;
const TOKEN_BODY: u64 = 64 << 10;
const REDIRECTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Failed(String),
    #[error("it did not answer within {} s (set PROVISION_REGISTRY_TIMEOUT to wait longer)", .0.as_secs())]
    TimedOut(Duration),
    #[error("it sent {what} larger than {limit}; refusing it")]
    TooLarge { what: &'static str, limit: String },
    #[error("it asks for credentials{0}")]
    NeedsCredentials(String),
    #[error("it answered {status}: {message}")]
    Status { status: StatusCode, message: String },
}

/// `PROVISION_REGISTRY_USER` / `_PASSWORD`, for the registries (and their
/// token services) named in `PROVISION_REGISTRY_HOST`, comma-separated.
#[derive(Clone)]
struct Credentials {
    user: String,
    password: String,
    hosts: Vec<String>,
}

impl Credentials {
    fn from_env() -> Option<Credentials> {
        let (user, password) = (std::env::var("PROVISION_REGISTRY_USER").ok()?, std::env::var("PROVISION_REGISTRY_PASSWORD").ok()?);
        let hosts = std::env::var("PROVISION_REGISTRY_HOST").unwrap_or_default();
        let hosts = hosts.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
        Some(Credentials { user, password, hosts })
    }

    /// Whether they are for `authority` (`host[:port]`); an entry without a
    /// port is for every port of its host.
    fn for_host(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        let host = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h);
        self.hosts.iter().any(|h| *h == authority || *h == host)
    }

    fn basic(&self) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password)))
    }
}

/// One exchange: `url` (absolute), what to accept, an optional body, and the
/// largest answer body to read.
pub struct Exchange<'a> {
    pub method: Method,
    pub url: String,
    pub accept: &'a [&'a str],
    pub body: Option<(Vec<u8>, &'a str)>,
    /// The token scope, `repository:NAME:pull` (or `pull,push`).
    pub scope: &'a str,
    pub what: &'static str,
    pub limit: u64,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A blocking client for one process.
pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Runtime,
    credentials: Option<Credentials>,
    /// Authorization per (registry, scope), once a challenge was answered.
    authorizations: Mutex<HashMap<(String, String), String>>,
    timeout: Duration,
}

/// Registries on this machine are spoken to over plain HTTP.
pub fn is_loopback(authority: &str) -> bool {
    let host = authority.rsplit_once(':').map_or(authority, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { authority });
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

impl Http {
    pub fn new() -> Result<Http, String> {
        // rustls's crypto is ring (see Cargo.toml); installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let timeout = std::env::var("PROVISION_REGISTRY_TIMEOUT").ok().and_then(|s| s.parse().ok()).map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(Http { client, runtime, credentials: Credentials::from_env(), authorizations: Mutex::default(), timeout })
    }

    /// `https://AUTHORITY` (or `http://` on this machine).
    pub fn base(authority: &str) -> String {
        format!("{}://{authority}", if is_loopback(authority) { "http" } else { "https" })
    }

    /// Run one exchange to its end: authorization challenges answered once,
    /// redirects followed (a few, never from HTTPS to plain HTTP off this
    /// machine, the authorization dropped when the host changes).
    pub fn exchange(&self, exchange: &Exchange) -> Result<Answer, HttpError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timeout = self.timeout;
        self.runtime.block_on(async {
            match tokio::time::timeout_at(deadline, self.run(exchange)).await {
                Ok(answer) => answer,
                Err(_) => Err(HttpError::TimedOut(timeout)),
            }
        })
    }

    async fn run(&self, exchange: &Exchange<'_>) -> Result<Answer, HttpError> {
        let registry = authority_of(&exchange.url)?;
        let key = (registry.clone(), exchange.scope.to_string());
        let mut url = exchange.url.clone();
        let mut challenged = false;
        let mut hops = 0;
        loop {
            let same_host = authority_of(&url)? == registry;
            let authorization = if same_host { self.authorizations.lock().unwrap().get(&key).cloned() } else { None };
            let response = self.send(&exchange.method, &url, exchange, authorization.as_deref()).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && same_host && !challenged {
                challenged = true;
                let challenge = response.headers().get(header::WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
                let authorization = self.answer(&registry, &challenge, exchange.scope).await?;
                self.authorizations.lock().unwrap().insert(key.clone(), authorization);
                continue;
            }
            if status.is_redirection() && hops < REDIRECTS && matches!(exchange.method, Method::GET | Method::HEAD) {
                let location = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).unwrap_or_default();
                let next = join(&url, location)?;
                if next.starts_with("http://") && !is_loopback(&authority_of(&next)?) {
                    return Err(HttpError::Failed(format!("it redirected to plain HTTP off this machine ({}); refusing", shown(&next))));
                }
                url = next;
                hops += 1;
                continue;
            }
            let headers = response.headers().clone();
            let limit = if status.is_success() { exchange.limit } else { ERROR_BODY };
            let body = read_bounded(response.into_body(), limit, exchange.what).await?;
            if status.is_success() {
                return Ok(Answer { status, headers, body });
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(HttpError::NeedsCredentials(self.credentials_hint(&registry, status)));
            }
            return Ok(Answer { status, headers, body });
        }
    }

    async fn send(
        &self,
        method: &Method,
        url: &str,
        exchange: &Exchange<'_>,
        authorization: Option<&str>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, HttpError> {
        let uri: Uri = url.parse().map_err(|e| HttpError::Failed(format!("{}: {e}", shown(url))))?;
        let mut request = Request::builder().method(method.clone()).uri(uri).header(header::USER_AGENT, "provision");
        if !exchange.accept.is_empty() {
            request = request.header(header::ACCEPT, exchange.accept.join(", "));
        }
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let body = match &exchange.body {
            Some((bytes, content_type)) => {
                request = request.header(header::CONTENT_TYPE, *content_type);
                Full::new(Bytes::from(bytes.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).map_err(|e| HttpError::Failed(e.to_string()))?;
        self.client.request(request).await.map_err(|e| HttpError::Failed(describe(&e)))
    }

    /// The Authorization a `WWW-Authenticate` challenge asks for.
    async fn answer(&self, registry: &str, challenge: &str, scope: &str) -> Result<String, HttpError> {
        let (scheme, params) = parse_challenge(challenge);
        let credentials = self.credentials.as_ref().filter(|c| c.for_host(registry));
        match scheme.as_str() {
            "basic" => credentials
                .map(Credentials::basic)
                .ok_or_else(|| HttpError::NeedsCredentials(self.credentials_hint(registry, StatusCode::UNAUTHORIZED))),
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| HttpError::Failed("its Bearer challenge names no realm".into()))?;
                let realm_host = authority_of(realm)?;
                let secure = realm.starts_with("https://") || (realm.starts_with("http://") && is_loopback(&realm_host));
                if !secure {
                    return Err(HttpError::Failed(format!("its token service {} is plain HTTP off this machine; refusing", shown(realm))));
                }
                // Basic credentials only to a token service they are for.
                let basic = self.credentials.as_ref().filter(|c| c.for_host(&realm_host)).map(Credentials::basic);
                let mut url = format!("{realm}{}scope={}", if realm.contains('?') { '&' } else { '?' }, encode(scope));
                if let Some(service) = params.get("service") {
                    url.push_str(&format!("&service={}", encode(service)));
                }
                let exchange = Exchange { method: Method::GET, url, accept: &[], body: None, scope, what: "a token", limit: TOKEN_BODY };
                let response = self.send(&Method::GET, &exchange.url, &exchange, basic.as_deref()).await?;
                let status = response.status();
                let body = read_bounded(response.into_body(), TOKEN_BODY, "a token").await?;
                if !status.is_success() {
                    return Err(HttpError::NeedsCredentials(self.credentials_hint(registry, status)));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let token: Token = serde_json::from_slice(&body).map_err(|e| HttpError::Failed(format!("its token answer is not JSON: {e}")))?;
                let token = token.token.or(token.access_token).ok_or_else(|| HttpError::Failed("its token answer holds no token".into()))?;
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| HttpError::Failed("its token is not a header value".into()))?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(HttpError::Failed(format!("it asks for {} authentication, which provision does not speak", shown(&scheme)))),
        }
    }

    /// What to do when a registry wants credentials it did not get.
    fn credentials_hint(&self, registry: &str, status: StatusCode) -> String {
        match &self.credentials {
            None => format!(" ({status}): set PROVISION_REGISTRY_USER, PROVISION_REGISTRY_PASSWORD and PROVISION_REGISTRY_HOST={registry}"),
            Some(c) if !c.for_host(registry) => format!(
                " ({status}); PROVISION_REGISTRY_USER is set, but for {} only: add {registry} to PROVISION_REGISTRY_HOST to send them there",
                if c.hosts.is_empty() { "no registry (PROVISION_REGISTRY_HOST is empty)".to_string() } else { c.hosts.join(", ") }
            ),
            Some(_) => format!(" ({status}): it refused the credentials in PROVISION_REGISTRY_USER / PROVISION_REGISTRY_PASSWORD"),
        }
    }
}

/// A body read to `limit` bytes and no further; each wait for more ends
/// after `IDLE`.
async fn read_bounded(mut body: hyper::body::Incoming, limit: u64, what: &'static str) -> Result<Vec<u8>, HttpError> {
    let mut bytes = Vec::new();
    loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => return Err(HttpError::Failed(format!("it stopped sending {what} for {} s", IDLE.as_secs()))),
            Ok(None) => return Ok(bytes),
            Ok(Some(frame)) => frame.map_err(|e| HttpError::Failed(describe(&e)))?,
        };
        if let Ok(data) = frame.into_data() {
            if bytes.len() as u64 + data.len() as u64 > limit {
                return Err(HttpError::TooLarge { what, limit: crate::files::size(limit) });
            }
            bytes.extend_from_slice(&data);
        }
    }
}

/// `host[:port]` of an absolute URL.
fn authority_of(url: &str) -> Result<String, HttpError> {
    let uri: Uri = url.parse().map_err(|_| HttpError::Failed(format!("{} is not a URL", shown(url))))?;
    uri.authority().map(|a| a.as_str().to_ascii_lowercase()).ok_or_else(|| HttpError::Failed(format!("{} names no host", shown(url))))
}

/// `location` (absolute, or a path on `base`'s host) as an absolute URL.
pub fn join(base: &str, location: &str) -> Result<String, HttpError> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_string());
    }
    if !location.starts_with('/') {
        return Err(HttpError::Failed(format!("it sent a Location that is neither a URL nor a path ({})", shown(location))));
    }
    let uri: Uri = base.parse().map_err(|_| HttpError::Failed(format!("{} is not a URL", shown(base))))?;
    Ok(format!("{}://{}{location}", uri.scheme_str().unwrap_or("https"), authority_of(base)?))
}

/// `Bearer realm="…",service="…"` → ("bearer", {realm, service}).
fn parse_challenge(text: &str) -> (String, HashMap<String, String>) {
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key, value.to_string());
        rest = after.trim_start_matches([',', ' ']);
    }
    (scheme.to_ascii_lowercase(), params)
}

/// Percent-encoding for a query value.
fn encode(value: &str) -> String {
    value.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~:/,".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// An error with its causes (hyper's outermost one says little).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    shown(&text)
}

/// Text from a registry, fit for a terminal: control characters escaped,
/// cut to 300 characters.
pub fn shown(text: &str) -> String {
    let mut out: String =
        text.chars().take(300).flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect();
    if text.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_as_registries_write_them() {
        let (scheme, params) =
            parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull""#);
        assert_eq!(scheme, "bearer");
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(parse_challenge("Basic realm=\"Registry\"").0, "basic");
    }

    #[test]
    fn credentials_are_for_the_hosts_named_and_text_is_made_safe() {
        let c = Credentials { user: "u".into(), password: "p".into(), hosts: vec!["ghcr.io".into(), "127.0.0.1:5000".into()] };
        assert!(c.for_host("ghcr.io") && c.for_host("ghcr.io:443") && c.for_host("127.0.0.1:5000"));
        assert!(!c.for_host("127.0.0.1:5001") && !c.for_host("evil.example") && !c.for_host("ghcr.io.evil.example"));
        assert_eq!(shown("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert!(is_loopback("127.0.0.1:5000") && is_loopback("localhost") && !is_loopback("localhost.evil.example:80"));
        assert_eq!(join("http://127.0.0.1:5000/v2/x", "/v2/x/blobs/uploads/1?a=b").unwrap(), "http://127.0.0.1:5000/v2/x/blobs/uploads/1?a=b");
    }
}
