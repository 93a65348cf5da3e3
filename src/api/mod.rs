//! The REST API under `/api/v1`: actix handlers registered through utoipa-actix-web, so the
//! routes and the OpenAPI document come from one registration.

pub mod audit;
pub mod auth;
pub mod authorizations;
pub mod connections;
pub mod extract;
pub mod health;
pub mod how_to_use;
pub mod identity;
pub mod json;
pub mod middleware;
pub mod oauth;
pub mod overrides;
pub mod pagination;
pub mod policy;
pub mod responses;
pub mod servers;
pub mod teams;
pub mod tenants;
pub mod tokens;
pub mod users;
pub mod views;
pub mod virtual_accounts;

use actix_web::App;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::scope::scope;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::AppExt;

/// Parses several fields at once and reports every invalid one, not just the first:
/// `validate! { a = parse_a(..), b = parse_b(..) }` binds `a` and `b` to the parsed values or
/// returns a 422 listing all failures.
#[macro_export]
macro_rules! validate {
    ($($name:ident = $parse:expr),+ $(,)?) => {
        $(let $name: Result<_, $crate::error::FieldError> = $parse;)+
        let errors: Vec<$crate::error::FieldError> =
            [$($name.as_ref().err().cloned()),+].into_iter().flatten().collect();
        if !errors.is_empty() {
            return Err($crate::error::ApiError::Validation(errors));
        }
        $(let Ok($name) = $name else { unreachable!("errors were checked above") };)+
    };
}
pub use validate;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mcpgate API",
        description = "Control-plane API of mcpgate, the MCP gateway. Errors are RFC 9457 problem documents \
                       (`application/problem+json`) with a stable `code`; lists take `limit` and `cursor` and \
                       return `{\"items\", \"next_cursor\"}`. Sign in with `POST /api/v1/auth/login`; then send the \
                       session cookie, and on unsafe methods the `x-csrf-token` header."
    ),
    modifiers(&SecuritySchemes),
    security(("session" = []), ("token" = [])),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    tags(
        (name = "auth", description = "Sign-in and the caller's own account"),
        (name = "users", description = "Platform users (platform admins)"),
        (name = "tenants", description = "Tenants"),
        (name = "members", description = "Tenant members and roles"),
        (name = "identity providers", description = "OpenID providers for SSO sign-in and inbound JWTs, per tenant and for the platform"),
        (name = "teams", description = "Teams, usable as collaborators"),
        (name = "auth overrides", description = "Your own (or, for managers, anyone's) values for a server's per-user credential placeholders; write-only"),
        (name = "connections", description = "Your per-user OAuth authorizations at upstream providers"),
        (name = "authorizations", description = "MCP clients you signed in to through the gateway (its OAuth authorization server), and revoking them"),
        (name = "servers", description = "MCP servers: remote upstreams and virtual compositions"),
        (name = "collaborators", description = "Who may use and manage a server"),
        (name = "audit", description = "The tenant's audit trail"),
        (name = "tokens", description = "Personal access tokens (`mgw_pat_…`)"),
        (name = "policy", description = "Signed policy snapshots for proxies"),
        (name = "virtual_accounts", description = "Non-human identities for automation and their tokens (`mgw_va_…`)"),
        (name = "health", description = "Probes")
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::session::SESSION_COOKIE,
                "Console session from POST /api/v1/auth/login; unsafe methods also need x-csrf-token",
            ))),
        );
        components.add_security_scheme(
            "proxy_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The proxy key (MCPGATE_PROXY_KEY, or `mcpgate proxy-key`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A personal access token (mgw_pat_…) or virtual-account token (mgw_va_…)"))
                    .build(),
            ),
        );
    }
}

/// Registers every documented route.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health::healthz).service(health::readyz).service(
        scope("/api/v1")
            .service(auth::login)
            .service(auth::logout)
            .service(auth::me)
            .service(auth::change_password)
            .service(identity::login_providers)
            .service(identity::accept_invitation)
            .service(identity::list_platform_idps)
            .service(identity::create_platform_idp)
            .service(identity::get_platform_idp)
            .service(identity::update_platform_idp)
            .service(identity::delete_platform_idp)
            .service(identity::test_platform_idp)
            .service(tokens::create_token)
            .service(tokens::list_tokens)
            .service(tokens::revoke_all_tokens)
            .service(tokens::revoke_token)
            .service(users::list_users)
            .service(users::create_user)
            .service(users::get_user)
            .service(users::update_user)
            .service(users::delete_user)
            .service(tokens::list_user_tokens)
            .service(tokens::revoke_user_token)
            .service(tenants::list_tenants)
            .service(tenants::create_tenant)
            .service(tenants::get_tenant)
            .service(tenants::update_tenant)
            .service(tenants::delete_tenant)
            .service(tenants::list_members)
            .service(tenants::add_member)
            .service(tenants::update_member)
            .service(tenants::remove_member)
            .service(identity::create_invitation)
            .service(identity::list_invitations)
            .service(identity::revoke_invitation)
            .service(identity::list_tenant_idps)
            .service(identity::create_tenant_idp)
            .service(identity::get_tenant_idp)
            .service(identity::update_tenant_idp)
            .service(identity::delete_tenant_idp)
            .service(identity::test_tenant_idp)
            .service(teams::list_teams)
            .service(teams::create_team)
            .service(teams::get_team)
            .service(teams::update_team)
            .service(teams::delete_team)
            .service(teams::list_team_members)
            .service(teams::add_team_member)
            .service(teams::remove_team_member)
            .service(servers::list_servers)
            .service(servers::create_server)
            .service(servers::get_server)
            .service(servers::update_server)
            .service(servers::delete_server)
            .service(servers::get_how_to_use)
            .service(servers::create_try_token)
            .service(servers::probe_server)
            .service(servers::list_collaborators)
            .service(servers::put_collaborator)
            .service(servers::remove_collaborator)
            .service(overrides::list_overrides)
            .service(overrides::get_override_schema)
            .service(overrides::put_override)
            .service(overrides::delete_override)
            .service(authorizations::list_authorizations)
            .service(authorizations::revoke_authorization)
            .service(authorizations::list_user_authorizations)
            .service(authorizations::revoke_user_authorization)
            .service(connections::list_connections)
            .service(connections::start_connection)
            .service(connections::delete_connection)
            .service(audit::list_audit_events)
            .service(virtual_accounts::list_accounts)
            .service(virtual_accounts::create_account)
            .service(virtual_accounts::get_account)
            .service(virtual_accounts::update_account)
            .service(virtual_accounts::delete_account)
            .service(virtual_accounts::issue_token)
            .service(virtual_accounts::regenerate_token)
            .service(virtual_accounts::list_account_tokens)
            .service(virtual_accounts::revoke_account_token)
            .service(virtual_accounts::claim_token)
            .service(policy::latest_snapshot)
            .service(policy::snapshot_history)
            .service(policy::keys)
            .service(policy::record_decisions)
            .service(policy::resolve_credential),
    );
}

/// The OpenAPI document, generated from the handler registrations.
pub fn openapi() -> OpenApiDoc {
    let (_, doc) = App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(configure).split_for_parts();
    doc
}

/// The document as committed in `openapi/openapi.json`: pretty-printed, newline-terminated.
pub fn openapi_json() -> String {
    let mut json = openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
