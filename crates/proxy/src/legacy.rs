//! Bridging legacy HTTP+SSE upstreams (`transport: sse`, protocol 2024-11-05) to streamable
//! HTTP clients. The upstream protocol is a long-lived event stream plus a message endpoint,
//! so a bridge is process state: the replica that initialized a session holds its stream, and
//! another replica answers that session with 404 (the client then initializes again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::http::{Method, StatusCode};
use actix_web::HttpResponse;
use futures_util::StreamExt;
use serde_json::Value;
use sse_stream::{Sse, SseStream};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::credentials::Headers;
use crate::routes::{rpc_error, Call, Ctx, ProxyError, ProxyState, INVALID_REQUEST};
use crate::session::{subject_tag, GatewaySession};
use crate::tools;
use crate::upstream::{UpstreamError, SESSION_HEADER};

const MARK: &str = "legacy:";
/// Messages the upstream sends the client while no GET stream is open are kept up to this
/// many, then dropped.
const INBOX: usize = 256;
const MAX_BRIDGES: usize = 10_000;
/// A stateless caller's bridge unused this long is closed when the next one opens.
const STATELESS_IDLE: std::time::Duration = std::time::Duration::from_secs(600);
const STATELESS_PREFIX: &str = "stateless:";
/// Upstream messages a slow `subscriptions/listen` stream may fall behind by before it skips.
const LISTEN_BACKLOG: usize = 64;

struct Bridge {
    endpoint: url::Url,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    inbox: Mutex<Option<mpsc::Receiver<Value>>>,
    /// The same messages, for a stateless caller's `subscriptions/listen` streams (there may be
    /// several, and none).
    notes: broadcast::Sender<Value>,
    reader: tokio::task::AbortHandle,
    /// For a stateless caller's bridge: the upstream's `initialize` result.
    initialized: Mutex<Option<Value>>,
    /// When a stateless caller last used it (such bridges have no DELETE to end them).
    used: Mutex<std::time::Instant>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Default)]
pub struct Bridges {
    inner: Mutex<HashMap<String, Arc<Bridge>>>,
}

impl Bridges {
    fn get(&self, id: &str) -> Option<Arc<Bridge>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }
    fn remove(&self, id: &str) -> Option<Arc<Bridge>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
    }
}

/// The URL an `endpoint` event names, resolved against the event stream's; only on the
/// server's own origin, since messages carry the caller's credential. `Err` says what it named.
pub fn message_endpoint(stream: &url::Url, data: &str) -> Result<url::Url, String> {
    let endpoint = stream.join(data.trim()).map_err(|e| format!("an invalid message endpoint {data:?}: {e}"))?;
    if endpoint.origin() != stream.origin() {
        return Err(format!(
            "a message endpoint on another origin ({}), which is not used",
            endpoint.origin().ascii_serialization()
        ));
    }
    Ok(endpoint)
}

/// Opens the upstream's event stream and waits for its `endpoint` event.
async fn open(state: &ProxyState, call: &Call<'_>, auth: &Headers) -> Result<Arc<Bridge>, UpstreamError> {
    let request = state.clients.request(call.entry, auth, reqwest::Method::GET)?.header("accept", "text/event-stream");
    let response = state.clients.send(request).await?;
    if !response.status().is_success() {
        return Err(UpstreamError::Status(response.status().as_u16()));
    }
    let base = response.url().clone();
    let mut events = SseStream::from_bytes_stream(response.bytes_stream());
    let endpoint = tokio::time::timeout(state.clients.timeout, async {
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            if event.event.as_deref() == Some("endpoint") {
                let data = event.data.unwrap_or_default();
                return message_endpoint(&base, &data)
                    .map_err(|what| UpstreamError::Protocol(format!("the upstream named {what}")));
            }
        }
        Err(UpstreamError::Protocol("the event stream ended before naming its endpoint".into()))
    })
    .await
    .map_err(|_| UpstreamError::Timeout(state.clients.timeout.as_secs()))??;

    let (tx, rx) = mpsc::channel(INBOX);
    let (notes, _) = broadcast::channel(LISTEN_BACKLOG);
    let bridge = Arc::new_cyclic(|weak: &std::sync::Weak<Bridge>| {
        let weak = weak.clone();
        let listeners = notes.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                let Some(message) = event.data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) else { continue };
                let Some(bridge) = weak.upgrade() else { break };
                let is_reply = message.get("method").is_none();
                let waiter = message
                    .get("id")
                    .filter(|_| is_reply)
                    .and_then(|id| bridge.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id.to_string()));
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(message);
                    }
                    None => {
                        if listeners.receiver_count() > 0 {
                            let _ = listeners.send(message.clone());
                        }
                        let _ = tx.try_send(message);
                    }
                }
            }
        })
        .abort_handle();
        Bridge {
            endpoint,
            pending: Mutex::default(),
            inbox: Mutex::new(Some(rx)),
            notes,
            reader,
            initialized: Mutex::default(),
            used: Mutex::new(std::time::Instant::now()),
        }
    });
    Ok(bridge)
}

