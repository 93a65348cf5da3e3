//! Identity providers: an organisation's OpenID provider, per tenant or for the platform. A
//! provider with `login` signs people in (SSO, authorization code + PKCE + nonce); the people
//! it vouches for are found by a verified email claim, created just in time when their domain
//! is allowed, made members with the provider's default role, and have their teams follow the
//! groups claim. Discovery, the key set and every request to the provider go through the
//! egress policy, like any other outbound request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::audit::{Actor, Change, Event};
use crate::auth::seal::{Place, Sealer};
use crate::domain::{DisplayName, Email, Slug, TenantRole};
use crate::error::{Error, FieldError, Result};
use crate::page::{self, PageRequest, Paged};
use crate::store::entities::{
    identity_providers as idps, idp_sessions, team_members, teams, tenant_members, tenants, users,
};

pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];
const FLOW_TTL_MINUTES: i64 = 10;

/// What an administrator sends to register a provider (and, all optional, to change one).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdpRequest {
    pub slug: Option<String>,
    pub display_name: Option<String>,
    /// The provider's issuer URL, exactly as its discovery document spells it (with or without
    /// a trailing slash); `/.well-known/openid-configuration` is read from there.
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// Write-only; stored sealed. Send `""` to remove it.
    pub client_secret: Option<String>,
    /// Default `["openid", "email", "profile"]`; must contain `openid`.
    pub scopes: Option<Vec<String>>,
    /// Audiences accepted on inbound JWTs; default the client id.
    pub audiences: Option<Vec<String>>,
    /// The claim that names the person; default `email` (`email_verified` must be true).
    pub user_claim: Option<String>,
    /// Email domains this provider may sign in and create users for; empty = existing users
    /// it already vouches for and invited people only.
    pub allowed_domains: Option<Vec<String>>,
    /// A claim holding group names, e.g. `groups`.
    pub groups_claim: Option<String>,
    /// `{"<group>": "<team slug>"}`: membership of each mapped team follows the groups claim
    /// at every sign-in.
    pub group_teams: Option<BTreeMap<String, String>>,
    /// Machine tokens: a token whose claims contain all of `claims` acts as the virtual account.
    pub virtual_accounts: Option<Vec<VirtualAccountMapping>>,
    /// The tenant role of people created just in time: `member` (default) or `admin`.
    pub default_role: Option<TenantRole>,
    /// Offer "Continue with <display name>" at sign-in.
    pub login: Option<bool>,
    /// Accept this provider's JWTs as bearer tokens.
    pub accept_jwt: Option<bool>,
    /// Refuse password sign-in for emails in `allowed_domains`.
    pub sso_required: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VirtualAccountMapping {
    pub claims: BTreeMap<String, String>,
    pub virtual_account: String,
}

/// A provider as the API shows it: never the secret.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct IdpView {
    pub slug: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    pub has_client_secret: bool,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub user_claim: String,
    pub allowed_domains: Vec<String>,
    pub groups_claim: Option<String>,
    pub group_teams: BTreeMap<String, String>,
    pub virtual_accounts: Vec<VirtualAccountMapping>,
    pub default_role: TenantRole,
    pub login: bool,
    pub accept_jwt: bool,
    pub sso_required: bool,
    /// Discovered from the issuer at the last successful test or sign-in.
    pub jwks_uri: Option<String>,
    pub keys_fetched_at: Option<DateTime<Utc>>,
    /// The redirect URI to register with the provider for this gateway.
    pub redirect_uri: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The value an active model holds for a column, set or unchanged.
fn current<V: Into<sea_orm::Value> + Clone>(value: &sea_orm::ActiveValue<V>) -> Option<V> {
    value.clone().take()
}

fn list_of(value: &Value) -> Vec<String> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

