//! The stateless protocol revision (2026-07-28) for clients, whatever the upstream speaks.
//!
//! A stateless client sends no `initialize` and no session id: every request carries its
//! protocol version, capabilities and client info in `params._meta`. The gateway checks that
//! envelope itself (so every upstream gets the same, correct refusals), then:
//! - an upstream that speaks the revision gets the request relayed as it is;
//! - an upstream that only speaks a session-ful revision (2025-06-18, 2025-11-25) gets it over
//!   an upstream session the gateway opens and reuses on the caller's behalf, keyed by server,
//!   caller and declared capabilities, bounded and expired here. `server/discover` is answered
//!   from that session's `initialize` result, methods the revision removed are refused, and
//!   results are stamped as the revision requires (`resultType`, cache fields, `serverInfo`).
//!
//! The bridge's sessions are this replica's: another replica opens its own on first use, which
//! costs the caller one `initialize` round trip and nothing else (the client holds no state).
//!
//! The other way round, a session-ful client of an upstream that only takes stateless requests
//! (it refuses `initialize`): the gateway answers `initialize` from the upstream's
//! `server/discover`, and the gateway session it hands out marks the upstream
//! [`STATELESS_UPSTREAM`], so each later request goes out with the envelope and no session.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::OnceCell;

use crate::credentials::{Headers, Target};
use crate::error::ProxyError;
use crate::guard::STATELESS;
use crate::params::Declaration;
use crate::rewrite;
use crate::routes::{relay_headers, Call, Ctx, ProxyState};
use crate::session::subject_tag;
use crate::tools;
use crate::upstream::UpstreamError;
use mcpgate_policy::ServerEntry;

pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// The session-ful revision the gateway asks a bridged upstream for (it may answer older).
pub const SESSION_REVISION: &str = "2025-11-25";
/// In a gateway session, in place of an upstream session id: the upstream takes stateless
/// requests and has no sessions.
pub const STATELESS_UPSTREAM: &str = "mcpgate:stateless";
/// Stateless revisions the gateway serves.
pub const SUPPORTED: &[&str] = &[STATELESS];

/// Methods of the stateless revision a bridged upstream can serve.
const BRIDGED: &[&str] = &[
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
];
/// Whether the bridge serves `method` for stateless callers.
pub fn bridged(method: &str) -> bool {
    BRIDGED.contains(&method)
}

/// Results the revision makes cacheable: they carry `ttlMs` and `cacheScope`.
const CACHEABLE: &[&str] =
    &["tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read", "server/discover"];
/// Bridged upstream sessions one replica keeps, and how long an unused one is kept.
const MAX_SESSIONS: usize = 10_000;
const IDLE: Duration = Duration::from_secs(600);
/// How long what an upstream speaks is remembered.
const ERA_TTL: Duration = Duration::from_secs(300);
/// How often a listen stream shows it is alive (and finds out whether its caller left).
const LISTEN_KEEPALIVE: Duration = Duration::from_secs(15);
/// Pages of an upstream's `tools/list` read to learn its tools' header declarations.
const MAX_LIST_PAGES: usize = 20;

/// A stateless request's `_meta`, checked (its version is the one the gateway serves).
#[derive(Clone, Debug)]
pub struct Envelope {
    pub capabilities: Value,
    pub client_info: Option<Value>,
    /// The client asked for log messages (`notifications/message`) at this level.
    pub log_level: Option<String>,
}

impl Envelope {
    /// Capabilities an upstream session is opened with on this client's behalf: the client's
    /// own (what the upstream asks of it mid-request reaches it as `input_required`, see
    /// `mrtr`).
    fn session_capabilities(&self) -> Value {
        Value::Object(self.capabilities.as_object().cloned().unwrap_or_default())
    }

    /// A request as a stateless upstream takes it from this caller: with the caller's own
    /// envelope, so the upstream sees what the caller can answer (its `input_required` results
    /// go straight back to the caller).
    pub fn wrap(&self, message: &Value) -> Value {
        let mut message = enveloped(message);
        if let Some(meta) = message["params"]["_meta"].as_object_mut() {
            meta.insert(META_CAPABILITIES.into(), self.capabilities.clone());
            if let Some(info) = &self.client_info {
                meta.insert(META_CLIENT_INFO.into(), info.clone());
            }
            if let Some(level) = &self.log_level {
                meta.insert(META_LOG_LEVEL.into(), json!(level));
            }
        }
        message
    }

    pub fn fingerprint(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.session_capabilities().to_string().hash(&mut hasher);
        hasher.finish()
    }
}

fn meta(message: &Value) -> Option<&Map<String, Value>> {
    message.get("params")?.get("_meta")?.as_object()
}

/// Whether a message names its protocol version in `_meta`, as only the stateless revision does.
pub fn names_version(message: &Value) -> bool {
    meta(message).is_some_and(|m| m.contains_key(META_VERSION))
}

/// Whether a request outside any session speaks the stateless revision: it says so in its
/// `_meta`, or in the protocol header.
pub fn is_stateless(header: Option<&str>, message: &Value) -> bool {
    names_version(message) || header == Some(STATELESS)
}

/// The envelope of a stateless request, or the refusal the revision prescribes: `-32602` for a
/// missing field, `-32020` when the header and body disagree, `-32022` (naming the supported
/// versions) for a version the gateway does not serve; all with HTTP 400.
pub fn envelope(header: Option<&str>, message: &Value) -> Result<Envelope, ProxyError> {
    let Some(meta) = meta(message) else {
        return Err(ProxyError::BadEnvelope(format!(
            "params._meta is required under protocol revision {STATELESS} (with {META_VERSION} and {META_CAPABILITIES})"
        )));
    };
    let Some(version) = meta.get(META_VERSION).and_then(Value::as_str) else {
        return Err(ProxyError::BadEnvelope(format!("params._meta needs {META_VERSION}")));
    };
    let Some(capabilities) = meta.get(META_CAPABILITIES).filter(|c| c.is_object()) else {
        return Err(ProxyError::BadEnvelope(format!("params._meta needs {META_CAPABILITIES} (an object)")));
    };
    if let Some(header) = header.filter(|h| *h != version) {
        return Err(ProxyError::HeaderMismatch(format!(
            "the MCP-Protocol-Version header ({header}) does not match {META_VERSION} ({version})"
        )));
    }
    if !SUPPORTED.contains(&version) {
        return Err(ProxyError::UnsupportedVersion { requested: version.to_owned() });
    }
    Ok(Envelope {
        capabilities: capabilities.clone(),
        client_info: meta.get(META_CLIENT_INFO).cloned(),
        log_level: meta.get(META_LOG_LEVEL).and_then(Value::as_str).map(str::to_owned),
    })
}

