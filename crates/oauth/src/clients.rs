//! Clients of the gateway's authorization server: dynamic registration (RFC 7591) and Client ID
//! Metadata Documents (an HTTPS `client_id` whose URL serves the client's metadata).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use serde_json::{json, Map, Value};
use url::Url;

use crate::redirect;
use crate::OAuthError;
use mcpgate_store::entities::oauth_clients;

pub const KIND_DYNAMIC: &str = "dynamic";
pub const KIND_DOCUMENT: &str = "metadata_document";
pub const AUTH_NONE: &str = "none";
const AUTH_METHODS: &[&str] = &[AUTH_NONE, "client_secret_basic", "client_secret_post"];
const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token"];

/// Bounds on what a client may register: it is shown to people and kept.
const MAX_REDIRECT_URIS: usize = 20;
const MAX_URI_LENGTH: usize = 2000;
const MAX_FIELD_LENGTH: usize = 2000;
/// A metadata document is fetched again after this long.
const DOCUMENT_TTL_MINUTES: i64 = 10;
const DOCUMENT_MAX_BYTES: usize = 64 * 1024;
const DOCUMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client as the authorization endpoint needs it.
#[derive(Clone, Debug)]
pub struct Client {
    pub row: oauth_clients::Model,
    pub redirect_uris: Vec<String>,
}

impl Client {
    fn of(row: oauth_clients::Model) -> Self {
        let redirect_uris = serde_json::from_value(row.redirect_uris.clone()).unwrap_or_default();
        Self { row, redirect_uris }
    }

    /// The name to show, marked as the client's own claim.
    pub fn display_name(&self) -> String {
        self.row.client_name.clone().unwrap_or_else(|| self.row.client_id.clone())
    }

    pub fn is_public(&self) -> bool {
        self.row.token_endpoint_auth_method == AUTH_NONE
    }
}

fn invalid_metadata(why: impl Into<String>) -> OAuthError {
    OAuthError::new("invalid_client_metadata", why)
}

/// The redirect URIs of a registration or document, each checked.
fn redirect_uris(metadata: &Map<String, Value>) -> Result<Vec<String>, OAuthError> {
    let uris: Vec<String> = match metadata.get("redirect_uris") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| OAuthError::new("invalid_redirect_uri", "redirect_uris must be strings"))?,
        _ => return Err(OAuthError::new("invalid_redirect_uri", "redirect_uris must be a non-empty array")),
    };
    if uris.is_empty() {
        return Err(OAuthError::new("invalid_redirect_uri", "redirect_uris must be a non-empty array"));
    }
    if uris.len() > MAX_REDIRECT_URIS || uris.iter().any(|u| u.len() > MAX_URI_LENGTH) {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECT_URIS} redirect URIs of at most {MAX_URI_LENGTH} characters"),
        ));
    }
    for uri in &uris {
        redirect::classify(uri).map_err(|why| OAuthError::new("invalid_redirect_uri", why))?;
    }
    Ok(uris)
}

