//! The URLs clients see: a server's MCP URL (also the audience of gateway access tokens) and its
//! RFC 9728 protected resource metadata.

use serde_json::{json, Value};

/// A server's MCP URL under a public base URL: what clients connect to, and the audience of
/// the gateway's access tokens for it.
pub fn mcp_url(base: &str, tenant: &str, server: &str) -> String {
    format!("{base}/{tenant}/mcp/{server}/server")
}

/// The path of an MCP URL's protected resource metadata (RFC 9728 §3.1: the well-known
/// segment inserted before the resource's path).
pub fn resource_metadata_url(base: &str, tenant: &str, server: &str) -> String {
    format!("{base}/.well-known/oauth-protected-resource/{tenant}/mcp/{server}/server")
}

/// RFC 9728 metadata of an MCP URL: the gateway (the same public base URL) is its
/// authorization server. The same for every server, known or not, so it reveals nothing.
pub fn resource_metadata(base: &str, tenant: &str, server: &str) -> Value {
    json!({
        "resource": mcp_url(base, tenant, server),
        "authorization_servers": [base],
        "bearer_methods_supported": ["header"],
        "scopes_supported": crate::access_token::SCOPES,
        "resource_documentation": format!("{base}/api/docs"),
    })
}
