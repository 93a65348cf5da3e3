//! Personal access tokens: your own, and (for platform admins) anyone's.

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::{PlatformAdmin, Principal};
use crate::api::json::ApiJson;
use crate::api::pagination::{Page, PageQuery};
use crate::api::responses::*;
use crate::control::tokens::{self, Issued, Owner};
use crate::control::users;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::state::AppState;
use crate::store::entities::access_tokens;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What the token is for, e.g. `ci-deploy`.
    pub name: String,
    /// When it stops working; defaults to the platform's maximum lifetime, which it may not exceed.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    pub id: String,
    pub name: String,
    /// The start of the token, to recognise it in lists.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The token itself. It is shown only in this response.
    pub token: String,
}

impl From<Issued> for TokenCreated {
    fn from(i: Issued) -> Self {
        Self {
            id: i.row.public_id,
            name: i.row.name,
            prefix: i.row.prefix,
            created_at: i.row.created_at,
            expires_at: i.row.expires_at,
            token: i.secret,
        }
    }
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    Active,
    Expired,
    Revoked,
}

/// A token as listed: never the secret.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub status: TokenStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Updated within a short interval of use, not on every request.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// A token issued by scheduled rotation that has not been picked up yet.
    pub claimable: bool,
}

impl TokenView {
    pub fn new(row: access_tokens::Model, now: DateTime<Utc>) -> Self {
        let status = if row.revoked_at.is_some() {
            TokenStatus::Revoked
        } else if tokens::is_active(&row, now) {
            TokenStatus::Active
        } else {
            TokenStatus::Expired
        };
        Self {
            claimable: row.pending_secret.is_some(),
            id: row.public_id,
            name: row.name,
            prefix: row.prefix,
            status,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RevokedCount {
    pub revoked: u64,
}

pub fn token_name(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(FieldError::new("name", "invalid_length", "must be 1 to 200 printable characters"));
    }
    Ok(name.to_owned())
}

/// Checks a requested expiry against now and, when given, the longest allowed lifetime.
pub fn expiry(
    requested: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max: Option<Duration>,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    match (requested, max) {
        (Some(at), _) if at <= now => Err(FieldError::new("expires_at", "in_the_past", "must be in the future")),
        (Some(at), Some(max)) if at > now + max => {
            Err(FieldError::new("expires_at", "too_far", format!("may be at most {} days from now", max.num_days())))
        }
        (Some(at), _) => Ok(Some(at)),
        (None, max) => Ok(max.map(|m| now + m)),
    }
}

/// Create a personal access token. The token is in this response only.
///
/// Needs a signed-in session (or `mcpgate token create` on the server): a personal access
/// token cannot create another, so a stolen token cannot make itself permanent.
#[utoipa::path(
    tag = "tokens",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Created; `token` is shown only now", body = TokenCreated),
        BadRequest, Unauthorized, Forbidden, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/me/tokens")]
pub async fn create_token(
    state: web::Data<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> ApiResult<HttpResponse> {
    let user = principal.user()?;
    if principal.session_id().is_none() {
        return Err(ApiError::forbidden(
            "personal access tokens are created from a signed-in session (or with `mcpgate token create`), not with another token",
        ));
    }
    let now = state.clock.now();
    let max = Duration::days(i64::from(state.settings.pat_max_lifetime_days));
    crate::validate! {
        name = token_name(&body.name),
        expires_at = expiry(body.expires_at, now, Some(max)),
    }
    let issued = tokens::issue_pat(&state.db, &principal.actor(), user, name, expires_at, now).await?;
    Ok(HttpResponse::Created().json(TokenCreated::from(issued)))
}

/// List your personal access tokens.
#[utoipa::path(
    tag = "tokens",
    params(PageQuery),
    responses((status = 200, description = "A page of tokens", body = Page<TokenView>), Unauthorized, Forbidden, Unprocessable, Internal)
)]
#[get("/me/tokens")]
pub async fn list_tokens(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<TokenView>>> {
    let paged = tokens::list_for_user(&state.reads, principal.user()?.id, query.to_request()?).await?;
    let now = state.clock.now();
    Ok(web::Json(Page::from_paged(paged, |t| TokenView::new(t, now))))
}

/// Revoke one of your tokens.
#[utoipa::path(
    tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/me/tokens/{id}")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let owner = Owner::User(principal.user()?.id);
    tokens::revoke(&state.db, &principal.actor(), None, owner, &id, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Revoke all of your tokens.
#[utoipa::path(
    tag = "tokens",
    responses((status = 200, description = "How many were revoked", body = RevokedCount), Unauthorized, Forbidden, Internal)
)]
#[post("/me/tokens/revoke-all")]
pub async fn revoke_all_tokens(state: web::Data<AppState>, principal: Principal) -> ApiResult<web::Json<RevokedCount>> {
    let user = principal.user()?;
    let revoked = tokens::revoke_all(
        &state.db,
        &principal.actor(),
        None,
        Owner::User(user.id),
        format!("user:{}", user.email),
        state.clock.now(),
    )
    .await?;
    Ok(web::Json(RevokedCount { revoked }))
}

/// List a user's personal access tokens (platform admins).
#[utoipa::path(
    tag = "tokens",
    params(("id" = i64, Path, description = "User id"), PageQuery),
    responses((status = 200, description = "A page of tokens", body = Page<TokenView>), Unauthorized, Forbidden, NotFound, Unprocessable, Internal)
)]
#[get("/users/{id}/tokens")]
pub async fn list_user_tokens(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    id: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<TokenView>>> {
    let user = users::get(&state.reads, id.into_inner()).await?;
    let paged = tokens::list_for_user(&state.reads, user.id, query.to_request()?).await?;
    let now = state.clock.now();
    Ok(web::Json(Page::from_paged(paged, |t| TokenView::new(t, now))))
}

/// Revoke a user's personal access token (platform admins).
#[utoipa::path(
    tag = "tokens",
    params(("id" = i64, Path, description = "User id"), ("token" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/users/{id}/tokens/{token}")]
pub async fn revoke_user_token(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    path: web::Path<(i64, String)>,
) -> ApiResult<HttpResponse> {
    let (user_id, token) = path.into_inner();
    tokens::revoke(&state.db, &admin.actor(), None, Owner::User(user_id), &token, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}