impl IdpView {
    pub fn of(row: &idps::Model, redirect_uri: &str) -> Result<Self> {
        Ok(Self {
            slug: row.slug.clone(),
            display_name: row.display_name.clone(),
            issuer: row.issuer.clone(),
            client_id: row.client_id.clone(),
            has_client_secret: row.client_secret.is_some(),
            scopes: list_of(&row.scopes),
            audiences: list_of(&row.audiences),
            user_claim: row.user_claim.clone(),
            allowed_domains: list_of(&row.allowed_domains),
            groups_claim: row.groups_claim.clone(),
            group_teams: serde_json::from_value(row.group_teams.clone()).unwrap_or_default(),
            virtual_accounts: serde_json::from_value(row.virtual_account_claims.clone()).unwrap_or_default(),
            default_role: TenantRole::parse(&row.default_role)?,
            login: row.login,
            accept_jwt: row.accept_jwt,
            sso_required: row.sso_required,
            jwks_uri: row.jwks_uri.clone(),
            keys_fetched_at: row.jwks_fetched_at,
            redirect_uri: redirect_uri.to_owned(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn claim_name(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> String {
    let ok = !raw.is_empty() && raw.len() <= 64 && raw.chars().all(|c| c.is_ascii_graphic());
    if !ok {
        errors.push(FieldError::new(field, "invalid_claim", "must be a claim name (1-64 printable ASCII characters)"));
    }
    raw.to_owned()
}

fn domain(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> String {
    let d = raw.trim().trim_start_matches('@').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !ok {
        errors.push(FieldError::new(field, "invalid_domain", "must be an email domain like example.com"));
    }
    d
}

/// Applies a request onto a row (new or existing), checking every field it sets.
async fn apply(
    db: &impl ConnectionTrait,
    tenant: Option<&tenants::Model>,
    row: &mut idps::ActiveModel,
    req: IdpRequest,
    creating: bool,
) -> Result<()> {
    let mut errors = Vec::new();
    if let Some(slug) = &req.slug {
        match Slug::parse("slug", slug) {
            Ok(s) if creating || current(&row.slug).as_deref() == Some(s.as_str()) => {
                row.slug = Set(s.as_str().to_owned())
            }
            Ok(_) => errors.push(FieldError::new("slug", "immutable", "the slug cannot change")),
            Err(e) => errors.push(e),
        }
    } else if creating {
        errors.push(FieldError::new("slug", "required", "is required"));
    }
    match req.display_name.as_deref().map(|d| DisplayName::parse("display_name", d)) {
        Some(Ok(d)) => row.display_name = Set(d.into_inner()),
        Some(Err(e)) => errors.push(e),
        None if creating => errors.push(FieldError::new("display_name", "required", "is required")),
        None => {}
    }
    match req.issuer.as_deref() {
        Some(issuer) => match url::Url::parse(issuer) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() && u.query().is_none() => {
                // Exactly as given: discovery requires the provider's own spelling (some
                // issuers end with a slash).
                row.issuer = Set(issuer.trim().to_owned());
                // A new issuer has new keys.
                row.jwks_uri = Set(None);
                row.jwks = Set(None);
                row.jwks_fetched_at = Set(None);
            }
            _ => errors.push(FieldError::new("issuer", "invalid_url", "must be the provider's http(s) issuer URL")),
        },
        None if creating => errors.push(FieldError::new("issuer", "required", "is required")),
        None => {}
    }
    match req.client_id.as_deref() {
        Some(id) if !id.trim().is_empty() && id.len() <= 512 => row.client_id = Set(id.trim().to_owned()),
        Some(_) => errors.push(FieldError::new("client_id", "invalid", "must be 1-512 characters")),
        None if creating => errors.push(FieldError::new("client_id", "required", "is required")),
        None => {}
    }
    if let Some(scopes) = req.scopes.or_else(|| creating.then(|| DEFAULT_SCOPES.map(String::from).to_vec())) {
        if !scopes.iter().any(|s| s == "openid") {
            errors.push(FieldError::new("scopes", "openid_required", "must contain openid"));
        }
        if scopes.iter().any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control())) {
            errors.push(FieldError::new("scopes", "invalid_scope", "scopes are single words"));
        }
        row.scopes = Set(json!(scopes));
    }
    if let Some(audiences) = req.audiences {
        row.audiences = Set(json!(audiences));
    } else if creating {
        row.audiences = Set(json!(current(&row.client_id).into_iter().collect::<Vec<_>>()));
    }
    if let Some(claim) = req.user_claim.or_else(|| creating.then(|| "email".to_owned())) {
        row.user_claim = Set(claim_name("user_claim", &claim, &mut errors));
    }
    if let Some(domains) = req.allowed_domains.or_else(|| creating.then(Vec::new)) {
        let set: BTreeSet<String> =
            domains.iter().enumerate().map(|(i, d)| domain(&format!("allowed_domains[{i}]"), d, &mut errors)).collect();
        row.allowed_domains = Set(json!(set));
    }
    if let Some(groups) = req.groups_claim {
        row.groups_claim = Set((!groups.is_empty()).then(|| claim_name("groups_claim", &groups, &mut errors)));
    }
    if let Some(map) = req.group_teams.or_else(|| creating.then(BTreeMap::new)) {
        if !map.is_empty() {
            match tenant {
                None => errors.push(FieldError::new("group_teams", "tenant_only", "teams belong to tenants")),
                Some(tenant) => {
                    for (group, team) in &map {
                        let found = teams::Entity::find()
                            .filter(teams::Column::TenantId.eq(tenant.id))
                            .filter(teams::Column::Slug.eq(team.as_str()))
                            .filter(teams::Column::Builtin.eq(false))
                            .one(db)
                            .await?;
                        if found.is_none() {
                            errors.push(FieldError::new(
                                format!("group_teams.{group}"),
                                "unknown_team",
                                format!("no team {team} in tenant {}", tenant.slug),
                            ));
                        }
                    }
                }
            }
        }
        row.group_teams = Set(json!(map));
    }
    if let Some(mappings) = req.virtual_accounts.or_else(|| creating.then(Vec::new)) {
        if tenant.is_none() && !mappings.is_empty() {
            errors.push(FieldError::new("virtual_accounts", "tenant_only", "virtual accounts belong to tenants"));
        }
        for (i, m) in mappings.iter().enumerate() {
            if m.claims.is_empty() {
                errors.push(FieldError::new(
                    format!("virtual_accounts[{i}].claims"),
                    "required",
                    "name one claim or more",
                ));
            }
        }
        row.virtual_account_claims = Set(json!(mappings));
    }
    if let Some(role) = req.default_role.or(creating.then_some(TenantRole::Member)) {
        row.default_role = Set(role.as_str().to_owned());
    }
    for (flag, value, field) in [
        (&mut row.login, req.login, "login"),
        (&mut row.accept_jwt, req.accept_jwt, "accept_jwt"),
        (&mut row.sso_required, req.sso_required, "sso_required"),
    ] {
        match value {
            Some(v) => *flag = Set(v),
            None if creating => *flag = Set(field == "login"),
            None => {}
        }
    }
    if let Some(secret) = req.client_secret {
        row.client_secret = Set(None);
        if !secret.is_empty() {
            // Sealed once the row has its id (see `seal_secret`); kept in clear only in memory.
            row.client_secret = Set(Some(secret));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    // SSO-only domains need a provider that can sign those people in.
    if current(&row.sso_required) == Some(true) && current(&row.login) != Some(true) {
        return Err(FieldError::new("sso_required", "needs_login", "sso_required needs login: true").into());
    }
    Ok(())
}

async fn seal_secret(txn: &impl ConnectionTrait, sealer: &Sealer, row: idps::Model) -> Result<idps::Model> {
    let Some(clear) = row.client_secret.clone() else { return Ok(row) };
    let sealed = sealer.seal_at(clear.as_bytes(), &Place::idp_secret(row.id))?;
    let mut active = row.into_active_model();
    active.client_secret = Set(Some(sealed));
    Ok(active.update(txn).await?)
}

fn scope_filter(tenant: Option<&tenants::Model>) -> sea_orm::Condition {
    match tenant {
        Some(t) => sea_orm::Condition::all().add(idps::Column::TenantId.eq(t.id)),
        None => sea_orm::Condition::all().add(idps::Column::TenantId.is_null()),
    }
}

fn target(tenant: Option<&tenants::Model>, slug: &str) -> String {
    match tenant {
        Some(t) => format!("identity_provider:{}/{slug}", t.slug),
        None => format!("identity_provider:{slug}"),
    }
}

pub async fn create<C: TransactionTrait>(
    db: &C,
    sealer: &Sealer,
    actor: &Actor,
    tenant: Option<&tenants::Model>,
    req: IdpRequest,
    now: DateTime<Utc>,
) -> Result<idps::Model> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let mut row = idps::ActiveModel {
        tenant_id: Set(tenant.map(|t| t.id)),
        groups_claim: Set(None),
        client_secret: Set(None),
        jwks_uri: Set(None),
        jwks: Set(None),
        jwks_fetched_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    apply(txn, tenant, &mut row, req, true).await?;
    let slug = current(&row.slug).unwrap_or_default();
    // The unique index does not cover the platform's providers (a null tenant), so look first.
    if idps::Entity::find()
        .filter(scope_filter(tenant))
        .filter(idps::Column::Slug.eq(slug.as_str()))
        .one(txn)
        .await?
        .is_some()
    {
        return Err(Error::conflict(
            "already_exists",
            Some("slug"),
            format!("an identity provider {slug} already exists"),
        ));
    }
    let inserted = row
        .insert(txn)
        .await
        .map_err(|e| Error::unique_violation(e, "slug", format!("an identity provider {slug} already exists")))?;
    let saved = seal_secret(txn, sealer, inserted).await?;
    let details = json!({"issuer": saved.issuer, "login": saved.login, "accept_jwt": saved.accept_jwt});
    change
        .commit(Event::new("identity_provider.create", target(tenant, &slug)).in_tenant(tenant).details(details))
        .await?;
    Ok(saved)
}

pub async fn list(
    db: &impl ConnectionTrait,
    tenant: Option<&tenants::Model>,
    page: PageRequest,
) -> Result<Paged<idps::Model>> {
    let select = idps::Entity::find().filter(scope_filter(tenant));
    Ok(page::fetch(db, select, idps::Column::Id, |r| r.id, page).await?)
}

pub async fn get(db: &impl ConnectionTrait, tenant: Option<&tenants::Model>, slug: &str) -> Result<idps::Model> {
    idps::Entity::find()
        .filter(scope_filter(tenant))
        .filter(idps::Column::Slug.eq(slug))
        .one(db)
        .await?
        .ok_or(Error::NotFound)
}

pub async fn update<C: TransactionTrait>(
    db: &C,
    sealer: &Sealer,
    actor: &Actor,
    tenant: Option<&tenants::Model>,
    row: idps::Model,
    req: IdpRequest,
    now: DateTime<Utc>,
) -> Result<idps::Model> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let secret_changed = req.client_secret.is_some();
    let mut active = row.into_active_model();
    apply(txn, tenant, &mut active, req, false).await?;
    active.updated_at = Set(now);
    let mut saved = active.update(txn).await?;
    if secret_changed {
        saved = seal_secret(txn, sealer, saved).await?;
    }
    let details = json!({"issuer": saved.issuer, "login": saved.login, "accept_jwt": saved.accept_jwt});
    change
        .commit(Event::new("identity_provider.update", target(tenant, &saved.slug)).in_tenant(tenant).details(details))
        .await?;
    Ok(saved)
}

pub async fn delete<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: Option<&tenants::Model>,
    row: idps::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    let change = Change::begin(db, actor, now).await?;
    idps::Entity::delete_by_id(row.id).exec(change.db()).await?;
    change.commit(Event::new("identity_provider.delete", target(tenant, &row.slug)).in_tenant(tenant)).await?;
    Ok(())
}

/// Remembers the keys and their URL found at discovery: the snapshot carries them to the
/// proxies, so a change of keys is a change of policy. Returns whether they changed.
async fn remember_keys<C: TransactionTrait>(
    db: &C,
    row: &idps::Model,
    metadata: &CoreProviderMetadata,
    now: DateTime<Utc>,
) -> Result<bool> {
    let keys = serde_json::to_value(metadata.jwks()).map_err(anyhow::Error::from)?;
    let uri = metadata.jwks_uri().url().to_string();
    let changed = row.jwks.as_ref() != Some(&keys) || row.jwks_uri.as_deref() != Some(uri.as_str());
    let txn = crate::store::begin_write(db).await?;
    let mut active = row.clone().into_active_model();
    active.jwks_uri = Set(Some(uri));
    active.jwks = Set(Some(keys));
    active.jwks_fetched_at = Set(Some(now));
    active.update(&txn).await?;
    if changed && row.accept_jwt {
        crate::policy::publish::bump(&txn).await?;
    }
    sea_orm::TransactionSession::commit(txn).await?;
    Ok(changed)
}

/// Fetches the keys of every provider whose JWTs are accepted; a provider that cannot be
/// reached keeps the keys it had. Returns how many changed.
pub async fn refresh_keys<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    oidc: &Oidc,
    now: DateTime<Utc>,
) -> Result<usize> {
    let rows = idps::Entity::find().filter(idps::Column::AcceptJwt.eq(true)).all(db).await?;
    let mut changed = 0;
    for row in rows {
        match oidc.discover(&row.issuer).await {
            Ok(metadata) => {
                if remember_keys(db, &row, &metadata, now).await? {
                    tracing::info!(provider = %row.slug, "identity provider keys changed");
                    changed += 1;
                }
            }
            Err(e) => tracing::warn!(provider = %row.slug, error = %e, "refreshing identity provider keys failed"),
        }
    }
    Ok(changed)
}

/// Talks to identity providers: discovery, keys, the code exchange. Every request goes
/// through the egress policy and follows no redirect.
#[derive(Clone)]
pub struct Oidc {
    http: reqwest::Client,
    egress: Arc<crate::egress::Egress>,
}

/// Why a provider could not be used, in words an administrator can act on.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the issuer URL is not allowed by the gateway's egress policy: {0}")]
    Egress(String),
    #[error("discovery at {issuer}/.well-known/openid-configuration failed: {why}")]
    Discovery { issuer: String, why: String },
    #[error("the provider refused the sign-in: {0}")]
    Exchange(String),
    #[error("the provider's ID token is not acceptable: {0}")]
    IdToken(String),
}

impl From<ProviderError> for Error {
    fn from(e: ProviderError) -> Self {
        Error::Unavailable(e.to_string())
    }
}

/// The error type the HTTP client gives openidconnect.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpFailure(String);

fn describe<E: std::error::Error>(e: &E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Oidc {
    pub fn new(egress: Arc<crate::egress::Egress>) -> anyhow::Result<Self> {
        let http =
            egress.builder().connect_timeout(Duration::from_secs(10)).timeout(Duration::from_secs(15)).build()?;
        Ok(Self { http, egress })
    }

    async fn send(
        &self,
        request: openidconnect::HttpRequest,
    ) -> std::result::Result<openidconnect::HttpResponse, HttpFailure> {
        let url = url::Url::parse(&request.uri().to_string()).map_err(|e| HttpFailure(e.to_string()))?;
        self.egress.check_url(&url).map_err(|e| HttpFailure(e.to_string()))?;
        let mut builder = self.http.request(request.method().clone(), url);
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let response =
            builder.body(request.body().clone()).send().await.map_err(|e| HttpFailure(describe(&e.without_url())))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| HttpFailure(describe(&e)))?;
        let mut out = openidconnect::HttpResponse::new(body.to_vec());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }

    pub async fn discover(&self, issuer: &str) -> std::result::Result<CoreProviderMetadata, ProviderError> {
        let url = url::Url::parse(issuer).map_err(|e| ProviderError::Egress(e.to_string()))?;
        self.egress.check_url(&url).map_err(|e| ProviderError::Egress(e.to_string()))?;
        let issuer_url = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| ProviderError::Discovery { issuer: issuer.into(), why: e.to_string() })?;
        CoreProviderMetadata::discover_async(issuer_url, self)
            .await
            .map_err(|e| ProviderError::Discovery { issuer: issuer.into(), why: describe(&e) })
    }

    /// `POST …/test`: discovery and the key set, remembered on success.
    pub async fn test<C: TransactionTrait>(&self, db: &C, row: &idps::Model, now: DateTime<Utc>) -> Result<TestResult> {
        let metadata = self.discover(&row.issuer).await?;
        remember_keys(db, row, &metadata, now).await?;
        Ok(TestResult {
            issuer: metadata.issuer().to_string(),
            authorization_endpoint: metadata.authorization_endpoint().to_string(),
            token_endpoint: metadata.token_endpoint().map(|t| t.to_string()),
            jwks_uri: metadata.jwks_uri().to_string(),
            keys: metadata.jwks().keys().len(),
        })
    }

    fn open_secret(sealer: &Sealer, row: &idps::Model) -> Result<Option<ClientSecret>> {
        match &row.client_secret {
            Some(sealed) => {
                let clear = sealer.open_at(sealed, &Place::idp_secret(row.id))?;
                Ok(Some(ClientSecret::new(String::from_utf8(clear).map_err(anyhow::Error::from)?)))
            }
            None => Ok(None),
        }
    }

    /// Starts a sign-in: the URL to send the browser to, and the flow to keep (sealed, in the
    /// browser) until the provider sends it back.
    pub async fn start(
        &self,
        sealer: &Sealer,
        row: &idps::Model,
        redirect_uri: &str,
        next: FlowNext,
        now: DateTime<Utc>,
    ) -> Result<(String, Flow)> {
        let metadata = self.discover(&row.issuer).await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(row.client_id.clone()),
            Self::open_secret(sealer, row)?,
        )
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(anyhow::Error::from)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        for scope in list_of(&row.scopes).into_iter().filter(|s| s != "openid") {
            request = request.add_scope(Scope::new(scope));
        }
        // Providers hand out a refresh token for `offline_access` only with explicit consent
        // (OpenID Connect Core §11).
        if list_of(&row.scopes).iter().any(|s| s == "offline_access") {
            request = request.add_extra_param("prompt", "consent");
        }
        if let Some(email) = &next.login_hint {
            request = request.add_extra_param("login_hint", email.clone());
        }
        let (url, state, nonce) = request.url();
        let flow = Flow {
            idp: row.id,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next,
            expires_at: now + chrono::Duration::minutes(FLOW_TTL_MINUTES),
        };
        Ok((url.to_string(), flow))
    }