/// The request as a session-ful upstream takes it: the stateless envelope's keys leave
/// `_meta` (a progress token and anything else stay).
pub fn unwrapped(message: &Value) -> Value {
    let mut message = message.clone();
    if let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) {
        if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
            meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
            if meta.is_empty() {
                params.remove("_meta");
            }
        }
    }
    message
}

/// A message as a stateless upstream takes it from a session-ful caller: requests carry the
/// envelope (the caller's capabilities were declared to the gateway, which relays none of the
/// upstream's requests back, so none are declared).
pub fn enveloped(message: &Value) -> Value {
    let mut message = message.clone();
    if message.get("method").is_none() {
        return message;
    }
    if !message.get("params").is_some_and(Value::is_object) {
        message["params"] = json!({});
    }
    let params = &mut message["params"];
    if !params.get("_meta").is_some_and(Value::is_object) {
        params["_meta"] = json!({});
    }
    if let Some(meta) = params["_meta"].as_object_mut() {
        meta.insert(META_VERSION.into(), json!(STATELESS));
        meta.entry(META_CAPABILITIES).or_insert_with(|| json!({}));
        meta.entry(META_CLIENT_INFO)
            .or_insert_with(|| json!({"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")}));
    }
    message
}

/// A session-ful result as the stateless revision has it: a `resultType`, cache fields on
/// cacheable results (not cached: the gateway cannot know for how long the upstream's answer
/// holds, and it is the caller's own), and who answered in `_meta`.
pub fn stamp(method: &str, result: &mut Value, server_info: &Value) {
    let Some(fields) = result.as_object_mut() else { return };
    fields.entry("resultType").or_insert_with(|| json!("complete"));
    if CACHEABLE.contains(&method) {
        fields.entry("ttlMs").or_insert_with(|| json!(0));
        fields.entry("cacheScope").or_insert_with(|| json!("private"));
    }
    if let Some(meta) = fields.entry("_meta").or_insert_with(|| json!({})).as_object_mut() {
        meta.entry(META_SERVER_INFO).or_insert_with(|| server_info.clone());
    }
}

/// A `server/discover` result built from an `initialize` result. Its list-change and
/// subscription flags stand: the bridge serves `subscriptions/listen` over every upstream it
/// opens a session on (a bridged session's event stream, a legacy upstream's).
pub fn discover_result(initialized: &Value) -> Value {
    let mut result = json!({"supportedVersions": SUPPORTED, "capabilities": initialized["capabilities"].clone()});
    if let Some(instructions) = initialized.get("instructions").filter(|i| i.is_string()) {
        result["instructions"] = instructions.clone();
    }
    result
}

/// Capabilities without the list-change and subscription flags: what would need a stream the
/// bridge does not keep open.
fn without_subscriptions(capabilities: &Value) -> Value {
    let mut capabilities = capabilities.as_object().cloned().unwrap_or_default();
    for (_, capability) in capabilities.iter_mut() {
        if let Some(flags) = capability.as_object_mut() {
            flags.remove("listChanged");
            flags.remove("subscribe");
        }
    }
    Value::Object(capabilities)
}

/// An upstream session the bridge opened.
#[derive(Clone, Debug)]
pub struct Opened {
    /// `None` when the upstream runs without sessions.
    pub session: Option<String>,
    /// The revision the upstream agreed to.
    pub version: String,
    /// Its `initialize` result.
    pub initialized: Value,
}

impl Opened {
    pub fn server_info(&self) -> Value {
        self.initialized.get("serverInfo").cloned().unwrap_or_else(|| json!({"name": "upstream", "version": "0"}))
    }
}

/// A bridged session's key: server id, caller, and a fingerprint of the declared capabilities
/// and the upstream URL.
pub type Key = (i64, String, u64);

struct Slot {
    cell: Arc<OnceCell<Opened>>,
    used: Instant,
}

/// Where what an upstream speaks is remembered: its server and URL.
fn era_key(entry: &ServerEntry) -> (i64, String) {
    (entry.id, entry.url.clone().unwrap_or_default())
}

/// What an upstream speaks: its discovery result if the stateless revision, and when learned.
type Era = (Option<Value>, Instant);

/// The bridge's upstream sessions and what each upstream speaks, for one replica.
#[derive(Default)]
pub struct Bridge {
    sessions: Mutex<HashMap<Key, Slot>>,
    /// (server id, upstream URL) → (its `server/discover` result if it speaks the stateless
    /// revision, when learned). The URL is part of the key: a server moved to another upstream
    /// is asked again.
    eras: Mutex<HashMap<(i64, String), Era>>,
    /// Upstream answers held until the caller gives the input the upstream asked for.
    pub waiting: crate::mrtr::Waiting,
    /// Session-ful clients' answers the gateway waits for, to requests it put on their streams
    /// for an upstream's `input_required`.
    pub owed: crate::mrtr::Owed,
    /// Per bridged session, its upstream event stream (one GET, which the session can have only
    /// one of), shared by the caller's `subscriptions/listen` streams.
    events: Arc<Mutex<HashMap<Key, tokio::sync::broadcast::Sender<Value>>>>,
    /// (server id, upstream URL) → its tools' `x-mcp-header` declarations, and when learned:
    /// what the gateway mirrors into headers when it speaks the revision for a session-ful
    /// caller.
    params: Mutex<HashMap<(i64, String), Params>>,
}

/// An upstream's tools (every one, declaring or not) and their declarations, and when learned.
type Params = (HashMap<String, Vec<Declaration>>, Instant);

/// How long an upstream's unknown tool is taken not to exist before its list is asked again.
const PARAMS_RECHECK: Duration = Duration::from_secs(10);

