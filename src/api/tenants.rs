//! Tenants and their members.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::extract::{PlatformAdmin, Principal, TenantAccess, TenantAdmin};
use crate::api::json::ApiJson;
use crate::api::pagination::{Page, PageQuery};
use crate::api::responses::*;
use crate::api::validate;
use crate::api::views::{TenantMemberView, TenantView};
use crate::control::{members, tenants};
use crate::domain::{DisplayName, Email, Slug, TenantRole};
use crate::error::ApiError;
use crate::error::ApiResult;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// URL-safe identifier: lowercase letters, digits and `-`, starting with a letter.
    pub slug: String,
    pub display_name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    pub display_name: Option<String>,
    /// An https URL of the tenant's logo (at most 2048 characters); `""` removes it.
    pub logo_url: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// Email of an existing user.
    pub email: String,
    pub role: TenantRole,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    pub role: TenantRole,
}

/// List the tenants you can see (all of them for a platform admin).
#[utoipa::path(
    tag = "tenants",
    params(PageQuery),
    responses((status = 200, description = "A page of tenants", body = Page<TenantView>), Unauthorized, Unprocessable, Internal)
)]
#[get("/tenants")]
pub async fn list_tenants(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<TenantView>>> {
    let paged = tenants::list_visible(&state.reads, &principal.caller, query.to_request()?).await?;
    let ids: Vec<i64> = paged.items.iter().map(|t| t.id).collect();
    let roles = match principal.caller.user() {
        Some(user) => tenants::roles_in(&state.reads, user.id, ids).await?,
        None => Default::default(),
    };
    Ok(web::Json(Page::from_paged(paged, |t| {
        let role = roles.get(&t.id).copied();
        TenantView::new(t, role)
    })))
}

/// Create a tenant (platform admins). It starts with the built-in `everyone` team, and with
/// you as its first admin member.
#[utoipa::path(
    tag = "tenants",
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "Created", body = TenantView),
        BadRequest, Unauthorized, Forbidden, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/tenants")]
pub async fn create_tenant(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    ApiJson(body): ApiJson<CreateTenantRequest>,
) -> ApiResult<HttpResponse> {
    validate! {
        slug = Slug::parse("slug", &body.slug),
        display_name = DisplayName::parse("display_name", &body.display_name),
    }
    let creator = admin.caller.user().map(|u| u.id);
    let tenant = tenants::create(&state.db, &admin.actor(), creator, slug, display_name, state.clock.now()).await?;
    let role = creator.map(|_| TenantRole::Admin);
    Ok(HttpResponse::Created().json(TenantView::new(tenant, role)))
}

/// Get a tenant.
#[utoipa::path(
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, description = "The tenant", body = TenantView), Unauthorized, NotFound, Internal)
)]
#[get("/tenants/{tenant}")]
pub async fn get_tenant(access: TenantAccess) -> ApiResult<web::Json<TenantView>> {
    Ok(web::Json(TenantView::new(access.tenant, access.membership)))
}

/// Update a tenant (tenant admins). The slug cannot change: it is part of every MCP URL.
#[utoipa::path(
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = UpdateTenantRequest,
    responses(
        (status = 200, description = "Updated", body = TenantView),
        BadRequest, Unauthorized, Forbidden, NotFound, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[patch("/tenants/{tenant}")]
pub async fn update_tenant(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    ApiJson(body): ApiJson<UpdateTenantRequest>,
) -> ApiResult<web::Json<TenantView>> {
    validate! {
        display_name = body.display_name.as_deref().map(|n| DisplayName::parse("display_name", n)).transpose(),
        logo_url = body.logo_url.as_deref().map(logo_url).transpose(),
    }
    let tenant = if display_name.is_some() || logo_url.is_some() {
        let actor = access.principal.actor();
        tenants::update(&state.db, &actor, access.tenant, display_name, logo_url, state.clock.now()).await?
    } else {
        access.tenant
    };
    Ok(web::Json(TenantView::new(tenant, access.membership)))
}

/// A logo must be an https URL: the pages that show it load nothing over plain HTTP, and a
/// `javascript:` or `data:` URL is no image address. `""` removes the logo.
fn logo_url(text: &str) -> Result<Option<String>, crate::error::FieldError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let invalid =
        || crate::error::FieldError::new("logo_url", "invalid_url", "must be an https URL of at most 2048 characters");
    let url = url::Url::parse(text).map_err(|_| invalid())?;
    if url.scheme() != "https" || url.host_str().is_none() || text.len() > 2048 {
        return Err(invalid());
    }
    Ok(Some(url.to_string()))
}

