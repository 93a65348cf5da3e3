//! Liveness and readiness probes.

use actix_web::{get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::responses::Unavailable;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`
    pub status: &'static str,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(tag = "health", security(()), responses((status = 200, description = "Up", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Readiness: the database answers, every migration is applied, and a verified policy
/// snapshot is in force.
#[utoipa::path(tag = "health", security(()), responses((status = 200, description = "Ready", body = Health), Unavailable))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<web::Json<Health>> {
    if let Err(e) = store::ping(&state.db).await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return Err(ApiError::Unavailable("the database is not reachable".into()));
    }
    match store::pending_migrations(&state.db).await {
        Ok(0) if state.policy.current().is_none() => {
            Err(ApiError::Unavailable("no verified policy snapshot is in force yet".into()))
        }
        Ok(0) => Ok(web::Json(Health { status: "ok" })),
        Ok(n) => Err(ApiError::Unavailable(format!("{n} database migrations are not applied"))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: migration status unknown");
            Err(ApiError::Unavailable("the migration status could not be read".into()))
        }
    }
}
