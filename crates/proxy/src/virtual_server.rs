//! Virtual servers: one gateway session fans out to one upstream session per member. Lists
//! are merged (tools renamed where names collide, filtered by allow-lists and tool settings);
//! calls go to the member that owns the tool, prompt or resource. A member that fails is left
//! out and named in the result's `_meta`; the others keep working.
//!
//! Requests an upstream sends the client in the middle of a call (sampling, elicitation,
//! roots) get their id prefixed with the member's position, so the client's answer can be
//! routed back to the member that asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use crate::credentials::{CredentialError, Headers, Target};
use crate::error::{rpc_error, ProxyError, INVALID_REQUEST};
use crate::rewrite;
use crate::routes::{relay_headers, Call, Ctx, ProxyState};
use crate::session::{subject_tag, GatewaySession};
use crate::tools::{self, MemberTools, Route};
use crate::upstream::{UpstreamError, SESSION_HEADER, VERSION_HEADER};
use mcpgate_policy::ServerEntry;

const ID_PREFIX: &str = "mcpgate:";
/// Upper bound on pages read from one member's list, against an upstream that never stops.
const MAX_PAGES: usize = 20;
const CACHE_LIMIT: usize = 10_000;

/// Recently computed tool routes per gateway session, so a call need not list every member
/// again. Only a cache: any replica recomputes a missing entry from the members.
#[derive(Default)]
pub struct RouteCache {
    inner: Mutex<HashMap<String, Arc<HashMap<String, Route>>>>,
}

impl RouteCache {
    fn get(&self, key: &str) -> Option<Arc<HashMap<String, Route>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn put(&self, key: String, routes: HashMap<String, Route>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.len() >= CACHE_LIMIT {
            inner.clear();
        }
        inner.insert(key, Arc::new(routes));
    }
}

/// The members as the snapshot knows them, with the upstream session of each.
struct Members<'a> {
    entries: Vec<(&'a ServerEntry, Option<&'a Vec<String>>)>,
    sessions: Vec<Option<String>>,
    failed: Vec<usize>,
    /// The caller's credential for each member, or why there is none.
    auth: Vec<Result<Headers, CredentialError>>,
    /// The caller, for credential refreshes.
    subject: String,
    /// The virtual server, which binds a stateless caller's input state.
    server: &'a ServerEntry,
    /// Whose outbound auth applies to each member.
    targets: Vec<Target<'a>>,
    /// The version of the snapshot deciding this request, which keys cached credentials.
    policy_version: i64,
    /// Per member, the protocol version of a session the bridge opened for a stateless caller.
    versions: Vec<Option<String>>,
    /// A stateless caller: its envelope and the `serverInfo` its results carry.
    stateless: Option<(crate::bridge::Envelope, Value)>,
    /// Per member, the `initialize` result of a session the bridge opened.
    initialized: Vec<Option<Value>>,
    /// Per member, the bridge's key for that session, so one the member forgot is reopened.
    bridged: Vec<Option<crate::bridge::Key>>,
    /// The caller's `Mcp-Param-*` headers, which go with its `tools/call` to the member.
    params: Vec<(String, Vec<u8>)>,
}

impl Members<'_> {
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.entries.len()).filter(|i| !self.failed.contains(i))
    }

    /// One message to member `i`, in that member's upstream session.
    async fn exchange(
        &self,
        state: &ProxyState,
        i: usize,
        version: Option<&str>,
        message: &Value,
    ) -> Result<(Option<String>, Option<Value>), UpstreamError> {
        let version = self.versions[i].as_deref().or(version);
        let result = self.exchange_in(state, i, self.sessions[i].as_deref(), version, message).await;
        if let (Err(UpstreamError::Status(404)), Some(key)) = (&result, &self.bridged[i]) {
            // The member forgot the bridged session: the caller's next request opens another.
            state.bridge.forget_key(key);
        }
        result
    }

    /// Member `i` with the caller's credential, as the bridge uses it.
    fn upstream(&self, i: usize) -> Result<crate::bridge::Upstream<'_>, CredentialError> {
        Ok(crate::bridge::Upstream {
            entry: self.entries[i].0,
            target: self.targets[i],
            auth: self.auth[i].clone()?,
            subject: self.subject.clone(),
            policy_version: self.policy_version,
        })
    }

    /// The answer to a request, as the caller's revision has it.
    fn reply(&self, id: &Value, method: &str, mut result: Value) -> HttpResponse {
        if let Some((_, info)) = &self.stateless {
            crate::bridge::stamp(method, &mut result, info);
        }
        ok(id, result)
    }

    /// `message` as member `i` takes it: a stateless caller's request to a member that takes
    /// stateless requests carries the caller's envelope.
    fn outgoing<'m>(&self, i: usize, message: &'m Value) -> std::borrow::Cow<'m, Value> {
        match &self.stateless {
            Some((envelope, _)) if self.sessions[i].as_deref() == Some(crate::bridge::STATELESS_UPSTREAM) => {
                std::borrow::Cow::Owned(envelope.wrap(message))
            }
            _ => std::borrow::Cow::Borrowed(message),
        }
    }

    /// One message to member `i` in the given upstream session, with the caller's credential;
    /// an OAuth credential the upstream refuses is refreshed once and the message sent again.
    async fn exchange_in(
        &self,
        state: &ProxyState,
        i: usize,
        session: Option<&str>,
        version: Option<&str>,
        message: &Value,
    ) -> Result<(Option<String>, Option<Value>), UpstreamError> {
        let message = &*self.outgoing(i, message);
        let entry = self.entries[i].0;
        let auth = self.auth[i].clone()?;
        match state.clients.exchange(entry, &auth, session, version, message).await {
            Err(UpstreamError::Status(401)) if self.targets[i].refreshable() => {
                let fresh =
                    state.credentials.refreshed(self.targets[i], &self.subject, self.policy_version, &auth).await?;
                state.clients.exchange(entry, &fresh, session, version, message).await
            }
            other => other,
        }
    }

    /// The same message to every live member, at once; individual failures are the members'.
    async fn broadcast(&self, state: &ProxyState, version: Option<&str>, message: &Value) {
        join_all(self.live().map(|i| self.exchange(state, i, version, message))).await;
    }
}

