//! Identity providers (a tenant's, and the platform's), invitations, and home-realm discovery
//! for sign-in pages.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::extract::{PlatformAdmin, Principal, TenantAdmin};
use crate::api::json::ApiJson;
use crate::api::pagination::{Page, PageQuery};
use crate::api::responses::*;
use crate::api::validate;
use crate::control::identity::{self, IdpRequest, IdpView, TestResult};
use crate::control::invitations::{self, InvitationView};
use crate::control::tenants;
use crate::domain::{Email, TenantRole};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::state::AppState;
use crate::store::entities::{identity_providers as idps, tenants as tenant_rows};

/// The redirect URI every provider sends the browser back to.
pub fn sso_callback_url(state: &AppState) -> String {
    format!("{}/oauth/sso/callback", state.oauth.issuer)
}

/// A provider whose JWTs are now accepted has its keys fetched at once, so the proxies can
/// verify its tokens without waiting for the next refresh; a failure is logged, and the
/// provider's test says more.
fn fetch_keys_soon(state: &AppState, row: &idps::Model) {
    if !row.accept_jwt {
        return;
    }
    let (db, oidc, row, now) = (state.db.clone(), state.oidc.clone(), row.clone(), state.clock.now());
    tokio::spawn(async move {
        if let Err(e) = oidc.test(&db, &row, now).await {
            tracing::warn!(provider = %row.slug, error = %e, "fetching an identity provider's keys failed");
        }
    });
}

fn view(state: &AppState, row: &idps::Model) -> ApiResult<IdpView> {
    Ok(IdpView::of(row, &sso_callback_url(state))?)
}

async fn create(
    state: &AppState,
    p: &Principal,
    tenant: Option<&tenant_rows::Model>,
    req: IdpRequest,
) -> ApiResult<HttpResponse> {
    let row = identity::create(&state.db, &state.sealer, &p.actor(), tenant, req, state.clock.now()).await?;
    fetch_keys_soon(state, &row);
    Ok(HttpResponse::Created().json(view(state, &row)?))
}

async fn update(
    state: &AppState,
    p: &Principal,
    tenant: Option<&tenant_rows::Model>,
    slug: &str,
    req: IdpRequest,
) -> ApiResult<web::Json<IdpView>> {
    let row = identity::get(&state.db, tenant, slug).await?;
    let row = identity::update(&state.db, &state.sealer, &p.actor(), tenant, row, req, state.clock.now()).await?;
    fetch_keys_soon(state, &row);
    Ok(web::Json(view(state, &row)?))
}

async fn test(state: &AppState, tenant: Option<&tenant_rows::Model>, slug: &str) -> ApiResult<web::Json<TestResult>> {
    let row = identity::get(&state.db, tenant, slug).await?;
    Ok(web::Json(state.oidc.test(&state.db, &row, state.clock.now()).await?))
}

/// List the tenant's identity providers (tenant admins).
#[utoipa::path(
    tag = "identity providers",
    params(("tenant" = String, Path, description = "Tenant slug"), PageQuery),
    responses((status = 200, description = "A page of providers", body = Page<IdpView>), Unauthorized, Forbidden, NotFound, Unprocessable, Internal)
)]
#[get("/tenants/{tenant}/identity-providers")]
pub async fn list_tenant_idps(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<IdpView>>> {
    let paged = identity::list(&state.reads, Some(&access.tenant), query.to_request()?).await?;
    Ok(web::Json(Page::try_from_paged(paged, |r| view(&state, &r))?))
}

/// Register an identity provider for the tenant (tenant admins). Send `slug`, `display_name`,
/// `issuer` and `client_id` at least; register `redirect_uri` from the answer at the provider.
#[utoipa::path(
    tag = "identity providers",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = IdpRequest,
    responses((status = 201, description = "Created", body = IdpView), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal)
)]
#[post("/tenants/{tenant}/identity-providers")]
pub async fn create_tenant_idp(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    ApiJson(body): ApiJson<IdpRequest>,
) -> ApiResult<HttpResponse> {
    create(&state, &access.principal, Some(&access.tenant), body).await
}

