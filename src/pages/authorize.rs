//! `/oauth/authorize`: the browser side of "Sign in with mcpgate". The user signs in, approves
//! the client for one MCP URL (remembered), goes through any per-user step the servers behind
//! that URL need (their key, a provider's consent), and is sent back to the client with a code.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::oauth_server::clients::{self, Client};
use crate::auth::oauth_server::grants::{self, Pending};
use crate::auth::oauth_server::redirect;
use crate::auth::session::{csrf_matches, csrf_token};
use crate::control::error::Error;
use crate::control::{servers, tenants};
use crate::pages::connect::browser_user;
use crate::pages::{
    check_form_post, error_page, failure_page, page, sign_in_from_form, tenant_page, url_encode, FormSignIn, FormToken,
};
use crate::proxy::index::Subject;
use crate::state::AppState;
use crate::store::entities::{servers as server_rows, tenants as tenant_rows, users, virtual_members};
use crate::web::ended_session_cookie;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth/authorize", web::get().to(authorize))
        .route("/oauth/authorize/sign-in", web::post().to(sign_in_form))
        .route("/oauth/authorize/decision", web::post().to(decision))
        .route("/oauth/authorize/continue", web::get().to(resume))
        .route("/oauth/authorize/switch-account", web::post().to(switch_account));
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
}

fn redirect_to(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header(("location", location)).insert_header(("cache-control", "no-store")).finish()
}

/// The client and redirect URI, or a page: errors about them must not redirect (RFC 6749
/// §4.1.2.1), since the redirect URI itself is not trusted yet.
async fn client_and_redirect(
    req: &HttpRequest,
    state: &AppState,
    query: &AuthorizeQuery,
) -> Result<(Client, String), HttpResponse> {
    let bad = |message: String| error_page(StatusCode::BAD_REQUEST, "This sign-in link is not valid", &message);
    let Some(client_id) = query.client_id.as_deref().filter(|c| !c.is_empty()) else {
        return Err(bad("The application did not say who it is (client_id is missing).".into()));
    };
    // Fetching a Client ID Metadata Document is work done on an anonymous request's say-so:
    // the same per-address budget as registrations.
    let address = crate::web::client_address(req).unwrap_or_default();
    let may_fetch = || state.registrations.check_key(&format!("cimd:{address}")).is_ok();
    let client = clients::find_throttled(
        &state.db,
        client_id,
        state.oauth.allow_private_documents,
        state.clock.now(),
        may_fetch,
    )
    .await
    .map_err(|e| bad(format!("The application is not known to this gateway: {}", e.description)))?;
    let redirect_uri = match query.redirect_uri.as_deref() {
        Some(uri) if redirect::matches(&client.redirect_uris, uri) => uri.to_owned(),
        Some(uri) => {
            return Err(bad(format!("{uri} is not a redirect URI {} registered.", client.display_name())));
        }
        // RFC 6749 §3.1.2.3: may be left out when exactly one (fixed) URI is registered.
        None => match client.redirect_uris.as_slice() {
            [only] if redirect::classify(only) != Ok(redirect::RedirectKind::Loopback) => only.clone(),
            _ => return Err(bad("The application did not say where to return (redirect_uri is missing).".into())),
        },
    };
    Ok((client, redirect_uri))
}

/// An error sent back to the client (RFC 6749 §4.1.2.1).
fn refuse(state: &AppState, redirect_uri: &str, query_state: Option<&str>, error: &str, why: &str) -> HttpResponse {
    let params = [("error", error), ("error_description", why)];
    redirect_to(&grants::respond(redirect_uri, query_state, &state.oauth.issuer, &params))
}

/// Where the browser goes when a person gives up on a sign-in they may not complete: the same
/// answer as a Deny, naming nobody.
fn denied_url(state: &AppState, redirect_uri: &str, query_state: Option<&str>) -> String {
    let params = [("error", "access_denied"), ("error_description", "access was denied")];
    grants::respond(redirect_uri, query_state, &state.oauth.issuer, &params)
}

