//! `/connect/{tenant}/{server}`: the URL a credential-required MCP error points at. The user
//! signs in if needed, then either goes to the provider to authorize the gateway (per-user
//! OAuth) or enters their own key (per-user headers, saved as their Auth Override).
//! `/oauth/upstream/callback` is where providers send the browser back.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;
use sea_orm::EntityTrait;
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::session::{csrf_matches, csrf_token, SESSION_COOKIE};
use crate::control::error::Error;
use crate::control::outbound::{AuthData, GrantType};
use crate::control::servers::{self, SubjectKind};
use crate::control::{overrides, sessions, tenants};
use crate::pages::{
    check_form_post, domain_error_page, error_page, page, sign_in_from_form, tenant_page, url_encode, FormSignIn,
    FormToken,
};
use crate::proxy::index::Subject;
use crate::state::AppState;
use crate::store::entities::{servers as server_rows, tenants as tenant_rows, users};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/connect/{tenant}/{server}", web::get().to(show))
        .route("/connect/{tenant}/{server}", web::post().to(save_key))
        .route("/connect/{tenant}/{server}/sign-in", web::post().to(sign_in_form))
        .route("/oauth/upstream/callback", web::get().to(callback))
        .route("/oauth/upstream/client-metadata.json", web::get().to(client_metadata));
}

/// The signed-in user of this browser, and the session secret.
pub(crate) async fn browser_user(req: &HttpRequest, state: &AppState) -> Option<(users::Model, String)> {
    let secret = req.cookie(SESSION_COOKIE)?.value().to_owned();
    let (_, user) = sessions::lookup(&state.db, &secret, state.clock.now()).await.ok()??;
    Some((user, secret))
}

/// The server in the path, if this user may use it — the proxy's decision, from the snapshot
/// it enforces. (Through a virtual server a user reaches only members they may use directly,
/// so that is the only question.)
async fn visible_server(
    state: &AppState,
    user: &users::Model,
    tenant: &str,
    server: &str,
) -> Result<(tenant_rows::Model, server_rows::Model), HttpResponse> {
    let not_found =
        || error_page(StatusCode::NOT_FOUND, "Not found", "There is no such MCP server, or you cannot use it.");
    let found = async {
        let policy = state.current_policy().await.map_err(Error::Internal)?;
        if !policy.may_use(Subject::User(user.id), tenant, server, state.clock.now()) {
            return Err(Error::NotFound);
        }
        let tenant = tenants::find_by_slug(&state.db, tenant).await?.ok_or(Error::NotFound)?;
        let server = servers::get(&state.db, &tenant, server).await?;
        Ok((tenant, server))
    };
    found.await.map_err(|_: Error| not_found())
}

async fn sign_in_page(
    req: &HttpRequest,
    state: &AppState,
    tenant: &str,
    server: &str,
    problem: Option<&str>,
    return_to: Option<&str>,
) -> HttpResponse {
    let token = FormToken::of(req);
    let action = format!("/connect/{tenant}/{server}/sign-in");
    // The tenant's identity providers (and the platform's), coming back to this page.
    let tenant_row = tenants::find_by_slug(&state.db, tenant).await.ok().flatten();
    let providers = crate::control::identity::login_providers(&state.db, tenant_row.as_ref()).await.unwrap_or_default();
    let here = match return_to {
        Some(back) => format!("/connect/{tenant}/{server}?return_to={}", super::url_encode(back)),
        None => format!("/connect/{tenant}/{server}"),
    };
    let html = tenant_page(
        if problem.is_none() { StatusCode::OK } else { StatusCode::UNAUTHORIZED },
        "Sign in",
        tenant_row.as_ref(),
        html! {
            h1 { "Sign in to connect " (tenant) "/" (server) }
            @if let Some(problem) = problem { p.error { (problem) } }
            @for p in &providers {
                @let slug = p.tenant_id.map(|_| tenant);
                a.sso href=(crate::web::sso_start_url(slug, &p.slug, &here, &[])) { "Continue with " (p.display_name) }
            }
            @if !providers.is_empty() { p.or { "or with your email and password" } }
            form method="post" action=(action) {
                (token.field())
                // Within a sign-in's chained steps the way back to the client survives signing in again.
                @if let Some(back) = return_to { input type="hidden" name="return_to" value=(back); }
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" required;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                div.buttons { button.primary type="submit" { "Sign in" } }
            }
        },
    );
    token.attach(state, html)
}

/// Where a page goes once its step is done: set when it is one step of a sign-in.
#[derive(Deserialize, Default)]
pub struct Next {
    return_to: Option<String>,
    /// This is step `step` of `steps` of a sign-in.
    step: Option<u32>,
    steps: Option<u32>,
}

impl Next {
    fn progress(&self) -> Option<(u32, u32)> {
        self.step.zip(self.steps).filter(|(k, n)| (1..=*n).contains(k))
    }

