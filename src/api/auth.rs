//! Sign-in, sign-out and the caller's own account.

use actix_web::cookie::time;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::Principal;
use crate::api::json::ApiJson;
use crate::api::responses::*;
use crate::api::views::UserView;
use crate::control::{sessions, users};
use crate::domain::NewPassword;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::web::{client_address, ended_session_cookie, session_cookie, sign_in};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserView,
    /// Send as the `x-csrf-token` header on every POST, PUT, PATCH and DELETE made with the
    /// session cookie.
    pub csrf_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    pub user: UserView,
    /// Present when the caller uses a console session.
    pub csrf_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

/// Sign in with email and password.
///
/// Sets an HttpOnly session cookie and returns the CSRF token that unsafe requests made with
/// that cookie must send in `x-csrf-token`. Repeated failures for one account or address are
/// refused with 429 for a while, even with the right password.
#[utoipa::path(
    tag = "auth",
    security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; `Set-Cookie` carries the session", body = LoginResponse),
        (status = 403, description = "This email's organisation requires SSO (`sso_required`); `detail` names the provider's start URL", body = crate::error::Problem, content_type = "application/problem+json"),
        BadRequest, Unauthorized, UnsupportedMediaType, Unprocessable, TooManyRequests, Internal
    )
)]
#[post("/auth/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<HttpResponse> {
    let (user, secret, ttl) = sign_in(&req, &state, &body.email, body.password).await?;
    let csrf_token = crate::auth::session::csrf_token(&secret);
    let cookie = session_cookie(&state, secret, time::Duration::seconds(ttl.num_seconds()));
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginResponse { user: user.into(), csrf_token }))
}

/// Sign out: ends the session server-side and clears the cookie.
#[utoipa::path(
    tag = "auth",
    responses((status = 204, description = "Signed out"), Unauthorized, Forbidden, Internal)
)]
#[post("/auth/logout")]
pub async fn logout(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    if let Some(id) = principal.session_id() {
        sessions::delete(&state.db, id).await?;
    }
    let mut response = HttpResponse::NoContent().finish();
    response
        .add_cookie(&ended_session_cookie(&state))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cookie: {e}")))?;
    Ok(response)
}

/// The signed-in user.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, description = "The caller", body = MeResponse), Unauthorized, Internal)
)]
#[get("/me")]
pub async fn me(principal: Principal) -> ApiResult<web::Json<MeResponse>> {
    let csrf_token = principal.csrf_token().map(str::to_owned);
    Ok(web::Json(MeResponse { user: principal.user()?.clone().into(), csrf_token }))
}

/// Change your own password. Your other sessions end; this one stays.
///
/// Wrong current passwords count against the same limit as failed sign-ins (429 beyond it).
#[utoipa::path(
    tag = "auth",
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Password changed"),
        BadRequest, Unauthorized, Forbidden, UnsupportedMediaType, Unprocessable, TooManyRequests, Internal
    )
)]
#[post("/me/password")]
pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> ApiResult<HttpResponse> {
    let new = NewPassword::parse("new_password", secrecy::ExposeSecret::expose_secret(&body.new_password))?;
    let email = principal.user()?.email.clone();
    let address = client_address(&req);
    let now = state.clock.now();
    // A stolen session or token must not become a way to guess the password without limit.
    state
        .throttle
        .reserve(&email, address.as_deref(), now)
        .map_err(|retry_after_secs| ApiError::TooManyAttempts { retry_after_secs })?;
    users::change_own_password(
        &state.db,
        &principal.actor(),
        principal.user()?,
        body.current_password,
        new,
        principal.session_id(),
        now,
    )
    .await?;
    state.throttle.succeeded(&email, address.as_deref(), now);
    Ok(HttpResponse::NoContent().finish())
}
