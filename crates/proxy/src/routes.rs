//! `/{tenant}/mcp/{server}/server`: check where the request comes from and what it says,
//! authenticate and authorize from one snapshot, then relay to the upstream (remote servers)
//! or fan out to the members (virtual servers). Request bodies (JSON-RPC messages, bounded)
//! are read whole; responses, JSON or SSE, are streamed back as they arrive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tracing_actix_web::RequestId;

use crate::credentials::{CredentialError, CredentialResolver, Credentials, Target};
use crate::decisions::{Decision, DecisionLog};
use crate::guard::{self, OriginPolicy};
use crate::holder::PolicyHolder;
use crate::index::{Policy, Subject};
use crate::session::{subject_tag, GatewaySession, SessionSealer};
use crate::upstream::{Clients, UpstreamError, SESSION_HEADER, VERSION_HEADER};
use crate::{rewrite, tools, virtual_server};
use mcpgate_policy::clock::Clock;
use mcpgate_policy::{ServerEntry, ServerKind, Transport};

/// Headers relayed from the client to the upstream and back. Everything else (cookies,
/// hop-by-hop headers, the caller's own Authorization) stays at the gateway; the session id
/// is translated, never copied.
const RELAYED_REQUEST: &[&str] =
    &["content-type", "accept", "mcp-protocol-version", "last-event-id", "mcp-method", "mcp-name"];
const RELAYED_RESPONSE: &[&str] = &["content-type", "mcp-protocol-version", "cache-control"];

/// Tool arguments mirrored into headers (`Mcp-Param-{Name}`, protocol revision 2026-07-28): the
/// upstream checks them against the body, so they travel with the request unchanged.
const PARAM_PREFIX: &str = "mcp-param-";

/// The caller's `Mcp-Param-*` headers, for a request the gateway builds itself.
pub fn param_headers(req: &HttpRequest) -> Vec<(String, Vec<u8>)> {
    params_of(req).map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec())).collect()
}

/// The caller's `Mcp-Param-*` headers, as they are.
fn params_of(req: &HttpRequest) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    req.headers().iter().filter(|(name, _)| name.as_str().starts_with(PARAM_PREFIX))
}

/// Upper bound of one client message.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

pub struct ProxyState {
    pub policy: Arc<PolicyHolder>,
    pub clients: Clients,
    pub public_base: String,
    pub clock: Clock,
    pub sessions: SessionSealer,
    pub origins: OriginPolicy,
    pub decisions: DecisionLog,
    /// Bounds the requests and streams in flight.
    pub limit: Arc<Semaphore>,
    pub routes: virtual_server::RouteCache,
    pub bridges: crate::legacy::Bridges,
    /// Upstream sessions opened for stateless (2026-07-28) callers.
    pub bridge: crate::bridge::Bridge,
    pub credentials: Credentials,
    /// Per-identity request budget; `None` when turned off.
    pub rate: Option<IdentityLimiter>,
    /// Identity providers' keys, for their JWTs.
    pub idp_keys: Arc<crate::idp::IdpKeys>,
}

/// Requests per identity (`u<id>` / `v<id>`).
pub type IdentityLimiter = governor::DefaultKeyedRateLimiter<String>;

/// Identities remembered by the rate limiter before idle ones are forgotten.
const RATE_KEYS: usize = 10_000;

pub struct ProxyConfig {
    pub public_base: String,
    pub upstream_timeout: Duration,
    pub max_concurrent: usize,
    pub allowed_origins: Vec<String>,
    /// Requests per identity per minute; 0 for no limit.
    pub rate_limit_per_minute: u32,
    /// Identity providers' keys (shared with the API in `serve`).
    pub idp_keys: Arc<crate::idp::IdpKeys>,
    /// Where upstream requests may go.
    pub egress: Arc<crate::egress::Egress>,
}

impl ProxyState {
    pub fn new(
        policy: Arc<PolicyHolder>,
        config: ProxyConfig,
        clock: Clock,
        sessions: SessionSealer,
        decisions: DecisionLog,
        resolver: Arc<dyn CredentialResolver>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            policy,
            clients: Clients::new(config.upstream_timeout, config.egress.clone())?,
            origins: OriginPolicy::new(&config.public_base, &config.allowed_origins),
            public_base: config.public_base,
            clock,
            sessions,
            decisions,
            limit: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            routes: virtual_server::RouteCache::default(),
            bridges: crate::legacy::Bridges::default(),
            bridge: crate::bridge::Bridge::default(),
            credentials: Credentials::new(resolver),
            rate: std::num::NonZeroU32::new(config.rate_limit_per_minute)
                .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n))),
            idp_keys: config.idp_keys,
        })
    }
}

pub use mcpgate_policy::urls::{mcp_url, resource_metadata, resource_metadata_url};