    /// Ends a sign-in: exchanges the code, validates the ID token (signature, issuer,
    /// audience, expiry, nonce) and returns its claims.
    pub async fn finish(
        &self,
        sealer: &Sealer,
        row: &idps::Model,
        redirect_uri: &str,
        flow: &Flow,
        code: String,
    ) -> Result<(serde_json::Map<String, Value>, Option<String>)> {
        let metadata = self.discover(&row.issuer).await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(row.client_id.clone()),
            Self::open_secret(sealer, row)?,
        )
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(anyhow::Error::from)?);
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| ProviderError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(self)
            .await
            .map_err(|e| ProviderError::Exchange(describe(&e)))?;
        let refresh = response.refresh_token().map(|r| r.secret().clone());
        let id_token =
            response.id_token().ok_or_else(|| ProviderError::IdToken("the provider sent no ID token".into()))?;
        id_token
            .claims(&client.id_token_verifier(), &Nonce::new(flow.nonce.clone()))
            .map_err(|e| ProviderError::IdToken(describe(&e)))?;
        // Verified above; the raw payload carries the claims the core type does not name
        // (groups, custom user claims).
        let claims = crate::policy::idp::unverified_claims(&id_token.to_string())
            .ok_or_else(|| ProviderError::IdToken("malformed payload".into()))?;
        Ok((claims, refresh))
    }

    /// Asks the provider whether a person's session there still stands, by refreshing it.
    /// `Ok(Some(token))`: it does (with the refresh token to keep); `Ok(None)`: the provider
    /// says it does not (revoked, expired, unknown); `Err`: the provider could not be asked.
    async fn still_signed_in(
        &self,
        sealer: &Sealer,
        row: &idps::Model,
        refresh: String,
    ) -> std::result::Result<Option<String>, ProviderError> {
        let metadata = self.discover(&row.issuer).await?;
        let secret = Self::open_secret(sealer, row).map_err(|e| ProviderError::Exchange(e.to_string()))?;
        let client = CoreClient::from_provider_metadata(metadata, ClientId::new(row.client_id.clone()), secret);
        let token = openidconnect::RefreshToken::new(refresh.clone());
        let request = client.exchange_refresh_token(&token).map_err(|e| ProviderError::Exchange(e.to_string()))?;
        match request.request_async(self).await {
            Ok(response) => Ok(Some(response.refresh_token().map(|r| r.secret().clone()).unwrap_or(refresh))),
            Err(openidconnect::RequestTokenError::ServerResponse(e))
                if matches!(e.error(), openidconnect::core::CoreErrorResponseType::InvalidGrant) =>
            {
                Ok(None)
            }
            Err(e) => Err(ProviderError::Exchange(describe(&e))),
        }
    }
}

