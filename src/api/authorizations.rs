//! The MCP clients you signed in to through the gateway ("Sign in with mcpgate"), and revoking
//! them.

use actix_web::{delete, get, web, HttpResponse};

use crate::api::extract::{PlatformAdmin, Principal};
use crate::api::pagination::{Page, PageQuery};
use crate::api::responses::*;
use crate::auth::oauth_server::grants::{self, AuthorizationView};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Your connected clients: one item per sign-in (a client and the MCP URL it connects to),
/// with when it last got tokens and when you must sign in again at the latest.
#[utoipa::path(
    tag = "authorizations",
    params(PageQuery),
    responses((status = 200, description = "A page of sign-ins", body = Page<AuthorizationView>), Unauthorized, Forbidden, Unprocessable, Internal)
)]
#[get("/me/authorizations")]
pub async fn list_authorizations(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<AuthorizationView>>> {
    let user = principal.user()?;
    let paged =
        grants::list_for_user(&state.reads, &state.oauth, user.id, query.to_request()?, state.clock.now()).await?;
    Ok(web::Json(Page::from_paged(paged, |a| a)))
}

/// Revoke a sign-in: its refresh tokens stop at once, its access tokens at the proxies with
/// the next policy snapshot, and the client must ask for your consent again.
#[utoipa::path(
    tag = "authorizations",
    params(("id" = String, Path, description = "The sign-in's id")),
    responses((status = 204, description = "Revoked"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/me/authorizations/{id}")]
pub async fn revoke_authorization(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = principal.user()?;
    revoke(&state, &principal, user.id, &id).await
}

/// A person's sign-ins (platform admins): what `/me/authorizations` shows them.
#[utoipa::path(
    tag = "authorizations",
    params(("id" = i64, Path, description = "User id"), PageQuery),
    responses((status = 200, description = "A page of sign-ins", body = Page<AuthorizationView>), Unauthorized, Forbidden, NotFound, Unprocessable, Internal)
)]
#[get("/users/{id}/authorizations")]
pub async fn list_user_authorizations(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    id: web::Path<i64>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<AuthorizationView>>> {
    let user = crate::control::users::get(&state.reads, id.into_inner()).await?;
    let paged =
        grants::list_for_user(&state.reads, &state.oauth, user.id, query.to_request()?, state.clock.now()).await?;
    Ok(web::Json(Page::from_paged(paged, |a| a)))
}

/// End a person's sign-in (platform admins), as they could themselves: a lost laptop, someone
/// leaving.
#[utoipa::path(
    tag = "authorizations",
    params(("id" = i64, Path, description = "User id"), ("authorization" = String, Path, description = "The sign-in's id")),
    responses((status = 204, description = "Revoked"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/users/{id}/authorizations/{authorization}")]
pub async fn revoke_user_authorization(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    path: web::Path<(i64, String)>,
) -> ApiResult<HttpResponse> {
    let (id, authorization) = path.into_inner();
    let user = crate::control::users::get(&state.db, id).await?;
    revoke(&state, &admin, user.id, &authorization).await
}

async fn revoke(state: &AppState, principal: &Principal, user: i64, id: &str) -> ApiResult<HttpResponse> {
    let revoked = grants::revoke_for_user(&state.db, user, id, state.clock.now())
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e.to_string())))?;
    if !revoked {
        return Err(ApiError::NotFound);
    }
    crate::control::audit::record(
        &state.db,
        &principal.actor(),
        crate::control::audit::Event::new("oauth_authorization.revoke", format!("authorization:{id}")),
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