/// Get one of the tenant's identity providers.
#[utoipa::path(
    tag = "identity providers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("idp" = String, Path, description = "Provider slug")),
    responses((status = 200, description = "The provider", body = IdpView), Unauthorized, Forbidden, NotFound, Internal)
)]
#[get("/tenants/{tenant}/identity-providers/{idp}")]
pub async fn get_tenant_idp(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<IdpView>> {
    let row = identity::get(&state.reads, Some(&access.tenant), &path.1).await?;
    Ok(web::Json(view(&state, &row)?))
}

/// Change a tenant's identity provider; absent fields stay as they are.
#[utoipa::path(
    tag = "identity providers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("idp" = String, Path, description = "Provider slug")),
    request_body = IdpRequest,
    responses((status = 200, description = "Changed", body = IdpView), BadRequest, Unauthorized, Forbidden, NotFound, UnsupportedMediaType, Unprocessable, Internal)
)]
#[patch("/tenants/{tenant}/identity-providers/{idp}")]
pub async fn update_tenant_idp(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<IdpRequest>,
) -> ApiResult<web::Json<IdpView>> {
    update(&state, &access.principal, Some(&access.tenant), &path.1, body).await
}

/// Remove a tenant's identity provider. People it created keep their accounts and
/// memberships, but cannot sign in until a provider of the same issuer is registered again.
#[utoipa::path(
    tag = "identity providers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("idp" = String, Path, description = "Provider slug")),
    responses((status = 204, description = "Removed"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/tenants/{tenant}/identity-providers/{idp}")]
pub async fn delete_tenant_idp(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let row = identity::get(&state.db, Some(&access.tenant), &path.1).await?;
    identity::delete(&state.db, &access.principal.actor(), Some(&access.tenant), row, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Test a tenant's identity provider: OIDC discovery from its issuer and its key set. The
/// keys found are kept for verifying its JWTs.
#[utoipa::path(
    tag = "identity providers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("idp" = String, Path, description = "Provider slug")),
    responses((status = 200, description = "Reachable and well-formed", body = TestResult), Unauthorized, Forbidden, NotFound, Unavailable, Internal)
)]
#[post("/tenants/{tenant}/identity-providers/{idp}/test")]
pub async fn test_tenant_idp(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<TestResult>> {
    test(&state, Some(&access.tenant), &path.1).await
}

/// List the platform's identity providers (platform admins).
#[utoipa::path(
    tag = "identity providers",
    params(PageQuery),
    responses((status = 200, description = "A page of providers", body = Page<IdpView>), Unauthorized, Forbidden, Unprocessable, Internal)
)]
#[get("/identity-providers")]
pub async fn list_platform_idps(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<IdpView>>> {
    let paged = identity::list(&state.reads, None, query.to_request()?).await?;
    Ok(web::Json(Page::try_from_paged(paged, |r| view(&state, &r))?))
}

/// Register the platform's identity provider (platform admins): it signs in anyone whose
/// email it vouches for, the console's administrators included.
#[utoipa::path(
    tag = "identity providers",
    request_body = IdpRequest,
    responses((status = 201, description = "Created", body = IdpView), BadRequest, Unauthorized, Forbidden, Conflict, UnsupportedMediaType, Unprocessable, Internal)
)]
#[post("/identity-providers")]
pub async fn create_platform_idp(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    ApiJson(body): ApiJson<IdpRequest>,
) -> ApiResult<HttpResponse> {
    create(&state, &admin, None, body).await
}

/// Get one of the platform's identity providers.
#[utoipa::path(
    tag = "identity providers",
    params(("idp" = String, Path, description = "Provider slug")),
    responses((status = 200, description = "The provider", body = IdpView), Unauthorized, Forbidden, NotFound, Internal)
)]
#[get("/identity-providers/{idp}")]
pub async fn get_platform_idp(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    slug: web::Path<String>,
) -> ApiResult<web::Json<IdpView>> {
    let row = identity::get(&state.reads, None, &slug).await?;
    Ok(web::Json(view(&state, &row)?))
}

