//! Upstream probe: connects to a remote MCP server as a client (initialize, then tools/list)
//! and reports what it found, so an admin sees the tools before granting them.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::servers::{ProbedTool, Transport, Upstream};

/// Why a probe failed, in a form an admin can act on.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProbeFailure {
    /// `timeout`, `unreachable`, `tls_error`, `unauthorized`, `http_error`, `protocol_error`,
    /// `credential_required` (the caller's own credential is missing; the message says where
    /// to add it) or `credential_unavailable`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProbeReport {
    pub reachable: bool,
    /// The protocol revision the upstream agreed to.
    pub protocol_version: Option<String>,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    pub tools: Vec<ProbedTool>,
    pub error: Option<ProbeFailure>,
    /// How long the probe took.
    pub duration_ms: u64,
}

/// What a successful handshake found, whatever the transport.
pub(crate) struct Found {
    pub protocol_version: String,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    pub tools: Vec<ProbedTool>,
}

pub(crate) fn failure(code: &str, message: impl Into<String>) -> ProbeFailure {
    ProbeFailure { code: code.to_owned(), message: message.into() }
}

/// Puts a failure in one of a few buckets. rmcp wraps transport errors without always
/// exposing their sources, so the causes' text is consulted as well as their types.
pub(crate) fn classify(err: &(dyn StdError + 'static), url: &str) -> ProbeFailure {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(err);
    let mut text = String::new();
    while let Some(e) = cause {
        if let Some(re) = e.downcast_ref::<reqwest::Error>() {
            if re.is_timeout() {
                return failure("timeout", format!("{url} did not answer in time"));
            }
            if re.is_connect() {
                return connect_failure(url, &format!("{re:?}"), &root_cause(re));
            }
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&e.to_string());
        cause = e.source();
    }
    let lower = text.to_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        return failure("timeout", format!("{url} did not answer in time"));
    }
    if lower.contains("error sending request") || lower.contains("connection refused") || lower.contains("connect") {
        return connect_failure(url, &lower, &text);
    }
    if lower.contains("401")
        || lower.contains("403")
        || lower.contains("auth required")
        || lower.contains("unauthorized")
    {
        return failure("unauthorized", format!("{url} requires credentials the probe does not have: {text}"));
    }
    if lower.contains("unexpected server response") || lower.contains("status") {
        return failure("http_error", format!("{url} answered with an HTTP error: {text}"));
    }
    failure("protocol_error", format!("{url} did not complete the MCP handshake: {text}"))
}

fn connect_failure(url: &str, debug: &str, cause: &str) -> ProbeFailure {
    if debug.to_lowercase().contains("certificate") {
        failure("tls_error", format!("the TLS certificate of {url} was not accepted: {cause}"))
    } else {
        failure("unreachable", format!("could not connect to {url}: {cause}"))
    }
}

fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut last = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn client(
    upstream: &Upstream,
    timeout: Duration,
    egress: &std::sync::Arc<crate::egress::Egress>,
) -> Result<reqwest::Client, ProbeFailure> {
    egress.check_url(&upstream.url).map_err(|e| failure("egress_refused", e.to_string()))?;
    let mut builder = egress
        .builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .danger_accept_invalid_certs(!upstream.tls_reject_unauthorized);
    if let Some(pem) = &upstream.tls_ca_certificate {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| failure("tls_error", format!("the configured CA certificate is invalid: {e}")))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| failure("protocol_error", format!("could not build an HTTP client: {e}")))
}

pub(crate) fn headers(upstream: &Upstream) -> HashMap<HeaderName, HeaderValue> {
    upstream
        .additional_headers
        .iter()
        .filter_map(|(k, v)| Some((HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?)))
        .collect()
}

async fn streamable_http(upstream: &Upstream, client: reqwest::Client) -> Result<Found, ProbeFailure> {
    let url = upstream.url.as_str();
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers(upstream));
    let transport = StreamableHttpClientTransport::with_client(client, config);
    let hello = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("mcpgate-probe", env!("CARGO_PKG_VERSION")),
    );
    let service = hello.serve(transport).await.map_err(|e| classify(&e, url))?;
    let info = service.peer_info();
    let listed = service.list_all_tools().await;
    // Ends the upstream session (DELETE) whatever the listing gave.
    let _ = service.cancel().await;
    let tools = listed.map_err(|e| classify(&e, url))?;
    let info = info.ok_or_else(|| failure("protocol_error", format!("{url} sent no initialize result")))?;
    Ok(Found {
        protocol_version: info.protocol_version.to_string(),
        server_name: info.server_info.as_ref().map(|i| i.name.clone()),
        server_version: info.server_info.as_ref().map(|i| i.version.clone()),
        tools: tools
            .into_iter()
            .map(|t| ProbedTool {
                name: t.name.to_string(),
                title: t.title.clone(),
                description: t.description.as_ref().map(|d| d.to_string()),
            })
            .collect(),
    })
}

/// Probes an upstream, never taking longer than `timeout`.
impl ProbeReport {
    /// A probe that could not start.
    pub fn not_started(code: &str, message: String) -> Self {
        Self {
            reachable: false,
            protocol_version: None,
            server_name: None,
            server_version: None,
            tools: Vec::new(),
            error: Some(ProbeFailure { code: code.to_owned(), message }),
            duration_ms: 0,
        }
    }
}

pub async fn probe(
    upstream: &Upstream,
    timeout: Duration,
    egress: &std::sync::Arc<crate::egress::Egress>,
) -> ProbeReport {
    let started = Instant::now();
    let result = match client(upstream, timeout, egress) {
        Err(e) => Err(e),
        Ok(client) => {
            let work = async {
                match upstream.transport {
                    Transport::StreamableHttp => streamable_http(upstream, client).await,
                    Transport::Sse => crate::legacy_sse::probe(upstream, client).await,
                }
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(failure(
                    "timeout",
                    format!("{} did not finish the handshake within {} s", upstream.url, timeout.as_secs()),
                )),
            }
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(found) => ProbeReport {
            reachable: true,
            protocol_version: Some(found.protocol_version),
            server_name: found.server_name,
            server_version: found.server_version,
            tools: found.tools,
            error: None,
            duration_ms,
        },
        Err(error) => ProbeReport {
            reachable: false,
            protocol_version: None,
            server_name: None,
            server_version: None,
            tools: Vec::new(),
            error: Some(error),
            duration_ms,
        },
    }
}