fn ok(id: &Value, result: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

pub async fn handle(state: &ProxyState, ctx: &Ctx, call: Call<'_>) -> HttpResponse {
    match serve(state, ctx, &call).await {
        Ok(response) => response,
        Err(error) => ctx.refuse(error),
    }
}

/// The members the caller reaches, with their upstream sessions and credentials.
async fn members<'a>(state: &ProxyState, ctx: &'a Ctx, call: &Call<'a>) -> Result<Members<'a>, ProxyError> {
    let entry = call.entry;
    let live: Vec<_> = entry
        .members
        .iter()
        .filter_map(|m| ctx.policy.server_by_id(m.server).map(|s| (s, m)))
        .filter(|(s, _)| s.kind == mcpgate_policy::ServerKind::Remote)
        // A role on the virtual server is no role on its members: each is decided on its own,
        // and the caller sees only the members they may use directly.
        .filter(|(s, _)| ctx.policy.role(call.subject, s).is_some())
        .collect();
    let entries: Vec<_> = live.iter().map(|(s, m)| (*s, m.enabled_tools.as_ref())).collect();
    let targets: Vec<Target> = live.iter().map(|(s, m)| Target::member(entry.id, s, m)).collect();
    let ids: Vec<i64> = entries.iter().map(|(s, _)| s.id).collect();
    let (sessions, failed) = match &call.session {
        Some((_, s)) if s.members == ids => (s.upstreams.clone(), s.failed.clone()),
        // The membership changed since the session began: the client starts over.
        Some(_) => return Err(ProxyError::StaleSession),
        None => (vec![None; entries.len()], Vec::new()),
    };
    let subject = subject_tag(call.subject);
    let policy_version = ctx.policy.version();
    let auth = join_all(
        targets
            .iter()
            .map(|target| state.credentials.for_call(*target, &subject, policy_version, call.idp_token.as_deref())),
    )
    .await;
    let count = entries.len();
    let mut members = Members {
        entries,
        sessions,
        failed,
        auth,
        subject,
        server: call.entry,
        targets,
        policy_version,
        versions: vec![None; count],
        stateless: None,
        initialized: vec![None; count],
        bridged: vec![None; count],
        params: crate::routes::param_headers(call.req),
    };
    if let (None, Some(envelope)) = (&call.session, &call.envelope) {
        bridge_members(state, &mut members, envelope).await;
        members.stateless = Some((envelope.clone(), server_info(ctx)));
    }
    Ok(members)
}

/// Member `i`'s `server/discover` result, if it is an upstream that takes stateless requests.
async fn discovered(state: &ProxyState, members: &Members<'_>, i: usize) -> Option<Value> {
    members.upstream(i).ok()?.discovered(state).await.ok().flatten()
}

/// How the bridge reaches a member for a stateless caller.
enum Bridged {
    /// The member takes stateless requests: its discovery result.
    Stateless(Value),
    /// A session opened (or reused) on the caller's behalf.
    Session(crate::bridge::Key, crate::bridge::Opened),
}

/// A stateless caller's upstream sessions with every member, opened (or reused) by the bridge;
/// a member that cannot be reached is left out, as at `initialize`.
async fn bridge_members(state: &ProxyState, members: &mut Members<'_>, envelope: &crate::bridge::Envelope) {
    // Sessions declare the caller's capabilities, input included: a member may ask the caller
    // for input mid-call, as a remote server may (see `forward`).
    let bridged = join_all((0..members.entries.len()).map(|i| {
        let upstream = members.upstream(i);
        async move {
            let mut upstream = upstream?;
            if let Some(discovered) = upstream.discovered(state).await.ok().flatten() {
                return Ok(Bridged::Stateless(discovered));
            }
            let (key, _, opened) = upstream.session(state, envelope).await?;
            Ok::<_, UpstreamError>(Bridged::Session(key, opened))
        }
    }))
    .await;
    for (i, bridged) in bridged.into_iter().enumerate() {
        match bridged {
            // A member that takes stateless requests needs no session.
            Ok(Bridged::Stateless(discovered)) => {
                members.sessions[i] = Some(crate::bridge::STATELESS_UPSTREAM.to_owned());
                members.versions[i] = Some(crate::guard::STATELESS.to_owned());
                members.initialized[i] = Some(discovered);
            }
            Ok(Bridged::Session(key, opened)) => {
                members.bridged[i] = Some(key);
                members.sessions[i] = opened.session;
                members.versions[i] = Some(opened.version);
                members.initialized[i] = Some(opened.initialized);
            }
            Err(e) => {
                tracing::warn!(member = members.entries[i].0.slug, error = %e, "a virtual-server member failed to open a bridged session");
                members.failed.push(i);
            }
        }
    }
}

/// The capabilities a virtual server offers, from its members' `initialize` results.
fn capabilities<'r>(results: impl Iterator<Item = &'r Value> + Clone) -> Value {
    let has = |capability: &str| results.clone().any(|r| r["capabilities"].get(capability).is_some());
    let mut capabilities = Map::new();
    capabilities.insert("tools".into(), json!({}));
    for optional in ["prompts", "resources", "logging"] {
        if has(optional) {
            capabilities.insert(optional.into(), json!({}));
        }
    }
    Value::Object(capabilities)
}

