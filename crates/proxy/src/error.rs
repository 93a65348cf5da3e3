//! Every way the proxy can refuse or fail a request, in one enum: its reason label (the audit
//! trail's `reason`, and metrics later), HTTP status, JSON-RPC code and the answer the client
//! gets. A request step returns `Result<_, ProxyError>`; the handler turns an error into the
//! recorded decision and the response in one place.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::credentials::CredentialError;
use crate::upstream::UpstreamError;

/// JSON-RPC error codes the proxy answers with.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL: i64 = -32603;
/// Gateway-side failures reaching the upstream (implementation-defined server error range).
pub const UPSTREAM_FAILED: i64 = -32002;
/// Too many requests from one identity (`429`).
pub const RATE_LIMITED: i64 = -32005;
/// The caller must supply or authorize an upstream credential first; `data.url` says where.
pub const CREDENTIAL_REQUIRED: i64 = -32003;
/// MCP 2025-11-25: the client must open a URL (URL-mode elicitation) before retrying.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;
/// MCP 2026-07-28: the protocol headers and the body disagree.
pub const HEADER_MISMATCH: i64 = -32020;
/// MCP 2026-07-28: a protocol version the server does not serve (`data` names those it does).
pub const UNSUPPORTED_VERSION: i64 = -32022;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    ForbiddenOrigin(&'static str),
    #[error("the gateway has no verified policy yet; try again shortly")]
    NoPolicy,
    /// No usable bearer token; `presented` says whether one was sent at all.
    #[error("{}", if *presented { "the bearer token is invalid, expired or revoked" } else { "a valid bearer token is required" })]
    Unauthenticated { presented: bool, resource_metadata: String },
    /// An identity provider's JWT that is not accepted, and why.
    #[error("{rejection}")]
    IdpToken { rejection: mcpgate_policy::idp::Rejection, resource_metadata: String },
    #[error("too many requests from this identity; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("the gateway is at capacity; retry shortly")]
    AtCapacity,
    #[error("the message did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("the message is larger than {0} MiB")]
    BodyTooLarge(usize),
    #[error("parse error: {0}")]
    Parse(String),
    /// A message the protocol does not allow (shape, headers, batches).
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    BatchNotSupported(String),
    #[error("no such MCP server")]
    NotFound,
    #[error("{who} not a collaborator on {tenant}/{server}; ask a manager of the server for access")]
    NotCollaborator { who: &'static str, tenant: String, server: String },
    #[error("session not found; initialize a new one")]
    UnknownSession,
    /// A virtual server's members changed since the session began.
    #[error("session not found; initialize a new one")]
    StaleSession,
    #[error("tool {0} is disabled on this server")]
    ToolDisabled(String),
    #[error("tool {0} is not offered by this server")]
    UnknownTool(String),
    #[error("{0}")]
    InvalidParams(String),
    #[error("{0} is not supported by virtual servers")]
    MethodNotFound(String),
    /// A stateless request whose `_meta` envelope lacks what the revision requires.
    #[error("{0}")]
    BadEnvelope(String),
    #[error("{0}")]
    HeaderMismatch(String),
    #[error("protocol version {requested} is not supported; supported: {}", crate::bridge::SUPPORTED.join(", "))]
    UnsupportedVersion { requested: String },
    /// A method the stateless revision does not have (or removed), or this server cannot serve.
    #[error("method not found: {0}")]
    NoSuchMethod(String),
    #[error("{0}/{1} forwards your own identity-provider token to its upstream; connect with a token issued by your organisation's identity provider (personal access tokens, virtual-account tokens and gateway tokens are never forwarded)")]
    PassthroughNeedsIdpToken(String, String),
    #[error("no member server of this virtual server is reachable")]
    MembersUnavailable,
    #[error("no member server offers this resource")]
    NoResourceOwner,
    /// Reaching the upstream failed (or it needs the caller's own credential first), for the
    /// server named `0`.
    #[error("{0}: {1}")]
    Upstream(String, UpstreamError),
}

impl ProxyError {
    /// The stable label of the audit trail (and of metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ForbiddenOrigin(_) => "forbidden_origin",
            Self::NoPolicy => "no_policy",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::IdpToken { rejection, .. } => rejection.code(),
            Self::RateLimited { .. } => "rate_limited",
            Self::AtCapacity => "at_capacity",
            Self::BodyTimeout(_) => "body_timeout",
            Self::BodyUnreadable => "bad_request",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::Parse(_) => "parse_error",
            Self::InvalidRequest(_) => "invalid_request",
            Self::BatchNotSupported(_) => "batch_not_supported",
            Self::NotFound => "not_found",
            Self::NotCollaborator { .. } => "not_collaborator",
            Self::UnknownSession => "unknown_session",
            Self::StaleSession => "stale_session",
            Self::ToolDisabled(_) => "tool_disabled",
            Self::UnknownTool(_) => "unknown_tool",
            Self::InvalidParams(_) => "invalid_params",
            Self::MethodNotFound(_) | Self::NoSuchMethod(_) => "method_not_found",
            Self::BadEnvelope(_) => "invalid_params",
            Self::HeaderMismatch(_) => "header_mismatch",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::PassthroughNeedsIdpToken(..) => "passthrough_needs_idp_token",
            Self::MembersUnavailable => "members_unavailable",
            Self::NoResourceOwner => "not_found",
            Self::Upstream(_, e) => e.reason(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::ForbiddenOrigin(_) | Self::NotCollaborator { .. } => StatusCode::FORBIDDEN,
            Self::NoPolicy | Self::AtCapacity => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated { .. } | Self::IdpToken { .. } => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyUnreadable
            | Self::Parse(_)
            | Self::InvalidRequest(_)
            | Self::BatchNotSupported(_)
            | Self::BadEnvelope(_)
            | Self::HeaderMismatch(_)
            | Self::UnsupportedVersion { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound | Self::UnknownSession | Self::StaleSession | Self::NoSuchMethod(_) => StatusCode::NOT_FOUND,
            // JSON-RPC level refusals of an accepted request.
            Self::ToolDisabled(_)
            | Self::UnknownTool(_)
            | Self::InvalidParams(_)
            | Self::MethodNotFound(_)
            | Self::PassthroughNeedsIdpToken(..)
            | Self::NoResourceOwner => StatusCode::OK,
            Self::MembersUnavailable => StatusCode::BAD_GATEWAY,
            Self::Upstream(_, UpstreamError::Credential(CredentialError::ActionRequired { .. })) => StatusCode::OK,
            Self::Upstream(_, UpstreamError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(..) => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn rpc_code(&self) -> i64 {
        match self {
            Self::Parse(_) => PARSE_ERROR,
            Self::ToolDisabled(_) | Self::UnknownTool(_) | Self::InvalidParams(_) | Self::BadEnvelope(_) => {
                INVALID_PARAMS
            }
            Self::MethodNotFound(_) | Self::NoSuchMethod(_) => METHOD_NOT_FOUND,
            Self::HeaderMismatch(_) => HEADER_MISMATCH,
            Self::UnsupportedVersion { .. } => UNSUPPORTED_VERSION,
            Self::RateLimited { .. } => RATE_LIMITED,
            Self::AtCapacity => INTERNAL,
            Self::PassthroughNeedsIdpToken(..) => CREDENTIAL_REQUIRED,
            Self::MembersUnavailable | Self::NoResourceOwner | Self::Upstream(..) => UPSTREAM_FAILED,
            _ => INVALID_REQUEST,
        }
    }

    /// `denied` for refusals, `error` for failures on the way upstream.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Upstream(_, UpstreamError::Credential(CredentialError::ActionRequired { .. })) => "denied",
            Self::Upstream(..) | Self::MembersUnavailable => "error",
            _ => "denied",
        }
    }

    /// Whether the decision is worth a record: refusals of whom and what, not malformed
    /// traffic (which names no one) or the gateway's own state.
    pub fn recorded(&self) -> bool {
        !matches!(
            self,
            Self::ForbiddenOrigin(_)
                | Self::NoPolicy
                | Self::AtCapacity
                | Self::BodyTimeout(_)
                | Self::BodyUnreadable
                | Self::BodyTooLarge(_)
                | Self::Parse(_)
                | Self::InvalidRequest(_)
                | Self::InvalidParams(_)
                | Self::BadEnvelope(_)
                | Self::HeaderMismatch(_)
                | Self::UnsupportedVersion { .. }
        )
    }

    /// The answer: a JSON-RPC error for the request's `id` where the client is speaking
    /// JSON-RPC already; a plain JSON error for what is refused at the HTTP level.
    pub fn response(&self, id: &Value, url_elicitation: bool) -> HttpResponse {
        let status = self.status();
        match self {
            Self::ForbiddenOrigin(_) | Self::NoPolicy | Self::NotFound | Self::NotCollaborator { .. } => {
                HttpResponse::build(status).json(json!({"error": self.reason(), "message": self.to_string()}))
            }
            Self::BodyUnreadable => {
                HttpResponse::build(status).json(json!({"error": "bad_request", "message": self.to_string()}))
            }
            Self::Unauthenticated { presented, resource_metadata } => {
                // RFC 6750 §3.1: a token that was sent but is not (or no longer) good says so,
                // which tells OAuth clients to refresh or sign in again rather than give up.
                let challenge = if *presented {
                    format!("Bearer error=\"invalid_token\", error_description=\"the token is invalid, expired or revoked\", resource_metadata=\"{resource_metadata}\"")
                } else {
                    format!("Bearer resource_metadata=\"{resource_metadata}\"")
                };
                HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, challenge))
                    .json(json!({"error": "unauthenticated", "message": self.to_string()}))
            }
            Self::IdpToken { rejection, resource_metadata } => {
                let challenge = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{resource_metadata}\"",
                    rejection.code()
                );
                HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, challenge))
                    .json(json!({"error": rejection.code(), "message": self.to_string()}))
            }
            Self::RateLimited { retry_after } => HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, retry_after.to_string()))
                .json(json!({"jsonrpc": "2.0", "id": Value::Null, "error": {"code": RATE_LIMITED, "message": self.to_string()}})),
            Self::Upstream(_, UpstreamError::Credential(CredentialError::ActionRequired { message, url })) => {
                credential_required(id, message, url, url_elicitation)
            }
            Self::UnsupportedVersion { requested } => HttpResponse::build(status).json(json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": UNSUPPORTED_VERSION,
                    "message": self.to_string(),
                    "data": {"supported": crate::bridge::SUPPORTED, "requested": requested},
                },
            })),
            _ => rpc_error(status, id, self.rpc_code(), self.to_string()),
        }
    }
}

