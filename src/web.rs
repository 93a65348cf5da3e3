//! What the API and the pages share for people in browsers: signing in (throttled) and the
//! session cookie, the client's address, and keeping `return_to` on this gateway. Both depend
//! on this module; it depends on neither.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::HttpRequest;
use secrecy::SecretString;

use crate::auth::password;
use crate::auth::session::SESSION_COOKIE;
use crate::control::{sessions, users};
use crate::domain::Email;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::state::AppState;

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
    // Before the password is looked at: an organisation that made SSO mandatory gets no
    // password check at all for its domains, right or wrong.
    if let Some(idp) = crate::control::identity::sso_required_for(&state.db, &email).await? {
        let tenant = match idp.tenant_id {
            Some(id) => crate::control::tenants::slugs_of(&state.db, vec![id]).await?.remove(&id),
            None => None,
        };
        let start_url = sso_start_url(tenant.as_deref(), &idp.slug, "/", &[("login_hint", email.as_str())]);
        return Err(ApiError::SsoRequired { provider: idp.display_name, start_url });
    }
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
    let (secret, ttl) = open_session(state, &user).await?;
    tracing::info!(user_id = user.id, "signed in");
    Ok((user, secret, ttl))
}

/// Opens a browser session for someone already authenticated (password or provider).
pub(crate) async fn open_session(
    state: &AppState,
    user: &crate::store::entities::users::Model,
) -> ApiResult<(String, chrono::Duration)> {
    let ttl = chrono::Duration::minutes(i64::from(state.settings.session_ttl_minutes));
    let (secret, _) = sessions::create(&state.db, user.id, ttl, state.clock.now()).await?;
    Ok((secret, ttl))
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

/// The client's address, for throttling. Proxies in front are not trusted to say otherwise.
pub fn client_address(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|a| a.ip().to_string())
}

/// `return_to` must stay on this gateway: anything else would make it an open redirect. It is
/// resolved against the public URL the way a browser would (backslashes as slashes, tabs and
/// newlines dropped), accepted only when the result has the gateway's own origin, and returned
/// as that origin's path, query and fragment, which is what the browser is then sent to.
pub fn check_return_to(public_base: &str, target: &str) -> ApiResult<String> {
    let refused = || {
        ApiError::Validation(vec![FieldError::new("return_to", "invalid_return_to", "must be a URL of this gateway")])
    };
    // Text a browser reads differently from a URL parser is refused outright.
    if target.is_empty() || target.len() > 4096 || target.chars().any(|c| c.is_control() || c == '\\') {
        return Err(refused());
    }
    let base = url::Url::parse(public_base).map_err(|_| refused())?;
    let resolved = base.join(target).map_err(|_| refused())?;
    if resolved.origin() != base.origin() || !resolved.username().is_empty() || resolved.password().is_some() {
        return Err(refused());
    }
    let local = &resolved[url::Position::BeforePath..];
    // A path that starts with two slashes would name another host when used as a Location.
    if local.starts_with("//") {
        return Err(refused());
    }
    Ok(local.to_owned())
}

/// The SSO start URL of a provider (`/oauth/sso/start`).
pub fn sso_start_url(tenant: Option<&str>, slug: &str, return_to: &str, extra: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(t) = tenant {
        query.append_pair("tenant", t);
    }
    query.append_pair("idp", slug).append_pair("return_to", return_to);
    for (k, v) in extra {
        query.append_pair(k, v);
    }
    format!("/oauth/sso/start?{}", query.finish())
}