/// Delete a tenant and everything in it (platform admins).
#[utoipa::path(
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 204, description = "Deleted"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/tenants/{tenant}")]
pub async fn delete_tenant(state: web::Data<AppState>, access: TenantAccess) -> ApiResult<HttpResponse> {
    if !access.principal.caller.is_platform_admin() {
        return Err(crate::error::ApiError::forbidden("deleting a tenant needs platform admin rights"));
    }
    tenants::delete(&state.db, &access.principal.actor(), access.tenant, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List the tenant's members.
#[utoipa::path(
    tag = "members",
    params(("tenant" = String, Path, description = "Tenant slug"), PageQuery),
    responses((status = 200, description = "A page of members", body = Page<TenantMemberView>), Unauthorized, NotFound, Unprocessable, Internal)
)]
#[get("/tenants/{tenant}/members")]
pub async fn list_members(
    state: web::Data<AppState>,
    access: TenantAccess,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<TenantMemberView>>> {
    let paged = members::list(&state.reads, &access.tenant, query.to_request()?).await?;
    Ok(web::Json(Page::from_paged(paged, TenantMemberView::from)))
}

/// Add an existing user to the tenant (platform admins).
///
/// A tenant admin who is not a platform admin cannot enrol people from elsewhere on the
/// platform (nor learn which emails have accounts): for anyone not already a member the
/// answer is the same `403`, whether or not the email exists.
#[utoipa::path(
    tag = "members",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = AddMemberRequest,
    responses(
        (status = 201, description = "Added", body = TenantMemberView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/tenants/{tenant}/members")]
pub async fn add_member(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    ApiJson(body): ApiJson<AddMemberRequest>,
) -> ApiResult<HttpResponse> {
    let email = Email::parse("email", &body.email)?;
    if !access.principal.caller.is_platform_admin() && members::get(&state.db, &access.tenant, &email).await.is_err() {
        return Err(ApiError::forbidden(
            "adding someone who is not yet a member of this tenant needs a platform admin; ask one to add them",
        ));
    }
    let member =
        members::add(&state.db, &access.principal.actor(), &access.tenant, &email, body.role, state.clock.now())
            .await?;
    Ok(HttpResponse::Created().json(TenantMemberView::from(member)))
}

/// Change a member's role (tenant admins). The last admin cannot be demoted.
#[utoipa::path(
    tag = "members",
    params(("tenant" = String, Path, description = "Tenant slug"), ("email" = String, Path, description = "Member email")),
    request_body = UpdateMemberRequest,
    responses(
        (status = 200, description = "Updated", body = TenantMemberView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[patch("/tenants/{tenant}/members/{email}")]
pub async fn update_member(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateMemberRequest>,
) -> ApiResult<web::Json<TenantMemberView>> {
    let email = Email::parse("email", &path.1).map_err(|_| crate::error::ApiError::NotFound)?;
    let member =
        members::set_role(&state.db, &access.principal.actor(), &access.tenant, &email, body.role, state.clock.now())
            .await?;
    Ok(web::Json(member.into()))
}

/// Remove a member from the tenant and its teams (tenant admins). The last admin cannot leave.
#[utoipa::path(
    tag = "members",
    params(("tenant" = String, Path, description = "Tenant slug"), ("email" = String, Path, description = "Member email")),
    responses((status = 204, description = "Removed"), Unauthorized, Forbidden, NotFound, Conflict, Internal)
)]
#[delete("/tenants/{tenant}/members/{email}")]
pub async fn remove_member(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let email = Email::parse("email", &path.1).map_err(|_| crate::error::ApiError::NotFound)?;
    members::remove(&state.db, &access.principal.actor(), &access.tenant, &email, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}
