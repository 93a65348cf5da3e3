//! Signing in through an organisation's identity provider, and accepting invitations.
//!
//! `/oauth/sso/start` sends the browser to the provider with state, nonce and PKCE; the flow
//! travels sealed in a cookie of this browser (so the callback is bound to the browser that
//! started it). `/oauth/sso/callback` checks state and `iss` (RFC 9207), lets the provider's
//! ID token be validated, admits the person (just in time, memberships, teams) and opens a
//! session, then continues where the sign-in was asked for — an authorization request goes on
//! exactly as after a password.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;
use serde::Deserialize;

use super::{
    check_form_post, domain_error_page, error_page, failure_page, page, sign_in_from_form, FormSignIn, FormToken,
};
use crate::control::audit::{self, Actor, Event};
use crate::control::identity::{self, Flow, FlowNext, Refusal};
use crate::control::{invitations, tenants};
use crate::state::AppState;

const FLOW_COOKIE: &str = "mcpgate_sso";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth/sso/start", web::get().to(start))
        .route("/oauth/sso/callback", web::get().to(callback))
        .route("/invitations/accept", web::get().to(invitation_page))
        .route("/invitations/accept", web::post().to(accept_form));
}

#[derive(Deserialize)]
struct StartQuery {
    tenant: Option<String>,
    idp: String,
    return_to: Option<String>,
    invitation: Option<String>,
    login_hint: Option<String>,
}

fn flow_cookie(state: &AppState, value: String, max_age: time::Duration) -> Cookie<'static> {
    // Lax: the provider's redirect back is a top-level navigation from another site.
    Cookie::build(FLOW_COOKIE, value)
        .path("/oauth/sso")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.secure_cookies())
        .max_age(max_age)
        .finish()
}

async fn start(state: web::Data<AppState>, query: web::Query<StartQuery>) -> HttpResponse {
    let query = query.into_inner();
    let return_to = match crate::web::check_return_to(&state.oauth.issuer, query.return_to.as_deref().unwrap_or("/")) {
        Ok(local) => local,
        Err(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The page to return to is not on this gateway.",
            )
        }
    };
    let tenant = match &query.tenant {
        Some(slug) => match tenants::find_by_slug(&state.db, slug).await {
            Ok(Some(t)) => Some(t),
            Ok(None) => return unknown_provider(),
            Err(e) => return domain_error_page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed", &e),
        },
        None => None,
    };
    let row = match identity::get(&state.db, tenant.as_ref(), &query.idp).await {
        Ok(row) if row.login => row,
        Ok(_) | Err(crate::control::error::Error::NotFound) => return unknown_provider(),
        Err(e) => return domain_error_page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed", &e),
    };
    let next = FlowNext { return_to, invitation: query.invitation, login_hint: query.login_hint };
    let now = state.clock.now();
    let redirect_uri = crate::api::identity::sso_callback_url(&state);
    let (url, flow) = match state.oidc.start(&state.sealer, &row, &redirect_uri, next, now).await {
        Ok(started) => started,
        Err(e) => return domain_error_page(StatusCode::BAD_GATEWAY, "The identity provider is not reachable", &e),
    };
    match flow.seal(&state.sealer) {
        Ok(sealed) => HttpResponse::SeeOther()
            .cookie(flow_cookie(&state, sealed, time::Duration::minutes(10)))
            .insert_header(("location", url))
            .insert_header(("cache-control", "no-store"))
            .finish(),
        Err(e) => domain_error_page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed", &e),
    }
}

