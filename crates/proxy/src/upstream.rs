//! Talking to upstream MCP servers: one HTTP client per distinct TLS setting, requests with
//! the server's configured headers, a bound on the wait for response headers, and — for the
//! virtual-server fan-out — reading one JSON-RPC reply out of a JSON or SSE response.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use serde_json::Value;
use sse_stream::SseStream;

use crate::credentials::{CredentialError, Headers};
use mcpgate_policy::ServerEntry;

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";

#[derive(Clone, Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream did not answer within {0} s")]
    Timeout(u64),
    #[error("the upstream is unreachable: {0}")]
    Unreachable(String),
    #[error("the upstream answered HTTP {0}")]
    Status(u16),
    #[error("the upstream sent an invalid response: {0}")]
    Protocol(String),
    #[error("{0}")]
    Credential(#[from] CredentialError),
}

impl UpstreamError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "upstream_timeout",
            Self::Unreachable(_) => "upstream_unreachable",
            Self::Status(_) => "upstream_status",
            Self::Protocol(_) => "upstream_protocol",
            Self::Credential(CredentialError::ActionRequired { .. }) => "credential_required",
            Self::Credential(CredentialError::Unavailable { .. }) => "credential_unavailable",
        }
    }
}

thread_local! {
    /// Ordinary upstreams get one client per server thread. A pooled connection is driven by
    /// the runtime that opened it; sharing one pool across actix's single-threaded workers
    /// would bounce every response between threads.
    static LOCAL: std::cell::RefCell<Vec<Local>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One server thread's clients under one egress policy.
struct Local {
    egress: std::sync::Arc<crate::egress::Egress>,
    client: reqwest::Client,
    direct: crate::direct::Client,
}

thread_local! {
    /// Servers' URLs, parsed: every proxied request goes to one, and parsing it again each time
    /// was 1.5 % of a call's CPU.
    static PARSED: std::cell::RefCell<HashMap<String, (reqwest::Url, http::Uri)>> = std::cell::RefCell::default();
}

/// Parsed server URLs kept per thread, at most this many (then they are parsed afresh).
const MAX_PARSED: usize = 1_024;

/// A server's URL parsed, both as reqwest and as hyper take it.
fn parsed(url: &str) -> Result<(reqwest::Url, http::Uri), UpstreamError> {
    PARSED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(parsed) = cache.get(url) {
            return Ok(parsed.clone());
        }
        let invalid = || UpstreamError::Protocol("the server URL is invalid".into());
        let as_url = reqwest::Url::parse(url).map_err(|_| invalid())?;
        let as_uri = http::Uri::try_from(as_url.as_str()).map_err(|_| invalid())?;
        if cache.len() >= MAX_PARSED {
            cache.clear();
        }
        cache.insert(url.to_owned(), (as_url.clone(), as_uri.clone()));
        Ok((as_url, as_uri))
    })
}

/// An upstream's answer to a relayed request, whichever client sent it.
pub type Relayed = http::Response<reqwest::Body>;

/// HTTP clients to upstreams: a per-thread one for ordinary upstreams and a shared one per
/// server that pins its own CA or skips verification, so connection pools are reused.
pub struct Clients {
    custom: Mutex<HashMap<(bool, Option<String>), reqwest::Client>>,
    pub timeout: Duration,
    egress: std::sync::Arc<crate::egress::Egress>,
}

impl Clients {
    pub fn new(timeout: Duration, egress: std::sync::Arc<crate::egress::Egress>) -> anyhow::Result<Self> {
        // Fail at startup, not on the first request, if a client cannot be built here.
        Self::build(&egress, true, None)?;
        Ok(Self { custom: Mutex::default(), timeout, egress })
    }

    fn local<T>(&self, pick: impl FnOnce(&Local) -> T) -> Result<T, UpstreamError> {
        LOCAL.with(|cell| {
            // One per egress policy: a process may hold gateways with different ones (tests).
            let mut clients = cell.borrow_mut();
            if let Some(local) = clients.iter().find(|l| std::sync::Arc::ptr_eq(&l.egress, &self.egress)) {
                return Ok(pick(local));
            }
            let failed = |e: anyhow::Error| UpstreamError::Protocol(e.to_string());
            let local = Local {
                egress: self.egress.clone(),
                client: Self::build(&self.egress, true, None).map_err(failed)?,
                direct: crate::direct::client(self.egress.clone()).map_err(failed)?,
            };
            let picked = pick(&local);
            clients.push(local);
            Ok(picked)
        })
    }