async fn protected_resource(path: web::Path<(String, String)>, state: web::Data<ProxyState>) -> HttpResponse {
    let (tenant, server) = path.into_inner();
    HttpResponse::Ok()
        .insert_header(("access-control-allow-origin", "*"))
        .insert_header(("cache-control", "public, max-age=300"))
        .json(resource_metadata(&state.public_base, &tenant, &server))
}

/// The tenant and server an MCP path names: `/{tenant}/mcp/{server}/server`, nothing else.
fn mcp_path(path: &str) -> Option<(&str, &str)> {
    let mut segments = path.strip_prefix('/')?.split('/');
    let (tenant, mcp, server, end) = (segments.next()?, segments.next()?, segments.next()?, segments.next()?);
    (segments.next().is_none() && mcp == "mcp" && end == "server" && !tenant.is_empty() && !server.is_empty())
        .then_some((tenant, server))
}

/// Registers the MCP route and its resource metadata on an app.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<ProxyState>) {
    // The MCP route first: every proxied request is matched against the routes before it. It
    // is an empty-prefix scope whose guard checks the path's shape, because a resource with
    // `{tenant}` and `{server}` segments is matched by a regex on every request (3 % of the
    // gateway's CPU per proxied call); any other path falls through to the routes after it.
    cfg.service(
        web::scope("")
            .guard(actix_web::guard::fn_guard(|ctx| mcp_path(ctx.head().uri.path()).is_some()))
            .app_data(state.clone())
            .default_service(web::to(handle)),
    )
    .service(
        web::resource("/.well-known/oauth-protected-resource/{tenant}/mcp/{server}/server")
            .app_data(state)
            .route(web::get().to(protected_resource)),
    );
}

pub use crate::error::{
    credential_required, rpc_error, ProxyError, CREDENTIAL_REQUIRED, INTERNAL, INVALID_PARAMS, INVALID_REQUEST,
    METHOD_NOT_FOUND, RATE_LIMITED, UPSTREAM_FAILED, URL_ELICITATION_REQUIRED,
};

/// One request's facts, for the decision it ends with.
pub struct Ctx {
    pub policy: Arc<Policy>,
    pub tenant: String,
    pub tenant_id: Option<i64>,
    /// The snapshot has this server (looked up once, for the metrics' labels).
    pub server_known: bool,
    /// The server's id when it opted in to counting its tool calls by name.
    pub tool_metrics: Option<i64>,
    pub server: String,
    pub actor: String,
    pub method: Option<String>,
    pub name: Option<String>,
    pub request_id: Option<String>,
    pub started: Instant,
    pub log: DecisionLog,
    pub now: chrono::DateTime<chrono::Utc>,
    /// The client declared URL-mode elicitation (2025-11-25) when it initialized.
    pub url_elicitation: bool,
    /// The JSON-RPC id of the request (null for batches, GET and DELETE).
    pub id: Value,
}

impl Ctx {
    pub fn decide(&self, outcome: &str, reason: Option<&str>, upstream_status: Option<u16>) {
        self.decide_as(self.method.clone(), self.name.clone(), outcome, reason, upstream_status);
    }

    /// A decision about one message of a batch.
    pub fn decide_as(
        &self,
        method: Option<String>,
        name: Option<String>,
        outcome: &str,
        reason: Option<&str>,
        upstream_status: Option<u16>,
    ) {
        self.count(method.as_deref(), name.as_deref(), outcome, reason);
        self.log.emit(Decision {
            at: self.now,
            tenant_id: self.tenant_id,
            tenant: self.tenant.clone(),
            server: self.server.clone(),
            actor: self.actor.clone(),
            outcome: outcome.to_owned(),
            reason: reason.map(str::to_owned),
            method,
            name,
            snapshot_version: self.policy.version(),
            upstream_status,
            latency_ms: upstream_status.map(|_| self.started.elapsed().as_secs_f64() * 1000.0),
            request_id: self.request_id.clone(),
        });
    }

    /// Counts a decision. A server the snapshot does not have is counted as `-`, so
    /// made-up URLs cannot grow the label set.
    fn count(&self, method: Option<&str>, name: Option<&str>, outcome: &str, reason: Option<&str>) {
        let m = crate::metrics::get();
        if let (Some(id), Some("tools/call"), Some(name)) = (self.tool_metrics, method, name) {
            if let Some(entry) = self.policy.server_by_id(id) {
                // Only the names the server's managers chose; anything else a client sends is `other`.
                let known = entry.metrics_tools.binary_search_by(|t| t.as_str().cmp(name)).is_ok();
                m.tool_calls
                    .get_or_create(&crate::metrics::ToolLabels {
                        tenant: self.tenant.clone(),
                        server: self.server.clone(),
                        tool: if known { name.to_owned() } else { "other".into() },
                        outcome: outcome.into(),
                    })
                    .inc();
            }
        }
        let method = crate::metrics::method_label(method);
        m.requests
            .get_or_create(&crate::metrics::RequestLabels {
                tenant: if self.tenant_id.is_some() { self.tenant.clone() } else { "-".into() },
                server: if self.server_known { self.server.clone() } else { "-".into() },
                method: method.into(),
                outcome: outcome.into(),
                reason: reason.unwrap_or_default().into(),
            })
            .inc();
        m.request_seconds
            .get_or_create(&crate::metrics::MethodLabels { method: method.into() })
            .observe(self.started.elapsed().as_secs_f64());
        if reason == Some("rate_limited") {
            m.rate_limited.inc();
        }
    }

