//! Outbound credentials (DESIGN.md §4). The snapshot says only which kind of auth a server
//! uses; the secrets come from a `CredentialResolver` — the vault itself under `mcpgate serve`,
//! the control plane's credential endpoint for a standalone replica — and are kept here for a
//! short while, keyed by server, caller and snapshot version, so a changed key or override
//! (which publishes a new snapshot) is never served stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::index::Subject;
use mcpgate_policy::{ServerEntry, VirtualMemberEntry};

/// Header name and value pairs to add to upstream requests. Secret: never logged.
pub type Headers = Vec<(String, String)>;

/// What the proxy asks for: the credential `subject` uses on `server`. `stale` is the
/// `Authorization` value the upstream just refused, so the resolver refreshes instead of
/// handing it back.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    pub server: i64,
    /// The virtual server whose member override applies, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<i64>,
    /// `u<id>` (user) or `v<id>` (virtual account).
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
    /// The scope the upstream asked for when it refused the credential as insufficient
    /// (`403`, `error="insufficient_scope"`): the caller must authorize again with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insufficient_scope: Option<String>,
}

impl CredentialRequest {
    pub fn subject(&self) -> Option<Subject> {
        crate::session::subject_from_tag(&self.subject)
    }
}

/// A credential and how long it may be reused.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resolved {
    /// `[name, value]` pairs.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub headers: Headers,
    pub ttl_seconds: u64,
}

/// Why there is no credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CredentialError {
    /// The caller has to do something first — add their own key, authorize the gateway — at `url`.
    #[error("{message}")]
    ActionRequired { message: String, url: String },
    /// The credential cannot be had right now (the provider failed, the configuration is broken).
    #[error("{message}")]
    Unavailable { message: String },
}

#[async_trait::async_trait]
pub trait CredentialResolver: Send + Sync {
    async fn resolve(&self, request: &CredentialRequest) -> Result<Resolved, CredentialError>;
}

/// Whose outbound auth applies to a call: the server's own, or a virtual server's override
/// for one of its members.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub server: &'a ServerEntry,
    pub via: Option<i64>,
    pub auth: &'a mcpgate_policy::OutboundAuth,
}

impl<'a> Target<'a> {
    pub fn own(server: &'a ServerEntry) -> Self {
        Self { server, via: None, auth: &server.outbound_auth }
    }

    /// Member `member` of virtual server `virtual_id`.
    pub fn member(virtual_id: i64, server: &'a ServerEntry, member: &'a VirtualMemberEntry) -> Self {
        match &member.outbound_auth {
            Some(auth) => Self { server, via: Some(virtual_id), auth },
            None => Self::own(server),
        }
    }

    /// Requests carry a credential the resolver supplies.
    pub fn needed(&self) -> bool {
        self.auth.needed()
    }

    /// OAuth credentials can be refreshed; keys cannot.
    pub fn refreshable(&self) -> bool {
        self.auth.refreshable()
    }

    /// Each user authorizes this server at its provider.
    pub fn per_user_oauth(&self) -> bool {
        self.auth.per_user_oauth()
    }

    /// The caller supplies their own credential (a key or an authorization).
    pub fn per_user(&self) -> bool {
        self.auth.per_user()
    }

    pub fn passthrough(&self) -> bool {
        self.auth.passthrough()
    }
}

/// Server, the virtual server whose member override applies, caller.
type CacheKey = (i64, Option<i64>, String);

struct Cached {
    version: i64,
    headers: Headers,
    until: Instant,
}

/// The resolver with a small cache in front.
pub struct Credentials {
    resolver: Arc<dyn CredentialResolver>,
    cache: Mutex<HashMap<CacheKey, Cached>>,
}

/// Cache bound: entries beyond it are dropped wholesale, oldest policy first.
const MAX_CACHED: usize = 50_000;

impl Credentials {
    pub fn new(resolver: Arc<dyn CredentialResolver>) -> Self {
        Self { resolver, cache: Mutex::default() }
    }

    fn request(target: Target<'_>, subject: &str) -> CredentialRequest {
        CredentialRequest {
            server: target.server.id,
            via: target.via,
            subject: subject.to_owned(),
            stale: None,
            insufficient_scope: None,
        }
    }

