//! The gateway's own OAuth 2.1 authorization server, for MCP clients that sign people in
//! through the browser (DESIGN.md §1 way 1): client registration and metadata documents,
//! consent, authorization codes, refresh-token families and revocation. HTTP lives in
//! `pages::authorize` (the browser side) and `api::oauth` (the machine side).

pub mod clients;
pub mod grants;
pub mod redirect;

use chrono::Duration;
use serde_json::{json, Value};

/// An OAuth error response (RFC 6749 §5.2, RFC 7591 §3.2.2): one of the registered codes and
/// a sentence for the person reading the client's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self { error, description: description.into() }
    }

    pub fn server(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "authorization server failure");
        Self::new("server_error", "the authorization server failed; try again")
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }

    pub fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

/// What the authorization server is configured with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The issuer: the public base URL, no trailing slash.
    pub issuer: String,
    pub access_ttl: Duration,
    pub idle: Duration,
    pub max: Duration,
    pub allow_private_documents: bool,
}

impl ServerConfig {
    /// RFC 8414 authorization server metadata (also served as the OpenID discovery alias).
    pub fn metadata(&self) -> Value {
        let base = &self.issuer;
        let methods = ["none", "client_secret_basic", "client_secret_post"];
        json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "registration_endpoint": format!("{base}/oauth/register"),
            "revocation_endpoint": format!("{base}/oauth/revoke"),
            "jwks_uri": format!("{base}/oauth/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods,
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": grants::SCOPES,
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true,
            "service_documentation": format!("{base}/api/docs"),
        })
    }

    /// The tenant and server of an MCP URL of this gateway (a trailing slash tolerated).
    pub fn parse_resource(&self, resource: &str) -> Option<(String, String)> {
        let path = resource.strip_prefix(&self.issuer)?.trim_end_matches('/');
        let mut parts = path.strip_prefix('/')?.split('/');
        let (tenant, mcp, server, tail) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let slug = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (mcp == "mcp" && tail == "server" && parts.next().is_none() && slug(tenant) && slug(server))
            .then(|| (tenant.to_owned(), server.to_owned()))
    }

    /// The canonical form of an MCP URL: what access tokens name as their audience.
    pub fn canonical_resource(&self, tenant: &str, server: &str) -> String {
        mcpgate_proxy::routes::mcp_url(&self.issuer, tenant, server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        ServerConfig {
            issuer: "https://gw.example".into(),
            access_ttl: Duration::hours(1),
            idle: Duration::days(1),
            max: Duration::days(2),
            allow_private_documents: false,
        }
    }

    #[test]
    fn mcp_urls_of_this_gateway_are_resources_and_nothing_else_is() {
        let c = config();
        assert_eq!(
            c.parse_resource("https://gw.example/acme/mcp/github/server"),
            Some(("acme".into(), "github".into()))
        );
        assert_eq!(
            c.parse_resource("https://gw.example/acme/mcp/github/server/"),
            Some(("acme".into(), "github".into()))
        );
        for other in [
            "https://other.example/acme/mcp/github/server",
            "https://gw.example/acme/mcp/github",
            "https://gw.example/acme/mcp/github/server/x",
            "https://gw.example/acme/api/github/server",
            "https://gw.example/acme/mcp/github/server?x=1",
            "https://gw.example.evil/acme/mcp/github/server",
        ] {
            assert_eq!(c.parse_resource(other), None, "{other}");
        }
    }

    #[test]
    fn metadata_names_this_issuer_exactly() {
        let m = config().metadata();
        assert_eq!(m["issuer"], "https://gw.example");
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m["client_id_metadata_document_supported"], true);
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    }
}
