//! Input an upstream of the session-ful revisions asks for in the middle of a request
//! (`elicitation/create`, `sampling/createMessage`, `roots/list`), for a caller of the stateless
//! revision, which has no stream to answer requests on: the gateway holds the rest of the
//! upstream's answer and gives the caller an `input_required` result; the caller's retry, with
//! `inputResponses` and the `requestState` the gateway gave it, answers the upstream's request
//! and the call goes on from where it stopped.
//!
//! The held answer is an open HTTP response from the upstream, so it lives in the replica that
//! got the first request: `requestState` names it (an unguessable key, bound to the server and
//! the caller), and a retry that reaches another replica, or comes after ten minutes, is refused
//! as the revision says (`-32602`, invalid or expired state) and the caller starts the call over.
//!
//! The other way round, a session-ful client of an upstream that speaks the stateless revision:
//! an `input_required` answer becomes the requests it names on the client's stream, and the
//! request goes upstream again with the client's answers (`ask_client`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use sse_stream::{Sse, SseStream};

/// An upstream's answer to one request, message by message.
pub type Messages = Pin<Box<dyn Stream<Item = Value> + Send>>;

/// Requests of the upstream a stateless caller can answer through `input_required`, and the
/// client capability each needs.
const INPUT: &[(&str, &str)] =
    &[("elicitation/create", "elicitation"), ("sampling/createMessage", "sampling"), ("roots/list", "roots")];
/// Requests whose results may be `input_required` under the revision.
const INTERACTIVE: &[&str] = &["tools/call", "prompts/get", "resources/read"];
/// How `requestState` values the gateway wrote begin (an upstream of the session-ful revisions
/// writes none of its own).
const STATE_PREFIX: &str = "mcpgate.input.";
const HELD_FOR: Duration = Duration::from_secs(600);
const MAX_HELD: usize = 1_000;

/// The capability an upstream request needs, if it is one the caller declared: also the key
/// of the request in `inputRequests`.
fn declared(capabilities: &Value, method: &str) -> Option<&'static str> {
    INPUT.iter().find(|(m, capability)| *m == method && capabilities.get(*capability).is_some()).map(|(_, c)| *c)
}

/// Whether a client capability is one an upstream can ask the client for input under.
pub fn is_input(capability: &str) -> bool {
    INPUT.iter().any(|(_, c)| *c == capability)
}

/// Whether a request goes the interactive way: a method whose answer may need input.
pub fn interactive(method: &str) -> bool {
    INTERACTIVE.contains(&method)
}

/// The gateway's key in a retried request's `requestState`, if it is one of the gateway's.
pub fn resumed(message: &Value) -> Option<&str> {
    message["params"]["requestState"].as_str()?.strip_prefix(STATE_PREFIX)
}

/// The upstream's response as messages (an SSE stream or one JSON body; batches unpacked).
pub fn messages(response: reqwest::Response) -> Messages {
    let one_or_many = |message: Value| match message {
        Value::Array(items) => items,
        one => vec![one],
    };
    if crate::rewrite::is_sse(&response) {
        let events = SseStream::from_bytes_stream(response.bytes_stream());
        Box::pin(
            events
                .filter_map(|event| {
                    let message = event.ok().and_then(|e| e.data).and_then(|d| serde_json::from_str::<Value>(&d).ok());
                    std::future::ready(message)
                })
                .flat_map(move |message| futures_util::stream::iter(one_or_many(message))),
        )
    } else {
        Box::pin(
            futures_util::stream::once(async move {
                response.bytes().await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            })
            .filter_map(std::future::ready)
            .flat_map(move |message| futures_util::stream::iter(one_or_many(message))),
        )
    }
}

/// Where an answer waits for the caller's input.
pub struct Held {
    rest: Messages,
    /// The upstream's request the input answers: its id, and the request as the caller sees it.
    upstream_id: Value,
    input_key: &'static str,
    input: Value,
    /// The caller's first request (the upstream answers its id) and the caller.
    pub original: Value,
    owner: (i64, String),
    /// The upstream session, where the input goes.
    pub session: Option<String>,
    pub version: String,
    /// Who answers, for the results' `_meta`.
    pub server_info: Value,
    at: Instant,
}