    /// The same decision for every message of a batch, each recorded on its own.
    pub fn decide_each(&self, items: &[Value], outcome: &str, reason: Option<&str>, upstream_status: Option<u16>) {
        for message in items {
            let (method, name) = method_and_name(message);
            self.decide_as(method, name, outcome, reason, upstream_status);
        }
    }

    /// The refusal's decision, recorded where it names a tenant, and its answer.
    pub fn refuse(&self, error: ProxyError) -> HttpResponse {
        self.refuse_for(&self.id, error)
    }

    /// As [`Self::refuse`], answering the message with this id.
    pub fn refuse_for(&self, id: &Value, error: ProxyError) -> HttpResponse {
        if error.recorded() && self.tenant_id.is_some() {
            self.decide(error.outcome(), Some(error.reason()), None);
        }
        if error.outcome() == "error" {
            tracing::warn!(tenant = self.tenant, server = self.server, error = %error, "upstream request failed");
        }
        error.response(id, self.url_elicitation)
    }

    pub fn upstream_failed(&self, id: &Value, error: &UpstreamError) -> HttpResponse {
        self.refuse_for(id, self.upstream_error(error.clone()))
    }

    /// A failure reaching this request's server.
    pub fn upstream_error(&self, error: UpstreamError) -> ProxyError {
        ProxyError::Upstream(format!("{}/{}", self.tenant, self.server), error)
    }
}

/// The last protocol revision with JSON-RPC batches (2025-06-18 removed them).
const BATCH_REVISION: &str = "2025-03-26";

/// A call to a tool the server's settings disable: refused before the upstream hears of it,
/// whether it comes alone or in a batch.
fn refused_call(message: &Value, settings: &[mcpgate_policy::ToolSetting]) -> Option<ProxyError> {
    let name = guard::name_of(message)?;
    (message.get("method").and_then(Value::as_str) == Some("tools/call") && tools::is_disabled(name, settings))
        .then(|| ProxyError::ToolDisabled(name.to_owned()))
}

/// Why each message of a batch is refused, if it is: the same checks as for one message.
pub fn batch_refusals(items: &[Value], settings: &[mcpgate_policy::ToolSetting]) -> Vec<Option<String>> {
    items.iter().map(|m| refused_call(m, settings).map(|e| e.to_string())).collect()
}

/// A batch is decided message by message, exactly as if each came alone: a refused message is
/// answered with its own error, and then nothing of the batch goes upstream (the others are
/// answered as not sent). Batches are refused outright where the protocol has none. `Some` is
/// the refusal.
fn check_batch(
    ctx: &Ctx,
    req: &HttpRequest,
    revision: Option<&str>,
    entry: &ServerEntry,
    items: &[Value],
) -> Option<HttpResponse> {
    let named = header(req, "mcp-method").is_some() || header(req, "mcp-name").is_some();
    if revision.is_some_and(|r| r != BATCH_REVISION) || named || entry.kind == ServerKind::Virtual {
        let why = match revision.filter(|r| *r != BATCH_REVISION) {
            Some(r) => format!("MCP {r} has no JSON-RPC batches; send one message per request"),
            None => "this server takes one JSON-RPC message per request".to_owned(),
        };
        let error = ProxyError::BatchNotSupported(why);
        ctx.decide_each(items, error.outcome(), Some(error.reason()), None);
        return Some(error.response(&Value::Null, false));
    }
    let refusals = batch_refusals(items, &entry.tool_settings);
    if refusals.iter().all(Option::is_none) {
        return None;
    }
    let mut answers = Vec::new();
    for (message, refusal) in items.iter().zip(&refusals) {
        let (method, name) = method_and_name(message);
        let reason = if refusal.is_some() { "tool_disabled" } else { "batch_refused" };
        ctx.decide_as(method, name, "denied", Some(reason), None);
        // Notifications and responses get no answer of their own.
        let Some(id) = message.get("id").filter(|_| message.get("method").is_some()) else { continue };
        let error = match refusal {
            Some(why) => json!({"code": INVALID_PARAMS, "message": why}),
            None => json!({"code": INVALID_REQUEST, "message": "not sent: another message of this batch was refused"}),
        };
        answers.push(json!({"jsonrpc": "2.0", "id": id, "error": error}));
    }
    Some(HttpResponse::Ok().json(answers))
}

/// Whether an initialize request declares URL-mode elicitation.
fn declares_url_elicitation(message: Option<&Value>) -> bool {
    message
        .filter(|m| m.get("method").and_then(Value::as_str) == Some("initialize"))
        .and_then(|m| m.pointer("/params/capabilities/elicitation/url"))
        .is_some()
}

