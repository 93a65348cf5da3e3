//! Consent, authorization codes, sign-ins (refresh-token families), access tokens and their
//! revocation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clients::Client;
use crate::{OAuthError, ServerConfig};
use mcpgate_control::auth::access_token::{self, AccessClaims};
use mcpgate_control::auth::seal::Sealer;
use mcpgate_control::auth::session::{digest, random_secret};
use mcpgate_control::policy::publish::{active_key, bump};
use mcpgate_store::entities::{
    oauth_clients, oauth_codes, oauth_consents, oauth_grants, oauth_refresh_tokens, oauth_revoked_tokens,
};

pub use mcpgate_control::auth::access_token::SCOPES;
const CODE_LIFETIME_SECONDS: i64 = 60;
/// How long a person has between the authorization request and the last chained step.
const PENDING_LIFETIME_MINUTES: i64 = 15;
const REFRESH_PREFIX: &str = "mgw_rt_";

/// The scopes granted for a request: those of the request the gateway knows.
pub fn granted_scope(requested: Option<&str>) -> Option<String> {
    let granted: Vec<&str> = requested.unwrap_or_default().split_whitespace().filter(|s| SCOPES.contains(s)).collect();
    (!granted.is_empty()).then(|| granted.join(" "))
}

/// A validated authorization request, carried (sealed, so it cannot be altered) from the
/// consent page through the chained steps to the code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub client_id: String,
    pub client: i64,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    /// Canonical MCP URL.
    pub resource: String,
    pub scope: Option<String>,
    pub user: i64,
    pub exp: i64,
    /// Servers whose per-user step was already offered in this sign-in.
    #[serde(default)]
    pub skipped: Vec<i64>,
}

impl Pending {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: &Client,
        redirect_uri: &str,
        state: Option<String>,
        challenge: &str,
        resource: String,
        scope: Option<String>,
        user: i64,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            client_id: client.row.client_id.clone(),
            client: client.row.id,
            redirect_uri: redirect_uri.to_owned(),
            state,
            code_challenge: challenge.to_owned(),
            resource,
            scope,
            user,
            exp: (now + chrono::Duration::minutes(PENDING_LIFETIME_MINUTES)).timestamp(),
            skipped: Vec::new(),
        }
    }

    pub fn seal(&self, sealer: &Sealer) -> anyhow::Result<String> {
        sealer.seal(&serde_json::to_vec(self)?)
    }

    /// The request, if it was sealed here, is still in time and belongs to this user.
    pub fn open(sealer: &Sealer, sealed: &str, user: i64, now: DateTime<Utc>) -> Option<Self> {
        let pending: Self = serde_json::from_slice(&sealer.open(sealed).ok()?).ok()?;
        (pending.user == user && pending.exp > now.timestamp()).then_some(pending)
    }

    /// Where the browser goes with the authorization response (RFC 6749 §4.1.2, RFC 9207 `iss`).
    pub fn respond(&self, issuer: &str, params: &[(&str, &str)]) -> String {
        respond(&self.redirect_uri, self.state.as_deref(), issuer, params)
    }
}

/// A redirect URI with the response parameters, `state` and `iss` appended.
pub fn respond(redirect_uri: &str, state: Option<&str>, issuer: &str, params: &[(&str, &str)]) -> String {
    let Ok(mut url) = url::Url::parse(redirect_uri) else { return redirect_uri.to_owned() };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    url.into()
}

pub async fn has_consent(
    db: &impl ConnectionTrait,
    user: i64,
    client: i64,
    resource: &str,
) -> Result<bool, OAuthError> {
    Ok(oauth_consents::Entity::find()
        .filter(oauth_consents::Column::UserId.eq(user))
        .filter(oauth_consents::Column::ClientId.eq(client))
        .filter(oauth_consents::Column::Resource.eq(resource))
        .one(db)
        .await
        .map_err(OAuthError::server)?
        .is_some())
}