impl Held {
    /// The rest of the upstream's answer, and the request it answers.
    pub fn into_rest(self) -> (Messages, Value) {
        (self.rest, self.original)
    }
}

/// The answers waiting for input on this replica.
#[derive(Clone, Default)]
pub struct Waiting(Arc<Mutex<HashMap<String, Held>>>);

impl Waiting {
    fn hold(&self, key: String, held: Held) {
        let mut waiting = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Expired answers go (and with them their upstream connections); holds are rare
        // enough for this pass over at most MAX_HELD entries.
        waiting.retain(|_, h| h.at.elapsed() < HELD_FOR);
        if waiting.len() >= MAX_HELD {
            if let Some(oldest) = waiting.iter().min_by_key(|(_, h)| h.at).map(|(k, _)| k.clone()) {
                waiting.remove(&oldest);
            }
        }
        waiting.insert(key, held);
    }

    /// The answer `key` names, if it waits here for this caller and has not expired.
    pub fn take(&self, key: &str, owner: &(i64, String)) -> Option<Held> {
        let mut waiting = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let held = waiting.remove(key)?;
        if held.owner != *owner || held.at.elapsed() >= HELD_FOR {
            // Another caller's key is not this caller's to use up.
            if held.owner != *owner {
                waiting.insert(key.to_owned(), held);
            }
            return None;
        }
        Some(held)
    }
}

/// The message that answers the upstream's request with the caller's input, or `None` when
/// the retry does not carry it (the caller is asked again).
pub fn input_answer(held: &Held, retry: &Value) -> Option<Value> {
    let response = retry["params"]["inputResponses"].get(held.input_key).filter(|r| r.is_object())?;
    Some(json!({"jsonrpc": "2.0", "id": held.upstream_id, "result": response}))
}

/// Whether a retry asks for the same thing as the request it continues.
pub fn same_request(held: &Held, retry: &Value) -> bool {
    let (a, b) = (&held.original, retry);
    a["method"] == b["method"] && a["params"]["name"] == b["params"]["name"] && a["params"]["uri"] == b["params"]["uri"]
}

/// Whom a bridged answer goes to, and how to reach the upstream session it comes from.
pub struct Caller {
    pub waiting: Waiting,
    pub owner: (i64, String),
    /// The caller's capabilities: which upstream requests it can be asked.
    pub capabilities: Value,
    /// The id this caller's request has now (a retry has a new one).
    pub id: Value,
    pub session: Option<String>,
    pub version: String,
    pub server_info: Value,
    /// A POST to the upstream session, for the gateway's answers to requests the caller
    /// cannot be asked (so the upstream does not wait for them).
    pub upstream: Option<reqwest::RequestBuilder>,
}

/// The gateway's answer to an upstream request the caller cannot be asked: `ping` is
/// answered, anything else refused.
fn refusal(method: &str, id: &Value) -> Value {
    match method {
        "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        _ => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601,
            "message": format!("the client cannot answer {method} (it did not declare the capability)")}}),
    }
}

/// One message as an SSE event.
pub(crate) fn event(message: &Value) -> Bytes {
    crate::rewrite::encode(&Sse { data: Some(message.to_string()), ..Default::default() })
}