/// Refused once the caller has used up their request budget.
fn within_budget(state: &ProxyState, subject: Subject) -> Result<(), ProxyError> {
    let Some(limiter) = state.rate.as_ref() else { return Ok(()) };
    if limiter.len() > RATE_KEYS {
        limiter.retain_recent();
    }
    let Err(not_until) = limiter.check_key(&subject_tag(subject)) else { return Ok(()) };
    let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
    Err(ProxyError::RateLimited { retry_after: wait.as_secs() + 1 })
}

async fn read_body(mut payload: web::Payload) -> Result<web::Bytes, ProxyError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ProxyError::BodyUnreadable)?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProxyError::BodyTooLarge(MAX_BODY / (1024 * 1024)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Longest wait for a client's message once it is authenticated and admitted.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// The method and name (tool, prompt or resource) a message names.
pub fn method_and_name(message: &Value) -> (Option<String>, Option<String>) {
    (message.get("method").and_then(Value::as_str).map(str::to_owned), guard::name_of(message).map(str::to_owned))
}

/// What a client's POST body is: one JSON-RPC message, or a batch of them.
#[derive(Debug, PartialEq)]
pub enum Body {
    One(Value),
    Batch(Vec<Value>),
}

/// Parses a POST body. A batch must be a non-empty array of objects; anything else that is
/// not one object is refused with the JSON-RPC error to send.
pub fn parse_body(body: &[u8]) -> Result<Body, ProxyError> {
    let invalid = |why: &str| ProxyError::InvalidRequest(why.to_owned());
    match serde_json::from_slice::<Value>(body) {
        Err(e) => Err(ProxyError::Parse(e.to_string())),
        Ok(Value::Array(items)) if items.is_empty() => Err(invalid("an empty batch")),
        Ok(Value::Array(items)) if items.iter().all(Value::is_object) => Ok(Body::Batch(items)),
        Ok(Value::Array(_)) => Err(invalid("every message of a batch must be a JSON-RPC object")),
        Ok(message) if message.is_object() => Ok(Body::One(message)),
        Ok(_) => Err(invalid("a JSON-RPC message must be an object")),
    }
}

pub async fn handle(req: HttpRequest, payload: web::Payload, state: web::Data<ProxyState>) -> HttpResponse {
    let started = Instant::now();
    let _in_flight = crate::metrics::Tracked::request();
    if !matches!(*req.method(), Method::POST | Method::GET | Method::DELETE) {
        return HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, "POST, GET, DELETE")).finish();
    }
    // The route's guard matched the path's shape.
    let Some((tenant, server)) = mcp_path(req.path()).map(|(t, s)| (t.to_owned(), s.to_owned())) else {
        return HttpResponse::NotFound().finish();
    };
    // Refused before anyone is known: nothing to record.
    if let Err(why) = state.origins.check(header(&req, "origin"), header(&req, "host")) {
        return ProxyError::ForbiddenOrigin(why).response(&Value::Null, false);
    }
    // One snapshot decides the whole request.
    let Some(policy) = state.policy.current() else {
        return ProxyError::NoPolicy.response(&Value::Null, false);
    };
    let entry = policy.server(&tenant, &server);
    let mut ctx = Ctx {
        tenant_id: policy.tenant(&tenant),
        server_known: entry.is_some(),
        tool_metrics: entry.filter(|s| !s.metrics_tools.is_empty()).map(|s| s.id),
        policy,
        tenant,
        server,
        actor: "anonymous".into(),
        method: None,
        name: None,
        request_id: req.extensions().get::<RequestId>().map(|r| r.to_string()),
        started,
        log: state.decisions.clone(),
        now: state.clock.now(),
        url_elicitation: false,
        id: Value::Null,
    };
    match serve(&req, payload, &state, &mut ctx).await {
        Ok(response) => response,
        Err(error) => ctx.refuse(error),
    }
}