fn string_field(metadata: &Map<String, Value>, name: &str) -> Result<Option<String>, OAuthError> {
    match metadata.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_FIELD_LENGTH => {
            Err(invalid_metadata(format!("{name} is longer than {MAX_FIELD_LENGTH} characters")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_metadata(format!("{name} must be a string"))),
    }
}

/// A registration: the stored row and, for a confidential client, its secret (shown once).
pub struct Registered {
    pub row: oauth_clients::Model,
    pub client_secret: Option<String>,
}

/// RFC 7591 §2-3: validates the client's metadata and registers it. Public clients use
/// `token_endpoint_auth_method: none`; others get a secret.
pub async fn register(db: &impl ConnectionTrait, body: Value, now: DateTime<Utc>) -> Result<Registered, OAuthError> {
    let Value::Object(mut metadata) = body else {
        return Err(invalid_metadata("the registration must be a JSON object"));
    };
    let uris = redirect_uris(&metadata)?;
    let method = string_field(&metadata, "token_endpoint_auth_method")?.unwrap_or_else(|| "client_secret_basic".into());
    if !AUTH_METHODS.contains(&method.as_str()) {
        return Err(invalid_metadata(format!(
            "token_endpoint_auth_method {method:?} is not supported; use one of {}",
            AUTH_METHODS.join(", ")
        )));
    }
    let grant_types: Vec<String> = match metadata.get("grant_types") {
        None | Some(Value::Null) => vec!["authorization_code".into()],
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| invalid_metadata("grant_types must be strings"))?,
    };
    if let Some(bad) = grant_types.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
        return Err(invalid_metadata(format!(
            "grant type {bad:?} is not offered to registered clients; use {}",
            GRANT_TYPES.join(", ")
        )));
    }
    if let Some(types) = metadata.get("response_types") {
        let types: Vec<String> =
            serde_json::from_value(types.clone()).map_err(|_| invalid_metadata("response_types must be strings"))?;
        if types.iter().any(|t| t != "code") {
            return Err(invalid_metadata("only the response type \"code\" is supported"));
        }
    }
    let name = string_field(&metadata, "client_name")?;
    for field in ["client_uri", "logo_uri", "scope", "software_id", "software_version"] {
        string_field(&metadata, field)?;
    }
    let client_id = format!("mcpgate_client_{}", uuid::Uuid::new_v4().simple());
    let secret = (method != AUTH_NONE).then(mcpgate_control::auth::session::random_secret);
    metadata.insert("redirect_uris".into(), json!(uris));
    metadata.insert("token_endpoint_auth_method".into(), json!(method));
    metadata.insert("grant_types".into(), json!(grant_types));
    metadata.insert("response_types".into(), json!(["code"]));
    // Never stored, and never echoed from the request.
    metadata.remove("client_secret");
    metadata.remove("client_id");
    let row = oauth_clients::ActiveModel {
        client_id: Set(client_id),
        kind: Set(KIND_DYNAMIC.into()),
        client_name: Set(name),
        redirect_uris: Set(json!(uris)),
        token_endpoint_auth_method: Set(method),
        secret_digest: Set(secret.as_deref().map(mcpgate_control::auth::session::digest)),
        metadata: Set(Value::Object(metadata)),
        created_at: Set(now),
        fetched_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(OAuthError::server)?;
    Ok(Registered { row, client_secret: secret })
}

/// The registration response: the metadata as accepted, the id, and the secret once.
pub fn registration_response(registered: &Registered) -> Value {
    let mut body = registered.row.metadata.as_object().cloned().unwrap_or_default();
    body.insert("client_id".into(), json!(registered.row.client_id));
    body.insert("client_id_issued_at".into(), json!(registered.row.created_at.timestamp()));
    if let Some(secret) = &registered.client_secret {
        body.insert("client_secret".into(), json!(secret));
        body.insert("client_secret_expires_at".into(), json!(0));
    }
    Value::Object(body)
}

/// Whether a `client_id` names a metadata document rather than a registration.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Finds a client: a registration by id, or a metadata document by URL (fetched and cached).
pub async fn find(
    db: &impl ConnectionTrait,
    client_id: &str,
    allow_private: bool,
    now: DateTime<Utc>,
) -> Result<Client, OAuthError> {
    find_throttled(db, client_id, allow_private, now, || true).await
}

/// As [`find`], asking `may_fetch` before a document is fetched (not when it is cached), so
/// that requests naming made-up document URLs cannot make the gateway fetch without limit.
pub async fn find_throttled(
    db: &impl ConnectionTrait,
    client_id: &str,
    allow_private: bool,
    now: DateTime<Utc>,
    may_fetch: impl FnOnce() -> bool,
) -> Result<Client, OAuthError> {
    let stored = oauth_clients::Entity::find()
        .filter(oauth_clients::Column::ClientId.eq(client_id))
        .one(db)
        .await
        .map_err(OAuthError::server)?;
    if !is_document_url(client_id) {
        return stored.map(Client::of).ok_or_else(|| OAuthError::new("invalid_client", "unknown client_id"));
    }
    let fresh = stored.as_ref().and_then(|r| r.fetched_at).is_some_and(|at| {
        at + chrono::Duration::minutes(DOCUMENT_TTL_MINUTES) > now && at <= now + chrono::Duration::minutes(1)
    });
    if let (true, Some(row)) = (fresh, stored.as_ref()) {
        return Ok(Client::of(row.clone()));
    }
    if !may_fetch() {
        return Err(OAuthError::new(
            "invalid_client",
            "too many client metadata documents fetched for this address; retry in a minute",
        ));
    }
    let document = fetch_document(client_id, allow_private).await?;
    let metadata = document.as_object().cloned().unwrap_or_default();
    let uris = redirect_uris(&metadata)?;
    let method = string_field(&metadata, "token_endpoint_auth_method")?.unwrap_or_else(|| AUTH_NONE.into());
    if method != AUTH_NONE {
        // A document is public; it cannot carry a shared secret.
        return Err(invalid_metadata(format!(
            "a metadata document client must use token_endpoint_auth_method \"none\", not {method:?}"
        )));
    }
    let name = string_field(&metadata, "client_name")?;
    let row = match stored {
        Some(row) => {
            let mut active = row.into_active_model();
            active.client_name = Set(name);
            active.redirect_uris = Set(json!(uris));
            active.metadata = Set(document.clone());
            active.fetched_at = Set(Some(now));
            active.update(db).await.map_err(OAuthError::server)?
        }
        None => oauth_clients::ActiveModel {
            client_id: Set(client_id.to_owned()),
            kind: Set(KIND_DOCUMENT.into()),
            client_name: Set(name),
            redirect_uris: Set(json!(uris)),
            token_endpoint_auth_method: Set(method),
            secret_digest: Set(None),
            metadata: Set(document.clone()),
            created_at: Set(now),
            fetched_at: Set(Some(now)),
            ..Default::default()
        }
        .insert(db)
        .await
        .map_err(OAuthError::server)?,
    };
    Ok(Client::of(row))
}