/// The capabilities a virtual server offers a stateless caller: [`capabilities`], with the
/// list-change and subscription flags any member offers, since `subscriptions/listen` listens
/// to every member that offers them. (A session-ful caller gets none: a virtual server has no
/// standalone event stream.)
fn stateless_capabilities<'r>(results: impl Iterator<Item = &'r Value> + Clone) -> Value {
    let mut offered = capabilities(results.clone());
    let any =
        |capability: &str, flag: &str| results.clone().any(|r| r["capabilities"][capability][flag] == json!(true));
    for (capability, flag) in
        [("tools", "listChanged"), ("prompts", "listChanged"), ("resources", "listChanged"), ("resources", "subscribe")]
    {
        if offered.get(capability).is_some() && any(capability, flag) {
            offered[capability][flag] = json!(true);
        }
    }
    offered
}

/// `subscriptions/listen` for a stateless caller: every member that offers what is asked is
/// listened to, each the way the bridge reaches it (a member of the stateless revision gets a
/// listen of its own, a bridged session's event stream is shared), and what they send merges
/// into the caller's one stream. A resource is subscribed on the member that lists it, or on
/// every member taking subscriptions when none lists it (a templated URI).
async fn listen(
    state: &ProxyState,
    ctx: &Ctx,
    call: &Call<'_>,
    members: &Members<'_>,
    version: Option<&str>,
) -> Result<HttpResponse, ProxyError> {
    let live: Vec<usize> = members.live().filter(|i| members.initialized[*i].is_some()).collect();
    let offered_by = |i: usize| &members.initialized[i].as_ref().map_or(&Value::Null, |r| r)["capabilities"];
    let offered = stateless_capabilities(live.iter().filter_map(|i| members.initialized[*i].as_ref()));
    let plan = crate::bridge::Listen::plan(call, &offered)?;
    let info = server_info(ctx);
    if plan.is_empty() {
        return Ok(plan.respond(ctx, call, info, None));
    }
    let subscribers: Vec<usize> =
        live.iter().copied().filter(|i| offered_by(*i)["resources"]["subscribe"] == json!(true)).collect();
    let mut uris: HashMap<usize, Vec<String>> = HashMap::new();
    if !plan.uris.is_empty() {
        let (lists, _) = list_all(state, members, "resources/list", "resources", version).await;
        for uri in &plan.uris {
            let owner = lists.iter().find(|(_, items)| items.iter().any(|r| r["uri"] == uri.as_str())).map(|(i, _)| *i);
            for i in subscribers.iter().copied().filter(|i| owner.is_none_or(|o| o == *i)) {
                uris.entry(i).or_default().push(uri.clone());
            }
        }
    }
    let mut sources = Vec::new();
    for i in live {
        let mine = uris.remove(&i).unwrap_or_default();
        let Some(part) = plan.part(offered_by(i), &mine) else { continue };
        let failed = |e: UpstreamError| ctx.upstream_error(e);
        if members.sessions[i].as_deref() == Some(crate::bridge::STATELESS_UPSTREAM) {
            // A member of the stateless revision: its own listen, whose notifications pass on
            // (its acknowledgement and end are its own, and stay here).
            let request = json!({"jsonrpc": "2.0", "id": call.id, "method": "subscriptions/listen",
                "params": {"notifications": part}});
            let auth = members.auth[i].as_ref().map_err(|e| failed(UpstreamError::Credential(e.clone())))?;
            let outgoing = members.outgoing(i, &request);
            let post = state
                .clients
                .post_message(members.entries[i].0, auth, members.sessions[i].as_deref(), version, &outgoing)
                .map_err(failed)?;
            let response = state.clients.send(post).await.map_err(failed)?;
            if !response.status().is_success() {
                return Err(failed(UpstreamError::Status(response.status().as_u16())));
            }
            sources.push(crate::mrtr::messages(response));
            continue;
        }
        let Some(key) = &members.bridged[i] else { continue };
        for uri in &mine {
            let subscribe = json!({"jsonrpc": "2.0", "id": format!("{ID_PREFIX}subscribe"),
                "method": "resources/subscribe", "params": {"uri": uri}});
            members.exchange(state, i, version, &subscribe).await.map_err(failed)?;
        }
        let opened = crate::bridge::Opened {
            session: members.sessions[i].clone(),
            version: members.versions[i].clone().unwrap_or_else(|| crate::bridge::SESSION_REVISION.to_owned()),
            initialized: members.initialized[i].clone().unwrap_or_default(),
        };
        let upstream = members.upstream(i).map_err(|e| failed(UpstreamError::Credential(e)))?;
        sources.push(crate::bridge::session_events(state, &upstream, key, &opened).await.map_err(failed)?);
    }
    if sources.is_empty() {
        // Members offer it, but none of them the bridge can listen to (a legacy one).
        return Ok(plan.respond(ctx, call, info, None));
    }
    let merged: crate::mrtr::Messages = Box::pin(futures_util::stream::select_all(sources));
    Ok(plan.respond(ctx, call, info, Some(merged)))
}