/// A request's steps: authenticate, admit, parse, authorize, route (and relay). Each refuses
/// with a [`ProxyError`].
async fn serve(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ProxyState,
    ctx: &mut Ctx,
) -> Result<HttpResponse, ProxyError> {
    let (subject, idp_token) = authenticate(req, state, ctx).await?;
    ctx.actor = ctx.policy.subject_name(subject);
    within_budget(state, subject)?;
    let _permit = state.limit.clone().try_acquire_owned().map_err(|_| ProxyError::AtCapacity)?;
    let parsed = parse(req, payload).await?;
    ctx.id = parsed.message.as_ref().and_then(|m| m.get("id").cloned()).unwrap_or(Value::Null);
    (ctx.method, ctx.name) = match (&parsed.message, &parsed.batch) {
        (Some(m), _) => method_and_name(m),
        (None, Some(_)) => (Some("batch".into()), None),
        (None, None) => (Some(req.method().to_string()), None),
    };
    ctx.url_elicitation = declares_url_elicitation(parsed.message.as_ref());
    let policy = ctx.policy.clone();
    let entry = authorize(&policy, ctx, subject)?;
    if let Some(items) = &parsed.batch {
        if let Some(refused) = check_batch(ctx, req, header(req, VERSION_HEADER), entry, items) {
            return Ok(refused);
        }
    }
    let session = gateway_session(req, state, ctx, entry, subject)?;
    // A stateless (2026-07-28) request: its envelope is checked here, whatever serves it.
    let envelope = match &parsed.message {
        Some(m) if session.is_none() && crate::bridge::is_stateless(header(req, VERSION_HEADER), m) => {
            Some(crate::bridge::envelope(header(req, VERSION_HEADER), m)?)
        }
        _ => None,
    };
    let call = Call {
        req,
        body: parsed.body,
        message: parsed.message,
        batch: parsed.batch,
        id: ctx.id.clone(),
        session,
        subject,
        entry,
        idp_token,
        envelope,
    };
    if entry.kind == ServerKind::Virtual {
        return Ok(virtual_server::handle(state, ctx, call).await);
    }
    let over_stateless_upstream = crate::bridge::over_stateless_upstream(&call);
    if over_stateless_upstream || call.envelope.is_some() {
        // `relay` checks this too; these paths leave before it.
        if let Some(refusal) = call.message.as_ref().and_then(|m| refused_call(m, &entry.tool_settings)) {
            return Err(refusal);
        }
    }
    if over_stateless_upstream {
        return crate::bridge::in_stateless_session(state, ctx, &call).await;
    }
    if let Some(envelope) = &call.envelope {
        if entry.transport == Some(Transport::Sse) {
            let upstream = crate::bridge::upstream(state, ctx, &call).await?;
            return crate::legacy::stateless(state, ctx, &call, envelope, &upstream.auth).await;
        }
        if let Some(bridged) = crate::bridge::remote(state, ctx, &call, envelope).await? {
            return Ok(bridged);
        }
    }
    Ok(relay(state, ctx, call).await)
}

/// Who is calling, from the headers alone: nothing of an unauthenticated request's body is
/// read, and it holds no capacity. A JWT the gateway's own keys do not accept, and that names
/// another issuer than this gateway, is an identity provider's (returned too, for
/// `passthrough`); gateway tokens, the common case, are not parsed twice.
async fn authenticate(
    req: &HttpRequest,
    state: &ProxyState,
    ctx: &Ctx,
) -> Result<(Subject, Option<String>), ProxyError> {
    let bearer = header(req, header::AUTHORIZATION.as_str()).and_then(mcpgate_policy::token::from_bearer_header);
    let unauthenticated = || ProxyError::Unauthenticated {
        presented: bearer.is_some(),
        resource_metadata: resource_metadata_url(&state.public_base, &ctx.tenant, &ctx.server),
    };
    let Some(token) = bearer else { return Err(unauthenticated()) };
    if !mcpgate_policy::access_token::looks_like_jwt(token) {
        return ctx.policy.authenticate(token, ctx.now).map(|s| (s, None)).ok_or_else(unauthenticated);
    }
    // A gateway access token is for exactly this MCP URL.
    let audience = mcp_url(&state.public_base, &ctx.tenant, &ctx.server);
    if let Some(subject) = ctx.policy.authenticate_jwt(token, &state.public_base, &audience, ctx.now) {
        return Ok((subject, None));
    }
    let issuer = mcpgate_policy::idp::peek(token).map(|(iss, _)| iss);
    if issuer.as_deref().is_none_or(|iss| iss.trim_end_matches('/') == state.public_base) {
        return Err(unauthenticated());
    }
    match state.idp_keys.authenticate(&ctx.policy, token, ctx.tenant_id, ctx.now).await {
        Ok(caller) => Ok((caller.subject, Some(token.to_owned()))),
        Err(rejection) => Err(ProxyError::IdpToken {
            rejection,
            resource_metadata: resource_metadata_url(&state.public_base, &ctx.tenant, &ctx.server),
        }),
    }
}

/// A POST's message(s), read within the deadline, and the protocol headers checked against
/// them.
struct Parsed {
    body: web::Bytes,
    message: Option<Value>,
    batch: Option<Vec<Value>>,
}