    /// The headers for one call: the caller's own identity-provider token for a `passthrough`
    /// server (and nothing else ever travels that way), else [`Self::headers`].
    pub async fn for_call(
        &self,
        target: Target<'_>,
        subject: &str,
        version: i64,
        idp_token: Option<&str>,
    ) -> Result<Headers, CredentialError> {
        match (target.passthrough(), idp_token) {
            (true, Some(token)) => Ok(vec![("authorization".to_owned(), format!("Bearer {token}"))]),
            _ => self.headers(target, subject, version, None).await,
        }
    }

    /// The headers for `subject` on `target` under snapshot `version`; empty when it needs
    /// none. `stale` forces a fresh credential in place of the one the upstream refused.
    pub async fn headers(
        &self,
        target: Target<'_>,
        subject: &str,
        version: i64,
        stale: Option<&str>,
    ) -> Result<Headers, CredentialError> {
        if target.passthrough() {
            // Only an identity-provider token may travel on, and none authenticated this call.
            return Err(CredentialError::Unavailable {
                message: format!(
                    "{} forwards the caller's identity-provider token; gateway tokens are never forwarded",
                    target.server.slug
                ),
            });
        }
        if !target.needed() {
            return Ok(Vec::new());
        }
        let key = (target.server.id, target.via, subject.to_owned());
        if stale.is_none() {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = cache.get(&key).filter(|c| c.version == version && c.until > Instant::now()) {
                return Ok(hit.headers.clone());
            }
        }
        let request = CredentialRequest { stale: stale.map(str::to_owned), ..Self::request(target, subject) };
        let resolved = self.resolver.resolve(&request).await;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match resolved {
            Ok(resolved) => {
                if cache.len() >= MAX_CACHED {
                    cache.retain(|_, c| c.version == version);
                    if cache.len() >= MAX_CACHED {
                        cache.clear();
                    }
                }
                let until = Instant::now() + Duration::from_secs(resolved.ttl_seconds);
                cache.insert(key, Cached { version, headers: resolved.headers.clone(), until });
                Ok(resolved.headers)
            }
            Err(e) => {
                cache.remove(&key);
                Err(e)
            }
        }
    }

    /// A fresh credential in place of `used`, which the upstream just refused (`401`).
    pub async fn refreshed(
        &self,
        target: Target<'_>,
        subject: &str,
        version: i64,
        used: &Headers,
    ) -> Result<Headers, CredentialError> {
        self.headers(target, subject, version, authorization(used)).await
    }

    /// The upstream wants more scope than the caller's grant has: the resolver records it and
    /// says what the caller must do.
    pub async fn step_up(&self, target: Target<'_>, subject: &str, scope: &str) -> CredentialError {
        let server = target.server;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&(server.id, target.via, subject.to_owned()));
        let request =
            CredentialRequest { insufficient_scope: Some(scope.to_owned()), ..Self::request(target, subject) };
        match self.resolver.resolve(&request).await {
            Err(e) => e,
            Ok(_) => CredentialError::Unavailable {
                message: format!("{}: the upstream needs more permissions (scope {scope})", server.slug),
            },
        }
    }
}

/// The scope an upstream's `403` asks for, when it says the token's scope is insufficient.
pub fn insufficient_scope(status: http::StatusCode, headers: &http::HeaderMap) -> Option<String> {
    if status != http::StatusCode::FORBIDDEN {
        return None;
    }
    let challenge = headers.get("www-authenticate")?.to_str().ok()?;
    let error = crate::challenge::challenge_param(challenge, "error")?;
    (error == "insufficient_scope").then(|| crate::challenge::challenge_param(challenge, "scope").unwrap_or_default())
}

/// The `Authorization` value among credential headers, to name it as stale after a `401`.
fn authorization(headers: &Headers) -> Option<&str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.as_str())
}

/// The page where a user adds their own key or authorizes the gateway for a server.
pub fn connect_url(public_base: &str, tenant: &str, server: &str) -> String {
    format!("{public_base}/connect/{tenant}/{server}")
}
