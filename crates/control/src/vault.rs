//! The credential vault: resolves the upstream credential a caller uses on a server (the
//! in-process `CredentialResolver`, and the one behind the replicas' credential endpoint) and
//! keeps the per-user OAuth grants — connecting, refreshing (once per grant, whatever the
//! concurrency), disconnecting.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::audit::{self, Actor, Event};
use crate::auth::seal::{Place, Sealer};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::outbound::{fill, AuthData, AuthLevel, GrantType, OAuth2Auth};
use crate::proxy::credentials::{connect_url, CredentialError, CredentialRequest, CredentialResolver, Resolved};
use crate::proxy::index::Subject;
use crate::store::entities::{
    auth_overrides, servers, tenants, upstream_auth_states, upstream_clients, upstream_grants, users, virtual_accounts,
    virtual_members,
};
use crate::upstream_oauth::{self as oauth, OAuthClient, OAuthError, TokenResponse};

/// Tokens are renewed this long before they expire, so none expires on the way upstream.
const EARLY: i64 = 30;
/// How long a started authorization may take.
const STATE_LIFETIME_MINUTES: i64 = 10;
/// Reuse of credentials that do not expire (keys), bounded so a missed change heals.
const KEY_TTL: u64 = 300;

pub const AUTHENTICATED: &str = "authenticated";
pub const UNAUTHENTICATED: &str = "unauthenticated";

struct MachineToken {
    /// The sealed configuration it was obtained with: another configuration, another token.
    config: Value,
    token: String,
    expires_at: DateTime<Utc>,
}

pub struct Vault {
    db: DatabaseConnection,
    sealer: Sealer,
    clock: Clock,
    public_base: String,
    http: oauth::Http,
    /// Keyed by server and, for a virtual server's member override, the virtual server.
    machine: Mutex<HashMap<(i64, Option<i64>), MachineToken>>,
    machine_locks: Locks<(i64, Option<i64>)>,
    grant_locks: Locks<(i64, i64)>,
}

/// One async lock per key, so one refresh runs per token whatever the concurrency.
type Locks<K> = Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>;

/// One user's connection to one server's provider, as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub tenant: String,
    pub server: String,
    /// `authenticated` or `unauthenticated`.
    pub status: String,
    /// Why it is unauthenticated: `invalid_grant`, `refresh_failed`, `upstream_error`,
    /// `network_error`, or `insufficient_scope` (the upstream wants more permissions).
    pub reason: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Option<String>,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Where to (re)authorize.
    pub connect_url: String,
}

fn lock_for<K: std::hash::Hash + Eq + Copy>(locks: &Locks<K>, key: K) -> Arc<tokio::sync::Mutex<()>> {
    locks.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default().clone()
}

fn unavailable(message: impl Into<String>) -> CredentialError {
    CredentialError::Unavailable { message: message.into() }
}

