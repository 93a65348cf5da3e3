//! Virtual accounts of a tenant and their tokens.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::{TenantAccess, TenantAdmin};
use crate::api::json::ApiJson;
use crate::api::pagination::{Page, PageQuery};
use crate::api::responses::*;
use crate::api::tokens::{expiry, token_name, TokenCreated, TokenView};
use crate::control::caller::Caller;
use crate::control::tokens::{self, Owner};
use crate::control::virtual_accounts::{
    self as accounts, AutoRotate, NewVirtualAccount, Permission, VirtualAccountPatch, TENANT_ADMIN,
};
use crate::domain::{description, Slug};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::state::AppState;
use crate::store::entities::virtual_accounts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountTenantRole {
    /// Manages the tenant through the API, like a tenant admin.
    Admin,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVirtualAccountRequest {
    /// Lowercase letters, digits and `-`, starting with a letter.
    pub name: String,
    pub description: Option<String>,
    /// Servers it may use (`user`) or manage (`manager`).
    #[serde(default)]
    pub permissions: Vec<Permission>,
    pub tenant_role: Option<AccountTenantRole>,
    /// After this, none of its tokens work.
    pub expires_at: Option<DateTime<Utc>>,
    pub auto_rotate: Option<AutoRotate>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVirtualAccountRequest {
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Replaces the whole set.
    pub permissions: Option<Vec<Permission>>,
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<AccountTenantRole>)]
    pub tenant_role: Option<Option<AccountTenantRole>>,
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<AutoRotate>)]
    pub auto_rotate: Option<Option<AutoRotate>>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct IssueTokenRequest {
    pub name: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RegenerateRequest {
    /// How long the previous tokens keep working; defaults to the account's `auto_rotate.grace_days`, else 1.
    pub grace_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct VirtualAccountView {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    pub tenant_role: Option<AccountTenantRole>,
    pub expires_at: Option<DateTime<Utc>>,
    pub auto_rotate: Option<AutoRotate>,
    pub last_rotated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

async fn view(state: &AppState, va: virtual_accounts::Model) -> ApiResult<VirtualAccountView> {
    let permissions = accounts::permissions_of(&state.db, &va).await?;
    Ok(VirtualAccountView {
        auto_rotate: accounts::auto_rotate_of(&va),
        tenant_role: (va.tenant_role.as_deref() == Some(TENANT_ADMIN)).then_some(AccountTenantRole::Admin),
        name: va.name,
        description: va.description,
        permissions,
        expires_at: va.expires_at,
        last_rotated_at: va.last_rotated_at,
        created_at: va.created_at,
        updated_at: va.updated_at,
    })
}

fn auto_rotate(value: Option<AutoRotate>) -> Result<Option<AutoRotate>, FieldError> {
    match value {
        Some(r) if r.interval_days == 0 || r.interval_days > 3650 => {
            Err(FieldError::new("auto_rotate.interval_days", "out_of_range", "must be from 1 to 3650"))
        }
        Some(r) if r.grace_days > 90 => {
            Err(FieldError::new("auto_rotate.grace_days", "out_of_range", "must be from 0 to 90"))
        }
        other => Ok(other),
    }
}

/// Only a tenant admin, or the account itself, may rotate or claim its tokens.
fn may_rotate(access: &TenantAccess, va: &virtual_accounts::Model) -> ApiResult<()> {
    match &access.principal.caller {
        Caller::VirtualAccount(me) if me.id == va.id => Ok(()),
        _ if access.is_admin() => Ok(()),
        _ => Err(ApiError::forbidden("only a tenant admin or the account itself may do this")),
    }
}

/// List the tenant's virtual accounts (tenant admins).
#[utoipa::path(
    tag = "virtual_accounts",
    params(("tenant" = String, Path, description = "Tenant slug"), PageQuery),
    responses((status = 200, description = "A page of accounts", body = Page<VirtualAccountView>), Unauthorized, Forbidden, NotFound, Unprocessable, Internal)
)]
#[get("/tenants/{tenant}/virtual-accounts")]
pub async fn list_accounts(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<VirtualAccountView>>> {
    let paged = accounts::list(&state.reads, &access.tenant, query.to_request()?).await?;
    let mut items = Vec::with_capacity(paged.items.len());
    for va in paged.items {
        items.push(view(&state, va).await?);
    }
    Ok(web::Json(Page::from_paged(crate::control::page::Paged { items, next_after: paged.next_after }, |v| v)))
}

/// Create a virtual account (tenant admins). Owned by the tenant, not by you.
#[utoipa::path(
    tag = "virtual_accounts",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = CreateVirtualAccountRequest,
    responses(
        (status = 201, description = "Created", body = VirtualAccountView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/tenants/{tenant}/virtual-accounts")]
pub async fn create_account(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    ApiJson(body): ApiJson<CreateVirtualAccountRequest>,
) -> ApiResult<HttpResponse> {
    let now = state.clock.now();
    crate::validate! {
        name = Slug::parse("name", &body.name),
        description = description(body.description.as_deref()),
        expires_at = expiry(body.expires_at, now, None),
        auto_rotate = auto_rotate(body.auto_rotate),
    }
    let new = NewVirtualAccount {
        name,
        description,
        permissions: body.permissions,
        tenant_admin: body.tenant_role.is_some(),
        expires_at,
        auto_rotate,
    };
    let va = accounts::create(&state.db, &access.principal.actor(), &access.tenant, new, now).await?;
    Ok(HttpResponse::Created().json(view(&state, va).await?))
}

/// Get a virtual account (tenant admins, or the account itself).
#[utoipa::path(
    tag = "virtual_accounts",
    params(("tenant" = String, Path, description = "Tenant slug"), ("name" = String, Path, description = "Account name")),
    responses((status = 200, description = "The account", body = VirtualAccountView), Unauthorized, Forbidden, NotFound, Internal)
)]
#[get("/tenants/{tenant}/virtual-accounts/{name}")]
pub async fn get_account(
    state: web::Data<AppState>,
    access: TenantAccess,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<VirtualAccountView>> {
    let va = accounts::get(&state.reads, &access.tenant, &path.1).await?;
    may_rotate(&access, &va)?;
    Ok(web::Json(view(&state, va).await?))
}

/// Update a virtual account (tenant admins). `permissions` replaces the whole set.
#[utoipa::path(
    tag = "virtual_accounts",
    params(("tenant" = String, Path, description = "Tenant slug"), ("name" = String, Path, description = "Account name")),
    request_body = UpdateVirtualAccountRequest,
    responses(
        (status = 200, description = "Updated", body = VirtualAccountView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[patch("/tenants/{tenant}/virtual-accounts/{name}")]
pub async fn update_account(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateVirtualAccountRequest>,
) -> ApiResult<web::Json<VirtualAccountView>> {
    let now = state.clock.now();
    crate::validate! {
        description = body.description.as_ref().map(|d| description(d.as_deref())).transpose(),
        expires_at = body.expires_at.map(|e| e.map(|at| expiry(Some(at), now, None)).transpose().map(Option::flatten)).transpose(),
        rotate = body.auto_rotate.map(auto_rotate).transpose(),
    }
    let va = accounts::get(&state.db, &access.tenant, &path.1).await?;
    let patch = VirtualAccountPatch {
        description,
        permissions: body.permissions,
        tenant_admin: body.tenant_role.map(|r| r.is_some()),
        expires_at,
        auto_rotate: rotate,
    };
    let va = accounts::update(&state.db, &access.principal.actor(), &access.tenant, va, patch, now).await?;
    Ok(web::Json(view(&state, va).await?))
}

/// Delete a virtual account, its tokens and its permissions (tenant admins).
#[utoipa::path(
    tag = "virtual_accounts",
    params(("tenant" = String, Path, description = "Tenant slug"), ("name" = String, Path, description = "Account name")),
    responses((status = 204, description = "Deleted"), Unauthorized, Forbidden, NotFound, Conflict, Internal)
)]
#[delete("/tenants/{tenant}/virtual-accounts/{name}")]
pub async fn delete_account(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let va = accounts::get(&state.db, &access.tenant, &path.1).await?;
    accounts::delete(&state.db, &access.principal.actor(), &access.tenant, va, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Issue a token for the account (tenant admins). The token is in this response only.
#[utoipa::path(
    tag = "virtual_accounts",
    params(("tenant" = String, Path, description = "Tenant slug"), ("name" = String, Path, description = "Account name")),
    request_body = IssueTokenRequest,
    responses(
        (status = 201, description = "Created; `token` is shown only now", body = TokenCreated),
        BadRequest, Unauthorized, Forbidden, NotFound, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/tenants/{tenant}/virtual-accounts/{name}/tokens")]
pub async fn issue_token(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<IssueTokenRequest>,
) -> ApiResult<HttpResponse> {
    let now = state.clock.now();
    crate::validate! {
        name = token_name(body.name.as_deref().unwrap_or("token")),
        expires_at = expiry(body.expires_at, now, None),
    }
    let va = accounts::get(&state.db, &access.tenant, &path.1).await?;
    let issued =
        tokens::issue_va_token(&state.db, &access.principal.actor(), &access.tenant, &va, name, expires_at, now)
            .await?;
    Ok(HttpResponse::Created().json(TokenCreated::from(issued)))
}

/// Issue a new token; the previous ones keep working for the grace period, then stop.
/// Tenant admins, or the account itself with its current token.
#[utoipa::path(
    tag = "virtual_accounts",
    params(("tenant" = String, Path, description = "Tenant slug"), ("name" = String, Path, description = "Account name")),
    request_body = RegenerateRequest,
    responses(
        (status = 201, description = "The new token, shown only now", body = TokenCreated),
        BadRequest, Unauthorized, Forbidden, NotFound, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/tenants/{tenant}/virtual-accounts/{name}/tokens/regenerate")]
pub async fn regenerate_token(
    state: web::Data<AppState>,
    access: TenantAccess,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<RegenerateRequest>,
) -> ApiResult<HttpResponse> {
    let va = accounts::get(&state.db, &access.tenant, &path.1).await?;
    may_rotate(&access, &va)?;
    if body.grace_days.is_some_and(|d| d > 90) {
        return Err(FieldError::new("grace_days", "out_of_range", "must be from 0 to 90").into());
    }
    let actor = access.principal.actor();
    let issued =
        accounts::regenerate(&state.db, &actor, &access.tenant, &va, body.grace_days, state.clock.now()).await?;
    Ok(HttpResponse::Created().json(TokenCreated::from(issued)))
}

/// List the account's tokens (tenant admins, or the account itself).
#[utoipa::path(
    tag = "virtual_accounts",
    params(("tenant" = String, Path, description = "Tenant slug"), ("name" = String, Path, description = "Account name"), PageQuery),
    responses((status = 200, description = "A page of tokens", body = Page<TokenView>), Unauthorized, Forbidden, NotFound, Unprocessable, Internal)
)]
#[get("/tenants/{tenant}/virtual-accounts/{name}/tokens")]
pub async fn list_account_tokens(
    state: web::Data<AppState>,
    access: TenantAccess,
    path: web::Path<(String, String)>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<TokenView>>> {
    let va = accounts::get(&state.reads, &access.tenant, &path.1).await?;
    may_rotate(&access, &va)?;
    let paged = tokens::list_for_virtual_account(&state.reads, va.id, query.to_request()?).await?;
    let now = state.clock.now();
    Ok(web::Json(Page::from_paged(paged, |t| TokenView::new(t, now))))
}

/// Revoke one of the account's tokens (tenant admins).
#[utoipa::path(
    tag = "virtual_accounts",
    params(
        ("tenant" = String, Path, description = "Tenant slug"),
        ("name" = String, Path, description = "Account name"),
        ("id" = String, Path, description = "Token id")
    ),
    responses((status = 204, description = "Revoked"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/tenants/{tenant}/virtual-accounts/{name}/tokens/{id}")]
pub async fn revoke_account_token(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let va = accounts::get(&state.db, &access.tenant, &path.1).await?;
    let owner = Owner::VirtualAccount(va.id);
    tokens::revoke(&state.db, &access.principal.actor(), Some(&access.tenant), owner, &path.2, state.clock.now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Pick up a token issued by scheduled rotation. It is handed out once.
/// Tenant admins, or the account itself with its previous token (inside the grace period).
#[utoipa::path(
    tag = "virtual_accounts",
    params(
        ("tenant" = String, Path, description = "Tenant slug"),
        ("name" = String, Path, description = "Account name"),
        ("id" = String, Path, description = "Token id")
    ),
    responses(
        (status = 200, description = "The rotated token, shown only now", body = TokenCreated),
        Unauthorized, Forbidden, NotFound, Conflict, Internal
    )
)]
#[post("/tenants/{tenant}/virtual-accounts/{name}/tokens/{id}/claim")]
pub async fn claim_token(
    state: web::Data<AppState>,
    access: TenantAccess,
    path: web::Path<(String, String, String)>,
) -> ApiResult<web::Json<TokenCreated>> {
    let va = accounts::get(&state.db, &access.tenant, &path.1).await?;
    may_rotate(&access, &va)?;
    let actor = access.principal.actor();
    let issued =
        accounts::claim(&state.db, &actor, &access.tenant, &va, &path.2, &state.sealer, state.clock.now()).await?;
    Ok(web::Json(TokenCreated::from(issued)))
}
