//! Who is calling and what they may do, as extractors: a handler that needs a tenant admin asks
//! for `TenantAdmin` and cannot run without one. Authorization lives here, once, instead of in
//! every handler.

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::Method;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use tracing_actix_web::RequestId;

use crate::auth::session::{csrf_matches, csrf_token, CSRF_HEADER, SESSION_COOKIE};
use crate::control::audit::Actor;
use crate::control::caller::Caller;
use crate::control::servers::{self, ServerRole};
use crate::control::tokens;
use crate::control::virtual_accounts::TENANT_ADMIN;
use crate::control::{sessions, tenants};
use crate::domain::TenantRole;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::entities::{servers as server_rows, tenants as tenant_rows, users};

/// How the caller authenticated.
#[derive(Clone, Debug)]
pub enum Credential {
    /// Console session cookie (unsafe methods also carry the CSRF token).
    Session { id: i64, csrf_token: String },
    /// `Authorization: Bearer` with a personal access or virtual-account token.
    Token { id: i64 },
    /// `Authorization: Bearer` with a JWT of an identity provider that has `accept_jwt`.
    IdpToken { provider: String },
}

/// An authenticated caller: an enabled user, or a live virtual account.
#[derive(Clone, Debug)]
pub struct Principal {
    pub caller: Caller,
    pub credential: Credential,
    /// Id of the request being served, for the audit trail.
    pub request_id: Option<String>,
}

impl Principal {
    /// The audit identity of this caller.
    pub fn actor(&self) -> Actor {
        Actor { subject: self.caller.label(), request_id: self.request_id.clone() }
    }

    pub fn session_id(&self) -> Option<i64> {
        match &self.credential {
            Credential::Session { id, .. } => Some(*id),
            Credential::Token { .. } | Credential::IdpToken { .. } => None,
        }
    }

    pub fn csrf_token(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session { csrf_token, .. } => Some(csrf_token),
            Credential::Token { .. } | Credential::IdpToken { .. } => None,
        }
    }

    /// The person behind the request; virtual accounts have no personal account.
    pub fn user(&self) -> Result<&users::Model, ApiError> {
        self.caller
            .user()
            .ok_or_else(|| ApiError::forbidden("this is for people; a virtual account has no personal account"))
    }
}

pub fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state is not registered")))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The bearer token, if an `Authorization` header is present at all: a header that is not a
/// usable bearer token yields an empty string, which fails authentication as an invalid token
/// instead of silently falling back to the session cookie.
fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?;
    let token = value.to_str().ok().and_then(crate::auth::token::from_bearer_header);
    Some(token.unwrap_or_default().to_owned())
}

async fn authenticate(req: &HttpRequest) -> Result<(Caller, Credential), ApiError> {
    let state = state(req)?;
    let now = state.clock.now();
    if let Some(presented) = bearer(req) {
        if crate::auth::access_token::looks_like_jwt(&presented) {
            return idp_caller(&state, &presented, now).await;
        }
        // Tokens are not sent by browsers on their own, so they need no CSRF token.
        let (row, caller) = tokens::authenticate(&state.reads, &presented, now).await?.ok_or(ApiError::InvalidToken)?;
        state.token_usage.record(row.id, now);
        return Ok((caller, Credential::Token { id: row.id }));
    }
    let secret = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()).ok_or(ApiError::Unauthenticated)?;
    let (session, user) = sessions::lookup(&state.reads, &secret, now).await?.ok_or(ApiError::Unauthenticated)?;
    // Cookies ride along on cross-site requests; a state change must also prove it came from
    // a page that could read the CSRF token.
    if !is_safe(req.method()) {
        let presented = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !csrf_matches(&secret, presented) {
            return Err(ApiError::CsrfFailed);
        }
    }
    Ok((Caller::User(user), Credential::Session { id: session.id, csrf_token: csrf_token(&secret) }))
}

/// A caller by an identity provider's JWT: verified like the proxy verifies it (same snapshot,
/// same keys), then loaded from the store, which has the last word on disabled accounts.
async fn idp_caller(
    state: &AppState,
    token: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Caller, Credential), ApiError> {
    use crate::policy::idp::Rejection;
    let policy = state.policy.current().ok_or(ApiError::InvalidToken)?;
    let found = match state.idp_keys.authenticate(&policy, token, None, now).await {
        Ok(caller) => match caller.subject {
            crate::proxy::index::Subject::User(id) => match crate::control::users::get(&state.reads, id).await {
                Ok(user) if user.disabled => Err(Rejection::DisabledUser),
                Ok(user) => Ok((Caller::User(user), caller.provider)),
                Err(_) => Err(Rejection::UnmappedSubject),
            },
            crate::proxy::index::Subject::VirtualAccount(id) => {
                match <crate::store::entities::virtual_accounts::Entity as sea_orm::EntityTrait>::find_by_id(id)
                    .one(&state.reads)
                    .await?
                {
                    Some(va) => Ok((Caller::VirtualAccount(va), caller.provider)),
                    None => Err(Rejection::UnmappedSubject),
                }
            }
        },
        Err(rejection) => Err(rejection),
    };
    match found {
        Ok((caller, provider)) => Ok((caller, Credential::IdpToken { provider })),
        Err(rejection) => {
            tracing::info!(reason = rejection.code(), "identity-provider token refused");
            let event = crate::control::audit::Event::new("auth.jwt_rejected", "api").outcome(rejection.code());
            let actor = crate::control::audit::Actor { subject: "anonymous".into(), request_id: None };
            if let Err(e) = crate::control::audit::record(&state.db, &actor, event, now).await {
                tracing::warn!(error = %e, "recording a refused token failed");
            }
            Err(ApiError::IdpTokenRejected(rejection))
        }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Several extractors of one request may ask; authenticate once.
        if let Some(principal) = req.extensions().get::<Principal>() {
            let principal = principal.clone();
            return Box::pin(async move { Ok(principal) });
        }
        let req = req.clone();
        Box::pin(async move {
            let (caller, credential) = authenticate(&req).await?;
            let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
            let principal = Principal { caller, credential, request_id };
            req.extensions_mut().insert(principal.clone());
            Ok(principal)
        })
    }
}

