//! Teams of a tenant and their members.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::extract::{TenantAccess, TenantAdmin};
use crate::api::json::ApiJson;
use crate::api::pagination::{Page, PageQuery};
use crate::api::responses::*;
use crate::api::validate;
use crate::api::views::{TeamMemberView, TeamView};
use crate::control::teams::{self, TeamPatch};
use crate::domain::{description, DisplayName, Email, Slug};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    pub slug: String,
    pub display_name: String,
    pub description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeamRequest {
    pub display_name: Option<String>,
    /// `null` clears the description; absent leaves it as it is.
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTeamMemberRequest {
    /// Email of a member of the tenant.
    pub email: String,
}

/// List the tenant's teams, `everyone` included.
#[utoipa::path(
    tag = "teams",
    params(("tenant" = String, Path, description = "Tenant slug"), PageQuery),
    responses((status = 200, description = "A page of teams", body = Page<TeamView>), Unauthorized, NotFound, Unprocessable, Internal)
)]
#[get("/tenants/{tenant}/teams")]
pub async fn list_teams(
    state: web::Data<AppState>,
    access: TenantAccess,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<TeamView>>> {
    let paged = teams::list(&state.reads, &access.tenant, query.to_request()?).await?;
    Ok(web::Json(Page::from_paged(paged, TeamView::from)))
}

/// Create a team (tenant admins).
#[utoipa::path(
    tag = "teams",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = CreateTeamRequest,
    responses(
        (status = 201, description = "Created", body = TeamView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/tenants/{tenant}/teams")]
pub async fn create_team(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    ApiJson(body): ApiJson<CreateTeamRequest>,
) -> ApiResult<HttpResponse> {
    validate! {
        slug = Slug::parse("slug", &body.slug),
        display_name = DisplayName::parse("display_name", &body.display_name),
        description = description(body.description.as_deref()),
    }
    let team = teams::create(
        &state.db,
        &access.principal.actor(),
        &access.tenant,
        slug,
        display_name,
        description,
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Created().json(TeamView::from(team)))
}

/// Get a team.
#[utoipa::path(
    tag = "teams",
    params(("tenant" = String, Path, description = "Tenant slug"), ("team" = String, Path, description = "Team slug")),
    responses((status = 200, description = "The team", body = TeamView), Unauthorized, NotFound, Internal)
)]
#[get("/tenants/{tenant}/teams/{team}")]
pub async fn get_team(
    state: web::Data<AppState>,
    access: TenantAccess,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<TeamView>> {
    Ok(web::Json(teams::get(&state.reads, &access.tenant, &path.1).await?.into()))
}

/// Update a team (tenant admins). `everyone` cannot be changed.
#[utoipa::path(
    tag = "teams",
    params(("tenant" = String, Path, description = "Tenant slug"), ("team" = String, Path, description = "Team slug")),
    request_body = UpdateTeamRequest,
    responses(
        (status = 200, description = "Updated", body = TeamView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[patch("/tenants/{tenant}/teams/{team}")]
pub async fn update_team(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateTeamRequest>,
) -> ApiResult<web::Json<TeamView>> {
    validate! {
        display_name = body.display_name.as_deref().map(|n| DisplayName::parse("display_name", n)).transpose(),
        description = body.description.as_ref().map(|d| description(d.as_deref())).transpose(),
    }
    let team = teams::get(&state.db, &access.tenant, &path.1).await?;
    let team = teams::update(
        &state.db,
        &access.principal.actor(),
        &access.tenant,
        team,
        TeamPatch { display_name, description },
        state.clock.now(),
    )
    .await?;
    Ok(web::Json(team.into()))
}

/// Delete a team (tenant admins). `everyone` cannot be deleted.
#[utoipa::path(
    tag = "teams",
    params(("tenant" = String, Path, description = "Tenant slug"), ("team" = String, Path, description = "Team slug")),
    responses((status = 204, description = "Deleted"), Unauthorized, Forbidden, NotFound, Conflict, Internal)
)]
#[delete("/tenants/{tenant}/teams/{team}")]
pub async fn delete_team(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let team = teams::get(&state.db, &access.tenant, &path.1).await?;
    teams::delete(&state.db, &access.principal.actor(), &access.tenant, team, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List a team's members (for `everyone`: every tenant member).
#[utoipa::path(
    tag = "teams",
    params(("tenant" = String, Path, description = "Tenant slug"), ("team" = String, Path, description = "Team slug"), PageQuery),
    responses((status = 200, description = "A page of members", body = Page<TeamMemberView>), Unauthorized, NotFound, Unprocessable, Internal)
)]
#[get("/tenants/{tenant}/teams/{team}/members")]
pub async fn list_team_members(
    state: web::Data<AppState>,
    access: TenantAccess,
    path: web::Path<(String, String)>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<TeamMemberView>>> {
    let team = teams::get(&state.reads, &access.tenant, &path.1).await?;
    let paged = teams::list_members(&state.reads, &access.tenant, &team, query.to_request()?).await?;
    Ok(web::Json(Page::from_paged(paged, TeamMemberView::from)))
}

/// Add a tenant member to a team (tenant admins).
#[utoipa::path(
    tag = "teams",
    params(("tenant" = String, Path, description = "Tenant slug"), ("team" = String, Path, description = "Team slug")),
    request_body = AddTeamMemberRequest,
    responses(
        (status = 201, description = "Added", body = TeamMemberView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/tenants/{tenant}/teams/{team}/members")]
pub async fn add_team_member(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String)>,
    ApiJson(body): ApiJson<AddTeamMemberRequest>,
) -> ApiResult<HttpResponse> {
    let email = Email::parse("email", &body.email)?;
    let team = teams::get(&state.db, &access.tenant, &path.1).await?;
    let user =
        teams::add_member(&state.db, &access.principal.actor(), &access.tenant, &team, &email, state.clock.now())
            .await?;
    Ok(HttpResponse::Created().json(TeamMemberView::from(user)))
}

/// Remove a member from a team (tenant admins).
#[utoipa::path(
    tag = "teams",
    params(
        ("tenant" = String, Path, description = "Tenant slug"),
        ("team" = String, Path, description = "Team slug"),
        ("email" = String, Path, description = "Member email")
    ),
    responses((status = 204, description = "Removed"), Unauthorized, Forbidden, NotFound, Conflict, Internal)
)]
#[delete("/tenants/{tenant}/teams/{team}/members/{email}")]
pub async fn remove_team_member(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let email = Email::parse("email", &path.2).map_err(|_| ApiError::NotFound)?;
    let team = teams::get(&state.db, &access.tenant, &path.1).await?;
    teams::remove_member(&state.db, &access.principal.actor(), &access.tenant, &team, &email, state.clock.now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