    /// The target, if it stays on this gateway.
    fn target(&self, state: &AppState) -> Option<String> {
        let target = self.return_to.as_deref()?;
        crate::pages::check_return_to(&state.settings.public_base_url(), target).ok()
    }
}

#[allow(clippy::too_many_arguments)] // one page, many facts to show
fn key_form(
    account: &str,
    tenant_row: &tenant_rows::Model,
    server: &server_rows::Model,
    csrf: &str,
    placeholders: &[String],
    problem: Option<&str>,
    return_to: Option<&str>,
    progress: Option<(u32, u32)>,
) -> HttpResponse {
    // As a step of a sign-in it says so, and where the person goes next.
    let step = return_to.map(|back| {
        let (what, then) = match progress {
            Some((k, n)) if k < n => (format!("Step {k} of {n} of your sign-in"), "on to the next step"),
            Some((k, n)) => (format!("Step {k} of {n} of your sign-in"), "straight back to your MCP client"),
            None => ("A step of your sign-in".to_owned(), "straight back to your MCP client"),
        };
        html! {
            p { strong { (what) } ": once this is saved, you go " (then) "." }
            input type="hidden" name="return_to" value=(back);
            @if let Some((k, n)) = progress {
                input type="hidden" name="step" value=(k);
                input type="hidden" name="steps" value=(n);
            }
        }
    });
    let tenant = &tenant_row.slug;
    let action = format!("/connect/{tenant}/{}", server.slug);
    tenant_page(
        if problem.is_none() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY },
        "Your credential",
        Some(tenant_row),
        html! {
            h1 { "Your credential for " (server.display_name) }
            @if let Some(problem) = problem { p.error { (problem) } }
            p { "Signed in as " strong { (account) } ": what you enter here is saved for this account." }
            p.muted {
                (tenant) "/" (server.slug) " calls its upstream with your own credential. It is stored encrypted "
                "and used only for your requests; nobody can read it back."
            }
            form method="post" action=(action) {
                input type="hidden" name="csrf_token" value=(csrf);
                @if let Some(step) = step { (step) }
                @for name in placeholders {
                    @let id = format!("f-{name}");
                    label for=(id) { (name) }
                    input id=(id) name=(name) type="password" autocomplete="off" required;
                }
                div.buttons { button.primary type="submit" { "Save" } }
            }
        },
    )
}

fn done_page(tenant: &str, server: &str, what: &str) -> HttpResponse {
    page(
        StatusCode::OK,
        "Connected",
        html! {
            h1 { (what) }
            p { (tenant) "/" (server) " is ready. You can close this window and go back to your MCP client." }
        },
    )
}

async fn show(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    next: web::Query<Next>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (tenant, server) = path.into_inner();
    let return_to = next.target(&state);
    let Some((user, secret)) = browser_user(&req, &state).await else {
        return sign_in_page(&req, &state, &tenant, &server, None, return_to.as_deref()).await;
    };
    let (tenant_row, server_row) = match visible_server(&state, &user, &tenant, &server).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let auth = server_row.auth_data.as_ref().and_then(AuthData::from_stored);
    match auth {
        Some(AuthData::OAuth2(o)) if o.grant_type == Some(GrantType::AuthorizationCode) => {
            match state.vault.start(&server_row, user.id, return_to).await {
                Ok(url) => HttpResponse::SeeOther().insert_header(("location", url)).finish(),
                Err(e) => domain_error_page(StatusCode::BAD_GATEWAY, "The provider is not reachable", &e),
            }
        }
        Some(auth) if !auth.placeholder_names().is_empty() => key_form(
            &user.email,
            &tenant_row,
            &server_row,
            &csrf_token(&secret),
            &auth.placeholder_names(),
            None,
            return_to.as_deref(),
            next.progress(),
        ),
        _ => page(
            StatusCode::OK,
            "Nothing to connect",
            html! { h1 { "Nothing to connect" } p { (tenant) "/" (server) " needs no credential of yours." } },
        ),
    }
}

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: SecretString,
    return_to: Option<String>,
    #[serde(default)]
    form_token: String,
}