fn ttl_until(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> u64 {
    match expires_at {
        Some(at) => (at - now - Duration::seconds(EARLY)).num_seconds().clamp(0, KEY_TTL as i64) as u64,
        None => KEY_TTL,
    }
}

impl Vault {
    pub fn new(
        db: DatabaseConnection,
        sealer: Sealer,
        clock: Clock,
        public_base: String,
        egress: Arc<crate::egress::Egress>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            sealer,
            clock,
            public_base,
            http: oauth::Http::new(egress)?,
            machine: Mutex::default(),
            machine_locks: Mutex::default(),
            grant_locks: Mutex::default(),
        })
    }

    /// Where providers send the user's browser back.
    pub fn callback_url(&self) -> String {
        format!("{}/oauth/upstream/callback", self.public_base)
    }

    /// The gateway's Client ID Metadata Document, for providers that take one.
    pub fn metadata_document_url(&self) -> String {
        format!("{}/oauth/upstream/client-metadata.json", self.public_base)
    }

    fn open(&self, sealed: &str, place: &Place) -> Result<String, CredentialError> {
        self.sealer
            .open_at(sealed, place)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unavailable("a stored credential does not open under the master key"))
    }

    async fn tenant_slug(&self, server: &servers::Model) -> String {
        tenants::Entity::find_by_id(server.tenant_id)
            .one(&self.db)
            .await
            .ok()
            .flatten()
            .map(|t| t.slug)
            .unwrap_or_default()
    }

    async fn resolve_inner(&self, request: &CredentialRequest) -> Result<Resolved, CredentialError> {
        let subject = request.subject().ok_or_else(|| unavailable("unknown caller"))?;
        let db_error = |e: sea_orm::DbErr| unavailable(format!("the credential store failed: {e}"));
        let server = servers::Entity::find_by_id(request.server)
            .one(&self.db)
            .await
            .map_err(db_error)?
            .ok_or_else(|| unavailable("the server no longer exists"))?;
        // A virtual server's own credentials for this member, when it has some.
        let member_auth = match request.via {
            Some(via) => {
                let link = virtual_members::Entity::find()
                    .filter(virtual_members::Column::VirtualServerId.eq(via))
                    .filter(virtual_members::Column::MemberServerId.eq(server.id))
                    .one(&self.db)
                    .await
                    .map_err(db_error)?;
                match link.and_then(|m| m.auth_data) {
                    Some(stored) => {
                        let parent = servers::Entity::find_by_id(via)
                            .one(&self.db)
                            .await
                            .map_err(db_error)?
                            .ok_or_else(|| unavailable("the virtual server no longer exists"))?;
                        Some((stored, Place::member_auth(server.tenant_id, &parent.slug, &server.slug)))
                    }
                    None => None,
                }
            }
            None => None,
        };
        let own = server.auth_data.as_ref().map(|s| (s.clone(), Place::server_auth(server.tenant_id, &server.slug)));
        let Some((stored, place)) = member_auth.or(own) else {
            return Ok(Resolved { headers: Vec::new(), ttl_seconds: KEY_TTL });
        };
        let stored = &stored;
        let auth = AuthData::open(stored, &self.sealer, &place)
            .map_err(|_| unavailable("the server's stored credential does not open under the master key"))?;
        let now = self.clock.now();
        match auth {
            AuthData::Passthrough => Err(unavailable("passthrough credentials are the caller's own")),
            AuthData::Header(h) if h.auth_level == AuthLevel::Global => {
                // A subject's own values replace the shared ones they name.
                let own = self.override_values(&server, subject).await?.unwrap_or_default();
                let headers = h
                    .headers
                    .into_iter()
                    .map(|(name, shared)| {
                        let mine = own.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name)).map(|(_, v)| v.clone());
                        (name, mine.unwrap_or(shared))
                    })
                    .collect();
                Ok(Resolved { headers, ttl_seconds: KEY_TTL })
            }
            AuthData::Header(h) => {
                let values = self.override_values(&server, subject).await?;
                match filled_headers(&h.headers, values.as_ref()) {
                    Some(headers) => Ok(Resolved { headers, ttl_seconds: KEY_TTL }),
                    None => Err(self.override_missing(&server, subject, &auth_names(&h.headers)).await),
                }
            }
            AuthData::OAuth2(o) if o.grant_type == Some(GrantType::ClientCredentials) => {
                let key = (server.id, request.via);
                let (token, expires_at) =
                    self.machine_token(&server, key, stored, &o, request.stale.as_deref()).await?;
                Ok(Resolved { headers: vec![bearer(&token)], ttl_seconds: ttl_until(expires_at, now) })
            }
            AuthData::OAuth2(_) if request.insufficient_scope.is_some() => {
                let Subject::User(user) = subject else {
                    return Err(unavailable(format!("{}: the upstream needs more permissions", server.slug)));
                };
                Err(self.step_up(&server, user, request.insufficient_scope.as_deref().unwrap_or_default()).await)
            }
            AuthData::OAuth2(o) => {
                let Subject::User(user) = subject else {
                    return Err(unavailable(format!(
                        "{}: each user authorizes this server themselves; virtual accounts need a server with client_credentials or a key",
                        server.slug
                    )));
                };
                let (token, expires_at) = self.user_token(&server, &o, user, request.stale.as_deref()).await?;
                Ok(Resolved { headers: vec![bearer(&token)], ttl_seconds: ttl_until(expires_at, now) })
            }
        }
    }

    async fn override_values(
        &self,
        server: &servers::Model,
        subject: Subject,
    ) -> Result<Option<BTreeMap<String, String>>, CredentialError> {
        let (kind, id) = subject_key(subject);
        let row = auth_overrides::Entity::find()
            .filter(crate::overrides::of_subject(server.id, kind, id))
            .one(&self.db)
            .await
            .map_err(|e| unavailable(format!("the credential store failed: {e}")))?;
        let Some(row) = row else { return Ok(None) };
        let place = Place::override_values(server.id, kind, id);
        let values: BTreeMap<String, String> = serde_json::from_str(&self.open(&row.values, &place)?)
            .map_err(|_| unavailable("a stored Auth Override is unreadable"))?;
        Ok(Some(values))
    }

    async fn override_missing(&self, server: &servers::Model, subject: Subject, names: &str) -> CredentialError {
        let tenant = self.tenant_slug(server).await;
        match subject {
            Subject::User(_) => CredentialError::ActionRequired {
                message: format!("{tenant}/{} needs your own credential ({names}).", server.slug),
                url: connect_url(&self.public_base, &tenant, &server.slug),
            },
            Subject::VirtualAccount(id) => {
                let name = virtual_accounts::Entity::find_by_id(id)
                    .one(&self.db)
                    .await
                    .ok()
                    .flatten()
                    .map(|va| va.name)
                    .unwrap_or_default();
                CredentialError::ActionRequired {
                    message: format!(
                        "{tenant}/{} needs this virtual account's own credential ({names}); a manager of the server sets it.",
                        server.slug
                    ),
                    url: format!(
                        "{}/api/v1/tenants/{tenant}/servers/{}/auth-overrides/virtualaccount:{name}",
                        self.public_base, server.slug
                    ),
                }
            }
        }
    }

    /// A client-credentials token shared by every caller, fetched once per expiry.
    async fn machine_token(
        &self,
        server: &servers::Model,
        key: (i64, Option<i64>),
        stored: &Value,
        config: &OAuth2Auth,
        stale: Option<&str>,
    ) -> Result<(String, Option<DateTime<Utc>>), CredentialError> {
        let usable = |cache: &HashMap<(i64, Option<i64>), MachineToken>| {
            cache
                .get(&key)
                .filter(|t| &t.config == stored && t.expires_at - Duration::seconds(EARLY) > self.clock.now())
                .filter(|t| stale != Some(format!("Bearer {}", t.token).as_str()))
                .map(|t| (t.token.clone(), Some(t.expires_at)))
        };
        if let Some(hit) = usable(&self.machine.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(hit);
        }
        let lock = lock_for(&self.machine_locks, key);
        let _held = lock.lock().await;
        // Someone else may have fetched it while this caller waited.
        if let Some(hit) = usable(&self.machine.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(hit);
        }
        let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
        if let Some(scopes) = config.scopes.as_ref().filter(|s| !s.is_empty()) {
            form.push(("scope".into(), scopes.join(" ")));
        }
        if let Some(url) = &server.url {
            form.push(("resource".into(), url.clone()));
        }
        let url = server.url.as_deref().unwrap_or_default();
        let token = async {
            let (endpoint, method) = oauth::token_endpoint(&self.http, url, config).await?;
            let auth = oauth::ClientAuth {
                client_id: config.client_id.as_deref().unwrap_or_default(),
                client_secret: config.client_secret.as_deref(),
                method: &method,
            };
            oauth::token_request(&self.http, &endpoint, &auth, form, config.additional_token_params.as_ref()).await
        }
        .await
        .map_err(|e| {
            tracing::warn!(server = server.slug, error = %e, "client-credentials token request failed");
            unavailable(format!("{}: the gateway could not get its token: {e}", server.slug))
        })?;
        // Without an expiry the token is used for a while, then fetched again.
        let expires_at = self.clock.now() + Duration::seconds(token.expires_in.unwrap_or(3600).max(EARLY + 1));
        self.machine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, MachineToken { config: stored.clone(), token: token.access_token.clone(), expires_at });
        Ok((token.access_token, Some(expires_at)))
    }

    async fn grant(&self, server: i64, user: i64) -> Result<Option<upstream_grants::Model>, CredentialError> {
        upstream_grants::Entity::find()
            .filter(upstream_grants::Column::ServerId.eq(server))
            .filter(upstream_grants::Column::UserId.eq(user))
            .one(&self.db)
            .await
            .map_err(|e| unavailable(format!("the credential store failed: {e}")))
    }

    /// A user's access token for a server, refreshed when it is about to expire or the
    /// upstream just refused it (`stale`).
    async fn user_token(
        &self,
        server: &servers::Model,
        config: &OAuth2Auth,
        user: i64,
        stale: Option<&str>,
    ) -> Result<(String, Option<DateTime<Utc>>), CredentialError> {
        let fresh = |grant: &upstream_grants::Model| -> Result<Option<String>, CredentialError> {
            if grant.status != AUTHENTICATED {
                return Ok(None);
            }
            let Some(sealed) = &grant.access_token else { return Ok(None) };
            let token = self.open(sealed, &Place::grant(grant.server_id, grant.user_id, "access_token"))?;
            let expiring = grant.expires_at.is_some_and(|at| at - Duration::seconds(EARLY) <= self.clock.now());
            let refused = stale == Some(format!("Bearer {token}").as_str());
            Ok((!expiring && !refused).then_some(token))
        };
        let grant = self.grant(server.id, user).await?;
        if let Some(token) = grant.as_ref().map(&fresh).transpose()?.flatten() {
            return Ok((token, grant.and_then(|g| g.expires_at)));
        }
        // One refresh per grant: whoever holds the lock refreshes, the rest find the result.
        let lock = lock_for(&self.grant_locks, (server.id, user));
        let _held = lock.lock().await;
        let Some(grant) = self.grant(server.id, user).await? else {
            return Err(self.authorize_first(server, None).await);
        };
        if let Some(token) = fresh(&grant)? {
            return Ok((token, grant.expires_at));
        }
        let refresh_place = Place::grant(grant.server_id, grant.user_id, "refresh_token");
        let Some(refresh) = grant.refresh_token.as_deref().map(|s| self.open(s, &refresh_place)).transpose()? else {
            if grant.status == AUTHENTICATED {
                self.mark(&grant, "invalid_grant").await;
            }
            let reason = grant.reason.clone().unwrap_or_else(|| "invalid_grant".to_owned());
            return Err(self.authorize_first(server, Some(&reason)).await);
        };
        let client = self.client(server, config).await.map_err(|e| unavailable(e.to_string()))?;
        let mut form = vec![
            ("grant_type".to_owned(), "refresh_token".to_owned()),
            ("refresh_token".to_owned(), refresh),
            ("resource".to_owned(), client.endpoints.resource.clone()),
        ];
        if let Some(scopes) = grant.scopes.clone() {
            form.push(("scope".into(), scopes));
        }
        let answer = oauth::token_request(
            &self.http,
            &client.endpoints.token_endpoint,
            &oauth::ClientAuth::of(&client),
            form,
            config.additional_token_params.as_ref(),
        )
        .await;
        match answer {
            Ok(token) => {
                let expires_at = token.expires_in.map(|s| self.clock.now() + Duration::seconds(s));
                let access = token.access_token.clone();
                self.store_tokens(grant, token).await.map_err(|e| unavailable(e.to_string()))?;
                Ok((access, expires_at))
            }
            Err(e) => {
                tracing::warn!(server = server.slug, user, error = %e, "refreshing an upstream grant failed");
                self.mark(&grant, e.reason()).await;
                match e {
                    OAuthError::Rejected { .. } => Err(self.authorize_first(server, Some(e.reason())).await),
                    _ => Err(unavailable(format!("{}: {e}", server.slug))),
                }
            }
        }
    }

    /// The upstream wants more scope: the grant remembers it (the next authorization asks for
    /// the old scopes and the new ones) and stops being used until the user authorizes again.
    async fn step_up(&self, server: &servers::Model, user: i64, scope: &str) -> CredentialError {
        if let Ok(Some(grant)) = self.grant(server.id, user).await {
            let mut scopes: Vec<String> =
                grant.scopes.as_deref().unwrap_or_default().split_whitespace().map(str::to_owned).collect();
            for wanted in scope.split_whitespace() {
                if !scopes.iter().any(|s| s == wanted) {
                    scopes.push(wanted.to_owned());
                }
            }
            let mut active = grant.into_active_model();
            active.scopes = Set(Some(scopes.join(" ")).filter(|s| !s.is_empty()));
            active.status = Set(UNAUTHENTICATED.to_owned());
            active.reason = Set(Some("insufficient_scope".to_owned()));
            // A refresh cannot widen a grant: only a new authorization can.
            active.access_token = Set(None);
            active.refresh_token = Set(None);
            active.updated_at = Set(self.clock.now());
            if let Err(e) = active.update(&self.db).await {
                tracing::warn!(error = %e, "recording a step-up failed");
            }
        }
        let tenant = self.tenant_slug(server).await;
        CredentialError::ActionRequired {
            message: format!("{tenant}/{} needs more permissions ({scope}); authorize again.", server.slug),
            url: connect_url(&self.public_base, &tenant, &server.slug),
        }
    }

    async fn authorize_first(&self, server: &servers::Model, reason: Option<&str>) -> CredentialError {
        let tenant = self.tenant_slug(server).await;
        let message = match reason {
            None => format!("{tenant}/{} needs you to authorize mcpgate at its provider.", server.slug),
            Some(why) => {
                format!("{tenant}/{}: your authorization is no longer valid ({why}); authorize again.", server.slug)
            }
        };
        CredentialError::ActionRequired { message, url: connect_url(&self.public_base, &tenant, &server.slug) }
    }

    async fn mark(&self, grant: &upstream_grants::Model, reason: &str) {
        let mut active = grant.clone().into_active_model();
        active.status = Set(UNAUTHENTICATED.to_owned());
        active.reason = Set(Some(reason.to_owned()));
        if reason == "invalid_grant" {
            // The provider says the grant is gone: nothing left worth keeping.
            active.access_token = Set(None);
            active.refresh_token = Set(None);
        }
        active.updated_at = Set(self.clock.now());
        if let Err(e) = active.update(&self.db).await {
            tracing::warn!(error = %e, "recording an upstream grant's status failed");
        }
    }

    async fn store_tokens(&self, grant: upstream_grants::Model, token: TokenResponse) -> anyhow::Result<()> {
        let now = self.clock.now();
        let (access_place, refresh_place) = (
            Place::grant(grant.server_id, grant.user_id, "access_token"),
            Place::grant(grant.server_id, grant.user_id, "refresh_token"),
        );
        let mut active = grant.into_active_model();
        active.access_token = Set(Some(self.sealer.seal_at(token.access_token.as_bytes(), &access_place)?));
        // A provider that rotates refresh tokens sends a new one; otherwise the old one stays.
        if let Some(refresh) = token.refresh_token {
            active.refresh_token = Set(Some(self.sealer.seal_at(refresh.as_bytes(), &refresh_place)?));
        }
        active.expires_at = Set(token.expires_in.map(|s| now + Duration::seconds(s)));
        if let Some(scope) = token.scope {
            active.scopes = Set(Some(scope));
        }
        active.status = Set(AUTHENTICATED.to_owned());
        active.reason = Set(None);
        active.updated_at = Set(now);
        active.update(&self.db).await?;
        Ok(())
    }

    /// The gateway's client at a server's provider: from the configuration when it names
    /// everything, else the stored discovery and registration, made now if there is none.
    pub async fn client(&self, server: &servers::Model, config: &OAuth2Auth) -> Result<OAuthClient, OAuthError> {
        let stored = upstream_clients::Entity::find()
            .filter(upstream_clients::Column::ServerId.eq(server.id))
            .one(&self.db)
            .await
            .map_err(|e| OAuthError::Upstream(e.to_string()))?;
        if let Some(row) = stored {
            if let Ok(endpoints) = serde_json::from_value(row.endpoints.clone()) {
                let secret = match &row.client_secret {
                    Some(s) => Some(
                        self.open(s, &Place::upstream_client(server.id))
                            .map_err(|e| OAuthError::Upstream(e.to_string()))?,
                    ),
                    None => None,
                };
                return Ok(OAuthClient {
                    issuer: row.issuer,
                    client_id: row.client_id,
                    client_secret: secret,
                    endpoints,
                });
            }
        }
        let url = server.url.as_deref().unwrap_or_default();
        let client =
            oauth::establish(&self.http, url, config, &self.callback_url(), &self.metadata_document_url()).await?;
        let sealed_secret = match &client.client_secret {
            Some(s) => Some(
                self.sealer
                    .seal_at(s.as_bytes(), &Place::upstream_client(server.id))
                    .map_err(|e| OAuthError::Upstream(e.to_string()))?,
            ),
            None => None,
        };
        let row = upstream_clients::ActiveModel {
            server_id: Set(server.id),
            issuer: Set(client.issuer.clone()),
            client_id: Set(client.client_id.clone()),
            client_secret: Set(sealed_secret),
            endpoints: Set(serde_json::to_value(&client.endpoints).unwrap_or_default()),
            created_at: Set(self.clock.now()),
            ..Default::default()
        };
        // Two first connections at once: the second insert loses and its registration is
        // simply not kept.
        if let Err(e) = row.insert(&self.db).await {
            tracing::debug!(error = %e, "an upstream client registration was already stored");
        }
        Ok(client)
    }

    /// The server's OAuth configuration, secrets opened; `None` when it uses another kind of auth.
    fn oauth_config(&self, server: &servers::Model) -> Result<Option<OAuth2Auth>> {
        let place = Place::server_auth(server.tenant_id, &server.slug);
        match server.auth_data.as_ref().map(|s| AuthData::open(s, &self.sealer, &place)).transpose()? {
            Some(AuthData::OAuth2(o)) => Ok(Some(o)),
            _ => Ok(None),
        }
    }

    /// Starts a user's authorization at a server's provider: the URL to send their browser to.
    pub async fn start(&self, server: &servers::Model, user: i64, return_to: Option<String>) -> Result<String> {
        let config = match self.oauth_config(server)? {
            Some(o) if o.grant_type == Some(GrantType::AuthorizationCode) => o,
            _ => {
                return Err(Error::conflict(
                    "no_user_authorization",
                    None,
                    format!("{} does not use per-user OAuth; there is nothing to connect", server.slug),
                ))
            }
        };
        let client = self.client(server, &config).await.map_err(|e| {
            Error::Unavailable(format!("{}: the provider could not be set up for sign-in: {e}", server.slug))
        })?;
        let (verifier, challenge) = oauth::pkce();
        let state = crate::auth::session::random_secret();
        // Never ask for less than the user granted before (or a step-up asked for).
        let mut scopes = oauth::scopes_for(&config, &client.endpoints);
        if let Some(earlier) = self.grant(server.id, user).await.ok().flatten().and_then(|g| g.scopes) {
            for scope in earlier.split_whitespace() {
                if !scopes.iter().any(|s| s == scope) {
                    scopes.push(scope.to_owned());
                }
            }
        }
        let url =
            oauth::authorize_url(&client, &self.callback_url(), &state, &challenge, &scopes).ok_or_else(|| {
                Error::Unavailable(format!("{}: the provider has no authorization endpoint", server.slug))
            })?;
        let now = self.clock.now();
        // Expired starts are swept as new ones begin.
        upstream_auth_states::Entity::delete_many()
            .filter(upstream_auth_states::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        let state_digest = crate::auth::session::digest(&state);
        let verifier = self.sealer.seal_at(verifier.as_bytes(), &Place::auth_state(&state_digest))?;
        upstream_auth_states::ActiveModel {
            state_digest: Set(state_digest),
            user_id: Set(user),
            server_id: Set(server.id),
            verifier: Set(verifier),
            return_to: Set(return_to),
            expires_at: Set(now + Duration::minutes(STATE_LIFETIME_MINUTES)),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(url)
    }

    /// Completes an authorization: the `state` must be one this gateway issued, unused, in
    /// time, and (when the browser is signed in) started by the same user. Returns the server
    /// and where to send the browser next.
    pub async fn complete(
        &self,
        state: &str,
        code: &str,
        issuer: Option<&str>,
        browser_user: i64,
    ) -> Result<(servers::Model, Option<String>)> {
        let now = self.clock.now();
        let row = upstream_auth_states::Entity::find()
            .filter(upstream_auth_states::Column::StateDigest.eq(crate::auth::session::digest(state)))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::Forbidden("this authorization was not started here, or was already used".into()))?;
        // Single use, whatever happens next.
        upstream_auth_states::Entity::delete_by_id(row.id).exec(&self.db).await?;
        if row.expires_at < now {
            return Err(Error::Forbidden("this authorization took too long; start again".into()));
        }
        // The browser that comes back must be signed in as the person who started: otherwise a
        // link with someone else's state would attach the opener's provider account to them.
        if browser_user != row.user_id {
            return Err(Error::Forbidden("this authorization was started by another user".into()));
        }
        let server = servers::Entity::find_by_id(row.server_id).one(&self.db).await?.ok_or(Error::NotFound)?;
        let Some(config) = self.oauth_config(&server)? else {
            return Err(Error::conflict("no_user_authorization", None, "the server no longer uses OAuth"));
        };
        let client = self.client(&server, &config).await.map_err(|e| Error::Unavailable(e.to_string()))?;
        // RFC 9207: an answer that names its issuer must name the one this flow went to (a
        // mix-up attack sends the code of another authorization server here).
        if let (Some(said), Some(expected)) = (issuer, client.issuer.as_deref()) {
            if said.trim_end_matches('/') != expected.trim_end_matches('/') {
                return Err(Error::Forbidden(format!(
                    "the answer came from {said}, not from {expected}, where this authorization started"
                )));
            }
        }
        let verifier = String::from_utf8(self.sealer.open_at(&row.verifier, &Place::auth_state(&row.state_digest))?)
            .map_err(anyhow::Error::from)?;
        let form = vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), self.callback_url()),
            ("code_verifier".to_owned(), verifier),
            ("resource".to_owned(), client.endpoints.resource.clone()),
        ];
        let token = oauth::token_request(
            &self.http,
            &client.endpoints.token_endpoint,
            &oauth::ClientAuth::of(&client),
            form,
            config.additional_token_params.as_ref(),
        )
        .await
        .map_err(|e| Error::Unavailable(format!("{}: {e}", server.slug)))?;
        let lock = lock_for(&self.grant_locks, (server.id, row.user_id));
        let _held = lock.lock().await;
        let existing = self.grant(server.id, row.user_id).await.map_err(|e| anyhow::anyhow!(e.to_string()))?;
        let grant = match existing {
            Some(g) => g,
            None => {
                upstream_grants::ActiveModel {
                    server_id: Set(server.id),
                    user_id: Set(row.user_id),
                    status: Set(UNAUTHENTICATED.to_owned()),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                }
                .insert(&self.db)
                .await?
            }
        };
        let mut scopes = token.scope.clone();
        if scopes.is_none() {
            scopes = Some(oauth::scopes_for(&config, &client.endpoints).join(" ")).filter(|s| !s.is_empty());
        }
        let mut active = grant.into_active_model();
        active.scopes = Set(scopes);
        active.refresh_token = Set(None);
        let grant = active.update(&self.db).await?;
        self.store_tokens(grant, token).await?;
        let tenant = tenants::Entity::find_by_id(server.tenant_id).one(&self.db).await?;
        let email = users::Entity::find_by_id(row.user_id).one(&self.db).await?.map(|u| u.email).unwrap_or_default();
        let actor = Actor { subject: format!("user:{email}"), request_id: None };
        audit::record(
            &self.db,
            &actor,
            Event::new("connection.create", format!("server:{}", server.slug)).in_tenant(tenant.as_ref()),
            now,
        )
        .await?;
        Ok((server, row.return_to))
    }

    /// The provider answered with an error (the user declined, say): the authorization ends
    /// here. Returns where the browser was to go next, when it was one step of a sign-in.
    pub async fn abandon(&self, state: &str) -> Result<Option<String>> {
        let Some(row) = upstream_auth_states::Entity::find()
            .filter(upstream_auth_states::Column::StateDigest.eq(crate::auth::session::digest(state)))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        upstream_auth_states::Entity::delete_by_id(row.id).exec(&self.db).await?;
        Ok(row.return_to.filter(|_| row.expires_at >= self.clock.now()))
    }

    /// Forgets a user's grant at a server, revoking it at the provider where it can.
    pub async fn disconnect(
        &self,
        actor: &Actor,
        tenant: &tenants::Model,
        server: &servers::Model,
        user: i64,
    ) -> Result<()> {
        let grant =
            self.grant(server.id, user).await.map_err(|e| anyhow::anyhow!(e.to_string()))?.ok_or(Error::NotFound)?;
        if let Some(config) = self.oauth_config(server)? {
            if let Ok(client) = self.client(server, &config).await {
                let place = |column| Place::grant(grant.server_id, grant.user_id, column);
                if let Some(refresh) =
                    grant.refresh_token.as_deref().and_then(|s| self.open(s, &place("refresh_token")).ok())
                {
                    oauth::revoke(&self.http, &client, &refresh, "refresh_token").await;
                } else if let Some(access) =
                    grant.access_token.as_deref().and_then(|s| self.open(s, &place("access_token")).ok())
                {
                    oauth::revoke(&self.http, &client, &access, "access_token").await;
                }
            }
        }
        upstream_grants::Entity::delete_by_id(grant.id).exec(&self.db).await?;
        audit::record(
            &self.db,
            actor,
            Event::new("connection.delete", format!("server:{}", server.slug)).tenant(tenant),
            self.clock.now(),
        )
        .await?;
        Ok(())
    }

    /// Whether a user must do something in the browser before `server` works for them: enter
    /// their own key (per-user headers) or authorize at the provider (per-user OAuth), and have
    /// not yet. Shared credentials and servers without auth need nothing.
    pub async fn needs_action(&self, server: &servers::Model, user: i64) -> Result<bool> {
        let Some(stored) = server.auth_data.as_ref() else { return Ok(false) };
        match AuthData::from_stored(stored) {
            Some(AuthData::Header(h)) if h.auth_level == AuthLevel::PerUser => {
                let values = self
                    .override_values(server, Subject::User(user))
                    .await
                    .map_err(|e| Error::Unavailable(e.to_string()))?;
                Ok(filled_headers(&h.headers, values.as_ref()).is_none())
            }
            Some(AuthData::OAuth2(o)) if o.grant_type == Some(GrantType::AuthorizationCode) => {
                let grant = self.grant(server.id, user).await.map_err(|e| Error::Unavailable(e.to_string()))?;
                let now = self.clock.now();
                Ok(!grant.is_some_and(|g| {
                    g.status == AUTHENTICATED && (g.refresh_token.is_some() || g.expires_at.is_none_or(|at| at > now))
                }))
            }
            _ => Ok(false),
        }
    }

    /// A user's connections, newest first.
    pub async fn connections(&self, user: i64) -> Result<Vec<ConnectionView>> {
        let grants = upstream_grants::Entity::find()
            .filter(upstream_grants::Column::UserId.eq(user))
            .order_by_desc(upstream_grants::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(grants.len());
        for grant in grants {
            let Some(server) = servers::Entity::find_by_id(grant.server_id).one(&self.db).await? else { continue };
            let tenant = self.tenant_slug(&server).await;
            // An access token past its expiry with no way to refresh is not a working connection.
            let expired = grant.expires_at.is_some_and(|at| at <= self.clock.now()) && grant.refresh_token.is_none();
            let (status, reason) = if expired {
                (UNAUTHENTICATED.to_owned(), Some("invalid_grant".to_owned()))
            } else {
                (grant.status.clone(), grant.reason.clone())
            };
            out.push(ConnectionView {
                connect_url: connect_url(&self.public_base, &tenant, &server.slug),
                tenant,
                server: server.slug,
                status,
                reason,
                expires_at: grant.expires_at,
                scopes: grant.scopes,
                connected_at: grant.created_at,
                updated_at: grant.updated_at,
            });
        }
        Ok(out)
    }
}

/// Per-user header templates filled with a subject's values; `None` while any is missing.
fn filled_headers(
    templates: &BTreeMap<String, String>,
    values: Option<&BTreeMap<String, String>>,
) -> Option<Vec<(String, String)>> {
    let values = values?;
    templates.iter().map(|(name, template)| Some((name.clone(), fill(template, values)?))).collect()
}

fn bearer(token: &str) -> (String, String) {
    ("Authorization".to_owned(), format!("Bearer {token}"))
}

fn auth_names(headers: &BTreeMap<String, String>) -> String {
    let names: std::collections::BTreeSet<String> =
        headers.values().filter_map(|t| crate::outbound::placeholders(t).ok()).flatten().collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// How a subject is stored on an Auth Override.
pub fn subject_key(subject: Subject) -> (&'static str, i64) {
    match subject {
        Subject::User(id) => ("user", id),
        Subject::VirtualAccount(id) => ("virtualaccount", id),
    }
}

#[async_trait::async_trait]
impl CredentialResolver for Vault {
    async fn resolve(&self, request: &CredentialRequest) -> Result<Resolved, CredentialError> {
        self.resolve_inner(request).await
    }
}