/// Keeps a person's provider session (its refresh token, sealed) to ask again later.
pub async fn remember_session(
    db: &impl ConnectionTrait,
    sealer: &Sealer,
    user_id: i64,
    idp_id: i64,
    refresh: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let sealed = sealer.seal_at(refresh.as_bytes(), &Place::idp_session(user_id, idp_id))?;
    let found = idp_sessions::Entity::find()
        .filter(idp_sessions::Column::UserId.eq(user_id))
        .filter(idp_sessions::Column::IdpId.eq(idp_id))
        .one(db)
        .await?;
    match found {
        Some(row) => {
            let mut active = row.into_active_model();
            active.refresh_token = Set(sealed);
            active.updated_at = Set(now);
            active.update(db).await?;
        }
        None => {
            idp_sessions::ActiveModel {
                user_id: Set(user_id),
                idp_id: Set(idp_id),
                refresh_token: Set(sealed),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(db)
            .await?;
        }
    }
    Ok(())
}

/// Whether a person still stands at the providers they signed in with, asked when their
/// gateway sign-in is refreshed. `Some(provider)` names one that no longer knows them (its
/// session is then forgotten); a provider that cannot be reached is not held against them.
pub async fn session_ended(
    db: &impl ConnectionTrait,
    sealer: &Sealer,
    oidc: &Oidc,
    user_id: i64,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    let sessions = idp_sessions::Entity::find().filter(idp_sessions::Column::UserId.eq(user_id)).all(db).await?;
    for session in sessions {
        let Some(row) = idps::Entity::find_by_id(session.idp_id).one(db).await? else { continue };
        let place = Place::idp_session(user_id, row.id);
        let Ok(refresh) =
            sealer.open_at(&session.refresh_token, &place).map(|b| String::from_utf8_lossy(&b).into_owned())
        else {
            continue;
        };
        match oidc.still_signed_in(sealer, &row, refresh).await {
            Ok(Some(fresh)) => remember_session(db, sealer, user_id, row.id, &fresh, now).await?,
            Ok(None) => {
                idp_sessions::Entity::delete_by_id(session.id).exec(db).await?;
                return Ok(Some(row.slug));
            }
            Err(e) => {
                tracing::warn!(provider = %row.slug, error = %e, "could not ask the identity provider about a session")
            }
        }
    }
    Ok(None)
}

impl<'c> openidconnect::AsyncHttpClient<'c> for Oidc {
    type Error = HttpFailure;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<openidconnect::HttpResponse, HttpFailure>> + Send + 'c,
        >,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: Option<String>,
    pub jwks_uri: String,
    /// How many keys the provider publishes.
    pub keys: usize,
}

/// Where a sign-in goes after the provider: a local path, and an invitation to accept.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FlowNext {
    pub return_to: String,
    pub invitation: Option<String>,
    pub login_hint: Option<String>,
}