impl Bridge {
    fn slot(&self, key: &Key) -> Arc<OnceCell<Opened>> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(slot) = sessions.get_mut(key) {
            slot.used = now;
            return slot.cell.clone();
        }
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| now.duration_since(s.used) < IDLE);
            if sessions.len() >= MAX_SESSIONS {
                // Full of live sessions: the least recently used one goes (its next request
                // opens a new one).
                if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone()) {
                    sessions.remove(&oldest);
                }
            }
        }
        let cell = Arc::new(OnceCell::new());
        sessions.insert(key.clone(), Slot { cell: cell.clone(), used: now });
        cell
    }

    /// Forgets a session the upstream no longer knows, unless it was replaced already.
    pub fn forget(&self, key: &Key, cell: &Arc<OnceCell<Opened>>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.get(key).is_some_and(|s| Arc::ptr_eq(&s.cell, cell)) {
            sessions.remove(key);
        }
    }

    /// Forgets a session, whichever it is now.
    pub fn forget_key(&self, key: &Key) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn era(&self, server: &(i64, String)) -> Option<Option<Value>> {
        let eras = self.eras.lock().unwrap_or_else(|p| p.into_inner());
        eras.get(server).filter(|(_, at)| at.elapsed() < ERA_TTL).map(|(modern, _)| modern.clone())
    }

    /// The bridged session's upstream events, if its stream is open.
    fn events(&self, key: &Key) -> Option<tokio::sync::broadcast::Receiver<Value>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).get(key).map(|sender| sender.subscribe())
    }

    /// Shares an upstream event stream: a task passes its messages on until the upstream ends
    /// it or nobody listens any more.
    fn open_events(&self, key: Key, mut messages: crate::mrtr::Messages) -> tokio::sync::broadcast::Receiver<Value> {
        let (sender, receiver) = tokio::sync::broadcast::channel(64);
        let events = Arc::clone(&self.events);
        events.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), sender.clone());
        actix_web::rt::spawn(async move {
            let mut check = tokio::time::interval(LISTEN_KEEPALIVE);
            loop {
                tokio::select! {
                    message = messages.next() => {
                        // Sent to nobody: every listener left.
                        let Some(message) = message else { break };
                        if sender.send(message).is_err() {
                            break;
                        }
                    }
                    _ = check.tick() => if sender.receiver_count() == 0 { break },
                }
            }
            let mut events = events.lock().unwrap_or_else(|p| p.into_inner());
            if events.get(&key).is_some_and(|s| s.same_channel(&sender)) {
                events.remove(&key);
            }
        });
        receiver
    }

    /// A tool's declarations, if known: `None` when the upstream's tools were not learned
    /// lately, or the tool was not among them and the list may have changed since.
    fn declared(&self, server: &(i64, String), tool: &str) -> Option<Vec<Declaration>> {
        let params = self.params.lock().unwrap_or_else(|p| p.into_inner());
        let (tools, at) = params.get(server).filter(|(_, at)| at.elapsed() < ERA_TTL)?;
        match tools.get(tool) {
            Some(declared) => Some(declared.clone()),
            None if at.elapsed() < PARAMS_RECHECK => Some(Vec::new()),
            None => None,
        }
    }

    fn learn_params(&self, server: (i64, String), tools: HashMap<String, Vec<Declaration>>) {
        let mut params = self.params.lock().unwrap_or_else(|p| p.into_inner());
        if params.len() >= MAX_SESSIONS {
            params.clear();
        }
        params.insert(server, (tools, Instant::now()));
    }

    fn learn(&self, server: (i64, String), modern: Option<Value>) {
        let mut eras = self.eras.lock().unwrap_or_else(|p| p.into_inner());
        if eras.len() >= MAX_SESSIONS {
            eras.clear();
        }
        eras.insert(server, (modern, Instant::now()));
    }
}

/// One upstream and the caller's credential for it: enough to open and use bridged sessions.
pub struct Upstream<'a> {
    pub entry: &'a ServerEntry,
    pub target: Target<'a>,
    pub auth: Headers,
    pub subject: String,
    pub policy_version: i64,
}

impl Upstream<'_> {
    /// One message to the upstream; an OAuth credential it refuses is refreshed once.
    pub(crate) async fn exchange(
        &mut self,
        state: &ProxyState,
        session: Option<&str>,
        version: Option<&str>,
        message: &Value,
    ) -> Result<(Option<String>, Option<Value>), UpstreamError> {
        match state.clients.exchange(self.entry, &self.auth, session, version, message).await {
            Err(UpstreamError::Status(401)) if self.target.refreshable() => {
                self.auth =
                    state.credentials.refreshed(self.target, &self.subject, self.policy_version, &self.auth).await?;
                state.clients.exchange(self.entry, &self.auth, session, version, message).await
            }
            other => other,
        }
    }

    /// Whether the upstream speaks the stateless revision: asked once with `server/discover`
    /// and remembered for a while. An upstream that answers anything but a discovery result
    /// naming the revision is taken to speak an earlier one.
    pub async fn speaks_stateless(&mut self, state: &ProxyState) -> Result<bool, UpstreamError> {
        Ok(self.discovered(state).await?.is_some())
    }

    /// The upstream's `server/discover` result, if it speaks the stateless revision.
    pub async fn discovered(&mut self, state: &ProxyState) -> Result<Option<Value>, UpstreamError> {
        let server = era_key(self.entry);
        if let Some(known) = state.bridge.era(&server) {
            return Ok(known);
        }
        let probe = json!({"jsonrpc": "2.0", "id": "mcpgate:discover", "method": "server/discover", "params": {"_meta": {
            META_VERSION: STATELESS,
            META_CAPABILITIES: {},
            META_CLIENT_INFO: {"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")},
        }}});
        let modern = match self.exchange(state, None, Some(STATELESS), &probe).await {
            Ok((_, Some(reply))) => reply
                .get("result")
                .filter(|r| r["supportedVersions"].as_array().is_some_and(|v| v.iter().any(|v| v == STATELESS)))
                .cloned(),
            // Refused outright (400, 404, 405…): an earlier revision's server.
            Ok(_) | Err(UpstreamError::Status(_)) | Err(UpstreamError::Protocol(_)) => None,
            Err(e) => return Err(e),
        };
        state.bridge.learn(server, modern.clone());
        Ok(modern)
    }

    /// The `Mcp-Param-*` headers a session-ful caller's `tools/call` needs when the gateway
    /// sends it to this upstream, which speaks the stateless revision: from the tool's input
    /// schema, learned from the upstream's `tools/list` (asked again after a while, or for a
    /// tool it did not list).
    pub async fn param_headers(&mut self, state: &ProxyState, message: &Value) -> Vec<(String, String)> {
        let (Some("tools/call"), Some(tool)) =
            (message.get("method").and_then(Value::as_str), message["params"]["name"].as_str())
        else {
            return Vec::new();
        };
        let server = era_key(self.entry);
        let declared = match state.bridge.declared(&server, tool) {
            Some(declared) => declared,
            None => {
                let tools = self.declarations(state).await;
                let declared = tools.get(tool).cloned().unwrap_or_default();
                state.bridge.learn_params(server, tools);
                declared
            }
        };
        crate::params::headers(&declared, &message["params"]["arguments"])
    }

    /// A POST of one message to the upstream session, to fill in and send later.
    pub(crate) fn poster(
        &self,
        state: &ProxyState,
        session: Option<&str>,
        version: &str,
    ) -> Option<reqwest::RequestBuilder> {
        state.clients.post_message(self.entry, &self.auth, session, Some(version), &json!({})).ok()
    }

    /// Every tool's declarations, from the upstream's `tools/list` (all pages, up to a bound).
    async fn declarations(&mut self, state: &ProxyState) -> HashMap<String, Vec<Declaration>> {
        let mut tools = HashMap::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let params = cursor.as_ref().map_or_else(|| json!({}), |c| json!({"cursor": c}));
            let list = json!({"jsonrpc": "2.0", "id": "mcpgate:tools", "method": "tools/list", "params": params});
            let Ok((_, Some(reply))) = self.exchange(state, Some(STATELESS_UPSTREAM), None, &list).await else {
                break;
            };
            for tool in reply["result"]["tools"].as_array().into_iter().flatten() {
                if let Some(name) = tool["name"].as_str() {
                    tools.insert(name.to_owned(), crate::params::declarations(&tool["inputSchema"]));
                }
            }
            cursor = reply["result"]["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        tools
    }

    /// Sends one message (with `extra` headers) and returns the response as it comes; an OAuth
    /// credential the upstream refuses is refreshed once, any other refused credential is the
    /// caller's error.
    async fn send(
        &mut self,
        state: &ProxyState,
        ctx: &Ctx,
        session: Option<&str>,
        version: Option<&str>,
        message: &Value,
        extra: &[(String, String)],
    ) -> Result<reqwest::Response, ProxyError> {
        let mut refreshed = false;
        loop {
            let mut request = state
                .clients
                .post_message(self.entry, &self.auth, session, version, message)
                .map_err(|e| ctx.upstream_error(e))?;
            for (name, value) in extra {
                request = request.header(name, value);
            }
            let response = state.clients.send(request).await.map_err(|e| ctx.upstream_error(e))?;
            if response.status() != reqwest::StatusCode::UNAUTHORIZED || !self.target.needed() {
                return Ok(response);
            }
            if refreshed || !self.target.refreshable() {
                return Err(ctx.upstream_error(crate::routes::refused(state, ctx, self.target).into()));
            }
            refreshed = true;
            self.auth = state
                .credentials
                .refreshed(self.target, &self.subject, self.policy_version, &self.auth)
                .await
                .map_err(|e| ctx.upstream_error(e.into()))?;
        }
    }

    /// The caller's bridged session on this upstream: the one already open, else a new one
    /// (concurrent first requests share one `initialize`).
    pub async fn session(
        &mut self,
        state: &ProxyState,
        envelope: &Envelope,
    ) -> Result<(Key, Arc<OnceCell<Opened>>, Opened), UpstreamError> {
        // Keyed by the upstream URL too: a server moved elsewhere gets new sessions.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (envelope.fingerprint(), &self.entry.url).hash(&mut hasher);
        let key = (self.entry.id, self.subject.clone(), hasher.finish());
        let cell = state.bridge.slot(&key);
        let opened = cell.get_or_try_init(|| self.open(state, envelope)).await?.clone();
        Ok((key, cell, opened))
    }

    async fn open(&mut self, state: &ProxyState, envelope: &Envelope) -> Result<Opened, UpstreamError> {
        let initialize = json!({"jsonrpc": "2.0", "id": "mcpgate:initialize", "method": "initialize",
            "params": initialize_params(envelope)});
        let (session, reply) = self.exchange(state, None, None, &initialize).await?;
        let initialized = reply
            .and_then(|r| r.get("result").cloned())
            .ok_or_else(|| UpstreamError::Protocol("the upstream refused to initialize".into()))?;
        let version = initialized["protocolVersion"].as_str().unwrap_or(SESSION_REVISION).to_owned();
        let ready = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.exchange(state, session.as_deref(), Some(&version), &ready).await?;
        crate::metrics::get().sessions_opened.inc();
        Ok(Opened { session, version, initialized })
    }
}