/// The sign-in page of an authorization request (`return_to` is the request itself), naming
/// the client and the MCP URL it asks for.
async fn sign_in_page(req: &HttpRequest, state: &AppState, return_to: &str, problem: Option<&str>) -> HttpResponse {
    let token = FormToken::of(req);
    let query: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(return_to.split_once('?').map(|(_, q)| q).unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let client = match query.get("client_id") {
        Some(id) => clients::find(&state.db, id, state.oauth.allow_private_documents, state.clock.now())
            .await
            .map(|c| c.display_name())
            .unwrap_or_else(|_| "An application".into()),
        None => "An application".into(),
    };
    let resource = query.get("resource");
    // "Continue with <provider>" for the tenant whose MCP URL is being connected, and the
    // platform's providers.
    let tenant_slug = resource.and_then(|r| state.oauth.parse_resource(r)).map(|(tenant, _)| tenant);
    let tenant = match &tenant_slug {
        Some(slug) => crate::control::tenants::find_by_slug(&state.db, slug).await.ok().flatten(),
        None => None,
    };
    let providers = crate::control::identity::login_providers(&state.db, tenant.as_ref()).await.unwrap_or_default();
    let html = tenant_page(
        if problem.is_none() { StatusCode::OK } else { StatusCode::UNAUTHORIZED },
        "Sign in",
        tenant.as_ref(),
        html! {
            h1 { "Sign in to mcpgate" }
            p.muted {
                (client) " wants to connect to the MCP server"
                @if let Some(resource) = resource { " " code { (resource) } }
                " for you."
            }
            @if let Some(problem) = problem { p.error { (problem) } }
            @for p in &providers {
                @let slug = p.tenant_id.and(tenant.as_ref()).map(|t| t.slug.as_str());
                a.sso href=(crate::web::sso_start_url(slug, &p.slug, return_to, &[])) { "Continue with " (p.display_name) }
            }
            @if !providers.is_empty() { p.or { "or with your email and password" } }
            form method="post" action="/oauth/authorize/sign-in" {
                (token.field())
                input type="hidden" name="return_to" value=(return_to);
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                div.buttons { button.primary type="submit" { "Sign in" } }
            }
        },
    );
    token.attach(state, html)
}

fn consent_page(
    tenant: Option<&tenant_rows::Model>,
    client: &Client,
    pending: &Pending,
    sealed: &str,
    csrf: &str,
    user: &users::Model,
    here: &str,
) -> HttpResponse {
    let publisher = url::Url::parse(&client.row.client_id).ok().and_then(|u| u.host_str().map(str::to_owned));
    let who = html! {
        strong { (client.display_name()) } " "
        @if client.row.kind == clients::KIND_DOCUMENT {
            span.muted { "(published by " (publisher.unwrap_or_default()) ")" }
        } @else {
            span.muted { "(the name is the application's own claim)" }
        }
    };
    tenant_page(
        StatusCode::OK,
        "Allow access?",
        tenant,
        html! {
            h1 { "Allow access?" }
            p { (who) " wants to use the MCP server" }
            p { code { (pending.resource) } }
            p {
                "as you, " strong { (user.email) } ", with your permissions on it. After you approve, you return to "
                strong { (redirect::display_target(&pending.redirect_uri)) } "."
            }
            p.muted {
                "Only approve if you started this sign-in from your MCP client. You can revoke access any time under your authorizations."
            }
            form method="post" action="/oauth/authorize/decision" {
                input type="hidden" name="csrf_token" value=(csrf);
                input type="hidden" name="request" value=(sealed);
                div.buttons {
                    button.primary type="submit" name="decision" value="approve" { "Approve" }
                    button.secondary type="submit" name="decision" value="deny" { "Deny" }
                }
            }
            (switch_account_form(&user.email, csrf, here))
        },
    )
}

/// "Not you? Use another account": signs the browser out and starts the request again.
fn switch_account_form(email: &str, csrf: &str, here: &str) -> Markup {
    html! {
        form method="post" action="/oauth/authorize/switch-account" {
            input type="hidden" name="csrf_token" value=(csrf);
            input type="hidden" name="return_to" value=(here);
            p.muted { "Not " (email) "? " button.link type="submit" { "Use another account" } }
        }
    }
}

/// Whether the user may use the server behind an MCP URL: the proxy's own decision, from the
/// snapshot it enforces, so the consent page never approves what the proxy then refuses.
async fn may_use(state: &AppState, user: &users::Model, tenant: &str, server: &str) -> anyhow::Result<bool> {
    let policy = state.current_policy().await?;
    Ok(policy.may_use(Subject::User(user.id), tenant, server, state.clock.now()))
}

/// The page a signed-in person sees when they may not use the server. The client learns only
/// that access was denied, and only when the person goes back to it: which account is signed
/// in here and what it may use is not the client's business.
fn cannot_use_page(
    user: &users::Model,
    tenant: &str,
    server: &str,
    back: &str,
    here: &str,
    csrf: &str,
) -> HttpResponse {
    page(
        StatusCode::FORBIDDEN,
        "No access",
        html! {
            h1 { "You cannot use " (tenant) "/" (server) }
            p {
                "You are signed in as " strong { (user.email) } ", who is not a user of this MCP server. "
                "Ask a manager of the server for access, then connect again."
            }
            p { a href=(back) { "Go back to the application" } }
            (switch_account_form(&user.email, csrf, here))
        },
    )
}

async fn authorize(req: HttpRequest, query: web::Query<AuthorizeQuery>, state: web::Data<AppState>) -> HttpResponse {
    let query = query.into_inner();
    let (client, redirect_uri) = match client_and_redirect(&req, &state, &query).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let st = query.state.as_deref();
    if query.response_type.as_deref() != Some("code") {
        return refuse(&state, &redirect_uri, st, "unsupported_response_type", "only response_type=code is supported");
    }
    let Some(challenge) = query.code_challenge.as_deref() else {
        return refuse(&state, &redirect_uri, st, "invalid_request", "PKCE is required: send code_challenge (S256)");
    };
    if query.code_challenge_method.as_deref() != Some("S256") || !grants::valid_challenge(challenge) {
        return refuse(&state, &redirect_uri, st, "invalid_request", "code_challenge_method must be S256");
    }
    let Some(resource) = query.resource.as_deref() else {
        return refuse(&state, &redirect_uri, st, "invalid_target", "resource (the MCP URL) is required");
    };
    let Some((tenant, server)) = state.oauth.parse_resource(resource) else {
        return refuse(&state, &redirect_uri, st, "invalid_target", "resource is not an MCP URL of this gateway");
    };
    let Some((user, secret)) = browser_user(&req, &state).await else {
        let here = format!("/oauth/authorize?{}", req.query_string());
        return sign_in_page(&req, &state, &here, None).await;
    };
    match may_use(&state, &user, &tenant, &server).await {
        Ok(true) => {}
        Ok(false) => {
            let back = denied_url(&state, &redirect_uri, st);
            let here = format!("/oauth/authorize?{}", req.query_string());
            return cannot_use_page(&user, &tenant, &server, &back, &here, &csrf_token(&secret));
        }
        Err(e) => return failure_page("Sign-in failed", &e),
    }
    let now = state.clock.now();
    let pending = Pending::new(
        &client,
        &redirect_uri,
        query.state.clone(),
        challenge,
        state.oauth.canonical_resource(&tenant, &server),
        grants::granted_scope(query.scope.as_deref()),
        user.id,
        now,
    );
    match grants::has_consent(&state.db, user.id, client.row.id, &pending.resource).await {
        Ok(true) => proceed(&state, pending).await,
        Ok(false) => match pending.seal(&state.sealer) {
            Ok(sealed) => {
                let here = format!("/oauth/authorize?{}", req.query_string());
                let tenant_row = tenants::find_by_slug(&state.db, &tenant).await.ok().flatten();
                consent_page(tenant_row.as_ref(), &client, &pending, &sealed, &csrf_token(&secret), &user, &here)
            }
            Err(e) => failure_page("Sign-in failed", &e),
        },
        Err(e) => failure_page("Sign-in failed", &e.description),
    }
}

/// These forms only ever lead back into an authorization request: anything else would make
/// them an open redirect.
fn outside_authorization(return_to: &str, title: &str) -> Option<HttpResponse> {
    (!return_to.starts_with("/oauth/authorize?"))
        .then(|| error_page(StatusCode::BAD_REQUEST, title, "Start again from your MCP client."))
}

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: SecretString,
    return_to: String,
    #[serde(default)]
    form_token: String,
}