async fn parse(req: &HttpRequest, payload: web::Payload) -> Result<Parsed, ProxyError> {
    let body = tokio::time::timeout(BODY_DEADLINE, read_body(payload))
        .await
        .map_err(|_| ProxyError::BodyTimeout(BODY_DEADLINE.as_secs()))??;
    let (message, batch) = match *req.method() == Method::POST {
        true => match parse_body(&body)? {
            Body::One(message) => (Some(message), None),
            Body::Batch(items) => (None, Some(items)),
        },
        false => (None, None),
    };
    let revision = header(req, VERSION_HEADER);
    // A stateless request names its version in the body too; the envelope check answers an
    // unknown one the way that revision prescribes.
    let stateless = message.as_ref().is_some_and(crate::bridge::names_version);
    if let Some(v) = revision.filter(|v| !guard::REVISIONS.contains(v) && !stateless) {
        return Err(ProxyError::InvalidRequest(format!(
            "unsupported MCP-Protocol-Version {v:?}; supported: {}",
            guard::REVISIONS.join(", ")
        )));
    }
    if let Some(message) = message.as_ref() {
        guard::check_headers(revision, header(req, "mcp-method"), header(req, "mcp-name"), message).map_err(|e| {
            if revision == Some(guard::STATELESS) {
                ProxyError::HeaderMismatch(e)
            } else {
                ProxyError::InvalidRequest(e)
            }
        })?;
    }
    Ok(Parsed { body, message, batch })
}

/// The server, if the caller may use it (the one decision, [`Policy::may_use`]'s parts): a
/// server outside the caller's tenant is as unknown as one that does not exist.
fn authorize<'p>(policy: &'p Policy, ctx: &Ctx, subject: Subject) -> Result<&'p ServerEntry, ProxyError> {
    let entry = policy
        .server(&ctx.tenant, &ctx.server)
        .filter(|e| policy.in_tenant(subject, e.tenant))
        .ok_or(ProxyError::NotFound)?;
    if policy.role(subject, entry).is_none() {
        let who = match subject {
            Subject::User(_) => "you are",
            Subject::VirtualAccount(_) => "this virtual account is",
        };
        return Err(ProxyError::NotCollaborator { who, tenant: ctx.tenant.clone(), server: ctx.server.clone() });
    }
    Ok(entry)
}

/// The client's gateway session, if it presents one: it must be ours, for this server and this
/// caller; anything else is a session that does not exist here (404 → re-initialize).
fn gateway_session(
    req: &HttpRequest,
    state: &ProxyState,
    ctx: &mut Ctx,
    entry: &ServerEntry,
    subject: Subject,
) -> Result<Option<(String, GatewaySession)>, ProxyError> {
    let Some(presented) = header(req, SESSION_HEADER) else { return Ok(None) };
    match state.sessions.open(presented) {
        Some(s) if s.server == entry.id && s.subject == subject_tag(subject) => {
            ctx.url_elicitation |= s.url_elicitation;
            Ok(Some((presented.to_owned(), s)))
        }
        _ => Err(ProxyError::UnknownSession),
    }
}

/// One authorized request on its way to the upstream(s).
pub struct Call<'a> {
    pub req: &'a HttpRequest,
    pub body: web::Bytes,
    pub message: Option<Value>,
    /// The messages of a JSON-RPC batch (protocol revision 2025-03-26 only), each already
    /// checked.
    pub batch: Option<Vec<Value>>,
    pub id: Value,
    /// The presented gateway session id and what it carries.
    pub session: Option<(String, GatewaySession)>,
    pub subject: Subject,
    pub entry: &'a ServerEntry,
    /// The caller's identity-provider token, when that is what authenticated the call: the
    /// only credential a `passthrough` server may receive.
    pub idp_token: Option<String>,
    /// A stateless (2026-07-28) request's checked `_meta` envelope.
    pub envelope: Option<crate::bridge::Envelope>,
}

fn upstream_method(method: &Method) -> http::Method {
    match *method {
        Method::GET => http::Method::GET,
        Method::DELETE => http::Method::DELETE,
        _ => http::Method::POST,
    }
}

/// Response headers to relay, with the session id translated back to the gateway's.
pub fn relay_headers(out: &mut actix_web::HttpResponseBuilder, upstream: &http::HeaderMap) {
    for name in RELAYED_RESPONSE {
        let value = upstream.get(http::HeaderName::from_static(name));
        if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
            out.insert_header((HeaderName::from_static(name), value));
        }
    }
}

/// The client's headers as they go to the upstream: the relayed ones, `Mcp-Param-*` and the
/// upstream session (the server's own headers and the credential are added when it is sent).
fn upstream_headers(call: &Call<'_>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::with_capacity(RELAYED_REQUEST.len() + 2);
    // Names from static strings: looking one up by `&str` copies a non-standard name first.
    for name in RELAYED_REQUEST {
        let value = call.req.headers().get(HeaderName::from_static(name));
        if let Some(value) = value.and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok()) {
            headers.append(http::HeaderName::from_static(name), value);
        }
    }
    for (name, value) in params_of(call.req) {
        if let (Ok(n), Ok(v)) =
            (http::HeaderName::from_bytes(name.as_str().as_bytes()), http::HeaderValue::from_bytes(value.as_bytes()))
        {
            headers.append(n, v);
        }
    }
    let upstream = call.session.as_ref().and_then(|(_, s)| s.upstreams.first()).and_then(Option::as_deref);
    if let Some(value) = upstream.and_then(|u| http::HeaderValue::from_str(u).ok()) {
        headers.insert(SESSION_HEADER, value);
    }
    headers
}