/// What the bridge asks an upstream for when it opens a session for a stateless caller.
pub fn initialize_params(envelope: &Envelope) -> Value {
    let client_info = envelope
        .client_info
        .clone()
        .unwrap_or_else(|| json!({"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")}));
    json!({
        "protocolVersion": SESSION_REVISION,
        "capabilities": envelope.session_capabilities(),
        "clientInfo": client_info,
    })
}

/// The credential for a remote server's own upstream, as `relay` gets it.
pub async fn upstream<'a>(state: &ProxyState, ctx: &Ctx, call: &Call<'a>) -> Result<Upstream<'a>, ProxyError> {
    let target = Target::own(call.entry);
    if target.passthrough() && call.idp_token.is_none() {
        return Err(ProxyError::PassthroughNeedsIdpToken(ctx.tenant.clone(), ctx.server.clone()));
    }
    let subject = subject_tag(call.subject);
    let auth = state
        .credentials
        .for_call(target, &subject, ctx.policy.version(), call.idp_token.as_deref())
        .await
        .map_err(|e| ctx.upstream_error(e.into()))?;
    Ok(Upstream { entry: call.entry, target, auth, subject, policy_version: ctx.policy.version() })
}

/// A remote server's stateless request whose envelope checked out. `Ok(None)`: the upstream
/// speaks the revision, relay the request as it is.
pub async fn remote(
    state: &ProxyState,
    ctx: &Ctx,
    call: &Call<'_>,
    envelope: &Envelope,
) -> Result<Option<HttpResponse>, ProxyError> {
    // Called only for stateless requests; `envelope` is `call.envelope`.
    let message = call.message.as_ref().ok_or_else(|| ProxyError::InvalidRequest("a JSON-RPC message".into()))?;
    // An upstream known to speak the revision is relayed to without fetching the credential
    // here: `relay` fetches it.
    if state.bridge.era(&era_key(call.entry)).is_some_and(|known| known.is_some()) {
        return Ok(None);
    }
    let mut upstream = upstream(state, ctx, call).await?;
    if upstream.speaks_stateless(state).await.map_err(|e| ctx.upstream_error(e))? {
        return Ok(None);
    }
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // A response to nothing: the bridge never relays the upstream's requests.
        return Err(ProxyError::InvalidRequest("this response answers no request".into()));
    };
    if message.get("id").is_none() {
        // A notification (a cancellation, say) reaches the caller's open session, if any.
        if let Ok((_, _, opened)) = upstream.session(state, envelope).await {
            let _ =
                upstream.exchange(state, opened.session.as_deref(), Some(&opened.version), &unwrapped(message)).await;
        }
        ctx.decide("allowed", None, Some(202));
        return Ok(Some(HttpResponse::Accepted().finish()));
    }
    if method == "subscriptions/listen" {
        let (key, _, opened) = upstream.session(state, envelope).await.map_err(|e| ctx.upstream_error(e))?;
        return listen(state, ctx, call, &mut upstream, &key, &opened).await.map(Some);
    }
    if !bridged(method) {
        return Err(ProxyError::NoSuchMethod(method.to_owned()));
    }
    if crate::mrtr::resumed(message).is_some() {
        let server = Resuming { server: call.entry, id: &call.id, server_info: None };
        return resume(state, ctx, server, message, envelope, &mut upstream).await.map(Some);
    }
    let (key, cell, mut opened) = upstream.session(state, envelope).await.map_err(|e| ctx.upstream_error(e))?;
    if method == "server/discover" {
        let mut result = discover_result(&opened.initialized);
        stamp(method, &mut result, &opened.server_info());
        ctx.decide("allowed", None, Some(200));
        return Ok(Some(HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": call.id, "result": result}))));
    }
    let request = unwrapped(message);
    let mut response =
        upstream.send(state, ctx, opened.session.as_deref(), Some(&opened.version), &request, &[]).await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND && opened.session.is_some() {
        // The upstream forgot the session (restarted, expired): one new session, once.
        state.bridge.forget(&key, &cell);
        (_, _, opened) = upstream.session(state, envelope).await.map_err(|e| ctx.upstream_error(e))?;
        response = upstream.send(state, ctx, opened.session.as_deref(), Some(&opened.version), &request, &[]).await?;
    }
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    ctx.decide(if status.is_server_error() { "error" } else { "allowed" }, None, Some(status.as_u16()));
    let translate = translator(message, opened.server_info(), envelope, &call.entry.tool_settings);
    if status.is_success() && crate::mrtr::interactive(method) {
        // The upstream may ask the caller for input on the way: its answer goes through
        // `mrtr`, which turns such a request into `input_required`.
        let caller = crate::mrtr::Caller {
            waiting: state.bridge.waiting.clone(),
            owner: (call.entry.id, upstream.subject.clone()),
            capabilities: envelope.capabilities.clone(),
            id: call.id.clone(),
            session: opened.session.clone(),
            version: opened.version.clone(),
            server_info: opened.server_info(),
            upstream: upstream.poster(state, opened.session.as_deref(), &opened.version),
            sealer: state.sessions.clone(),
            clock: state.clock.clone(),
            answered: Vec::new(),
            replay: Default::default(),
        };
        let messages = crate::mrtr::messages(response);
        return Ok(Some(HttpResponse::Ok().content_type("text/event-stream").streaming(crate::mrtr::answer(
            messages,
            message.clone(),
            translate,
            caller,
        ))));
    }
    let mut out = HttpResponse::build(status);
    relay_headers(&mut out, response.headers());
    Ok(Some(out.streaming(rewrite::messages_filtered(response, translate))))
}

/// `subscriptions/listen` over a bridged session: the upstream's own event stream (GET) on the
/// caller's session, shared by the caller's listen streams. Resource subscriptions are made on
/// the session. See [`Listen`].
async fn listen(
    state: &ProxyState,
    ctx: &Ctx,
    call: &Call<'_>,
    upstream: &mut Upstream<'_>,
    key: &Key,
    opened: &Opened,
) -> Result<HttpResponse, ProxyError> {
    let plan = Listen::plan(call, &opened.initialized["capabilities"])?;
    for uri in &plan.uris {
        let subscribe = json!({"jsonrpc": "2.0", "id": "mcpgate:subscribe", "method": "resources/subscribe",
            "params": {"uri": uri}});
        upstream
            .exchange(state, opened.session.as_deref(), Some(&opened.version), &subscribe)
            .await
            .map_err(|e| ctx.upstream_error(e))?;
    }
    if plan.is_empty() {
        return Ok(plan.respond(ctx, call, opened.server_info(), None));
    }
    let notes = session_events(state, upstream, key, opened).await.map_err(|e| ctx.upstream_error(e))?;
    Ok(plan.respond(ctx, call, opened.server_info(), Some(notes)))
}

/// A bridged session's upstream event stream (its GET), opened on first use and shared by the
/// caller's listens: the messages the upstream sends outside replies.
pub async fn session_events(
    state: &ProxyState,
    upstream: &Upstream<'_>,
    key: &Key,
    opened: &Opened,
) -> Result<crate::mrtr::Messages, UpstreamError> {
    if let Some(notes) = state.bridge.events(key) {
        return Ok(broadcast_messages(notes));
    }
    let mut get = state
        .clients
        .request(upstream.entry, &upstream.auth, reqwest::Method::GET)?
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .header(crate::upstream::VERSION_HEADER, opened.version.as_str());
    if let Some(session) = &opened.session {
        get = get.header(crate::upstream::SESSION_HEADER, session.as_str());
    }
    // No timeout: the stream lasts as long as someone listens.
    let response = get.send().await.map_err(|e| UpstreamError::Protocol(format!("{e}")))?;
    if !response.status().is_success() {
        return Err(UpstreamError::Status(response.status().as_u16()));
    }
    Ok(broadcast_messages(state.bridge.open_events(key.clone(), crate::mrtr::messages(response))))
}

/// A shared stream's messages, one listener's view: a listener that falls behind skips what it
/// missed; the stream ends when its source does.
pub fn broadcast_messages(notes: tokio::sync::broadcast::Receiver<Value>) -> crate::mrtr::Messages {
    Box::pin(futures_util::stream::unfold(notes, |mut notes| async move {
        loop {
            match notes.recv().await {
                Ok(message) => return Some((message, notes)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }))
}

/// The list changes a listen can ask for, and the capability that offers each.
const LIST_CHANGES: &[(&str, &str)] =
    &[("toolsListChanged", "tools"), ("promptsListChanged", "prompts"), ("resourcesListChanged", "resources")];

/// A `subscriptions/listen` request the gateway serves itself (over a bridged session, a legacy
/// upstream, a virtual server's members): what it asks for that the upstream(s) declared they
/// send (list changes, updates of the resources named), honoured and acknowledged first; then
/// the matching notifications, each marked with the subscription's id (the request's). The
/// stream lasts as long as the caller keeps it, or until the upstreams' own streams end.
pub struct Listen {
    honored: Map<String, Value>,
    /// Resources to subscribe to on the upstream session before the stream starts.
    pub uris: Vec<String>,
}

impl Listen {
    /// What of the request's `params.notifications` the upstream's capabilities can honour.
    pub fn plan(call: &Call<'_>, offered: &Value) -> Result<Self, ProxyError> {
        let message = call.message.as_ref().ok_or_else(|| ProxyError::InvalidRequest("a JSON-RPC message".into()))?;
        let filter = message["params"]["notifications"]
            .as_object()
            .ok_or_else(|| ProxyError::InvalidParams("subscriptions/listen needs params.notifications".into()))?;
        let mut honored = Map::new();
        for (name, capability) in LIST_CHANGES {
            if filter.get(*name) == Some(&json!(true)) && offered[capability]["listChanged"] == json!(true) {
                honored.insert((*name).into(), json!(true));
            }
        }
        let mut uris: Vec<String> = Vec::new();
        if offered["resources"]["subscribe"] == json!(true) {
            let named = filter.get("resourceSubscriptions").and_then(Value::as_array);
            uris = named.into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
        }
        if !uris.is_empty() {
            honored.insert("resourceSubscriptions".into(), json!(uris));
        }
        Ok(Self { honored, uris })
    }

    /// Nothing to listen for.
    pub fn is_empty(&self) -> bool {
        self.honored.is_empty()
    }

    /// What one upstream of several (a virtual server's member) is asked to send: the list
    /// changes honoured that it offers, and updates of `uris`. `None` when that is nothing.
    pub fn part(&self, offered: &Value, uris: &[String]) -> Option<Value> {
        let mut part = Map::new();
        for (name, capability) in LIST_CHANGES {
            if self.honored.contains_key(*name) && offered[capability]["listChanged"] == json!(true) {
                part.insert((*name).into(), json!(true));
            }
        }
        if !uris.is_empty() {
            part.insert("resourceSubscriptions".into(), json!(uris));
        }
        (!part.is_empty()).then_some(Value::Object(part))
    }

    /// The event stream: the acknowledgement, then what `notes` (the upstream's messages
    /// outside replies) brings that was asked for, until `notes` ends. With nothing to listen
    /// for, the acknowledgement and the end of the subscription, as the revision ends one.
    pub fn respond(
        self,
        ctx: &Ctx,
        call: &Call<'_>,
        server_info: Value,
        notes: Option<crate::mrtr::Messages>,
    ) -> HttpResponse {
        let Self { honored, uris } = self;
        let id = call.id.clone();
        let subscription = id.clone();
        let tag = move |mut notification: Value| {
            notification["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] = subscription.clone();
            notification
        };
        let ack = tag(json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honored.clone()}}));
        ctx.decide("allowed", None, Some(200));
        let first = futures_util::stream::once(std::future::ready(Ok::<_, actix_web::Error>(crate::mrtr::event(&ack))));
        let Some(notes) = notes.filter(|_| !honored.is_empty()) else {
            let end = json!({"jsonrpc": "2.0", "id": id, "result": {"resultType": "complete",
                "_meta": {"io.modelcontextprotocol/subscriptionId": id, META_SERVER_INFO: server_info}}});
            let last = futures_util::stream::once(std::future::ready(Ok(crate::mrtr::event(&end))));
            return HttpResponse::Ok().content_type("text/event-stream").streaming(first.chain(last));
        };
        let wanted = move |method: &str, params: &Value| match method {
            "notifications/tools/list_changed" => honored.contains_key("toolsListChanged"),
            "notifications/prompts/list_changed" => honored.contains_key("promptsListChanged"),
            "notifications/resources/list_changed" => honored.contains_key("resourcesListChanged"),
            "notifications/resources/updated" => params["uri"].as_str().is_some_and(|u| uris.iter().any(|s| s == u)),
            _ => false,
        };
        // Comments keep the stream visibly alive, and show the gateway when the caller has left.
        let mut beat = tokio::time::interval(LISTEN_KEEPALIVE);
        beat.reset();
        let rest = futures_util::stream::unfold((notes, beat), move |(mut notes, mut beat)| {
            let (wanted, tag) = (wanted.clone(), tag.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = beat.tick() => return Some((Ok(actix_web::web::Bytes::from_static(b": keepalive\n\n")), (notes, beat))),
                        note = notes.next() => match note {
                            Some(message) => {
                                let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
                                if message.get("id").is_none() && wanted(method, &message["params"]) {
                                    return Some((Ok(crate::mrtr::event(&tag(message))), (notes, beat)));
                                }
                            }
                            // The upstream closed its stream: so does the subscription.
                            None => return None,
                        },
                    }
                }
            }
        });
        HttpResponse::Ok().content_type("text/event-stream").streaming(first.chain(rest))
    }
}

