//! Auth Overrides of a server: a subject's own values for its per-user credential placeholders.

use std::collections::BTreeMap;

use actix_web::{delete, get, put, web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::extract::ServerAccess;
use crate::api::json::ApiJson;
use crate::api::responses::*;
use crate::control::overrides::{self, OverrideSchema, OverrideView};
use crate::control::servers::{self as server_ctl, ServerRole, SubjectKind};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutOverrideRequest {
    /// A value for every placeholder of the server (`{"API_KEY": "…"}`), or, on a server with
    /// one shared credential, your own value for some of its headers (`{"X-Api-Key": "…"}`).
    /// Write-only.
    #[schema(write_only)]
    pub values: BTreeMap<String, String>,
}

#[derive(serde::Serialize, ToSchema)]
pub struct OverrideList {
    pub items: Vec<OverrideView>,
}

/// The subject in the path: `me`, `user:<email>` or `virtualaccount:<name>`. Only managers
/// may name someone else.
async fn subject_of(state: &AppState, access: &ServerAccess, raw: &str) -> ApiResult<(SubjectKind, i64, String)> {
    let caller = &access.tenant.principal.caller;
    let own = (caller.subject().0, caller.subject().1, caller.label());
    if raw == "me" || raw == own.2 {
        return Ok(own);
    }
    if access.role != ServerRole::Manager {
        return Err(ApiError::forbidden("only managers of the server set someone else's Auth Override"));
    }
    let (kind, id, label, _) = server_ctl::resolve_subject(&state.db, &access.tenant.tenant, raw).await?;
    if kind == SubjectKind::Team {
        return Err(FieldError::new(
            "subject",
            "invalid_subject",
            "an Auth Override belongs to a user or a virtual account",
        )
        .into());
    }
    Ok((kind, id, label))
}

/// List a server's Auth Overrides: every subject's for managers, your own otherwise. Values
/// are never shown, only which placeholders are set.
#[utoipa::path(
    tag = "auth overrides",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    responses((status = 200, description = "Overrides", body = OverrideList), Unauthorized, NotFound, Internal)
)]
#[get("/tenants/{tenant}/servers/{server}/auth-overrides")]
pub async fn list_overrides(state: web::Data<AppState>, access: ServerAccess) -> ApiResult<web::Json<OverrideList>> {
    let only = (access.role != ServerRole::Manager).then(|| access.tenant.principal.caller.subject());
    let items = overrides::list(&state.reads, &state.sealer, &access.server, only).await?;
    Ok(web::Json(OverrideList { items }))
}

/// The placeholders an Auth Override of this server fills.
#[utoipa::path(
    tag = "auth overrides",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    responses((status = 200, description = "Placeholder names and the header templates they fill", body = OverrideSchema), Unauthorized, NotFound, Internal)
)]
#[get("/tenants/{tenant}/servers/{server}/auth-override-schema")]
pub async fn get_override_schema(access: ServerAccess) -> web::Json<OverrideSchema> {
    web::Json(overrides::schema(&access.server))
}

/// Set a subject's Auth Override (`me` for your own; managers may name any user or virtual
/// account of the tenant). Replaces earlier values; the values are write-only.
#[utoipa::path(
    tag = "auth overrides",
    params(
        ("tenant" = String, Path, description = "Tenant slug"),
        ("server" = String, Path, description = "Server slug"),
        ("subject" = String, Path, description = "`me`, `user:<email>` or `virtualaccount:<name>`"),
    ),
    request_body = PutOverrideRequest,
    responses(
        (status = 200, description = "Replaced", body = OverrideView),
        (status = 201, description = "Created", body = OverrideView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[put("/tenants/{tenant}/servers/{server}/auth-overrides/{subject}")]
pub async fn put_override(
    state: web::Data<AppState>,
    access: ServerAccess,
    path: web::Path<(String, String, String)>,
    ApiJson(body): ApiJson<PutOverrideRequest>,
) -> ApiResult<HttpResponse> {
    let subject = subject_of(&state, &access, &path.2).await?;
    let actor = access.tenant.principal.actor();
    let (view, created) = overrides::put(
        &state.db,
        &state.sealer,
        &actor,
        &access.tenant.tenant,
        &access.server,
        subject,
        body.values,
        state.clock.now(),
    )
    .await?;
    Ok(if created { HttpResponse::Created() } else { HttpResponse::Ok() }.json(view))
}

/// Remove a subject's Auth Override; the server's default credential applies again.
#[utoipa::path(
    tag = "auth overrides",
    params(
        ("tenant" = String, Path, description = "Tenant slug"),
        ("server" = String, Path, description = "Server slug"),
        ("subject" = String, Path, description = "`me`, `user:<email>` or `virtualaccount:<name>`"),
    ),
    responses((status = 204, description = "Removed"), Unauthorized, Forbidden, NotFound, Internal)
)]
#[delete("/tenants/{tenant}/servers/{server}/auth-overrides/{subject}")]
pub async fn delete_override(
    state: web::Data<AppState>,
    access: ServerAccess,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let subject = subject_of(&state, &access, &path.2).await?;
    let actor = access.tenant.principal.actor();
    overrides::delete(&state.db, &actor, &access.tenant.tenant, &access.server, subject, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}