/// What to tell the caller when the upstream refuses the credential the gateway sent.
pub fn refused(state: &ProxyState, ctx: &Ctx, target: Target<'_>) -> CredentialError {
    let entry = target.server;
    if target.per_user() {
        CredentialError::ActionRequired {
            message: format!("{}/{} refused your credential; renew it.", ctx.tenant, entry.slug),
            url: crate::credentials::connect_url(&state.public_base, &ctx.tenant, &entry.slug),
        }
    } else {
        // The server's name goes in front of it as the error is shown (ProxyError::Upstream).
        CredentialError::Unavailable {
            message: "the upstream refused the gateway's credential (HTTP 401); ask a manager of the server to check its auth"
                .into(),
        }
    }
}

/// The upstream refused a client's `initialize` (HTTP 400). If it did so because it serves
/// only the stateless revision, the gateway bridges the session; otherwise the refusal goes
/// back as it came.
async fn initialize_refused(
    state: &ProxyState,
    ctx: &Ctx,
    call: &Call<'_>,
    response: crate::upstream::Relayed,
) -> HttpResponse {
    let mut out = HttpResponse::build(StatusCode::BAD_REQUEST);
    relay_headers(&mut out, response.headers());
    let body = http_body_util::BodyExt::collect(response.into_body()).await.map(|b| b.to_bytes()).unwrap_or_default();
    let code = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["error"]["code"].as_i64());
    if code == Some(crate::error::UNSUPPORTED_VERSION) {
        match crate::bridge::initialize_stateless(state, ctx, call).await {
            Ok(Some(bridged)) => return bridged,
            Ok(None) => {}
            Err(e) => return ctx.refuse(e),
        }
    }
    ctx.decide("allowed", None, Some(400));
    out.body(body)
}