/// The server a stateless caller's retry is for: the remote server itself, or a virtual server
/// whose member the request went to.
pub struct Resuming<'a> {
    /// Its id binds the retry's state; its tool settings apply to the answer.
    pub server: &'a ServerEntry,
    /// The retry's id.
    pub id: &'a Value,
    /// Who the answer says answers, when not the upstream (a virtual server).
    pub server_info: Option<Value>,
}

/// A stateless caller's retry (`message`, as the upstream takes it) with the input the upstream
/// asked for: the input goes to the upstream, and the upstream's answer held since goes on to
/// the caller. Where nothing is held (another replica took the first request), the request runs
/// again and the upstream gets the caller's answers as it asks.
pub async fn resume(
    state: &ProxyState,
    ctx: &Ctx,
    resuming: Resuming<'_>,
    message: &Value,
    envelope: &Envelope,
    upstream: &mut Upstream<'_>,
) -> Result<HttpResponse, ProxyError> {
    let Resuming { server, id, server_info: answering } = resuming;
    let owner = (server.id, upstream.subject.clone());
    let waiting = &state.bridge.waiting;
    let Some(resumed) = crate::mrtr::resume(&state.sessions, &state.clock, waiting, &owner, message, id) else {
        return Err(ProxyError::InvalidParams(
            "invalid or expired requestState (not one this gateway gave this caller for this request); send the request again without it".into(),
        ));
    };
    let (rest, original, opened, answered, replay) = match resumed {
        crate::mrtr::Resumed::Again(result) => {
            ctx.decide("allowed", None, Some(200));
            return Ok(HttpResponse::Ok().json(result));
        }
        crate::mrtr::Resumed::Held { held, input, answered } => {
            upstream
                .exchange(state, held.session.as_deref(), Some(&held.version), &input)
                .await
                .map_err(|e| ctx.upstream_error(e))?;
            let opened = (held.session.clone(), held.version.clone(), held.server_info.clone());
            let (rest, original) = held.into_rest();
            (rest, original, opened, answered, Default::default())
        }
        crate::mrtr::Resumed::Replay(replay) => {
            let (_, _, opened) = upstream.session(state, envelope).await.map_err(|e| ctx.upstream_error(e))?;
            let original = crate::mrtr::replayed(message);
            let request = unwrapped(&original);
            let response =
                upstream.send(state, ctx, opened.session.as_deref(), Some(&opened.version), &request, &[]).await?;
            if !response.status().is_success() {
                return Err(ctx.upstream_error(UpstreamError::Status(response.status().as_u16())));
            }
            let info = answering.clone().unwrap_or_else(|| opened.server_info());
            let opened = (opened.session.clone(), opened.version.clone(), info);
            (crate::mrtr::messages(response), original, opened, Vec::new(), replay)
        }
    };
    ctx.decide("allowed", None, Some(200));
    let (session, version, server_info) = opened;
    let translate = translator(&original, server_info.clone(), envelope, &server.tool_settings);
    let caller = crate::mrtr::Caller {
        waiting: waiting.clone(),
        owner,
        capabilities: envelope.capabilities.clone(),
        id: id.clone(),
        upstream: upstream.poster(state, session.as_deref(), &version),
        session,
        version,
        server_info,
        sealer: state.sessions.clone(),
        clock: state.clock.clone(),
        answered,
        replay,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(crate::mrtr::answer(rest, original, translate, caller)))
}