/// The caller's answer, as an SSE stream: the upstream's messages through `translate` (whose
/// answer to `original` is the caller's answer, under the caller's id), until the upstream asks
/// for input the caller can give; then the rest is held and the caller gets `input_required`.
/// Requests the caller cannot answer are refused to the upstream at once.
pub fn answer<F>(
    rest: Messages,
    original: Value,
    translate: F,
    caller: Caller,
) -> Pin<Box<dyn Stream<Item = Result<Bytes, actix_web::Error>>>>
where
    F: FnMut(Value) -> Option<Value> + 'static,
{
    struct Step<F> {
        rest: Option<Messages>,
        original: Option<Value>,
        caller: Option<Caller>,
        translate: F,
    }
    let start = Step { rest: Some(rest), original: Some(original), caller: Some(caller), translate };
    Box::pin(futures_util::stream::unfold(start, |mut step| async move {
        loop {
            let message = step.rest.as_mut()?.next().await?;
            let (original, caller) = (step.original.as_ref()?, step.caller.as_ref()?);
            let method = message.get("method").and_then(Value::as_str);
            if let (Some(method), Some(id)) = (method, message.get("id")) {
                let Some(input_key) = declared(&caller.capabilities, method) else {
                    if let Some(post) = caller.upstream.as_ref().and_then(reqwest::RequestBuilder::try_clone) {
                        let _ = post.body(refusal(method, id).to_string()).send().await;
                    }
                    continue;
                };
                let key = uuid::Uuid::new_v4().simple().to_string();
                let input = json!({"method": method, "params": message.get("params").cloned().unwrap_or(json!({}))});
                let result = json!({"jsonrpc": "2.0", "id": caller.id, "result": {
                    "resultType": "input_required",
                    "inputRequests": {input_key: input},
                    "requestState": format!("{STATE_PREFIX}{key}"),
                }});
                let (upstream_id, rest) = (id.clone(), step.rest.take()?);
                let (original, caller) = (step.original.take()?, step.caller.take()?);
                let held = Held {
                    rest,
                    upstream_id,
                    input_key,
                    input,
                    original,
                    owner: caller.owner,
                    session: caller.session,
                    version: caller.version,
                    server_info: caller.server_info,
                    at: Instant::now(),
                };
                caller.waiting.hold(key, held);
                return Some((Ok(event(&result)), step));
            }
            let Some(mut out) = (step.translate)(message) else { continue };
            if out.get("id") == original.get("id") && out.get("method").is_none() {
                // The answer: under the id the caller asked with now, and the end.
                out["id"] = caller.id.clone();
                step.rest = None;
            }
            return Some((Ok(event(&out)), step));
        }
    }))
}

/// The caller asked again for the input it did not give: the same request, the same state.
pub fn ask_again(waiting: &Waiting, key: String, held: Held, id: &Value) -> Value {
    let result = json!({"jsonrpc": "2.0", "id": id, "result": {
        "resultType": "input_required",
        "inputRequests": {held.input_key: held.input},
        "requestState": format!("{STATE_PREFIX}{key}"),
    }});
    waiting.hold(key, Held { at: Instant::now(), ..held });
    result
}

/// The capabilities a session-ful client declared at `initialize` that an upstream can ask it
/// for input under (elicitation, sampling, roots), as its gateway session keeps them.
pub fn input_capabilities(declared: &Value) -> Option<Value> {
    let kept: serde_json::Map<String, Value> = declared
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| is_input(name))
        .map(|(name, v)| (name.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}

/// Answers session-ful clients owe the gateway: their responses to requests the gateway put on
/// their streams for an upstream's `input_required`, by the id it gave each, with the gateway
/// session each belongs to.
#[derive(Clone, Default)]
pub struct Owed(Arc<Mutex<HashMap<String, Awaited>>>);

/// The gateway session a request was put in, and where its answer goes.
type Awaited = (String, tokio::sync::oneshot::Sender<Value>);

/// How the ids of the gateway's requests to a session-ful client begin.
const ASK_PREFIX: &str = "mcpgate-input:";
const MAX_OWED: usize = 10_000;
/// Rounds of `input_required` one request may take.
const MAX_ROUNDS: usize = 8;

impl Owed {
    fn expect(&self, id: String, session: String) -> tokio::sync::oneshot::Receiver<Value> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut owed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if owed.len() >= MAX_OWED {
            // Those nobody waits for any more (the client went away).
            owed.retain(|_, (_, sender)| !sender.is_closed());
        }
        owed.insert(id, (session, sender));
        receiver
    }

    /// Hands a client's response to the request waiting for it; `false` when none in this
    /// gateway session is.
    pub fn deliver(&self, response: &Value, session: &str) -> bool {
        let Some(id) = response.get("id").and_then(Value::as_str).filter(|id| id.starts_with(ASK_PREFIX)) else {
            return false;
        };
        let mut owed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match owed.remove(id) {
            Some((owner, sender)) if owner == session => sender.send(response.clone()).is_ok(),
            Some(other) => {
                owed.insert(id.to_owned(), other);
                false
            }
            None => false,
        }
    }
}

