//! The machine side of the gateway's authorization server: metadata (RFC 8414, and the OpenID
//! discovery alias), keys, registration (RFC 7591), the token endpoint and revocation
//! (RFC 7009). Errors are OAuth error objects, as clients expect them here, not problem+json.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::auth::oauth_server::clients;
use crate::auth::oauth_server::grants;
use crate::auth::oauth_server::OAuthError;
use crate::state::AppState;

const FORM_LIMIT: usize = 16 * 1024;

/// Registrations one client address may make: a client registers once per install, so this is
/// generous for people and stops a script filling the table.
pub const REGISTRATION_QUOTA: governor::Quota = governor::Quota::per_minute(nonzero(30));

const fn nonzero(n: u32) -> std::num::NonZeroU32 {
    match std::num::NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("a quota is positive"),
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/oauth-authorization-server", web::get().to(metadata))
        .route("/.well-known/openid-configuration", web::get().to(metadata))
        .route("/oauth/jwks", web::get().to(jwks))
        .route("/oauth/register", web::post().to(register))
        .route("/oauth/token", web::post().to(token))
        .route("/oauth/revoke", web::post().to(revoke))
        .route("/oauth/register", web::method(actix_web::http::Method::OPTIONS).to(preflight))
        .route("/oauth/token", web::method(actix_web::http::Method::OPTIONS).to(preflight))
        .route("/oauth/revoke", web::method(actix_web::http::Method::OPTIONS).to(preflight));
}

/// Browser-based MCP clients call these endpoints from their own origin; none of them uses
/// cookies, so any origin may.
fn cors(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder.insert_header(("access-control-allow-origin", "*"));
    builder
}

async fn preflight() -> HttpResponse {
    cors(HttpResponse::NoContent())
        .insert_header(("access-control-allow-methods", "POST, OPTIONS"))
        .insert_header(("access-control-allow-headers", "authorization, content-type"))
        .insert_header(("access-control-max-age", "600"))
        .finish()
}

async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    cors(HttpResponse::Ok()).insert_header(("cache-control", "public, max-age=300")).json(state.oauth.metadata())
}

async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    match crate::policy::publish::trusted_keys(&state.db).await {
        Ok(keys) => cors(HttpResponse::Ok()).insert_header(("cache-control", "public, max-age=300")).json(keys),
        Err(e) => error(OAuthError::server(e)),
    }
}

/// An OAuth error: `invalid_client` is 401, everything else 400 (server errors 500).
fn error(e: OAuthError) -> HttpResponse {
    let mut builder = match e.error {
        "invalid_client" => HttpResponse::Unauthorized(),
        "server_error" => HttpResponse::InternalServerError(),
        _ => HttpResponse::BadRequest(),
    };
    if e.error == "invalid_client" {
        builder.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"mcpgate\""));
    }
    cors(builder).insert_header(("cache-control", "no-store")).json(e.body())
}

/// `Some(429)` when this address registered too many clients just now.
fn registration_limited(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    let address = crate::api::extract::client_address(req).unwrap_or_default();
    if state.registrations.len() > 10_000 {
        state.registrations.retain_recent();
    }
    let not_until = state.registrations.check_key(&address).err()?;
    let seconds =
        not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default())).as_secs() + 1;
    tracing::info!(address, "client registrations refused: too many from one address");
    Some(
        cors(HttpResponse::TooManyRequests())
            .insert_header((header::RETRY_AFTER, seconds.to_string()))
            .json(OAuthError::new("too_many_requests", format!("too many registrations; retry in {seconds} s")).body()),
    )
}

async fn register(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    if let Some(limited) = registration_limited(&req, &state) {
        return limited;
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return error(OAuthError::new("invalid_client_metadata", "send the registration as application/json"));
    }
    if body.len() > FORM_LIMIT {
        return error(OAuthError::new("invalid_client_metadata", "the registration is too large"));
    }
    let Ok(metadata) = serde_json::from_slice::<Value>(&body) else {
        return error(OAuthError::new("invalid_client_metadata", "the registration is not valid JSON"));
    };
    match clients::register(&state.db, metadata, state.clock.now()).await {
        Ok(registered) => {
            tracing::info!(
                client_id = registered.row.client_id,
                name = registered.row.client_name.as_deref().unwrap_or("-"),
                "client registered"
            );
            cors(HttpResponse::Created())
                .insert_header(("cache-control", "no-store"))
                .json(clients::registration_response(&registered))
        }
        Err(e) => error(e),
    }
}