    fn build(
        egress: &std::sync::Arc<crate::egress::Egress>,
        verify: bool,
        ca: Option<&str>,
    ) -> anyhow::Result<reqwest::Client> {
        let mut builder = egress
            .builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .danger_accept_invalid_certs(!verify);
        if let Some(pem) = ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(builder.build()?)
    }

    pub fn for_server(&self, server: &ServerEntry) -> Result<reqwest::Client, UpstreamError> {
        if default_tls(server) {
            return self.local(|l| l.client.clone());
        }
        let key = (server.tls_reject_unauthorized, server.tls_ca_certificate.clone());
        let mut custom = self.custom.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = custom.get(&key) {
            return Ok(client.clone());
        }
        let client =
            Self::build(&self.egress, key.0, key.1.as_deref()).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        custom.insert(key, client.clone());
        Ok(client)
    }

    /// A request to the server's URL with its configured headers and the caller's credential.
    pub fn request(
        &self,
        server: &ServerEntry,
        auth: &Headers,
        method: reqwest::Method,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let url = server.url.as_deref().ok_or_else(|| UpstreamError::Protocol("the server has no URL".into()))?;
        self.request_to(server, auth, method, parsed(url)?.0)
    }

    /// A request to another URL of the server (a legacy SSE message endpoint) with its
    /// configured headers, the caller's credential and the server's TLS settings.
    pub fn request_to(
        &self,
        server: &ServerEntry,
        auth: &Headers,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let url = url.into_url().map_err(|_| UpstreamError::Protocol("the server URL is invalid".into()))?;
        self.egress.check_url(&url).map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        let mut headers = HeaderMap::new();
        outgoing_headers(server, auth, &mut headers)?;
        Ok(self.for_server(server)?.request(method, url).headers(headers))
    }

    /// Relays a request to the server's URL: the given headers and body, the server's
    /// configured headers and the caller's credential. Waits at most the configured timeout for
    /// the response headers, as `send` does.
    pub async fn relay(
        &self,
        server: &ServerEntry,
        auth: &Headers,
        method: http::Method,
        mut headers: HeaderMap,
        body: bytes::Bytes,
    ) -> Result<Relayed, UpstreamError> {
        let url = server.url.as_deref().ok_or_else(|| UpstreamError::Protocol("the server has no URL".into()))?;
        let (url, uri) = parsed(url)?;
        self.egress.check_url(&url).map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        outgoing_headers(server, auth, &mut headers)?;
        if !default_tls(server) {
            // A pinned CA or no verification: reqwest's client for those settings.
            let request = self.for_server(server)?.request(method, url).headers(headers).body(body);
            return self.send(request).await.map(Relayed::from);
        }
        let direct = self.local(|l| l.direct.clone())?;
        let mut request = http::Request::new(http_body_util::Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        headers.insert(USER_AGENT, HeaderValue::from_static(crate::http_client::USER_AGENT));
        *request.headers_mut() = headers;
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, direct.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout(self.timeout.as_secs())),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(crate::direct::describe(&e))),
            Ok(Ok(response)) if response.status().is_redirection() => Err(redirected(response.status())),
            Ok(Ok(response)) => Ok(response.map(reqwest::Body::wrap)),
        };
        observe(started, &result);
        result
    }

    /// Sends, waiting at most the configured timeout for the response headers. The body may
    /// then stream for as long as it likes.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, UpstreamError> {
        let started = std::time::Instant::now();
        let result = self.send_timed(request).await;
        observe(started, &result);
        result
    }

    async fn send_timed(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, UpstreamError> {
        match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => Err(UpstreamError::Timeout(self.timeout.as_secs())),
            Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::Timeout(self.timeout.as_secs())),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(without_url(&e))),
            // Redirects are not followed: the credential would go along to wherever they point.
            Ok(Ok(response)) if response.status().is_redirection() => Err(redirected(response.status())),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// A POST of one message the gateway sends or rewrites, with the upstream session, the
    /// protocol version and routing headers that match the body.
    pub fn post_message(
        &self,
        server: &ServerEntry,
        auth: &Headers,
        session: Option<&str>,
        protocol_version: Option<&str>,
        message: &Value,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        // An upstream without sessions that takes only stateless requests: each carries the
        // envelope and the revision instead.
        let enveloped;
        let (session, protocol_version, message) = match session == Some(crate::bridge::STATELESS_UPSTREAM) {
            true => {
                enveloped = crate::bridge::enveloped(message);
                (None, Some(crate::guard::STATELESS), &enveloped)
            }
            false => (session, protocol_version, message),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        if let Some(s) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert(SESSION_HEADER, s);
        }
        if let Some(v) = protocol_version.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(VERSION_HEADER, v);
        }
        routing_headers(&mut headers, message);
        Ok(self.request(server, auth, reqwest::Method::POST)?.headers(headers).json(message))
    }

    /// POSTs one message and, for a request, reads its reply (from JSON or an SSE stream,
    /// skipping the notifications before it). Returns the upstream's session id header and the
    /// reply.
    pub async fn exchange(
        &self,
        server: &ServerEntry,
        auth: &Headers,
        session: Option<&str>,
        protocol_version: Option<&str>,
        message: &Value,
    ) -> Result<(Option<String>, Option<Value>), UpstreamError> {
        let request = self.post_message(server, auth, session, protocol_version, message)?;
        let work = async {
            let response = self.send(request).await?;
            let status = response.status();
            if !status.is_success() {
                return Err(UpstreamError::Status(status.as_u16()));
            }
            let session = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let Some(id) = message.get("id").filter(|_| message.get("method").is_some()) else {
                return Ok((session, None));
            };
            let reply = read_reply(response, id).await?;
            Ok((session, Some(reply)))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(self.timeout.as_secs())),
        }
    }
}

