//! The tenant's audit trail.

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::extract::TenantAdmin;
use crate::api::pagination::{Page, PageQuery};
use crate::api::responses::*;
use crate::control::audit::{self, Filter};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::store::entities::audit_events;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events with this action, e.g. `server.create`.
    pub action: Option<String>,
    /// Only events by this actor, e.g. `user:ann@example.com`.
    pub actor: Option<String>,
    /// Only events about this server (its changes and the calls made through it).
    pub server: Option<String>,
    /// Only events with this outcome, e.g. `success`, `denied`.
    pub outcome: Option<String>,
    /// Only events at or after this instant (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only events before this instant (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventView {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub request_id: Option<String>,
    pub details: Option<serde_json::Value>,
}

impl From<audit_events::Model> for AuditEventView {
    fn from(e: audit_events::Model) -> Self {
        Self {
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            request_id: e.request_id,
            details: e.details,
        }
    }
}

/// The tenant's audit events, newest first (tenant admins).
#[utoipa::path(
    tag = "audit",
    params(("tenant" = String, Path, description = "Tenant slug"), AuditQuery, PageQuery),
    responses(
        (status = 200, description = "A page of events", body = Page<AuditEventView>),
        Unauthorized, Forbidden, NotFound, Unprocessable, Internal
    )
)]
#[get("/tenants/{tenant}/audit-events")]
pub async fn list_audit_events(
    state: web::Data<AppState>,
    TenantAdmin(access): TenantAdmin,
    filter: web::Query<AuditQuery>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<AuditEventView>>> {
    let filter = filter.into_inner();
    let paged = audit::list(
        &state.reads,
        &access.tenant,
        Filter {
            action: filter.action,
            actor: filter.actor,
            target: filter.server.map(|s| format!("server:{s}")),
            outcome: filter.outcome,
            since: filter.since,
            until: filter.until,
        },
        query.to_request()?,
    )
    .await?;
    Ok(web::Json(Page::from_paged(paged, AuditEventView::from)))
}