async fn sign_in_form(req: HttpRequest, state: web::Data<AppState>, form: web::Form<SignInForm>) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = outside_authorization(&form.return_to, "Sign-in failed") {
        return refused;
    }
    if let Some(refused) = check_form_post(&req, &state, Some(&form.form_token)) {
        return refused;
    }
    match sign_in_from_form(&req, &state, &form.email, form.password).await {
        FormSignIn::Done(cookie) => {
            HttpResponse::SeeOther().cookie(cookie).insert_header(("location", form.return_to)).finish()
        }
        FormSignIn::Retry(problem) => sign_in_page(&req, &state, &form.return_to, Some(&problem)).await,
        FormSignIn::Failed(page) => page,
    }
}

#[derive(Deserialize)]
struct SwitchForm {
    csrf_token: String,
    return_to: String,
}

/// "Not you?": ends this browser's session and starts the same authorization again.
async fn switch_account(req: HttpRequest, state: web::Data<AppState>, form: web::Form<SwitchForm>) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = outside_authorization(&form.return_to, "Not accepted") {
        return refused;
    }
    if let Some(refused) = check_form_post(&req, &state, None) {
        return refused;
    }
    let Some(secret) = req.cookie(crate::auth::session::SESSION_COOKIE).map(|c| c.value().to_owned()) else {
        return redirect_to(&form.return_to);
    };
    if !csrf_matches(&secret, &form.csrf_token) {
        return error_page(StatusCode::FORBIDDEN, "Not accepted", "This page is stale or was not sent from here.");
    }
    if let Ok(Some((session, _))) = crate::control::sessions::lookup(&state.db, &secret, state.clock.now()).await {
        if let Err(e) = crate::control::sessions::delete(&state.db, session.id).await {
            return failure_page("Sign-out failed", &e);
        }
    }
    HttpResponse::SeeOther()
        .cookie(ended_session_cookie(&state))
        .insert_header(("location", form.return_to))
        .insert_header(("cache-control", "no-store"))
        .finish()
}