/// What the caller sees of the upstream's messages on a bridged request: the reply, stamped
/// (a tool list filtered by the server's tool settings); progress and other notifications;
/// log messages only if asked for; never the upstream's own requests, which a stateless client
/// has no way to answer.
pub fn translator(
    request: &Value,
    server_info: Value,
    envelope: &Envelope,
    settings: &[mcpgate_policy::ToolSetting],
) -> impl FnMut(Value) -> Option<Value> + 'static {
    let logs = envelope.log_level.is_some();
    let settings = settings.to_vec();
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
    let uri = request["params"]["uri"].clone();
    move |mut message| {
        let is_request = message.get("method").is_some() && message.get("id").is_some();
        let is_log = message.get("method").and_then(Value::as_str) == Some("notifications/message");
        if is_request || (is_log && !logs) {
            return None;
        }
        if message.get("id") == Some(&id) {
            if let Some(result) = message.get_mut("result") {
                if method == "tools/list" && !settings.is_empty() {
                    tools::filter_list(result, &settings);
                }
                stamp(&method, result, &server_info);
            }
            if let Some(error) = message.get_mut("error") {
                modern_error(&method, &uri, error);
            }
        }
        Some(message)
    }
}

/// An earlier revision's error as the stateless one has it: a resource that does not exist
/// was `-32002`; it is now `-32602` with the URI in `data`.
pub fn modern_error(method: &str, uri: &Value, error: &mut Value) {
    if method == "resources/read" && error["code"] == crate::error::UPSTREAM_FAILED {
        error["code"] = json!(crate::error::INVALID_PARAMS);
        if !error.get("data").is_some_and(Value::is_object) {
            error["data"] = json!({});
        }
        error["data"].as_object_mut().map(|d| d.entry("uri").or_insert_with(|| uri.clone()));
    }
}