async fn sign_in_form(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> HttpResponse {
    let (tenant, server) = path.into_inner();
    let form = form.into_inner();
    if let Some(refused) = check_form_post(&req, &state, Some(&form.form_token)) {
        return refused;
    }
    let return_to = Next { return_to: form.return_to, ..Default::default() }.target(&state);
    match sign_in_from_form(&req, &state, &form.email, form.password).await {
        FormSignIn::Done(cookie) => {
            let next = match &return_to {
                Some(r) => format!("/connect/{tenant}/{server}?return_to={}", url_encode(r)),
                None => format!("/connect/{tenant}/{server}"),
            };
            HttpResponse::SeeOther().cookie(cookie).insert_header(("location", next)).finish()
        }
        FormSignIn::Retry(problem) => {
            sign_in_page(&req, &state, &tenant, &server, Some(&problem), return_to.as_deref()).await
        }
        FormSignIn::Failed(page) => page,
    }
}

async fn save_key(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    form: web::Form<BTreeMap<String, String>>,
) -> HttpResponse {
    let (tenant, server) = path.into_inner();
    if let Some(refused) = check_form_post(&req, &state, None) {
        return refused;
    }
    let mut values = form.into_inner();
    let presented = values.remove("csrf_token").unwrap_or_default();
    let next = Next {
        return_to: values.remove("return_to"),
        step: values.remove("step").and_then(|v| v.parse().ok()),
        steps: values.remove("steps").and_then(|v| v.parse().ok()),
    };
    let return_to = next.target(&state);
    let Some((user, secret)) = browser_user(&req, &state).await else {
        return sign_in_page(
            &req,
            &state,
            &tenant,
            &server,
            Some("Your session ended; sign in again."),
            return_to.as_deref(),
        )
        .await;
    };
    if !csrf_matches(&secret, &presented) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Not saved",
            "This form is stale or was not sent from this page; reload it.",
        );
    }
    let (tenant_row, server_row) = match visible_server(&state, &user, &tenant, &server).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let actor = crate::control::audit::Actor { subject: format!("user:{}", user.email), request_id: None };
    let subject = (SubjectKind::User, user.id, format!("user:{}", user.email));
    let saved =
        overrides::put(&state.db, &state.sealer, &actor, &tenant_row, &server_row, subject, values, state.clock.now())
            .await;
    match saved {
        Ok(_) => match return_to {
            // One step of a sign-in: on to the next, with no page in between.
            Some(target) => HttpResponse::SeeOther().insert_header(("location", target)).finish(),
            None => done_page(&tenant_row.slug, &server_row.slug, "Saved"),
        },
        Err(Error::Validation(errors)) => {
            let placeholders = overrides::schema(&server_row).placeholders;
            let problem = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
            key_form(
                &user.email,
                &tenant_row,
                &server_row,
                &csrf_token(&secret),
                &placeholders,
                Some(&problem),
                return_to.as_deref(),
                next.progress(),
            )
        }
        Err(e) => domain_error_page(StatusCode::CONFLICT, "Not saved", &e),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    iss: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(req: HttpRequest, query: web::Query<CallbackQuery>, state: web::Data<AppState>) -> HttpResponse {
    let query = query.into_inner();
    if let Some(error) = query.error {
        // As one step of a sign-in, the sign-in goes on without this server; its tools will
        // say where to connect it later.
        if let Some(flow) = query.state.as_deref() {
            if let Ok(Some(next)) = state.vault.abandon(flow).await {
                tracing::info!(error, "a provider step of a sign-in was declined; continuing");
                return HttpResponse::SeeOther().insert_header(("location", next)).finish();
            }
        }
        let detail = query.error_description.map(|d| format!(" ({d})")).unwrap_or_default();
        return error_page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!(
                "The provider did not authorize the gateway: {error}{detail}. Start again from your MCP client's link."
            ),
        );
    }
    let (Some(code), Some(flow)) = (query.code, query.state) else {
        return error_page(StatusCode::BAD_REQUEST, "Not connected", "The provider's answer has no code or state.");
    };
    let Some((browser, _)) = browser_user(&req, &state).await else {
        return error_page(
            StatusCode::FORBIDDEN,
            "Not connected",
            "This browser is not signed in to mcpgate. Sign in here, then start the connection again from your MCP client's link.",
        );
    };
    match state.vault.complete(&flow, &code, query.iss.as_deref(), browser.id).await {
        Ok((server, Some(return_to))) => {
            tracing::info!(server = server.slug, "upstream authorization completed");
            HttpResponse::SeeOther().insert_header(("location", return_to)).finish()
        }
        Ok((server, None)) => {
            let tenant =
                tenant_rows::Entity::find_by_id(server.tenant_id).one(&state.db).await.ok().flatten().map(|t| t.slug);
            done_page(&tenant.unwrap_or_default(), &server.slug, "Connected")
        }
        Err(Error::Forbidden(why)) => error_page(StatusCode::FORBIDDEN, "Not connected", &why),
        Err(e) => domain_error_page(StatusCode::BAD_GATEWAY, "Not connected", &e),
    }
}

/// The gateway's Client ID Metadata Document: its `client_id` is its own URL.
async fn client_metadata(state: web::Data<AppState>) -> HttpResponse {
    let mut doc = crate::control::upstream_oauth::client_metadata(&state.vault.callback_url());
    doc["client_id"] = state.vault.metadata_document_url().into();
    HttpResponse::Ok().insert_header(("cache-control", "public, max-age=300")).json(doc)
}