#[derive(Deserialize)]
struct DecisionForm {
    csrf_token: String,
    request: String,
    decision: String,
}

async fn decision(req: HttpRequest, state: web::Data<AppState>, form: web::Form<DecisionForm>) -> HttpResponse {
    let form = form.into_inner();
    if let Some(refused) = check_form_post(&req, &state, None) {
        return refused;
    }
    let Some((user, secret)) = browser_user(&req, &state).await else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session ended; start again from your MCP client.",
        );
    };
    if !csrf_matches(&secret, &form.csrf_token) {
        return error_page(StatusCode::FORBIDDEN, "Not accepted", "This page is stale or was not sent from here.");
    }
    let now = state.clock.now();
    let Some(pending) = Pending::open(&state.sealer, &form.request, user.id, now) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Not accepted",
            "This sign-in took too long; start again from your MCP client.",
        );
    };
    let approve = match form.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return error_page(StatusCode::BAD_REQUEST, "Not accepted", "Choose Approve or Deny."),
    };
    record_decision(&state, &user, &pending, approve).await;
    if !approve {
        tracing::info!(user = user.email, client = pending.client_id, "client denied");
        return redirect_to(&pending.respond(
            &state.oauth.issuer,
            &[("error", "access_denied"), ("error_description", "the user denied access")],
        ));
    }
    if let Err(e) = grants::remember_consent(&state.db, &pending, now).await {
        return failure_page("Sign-in failed", &e.description);
    }
    tracing::info!(user = user.email, client = pending.client_id, resource = pending.resource, "client approved");
    proceed(&state, pending).await
}

/// Consent decisions go to the tenant's audit trail: who let which client act for them where.
async fn record_decision(state: &AppState, user: &users::Model, pending: &Pending, approve: bool) {
    let tenant = match state.oauth.parse_resource(&pending.resource) {
        Some((slug, _)) => tenants::find_by_slug(&state.db, &slug).await.ok().flatten(),
        None => None,
    };
    let actor = crate::control::audit::Actor { subject: format!("user:{}", user.email), request_id: None };
    let action = if approve { "oauth_consent.approve" } else { "oauth_consent.deny" };
    let details = serde_json::json!({"resource": pending.resource, "redirect_uri": pending.redirect_uri});
    let target = format!("client:{}", pending.client_id);
    let recorded = crate::control::audit::record(
        &state.db,
        &actor,
        crate::control::audit::Event::new(action, target).in_tenant(tenant.as_ref()).details(details),
        state.clock.now(),
    )
    .await;
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "recording a consent decision failed");
    }
}

#[derive(Deserialize)]
struct ResumeQuery {
    request: String,
}