/// A session-ful client's `initialize` that the upstream refused as a revision it does not
/// serve: answered from the upstream's `server/discover` when it speaks the stateless revision,
/// with a gateway session that marks the upstream as such. `Ok(None)`: it does not.
pub async fn initialize_stateless(
    state: &ProxyState,
    ctx: &Ctx,
    call: &Call<'_>,
) -> Result<Option<HttpResponse>, ProxyError> {
    let mut upstream = upstream(state, ctx, call).await?;
    let Some(discovered) = upstream.discovered(state).await.map_err(|e| ctx.upstream_error(e))? else {
        return Ok(None);
    };
    let requested = call.message.as_ref().and_then(|m| m["params"]["protocolVersion"].as_str());
    let version =
        requested.filter(|v| crate::guard::REVISIONS.contains(v) && *v != STATELESS).unwrap_or(SESSION_REVISION);
    let server_info = discovered["_meta"]
        .get(META_SERVER_INFO)
        .or_else(|| discovered.get("serverInfo"))
        .cloned()
        .unwrap_or_else(|| json!({"name": call.entry.slug, "version": "0"}));
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": without_subscriptions(&discovered["capabilities"]),
        "serverInfo": server_info,
    });
    if let Some(instructions) = discovered.get("instructions").filter(|i| i.is_string()) {
        result["instructions"] = instructions.clone();
    }
    crate::metrics::get().sessions_opened.inc();
    let sealed = state.sessions.seal(&crate::session::GatewaySession {
        server: call.entry.id,
        subject: subject_tag(call.subject),
        upstreams: vec![Some(STATELESS_UPSTREAM.to_owned())],
        url_elicitation: ctx.url_elicitation,
        input: crate::mrtr::input_capabilities(
            &call.message.as_ref().map_or(Value::Null, |m| m["params"]["capabilities"].clone()),
        ),
        ..Default::default()
    });
    ctx.decide("allowed", None, Some(200));
    Ok(Some(
        HttpResponse::Ok()
            .insert_header((crate::upstream::SESSION_HEADER, sealed))
            .json(json!({"jsonrpc": "2.0", "id": call.id, "result": result})),
    ))
}

/// Whether a gateway session's upstream takes stateless requests.
pub fn over_stateless_upstream(call: &Call<'_>) -> bool {
    call.session
        .as_ref()
        .is_some_and(|(_, s)| s.upstreams.first().is_some_and(|u| u.as_deref() == Some(STATELESS_UPSTREAM)))
}