pub async fn remember_consent(
    db: &DatabaseConnection,
    pending: &Pending,
    now: DateTime<Utc>,
) -> Result<(), OAuthError> {
    if has_consent(db, pending.user, pending.client, &pending.resource).await? {
        return Ok(());
    }
    oauth_consents::ActiveModel {
        user_id: Set(pending.user),
        client_id: Set(pending.client),
        resource: Set(pending.resource.clone()),
        scope: Set(pending.scope.clone()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(OAuthError::server)?;
    Ok(())
}

/// A single-use code for the request, valid for 60 seconds.
pub async fn issue_code(db: &DatabaseConnection, pending: &Pending, now: DateTime<Utc>) -> Result<String, OAuthError> {
    // Codes never used are swept as new ones are made.
    oauth_codes::Entity::delete_many()
        .filter(oauth_codes::Column::ExpiresAt.lt(now - chrono::Duration::hours(1)))
        .exec(db)
        .await
        .map_err(OAuthError::server)?;
    let code = random_secret();
    oauth_codes::ActiveModel {
        code_digest: Set(digest(&code)),
        client_id: Set(pending.client),
        user_id: Set(pending.user),
        redirect_uri: Set(pending.redirect_uri.clone()),
        code_challenge: Set(pending.code_challenge.clone()),
        resource: Set(pending.resource.clone()),
        scope: Set(pending.scope.clone()),
        grant_id: Set(None),
        expires_at: Set(now + chrono::Duration::seconds(CODE_LIFETIME_SECONDS)),
        used_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(OAuthError::server)?;
    Ok(code)
}

/// RFC 7636 S256: the challenge is BASE64URL(SHA-256(verifier)).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// A verifier as RFC 7636 §4.1 defines it: 43-128 unreserved characters.
pub fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A challenge as S256 produces it: 43 base64url characters.
pub fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Signs an access token for a subject and MCP URL; returns it and its expiry.
#[allow(clippy::too_many_arguments)]
async fn mint(
    db: &impl ConnectionTrait,
    sealer: &Sealer,
    config: &ServerConfig,
    sub: String,
    audience: &str,
    client_id: &str,
    grant_id: Option<String>,
    scope: Option<String>,
    lifetime: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), OAuthError> {
    let key = active_key(db, sealer, now).await.map_err(OAuthError::server)?;
    let exp = now + lifetime;
    let claims = AccessClaims {
        iss: config.issuer.clone(),
        sub,
        aud: audience.to_owned(),
        exp: exp.timestamp(),
        iat: now.timestamp(),
        jti: uuid::Uuid::new_v4().simple().to_string(),
        client_id: client_id.to_owned(),
        grant_id,
        scope,
    };
    Ok((access_token::mint(&key, &claims).map_err(OAuthError::server)?, exp))
}

/// A new refresh token of a grant, and an access token from it.
async fn tokens_for(
    db: &impl ConnectionTrait,
    sealer: &Sealer,
    config: &ServerConfig,
    grant: &oauth_grants::Model,
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<TokenResponse, OAuthError> {
    let refresh = format!("{REFRESH_PREFIX}{}", random_secret());
    oauth_refresh_tokens::ActiveModel {
        grant_id: Set(grant.id),
        digest: Set(digest(&refresh)),
        created_at: Set(now),
        rotated_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(OAuthError::server)?;
    // An access token never outlives the sign-in it came from.
    let lifetime = config.access_ttl.min(grant.expires_at - now).max(chrono::Duration::seconds(1));
    let (access, exp) = mint(
        db,
        sealer,
        config,
        format!("u{}", grant.user_id),
        &grant.resource,
        client_id,
        Some(grant.public_id.clone()),
        grant.scope.clone(),
        lifetime,
        now,
    )
    .await?;
    oauth_grants::Entity::update_many()
        .col_expr(oauth_grants::Column::AccessExpiresAt, Expr::value(exp))
        .col_expr(oauth_grants::Column::LastUsedAt, Expr::value(now))
        .filter(oauth_grants::Column::Id.eq(grant.id))
        .exec(db)
        .await
        .map_err(OAuthError::server)?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: (exp - now).num_seconds(),
        refresh_token: Some(refresh),
        scope: grant.scope.clone(),
    })
}

/// Ends a sign-in: its refresh tokens stop working now, its access tokens once the next
/// snapshot reaches the proxies.
pub async fn revoke_grant(
    db: &impl ConnectionTrait,
    grant_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, OAuthError> {
    let done = oauth_grants::Entity::update_many()
        .col_expr(oauth_grants::Column::RevokedAt, Expr::value(now))
        .col_expr(oauth_grants::Column::RevokedReason, Expr::value(reason))
        .filter(oauth_grants::Column::Id.eq(grant_id))
        .filter(oauth_grants::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map_err(OAuthError::server)?;
    if done.rows_affected > 0 {
        bump(db).await.map_err(OAuthError::server)?;
    }
    Ok(done.rows_affected > 0)
}

/// `grant_type=authorization_code`.
#[allow(clippy::too_many_arguments)]
pub async fn exchange_code(
    db: &DatabaseConnection,
    sealer: &Sealer,
    config: &ServerConfig,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    resource: Option<&str>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, OAuthError> {
    let row = oauth_codes::Entity::find()
        .filter(oauth_codes::Column::CodeDigest.eq(digest(code)))
        .one(db)
        .await
        .map_err(OAuthError::server)?
        .ok_or_else(|| OAuthError::invalid_grant("the authorization code is not known"))?;
    // The code is spent by this attempt whatever its outcome (committed on its own).
    let claimed = oauth_codes::Entity::update_many()
        .col_expr(oauth_codes::Column::UsedAt, Expr::value(now))
        .filter(oauth_codes::Column::Id.eq(row.id))
        .filter(oauth_codes::Column::UsedAt.is_null())
        .exec(db)
        .await
        .map_err(OAuthError::server)?;
    if claimed.rows_affected == 0 {
        // A code presented twice was stolen or replayed: what it bought stops working too.
        if let Some(grant) = row.grant_id {
            let txn = mcpgate_store::begin_write(db).await.map_err(OAuthError::server)?;
            revoke_grant(&txn, grant, "code_reuse", now).await?;
            txn.commit().await.map_err(OAuthError::server)?;
        }
        return Err(OAuthError::invalid_grant("the authorization code was already used"));
    }
    if row.expires_at <= now {
        return Err(OAuthError::invalid_grant("the authorization code expired; sign in again"));
    }
    if row.client_id != client.row.id {
        return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
    }
    if redirect_uri != Some(row.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant("redirect_uri differs from the authorization request's"));
    }
    let verifier = verifier.ok_or_else(|| OAuthError::new("invalid_request", "code_verifier is required (PKCE)"))?;
    if !valid_verifier(verifier) || !pkce_matches(verifier, &row.code_challenge) {
        return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
    }
    if let Some(resource) = resource {
        if canonical(config, resource).as_deref() != Some(row.resource.as_str()) {
            return Err(OAuthError::new("invalid_target", "resource differs from the authorization request's"));
        }
    }
    if !user_live(db, row.user_id).await? {
        return Err(OAuthError::invalid_grant("the account that signed in is disabled"));
    }
    let txn = mcpgate_store::begin_write(db).await.map_err(OAuthError::server)?;
    let grant = oauth_grants::ActiveModel {
        public_id: Set(uuid::Uuid::new_v4().simple().to_string()),
        user_id: Set(row.user_id),
        client_id: Set(client.row.id),
        resource: Set(row.resource.clone()),
        scope: Set(row.scope.clone()),
        created_at: Set(now),
        last_used_at: Set(now),
        expires_at: Set(now + config.max),
        access_expires_at: Set(None),
        revoked_at: Set(None),
        revoked_reason: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(OAuthError::server)?;
    oauth_codes::Entity::update_many()
        .col_expr(oauth_codes::Column::GrantId, Expr::value(grant.id))
        .filter(oauth_codes::Column::Id.eq(row.id))
        .exec(&txn)
        .await
        .map_err(OAuthError::server)?;
    let tokens = tokens_for(&txn, sealer, config, &grant, &client.row.client_id, now).await?;
    txn.commit().await.map_err(OAuthError::server)?;
    Ok(tokens)
}

/// The canonical MCP URL a `resource` parameter names, if it names one of this gateway's.
fn canonical(config: &ServerConfig, resource: &str) -> Option<String> {
    config.parse_resource(resource).map(|(t, s)| config.canonical_resource(&t, &s))
}

async fn user_live(db: &impl ConnectionTrait, user: i64) -> Result<bool, OAuthError> {
    Ok(mcpgate_store::entities::users::Entity::find_by_id(user)
        .one(db)
        .await
        .map_err(OAuthError::server)?
        .is_some_and(|u| !u.disabled))
}

/// What happened to a refresh: new tokens, or an error; `revoked` says a family was revoked
/// (so the policy must be published promptly).
pub struct Refreshed {
    pub result: Result<TokenResponse, OAuthError>,
    pub revoked: bool,
}

/// `grant_type=refresh_token`: rotation on every use; a rotated token presented again
/// revokes its whole family.
pub async fn refresh(
    db: &DatabaseConnection,
    sealer: &Sealer,
    config: &ServerConfig,
    client: &Client,
    token: &str,
    resource: Option<&str>,
    now: DateTime<Utc>,
) -> Refreshed {
    let mut revoked = false;
    let result = async {
        let txn = mcpgate_store::begin_write(db).await.map_err(OAuthError::server)?;
        let unknown = || OAuthError::invalid_grant("the refresh token is not valid; sign in again");
        let row = oauth_refresh_tokens::Entity::find()
            .filter(oauth_refresh_tokens::Column::Digest.eq(digest(token)))
            .one(&txn)
            .await
            .map_err(OAuthError::server)?
            .ok_or_else(unknown)?;
        let grant = oauth_grants::Entity::find_by_id(row.grant_id)
            .one(&txn)
            .await
            .map_err(OAuthError::server)?
            .ok_or_else(unknown)?;
        if grant.client_id != client.row.id {
            return Err(OAuthError::invalid_grant("the refresh token was issued to another client"));
        }
        if grant.revoked_at.is_some() {
            return Err(OAuthError::invalid_grant("this sign-in was revoked; sign in again"));
        }
        let claimed = oauth_refresh_tokens::Entity::update_many()
            .col_expr(oauth_refresh_tokens::Column::RotatedAt, Expr::value(now))
            .filter(oauth_refresh_tokens::Column::Id.eq(row.id))
            .filter(oauth_refresh_tokens::Column::RotatedAt.is_null())
            .exec(&txn)
            .await
            .map_err(OAuthError::server)?;
        if row.rotated_at.is_some() || claimed.rows_affected == 0 {
            revoke_grant(&txn, grant.id, "refresh_token_reuse", now).await?;
            txn.commit().await.map_err(OAuthError::server)?;
            tracing::warn!(grant = grant.public_id, "a rotated refresh token was presented again; sign-in revoked");
            revoked = true;
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; this sign-in is revoked, sign in again",
            ));
        }
        if grant.expires_at <= now || grant.last_used_at + config.idle <= now {
            txn.commit().await.map_err(OAuthError::server)?;
            return Err(OAuthError::invalid_grant("this sign-in expired; sign in again"));
        }
        if let Some(resource) = resource {
            if canonical(config, resource).as_deref() != Some(grant.resource.as_str()) {
                return Err(OAuthError::new("invalid_target", "resource differs from the sign-in's MCP URL"));
            }
        }
        if !user_live(&txn, grant.user_id).await? {
            return Err(OAuthError::invalid_grant("the account that signed in is disabled"));
        }
        let tokens = tokens_for(&txn, sealer, config, &grant, &client.row.client_id, now).await?;
        txn.commit().await.map_err(OAuthError::server)?;
        Ok(tokens)
    }
    .await;
    Refreshed { result, revoked }
}

/// The sign-in (grant id) and person a refresh token belongs to, if it is a live one.
pub async fn owner_of_refresh_token(db: &DatabaseConnection, token: &str) -> Result<Option<(i64, i64)>, OAuthError> {
    let Some(row) = oauth_refresh_tokens::Entity::find()
        .filter(oauth_refresh_tokens::Column::Digest.eq(digest(token)))
        .one(db)
        .await
        .map_err(OAuthError::server)?
    else {
        return Ok(None);
    };
    let grant = oauth_grants::Entity::find_by_id(row.grant_id).one(db).await.map_err(OAuthError::server)?;
    Ok(grant.filter(|g| g.revoked_at.is_none()).map(|g| (g.id, g.user_id)))
}

/// Ends a sign-in because the person's identity provider no longer knows them.
pub async fn end_for_identity_provider(
    db: &DatabaseConnection,
    grant_id: i64,
    now: DateTime<Utc>,
) -> Result<(), OAuthError> {
    let txn = mcpgate_store::begin_write(db).await.map_err(OAuthError::server)?;
    revoke_grant(&txn, grant_id, "identity_provider", now).await?;
    txn.commit().await.map_err(OAuthError::server)
}

/// `grant_type=client_credentials` for virtual accounts: the client id names the account
/// (`<tenant>/<name>`), the secret is one of its tokens; the result is a short-lived JWT for one
/// MCP URL it may use.
pub async fn virtual_account_token(
    db: &DatabaseConnection,
    sealer: &Sealer,
    config: &ServerConfig,
    client_id: &str,
    secret: &str,
    resource: Option<&str>,
    now: DateTime<Utc>,
) -> Result<TokenResponse, OAuthError> {
    use mcpgate_control::caller::Caller;
    let bad_client = || OAuthError::new("invalid_client", "client authentication failed");
    let (row, caller) = mcpgate_control::tokens::authenticate(db, secret, now)
        .await
        .map_err(OAuthError::server)?
        .ok_or_else(bad_client)?;
    let Caller::VirtualAccount(va) = &caller else { return Err(bad_client()) };
    let tenant = mcpgate_store::entities::tenants::Entity::find_by_id(va.tenant_id)
        .one(db)
        .await
        .map_err(OAuthError::server)?
        .ok_or_else(bad_client)?;
    if client_id != format!("{}/{}", tenant.slug, va.name) {
        return Err(bad_client());
    }
    let resource = resource.ok_or_else(|| OAuthError::new("invalid_target", "resource (an MCP URL) is required"))?;
    let (t, s) = config.parse_resource(resource).filter(|(t, _)| *t == tenant.slug).ok_or_else(|| {
        OAuthError::new("invalid_target", "resource is not an MCP URL of this virtual account's tenant")
    })?;
    let server = mcpgate_control::servers::get(db, &tenant, &s)
        .await
        .map_err(|_| OAuthError::new("invalid_target", format!("there is no MCP server {t}/{s}")))?;
    let admin = va.tenant_role.as_deref() == Some("admin");
    let role =
        mcpgate_control::servers::role_of(db, &tenant, &caller, admin, &server).await.map_err(OAuthError::server)?;
    if role.is_none() {
        return Err(OAuthError::new("invalid_target", format!("this virtual account may not use {t}/{s}")));
    }
    // Never longer than the token that authenticated it.
    let mut lifetime = config.access_ttl;
    if let Some(end) = row.expires_at {
        lifetime = lifetime.min(end - now);
    }
    // The token it came from is its grant: the proxy honours it only while that token is live,
    // so revoking the virtual-account token ends this access token too.
    let source = mcpgate_proxy::index::source_token_grant(&mcpgate_control::auth::token::digest_bytes(secret));
    let (access, exp) = mint(
        db,
        sealer,
        config,
        format!("v{}", va.id),
        &config.canonical_resource(&t, &s),
        client_id,
        Some(source),
        None,
        lifetime,
        now,
    )
    .await?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: (exp - now).num_seconds(),
        refresh_token: None,
        scope: None,
    })
}

/// RFC 7009: a refresh token ends its sign-in; an access token is listed as revoked until it
/// expires. Unknown tokens, or other clients' tokens, change nothing (and say nothing).
/// Returns whether the policy changed.
pub async fn revoke(
    db: &DatabaseConnection,
    config: &ServerConfig,
    client: &Client,
    token: &str,
    now: DateTime<Utc>,
) -> Result<bool, OAuthError> {
    if let Some(row) = oauth_refresh_tokens::Entity::find()
        .filter(oauth_refresh_tokens::Column::Digest.eq(digest(token)))
        .one(db)
        .await
        .map_err(OAuthError::server)?
    {
        let grant = oauth_grants::Entity::find_by_id(row.grant_id).one(db).await.map_err(OAuthError::server)?;
        return match grant.filter(|g| g.client_id == client.row.id) {
            Some(grant) => {
                let txn = mcpgate_store::begin_write(db).await.map_err(OAuthError::server)?;
                let changed = revoke_grant(&txn, grant.id, "client", now).await?;
                txn.commit().await.map_err(OAuthError::server)?;
                Ok(changed)
            }
            None => Ok(false),
        };
    }
    if !access_token::looks_like_jwt(token) {
        return Ok(false);
    }
    let keys = mcpgate_control::policy::publish::trusted_keys(db).await.map_err(OAuthError::server)?;
    let verifier = access_token::Verifier::new(&keys);
    let Some(claims) = verifier.verify_any_audience(token, &config.issuer, now.timestamp()) else { return Ok(false) };
    if claims.client_id != client.row.client_id {
        return Ok(false);
    }
    let txn = mcpgate_store::begin_write(db).await.map_err(OAuthError::server)?;
    let exists = oauth_revoked_tokens::Entity::find()
        .filter(oauth_revoked_tokens::Column::Jti.eq(&claims.jti))
        .one(&txn)
        .await
        .map_err(OAuthError::server)?
        .is_some();
    if !exists {
        oauth_revoked_tokens::ActiveModel {
            jti: Set(claims.jti.clone()),
            expires_at: Set(DateTime::from_timestamp(claims.exp, 0).unwrap_or(now)),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(OAuthError::server)?;
        bump(&txn).await.map_err(OAuthError::server)?;
    }
    txn.commit().await.map_err(OAuthError::server)?;
    Ok(!exists)
}

pub use mcpgate_control::policy::compile::revoked_ids;

/// Forgets what can no longer matter: revoked token ids past their expiry, sign-ins ended
/// (expired, or revoked with every access token expired) a day ago, spent codes, clients that
/// registered and were never approved.
pub async fn purge(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, sea_orm::DbErr> {
    let day_ago = now - chrono::Duration::days(1);
    let tokens = oauth_revoked_tokens::Entity::delete_many()
        .filter(oauth_revoked_tokens::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?
        .rows_affected;
    let codes = oauth_codes::Entity::delete_many().filter(oauth_codes::Column::ExpiresAt.lt(day_ago)).exec(db).await?;
    let ended = oauth_grants::Entity::delete_many()
        .filter(
            sea_orm::Condition::any().add(oauth_grants::Column::ExpiresAt.lt(day_ago)).add(
                sea_orm::Condition::all()
                    .add(oauth_grants::Column::RevokedAt.lt(day_ago))
                    .add(oauth_grants::Column::AccessExpiresAt.lt(now)),
            ),
        )
        .exec(db)
        .await?;
    // Registration is open (clients register themselves); one that never got a consent within
    // a week was abandoned, or never real.
    let unused = oauth_clients::Entity::delete_many()
        .filter(oauth_clients::Column::CreatedAt.lt(now - chrono::Duration::days(7)))
        .filter(
            oauth_clients::Column::Id.not_in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(oauth_consents::Column::ClientId)
                    .from(oauth_consents::Entity)
                    .to_owned(),
            ),
        )
        .filter(
            oauth_clients::Column::Id.not_in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(oauth_grants::Column::ClientId)
                    .from(oauth_grants::Entity)
                    .to_owned(),
            ),
        )
        .exec(db)
        .await?;
    Ok(tokens + codes.rows_affected + ended.rows_affected + unused.rows_affected)
}

/// A user's connected client, for `GET /api/v1/me/authorizations`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuthorizationView {
    /// The sign-in's id; `DELETE /api/v1/me/authorizations/{id}` revokes it.
    pub id: String,
    pub client_id: String,
    /// As the client names itself.
    pub client_name: Option<String>,
    /// The MCP URL it connects to.
    pub resource: String,
    pub scope: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the client last got tokens with it.
    pub last_used_at: DateTime<Utc>,
    /// When the user must sign in again at the latest.
    pub expires_at: DateTime<Utc>,
}

/// The user's live sign-ins, newest first.
pub async fn list_for_user(
    db: &impl ConnectionTrait,
    config: &ServerConfig,
    user: i64,
    page: mcpgate_control::page::PageRequest,
    now: DateTime<Utc>,
) -> Result<mcpgate_control::page::Paged<AuthorizationView>, sea_orm::DbErr> {
    let select = oauth_grants::Entity::find()
        .filter(oauth_grants::Column::UserId.eq(user))
        .filter(oauth_grants::Column::RevokedAt.is_null())
        .filter(oauth_grants::Column::ExpiresAt.gt(now))
        .filter(oauth_grants::Column::LastUsedAt.gt(now - config.idle));
    let paged =
        mcpgate_control::page::fetch(db, select, oauth_grants::Column::Id, |g| g.id, page.newest_first()).await?;
    let mut items = Vec::with_capacity(paged.items.len());
    for grant in paged.items {
        let client = oauth_clients::Entity::find_by_id(grant.client_id).one(db).await?;
        items.push(AuthorizationView {
            id: grant.public_id,
            client_id: client.as_ref().map(|c| c.client_id.clone()).unwrap_or_default(),
            client_name: client.and_then(|c| c.client_name),
            resource: grant.resource,
            scope: grant.scope,
            created_at: grant.created_at,
            last_used_at: grant.last_used_at,
            expires_at: grant.expires_at.min(grant.last_used_at + config.idle),
        });
    }
    Ok(mcpgate_control::page::Paged { items, next_after: paged.next_after })
}

/// The user revokes one of their sign-ins: its tokens stop, and the client must ask for
/// consent again. `false` when there is no such live sign-in of theirs.
pub async fn revoke_for_user(
    db: &DatabaseConnection,
    user: i64,
    public_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, OAuthError> {
    let txn = mcpgate_store::begin_write(db).await.map_err(OAuthError::server)?;
    let Some(grant) = oauth_grants::Entity::find()
        .filter(oauth_grants::Column::PublicId.eq(public_id))
        .filter(oauth_grants::Column::UserId.eq(user))
        .one(&txn)
        .await
        .map_err(OAuthError::server)?
    else {
        return Ok(false);
    };
    let changed = revoke_grant(&txn, grant.id, "user", now).await?;
    oauth_consents::Entity::delete_many()
        .filter(oauth_consents::Column::UserId.eq(user))
        .filter(oauth_consents::Column::ClientId.eq(grant.client_id))
        .filter(oauth_consents::Column::Resource.eq(&grant.resource))
        .exec(&txn)
        .await
        .map_err(OAuthError::server)?;
    txn.commit().await.map_err(OAuthError::server)?;
    Ok(changed)
}

/// Checks a client's authentication at the token and revocation endpoints: public clients
/// name themselves, confidential ones prove their secret (Basic or in the form).
pub async fn authenticate_client(
    db: &impl ConnectionTrait,
    config: &ServerConfig,
    client_id: &str,
    secret: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Client, OAuthError> {
    let bad = || OAuthError::new("invalid_client", "client authentication failed");
    let client = super::clients::find(db, client_id, config.allow_private_documents, now).await.map_err(|e| {
        if e.error == "server_error" {
            e
        } else {
            bad()
        }
    })?;
    match (&client.row.secret_digest, secret) {
        (None, None) => Ok(client),
        (Some(expected), Some(given)) if bool::from(digest(given).as_bytes().ct_eq(expected.as_bytes())) => Ok(client),
        _ => Err(bad()),
    }
}

/// The client id the console's tool tester stands for in its tokens and the proxy's records.
pub const CONSOLE_CLIENT_ID: &str = "mcpgate-console";

/// A short-lived access token for the console's tool tester: the signed-in person calls one MCP
/// URL through the proxy with exactly their own access, as any client they connect would.
/// Five minutes at most, so a console tab left open holds nothing lasting.
pub async fn console_token(
    db: &DatabaseConnection,
    sealer: &Sealer,
    config: &ServerConfig,
    user_id: i64,
    audience: &str,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>), OAuthError> {
    let lifetime = config.access_ttl.min(chrono::Duration::minutes(5));
    mint(db, sealer, config, format!("u{user_id}"), audience, CONSOLE_CLIENT_ID, None, None, lifetime, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(valid_verifier(verifier));
        assert!(pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(valid_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!valid_verifier("short"));
    }

    #[test]
    fn responses_carry_state_and_issuer() {
        let url = respond("cursor://anysphere.cursor-retrieval/cb?x=1", Some("s t"), "https://gw", &[("code", "c")]);
        assert_eq!(url, "cursor://anysphere.cursor-retrieval/cb?x=1&code=c&state=s+t&iss=https%3A%2F%2Fgw");
        assert_eq!(granted_scope(Some("mcp offline_access")), Some("offline_access".into()));
        assert_eq!(granted_scope(None), None);
    }
}
