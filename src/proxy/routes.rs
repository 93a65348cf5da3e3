//! `/{tenant}/mcp/{server}/server`: authenticate from the snapshot, authorize, and relay to the
//! upstream. Request bodies (JSON-RPC messages, bounded) are read whole; responses, JSON or
//! SSE, are streamed back as they arrive.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::proxy::holder::PolicyHolder;
use crate::proxy::index::Subject;

/// Headers relayed from the client to the upstream and back. Everything else (cookies,
/// hop-by-hop headers, the caller's own Authorization) stays at the gateway.
const RELAYED_REQUEST: &[&str] =
    &["content-type", "accept", "mcp-session-id", "mcp-protocol-version", "last-event-id", "mcp-method", "mcp-name"];
const RELAYED_RESPONSE: &[&str] = &["content-type", "mcp-session-id", "mcp-protocol-version", "cache-control"];

/// Upper bound of one client message.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

pub struct ProxyState {
    pub policy: Arc<PolicyHolder>,
    pub client: reqwest::Client,
    pub public_base: String,
    pub clock: Clock,
}

impl ProxyState {
    pub fn new(policy: Arc<PolicyHolder>, public_base: String, clock: Clock) -> anyhow::Result<Self> {
        let client = crate::http_client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        Ok(Self { policy, client, public_base, clock })
    }
}

fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": code, "message": message.into()}))
}

/// A JSON-RPC error for the request's id, so MCP clients can show it.
fn rpc_error(status: StatusCode, body: &[u8], code: i64, message: String) -> HttpResponse {
    let id = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("id").cloned()).unwrap_or(Value::Null);
    HttpResponse::build(status).json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    crate::auth::token::from_bearer_header(req.headers().get(header::AUTHORIZATION)?.to_str().ok()?)
}

pub async fn handle(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<ProxyState>,
) -> HttpResponse {
    let (tenant, server) = path.into_inner();
    // One snapshot decides the whole request.
    let Some(policy) = state.policy.current() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_policy",
            "the gateway has no verified policy yet; try again shortly",
        );
    };
    let subject = bearer(&req).and_then(|t| policy.authenticate(t, state.clock.now()));
    let Some(subject) = subject else {
        let metadata =
            format!("{}/.well-known/oauth-protected-resource/{tenant}/mcp/{server}/server", state.public_base);
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, format!("Bearer resource_metadata=\"{metadata}\"")))
            .json(json!({"error": "unauthenticated", "message": "a valid bearer token is required"}));
    };
    let Some(entry) = policy.server(&tenant, &server) else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such MCP server");
    };
    if !policy.in_tenant(subject, entry.tenant) {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such MCP server");
    }
    if policy.role(subject, entry).is_none() {
        let who = match subject {
            Subject::User(_) => "you are",
            Subject::VirtualAccount(_) => "this virtual account is",
        };
        return json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{who} not a collaborator on {tenant}/{server}; ask a manager of the server for access"),
        );
    }
    let (Some(url), "remote") = (entry.url.as_deref(), entry.kind.as_str()) else {
        return rpc_error(
            StatusCode::NOT_IMPLEMENTED,
            &body,
            -32601,
            "virtual servers are not served by the proxy yet".into(),
        );
    };
    let method = match *req.method() {
        Method::POST => reqwest::Method::POST,
        Method::GET => reqwest::Method::GET,
        Method::DELETE => reqwest::Method::DELETE,
        _ => return json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST, GET or DELETE"),
    };
    let mut upstream = state.client.request(method, url);
    for name in RELAYED_REQUEST {
        if let Some(value) = req.headers().get(*name) {
            upstream = upstream.header(*name, value.as_bytes());
        }
    }
    if let Some(headers) = entry.additional_headers.as_object() {
        for (k, v) in headers {
            if let Some(v) = v.as_str() {
                upstream = upstream.header(k.as_str(), v);
            }
        }
    }
    if !body.is_empty() {
        upstream = upstream.body(body.clone());
    }
    let response = match upstream.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(tenant, server, error = %e, "upstream request failed");
            return rpc_error(
                StatusCode::BAD_GATEWAY,
                &body,
                -32603,
                format!("the upstream of {tenant}/{server} is unreachable"),
            );
        }
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HttpResponse::build(status);
    for name in RELAYED_RESPONSE {
        if let Some(value) = response.headers().get(*name) {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value.as_bytes()))
            {
                out.insert_header((n, v));
            }
        }
    }
    out.streaming(response.bytes_stream().map(|chunk| chunk.map_err(actix_web::error::ErrorBadGateway)))
}