fn unknown_provider() -> HttpResponse {
    error_page(
        StatusCode::NOT_FOUND,
        "Sign-in failed",
        "There is no such sign-in provider. Start again from the sign-in page.",
    )
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(req: HttpRequest, state: web::Data<AppState>, query: web::Query<CallbackQuery>) -> HttpResponse {
    let query = query.into_inner();
    let now = state.clock.now();
    let ended = {
        let mut c = flow_cookie(&state, String::new(), time::Duration::ZERO);
        c.make_removal();
        c
    };
    let finish = |response: HttpResponse| {
        let mut response = response;
        let _ = response.add_removal_cookie(&ended);
        response
    };
    // Only the browser that started the sign-in holds its flow.
    let Some(flow) = req.cookie(FLOW_COOKIE).and_then(|c| Flow::open(&state.sealer, c.value(), now)) else {
        return finish(error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in was not started in this browser, or took too long. Start again.",
        ));
    };
    {
        use subtle::ConstantTimeEq;
        let presented = query.state.clone().unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(flow.state.as_bytes())) {
            return finish(error_page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The sign-in answer does not belong to this sign-in. Start again.",
            ));
        }
    }
    let row = match crate::store::entities::identity_providers::Entity::find_by_id(flow.idp).one(&state.db).await {
        Ok(Some(row)) if row.login => row,
        Ok(_) => return finish(unknown_provider()),
        Err(e) => return finish(failure_page("Sign-in failed", &e)),
    };
    // RFC 9207: an answer naming another issuer is a mix-up, whatever else it says.
    if let Some(iss) = &query.iss {
        if iss.trim_end_matches('/') != row.issuer.trim_end_matches('/') {
            return finish(error_page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The answer came from another issuer than the one asked.",
            ));
        }
    }
    if let Some(error) = &query.error {
        let why = query.error_description.clone().unwrap_or_else(|| error.clone());
        return finish(error_page(
            StatusCode::UNAUTHORIZED,
            "Sign-in did not complete",
            &format!("{}: {why}", row.display_name),
        ));
    }
    let Some(code) = query.code else {
        return finish(error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The provider sent no authorization code.",
        ));
    };
    let redirect_uri = crate::api::identity::sso_callback_url(&state);
    let (claims, provider_session) = match state.oidc.finish(&state.sealer, &row, &redirect_uri, &flow, code).await {
        Ok(found) => found,
        Err(e) => return finish(domain_error_page(StatusCode::BAD_GATEWAY, "Sign-in failed", &e)),
    };
    let admitted = match identity::admit(&state.db, &row, &claims, flow.next.invitation.as_deref(), now).await {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(refusal)) => return finish(refused(&state, &row, &claims, &refusal).await),
        Err(e) => return finish(domain_error_page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed", &e)),
    };
    // With `offline_access`, the provider's session is asked again at every refresh of the
    // person's gateway sign-ins.
    if let Some(refresh) = provider_session {
        if let Err(e) =
            identity::remember_session(&state.db, &state.sealer, admitted.user.id, row.id, &refresh, now).await
        {
            tracing::warn!(error = %e, "keeping the provider session failed");
        }
    }
    let (secret, ttl) = match crate::web::open_session(&state, &admitted.user).await {
        Ok(opened) => opened,
        Err(e) => return finish(failure_page("Sign-in failed", &e)),
    };
    tracing::info!(user_id = admitted.user.id, idp = %row.slug, created = admitted.created, "signed in through an identity provider");
    let session = crate::web::session_cookie(&state, secret, time::Duration::seconds(ttl.num_seconds()));
    finish(HttpResponse::SeeOther().cookie(session).insert_header(("location", flow.next.return_to)).finish())
}

/// A refusal: recorded with its own code, and said in words.
async fn refused(
    state: &AppState,
    row: &crate::store::entities::identity_providers::Model,
    claims: &serde_json::Map<String, serde_json::Value>,
    refusal: &Refusal,
) -> HttpResponse {
    let who = claims.get(&row.user_claim).and_then(|v| v.as_str()).unwrap_or("unknown");
    let actor = Actor { subject: format!("user:{who}"), request_id: None };
    let tenant = match row.tenant_id {
        Some(id) => crate::store::entities::tenants::Entity::find_by_id(id).one(&state.db).await.ok().flatten(),
        None => None,
    };
    let event = Event::new("user.sign_in", format!("user:{who}"))
        .in_tenant(tenant.as_ref())
        .outcome(refusal.code())
        .details(serde_json::json!({"identity_provider": row.slug, "reason": refusal.code()}));
    if let Err(e) = audit::record(&state.db, &actor, event, state.clock.now()).await {
        tracing::warn!(error = %e, "recording a refused sign-in failed");
    }
    tracing::info!(idp = %row.slug, reason = refusal.code(), "sign-in through an identity provider refused");
    page(
        StatusCode::FORBIDDEN,
        "Sign-in refused",
        html! {
            h1 { "Sign-in refused" }
            p.error { (refusal.to_string()) }
            p.muted { "Reason code: " code { (refusal.code()) } }
        },
    )
}