/// Change the platform's identity provider.
#[utoipa::path(
    tag = "identity providers",
    params(("idp" = String, Path, description = "Provider slug")),
    request_body = IdpRequest,
    responses((status = 200, description = "Changed", body = IdpView), BadRequest, Unauthorized, Forbidden, NotFound, UnsupportedMediaType, Unprocessable, Internal)
)]
#[patch("/identity-providers/{idp}")]
pub async fn update_platform_idp(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    slug: web::Path<String>,
    ApiJson(body): ApiJson<IdpRequest>,
) -> ApiResult<web::Json<IdpView>> {
    update(&state, &admin, None, &slug, body).await
}

/// Remove the platform's identity provider.
#[utoipa::path(
    tag = "identity providers",
    params(("idp" = String, Path, description = "Provider slug")),
    responses((status = 204, description = "Removed"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/identity-providers/{idp}")]
pub async fn delete_platform_idp(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    slug: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let row = identity::get(&state.db, None, &slug).await?;
    identity::delete(&state.db, &admin.actor(), None, row, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Test the platform's identity provider: discovery and its key set.
#[utoipa::path(
    tag = "identity providers",
    params(("idp" = String, Path, description = "Provider slug")),
    responses((status = 200, description = "Reachable and well-formed", body = TestResult), Unauthorized, Forbidden, NotFound, Unavailable, Internal)
)]
#[post("/identity-providers/{idp}/test")]
pub async fn test_platform_idp(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    slug: web::Path<String>,
) -> ApiResult<web::Json<TestResult>> {
    test(&state, None, &slug).await
}

#[derive(Deserialize, IntoParams)]
pub struct ProvidersQuery {
    /// The email being signed in: providers whose allowed domains include it.
    pub email: Option<String>,
    /// A tenant whose login providers to offer.
    pub tenant: Option<String>,
    /// Where the browser goes after signing in: a path on this gateway (default `/`).
    pub return_to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginProvider {
    pub display_name: String,
    /// `null` for the platform's.
    pub tenant: Option<String>,
    pub slug: String,
    /// Open this in the browser to sign in.
    pub start_url: String,
    /// Password sign-in is refused for this email: use this provider.
    pub required: bool,
}

#[derive(Serialize, ToSchema)]
pub struct LoginProviders {
    pub items: Vec<LoginProvider>,
}

/// Sign-in options (no authentication): the platform's login providers, a tenant's, and
/// those whose domains include `email` (home-realm discovery).
#[utoipa::path(
    tag = "auth",
    params(ProvidersQuery),
    security(()),
    responses((status = 200, description = "Providers to offer", body = LoginProviders), Unprocessable, Internal)
)]
#[get("/auth/providers")]
pub async fn login_providers(
    state: web::Data<AppState>,
    query: web::Query<ProvidersQuery>,
) -> ApiResult<web::Json<LoginProviders>> {
    let return_to = match &query.return_to {
        Some(target) => crate::web::check_return_to(&state.oauth.issuer, target)?,
        None => "/".to_owned(),
    };
    let tenant = match &query.tenant {
        Some(slug) => tenants::find_by_slug(&state.reads, slug).await?,
        None => None,
    };
    let mut rows = identity::login_providers(&state.reads, tenant.as_ref()).await?;
    let email = match &query.email {
        Some(raw) => Some(Email::parse("email", raw)?),
        None => None,
    };
    if let Some(email) = &email {
        for found in identity::providers_for_email(&state.reads, email).await? {
            if !rows.iter().any(|r| r.id == found.id) {
                rows.push(found);
            }
        }
    }
    let slugs = tenants::slugs_of(&state.reads, rows.iter().filter_map(|r| r.tenant_id).collect()).await?;
    let items = rows
        .iter()
        .map(|r| {
            let tenant = r.tenant_id.and_then(|id| slugs.get(&id).cloned());
            let domain_matches = email.as_ref().is_some_and(|e| {
                serde_json::from_value::<Vec<String>>(r.allowed_domains.clone())
                    .unwrap_or_default()
                    .iter()
                    .any(|d| e.as_str().ends_with(&format!("@{d}")))
            });
            LoginProvider {
                display_name: r.display_name.clone(),
                start_url: crate::web::sso_start_url(tenant.as_deref(), &r.slug, &return_to, &[]),
                tenant,
                slug: r.slug.clone(),
                required: r.sso_required && domain_matches,
            }
        })
        .collect();
    Ok(web::Json(LoginProviders { items }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitationRequest {
    pub email: String,
    pub role: TenantRole,
    /// Days the link stays valid, 1 to 30 (default 7).
    pub expires_in_days: Option<u32>,
}

/// Invite someone to the tenant by email (tenant admins). The answer's `url` is the
/// single-use link to send them; it is shown only here.
#[utoipa::path(
    tag = "members",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = CreateInvitationRequest,
    responses((status = 201, description = "Created", body = InvitationView), BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal)
)]
#[post("/tenants/{tenant}/invitations")]
pub async fn create_invitation(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    ApiJson(body): ApiJson<CreateInvitationRequest>,
) -> ApiResult<HttpResponse> {
    validate! {
        email = Email::parse("email", &body.email),
        days = match body.expires_in_days {
            Some(d) if !(1..=invitations::MAX_DAYS).contains(&d) => {
                Err(FieldError::new("expires_in_days", "out_of_range", "must be 1 to 30"))
            }
            d => Ok(d.unwrap_or(invitations::DEFAULT_DAYS)),
        },
    }
    let now = state.clock.now();
    let issued =
        invitations::create(&state.db, &access.principal.actor(), &access.tenant, &email, body.role, days, now).await?;
    let mut view = InvitationView::of(&issued.row, now)?;
    view.url = Some(format!("{}/invitations/accept?token={}", state.oauth.issuer, issued.secret));
    Ok(HttpResponse::Created().json(view))
}

/// The tenant's invitations, newest first (tenant admins).
#[utoipa::path(
    tag = "members",
    params(("tenant" = String, Path, description = "Tenant slug"), PageQuery),
    responses((status = 200, description = "A page of invitations", body = Page<InvitationView>), Unauthorized, Forbidden, NotFound, Unprocessable, Internal)
)]
#[get("/tenants/{tenant}/invitations")]
pub async fn list_invitations(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<InvitationView>>> {
    let now = state.clock.now();
    let paged = invitations::list(&state.reads, &access.tenant, query.to_request()?).await?;
    Ok(web::Json(Page::try_from_paged(paged, |r| InvitationView::of(&r, now))?))
}

/// Revoke an invitation: its link stops working. An accepted one is left as it is.
#[utoipa::path(
    tag = "members",
    params(("tenant" = String, Path, description = "Tenant slug"), ("id" = String, Path, description = "Invitation id")),
    responses((status = 204, description = "Revoked"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/tenants/{tenant}/invitations/{id}")]
pub async fn revoke_invitation(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let row = invitations::get(&state.db, &access.tenant, &path.1).await?;
    invitations::revoke(&state.db, &access.principal.actor(), &access.tenant, row, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    /// The `token` of the invitation link.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct AcceptedInvitation {
    pub tenant: String,
}

/// Accept an invitation as the signed-in user; the invitation must be for your email.
#[utoipa::path(
    tag = "auth",
    request_body = AcceptInvitationRequest,
    responses((status = 200, description = "You are a member", body = AcceptedInvitation), BadRequest, Unauthorized, Forbidden, NotFound, UnsupportedMediaType, Unprocessable, Internal)
)]
#[post("/me/invitations/accept")]
pub async fn accept_invitation(
    state: web::Data<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<AcceptInvitationRequest>,
) -> ApiResult<web::Json<AcceptedInvitation>> {
    let user = principal.user()?;
    let tenant = invitations::accept(&state.db, user, &body.token, state.clock.now()).await.map_err(ApiError::from)?;
    Ok(web::Json(AcceptedInvitation { tenant: tenant.slug }))
}