/// One function per MCP method; the rest is refused.
async fn serve(state: &ProxyState, ctx: &Ctx, call: &Call<'_>) -> Result<HttpResponse, ProxyError> {
    let members = members(state, ctx, call).await?;
    match *call.req.method() {
        actix_web::http::Method::GET => {
            // Server-initiated messages of a virtual server arrive on the call that caused them.
            return Ok(HttpResponse::MethodNotAllowed().insert_header(("allow", "POST, DELETE")).json(
                json!({"error": "method_not_allowed", "message": "virtual servers offer no standalone event stream"}),
            ));
        }
        actix_web::http::Method::DELETE => return Ok(end_sessions(state, ctx, &members).await),
        _ => {}
    }
    let message = call
        .message
        .as_ref()
        .ok_or_else(|| ProxyError::InvalidRequest("send one JSON-RPC message per request".into()))?;
    let version = call.req.headers().get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    let unwrapped;
    let message = match &members.stateless {
        Some(_) => {
            match message.get("method").and_then(Value::as_str) {
                None => return Err(ProxyError::InvalidRequest("this response answers no request".into())),
                Some("subscriptions/listen") if message.get("id").is_some() => {
                    return listen(state, ctx, call, &members, version).await;
                }
                Some(m) if message.get("id").is_some() && !crate::bridge::bridged(m) => {
                    return Err(ProxyError::NoSuchMethod(m.to_owned()))
                }
                Some("server/discover") => {
                    let initialized: Vec<&Value> = members.initialized.iter().flatten().collect();
                    if initialized.is_empty() && !members.entries.is_empty() {
                        return Err(ProxyError::MembersUnavailable);
                    }
                    let offered = stateless_capabilities(initialized.into_iter());
                    let result = json!({"supportedVersions": crate::bridge::SUPPORTED, "capabilities": offered});
                    ctx.decide("allowed", None, Some(200));
                    return Ok(members.reply(&call.id, "server/discover", result));
                }
                Some(_) => {}
            }
            unwrapped = crate::bridge::unwrapped(message);
            &unwrapped
        }
        None => message,
    };
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return Ok(answer_to_member(state, ctx, &members, message, version).await);
    };
    if message.get("id").is_none() {
        // A notification: every member hears it.
        members.broadcast(state, version, message).await;
        ctx.decide("allowed", None, Some(202));
        return Ok(HttpResponse::Accepted().finish());
    }
    let id = &call.id;
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "initialize" => initialize(state, ctx, call, &members, message).await,
        "ping" => Ok(ok(id, json!({}))),
        "tools/list" => {
            let (tools, routes, unavailable) = list_tools(state, &members, call.entry, version).await;
            state.routes.put(route_key(call), routes);
            ctx.decide("allowed", None, Some(200));
            Ok(members.reply(id, method, with_unavailable(json!({"tools": tools}), &unavailable)))
        }
        "tools/call" => call_tool(state, ctx, call, &members, message, &params, version).await,
        "prompts/list" => {
            let (prompts, _, unavailable) = list_prompts(state, &members, version).await;
            ctx.decide("allowed", None, Some(200));
            Ok(members.reply(id, method, with_unavailable(json!({"prompts": prompts}), &unavailable)))
        }
        "prompts/get" => get_prompt(state, ctx, &members, message, &params, version).await,
        "completion/complete" => complete(state, ctx, &members, message, &params, version).await,
        "resources/list" | "resources/templates/list" => {
            let field = if method == "resources/list" { "resources" } else { "resourceTemplates" };
            let (lists, unavailable) = list_all(state, &members, method, field, version).await;
            let items: Vec<Value> = lists.into_iter().flat_map(|(_, items)| items).collect();
            ctx.decide("allowed", None, Some(200));
            Ok(members.reply(id, method, with_unavailable(json!({ field: items }), &unavailable)))
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            resource_request(state, ctx, &members, message, &params, version).await
        }
        "logging/setLevel" => {
            members.broadcast(state, version, message).await;
            ctx.decide("allowed", None, Some(200));
            Ok(ok(id, json!({})))
        }
        other => Err(ProxyError::MethodNotFound(other.to_owned())),
    }
}

