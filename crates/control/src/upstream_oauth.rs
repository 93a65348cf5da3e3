//! The gateway as an OAuth client of an upstream's authorization server: discovery (RFC 9728
//! protected resource metadata, then RFC 8414 / OpenID discovery, in the order the MCP
//! authorization spec gives), registration (pre-registered, RFC 7591 dynamic registration, or
//! a Client ID Metadata Document), PKCE and token requests.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::challenge::challenge_param;
use crate::outbound::OAuth2Auth;

/// Largest metadata or token response read.
const MAX_RESPONSE: usize = 256 * 1024;

/// Where the gateway talks to: endpoints and the client it is there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoints {
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// The `resource` (RFC 8707) to ask tokens for: the protected resource's own identifier.
    pub resource: String,
    /// Scopes to ask for when the configuration names none: the `scope` of the upstream's
    /// `401` challenge, else its advertised `scopes_supported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// How the client authenticates at the token endpoint: `client_secret_basic`,
    /// `client_secret_post` or `none`.
    #[serde(default = "basic")]
    pub auth_method: String,
}

fn basic() -> String {
    "client_secret_basic".into()
}

#[derive(Clone, Debug)]
pub struct OAuthClient {
    pub issuer: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub endpoints: Endpoints,
}

#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The authorization server answered with an RFC 6749 error.
    #[error("the authorization server refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected { error: String, description: Option<String> },
    /// It could not be reached.
    #[error("the authorization server could not be reached: {0}")]
    Network(String),
    /// It answered something that is not OAuth.
    #[error("the authorization server answered unexpectedly: {0}")]
    Upstream(String),
}

impl OAuthError {
    /// The connection status reason this failure leaves behind.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Rejected { error, .. } if error == "invalid_grant" => "invalid_grant",
            Self::Rejected { .. } => "refresh_failed",
            Self::Network(_) => "network_error",
            Self::Upstream(_) => "upstream_error",
        }
    }
}

/// The HTTP client for authorization servers: bounded waits, the egress policy, no redirects
/// followed (a token endpoint that redirects is misconfigured, and following would resend
/// credentials). Discovered endpoints are checked like configured ones.
pub struct Http {
    client: reqwest::Client,
    egress: std::sync::Arc<crate::egress::Egress>,
}

impl Http {
    pub fn new(egress: std::sync::Arc<crate::egress::Egress>) -> anyhow::Result<Self> {
        let client =
            egress.builder().connect_timeout(Duration::from_secs(10)).timeout(Duration::from_secs(20)).build()?;
        Ok(Self { client, egress })
    }

    fn checked(&self, url: &str) -> Result<url::Url, OAuthError> {
        let parsed = url::Url::parse(url).map_err(|_| OAuthError::Upstream(format!("{url:?} is not a URL")))?;
        self.egress.check_url(&parsed).map_err(|e| OAuthError::Network(e.to_string()))?;
        Ok(parsed)
    }

    fn get(&self, url: &str) -> Result<reqwest::RequestBuilder, OAuthError> {
        Ok(self.client.get(self.checked(url)?))
    }

    fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, OAuthError> {
        Ok(self.client.post(self.checked(url)?))
    }
}

fn network(e: reqwest::Error) -> OAuthError {
    OAuthError::Network(e.without_url().to_string())
}