/// A JSON-RPC error for the request's id, so MCP clients can show it.
pub fn rpc_error(status: StatusCode, id: &Value, code: i64, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}}))
}

/// The answer to a request that needs the caller's own upstream credential first: the URL to
/// fix it, as a URL elicitation when the client can open one, else in the message and data.
pub fn credential_required(id: &Value, message: &str, url: &str, url_elicitation: bool) -> HttpResponse {
    let error = if url_elicitation {
        json!({
            "code": URL_ELICITATION_REQUIRED,
            "message": message,
            "data": {"elicitations": [{
                "mode": "url",
                "elicitationId": uuid::Uuid::new_v4().to_string(),
                "url": url,
                "message": message,
            }]},
        })
    } else {
        json!({"code": CREDENTIAL_REQUIRED, "message": format!("{message} Open {url}"), "data": {"url": url}})
    };
    HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": id, "error": error}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_reason_a_status_and_a_code() {
        let cases = [
            (ProxyError::NotFound, "not_found", 404),
            (ProxyError::ToolDisabled("rm".into()), "tool_disabled", 200),
            (ProxyError::RateLimited { retry_after: 3 }, "rate_limited", 429),
            (ProxyError::Upstream("acme/x".into(), UpstreamError::Timeout(5)), "upstream_timeout", 504),
            (ProxyError::Upstream("acme/x".into(), UpstreamError::Status(500)), "upstream_status", 502),
            (ProxyError::BatchNotSupported("no".into()), "batch_not_supported", 400),
            (ProxyError::BadEnvelope("no _meta".into()), "invalid_params", 400),
            (ProxyError::HeaderMismatch("differs".into()), "header_mismatch", 400),
            (ProxyError::UnsupportedVersion { requested: "v9".into() }, "unsupported_version", 400),
            (ProxyError::NoSuchMethod("ping".into()), "method_not_found", 404),
        ];
        for (error, reason, status) in cases {
            assert_eq!((error.reason(), error.status().as_u16()), (reason, status), "{error:?}");
        }
        assert_eq!(ProxyError::ToolDisabled("rm".into()).rpc_code(), INVALID_PARAMS);
        assert_eq!(ProxyError::Upstream("a/b".into(), UpstreamError::Status(500)).outcome(), "error");
        assert!(!ProxyError::Parse("x".into()).recorded());
        assert_eq!(ProxyError::HeaderMismatch("x".into()).rpc_code(), HEADER_MISMATCH);
        assert_eq!(ProxyError::UnsupportedVersion { requested: "v9".into() }.rpc_code(), UNSUPPORTED_VERSION);
        assert_eq!(ProxyError::NoSuchMethod("ping".into()).rpc_code(), METHOD_NOT_FOUND);
    }
}