/// A form body as pairs; a parameter given twice is an error (RFC 6749 §3.2).
fn form(req: &HttpRequest, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(OAuthError::new("invalid_request", "send the request as application/x-www-form-urlencoded"));
    }
    if body.len() > FORM_LIMIT {
        return Err(OAuthError::new("invalid_request", "the request is too large"));
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    for (i, (name, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(OAuthError::new("invalid_request", format!("{name} is given more than once")));
        }
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// The client's id and secret: HTTP Basic (RFC 6749 §2.3.1, form-encoded parts) or the form.
fn client_credentials(req: &HttpRequest, pairs: &[(String, String)]) -> Result<(String, Option<String>), OAuthError> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    if let Some((_, encoded)) = basic {
        let bad = || OAuthError::new("invalid_client", "the Basic credentials are malformed");
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
        let unescape =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        let (id, secret) = (unescape(id).ok_or_else(bad)?, unescape(secret).ok_or_else(bad)?);
        if param(pairs, "client_secret").is_some() {
            return Err(OAuthError::new("invalid_request", "use one client authentication method, not two"));
        }
        return Ok((id, Some(secret)));
    }
    let id = param(pairs, "client_id")
        .ok_or_else(|| OAuthError::new("invalid_client", "client_id is required (or HTTP Basic authentication)"))?;
    Ok((id.to_owned(), param(pairs, "client_secret").map(str::to_owned)))
}

fn tokens(response: &grants::TokenResponse) -> HttpResponse {
    cors(HttpResponse::Ok())
        .insert_header(("cache-control", "no-store"))
        .insert_header(("pragma", "no-cache"))
        .json(response)
}

/// The body, read no further than the form limit: beyond it, the OAuth error a client can read
/// instead of a bare 413.
async fn form_body(mut payload: web::Payload) -> Result<web::Bytes, OAuthError> {
    use futures_util::StreamExt;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| OAuthError::new("invalid_request", "the request body could not be read"))?;
        if body.len() + chunk.len() > FORM_LIMIT {
            return Err(OAuthError::new("invalid_request", "the request is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn token(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let outcome = async {
        let body = form_body(payload).await?;
        let pairs = form(&req, &body)?;
        let (client_id, secret) = client_credentials(&req, &pairs)?;
        let now = state.clock.now();
        let config = &state.oauth;
        match param(&pairs, "grant_type") {
            Some("client_credentials") => {
                let secret = secret.ok_or_else(|| {
                    OAuthError::new("invalid_client", "client_credentials needs the virtual account's token as client_secret")
                })?;
                grants::virtual_account_token(
                    &state.db,
                    &state.sealer,
                    config,
                    &client_id,
                    &secret,
                    param(&pairs, "resource"),
                    now,
                )
                .await
            }
            Some("authorization_code") => {
                let client = grants::authenticate_client(&state.db, config, &client_id, secret.as_deref(), now).await?;
                let code = param(&pairs, "code").ok_or_else(|| OAuthError::new("invalid_request", "code is required"))?;
                grants::exchange_code(
                    &state.db,
                    &state.sealer,
                    config,
                    &client,
                    code,
                    param(&pairs, "redirect_uri"),
                    param(&pairs, "code_verifier"),
                    param(&pairs, "resource"),
                    now,
                )
                .await
            }
            Some("refresh_token") => {
                let client = grants::authenticate_client(&state.db, config, &client_id, secret.as_deref(), now).await?;
                let presented = param(&pairs, "refresh_token")
                    .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is required"))?;
                // Deprovisioning: a person whose identity provider no longer knows them (their
                // session there revoked or gone) loses their gateway sign-ins here.
                if let Some((grant, user)) = grants::owner_of_refresh_token(&state.db, presented).await? {
                    let ended = crate::control::identity::session_ended(&state.db, &state.sealer, &state.oidc, user, now)
                        .await
                        .map_err(OAuthError::server)?;
                    if let Some(provider) = ended {
                        grants::end_for_identity_provider(&state.db, grant, now).await?;
                        state.publisher.poke();
                        tracing::info!(user, provider = %provider, "sign-in ended: the identity provider no longer knows the person");
                        return Err(OAuthError::invalid_grant(format!(
                            "your session at {provider} has ended; sign in again"
                        )));
                    }
                }
                let refreshed =
                    grants::refresh(&state.db, &state.sealer, config, &client, presented, param(&pairs, "resource"), now)
                        .await;
                if refreshed.revoked {
                    state.publisher.poke();
                }
                refreshed.result
            }
            Some(other) => Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use authorization_code, refresh_token or client_credentials"),
            )),
            None => Err(OAuthError::new("invalid_request", "grant_type is required")),
        }
    };
    match outcome.await {
        Ok(response) => tokens(&response),
        Err(e) => {
            tracing::info!(error = e.error, reason = e.description, "token request refused");
            // Any grant revoked for a replayed code reaches the proxies promptly.
            state.publisher.poke();
            error(e)
        }
    }
}

async fn revoke(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let outcome = async {
        let body = form_body(payload).await?;
        let pairs = form(&req, &body)?;
        let (client_id, secret) = client_credentials(&req, &pairs)?;
        let now = state.clock.now();
        let client = grants::authenticate_client(&state.db, &state.oauth, &client_id, secret.as_deref(), now).await?;
        let presented =
            param(&pairs, "token").ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
        grants::revoke(&state.db, &state.oauth, &client, presented, now).await
    };
    match outcome.await {
        Ok(changed) => {
            if changed {
                state.publisher.poke();
            }
            cors(HttpResponse::Ok()).insert_header(("cache-control", "no-store")).finish()
        }
        Err(e) => error(e),
    }
}