/// Upstreams with neither a pinned CA nor verification turned off.
fn default_tls(server: &ServerEntry) -> bool {
    server.tls_reject_unauthorized && server.tls_ca_certificate.is_none()
}

/// Adds what every request to the server carries: its configured headers and the caller's
/// credential. One that is not a valid header fails the request (the API validates both, so
/// this is a stored value from before a check), rather than going without it.
fn outgoing_headers(server: &ServerEntry, auth: &Headers, headers: &mut HeaderMap) -> Result<(), UpstreamError> {
    let configured = server.additional_headers.as_object().into_iter().flatten();
    let configured = configured.filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)));
    let credential = auth.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    for (name, value) in configured.chain(credential) {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => return Err(UpstreamError::Protocol(format!("the header {name:?} is not a valid HTTP header"))),
        }
    }
    Ok(())
}

/// Redirects are not followed: the credential would go along to wherever they point.
fn redirected(status: http::StatusCode) -> UpstreamError {
    UpstreamError::Unreachable(format!(
        "the upstream redirected (HTTP {}); register the URL it redirects to instead",
        status.as_u16()
    ))
}

/// Upstream latency, or the kind of failure, in the metrics.
fn observe<T>(started: std::time::Instant, result: &Result<T, UpstreamError>) {
    let m = crate::metrics::get();
    match result {
        Ok(_) => m.upstream_seconds.observe(started.elapsed().as_secs_f64()),
        Err(e) => {
            let kind = e.reason().trim_start_matches("upstream_");
            m.upstream_errors.get_or_create(&crate::metrics::KindLabels { kind: kind.into() }).inc();
        }
    }
}

/// `Mcp-Method` and `Mcp-Name` for a message the gateway itself sends or rewrites (the
/// stateless revision requires them, and they must match the body as forwarded).
fn routing_headers(headers: &mut HeaderMap, message: &Value) {
    if let Some(method) = message.get("method").and_then(Value::as_str).and_then(|m| HeaderValue::from_str(m).ok()) {
        headers.insert("mcp-method", method);
    }
    if let Some(name) = crate::guard::name_of(message).and_then(|n| HeaderValue::from_str(n).ok()) {
        headers.insert("mcp-name", name);
    }
}

/// reqwest errors name the URL, which may carry a secret query parameter.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the upstream");
    }
    text
}

async fn read_reply(response: reqwest::Response, id: &Value) -> Result<Value, UpstreamError> {
    if !crate::rewrite::is_sse(response.headers()) {
        let body = response.bytes().await.map_err(|e| UpstreamError::Unreachable(without_url(&e)))?;
        return serde_json::from_slice(&body).map_err(|e| UpstreamError::Protocol(e.to_string()));
    }
    let mut events = SseStream::from_bytes_stream(response.bytes_stream());
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let Some(message) = event.data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) else { continue };
        if message.get("id") == Some(id) && message.get("method").is_none() {
            return Ok(message);
        }
    }
    Err(UpstreamError::Protocol("the event stream ended before the reply".into()))
}