/// What the gateway needs to send a session-ful client's request upstream again.
pub struct Retry {
    pub state: actix_web::web::Data<crate::routes::ProxyState>,
    pub entry: mcpgate_policy::ServerEntry,
    pub auth: crate::credentials::Headers,
    /// `Mcp-Param-*` headers of the request.
    pub params: Vec<(String, String)>,
    /// The client's gateway session.
    pub session: String,
}

/// A session-ful client's answer from an upstream that speaks the stateless revision: the
/// upstream's messages as they come, except that an `input_required` answer becomes the
/// requests it names, put on this stream for the client (which answers each with a POST in its
/// session), and the request is sent upstream again with the client's answers, until the
/// upstream answers for good.
pub fn ask_client(
    rest: Messages,
    request: Value,
    retry: Retry,
) -> Pin<Box<dyn Stream<Item = Result<Bytes, actix_web::Error>>>> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(16);
    actix_web::rt::spawn(converse(rest, request, retry, sender));
    Box::pin(futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|bytes| (Ok(bytes), receiver))
    }))
}

async fn converse(mut rest: Messages, mut request: Value, retry: Retry, out: tokio::sync::mpsc::Sender<Bytes>) {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
    for _ in 0..MAX_ROUNDS {
        let mut required = None;
        while let Some(message) = rest.next().await {
            let answer = message.get("id") == Some(&id) && message.get("method").is_none();
            if answer && message["result"]["resultType"] == "input_required" {
                required = Some(message["result"].clone());
                break;
            }
            if out.send(event(&message)).await.is_err() || answer {
                return;
            }
        }
        // The upstream ended without an answer: so does the stream.
        let Some(required) = required else { return };
        let mut waits = Vec::new();
        for (key, input) in required["inputRequests"].as_object().into_iter().flatten() {
            let ask_id = format!("{ASK_PREFIX}{}", uuid::Uuid::new_v4().simple());
            let waiting = retry.state.bridge.owed.expect(ask_id.clone(), retry.session.clone());
            let ask = json!({"jsonrpc": "2.0", "id": ask_id, "method": input["method"],
                "params": input.get("params").cloned().unwrap_or(json!({}))});
            if out.send(event(&ask)).await.is_err() {
                return;
            }
            waits.push((key.clone(), waiting));
        }
        let mut responses = serde_json::Map::new();
        for (key, waiting) in waits {
            if let Ok(Ok(reply)) = tokio::time::timeout(HELD_FOR, waiting).await {
                if let Some(result) = reply.get("result") {
                    responses.insert(key, result.clone());
                }
            }
        }
        request["params"]["inputResponses"] = Value::Object(responses);
        match required.get("requestState") {
            Some(state) => request["params"]["requestState"] = state.clone(),
            None => {
                request["params"].as_object_mut().map(|p| p.remove("requestState"));
            }
        }
        let clients = &retry.state.clients;
        let sent = match clients.post_message(
            &retry.entry,
            &retry.auth,
            Some(crate::bridge::STATELESS_UPSTREAM),
            None,
            &request,
        ) {
            Ok(mut post) => {
                for (name, value) in &retry.params {
                    post = post.header(name, value);
                }
                clients.send(post).await.ok().filter(|r| r.status().is_success())
            }
            Err(_) => None,
        };
        let Some(response) = sent else {
            let failed = json!({"jsonrpc": "2.0", "id": id, "error": {"code": crate::error::UPSTREAM_FAILED,
                "message": format!("the upstream failed when {method} was sent again with the client's input")}});
            let _ = out.send(event(&failed)).await;
            return;
        };
        rest = messages(response);
    }
    let failed = json!({"jsonrpc": "2.0", "id": id, "error": {"code": crate::error::INVALID_REQUEST,
        "message": format!("the upstream asked for input more than {MAX_ROUNDS} times")}});
    let _ = out.send(event(&failed)).await;
}
