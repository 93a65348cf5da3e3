//! Sign-in, sign-out and the caller's own account.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::{client_address, Principal};
use crate::api::json::ApiJson;
use crate::api::responses::*;
use crate::api::views::UserView;
use crate::auth::password;
use crate::auth::session::SESSION_COOKIE;
use crate::control::{sessions, users};
use crate::domain::{Email, NewPassword};
use crate::error::{ApiError, ApiResult};
use crate::startup::AppState;

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

/// Checks an email and password (throttled per account and address) and opens a session.
/// Returns the user, the session secret and its lifetime.
pub(crate) async fn sign_in(
    req: &HttpRequest,
    state: &AppState,
    email: &str,
    password: SecretString,
) -> ApiResult<(crate::store::entities::users::Model, String, chrono::Duration)> {
    let email = Email::parse("email", email)?;
    let now = state.clock.now();
    let address = client_address(req);
    state
        .throttle
        .reserve(email.as_str(), address.as_deref(), now)
        .map_err(|retry_after_secs| ApiError::TooManyAttempts { retry_after_secs })?;
    let user = users::find_by_email(&state.db, &email).await?;
    let stored = user.as_ref().filter(|u| !u.disabled).and_then(|u| u.password_hash.clone());
    let verified = password::verify_password(password, stored).await?;
    let user = match user {
        Some(user) if verified => user,
        _ => {
            tracing::info!(email = %email, "sign-in refused");
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.throttle.succeeded(email.as_str(), address.as_deref(), now);
    let ttl = chrono::Duration::minutes(i64::from(state.settings.session_ttl_minutes));
    let (secret, _) = sessions::create(&state.db, user.id, ttl, now).await?;
    tracing::info!(user_id = user.id, "signed in");
    Ok((user, secret, ttl))
}

/// The cookie that removes the session cookie from the browser (sign-out).
pub(crate) fn ended_session_cookie(state: &AppState) -> Cookie<'static> {
    let mut expired = session_cookie(state, String::new(), time::Duration::ZERO);
    expired.make_removal();
    expired
}

pub(crate) fn session_cookie(state: &AppState, value: String, max_age: time::Duration) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.secure_cookies())
        .max_age(max_age)
        .finish()
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