/// POSTs one message to the bridge's endpoint; for a request, waits for its reply on the stream.
async fn send(
    state: &ProxyState,
    call: &Call<'_>,
    bridge: &Bridge,
    auth: &Headers,
    message: &Value,
) -> Result<Option<Value>, UpstreamError> {
    let waiter = match (message.get("id"), message.get("method")) {
        (Some(id), Some(_)) => {
            let (tx, rx) = oneshot::channel();
            bridge.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), tx);
            Some(rx)
        }
        _ => None,
    };
    let request =
        state.clients.request_to(call.entry, auth, reqwest::Method::POST, bridge.endpoint.clone())?.json(message);
    let response = state.clients.send(request).await?;
    if !response.status().is_success() {
        return Err(UpstreamError::Status(response.status().as_u16()));
    }
    let Some(waiter) = waiter else { return Ok(None) };
    match tokio::time::timeout(state.clients.timeout, waiter).await {
        Ok(Ok(reply)) => Ok(Some(reply)),
        Ok(Err(_)) => Err(UpstreamError::Protocol("the upstream event stream closed".into())),
        Err(_) => Err(UpstreamError::Timeout(state.clients.timeout.as_secs())),
    }
}

pub async fn handle(state: &ProxyState, ctx: &Ctx, call: Call<'_>, auth: Headers) -> HttpResponse {
    let id = call.id.clone();
    let existing = call.session.as_ref().and_then(|(_, s)| s.upstreams.first().cloned().flatten());
    let bridge_id = existing.as_deref().and_then(|s| s.strip_prefix(MARK)).map(str::to_owned);
    let bridge = bridge_id.as_deref().and_then(|b| state.bridges.get(b));
    if call.session.is_some() && bridge.is_none() {
        return rpc_error(StatusCode::NOT_FOUND, &id, INVALID_REQUEST, "session not found; initialize a new one");
    }
    match *call.req.method() {
        Method::DELETE => {
            if let Some(b) = bridge_id {
                state.bridges.remove(&b);
            }
            ctx.decide("allowed", None, Some(200));
            HttpResponse::Ok().finish()
        }
        Method::GET => {
            let Some(inbox) = bridge.and_then(|b| b.inbox.lock().unwrap_or_else(|p| p.into_inner()).take()) else {
                return HttpResponse::Conflict().json(
                    serde_json::json!({"error": "conflict", "message": "this session's event stream is already open"}),
                );
            };
            ctx.decide("allowed", None, Some(200));
            let events = tokio_stream_from(inbox).map(|message| {
                Ok::<_, actix_web::Error>(crate::rewrite::encode(&Sse {
                    event: Some("message".into()),
                    data: Some(message.to_string()),
                    id: None,
                    retry: None,
                }))
            });
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .insert_header(("cache-control", "no-cache"))
                .streaming(events)
        }
        _ => {
            let Some(message) = call.message.as_ref().filter(|m| m.is_object()) else {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    &id,
                    INVALID_REQUEST,
                    "send one JSON-RPC message per request",
                );
            };
            let initializing = message.get("method").and_then(Value::as_str) == Some("initialize");
            let (bridge, new_session) = match bridge {
                Some(b) => (b, None),
                None if initializing => match open(state, &call, &auth).await {
                    Ok(b) => {
                        let key = uuid::Uuid::new_v4().to_string();
                        let mut all = state.bridges.inner.lock().unwrap_or_else(|p| p.into_inner());
                        if all.len() >= MAX_BRIDGES {
                            return rpc_error(
                                StatusCode::SERVICE_UNAVAILABLE,
                                &id,
                                -32002,
                                "too many open legacy sessions",
                            );
                        }
                        all.insert(key.clone(), b.clone());
                        (b, Some(key))
                    }
                    Err(e) => return ctx.upstream_failed(&id, &e),
                },
                None => return rpc_error(StatusCode::BAD_REQUEST, &id, INVALID_REQUEST, "initialize a session first"),
            };
            match send(state, &call, &bridge, &auth, message).await {
                Ok(None) => {
                    ctx.decide("allowed", None, Some(202));
                    HttpResponse::Accepted().finish()
                }
                Ok(Some(mut reply)) => {
                    ctx.decide("allowed", None, Some(200));
                    if ctx.method.as_deref() == Some("tools/list") {
                        if let Some(result) = reply.get_mut("result") {
                            tools::filter_list(result, &call.entry.tool_settings);
                        }
                    }
                    let mut out = HttpResponse::Ok();
                    if let Some(key) = new_session {
                        out.insert_header((
                            SESSION_HEADER,
                            state.sessions.seal(&GatewaySession {
                                server: call.entry.id,
                                subject: subject_tag(call.subject),
                                upstreams: vec![Some(format!("{MARK}{key}"))],
                                members: Vec::new(),
                                failed: Vec::new(),
                                url_elicitation: ctx.url_elicitation,
                                input: None,
                            }),
                        ));
                    } else if let Some((presented, _)) = &call.session {
                        out.insert_header((SESSION_HEADER, presented.as_str()));
                    }
                    out.json(reply)
                }
                Err(e) => ctx.upstream_failed(&id, &e),
            }
        }
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Value>) -> impl futures_util::Stream<Item = Value> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A stateless (2026-07-28) caller of a legacy SSE upstream: its requests go over one upstream
/// event stream per caller and declared capabilities, opened and initialized on first use and
/// kept with the session-ful callers' (the same bound). The upstream's own messages outside a
/// reply reach the caller's `subscriptions/listen` streams, as far as they asked for them;
/// the rest are dropped.
pub async fn stateless(
    state: &ProxyState,
    ctx: &Ctx,
    call: &Call<'_>,
    envelope: &crate::bridge::Envelope,
    auth: &Headers,
) -> Result<HttpResponse, ProxyError> {
    let failed = |e: UpstreamError| ctx.upstream_error(e);
    let message = call.message.as_ref().ok_or_else(|| ProxyError::InvalidRequest("a JSON-RPC message".into()))?;
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return Err(ProxyError::InvalidRequest("this response answers no request".into()));
    };
    let listen = method == "subscriptions/listen";
    if message.get("id").is_some() && !listen && !crate::bridge::bridged(method) {
        return Err(ProxyError::NoSuchMethod(method.to_owned()));
    }
    let key = format!("{STATELESS_PREFIX}{}:{}:{:x}", call.entry.id, subject_tag(call.subject), envelope.fingerprint());
    let mut reopened = false;
    loop {
        let bridge = match state.bridges.get(&key) {
            Some(bridge) => bridge,
            None => {
                let bridge = open(state, call, auth).await.map_err(failed)?;
                let initialize = serde_json::json!({"jsonrpc": "2.0", "id": "mcpgate:initialize", "method": "initialize",
                    "params": crate::bridge::initialize_params(envelope)});
                let reply = send(state, call, &bridge, auth, &initialize).await.map_err(failed)?;
                let initialized = reply
                    .and_then(|r| r.get("result").cloned())
                    .ok_or_else(|| failed(UpstreamError::Protocol("the upstream refused to initialize".into())))?;
                let ready = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                send(state, call, &bridge, auth, &ready).await.map_err(failed)?;
                *bridge.initialized.lock().unwrap_or_else(|p| p.into_inner()) = Some(initialized);
                let mut all = state.bridges.inner.lock().unwrap_or_else(|p| p.into_inner());
                // Stateless callers never end their bridges: idle ones close as new ones open.
                // One that someone listens on is in use.
                all.retain(|k, b| {
                    !k.starts_with(STATELESS_PREFIX)
                        || b.notes.receiver_count() > 0
                        || b.used.lock().unwrap_or_else(|p| p.into_inner()).elapsed() < STATELESS_IDLE
                });
                if all.len() >= MAX_BRIDGES {
                    return Err(failed(UpstreamError::Unreachable("too many open legacy sessions".into())));
                }
                all.insert(key.clone(), bridge.clone());
                crate::metrics::get().sessions_opened.inc();
                bridge
            }
        };
        *bridge.used.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        let initialized = bridge.initialized.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default();
        let server_info = initialized.get("serverInfo").cloned().unwrap_or_default();
        if listen {
            return subscribe(state, ctx, call, &bridge, auth, &initialized, server_info).await;
        }
        if method == "server/discover" {
            let mut result = crate::bridge::discover_result(&initialized);
            crate::bridge::stamp(method, &mut result, &server_info);
            ctx.decide("allowed", None, Some(200));
            return Ok(HttpResponse::Ok().json(serde_json::json!({"jsonrpc": "2.0", "id": call.id, "result": result})));
        }
        match send(state, call, &bridge, auth, &crate::bridge::unwrapped(message)).await {
            Ok(None) => {
                ctx.decide("allowed", None, Some(202));
                return Ok(HttpResponse::Accepted().finish());
            }
            Ok(Some(reply)) => {
                ctx.decide("allowed", None, Some(200));
                let mut translate =
                    crate::bridge::translator(message, server_info, envelope, &call.entry.tool_settings);
                return Ok(HttpResponse::Ok().json(translate(reply).unwrap_or_default()));
            }
            // The upstream's stream is gone (it restarted, or dropped us): once more, afresh.
            Err(UpstreamError::Status(_) | UpstreamError::Protocol(_)) if !reopened => {
                reopened = true;
                state.bridges.remove(&key);
            }
            Err(e) => return Err(failed(e)),
        }
    }
}