/// A platform admin.
pub struct PlatformAdmin(pub Principal);

impl FromRequest for PlatformAdmin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let principal = Principal::from_request(req, payload);
        Box::pin(async move {
            let principal = principal.await?;
            if !principal.caller.is_platform_admin() {
                return Err(ApiError::forbidden("this needs platform admin rights"));
            }
            Ok(PlatformAdmin(principal))
        })
    }
}

/// A caller who may see the tenant named by the `{tenant}` path segment: a member, a platform
/// admin, or a virtual account of that tenant. Anyone else gets 404, exactly as for a tenant
/// that does not exist.
pub struct TenantAccess {
    pub principal: Principal,
    pub tenant: tenant_rows::Model,
    /// The caller's own membership role, if any.
    pub membership: Option<TenantRole>,
}

impl TenantAccess {
    /// Platform admins act as tenant admins everywhere.
    pub fn is_admin(&self) -> bool {
        self.principal.caller.is_platform_admin() || self.membership == Some(TenantRole::Admin)
    }
}

impl FromRequest for TenantAccess {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let principal = Principal::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let principal = principal.await?;
            let state = state(&req)?;
            let slug = req.match_info().get("tenant").ok_or(ApiError::NotFound)?;
            let tenant = tenants::find_by_slug(&state.reads, slug).await?.ok_or(ApiError::NotFound)?;
            let membership = match &principal.caller {
                Caller::User(user) => tenants::role_of(&state.reads, tenant.id, user.id).await?,
                // An account belongs to its tenant; the tenant `admin` role makes it an admin there.
                Caller::VirtualAccount(va) if va.tenant_id == tenant.id => {
                    Some(if va.tenant_role.as_deref() == Some(TENANT_ADMIN) {
                        TenantRole::Admin
                    } else {
                        TenantRole::Member
                    })
                }
                Caller::VirtualAccount(_) => None,
            };
            if membership.is_none() && !principal.caller.is_platform_admin() {
                return Err(ApiError::NotFound);
            }
            Ok(TenantAccess { principal, tenant, membership })
        })
    }
}

/// A tenant admin (or platform admin) of the `{tenant}` in the path. Members get 403: they
/// know the tenant exists, they just may not change it.
pub struct TenantAdmin(pub TenantAccess);

impl FromRequest for TenantAdmin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let access = TenantAccess::from_request(req, payload);
        Box::pin(async move {
            let access = access.await?;
            if !access.is_admin() {
                return Err(ApiError::forbidden("this needs tenant admin rights"));
            }
            Ok(TenantAdmin(access))
        })
    }
}

pub use crate::web::client_address;

/// A caller with a role on the server named by the `{server}` path segment of a tenant they can
/// see. Anyone without a role gets 404, exactly as for a server that does not exist.
pub struct ServerAccess {
    pub tenant: TenantAccess,
    pub server: server_rows::Model,
    pub role: ServerRole,
}

impl FromRequest for ServerAccess {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let tenant = TenantAccess::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let tenant = tenant.await?;
            let state = state(&req)?;
            let slug = req.match_info().get("server").ok_or(ApiError::NotFound)?;
            let server = servers::get(&state.reads, &tenant.tenant, slug).await?;
            let role =
                servers::role_of(&state.reads, &tenant.tenant, &tenant.principal.caller, tenant.is_admin(), &server)
                    .await?
                    .ok_or(ApiError::NotFound)?;
            Ok(ServerAccess { tenant, server, role })
        })
    }
}

/// A manager of the `{server}` in the path (tenant admins manage every server). Users of the
/// server get 403: they know it exists, they may not change it.
pub struct ServerManager(pub ServerAccess);

impl FromRequest for ServerManager {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let access = ServerAccess::from_request(req, payload);
        Box::pin(async move {
            let access = access.await?;
            if access.role != ServerRole::Manager {
                return Err(ApiError::forbidden("this needs the manager role on this server"));
            }
            Ok(ServerManager(access))
        })
    }
}