fn bad_document(why: impl Into<String>) -> OAuthError {
    OAuthError::new("invalid_client", format!("client metadata document: {}", why.into()))
}

/// Fetches a metadata document with an SSRF guard: HTTPS (plain http only on loopback when
/// private addresses are allowed), no private or loopback addresses unless allowed, the
/// connection pinned to the addresses that were checked, no redirects, a size and time limit.
/// The document's `client_id` must be its own URL.
pub async fn fetch_document(url: &str, allow_private: bool) -> Result<Value, OAuthError> {
    let parsed = Url::parse(url).map_err(|_| bad_document("the client_id is not a URL"))?;
    let host = parsed.host_str().ok_or_else(|| bad_document("the URL has no host"))?.to_owned();
    let loopback_host = redirect::LOOPBACK_HOSTS.contains(&host.as_str());
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private && loopback_host => {}
        _ => return Err(bad_document("the client_id must be an https URL")),
    }
    if parsed.fragment().is_some() || !parsed.username().is_empty() || parsed.path() == "/" {
        return Err(bad_document("the URL must have a path and no fragment or user information"));
    }
    if parsed.path().split('/').any(|segment| segment == "." || segment == "..") {
        return Err(bad_document("the URL may not contain dot segments"));
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let addresses: Vec<SocketAddr> = tokio::time::timeout(DOCUMENT_TIMEOUT, tokio::net::lookup_host((bare_host, port)))
        .await
        .map_err(|_| bad_document("resolving the host timed out"))?
        .map_err(|_| bad_document(format!("the host {host} does not resolve")))?
        .collect();
    if addresses.is_empty() {
        return Err(bad_document(format!("the host {host} does not resolve")));
    }
    if !allow_private && addresses.iter().any(|a| mcpgate_proxy::egress::is_special(a.ip())) {
        return Err(bad_document(format!("{host} resolves to a private or loopback address, which is not fetched")));
    }
    let client = mcpgate_proxy::http_client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(DOCUMENT_TIMEOUT)
        .resolve_to_addrs(&host, &addresses)
        .build()
        .map_err(OAuthError::server)?;
    let response = client
        .get(parsed.clone())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| bad_document(format!("fetching it failed: {}", e.without_url())))?;
    if !response.status().is_success() {
        return Err(bad_document(format!("fetching it answered {}", response.status())));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad_document(format!("reading it failed: {}", e.without_url())))?;
        if body.len() + chunk.len() > DOCUMENT_MAX_BYTES {
            return Err(bad_document(format!("it is larger than {DOCUMENT_MAX_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let document: Value = serde_json::from_slice(&body).map_err(|_| bad_document("it is not JSON"))?;
    if document.get("client_id").and_then(Value::as_str) != Some(url) {
        return Err(bad_document("its client_id is not the URL it was fetched from"));
    }
    if document.get("client_secret").is_some() {
        return Err(bad_document("it may not contain a client_secret"));
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn document_urls_are_checked_before_any_fetch() {
        for (url, why) in [
            ("http://client.example/meta.json", "https"),
            ("https://client.example/", "path"),
            ("https://client.example/a/../meta.json#x", "fragment"),
            ("https://localhost/meta.json", "private"),
            ("https://127.0.0.1/meta.json", "private"),
        ] {
            let err = fetch_document(url, false).await.unwrap_err();
            assert!(err.description.contains(why), "{url}: {}", err.description);
        }
    }
}