/// A sign-in in progress, kept sealed in the browser that started it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flow {
    pub idp: i64,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub next: FlowNext,
    pub expires_at: DateTime<Utc>,
}

impl Flow {
    pub fn seal(&self, sealer: &Sealer) -> Result<String> {
        Ok(sealer.seal_at(&serde_json::to_vec(self).map_err(anyhow::Error::from)?, &Place::sso_flow())?)
    }

    pub fn open(sealer: &Sealer, sealed: &str, now: DateTime<Utc>) -> Option<Self> {
        let flow: Self = serde_json::from_slice(&sealer.open_at(sealed, &Place::sso_flow()).ok()?).ok()?;
        (flow.expires_at > now).then_some(flow)
    }
}

/// Why a provider's answer does not sign anyone in. Each has its own code, in the page and
/// in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the provider did not say which email this is (claim {0})")]
    NoEmail(String),
    #[error("the provider has not verified this email address")]
    UnverifiedEmail,
    #[error("{0} is not in a domain this provider may sign in")]
    DomainNotAllowed(String),
    #[error("{0} signs in another way; this provider does not vouch for that account")]
    NotVouched(String),
    #[error("there is no account for {0}; ask an administrator for an invitation")]
    NoAccount(String),
    #[error("this account is disabled")]
    Disabled,
    #[error("the invitation is not valid (used, revoked, expired, or for another email)")]
    InvalidInvitation,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoEmail(_) => "no_email",
            Self::UnverifiedEmail => "unverified_email",
            Self::DomainNotAllowed(_) => "domain_not_allowed",
            Self::NotVouched(_) => "not_vouched",
            Self::NoAccount(_) => "no_account",
            Self::Disabled => "user_disabled",
            Self::InvalidInvitation => "invalid_invitation",
        }
    }
}

fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
}

fn groups_of(claims: &serde_json::Map<String, Value>, claim: &str) -> BTreeSet<String> {
    match claims.get(claim) {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => s.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        _ => BTreeSet::new(),
    }
}

/// Who a sign-in turned out to be.
pub struct Admitted {
    pub user: users::Model,
    pub created: bool,
}

/// Turns a provider's verified claims into a person: finds or creates the user, checks the
/// provider may vouch for them, makes them a member where the provider's tenant allows, and
/// brings their teams in line with the groups claim. All in one change.
pub async fn admit<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    row: &idps::Model,
    claims: &serde_json::Map<String, Value>,
    invitation: Option<&str>,
    now: DateTime<Utc>,
) -> Result<std::result::Result<Admitted, Refusal>> {
    let claim = row.user_claim.as_str();
    let Some(raw_email) = claims.get(claim).and_then(Value::as_str) else {
        return Ok(Err(Refusal::NoEmail(claim.to_owned())));
    };
    let Ok(email) = Email::parse("email", raw_email) else { return Ok(Err(Refusal::NoEmail(claim.to_owned()))) };
    if claim == "email" && claims.get("email_verified") != Some(&Value::Bool(true)) {
        return Ok(Err(Refusal::UnverifiedEmail));
    }
    let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
    let allowed: Vec<String> = list_of(&row.allowed_domains);
    let in_domain = allowed.iter().any(|d| d == domain_of(email.as_str()));
    // Decide first, from reads alone; a refusal changes nothing.
    let tenant = match row.tenant_id {
        Some(id) => tenants::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    let invite = match invitation {
        Some(secret) => match crate::invitations::find_open(db, secret, now).await? {
            Some(inv) if inv.email == email.as_str() && Some(inv.tenant_id) == row.tenant_id => Some(inv),
            _ => return Ok(Err(Refusal::InvalidInvitation)),
        },
        None => None,
    };
    let existing = users::Entity::find().filter(users::Column::Email.eq(email.as_str())).one(db).await?;
    let vouches = |u: &users::Model| {
        // The platform's provider is the platform admins' own choice: it may sign in anyone.
        row.tenant_id.is_none()
            || (u.identity_tenant_id == row.tenant_id
                && u.identity_issuer.as_deref() == Some(row.issuer.as_str())
                && u.identity_subject.as_deref().is_none_or(|s| s == subject))
    };
    match &existing {
        Some(u) if u.disabled => return Ok(Err(Refusal::Disabled)),
        Some(u) if vouches(u) && !allowed.is_empty() && !in_domain && row.tenant_id.is_some() && invite.is_none() => {
            return Ok(Err(Refusal::DomainNotAllowed(email.to_string())));
        }
        Some(u) if vouches(u) => {}
        Some(u) => return Ok(Err(Refusal::NotVouched(u.email.clone()))),
        None if !in_domain && invite.is_none() => {
            return Ok(Err(if allowed.is_empty() {
                Refusal::NoAccount(email.to_string())
            } else {
                Refusal::DomainNotAllowed(email.to_string())
            }));
        }
        None => {}
    }
    let actor = Actor { subject: format!("user:{email}"), request_id: None };
    let change = Change::begin(db, &actor, now).await?;
    let txn = change.db();
    let (user, created) = match existing {
        Some(u) => {
            let mut active = u.into_active_model();
            if row.tenant_id.is_none() {
                // Remember who vouched, without taking the account from a tenant's provider.
                if current(&active.identity_issuer).flatten().is_none() {
                    active.identity_issuer = Set(Some(row.issuer.clone()));
                    active.identity_subject = Set(Some(subject.clone()));
                }
            } else {
                active.identity_subject = Set(Some(subject.clone()));
            }
            active.updated_at = Set(now);
            (active.update(txn).await?, false)
        }
        None => {
            let name = claims
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.trim().is_empty())
                .map(|n| n.chars().take(200).collect::<String>())
                .unwrap_or_else(|| email.as_str().to_owned());
            let user = users::ActiveModel {
                email: Set(email.as_str().to_owned()),
                display_name: Set(name),
                password_hash: Set(None),
                is_platform_admin: Set(false),
                disabled: Set(false),
                identity_tenant_id: Set(row.tenant_id),
                identity_issuer: Set(Some(row.issuer.clone())),
                identity_subject: Set(Some(subject.clone())),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            change
                .record(
                    Event::new("user.create", format!("user:{}", user.email))
                        .in_tenant(tenant.as_ref())
                        .details(json!({"identity_provider": row.slug, "just_in_time": true})),
                )
                .await?;
            (user, true)
        }
    };
    if let Some(tenant) = &tenant {
        let membership = tenant_members::Entity::find()
            .filter(tenant_members::Column::TenantId.eq(tenant.id))
            .filter(tenant_members::Column::UserId.eq(user.id))
            .one(txn)
            .await?;
        if membership.is_none() {
            let role = match &invite {
                Some(inv) => inv.role.clone(),
                None => row.default_role.clone(),
            };
            tenant_members::ActiveModel {
                tenant_id: Set(tenant.id),
                user_id: Set(user.id),
                role: Set(role.clone()),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            change
                .record(
                    Event::new("member.add", format!("user:{email}"))
                        .tenant(tenant)
                        .details(json!({"role": role, "identity_provider": row.slug})),
                )
                .await?;
        }
        if let Some(inv) = invite {
            crate::invitations::mark_accepted(txn, inv, user.id, now).await?;
        }
        if let Some(groups_claim) = &row.groups_claim {
            sync_teams(txn, tenant, row, &user, &groups_of(claims, groups_claim), now).await?;
        }
    }
    change
        .commit(
            Event::new("user.sign_in", format!("user:{email}"))
                .in_tenant(tenant.as_ref())
                .details(json!({"identity_provider": row.slug, "created": created})),
        )
        .await?;
    Ok(Ok(Admitted { user, created }))
}

/// Membership of each team the provider maps follows the groups claim; teams it does not map
/// are left alone.
async fn sync_teams(
    txn: &impl ConnectionTrait,
    tenant: &tenants::Model,
    row: &idps::Model,
    user: &users::Model,
    groups: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<()> {
    let map: BTreeMap<String, String> = serde_json::from_value(row.group_teams.clone()).unwrap_or_default();
    let wanted: BTreeSet<&String> = map.iter().filter(|(g, _)| groups.contains(*g)).map(|(_, t)| t).collect();
    for team_slug in map.values().collect::<BTreeSet<_>>() {
        let Some(team) = teams::Entity::find()
            .filter(teams::Column::TenantId.eq(tenant.id))
            .filter(teams::Column::Slug.eq(team_slug.as_str()))
            .one(txn)
            .await?
        else {
            continue;
        };
        let current = team_members::Entity::find()
            .filter(team_members::Column::TeamId.eq(team.id))
            .filter(team_members::Column::UserId.eq(user.id))
            .one(txn)
            .await?;
        match (wanted.contains(team_slug), current) {
            (true, None) => {
                team_members::ActiveModel {
                    team_id: Set(team.id),
                    user_id: Set(user.id),
                    created_at: Set(now),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
            }
            (false, Some(m)) => {
                team_members::Entity::delete_by_id(m.id).exec(txn).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Login providers offered for a tenant's sign-in (its own, then the platform's).
pub async fn login_providers(db: &impl ConnectionTrait, tenant: Option<&tenants::Model>) -> Result<Vec<idps::Model>> {
    let mut found = Vec::new();
    if let Some(t) = tenant {
        found.extend(
            idps::Entity::find()
                .filter(idps::Column::TenantId.eq(t.id))
                .filter(idps::Column::Login.eq(true))
                .all(db)
                .await?,
        );
    }
    found.extend(
        idps::Entity::find()
            .filter(idps::Column::TenantId.is_null())
            .filter(idps::Column::Login.eq(true))
            .all(db)
            .await?,
    );
    Ok(found)
}

/// Home-realm discovery: the login providers whose allowed domains include this email's.
pub async fn providers_for_email(db: &impl ConnectionTrait, email: &Email) -> Result<Vec<idps::Model>> {
    let domain = domain_of(email.as_str()).to_owned();
    let all = idps::Entity::find().filter(idps::Column::Login.eq(true)).all(db).await?;
    Ok(all.into_iter().filter(|p| list_of(&p.allowed_domains).contains(&domain)).collect())
}

/// The provider that makes password sign-in unavailable for this email, if any.
pub async fn sso_required_for(db: &impl ConnectionTrait, email: &Email) -> Result<Option<idps::Model>> {
    Ok(providers_for_email(db, email).await?.into_iter().find(|p| p.sso_required))
}