/// `subscriptions/listen` over a stateless caller's bridge: resource subscriptions are made on
/// the bridge's upstream session, and the stream carries what the bridge's event stream brings
/// outside replies (see [`crate::bridge::Listen`]).
async fn subscribe(
    state: &ProxyState,
    ctx: &Ctx,
    call: &Call<'_>,
    bridge: &Bridge,
    auth: &Headers,
    initialized: &Value,
    server_info: Value,
) -> Result<HttpResponse, ProxyError> {
    let plan = crate::bridge::Listen::plan(call, &initialized["capabilities"])?;
    // Listening first: an update the subscription causes at once is not missed.
    let notes = crate::bridge::broadcast_messages(bridge.notes.subscribe());
    for uri in &plan.uris {
        let subscribe = serde_json::json!({"jsonrpc": "2.0", "id": "mcpgate:subscribe",
            "method": "resources/subscribe", "params": {"uri": uri}});
        let reply = send(state, call, bridge, auth, &subscribe).await.map_err(|e| ctx.upstream_error(e))?;
        if let Some(error) = reply.as_ref().and_then(|r| r.get("error")) {
            let why = error["message"].as_str().unwrap_or("no reason given");
            return Err(ctx.upstream_error(UpstreamError::Protocol(format!(
                "the upstream refused to subscribe to {uri}: {why}"
            ))));
        }
    }
    Ok(plan.respond(ctx, call, server_info, Some(notes)))
}