/// DELETE: every member's upstream session ends with the gateway's.
async fn end_sessions(state: &ProxyState, ctx: &Ctx, members: &Members<'_>) -> HttpResponse {
    let ends = members.live().filter_map(|i| {
        let session = members.sessions[i].clone()?;
        let auth = members.auth[i].as_ref().ok()?;
        let request = state.clients.request(members.entries[i].0, auth, reqwest::Method::DELETE).ok()?;
        Some(state.clients.send(request.header(SESSION_HEADER, session)))
    });
    join_all(ends).await;
    ctx.decide("allowed", None, Some(200));
    HttpResponse::Ok().finish()
}

/// tools/call: to the member that owns the tool (routes cached per session, else listed now).
async fn call_tool(
    state: &ProxyState,
    ctx: &Ctx,
    call: &Call<'_>,
    members: &Members<'_>,
    message: &Value,
    params: &Value,
    version: Option<&str>,
) -> Result<HttpResponse, ProxyError> {
    let name = required_name(params, "tools/call")?;
    let key = route_key(call);
    let routes = match state.routes.get(&key) {
        Some(r) if r.contains_key(name) => r,
        _ => {
            let (_, routes, _) = list_tools(state, members, call.entry, version).await;
            state.routes.put(key.clone(), routes);
            state.routes.get(&key).unwrap_or_default()
        }
    };
    let Some(route) = routes.get(name) else {
        return Err(match tools::is_disabled(name, &call.entry.tool_settings) {
            true => ProxyError::ToolDisabled(name.to_owned()),
            false => ProxyError::UnknownTool(name.to_owned()),
        });
    };
    Ok(forward_as(state, ctx, members, route, message, version).await)
}

/// The tool or prompt a request names; a request that names none is malformed.
fn required_name<'v>(params: &'v Value, method: &str) -> Result<&'v str, ProxyError> {
    params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ProxyError::InvalidParams(format!("{method} needs params.name")))
}

/// Forwards a request to the member that owns the name, under the member's own name for it.
async fn forward_as(
    state: &ProxyState,
    ctx: &Ctx,
    members: &Members<'_>,
    route: &Route,
    message: &Value,
    version: Option<&str>,
) -> HttpResponse {
    let mut forwarded = message.clone();
    forwarded["params"]["name"] = Value::String(route.name.clone());
    forward(state, ctx, members, route.member, &forwarded, version).await
}

/// prompts/get: to the member that offers the prompt.
async fn get_prompt(
    state: &ProxyState,
    ctx: &Ctx,
    members: &Members<'_>,
    message: &Value,
    params: &Value,
    version: Option<&str>,
) -> Result<HttpResponse, ProxyError> {
    let name = required_name(params, "prompts/get")?;
    let route = offered_prompt(state, members, name, version).await?;
    Ok(forward_as(state, ctx, members, &route, message, version).await)
}

/// Where the virtual server's prompt `name` lives.
async fn offered_prompt(
    state: &ProxyState,
    members: &Members<'_>,
    name: &str,
    version: Option<&str>,
) -> Result<Route, ProxyError> {
    let (_, mut routes, _) = list_prompts(state, members, version).await;
    routes.remove(name).ok_or_else(|| ProxyError::InvalidParams(format!("prompt {name} is not offered by this server")))
}

/// completion/complete: a prompt argument's completions from the member that offers the
/// prompt (under its own name for it); a resource template's from the first member that
/// completes it.
async fn complete(
    state: &ProxyState,
    ctx: &Ctx,
    members: &Members<'_>,
    message: &Value,
    params: &Value,
    version: Option<&str>,
) -> Result<HttpResponse, ProxyError> {
    if params["ref"]["type"] != "ref/prompt" {
        return first_answer(state, ctx, members, message, version).await;
    }
    let name = params["ref"]["name"].as_str().unwrap_or_default();
    let route = offered_prompt(state, members, name, version).await?;
    let mut forwarded = message.clone();
    forwarded["params"]["ref"]["name"] = Value::String(route.name.clone());
    Ok(forward(state, ctx, members, route.member, &forwarded, version).await)
}