/// A remote server: the request goes through as it is, with the upstream session id in place
/// of the gateway's, and the response streams back.
async fn relay(state: &ProxyState, ctx: &Ctx, call: Call<'_>) -> HttpResponse {
    let entry = call.entry;
    if let Some(refusal) = call.message.as_ref().and_then(|m| refused_call(m, &entry.tool_settings)) {
        return ctx.refuse(refusal);
    }
    let target = Target::own(entry);
    if target.passthrough() && call.idp_token.is_none() {
        // Only an identity-provider token may travel on; gateway tokens and PATs never leave.
        return ctx.refuse(ProxyError::PassthroughNeedsIdpToken(ctx.tenant.clone(), ctx.server.clone()));
    }
    let subject = subject_tag(call.subject);
    let mut auth =
        match state.credentials.for_call(target, &subject, ctx.policy.version(), call.idp_token.as_deref()).await {
            Ok(h) => h,
            Err(e) => return ctx.upstream_failed(&call.id, &e.into()),
        };
    if entry.transport == Some(Transport::Sse) {
        return crate::legacy::handle(state, ctx, call, auth).await;
    }
    let mut retried = false;
    let headers = upstream_headers(&call);
    let method = upstream_method(call.req.method());
    let response = loop {
        let sent = state.clients.relay(entry, &auth, method.clone(), headers.clone(), call.body.clone());
        let response = match sent.await {
            Ok(r) => r,
            Err(e) => return ctx.upstream_failed(&call.id, &e),
        };
        if target.per_user_oauth() {
            if let Some(scope) = crate::credentials::insufficient_scope(response.status(), response.headers()) {
                let error = state.credentials.step_up(target, &subject, &scope).await;
                return ctx.upstream_failed(&call.id, &error.into());
            }
        }
        if response.status() != http::StatusCode::UNAUTHORIZED || !target.needed() {
            break response;
        }
        // The upstream refused the credential: an OAuth token gets one refresh and retry;
        // after that (or for a key) the caller learns whose credential failed.
        if !retried && target.refreshable() {
            retried = true;
            match state.credentials.refreshed(target, &subject, ctx.policy.version(), &auth).await {
                Ok(fresh) => {
                    auth = fresh;
                    continue;
                }
                Err(e) => return ctx.upstream_failed(&call.id, &e.into()),
            }
        }
        return ctx.upstream_failed(&call.id, &refused(state, ctx, target).into());
    };
    if call.session.is_none()
        && response.status() == http::StatusCode::BAD_REQUEST
        && call.message.as_ref().is_some_and(|m| m.get("method").and_then(Value::as_str) == Some("initialize"))
    {
        return initialize_refused(state, ctx, &call, response).await;
    }
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let outcome = if status.is_server_error() { "error" } else { "allowed" };
    match &call.batch {
        Some(items) => ctx.decide_each(items, outcome, None, Some(status.as_u16())),
        None => ctx.decide(outcome, None, Some(status.as_u16())),
    }
    let mut out = HttpResponse::build(status);
    relay_headers(&mut out, response.headers());
    match (&call.session, response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok())) {
        (Some((presented, _)), _) => {
            out.insert_header((SESSION_HEADER, presented.as_str()));
        }
        (None, Some(upstream)) => {
            crate::metrics::get().sessions_opened.inc();
            let sealed = state.sessions.seal(&GatewaySession {
                server: entry.id,
                subject: subject_tag(call.subject),
                upstreams: vec![Some(upstream.to_owned())],
                members: Vec::new(),
                failed: Vec::new(),
                url_elicitation: ctx.url_elicitation,
                input: None,
            });
            out.insert_header((SESSION_HEADER, sealed));
        }
        (None, None) => {}
    }
    // tools/list answers (also within a batch) pass through the server's tool settings.
    // Only the ids are copied: cloning the messages cost every call a copy of its arguments.
    let lists: Vec<Value> = match (&call.message, &call.batch) {
        (Some(m), _) => std::slice::from_ref(m),
        (None, Some(items)) => items.as_slice(),
        (None, None) => &[],
    }
    .iter()
    .filter(|m| m.get("method").and_then(Value::as_str) == Some("tools/list"))
    .filter_map(|m| m.get("id").cloned())
    .collect();
    if !lists.is_empty() && !entry.tool_settings.is_empty() && status.is_success() {
        let settings = entry.tool_settings.clone();
        return out.streaming(rewrite::messages(response.into(), move |mut message| {
            if message.get("id").is_some_and(|id| lists.contains(id)) {
                if let Some(result) = message.get_mut("result") {
                    tools::filter_list(result, &settings);
                }
            }
            message
        }));
    }
    // A POST that carries one request is answered once the answer is relayed.
    let answers = match (&call.message, &call.batch) {
        (Some(m), None) if m.get("method").is_some() => m.get("id").filter(|id| !id.is_null()).cloned(),
        _ => None,
    };
    let post = method == http::Method::POST;
    out.streaming(crate::passthrough::Passthrough::new(response, answers.filter(|_| post), post).await)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_mcp_path_shape_is_an_mcp_path() {
        assert_eq!(super::mcp_path("/acme/mcp/github/server"), Some(("acme", "github")));
        for other in [
            "/acme/mcp/github/server/",
            "/acme/mcp/github",
            "/acme/mcp//server",
            "//mcp/github/server",
            "/acme/api/github/server",
            "/api/v1/tenants/acme/servers",
            "acme/mcp/github/server",
            "/",
        ] {
            assert_eq!(super::mcp_path(other), None, "{other}");
        }
    }

    fn message() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z/_]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("(jsonrpc|id|method|params|name|[a-z]{1,5})", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any bytes at all: an error, never a panic.
        #[test]
        fn junk_bodies_are_refused_not_crashed_on(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_body(&bytes);
        }

        /// JSON of every shape: one object is one message, a non-empty array of objects is a
        /// batch with exactly those messages, and everything else is refused.
        #[test]
        fn bodies_parse_to_exactly_what_they_say(value in message()) {
            let bytes = serde_json::to_vec(&value).unwrap();
            match (parse_body(&bytes), &value) {
                (Ok(Body::One(m)), Value::Object(_)) => prop_assert_eq!(&m, &value),
                (Ok(Body::Batch(items)), Value::Array(all)) => {
                    prop_assert!(!all.is_empty() && all.iter().all(Value::is_object));
                    prop_assert_eq!(&items, all);
                }
                (Err(error), Value::Array(all)) => {
                    prop_assert!(all.is_empty() || !all.iter().all(Value::is_object));
                    prop_assert_eq!(error.rpc_code(), INVALID_REQUEST);
                }
                (Err(error), other) => {
                    prop_assert!(!other.is_object() && !other.is_array());
                    prop_assert_eq!(error.rpc_code(), INVALID_REQUEST);
                }
                (parsed, _) => prop_assert!(false, "{:?} from {}", parsed, value),
            }
        }

        /// A disabled tool is refused inside a batch wherever it stands, and nothing of that
        /// batch is let through.
        #[test]
        fn a_disabled_tool_anywhere_in_a_batch_stops_it(position in 0usize..6, others in prop::collection::vec("[a-z]{1,6}", 1..6)) {
            let settings = vec![mcpgate_policy::ToolSetting {
                name: "rm".into(), description: None, disabled: true, annotations: None,
            }];
            let mut items: Vec<Value> = others
                .iter()
                .enumerate()
                .map(|(i, name)| json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": format!("ok_{name}")}}))
                .collect();
            let at = position % (items.len() + 1);
            items.insert(at, json!({"jsonrpc": "2.0", "id": "x", "method": "tools/call", "params": {"name": "rm"}}));
            let refused = batch_refusals(&items, &settings);
            prop_assert_eq!(refused.iter().filter(|r| r.is_some()).count(), 1);
            prop_assert!(refused[at].as_deref().is_some_and(|why| why.contains("rm")));
        }
    }
}
