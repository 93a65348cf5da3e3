//! Your per-user OAuth connections to upstream providers (the token vault).

use actix_web::{delete, get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::{Principal, ServerAccess};
use crate::api::responses::*;
use crate::control::vault::ConnectionView;
use crate::error::ApiResult;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    pub items: Vec<ConnectionView>,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionStarted {
    /// Open this in the user's browser: the provider's authorization page. Valid for 10 minutes, once.
    pub authorization_url: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StartConnectionRequest {
    /// Where the browser goes after the provider sends it back (an URL of this gateway);
    /// a confirmation page when left out.
    pub return_to: Option<String>,
}

/// Your connections: each server whose provider you authorized, with its status and expiry.
#[utoipa::path(
    tag = "connections",
    responses((status = 200, description = "Connections", body = ConnectionList), Unauthorized, Forbidden, Internal)
)]
#[get("/me/connections")]
pub async fn list_connections(
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<web::Json<ConnectionList>> {
    let user = principal.user()?;
    Ok(web::Json(ConnectionList { items: state.vault.connections(user.id).await? }))
}

/// Start authorizing a server that uses per-user OAuth: returns the provider's authorization
/// URL (PKCE S256; the provider sends the browser back to `/oauth/upstream/callback`).
#[utoipa::path(
    tag = "connections",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    request_body(content = Option<StartConnectionRequest>, description = "Optional"),
    responses(
        (status = 200, description = "Where to send the browser", body = ConnectionStarted),
        Unauthorized, Forbidden, NotFound, Conflict, Unprocessable, Unavailable, Internal
    )
)]
#[post("/me/connections/{tenant}/{server}")]
pub async fn start_connection(
    state: web::Data<AppState>,
    access: ServerAccess,
    body: Option<web::Json<StartConnectionRequest>>,
) -> ApiResult<web::Json<ConnectionStarted>> {
    let user = access.tenant.principal.user()?;
    let return_to = body
        .and_then(|b| b.into_inner().return_to)
        .map(|target| crate::web::check_return_to(&state.settings.public_base_url(), &target))
        .transpose()?;
    let authorization_url = state.vault.start(&access.server, user.id, return_to).await?;
    Ok(web::Json(ConnectionStarted { authorization_url }))
}

/// Disconnect: forget your grant for a server and revoke it at the provider where it can.
#[utoipa::path(
    tag = "connections",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    responses((status = 204, description = "Disconnected"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/me/connections/{tenant}/{server}")]
pub async fn delete_connection(state: web::Data<AppState>, access: ServerAccess) -> ApiResult<HttpResponse> {
    let user = access.tenant.principal.user()?;
    let actor = access.tenant.principal.actor();
    state.vault.disconnect(&actor, &access.tenant.tenant, &access.server, user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