/// resources/read, subscribe and unsubscribe: to the member that lists the URI, else the first
/// that answers without an error (a templated URI, say).
async fn resource_request(
    state: &ProxyState,
    ctx: &Ctx,
    members: &Members<'_>,
    message: &Value,
    params: &Value,
    version: Option<&str>,
) -> Result<HttpResponse, ProxyError> {
    let uri = params.get("uri").and_then(Value::as_str).unwrap_or_default();
    let (lists, _) = list_all(state, members, "resources/list", "resources", version).await;
    let owner = lists.iter().find(|(_, items)| items.iter().any(|r| r["uri"] == uri)).map(|(i, _)| *i);
    match owner {
        Some(i) => Ok(forward(state, ctx, members, i, message, version).await),
        None => first_answer(state, ctx, members, message, version).await,
    }
}

fn route_key(call: &Call<'_>) -> String {
    match &call.session {
        Some((presented, _)) => presented.clone(),
        None => format!("{}:{}", call.entry.id, subject_tag(call.subject)),
    }
}

/// Who a virtual server says it is: the gateway, under the server's MCP name.
fn server_info(ctx: &Ctx) -> Value {
    json!({"name": format!("{}/{}", ctx.tenant, ctx.server), "version": env!("CARGO_PKG_VERSION")})
}

fn with_unavailable(mut result: Value, unavailable: &[String]) -> Value {
    if !unavailable.is_empty() {
        result["_meta"] = json!({"mcpgate/unavailable": unavailable});
    }
    result
}

async fn initialize(
    state: &ProxyState,
    ctx: &Ctx,
    call: &Call<'_>,
    members: &Members<'_>,
    message: &Value,
) -> Result<HttpResponse, ProxyError> {
    let replies =
        join_all((0..members.entries.len()).map(|i| members.exchange_in(state, i, None, None, message))).await;
    let mut upstreams = Vec::new();
    let mut failed = Vec::new();
    let mut results = Vec::new();
    let mut actions = Vec::new();
    for (i, reply) in replies.into_iter().enumerate() {
        match reply {
            Ok((session, Some(reply))) if reply.get("result").is_some() => {
                upstreams.push(session);
                results.push(reply["result"].clone());
            }
            Err(UpstreamError::Credential(CredentialError::ActionRequired { message, url })) => {
                // The member waits for the caller's own credential; the others work meanwhile.
                actions.push(json!({"server": members.entries[i].0.slug, "message": message, "url": url}));
                upstreams.push(None);
                failed.push(i);
            }
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "it refused to initialize".into(),
                };
                tracing::warn!(
                    member = members.entries[i].0.slug,
                    error = why,
                    "a virtual-server member failed to initialize"
                );
                upstreams.push(None);
                failed.push(i);
            }
        }
    }
    // A member that refused to initialize may be one that takes only stateless requests.
    let requested_version = message["params"]["protocolVersion"].clone();
    for i in failed.clone() {
        if actions.iter().any(|a| a["server"] == members.entries[i].0.slug.as_str()) {
            continue;
        }
        if let Some(discovered) = discovered(state, members, i).await {
            upstreams[i] = Some(crate::bridge::STATELESS_UPSTREAM.to_owned());
            failed.retain(|f| *f != i);
            results.push(json!({"protocolVersion": requested_version, "capabilities": discovered["capabilities"]}));
        }
    }
    if results.is_empty() && !actions.is_empty() {
        let first = &actions[0];
        let needed = CredentialError::ActionRequired {
            message: first["message"].as_str().unwrap_or_default().to_owned(),
            url: first["url"].as_str().unwrap_or_default().to_owned(),
        };
        return Err(ctx.upstream_error(needed.into()));
    }
    if results.is_empty() && !members.entries.is_empty() {
        return Err(ProxyError::MembersUnavailable);
    }
    let capabilities = capabilities(results.iter());
    let requested = message["params"]["protocolVersion"].clone();
    let version = results.first().map(|r| r["protocolVersion"].clone()).unwrap_or(requested);
    crate::metrics::get().sessions_opened.inc();
    let session = state.sessions.seal(&GatewaySession {
        server: call.entry.id,
        subject: subject_tag(call.subject),
        upstreams,
        members: members.entries.iter().map(|(m, _)| m.id).collect(),
        failed,
        url_elicitation: ctx.url_elicitation,
        input: None,
    });
    ctx.decide("allowed", None, Some(200));
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": server_info(ctx),
    });
    if !actions.is_empty() {
        // Shown by clients that display instructions; the same facts, structured, in _meta.
        let lines: Vec<String> = actions
            .iter()
            .map(|a| {
                format!("{} Open {}", a["message"].as_str().unwrap_or_default(), a["url"].as_str().unwrap_or_default())
            })
            .collect();
        result["instructions"] = json!(lines.join("\n"));
        result["_meta"] = json!({"mcpgate/actions": actions});
    }
    Ok(HttpResponse::Ok()
        .insert_header((SESSION_HEADER, session))
        .json(json!({"jsonrpc": "2.0", "id": call.id, "result": result})))
}