use sea_orm::EntityTrait;

#[derive(Deserialize)]
struct InvitationQuery {
    token: String,
}

/// The page an invitation link opens: who is invited where, and the ways to accept.
async fn invitation_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<InvitationQuery>,
) -> HttpResponse {
    invitation_view(&req, &state, &query.token, None).await
}

async fn invitation_view(req: &HttpRequest, state: &AppState, secret: &str, problem: Option<&str>) -> HttpResponse {
    let now = state.clock.now();
    let invitation = match invitations::find_open(&state.db, secret, now).await {
        Ok(Some(inv)) => inv,
        Ok(None) => {
            return error_page(
                StatusCode::NOT_FOUND,
                "Invitation not valid",
                "This invitation was used, revoked or has expired. Ask for a new one.",
            )
        }
        Err(e) => return domain_error_page(StatusCode::INTERNAL_SERVER_ERROR, "Invitation", &e),
    };
    let tenant = match crate::store::entities::tenants::Entity::find_by_id(invitation.tenant_id).one(&state.db).await {
        Ok(Some(t)) => t,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "Invitation not valid", "The tenant no longer exists."),
        Err(e) => return failure_page("Invitation", &e),
    };
    let providers = identity::login_providers(&state.db, Some(&tenant)).await.unwrap_or_default();
    let token = FormToken::of(req);
    let here = format!("/invitations/accept?token={}", super::url_encode(secret));
    let html = page(
        if problem.is_none() { StatusCode::OK } else { StatusCode::UNAUTHORIZED },
        "Invitation",
        html! {
            h1 { "Join " (tenant.display_name) }
            p.muted { "This invitation is for " code { (invitation.email) } " as " (invitation.role) "." }
            @if let Some(problem) = problem { p.error { (problem) } }
            @for p in &providers {
                @let tenant_slug = p.tenant_id.map(|_| tenant.slug.as_str());
                @let url = crate::web::sso_start_url(tenant_slug, &p.slug, "/", &[("invitation", secret), ("login_hint", invitation.email.as_str())]);
                a.sso href=(url) { "Continue with " (p.display_name) }
            }
            @if !providers.is_empty() { p.or { "or with your email and password" } }
            form method="post" action="/invitations/accept" {
                (token.field())
                input type="hidden" name="token" value=(secret);
                input type="hidden" name="return_to" value=(here);
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" value=(invitation.email) required;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                div.buttons { button.primary type="submit" { "Sign in and accept" } }
            }
        },
    );
    token.attach(state, html)
}

#[derive(Deserialize)]
struct AcceptForm {
    token: String,
    email: String,
    password: secrecy::SecretString,
    #[serde(default)]
    form_token: String,
}

async fn accept_form(req: HttpRequest, state: web::Data<AppState>, form: web::Form<AcceptForm>) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = check_form_post(&req, &state, Some(&form.form_token)) {
        return refused;
    }
    let cookie = match sign_in_from_form(&req, &state, &form.email, form.password).await {
        FormSignIn::Done(cookie) => cookie,
        FormSignIn::Retry(problem) => return invitation_view(&req, &state, &form.token, Some(&problem)).await,
        FormSignIn::Failed(page) => return page,
    };
    let Ok(email) = crate::domain::Email::parse("email", &form.email) else {
        return invitation_view(&req, &state, &form.token, Some("The email is not valid.")).await;
    };
    let user = match crate::control::users::find_by_email(&state.db, &email).await {
        Ok(Some(user)) => user,
        _ => return invitation_view(&req, &state, &form.token, Some("The email or password is not correct.")).await,
    };
    match invitations::accept(&state.db, &user, &form.token, state.clock.now()).await {
        Ok(tenant) => {
            let mut done = page(
                StatusCode::OK,
                "Invitation accepted",
                html! {
                    h1 { "Welcome to " (tenant.display_name) }
                    p { "You are now a member of " code { (tenant.slug) } ". Its MCP servers' How To Use pages say how to connect your tools." }
                },
            );
            let _ = done.add_cookie(&cookie);
            done
        }
        Err(crate::control::error::Error::NotFound) => {
            invitation_view(&req, &state, &form.token, Some("This invitation is for another email address.")).await
        }
        Err(e) => domain_error_page(StatusCode::INTERNAL_SERVER_ERROR, "Invitation", &e),
    }
}
