//! MCP servers of a tenant: registry, collaborators, How To Use and the upstream probe.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use actix_web::http::header::HeaderName;
use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::extract::{ServerAccess, ServerManager, TenantAccess};
use crate::api::how_to_use::{self, HowToUse};
use crate::api::json::ApiJson;
use crate::api::pagination::{Page, PageQuery};
use crate::api::responses::*;
use crate::api::validate;
use crate::auth::seal::Place;
use crate::control::caller::Caller;
use crate::control::outbound::{AuthData, AuthDataView, GATEWAY_HEADERS};
use crate::control::probe::{self, ProbeReport};
use crate::control::servers::{
    self, Collaborator, EnabledTools, MemberSpec, NewKind, NewServer, ProbedTool, ServerDetail, ServerKind,
    ServerPatch, ServerRole, ToolSetting, Transport, Upstream,
};
use crate::domain::{description, DisplayName, Slug};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::proxy::index::Subject;
use crate::state::AppState;

const MAX_DESCRIPTION: usize = 2000;
const MAX_TAGS: usize = 20;
/// Headers that carry credentials: those belong in `auth_data`, sealed.

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Verify the upstream's certificate (default `true`).
    pub reject_unauthorized: Option<bool>,
    /// PEM certificate(s) to trust in addition to the system roots; `null` removes it.
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<String>)]
    pub ca_certificate: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServerRequest {
    pub slug: String,
    pub display_name: String,
    pub description: Option<String>,
    pub kind: ServerKind,
    /// Upstream MCP endpoint (remote servers), http or https.
    pub url: Option<String>,
    /// Remote servers: `streamable_http` (default) or `sse`.
    pub transport: Option<Transport>,
    /// Remote servers: extra headers sent upstream on every request.
    pub additional_headers: Option<BTreeMap<String, String>>,
    /// Remote servers: TLS verification settings.
    pub tls: Option<TlsSettings>,
    pub tool_settings: Option<Vec<ToolSetting>>,
    pub tags: Option<Vec<String>>,
    /// Count this server's `tools/call` requests by tool name in the metrics
    /// (`mcpgate_mcp_tool_calls_total`); names the last probe did not see, and that have no
    /// tool settings, are counted as `other`. Off by default.
    pub metrics_tool_names: Option<bool>,
    /// Remote servers: how the gateway authenticates to the upstream. Secrets in it
    /// (`global` header values, `client_secret`) are write-only.
    pub auth_data: Option<AuthData>,
    /// Virtual servers: the remote servers it combines, in order.
    pub servers: Option<Vec<MemberSpec>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServerRequest {
    pub display_name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    pub url: Option<String>,
    pub transport: Option<Transport>,
    pub additional_headers: Option<BTreeMap<String, String>>,
    pub tls: Option<TlsSettings>,
    pub tool_settings: Option<Vec<ToolSetting>>,
    pub tags: Option<Vec<String>>,
    /// Count this server's `tools/call` requests by tool name in the metrics
    /// (`mcpgate_mcp_tool_calls_total`); names the last probe did not see, and that have no
    /// tool settings, are counted as `other`. Off by default.
    pub metrics_tool_names: Option<bool>,
    /// Replaces the outbound auth as a whole (secrets included); `null` removes it.
    #[serde(default, deserialize_with = "crate::api::json::present")]
    #[schema(value_type = Option<AuthData>)]
    pub auth_data: Option<Option<AuthData>>,
    pub servers: Option<Vec<MemberSpec>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCollaboratorRequest {
    /// `user:<email>`, `team:<slug>` or `virtualaccount:<name>`.
    pub subject: String,
    pub role: ServerRole,
}

#[derive(Serialize, ToSchema)]
pub struct TlsView {
    pub reject_unauthorized: bool,
    pub ca_certificate: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ProbeSummary {
    pub probed_at: DateTime<Utc>,
    pub protocol_version: Option<String>,
    pub tools: Vec<ProbedTool>,
}

#[derive(Serialize, ToSchema)]
pub struct ServerView {
    pub slug: String,
    pub display_name: String,
    pub description: Option<String>,
    pub kind: ServerKind,
    /// Where clients connect: `<public base URL>/<tenant>/mcp/<server>/server`.
    pub mcp_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsView>,
    /// Outbound auth, without its secrets; absent when the upstream needs none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_data: Option<AuthDataView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<MemberView>>,
    pub tool_settings: Vec<ToolSetting>,
    pub tags: Vec<String>,
    /// Whether the metrics count this server's tool calls by tool name.
    pub metrics_tool_names: bool,
    /// The last successful probe, if any.
    pub probe: Option<ProbeSummary>,
    /// The caller's role on this server.
    pub role: ServerRole,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One member of a virtual server, as shown.
#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub server: String,
    pub enabled_tools: EnabledTools,
    /// The virtual server's own credentials for this member, without secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_data: Option<AuthDataView>,
}

#[derive(Serialize, ToSchema)]
pub struct CollaboratorView {
    pub subject: String,
    pub display_name: String,
    pub role: ServerRole,
    pub added_at: DateTime<Utc>,
}

impl From<Collaborator> for CollaboratorView {
    fn from(c: Collaborator) -> Self {
        Self { subject: c.subject, display_name: c.display_name, role: c.role, added_at: c.row.created_at }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CollaboratorList {
    pub items: Vec<CollaboratorView>,
}

fn view(state: &AppState, tenant: &str, detail: ServerDetail, role: ServerRole) -> ApiResult<ServerView> {
    let ServerDetail { server, members } = detail;
    let kind = ServerKind::parse(&server.kind)?;
    let transport = server.transport.as_deref().map(Transport::parse).transpose()?;
    let remote = kind == ServerKind::Remote;
    let probe = server.probed_at.map(|probed_at| ProbeSummary {
        probed_at,
        protocol_version: server.probe_protocol_version.clone(),
        tools: servers::probed_tools_of(&server).unwrap_or_default(),
    });
    Ok(ServerView {
        mcp_url: how_to_use::mcp_url(&state.settings.public_base_url(), tenant, &server.slug),
        url: server.url.clone().filter(|_| remote),
        transport: transport.filter(|_| remote),
        additional_headers: remote.then(|| servers::headers_of(&server)),
        tls: remote.then(|| TlsView {
            reject_unauthorized: server.tls_reject_unauthorized,
            ca_certificate: server.tls_ca_certificate.clone(),
        }),
        auth_data: server.auth_data.as_ref().and_then(AuthData::from_stored).map(|a| a.view()),
        servers: (!remote).then(|| {
            members
                .iter()
                .map(|(link, member)| MemberView {
                    server: member.slug.clone(),
                    enabled_tools: servers::enabled_tools_of(link),
                    auth_data: link.auth_data.as_ref().and_then(AuthData::from_stored).map(|a| a.view()),
                })
                .collect()
        }),
        tool_settings: servers::tool_settings_of(&server),
        tags: servers::tags_of(&server),
        metrics_tool_names: server.metrics_tool_names,
        probe,
        role,
        kind,
        slug: server.slug,
        display_name: server.display_name,
        description: server.description,
        created_at: server.created_at,
        updated_at: server.updated_at,
    })
}

fn parse_url(raw: &str) -> Result<url::Url, FieldError> {
    let err = |code: &str, msg: &str| FieldError::new("url", code, msg);
    let url = url::Url::parse(raw.trim()).map_err(|_| err("invalid_url", "must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err("invalid_scheme", "must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("invalid_url", "must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err("credentials_in_url", "must not contain credentials; configure upstream auth instead"));
    }
    if url.fragment().is_some() {
        return Err(err("invalid_url", "must not have a #fragment"));
    }
    Ok(url)
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), FieldError> {
    for (name, value) in headers {
        let field = format!("additional_headers.{name}");
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(FieldError::new(field, "invalid_header", "is not a valid HTTP header name"));
        }
        let lower = name.to_ascii_lowercase();
        if GATEWAY_HEADERS.contains(&lower.as_str()) {
            return Err(FieldError::new(
                field,
                "reserved_header",
                "is set by the gateway; it cannot be an additional header",
            ));
        }
        // Additional headers are shown to every collaborator and travel in the policy snapshot.
        if crate::domain::is_credential_header(name) {
            return Err(FieldError::new(
                field,
                "credential_header",
                "looks like a credential; put it in auth_data (type header), where it is sealed and write-only",
            ));
        }
        if !crate::domain::is_header_value(value, 8192)
            || actix_web::http::header::HeaderValue::from_str(value).is_err()
        {
            return Err(FieldError::new(field, "invalid_header", "has a value that is not a valid HTTP header value"));
        }
    }
    Ok(())
}

fn check_ca(pem: &Option<String>) -> Result<(), FieldError> {
    if let Some(pem) = pem {
        crate::http_client::install_crypto_provider();
        match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
            Ok(certs) if !certs.is_empty() => {}
            _ => {
                return Err(FieldError::new(
                    "tls.ca_certificate",
                    "invalid_certificate",
                    "must be one or more PEM-encoded certificates",
                ))
            }
        }
    }
    Ok(())
}

fn check_tags(tags: Vec<String>) -> Result<Vec<String>, FieldError> {
    if tags.len() > MAX_TAGS {
        return Err(FieldError::new("tags", "too_many", "at most 20 tags"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, tag) in tags.into_iter().enumerate() {
        let tag = tag.trim().to_owned();
        if tag.is_empty() || tag.chars().count() > 50 || tag.chars().any(char::is_control) {
            return Err(FieldError::new(format!("tags[{i}]"), "invalid_tag", "must be 1 to 50 printable characters"));
        }
        if seen.insert(tag.clone()) {
            out.push(tag);
        }
    }
    Ok(out)
}

fn check_tool_settings(settings: Vec<ToolSetting>) -> Result<Vec<ToolSetting>, FieldError> {
    let mut seen = HashSet::new();
    for (i, s) in settings.iter().enumerate() {
        if s.name.trim().is_empty() || s.name.len() > 200 {
            return Err(FieldError::new(
                format!("tool_settings[{i}].name"),
                "invalid_name",
                "must be 1 to 200 characters",
            ));
        }
        if !seen.insert(s.name.clone()) {
            return Err(FieldError::new(format!("tool_settings[{i}].name"), "duplicate", "each tool may appear once"));
        }
        if s.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
            return Err(FieldError::new(
                format!("tool_settings[{i}].description"),
                "invalid_length",
                "must be at most 2000 characters long",
            ));
        }
    }
    Ok(settings)
}

/// The egress policy, at registration: the upstream URL and any OAuth endpoint configured for
/// it must be destinations the gateway calls (they are checked again on every connection).
async fn check_egress(state: &AppState, url: Option<&url::Url>, auth: Option<&AuthData>) -> ApiResult<()> {
    let mut targets: Vec<(String, String)> = url.map(|u| ("url".to_owned(), u.to_string())).into_iter().collect();
    if let Some(AuthData::OAuth2(o)) = auth {
        for (name, value) in [
            ("token_url", &o.token_url),
            ("authorization_url", &o.authorization_url),
            ("registration_url", &o.registration_url),
        ] {
            if let Some(v) = value {
                targets.push((format!("auth_data.{name}"), v.clone()));
            }
        }
    }
    let mut errors = Vec::new();
    for (field, raw) in targets {
        let Ok(parsed) = url::Url::parse(&raw) else { continue };
        if let Err(e) = state.egress.check_destination(&parsed).await {
            errors.push(FieldError::new(field, "egress_refused", e.to_string()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Validates outbound auth and seals its secrets for storage.
fn seal_auth(state: &AppState, auth: Option<AuthData>, place: &Place) -> ApiResult<Option<serde_json::Value>> {
    let Some(auth) = auth else { return Ok(None) };
    auth.validate("auth_data")?;
    Ok(Some(auth.seal(&state.sealer, place)?))
}

fn not_allowed(field: &str, why: &str) -> FieldError {
    FieldError::new(field, "not_allowed", why)
}

/// Validates members' credential overrides and seals their secrets for storage.
fn seal_members(
    state: &AppState,
    specs: Option<Vec<MemberSpec>>,
    tenant_id: i64,
    virtual_slug: &str,
) -> ApiResult<Option<Vec<MemberSpec>>> {
    let Some(mut specs) = specs else { return Ok(None) };
    for (i, spec) in specs.iter_mut().enumerate() {
        let Some(auth) = spec.auth_data.take() else { continue };
        let field = format!("servers[{i}].auth_data");
        auth.validate(&field)?;
        if auth.is_per_user() {
            return Err(ApiError::Validation(vec![FieldError::new(
                field,
                "per_user_not_allowed",
                "a member override is one credential for every caller; per-user credentials belong on the member server",
            )]));
        }
        // The sealed document has the same shape, with secrets sealed.
        let place = Place::member_auth(tenant_id, virtual_slug, &spec.server);
        spec.auth_data = AuthData::from_stored(&auth.seal(&state.sealer, &place)?);
    }
    Ok(Some(specs))
}

fn check_members(specs: &[MemberSpec]) -> Result<(), FieldError> {
    for (i, spec) in specs.iter().enumerate() {
        if let EnabledTools::Only(names) = &spec.enabled_tools {
            if names.is_empty() {
                return Err(FieldError::new(
                    format!("servers[{i}].enabled_tools"),
                    "empty",
                    "list at least one tool, or use \"all\"",
                ));
            }
        }
    }
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServerSearch {
    /// Only servers whose slug or display name contains this text (any case).
    pub q: Option<String>,
}

/// List the servers you can see in a tenant (all of them for tenant admins).
#[utoipa::path(
    tag = "servers",
    params(("tenant" = String, Path, description = "Tenant slug"), ServerSearch, PageQuery),
    responses((status = 200, description = "A page of servers", body = Page<ServerView>), Unauthorized, NotFound, Unprocessable, Internal)
)]
#[get("/tenants/{tenant}/servers")]
pub async fn list_servers(
    state: web::Data<AppState>,
    access: TenantAccess,
    search: web::Query<ServerSearch>,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<ServerView>>> {
    let caller = &access.principal.caller;
    let paged = servers::visible_page(
        &state.reads,
        &access.tenant,
        caller,
        access.is_admin(),
        search.q.as_deref(),
        query.to_request()?,
    )
    .await?;
    let mut items = Vec::with_capacity(paged.items.len());
    for (detail, role) in paged.items {
        items.push(view(&state, &access.tenant.slug, detail, role)?);
    }
    Ok(web::Json(Page::from_paged(crate::control::page::Paged { items, next_after: paged.next_after }, |v| v)))
}

/// Register a server (any tenant member). You become its first manager.
#[utoipa::path(
    tag = "servers",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = CreateServerRequest,
    responses(
        (status = 201, description = "Created", body = ServerView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/tenants/{tenant}/servers")]
pub async fn create_server(
    state: web::Data<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<CreateServerRequest>,
) -> ApiResult<HttpResponse> {
    let remote = body.kind == ServerKind::Remote;
    let tls = body.tls.unwrap_or_default();
    validate! {
        slug = Slug::parse("slug", &body.slug),
        display_name = DisplayName::parse("display_name", &body.display_name),
        description = description(body.description.as_deref()),
        tags = check_tags(body.tags.unwrap_or_default()),
        tool_settings = check_tool_settings(body.tool_settings.unwrap_or_default()),
        url = match (&body.url, remote) {
            (Some(u), true) => parse_url(u).map(Some),
            (None, true) => Err(FieldError::new("url", "required", "a remote server needs the URL of its upstream")),
            (Some(_), false) => Err(not_allowed("url", "a virtual server has no URL of its own")),
            (None, false) => Ok(None),
        },
        headers = match (&body.additional_headers, remote) {
            (Some(_), false) => Err(not_allowed("additional_headers", "only remote servers have upstream headers")),
            (h, _) => check_headers(&h.clone().unwrap_or_default()).map(|_| h.clone().unwrap_or_default()),
        },
        transport = match (body.transport, remote) {
            (Some(_), false) => Err(not_allowed("transport", "only remote servers have a transport")),
            (t, _) => Ok(t.unwrap_or_default()),
        },
        ca = match (&tls.ca_certificate, remote) {
            (Some(Some(_)), false) => Err(not_allowed("tls", "only remote servers have TLS settings")),
            (c, _) => check_ca(&c.clone().flatten()).map(|_| c.clone().flatten()),
        },
        members = match (&body.servers, remote) {
            (Some(_), true) => Err(not_allowed("servers", "only virtual servers have member servers")),
            (None, false) => Err(FieldError::new("servers", "required", "a virtual server needs member servers")),
            (s, _) => s.as_deref().map(check_members).transpose().map(|_| s.clone().unwrap_or_default()),
        },
    }
    check_egress(&state, url.as_ref(), body.auth_data.as_ref()).await?;
    let auth_data = match body.auth_data {
        Some(_) if !remote => {
            return Err(ApiError::Validation(vec![not_allowed(
                "auth_data",
                "a virtual server calls its members with their own auth",
            )]))
        }
        auth => seal_auth(&state, auth, &Place::server_auth(access.tenant.id, slug.as_str()))?,
    };
    let kind = match url {
        Some(url) => NewKind::Remote(Upstream {
            url,
            transport,
            additional_headers: headers,
            tls_reject_unauthorized: tls.reject_unauthorized.unwrap_or(true),
            tls_ca_certificate: ca,
            auth_data,
        }),
        None => {
            NewKind::Virtual(seal_members(&state, Some(members), access.tenant.id, slug.as_str())?.unwrap_or_default())
        }
    };
    let metrics_tool_names = body.metrics_tool_names.unwrap_or(false);
    let new = NewServer { slug, display_name, description, tags, tool_settings, metrics_tool_names, kind };
    let actor = access.principal.actor();
    let detail = servers::create(
        &state.db,
        &actor,
        &access.tenant,
        &access.principal.caller,
        access.is_admin(),
        new,
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Created().json(view(&state, &access.tenant.slug, detail, ServerRole::Manager)?))
}

/// Get a server.
#[utoipa::path(
    tag = "servers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    responses((status = 200, description = "The server", body = ServerView), Unauthorized, NotFound, Internal)
)]
#[get("/tenants/{tenant}/servers/{server}")]
pub async fn get_server(state: web::Data<AppState>, access: ServerAccess) -> ApiResult<web::Json<ServerView>> {
    let detail = servers::detail(&state.reads, access.server).await?;
    Ok(web::Json(view(&state, &access.tenant.tenant.slug, detail, access.role)?))
}

/// Update a server (managers). The kind cannot change.
#[utoipa::path(
    tag = "servers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    request_body = UpdateServerRequest,
    responses(
        (status = 200, description = "Updated", body = ServerView),
        BadRequest, Unauthorized, Forbidden, NotFound, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[patch("/tenants/{tenant}/servers/{server}")]
pub async fn update_server(
    state: web::Data<AppState>,
    ServerManager(access): ServerManager,
    ApiJson(body): ApiJson<UpdateServerRequest>,
) -> ApiResult<web::Json<ServerView>> {
    let tls = body.tls;
    validate! {
        display_name = body.display_name.as_deref().map(|n| DisplayName::parse("display_name", n)).transpose(),
        description = body.description.as_ref().map(|d| description(d.as_deref())).transpose(),
        tags = body.tags.map(check_tags).transpose(),
        tool_settings = body.tool_settings.map(check_tool_settings).transpose(),
        url = body.url.as_deref().map(parse_url).transpose(),
        headers = body.additional_headers.map(|h| check_headers(&h).map(|_| h)).transpose(),
        ca = tls.as_ref().and_then(|t| t.ca_certificate.clone()).map(|c| check_ca(&c).map(|_| c)).transpose(),
        members = body.servers.map(|s| check_members(&s).map(|_| s)).transpose(),
    }
    check_egress(&state, url.as_ref(), body.auth_data.as_ref().and_then(Option::as_ref)).await?;
    let place = Place::server_auth(access.server.tenant_id, &access.server.slug);
    let patch = ServerPatch {
        display_name,
        description,
        tags,
        tool_settings,
        metrics_tool_names: body.metrics_tool_names,
        url,
        transport: body.transport,
        additional_headers: headers,
        tls_reject_unauthorized: tls.as_ref().and_then(|t| t.reject_unauthorized),
        tls_ca_certificate: ca,
        auth_data: body.auth_data.map(|a| seal_auth(&state, a, &place)).transpose()?,
        members: seal_members(&state, members, access.server.tenant_id, &access.server.slug)?,
    };
    let actor = access.tenant.principal.actor();
    let editor = (&access.tenant.principal.caller, access.tenant.is_admin());
    let detail =
        servers::update(&state.db, &actor, &access.tenant.tenant, editor, access.server, patch, state.clock.now())
            .await?;
    Ok(web::Json(view(&state, &access.tenant.tenant.slug, detail, access.role)?))
}

/// Delete a server (managers). Refused while a virtual server uses it.
#[utoipa::path(
    tag = "servers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    responses((status = 204, description = "Deleted"), Unauthorized, Forbidden, NotFound, Conflict, Internal)
)]
#[delete("/tenants/{tenant}/servers/{server}")]
pub async fn delete_server(
    state: web::Data<AppState>,
    ServerManager(access): ServerManager,
) -> ApiResult<HttpResponse> {
    let actor = access.tenant.principal.actor();
    servers::delete(&state.db, &actor, &access.tenant.tenant, access.server, state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// How to connect to this server from Cursor, Claude Code, VS Code and the SDKs.
#[utoipa::path(
    tag = "servers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    responses((status = 200, description = "Ready-to-paste configuration, and what each user does once before first use", body = HowToUse), Unauthorized, NotFound, Internal)
)]
#[get("/tenants/{tenant}/servers/{server}/how-to-use")]
pub async fn get_how_to_use(state: web::Data<AppState>, access: ServerAccess) -> ApiResult<web::Json<HowToUse>> {
    let base = state.settings.public_base_url();
    let tenant = &access.tenant.tenant.slug;
    let mut how = how_to_use::how_to_use(&base, tenant, &access.server.slug);
    // The servers whose upstream takes each caller's own credential: this one, or the members
    // a virtual server calls with their own auth.
    let detail = servers::detail(&state.reads, access.server).await?;
    let mut needing = vec![(&detail.server, detail.server.auth_data.as_ref())];
    needing.extend(
        detail.members.iter().map(|(link, member)| (member, link.auth_data.as_ref().or(member.auth_data.as_ref()))),
    );
    for (server, auth) in needing {
        let kind = match auth.and_then(AuthData::from_stored) {
            Some(auth) if !auth.placeholder_names().is_empty() => "key",
            Some(auth) if auth.is_per_user() => "authorization",
            _ => continue,
        };
        how.before_first_use.push(how_to_use::CredentialStep {
            server: server.slug.clone(),
            kind: kind.into(),
            connect_url: crate::proxy::credentials::connect_url(&base, tenant, &server.slug),
        });
    }
    Ok(web::Json(how))
}

/// A five-minute access token for the console's tool tester.
#[derive(Serialize, ToSchema)]
pub struct TryToken {
    /// Send as `Authorization: Bearer` to `mcp_url`; valid for that URL only.
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
    pub mcp_url: String,
}

/// A short-lived token with which the signed-in person calls this server through the proxy,
/// with their own access (the console's "Try a tool"). Console sessions only: a token or an
/// IdP JWT already reaches the proxy itself.
#[utoipa::path(
    tag = "servers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    responses((status = 201, description = "Issued", body = TryToken), Unauthorized, Forbidden, NotFound, Internal)
)]
#[post("/tenants/{tenant}/servers/{server}/try-token")]
pub async fn create_try_token(state: web::Data<AppState>, access: ServerAccess) -> ApiResult<HttpResponse> {
    let principal = &access.tenant.principal;
    let Caller::User(user) = &principal.caller else {
        return Err(ApiError::Forbidden("the tool tester is for people signed in to the console".into()));
    };
    if principal.session_id().is_none() {
        return Err(ApiError::Forbidden("the tool tester is for people signed in to the console".into()));
    }
    let now = state.clock.now();
    let tenant = &access.tenant.tenant;
    let mcp_url = how_to_use::mcp_url(&state.settings.public_base_url(), &tenant.slug, &access.server.slug);
    let (access_token, expires_at) = crate::auth::oauth_server::grants::console_token(
        &state.db,
        &state.sealer,
        &state.oauth,
        user.id,
        &mcp_url,
        now,
    )
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("{}: {}", e.error, e.description)))?;
    crate::control::audit::record(
        &state.db,
        &principal.actor(),
        crate::control::audit::Event::new("server.try_token", format!("server:{}", access.server.slug)).tenant(tenant),
        now,
    )
    .await?;
    Ok(HttpResponse::Created().json(TryToken { access_token, expires_at, mcp_url }))
}

/// Probe a remote server's upstream (managers): initialize and tools/list, within the probe
/// timeout. A successful probe's tool list is kept on the server.
#[utoipa::path(
    tag = "servers",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    responses(
        (status = 200, description = "What the probe found; `reachable: false` with `error` when it failed", body = ProbeReport),
        Unauthorized, Forbidden, NotFound, Conflict, Internal
    )
)]
#[post("/tenants/{tenant}/servers/{server}/probe")]
pub async fn probe_server(
    state: web::Data<AppState>,
    ServerManager(access): ServerManager,
) -> ApiResult<web::Json<ProbeReport>> {
    let server = access.server;
    if ServerKind::parse(&server.kind)? != ServerKind::Remote {
        return Err(ApiError::conflict(
            "virtual_server",
            None,
            "a virtual server has no upstream of its own; probe its member servers",
        ));
    }
    let url = server.url.as_deref().map(parse_url).transpose()?.ok_or(ApiError::NotFound)?;
    let mut upstream = Upstream {
        url,
        transport: server.transport.as_deref().map(Transport::parse).transpose()?.unwrap_or_default(),
        additional_headers: servers::headers_of(&server),
        tls_reject_unauthorized: server.tls_reject_unauthorized,
        tls_ca_certificate: server.tls_ca_certificate.clone(),
        auth_data: None,
    };
    // The probe calls the upstream as the manager asking, with their credential.
    if server.auth_data.is_some() {
        use crate::proxy::credentials::{CredentialError, CredentialRequest, CredentialResolver};
        let subject = match &access.tenant.principal.caller {
            Caller::User(u) => Subject::User(u.id),
            Caller::VirtualAccount(va) => Subject::VirtualAccount(va.id),
        };
        let subject = crate::proxy::session::subject_tag(subject);
        let request =
            CredentialRequest { server: server.id, via: None, subject, stale: None, insufficient_scope: None };
        match state.vault.resolve(&request).await {
            Ok(resolved) => upstream.additional_headers.extend(resolved.headers),
            Err(CredentialError::ActionRequired { message, url }) => {
                return Ok(web::Json(ProbeReport::not_started("credential_required", format!("{message} Open {url}"))))
            }
            Err(CredentialError::Unavailable { message }) => {
                return Ok(web::Json(ProbeReport::not_started("credential_unavailable", message)))
            }
        }
    }
    let timeout = Duration::from_secs(u64::from(state.settings.probe_timeout_seconds));
    let report = probe::probe(&upstream, timeout, &state.egress).await;
    if let (true, Some(version)) = (report.reachable, &report.protocol_version) {
        let actor = access.tenant.principal.actor();
        servers::save_probe(
            &state.db,
            &actor,
            &access.tenant.tenant,
            server,
            version.clone(),
            &report.tools,
            state.clock.now(),
        )
        .await?;
    }
    Ok(web::Json(report))
}

/// List a server's collaborators.
#[utoipa::path(
    tag = "collaborators",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    responses((status = 200, description = "Collaborators", body = CollaboratorList), Unauthorized, NotFound, Internal)
)]
#[get("/tenants/{tenant}/servers/{server}/collaborators")]
pub async fn list_collaborators(
    state: web::Data<AppState>,
    access: ServerAccess,
) -> ApiResult<web::Json<CollaboratorList>> {
    let items = servers::collaborators(&state.reads, &access.server).await?;
    Ok(web::Json(CollaboratorList { items: items.into_iter().map(CollaboratorView::from).collect() }))
}

/// Grant or change a collaborator's role (managers). The last manager cannot be demoted.
#[utoipa::path(
    tag = "collaborators",
    params(("tenant" = String, Path, description = "Tenant slug"), ("server" = String, Path, description = "Server slug")),
    request_body = PutCollaboratorRequest,
    responses(
        (status = 200, description = "Role changed", body = CollaboratorView),
        (status = 201, description = "Collaborator added", body = CollaboratorView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[put("/tenants/{tenant}/servers/{server}/collaborators")]
pub async fn put_collaborator(
    state: web::Data<AppState>,
    ServerManager(access): ServerManager,
    ApiJson(body): ApiJson<PutCollaboratorRequest>,
) -> ApiResult<HttpResponse> {
    let actor = access.tenant.principal.actor();
    let (collaborator, created) = servers::put_collaborator(
        &state.db,
        &actor,
        &access.tenant.tenant,
        &access.server,
        body.subject.trim(),
        body.role,
        state.clock.now(),
    )
    .await?;
    let view = CollaboratorView::from(collaborator);
    Ok(if created { HttpResponse::Created().json(view) } else { HttpResponse::Ok().json(view) })
}

/// Remove a collaborator (managers). The last manager cannot be removed.
#[utoipa::path(
    tag = "collaborators",
    params(
        ("tenant" = String, Path, description = "Tenant slug"),
        ("server" = String, Path, description = "Server slug"),
        ("subject" = String, Path, description = "`user:<email>`, `team:<slug>` or `virtualaccount:<name>`")
    ),
    responses((status = 204, description = "Removed"), Unauthorized, Forbidden, NotFound, Conflict, Internal)
)]
#[delete("/tenants/{tenant}/servers/{server}/collaborators/{subject}")]
pub async fn remove_collaborator(
    state: web::Data<AppState>,
    ServerManager(access): ServerManager,
    path: web::Path<(String, String, String)>,
) -> ApiResult<HttpResponse> {
    let actor = access.tenant.principal.actor();
    servers::remove_collaborator(&state.db, &actor, &access.tenant.tenant, &access.server, &path.2, state.clock.now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