/// Back from a chained step.
async fn resume(req: HttpRequest, query: web::Query<ResumeQuery>, state: web::Data<AppState>) -> HttpResponse {
    let Some((user, _)) = browser_user(&req, &state).await else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session ended; start again from your MCP client.",
        );
    };
    match Pending::open(&state.sealer, &query.request, user.id, state.clock.now()) {
        Some(pending) => proceed(&state, pending).await,
        None => error_page(
            StatusCode::BAD_REQUEST,
            "Not accepted",
            "This sign-in took too long; start again from your MCP client.",
        ),
    }
}

/// The servers behind an MCP URL whose credentials are the user's own: the server itself, or
/// a virtual server's members in order (members called with the virtual server's shared
/// credentials need nothing from the user).
async fn servers_behind(
    state: &AppState,
    resource: &str,
    user: i64,
) -> Result<Vec<(String, server_rows::Model)>, Error> {
    let policy = state.current_policy().await.map_err(Error::Internal)?;
    let now = state.clock.now();
    let Some((tenant, server)) = state.oauth.parse_resource(resource) else { return Ok(vec![]) };
    let Some(tenant_row) = tenants::find_by_slug(&state.db, &tenant).await? else { return Ok(vec![]) };
    let server = servers::get(&state.db, &tenant_row, &server).await?;
    let members = virtual_members::Entity::find()
        .filter(virtual_members::Column::VirtualServerId.eq(server.id))
        .order_by_asc(virtual_members::Column::Position)
        .all(&state.db)
        .await?;
    if members.is_empty() {
        return Ok(vec![(tenant, server)]);
    }
    let mut out = Vec::new();
    for member in members.into_iter().filter(|m| m.auth_data.is_none()) {
        if let Some(row) = server_rows::Entity::find_by_id(member.member_server_id).one(&state.db).await? {
            // A member the user may not use is not theirs to set up: the proxy leaves it out.
            if policy.may_use(Subject::User(user), &tenant, &row.slug, now) {
                out.push((tenant.clone(), row));
            }
        }
    }
    Ok(out)
}

/// The next chained step, or the code. A provider that cannot be reached is skipped: the
/// sign-in still completes, and that server's tools say where to finish later.
async fn proceed(state: &AppState, mut pending: Pending) -> HttpResponse {
    let fail = |e: &dyn std::fmt::Display| failure_page("Sign-in failed", e);
    let servers = match servers_behind(state, &pending.resource, pending.user).await {
        Ok(servers) => servers,
        Err(e) => return fail(&e),
    };
    let mut todo = Vec::new();
    for (tenant, server) in servers.into_iter().filter(|(_, s)| !pending.skipped.contains(&s.id)) {
        match state.vault.needs_action(&server, pending.user).await {
            Ok(true) => todo.push((tenant, server)),
            Ok(false) => {}
            Err(e) => tracing::warn!(server = server.slug, error = %e, "checking a per-user step failed; skipped"),
        }
    }
    // "Step k of n", counting the steps already offered in this sign-in.
    let steps = pending.skipped.len() + todo.len();
    for (tenant, server) in todo {
        // Whatever happens in the step, it is not offered twice in this sign-in.
        pending.skipped.push(server.id);
        let step = pending.skipped.len();
        let sealed = match pending.seal(&state.sealer) {
            Ok(sealed) => sealed,
            Err(e) => return fail(&e),
        };
        let back = format!("/oauth/authorize/continue?request={}", url_encode(&sealed));
        let per_user_oauth = matches!(
            server.auth_data.as_ref().and_then(crate::control::outbound::AuthData::from_stored),
            Some(crate::control::outbound::AuthData::OAuth2(_))
        );
        if per_user_oauth {
            match state.vault.start(&server, pending.user, Some(back)).await {
                Ok(url) => return redirect_to(&url),
                Err(e) => {
                    tracing::warn!(server = server.slug, error = %e, "a provider step could not start; skipped");
                    continue;
                }
            }
        }
        return redirect_to(&format!(
            "/connect/{tenant}/{}?return_to={}&step={step}&steps={steps}",
            server.slug,
            url_encode(&back)
        ));
    }
    match grants::issue_code(&state.db, &pending, state.clock.now()).await {
        Ok(code) => redirect_to(&pending.respond(&state.oauth.issuer, &[("code", &code)])),
        Err(e) => fail(&e),
    }
}
