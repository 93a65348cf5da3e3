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

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ok`
    pub status: &'static str,
    /// The version of the policy snapshot this process's proxy enforces.
    pub policy_version: i64,
    /// `publisher` on the control plane that publishes snapshots and runs the background
    /// jobs, `follower` on the others (several control planes on one PostgreSQL database).
    pub role: &'static str,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(tag = "health", security(()), responses((status = 200, description = "Up", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Readiness: the database answers, every migration is applied, and a verified policy
/// snapshot is in force. Says which snapshot, and whether this process publishes them.
#[utoipa::path(tag = "health", security(()), responses((status = 200, description = "Ready", body = Readiness), Unavailable))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<web::Json<Readiness>> {
    if let Err(e) = store::ping(&state.db).await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return Err(ApiError::Unavailable("the database is not reachable".into()));
    }
    match store::pending_migrations(&state.db).await {
        Ok(0) => match state.policy.version() {
            None => Err(ApiError::Unavailable("no verified policy snapshot is in force yet".into())),
            Some(policy_version) => Ok(web::Json(Readiness {
                status: "ok",
                policy_version,
                role: if state.leadership.is_publisher() { "publisher" } else { "follower" },
            })),
        },
        Ok(n) => Err(ApiError::Unavailable(format!("{n} database migrations are not applied"))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: migration status unknown");
            Err(ApiError::Unavailable("the migration status could not be read".into()))
        }
    }
}