async fn read_json(response: reqwest::Response) -> Result<(reqwest::StatusCode, Value), OAuthError> {
    let status = response.status();
    // Read no more than the limit, whatever the server sends or claims.
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk.map_err(network)?;
        if bytes.len() + chunk.len() > MAX_RESPONSE {
            return Err(OAuthError::Upstream("the response is too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    let value = serde_json::from_slice(&bytes)
        .map_err(|_| OAuthError::Upstream(format!("HTTP {status} without a JSON body")))?;
    Ok((status, value))
}

async fn get_json(http: &Http, url: &str) -> Option<Value> {
    let response = http.get(url).ok()?.header("accept", "application/json").send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    read_json(response).await.ok().map(|(_, v)| v).filter(Value::is_object)
}

/// Candidate metadata URLs for a URL with an optional path: path-suffixed first, then root.
fn well_known(base: &url::Url, name: &str) -> Vec<String> {
    let origin = base.origin().ascii_serialization();
    let path = base.path().trim_end_matches('/');
    let mut out = Vec::new();
    if !path.is_empty() {
        out.push(format!("{origin}/.well-known/{name}{path}"));
    }
    out.push(format!("{origin}/.well-known/{name}"));
    out
}

/// RFC 9728 protected resource metadata of an MCP server — from the `401` challenge, else the
/// well-known locations — and the scope that challenge asked for.
async fn protected_resource(http: &Http, server_url: &url::Url) -> (Option<Value>, Vec<String>) {
    let probe = match http.post(server_url.as_str()) {
        Ok(request) => request
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcpgate","version":"discovery"}}}"#)
            .send()
            .await
            .ok(),
        Err(_) => None,
    };
    let challenge = probe
        .as_ref()
        .filter(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED)
        .and_then(|r| r.headers().get("www-authenticate"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let scopes = challenge
        .as_deref()
        .and_then(|c| challenge_param(c, "scope"))
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let hinted = challenge.as_deref().and_then(|c| challenge_param(c, "resource_metadata"));
    let mut candidates: Vec<String> = hinted.into_iter().collect();
    candidates.extend(well_known(server_url, "oauth-protected-resource"));
    for url in candidates {
        if let Some(doc) = get_json(http, &url).await {
            return (Some(doc), scopes);
        }
    }
    (None, scopes)
}

/// RFC 8414 / OpenID Connect discovery for an issuer, in the MCP spec's order.
async fn authorization_server(http: &Http, issuer: &str) -> Option<Value> {
    let base = url::Url::parse(issuer).ok()?;
    let origin = base.origin().ascii_serialization();
    let path = base.path().trim_end_matches('/');
    let candidates = if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    };
    for url in candidates {
        if let Some(doc) = get_json(http, &url).await {
            return Some(doc);
        }
    }
    None
}

fn str_field(doc: &Value, name: &str) -> Option<String> {
    doc.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// Whether a resource identifier covers the server URL: same origin, and the server's path
/// at or below the resource's.
fn covers(resource: &str, server: &url::Url) -> bool {
    let Ok(resource) = url::Url::parse(resource) else { return false };
    let base = resource.path().trim_end_matches('/');
    let path = server.path();
    resource.origin() == server.origin()
        && (path == base || path.trim_end_matches('/') == base || path.starts_with(&format!("{base}/")))
}

/// Picks the token endpoint authentication: the one the registration answered, else the
/// best the authorization server lists that fits the client (a secret or none).
fn auth_method(metadata: &Value, has_secret: bool) -> String {
    let listed: Vec<&str> = metadata
        .get("token_endpoint_auth_methods_supported")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !has_secret {
        return "none".into();
    }
    // RFC 8414: a server that lists nothing supports client_secret_basic.
    if listed.is_empty() || listed.contains(&"client_secret_basic") {
        return "client_secret_basic".into();
    }
    if listed.contains(&"client_secret_post") {
        return "client_secret_post".into();
    }
    "client_secret_basic".into()
}

/// Discovers where an upstream's authorization server is and what it supports: the configured
/// endpoints, else RFC 9728 resource metadata, then RFC 8414 / OpenID discovery; servers of
/// the 2025-03-26 revision without any metadata get the default `/authorize`, `/token` and
/// `/register` at their origin.
async fn discover(
    http: &Http,
    server_url: &str,
    config: &OAuth2Auth,
) -> Result<(Option<String>, Value, String, Vec<String>), OAuthError> {
    let server = url::Url::parse(server_url).map_err(|e| OAuthError::Upstream(format!("server URL: {e}")))?;
    if let (Some(authorization), Some(token)) = (&config.authorization_url, &config.token_url) {
        let metadata = json!({"authorization_endpoint": authorization, "token_endpoint": token,
            "registration_endpoint": config.registration_url});
        return Ok((None, metadata, server_url.to_owned(), Vec::new()));
    }
    let (prm, challenge_scopes) = protected_resource(http, &server).await;
    let mut resource = server_url.to_owned();
    let mut scopes = challenge_scopes;
    if let Some(prm) = &prm {
        resource = str_field(prm, "resource").unwrap_or(resource);
        // RFC 9728 §3.3: metadata about another resource must not be acted on (a server could
        // otherwise obtain tokens meant for someone else's API).
        if !covers(&resource, &server) {
            return Err(OAuthError::Upstream(format!(
                "the protected resource metadata is for {resource}, not for {server_url}"
            )));
        }
        if scopes.is_empty() {
            scopes = prm
                .get("scopes_supported")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
        }
    }
    // Without resource metadata, older servers act as their own authorization server.
    let origin = server.origin().ascii_serialization();
    let issuer = prm
        .as_ref()
        .and_then(|p| p.get("authorization_servers"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| origin.clone());
    let mut metadata = match authorization_server(http, &issuer).await {
        Some(metadata) => metadata,
        None if prm.is_none() => json!({"authorization_endpoint": format!("{origin}/authorize"),
            "token_endpoint": format!("{origin}/token"), "registration_endpoint": format!("{origin}/register")}),
        None => return Err(OAuthError::Upstream(format!("no authorization server metadata found for {issuer}"))),
    };
    // Configured endpoints win over discovered ones.
    for (field, configured) in [
        ("token_endpoint", &config.token_url),
        ("authorization_endpoint", &config.authorization_url),
        ("registration_endpoint", &config.registration_url),
    ] {
        if let Some(url) = configured {
            metadata[field] = json!(url);
        }
    }
    Ok((Some(issuer), metadata, resource, scopes))
}

/// Finds the endpoints for a server (configured, or discovered) and the client the gateway is
/// there: pre-registered, its Client ID Metadata Document where the server takes one (and the
/// document is served over https), or registered dynamically — the MCP spec's order.
pub async fn establish(
    http: &Http,
    server_url: &str,
    config: &OAuth2Auth,
    redirect_uri: &str,
    metadata_document: &str,
) -> Result<OAuthClient, OAuthError> {
    let (issuer, metadata, resource, scopes) = discover(http, server_url, config).await?;
    let token_endpoint = str_field(&metadata, "token_endpoint")
        .ok_or_else(|| OAuthError::Upstream("the authorization server names no token_endpoint".into()))?;
    let mut endpoints = Endpoints {
        authorization_endpoint: str_field(&metadata, "authorization_endpoint"),
        token_endpoint,
        revocation_endpoint: str_field(&metadata, "revocation_endpoint"),
        resource,
        scopes,
        auth_method: String::new(),
    };
    if let Some(client_id) = &config.client_id {
        // An https client id is a Client ID Metadata Document: a public client.
        let secret = config.client_secret.clone().filter(|_| !client_id.starts_with("https://"));
        endpoints.auth_method = auth_method(&metadata, secret.is_some());
        return Ok(OAuthClient { issuer, client_id: client_id.clone(), client_secret: secret, endpoints });
    }
    let takes_documents = metadata.get("client_id_metadata_document_supported").and_then(Value::as_bool) == Some(true);
    if takes_documents && metadata_document.starts_with("https://") {
        endpoints.auth_method = "none".into();
        return Ok(OAuthClient { issuer, client_id: metadata_document.to_owned(), client_secret: None, endpoints });
    }
    if let Some(registration) = str_field(&metadata, "registration_endpoint") {
        let wanted = auth_method(&metadata, true);
        let (client_id, client_secret, answered) = register(http, &registration, redirect_uri, &wanted).await?;
        endpoints.auth_method = answered.unwrap_or_else(|| auth_method(&metadata, client_secret.is_some()));
        return Ok(OAuthClient { issuer, client_id, client_secret, endpoints });
    }
    Err(OAuthError::Upstream(
        "the authorization server offers no registration and no client id is configured; set client_id".into(),
    ))
}

/// The token endpoint of a client-credentials configuration: configured, or discovered.
pub async fn token_endpoint(
    http: &Http,
    server_url: &str,
    config: &OAuth2Auth,
) -> Result<(String, String), OAuthError> {
    if let Some(url) = &config.token_url {
        return Ok((url.clone(), "client_secret_basic".into()));
    }
    let (_, metadata, _, _) = discover(http, server_url, config).await?;
    let url = str_field(&metadata, "token_endpoint")
        .ok_or_else(|| OAuthError::Upstream("the authorization server names no token_endpoint".into()))?;
    Ok((url, auth_method(&metadata, true)))
}

/// RFC 7591 dynamic registration of the gateway's callback. Returns the client id, its secret
/// and the token endpoint authentication the server settled on.
async fn register(
    http: &Http,
    registration_endpoint: &str,
    redirect_uri: &str,
    auth_method: &str,
) -> Result<(String, Option<String>, Option<String>), OAuthError> {
    let mut body = client_metadata(redirect_uri);
    body["token_endpoint_auth_method"] = json!(auth_method);
    let response = http.post(registration_endpoint)?.json(&body).send().await.map_err(network)?;
    let (status, doc) = read_json(response).await?;
    if !status.is_success() {
        return Err(rejected(&doc, status));
    }
    let client_id = str_field(&doc, "client_id")
        .ok_or_else(|| OAuthError::Upstream("the registration answer has no client_id".into()))?;
    Ok((client_id, str_field(&doc, "client_secret"), str_field(&doc, "token_endpoint_auth_method")))
}

/// The gateway's client metadata: for registration, and as its Client ID Metadata Document.
pub fn client_metadata(redirect_uri: &str) -> Value {
    json!({
        "client_name": "mcpgate",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

fn rejected(doc: &Value, status: reqwest::StatusCode) -> OAuthError {
    match str_field(doc, "error") {
        Some(error) => OAuthError::Rejected { error, description: str_field(doc, "error_description") },
        None => OAuthError::Upstream(format!("HTTP {status}")),
    }
}

/// A PKCE S256 pair: the verifier kept, the challenge sent.
pub fn pkce() -> (String, String) {
    let verifier = crate::auth::session::random_secret();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The URL the user's browser goes to at the provider.
pub fn authorize_url(
    client: &OAuthClient,
    redirect_uri: &str,
    state: &str,
    challenge: &str,
    scopes: &[String],
) -> Option<String> {
    let mut url = url::Url::parse(client.endpoints.authorization_endpoint.as_deref()?).ok()?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &client.endpoints.resource);
        if !scopes.is_empty() {
            query.append_pair("scope", &scopes.join(" "));
        }
    }
    Some(url.into())
}

/// The scopes to ask for: configured, else what the resource advertises.
pub fn scopes_for(config: &OAuth2Auth, endpoints: &Endpoints) -> Vec<String> {
    config.scopes.clone().unwrap_or_else(|| endpoints.scopes.clone())
}

/// How the gateway proves who it is at a token endpoint.
pub struct ClientAuth<'a> {
    pub client_id: &'a str,
    pub client_secret: Option<&'a str>,
    /// `client_secret_basic`, `client_secret_post` or `none`.
    pub method: &'a str,
}

impl<'a> ClientAuth<'a> {
    pub fn of(client: &'a OAuthClient) -> Self {
        Self {
            client_id: &client.client_id,
            client_secret: client.client_secret.as_deref(),
            method: &client.endpoints.auth_method,
        }
    }

    /// HTTP Basic (RFC 6749 §2.3.1, form-encoded parts), the secret in the form, or the id alone.
    fn apply(&self, mut request: reqwest::RequestBuilder, form: &mut Vec<(String, String)>) -> reqwest::RequestBuilder {
        match (self.client_secret, self.method) {
            (Some(secret), "client_secret_post") => {
                form.push(("client_id".into(), self.client_id.to_owned()));
                form.push(("client_secret".into(), secret.to_owned()));
            }
            (Some(secret), "client_secret_basic") => {
                let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                request = request.basic_auth(encode(self.client_id), Some(encode(secret)));
            }
            _ => form.push(("client_id".into(), self.client_id.to_owned())),
        }
        request
    }
}

/// One token request.
pub async fn token_request(
    http: &Http,
    token_endpoint: &str,
    auth: &ClientAuth<'_>,
    mut form: Vec<(String, String)>,
    extra: Option<&BTreeMap<String, String>>,
) -> Result<TokenResponse, OAuthError> {
    if let Some(extra) = extra {
        form.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let request = auth.apply(http.post(token_endpoint)?.header("accept", "application/json"), &mut form);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter()).finish();
    let response =
        request.header("content-type", "application/x-www-form-urlencoded").body(body).send().await.map_err(network)?;
    let (status, doc) = read_json(response).await?;
    if !status.is_success() {
        return Err(rejected(&doc, status));
    }
    serde_json::from_value(doc).map_err(|e| OAuthError::Upstream(format!("token response: {e}")))
}

/// RFC 7009 revocation, best effort: the grant is forgotten here whatever the answer.
pub async fn revoke(http: &Http, client: &OAuthClient, token: &str, hint: &str) {
    let Some(endpoint) = client.endpoints.revocation_endpoint.as_deref() else { return };
    let mut form = vec![("token".to_owned(), token.to_owned()), ("token_type_hint".to_owned(), hint.to_owned())];
    let Ok(request) = http.post(endpoint) else { return };
    let request = ClientAuth::of(client).apply(request, &mut form);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter()).finish();
    if let Err(e) = request.header("content-type", "application/x-www-form-urlencoded").body(body).send().await {
        tracing::warn!(error = %e.without_url(), "revoking an upstream token failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_metadata_must_cover_the_server() {
        let server = url::Url::parse("https://a.example/tenant/mcp").unwrap();
        assert!(covers("https://a.example/tenant/mcp", &server));
        assert!(covers("https://a.example/tenant/mcp/", &server));
        assert!(covers("https://a.example/", &server));
        assert!(covers("https://a.example/tenant", &server));
        assert!(!covers("https://a.example/other", &server));
        assert!(!covers("https://a.example/ten", &server));
        assert!(!covers("https://evil.example/tenant/mcp", &server));
        assert!(!covers("not a url", &server));
    }

    #[test]
    fn well_known_locations() {
        let url = url::Url::parse("https://a.example/tenant/mcp/").unwrap();
        assert_eq!(
            well_known(&url, "oauth-protected-resource"),
            vec![
                "https://a.example/.well-known/oauth-protected-resource/tenant/mcp",
                "https://a.example/.well-known/oauth-protected-resource"
            ]
        );
    }

    #[test]
    fn pkce_challenge_is_the_s256_of_the_verifier() {
        let (verifier, challenge) = pkce();
        assert!(verifier.len() >= 43);
        assert_eq!(challenge, URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())));
    }
}