/// Every live member's complete list (`field` of `method`'s result), in member order, plus the
/// slugs of members that could not answer.
async fn list_all(
    state: &ProxyState,
    members: &Members<'_>,
    method: &str,
    field: &str,
    version: Option<&str>,
) -> (Vec<(usize, Vec<Value>)>, Vec<String>) {
    let lists = join_all(members.live().map(|i| async move {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            let params = cursor.as_ref().map_or(json!({}), |c| json!({"cursor": c}));
            let request =
                json!({"jsonrpc": "2.0", "id": format!("{ID_PREFIX}list:{page}"), "method": method, "params": params});
            let (_, reply) = members.exchange(state, i, version, &request).await?;
            let reply = reply.unwrap_or_default();
            let Some(result) = reply.get("result") else {
                return Err(UpstreamError::Protocol(format!("{method} failed: {}", reply["error"])));
            };
            items.extend(result[field].as_array().cloned().unwrap_or_default());
            cursor = result["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok::<_, UpstreamError>(items)
    }))
    .await;
    let mut ok = Vec::new();
    let mut unavailable = Vec::new();
    for ((i, list), (member, _)) in members.live().zip(lists).map(|(i, l)| ((i, l), members.entries[i])) {
        match list {
            Ok(items) => ok.push((i, items)),
            Err(e) => {
                tracing::warn!(member = member.slug, error = %e, "a virtual-server member failed to list");
                unavailable.push(member.slug.clone());
            }
        }
    }
    for &i in &members.failed {
        unavailable.push(members.entries[i].0.slug.clone());
    }
    (ok, unavailable)
}

/// The merged prompt list and the route of every offered name, plus unavailable members.
async fn list_prompts(
    state: &ProxyState,
    members: &Members<'_>,
    version: Option<&str>,
) -> (Vec<Value>, HashMap<String, Route>, Vec<String>) {
    let (lists, unavailable) = list_all(state, members, "prompts/list", "prompts", version).await;
    let member_lists: Vec<MemberTools> = lists
        .into_iter()
        .map(|(i, items)| MemberTools { member: i, slug: &members.entries[i].0.slug, tools: items })
        .collect();
    let (prompts, routes) = tools::merge(&member_lists);
    (prompts, routes, unavailable)
}

/// The merged, filtered tool list and the route of every offered name.
async fn list_tools(
    state: &ProxyState,
    members: &Members<'_>,
    entry: &ServerEntry,
    version: Option<&str>,
) -> (Vec<Value>, HashMap<String, Route>, Vec<String>) {
    let (lists, unavailable) = list_all(state, members, "tools/list", "tools", version).await;
    let member_tools: Vec<MemberTools> = lists
        .into_iter()
        .map(|(i, mut items)| {
            let (member, enabled) = members.entries[i];
            items.retain_mut(|tool| {
                let allowed = enabled.is_none_or(|names| names.iter().any(|n| tool["name"] == n.as_str()));
                allowed && tools::apply_settings(tool, &member.tool_settings)
            });
            MemberTools { member: i, slug: &member.slug, tools: items }
        })
        .collect();
    let (mut merged, mut routes) = tools::merge(&member_tools);
    merged.retain_mut(|tool| {
        let keep = tools::apply_settings(tool, &entry.tool_settings);
        if !keep {
            if let Some(name) = tool["name"].as_str() {
                routes.remove(name);
            }
        }
        keep
    });
    (merged, routes, unavailable)
}

/// Sends a request to one member and streams its answer back, with the ids of requests the
/// member makes of the client marked as the member's.
async fn forward(
    state: &ProxyState,
    ctx: &Ctx,
    members: &Members<'_>,
    member: usize,
    message: &Value,
    version: Option<&str>,
) -> HttpResponse {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let (server, _) = members.entries[member];
    let auth = match &members.auth[member] {
        Ok(auth) => auth,
        Err(e) => return ctx.upstream_failed(&id, &UpstreamError::Credential(e.clone())),
    };
    let version = members.versions[member].as_deref().or(version);
    if let Some((envelope, info)) = &members.stateless {
        let bridged = members.sessions[member].as_deref() != Some(crate::bridge::STATELESS_UPSTREAM);
        if bridged && crate::mrtr::resumed(message).is_some() {
            // A retry with the input this member asked for, routed to it as its request was.
            let mut upstream = match members.upstream(member) {
                Ok(upstream) => upstream,
                Err(e) => return ctx.upstream_failed(&id, &UpstreamError::Credential(e)),
            };
            let resuming = crate::bridge::Resuming { server: members.server, id: &id, server_info: Some(info.clone()) };
            return match crate::bridge::resume(state, ctx, resuming, message, envelope, &mut upstream).await {
                Ok(response) => response,
                Err(refused) => ctx.refuse_for(&id, refused),
            };
        }
    }
    let outgoing = members.outgoing(member, message);
    let mut request =
        match state.clients.post_message(server, auth, members.sessions[member].as_deref(), version, &outgoing) {
            Ok(r) => r,
            Err(e) => return ctx.upstream_failed(&id, &e),
        };
    if message.get("method").and_then(Value::as_str) == Some("tools/call") {
        if members.stateless.is_some() {
            for (name, value) in &members.params {
                request = request.header(name, value.as_slice());
            }
        } else if members.sessions[member].as_deref() == Some(crate::bridge::STATELESS_UPSTREAM) {
            // The gateway speaks the stateless revision to this member for a session-ful caller.
            if let Ok(mut upstream) = members.upstream(member) {
                for (name, value) in upstream.param_headers(state, message).await {
                    request = request.header(name, value);
                }
            }
        }
    }
    let response = match state.clients.send(request).await {
        Ok(r) => r,
        Err(e) => return ctx.upstream_failed(&id, &e),
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    ctx.decide(if status.is_server_error() { "error" } else { "allowed" }, None, Some(status.as_u16()));
    let mut out = HttpResponse::build(status);
    relay_headers(&mut out, response.headers());
    if let Some((envelope, info)) = &members.stateless {
        let translate = crate::bridge::translator(message, info.clone(), envelope, &[]);
        let session = members.sessions[member].as_deref();
        let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
        if status.is_success() && session != Some(crate::bridge::STATELESS_UPSTREAM) && crate::mrtr::interactive(method)
        {
            // What a bridged member asks mid-call goes to the caller as `input_required`, as
            // from a remote server; the state binds the virtual server and the request as the
            // member took it (the caller's retry is routed the same way before it resumes).
            let version = version.unwrap_or(crate::bridge::SESSION_REVISION);
            let caller = crate::mrtr::Caller {
                waiting: state.bridge.waiting.clone(),
                owner: (members.server.id, members.subject.clone()),
                capabilities: envelope.capabilities.clone(),
                id: id.clone(),
                session: session.map(str::to_owned),
                version: version.to_owned(),
                server_info: info.clone(),
                upstream: members.upstream(member).ok().and_then(|u| u.poster(state, session, version)),
                sealer: state.sessions.clone(),
                clock: state.clock.clone(),
                answered: Vec::new(),
                replay: Default::default(),
            };
            let messages = crate::mrtr::messages(response);
            return HttpResponse::Ok().content_type("text/event-stream").streaming(crate::mrtr::answer(
                messages,
                message.clone(),
                translate,
                caller,
            ));
        }
        return out.streaming(rewrite::messages_filtered(response, translate));
    }
    out.streaming(rewrite::messages(response, move |mut message| {
        if message.get("method").is_some() {
            if let Some(original) = message.get("id").cloned() {
                message["id"] = Value::String(format!("{ID_PREFIX}{member}:{original}"));
            }
        }
        message
    }))
}

/// A client's answer to a member's request: back to that member, with its own id restored.
async fn answer_to_member(
    state: &ProxyState,
    ctx: &Ctx,
    members: &Members<'_>,
    message: &Value,
    version: Option<&str>,
) -> HttpResponse {
    let target = message
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| id.strip_prefix(ID_PREFIX))
        .and_then(|rest| rest.split_once(':'))
        .and_then(|(member, original)| {
            Some((member.parse::<usize>().ok()?, serde_json::from_str::<Value>(original).ok()?))
        });
    let Some((member, original)) = target.filter(|(m, _)| *m < members.entries.len()) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            INVALID_REQUEST,
            "this response answers no request of this session",
        );
    };
    let mut message = message.clone();
    message["id"] = original;
    match members.exchange(state, member, version, &message).await {
        Ok(_) => HttpResponse::Accepted().finish(),
        Err(e) => ctx.upstream_failed(&Value::Null, &e),
    }
}

async fn first_answer(
    state: &ProxyState,
    ctx: &Ctx,
    members: &Members<'_>,
    message: &Value,
    version: Option<&str>,
) -> Result<HttpResponse, ProxyError> {
    let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
    let mut refusal = None;
    for i in members.live() {
        if let Ok((_, Some(mut reply))) = members.exchange(state, i, version, message).await {
            if let Some(result) = reply.get_mut("result") {
                ctx.decide("allowed", None, Some(200));
                if let Some((_, info)) = &members.stateless {
                    crate::bridge::stamp(method, result, info);
                }
                return Ok(HttpResponse::Ok().json(reply));
            }
            if reply.get("error").is_some() {
                refusal = Some(reply);
            }
        }
    }
    // No member has it: a member's own refusal (say, no such resource) says why.
    let Some(mut refusal) = refusal else { return Err(ProxyError::NoResourceOwner) };
    if members.stateless.is_some() {
        crate::bridge::modern_error(method, &message["params"]["uri"], &mut refusal["error"]);
    }
    ctx.decide("allowed", None, Some(200));
    Ok(HttpResponse::Ok().json(refusal))
}