/// A request in a gateway session over an upstream that takes stateless requests: what the
/// revision removed is answered here, the rest goes out with the envelope.
pub async fn in_stateless_session(state: &ProxyState, ctx: &Ctx, call: &Call<'_>) -> Result<HttpResponse, ProxyError> {
    match *call.req.method() {
        actix_web::http::Method::GET => {
            return Ok(HttpResponse::MethodNotAllowed().insert_header(("allow", "POST, DELETE")).json(json!({
                "error": "method_not_allowed",
                "message": "this server's upstream offers no standalone event stream",
            })))
        }
        actix_web::http::Method::DELETE => {
            // Nothing upstream to end: the session lives only in its sealed id.
            ctx.decide("allowed", None, Some(200));
            return Ok(HttpResponse::Ok().finish());
        }
        _ => {}
    }
    let message = call
        .message
        .as_ref()
        .ok_or_else(|| ProxyError::InvalidRequest("send one JSON-RPC message per request".into()))?;
    let presented = call.session.as_ref().map(|(p, _)| p.as_str()).unwrap_or_default();
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // The client's answer to a request the gateway asked it for an upstream's input.
        if state.bridge.owed.deliver(message, presented) {
            ctx.decide("allowed", None, Some(202));
            return Ok(HttpResponse::Accepted().finish());
        }
        return Err(ProxyError::InvalidRequest("this response answers no request".into()));
    };
    let mut upstream = upstream(state, ctx, call).await?;
    // What the client declared it can be asked goes upstream in every request's envelope.
    let input = call.session.as_ref().and_then(|(_, s)| s.input.clone());
    let envelope = Envelope { capabilities: input.unwrap_or_else(|| json!({})), client_info: None, log_level: None };
    let enveloped = envelope.wrap(message);
    let message = &enveloped;
    if message.get("id").is_none() {
        if method != "notifications/initialized" {
            upstream.send(state, ctx, Some(STATELESS_UPSTREAM), None, message, &[]).await?;
        }
        ctx.decide("allowed", None, Some(202));
        return Ok(HttpResponse::Accepted().finish());
    }
    match method {
        // Removed by the revision: liveness is the gateway's to answer, and log levels are set
        // per request there (the bridge asks for none).
        "ping" | "logging/setLevel" => {
            ctx.decide("allowed", None, Some(200));
            return Ok(HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": call.id, "result": {}})));
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            return Err(ProxyError::MethodNotFound(format!("{method} (the upstream has no subscriptions)")));
        }
        _ => {}
    }
    let params = upstream.param_headers(state, message).await;
    let response = upstream.send(state, ctx, Some(STATELESS_UPSTREAM), None, message, &params).await?;
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    ctx.decide(if status.is_server_error() { "error" } else { "allowed" }, None, Some(status.as_u16()));
    let shared = call.req.app_data::<actix_web::web::Data<ProxyState>>().cloned();
    if let (true, true, Some(shared)) = (status.is_success(), crate::mrtr::interactive(method), shared) {
        // The upstream may answer `input_required`: the gateway asks the client on this
        // stream and sends the request again with its answers.
        let retry = crate::mrtr::Retry {
            state: shared,
            entry: call.entry.clone(),
            auth: upstream.auth.clone(),
            params,
            session: presented.to_owned(),
        };
        return Ok(HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header((crate::upstream::SESSION_HEADER, presented))
            .streaming(crate::mrtr::ask_client(crate::mrtr::messages(response), message.clone(), retry)));
    }
    let mut out = HttpResponse::build(status);
    relay_headers(&mut out, response.headers());
    if call.session.is_some() {
        out.insert_header((crate::upstream::SESSION_HEADER, presented));
    }
    let (id, settings) = (call.id.clone(), call.entry.tool_settings.clone());
    let list = method == "tools/list" && !settings.is_empty();
    Ok(out.streaming(rewrite::messages(response, move |mut message| {
        if list && message.get("id") == Some(&id) {
            if let Some(result) = message.get_mut("result") {
                tools::filter_list(result, &settings);
            }
        }
        message
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(meta: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}})
    }

    #[test]
    fn the_envelope_is_checked_in_the_order_the_revision_gives() {
        let full = json!({META_VERSION: STATELESS, META_CAPABILITIES: {}});
        assert!(envelope(Some(STATELESS), &request(full.clone())).is_ok());
        assert!(envelope(None, &request(full)).is_ok(), "the header is optional in the body's presence");
        let missing = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
        assert!(matches!(envelope(Some(STATELESS), &missing), Err(ProxyError::BadEnvelope(_))));
        let no_caps = request(json!({META_VERSION: STATELESS}));
        assert!(matches!(envelope(Some(STATELESS), &no_caps), Err(ProxyError::BadEnvelope(_))));
        let future = request(json!({META_VERSION: "v999.0.0", META_CAPABILITIES: {}}));
        assert!(matches!(envelope(Some(STATELESS), &future), Err(ProxyError::HeaderMismatch(_))));
        match envelope(Some("v999.0.0"), &future) {
            Err(ProxyError::UnsupportedVersion { requested }) => assert_eq!(requested, "v999.0.0"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unwrapping_keeps_what_is_not_the_envelope() {
        let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "_meta": {
            META_VERSION: STATELESS, META_CAPABILITIES: {}, "progressToken": 7,
        }}});
        assert_eq!(unwrapped(&message)["params"], json!({"name": "echo", "_meta": {"progressToken": 7}}));
        let bare = request(json!({META_VERSION: STATELESS, META_CAPABILITIES: {}}));
        assert_eq!(unwrapped(&bare)["params"], json!({}));
    }

    #[test]
    fn results_are_stamped_without_overwriting_the_upstreams_own_fields() {
        let info = json!({"name": "fixture", "version": "1"});
        let mut list = json!({"tools": [], "ttlMs": 5000});
        stamp("tools/list", &mut list, &info);
        assert_eq!(list["resultType"], "complete");
        assert_eq!(list["ttlMs"], 5000);
        assert_eq!(list["cacheScope"], "private");
        assert_eq!(list["_meta"][META_SERVER_INFO], info);
        let mut call = json!({"content": []});
        stamp("tools/call", &mut call, &info);
        assert!(call.get("ttlMs").is_none(), "tool results are not cacheable");
    }

    #[test]
    fn discovery_offers_what_the_upstream_announced() {
        let initialized = json!({"protocolVersion": "2025-11-25", "capabilities": {
            "tools": {"listChanged": true}, "resources": {"subscribe": true, "listChanged": true}, "logging": {},
        }, "serverInfo": {"name": "x", "version": "1"}, "instructions": "be kind"});
        // Every upstream the bridge opens a session on has its `subscriptions/listen` served.
        let result = discover_result(&initialized);
        assert_eq!(result["supportedVersions"], json!([STATELESS]));
        assert_eq!(result["capabilities"], initialized["capabilities"]);
        assert_eq!(result["instructions"], "be kind");
    }

    #[test]
    fn a_member_is_asked_only_for_what_it_offers() {
        let listen = Listen {
            honored: json!({"toolsListChanged": true, "promptsListChanged": true}).as_object().cloned().unwrap(),
            uris: Vec::new(),
        };
        let tools_only = json!({"tools": {"listChanged": true}, "prompts": {}});
        assert_eq!(listen.part(&tools_only, &[]), Some(json!({"toolsListChanged": true})));
        assert_eq!(
            listen.part(&json!({"resources": {"subscribe": true}}), &["file:///a".to_owned()]),
            Some(json!({"resourceSubscriptions": ["file:///a"]}))
        );
        // Nothing it offers was asked for: it is not listened to.
        assert_eq!(listen.part(&json!({"resources": {"listChanged": true}}), &[]), None);
    }

    fn no_capabilities() -> Envelope {
        Envelope { capabilities: json!({}), client_info: None, log_level: None }
    }

    #[test]
    fn a_bridged_stream_never_carries_the_upstreams_requests() {
        let envelope = no_capabilities();
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}});
        let mut translate = translator(&call, json!({"name": "u"}), &envelope, &[]);
        assert!(translate(json!({"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage"})).is_none());
        assert!(translate(json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}})).is_none());
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}});
        assert_eq!(translate(progress.clone()), Some(progress));
        let reply = translate(json!({"jsonrpc": "2.0", "id": 1, "result": {"content": []}})).unwrap();
        assert_eq!(reply["result"]["resultType"], "complete");
    }

    #[test]
    fn a_missing_resource_is_reported_the_stateless_revisions_way() {
        let envelope = no_capabilities();
        let read = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "test://gone"}});
        let mut translate = translator(&read, json!({"name": "u"}), &envelope, &[]);
        let reply =
            translate(json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32002, "message": "no such resource"}}));
        assert_eq!(
            reply.unwrap()["error"],
            json!({"code": -32602, "message": "no such resource", "data": {"uri": "test://gone"}})
        );
    }
}
