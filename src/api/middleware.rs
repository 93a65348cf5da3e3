//! Request ids: every response carries `x-request-id`, and every problem document carries the
//! same id, so a user's bug report leads straight to the log lines of their request.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use tracing_actix_web::RequestId;

use crate::error::ApiError;
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    // Only the control-plane API changes state; MCP traffic must not wake the publisher.
    // Proxy decisions are recorded, not enforced: they never move the policy version.
    let changes_state = req.path().starts_with("/api/")
        && !matches!(req.path(), "/api/v1/policy/decisions" | "/api/v1/policy/credentials")
        && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await?;
    // A successful change may have moved the policy version: publish without waiting for the
    // publisher's periodic check.
    if changes_state && res.status().is_success() {
        if let Some(state) = state {
            state.publisher.poke();
        }
    }
    let mut res = match (res.response().error().and_then(|e| e.as_error::<ApiError>()), &id) {
        (Some(err), _) => {
            if let ApiError::Internal(cause) = err {
                // The whole cause chain goes to the log, never to the client.
                tracing::error!(
                    request_id = id.as_deref().unwrap_or("-"),
                    error = format!("{cause:#}"),
                    "internal error"
                );
            }
            let rendered = err.render(id.as_deref());
            res.into_response(rendered)
        }
        _ => res.map_into_boxed_body(),
    };
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        res.headers_mut().insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(res)
}
