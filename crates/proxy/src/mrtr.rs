//! Input an upstream of the session-ful revisions asks for in the middle of a request
//! (`elicitation/create`, `sampling/createMessage`, `roots/list`), for a caller of the stateless
//! revision, which has no stream to answer requests on: the gateway holds the rest of the
//! upstream's answer and gives the caller an `input_required` result; the caller's retry, with
//! `inputResponses` and the `requestState` the gateway gave it, answers the upstream's request
//! and the call goes on from where it stopped.
//!
//! The held answer is an open HTTP response from the upstream, so it lives in the replica that
//! got the first request. `requestState` is sealed with the key every replica shares: it binds
//! the retry to the server, the caller and the request, and carries the caller's answers so
//! far. A retry that reaches another replica (or comes after the held answer went) runs the
//! request again there and gives the upstream the caller's answers as it asks for them again,
//! which is how an upstream of the stateless revision treats a retry too. After ten minutes the
//! state expires and is refused as the revision says (`-32602`).
//!
//! The other way round, a session-ful client of an upstream that speaks the stateless revision:
//! an `input_required` answer becomes the requests it names on the client's stream, and the
//! request goes upstream again with the client's answers (`ask_client`).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sse_stream::{Sse, SseStream};

use crate::session::SessionSealer;
use mcpgate_policy::clock::Clock;

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

/// A retried request's `requestState`, if it is one of the gateway's.
pub fn resumed(message: &Value) -> Option<&str> {
    message["params"]["requestState"].as_str().filter(|state| state.starts_with(STATE_PREFIX))
}

/// What a `requestState` the gateway wrote carries, sealed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct InputState {
    /// The held answer's key in the replica that took the request.
    #[serde(rename = "k")]
    key: String,
    #[serde(rename = "s")]
    server: i64,
    #[serde(rename = "p")]
    subject: String,
    /// The request it continues (method, tool name, resource URI).
    #[serde(rename = "r")]
    request: String,
    /// The upstream request waiting for input: its method and its key in `inputRequests`.
    #[serde(rename = "m")]
    method: String,
    #[serde(rename = "i")]
    input_key: String,
    /// The caller's answers to the upstream's earlier requests in this call, in order.
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    answered: Vec<Answered>,
    /// Unix seconds.
    #[serde(rename = "x")]
    expires: i64,
}

/// One answer the caller gave an upstream request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    #[serde(rename = "m")]
    method: String,
    #[serde(rename = "r")]
    result: Value,
}

/// When a state written now expires (unix seconds).
fn expiry(clock: &Clock) -> i64 {
    clock.now().timestamp() + HELD_FOR.as_secs() as i64
}

/// What a retry is bound to: the same method on the same tool, prompt or resource.
fn binding(message: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let params = &message["params"];
    format!("{}\n{}\n{}", text(&message["method"]), text(&params["name"]), text(&params["uri"]))
}

/// How a caller's retry goes on.
pub enum Resumed {
    /// The retry lacks the input and the upstream's request waits here: it is asked again.
    Again(Value),
    /// The upstream's answer waits here: `input` answers its request, and the rest follows.
    Held { held: Box<Held>, input: Value, answered: Vec<Answered> },
    /// Nothing waits here (another replica took the request, or it went): the request runs
    /// again, and the upstream's requests are answered from these, in order.
    Replay(VecDeque<Answered>),
}

/// Opens a retry's `requestState`: `None` when it is not one this gateway wrote for this
/// caller, server and request, or has expired.
pub fn resume(
    sealer: &SessionSealer,
    clock: &Clock,
    waiting: &Waiting,
    owner: &(i64, String),
    retry: &Value,
    id: &Value,
) -> Option<Resumed> {
    let sealed = resumed(retry)?;
    let state: InputState = sealer.open_as(STATE_PREFIX, sealed)?;
    if (state.server, &state.subject) != (owner.0, &owner.1)
        || state.request != binding(retry)
        || state.expires <= clock.now().timestamp()
    {
        return None;
    }
    let response = retry["params"]["inputResponses"].get(&state.input_key).filter(|r| r.is_object()).cloned();
    let held = waiting.take(&state.key, owner);
    let mut answered = state.answered.clone();
    match (held, response) {
        (Some(held), None) => {
            // As the revision suggests: asked again, under a renewed state.
            let state = InputState { expires: expiry(clock), ..state };
            let result = json!({"jsonrpc": "2.0", "id": id, "result": {
                "resultType": "input_required",
                "inputRequests": {(held.input_key): held.input},
                "requestState": sealer.seal_as(STATE_PREFIX, &state),
            }});
            waiting.hold(state.key, Held { at: Instant::now(), ..held });
            Some(Resumed::Again(result))
        }
        (Some(held), Some(result)) => {
            let input = json!({"jsonrpc": "2.0", "id": held.upstream_id, "result": result});
            answered.push(Answered { method: state.method, result });
            Some(Resumed::Held { held: Box::new(held), input, answered })
        }
        (None, response) => {
            // Without the input the upstream asks for it again, and so is the caller.
            answered.extend(response.map(|result| Answered { method: state.method, result }));
            Some(Resumed::Replay(answered.into()))
        }
    }
}

/// The request a retry runs again upstream: without the revision's retry fields.
pub fn replayed(retry: &Value) -> Value {
    let mut request = retry.clone();
    if let Some(params) = request.get_mut("params").and_then(Value::as_object_mut) {
        params.remove("inputResponses");
        params.remove("requestState");
    }
    request
}

/// The upstream's response as messages (an SSE stream or one JSON body; batches unpacked).
pub fn messages(response: reqwest::Response) -> Messages {
    let one_or_many = |message: Value| match message {
        Value::Array(items) => items,
        one => vec![one],
    };
    if crate::rewrite::is_sse(response.headers()) {
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
    /// cannot be asked (so the upstream does not wait for them) or answered already.
    pub upstream: Option<reqwest::RequestBuilder>,
    /// Seals the `requestState` of the caller's next retry, and dates it.
    pub sealer: SessionSealer,
    pub clock: Clock,
    /// The caller's answers given in this call so far.
    pub answered: Vec<Answered>,
    /// Answers to give the upstream's requests when a request runs again, in order.
    pub replay: VecDeque<Answered>,
}

impl Caller {
    /// Sends the upstream session a message (an answer to one of its requests).
    async fn tell_upstream(&self, message: Value) {
        if let Some(post) = self.upstream.as_ref().and_then(reqwest::RequestBuilder::try_clone) {
            let _ = post.body(message.to_string()).send().await;
        }
    }
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
            let caller = step.caller.as_mut()?;
            let method = message.get("method").and_then(Value::as_str);
            if let (Some(method), Some(id)) = (method, message.get("id")) {
                let Some(input_key) = declared(&caller.capabilities, method) else {
                    caller.tell_upstream(refusal(method, id)).await;
                    continue;
                };
                if caller.replay.front().is_some_and(|next| next.method == method) {
                    // A request running again: the caller answered this one before.
                    let next = caller.replay.pop_front()?;
                    caller.tell_upstream(json!({"jsonrpc": "2.0", "id": id, "result": next.result})).await;
                    caller.answered.push(next);
                    continue;
                }
                let key = uuid::Uuid::new_v4().simple().to_string();
                let input = json!({"method": method, "params": message.get("params").cloned().unwrap_or(json!({}))});
                let state = InputState {
                    key: key.clone(),
                    server: caller.owner.0,
                    subject: caller.owner.1.clone(),
                    request: binding(step.original.as_ref()?),
                    method: method.to_owned(),
                    input_key: input_key.to_owned(),
                    answered: caller.answered.clone(),
                    expires: expiry(&caller.clock),
                };
                let result = json!({"jsonrpc": "2.0", "id": caller.id, "result": {
                    "resultType": "input_required",
                    "inputRequests": {input_key: input},
                    "requestState": caller.sealer.seal_as(STATE_PREFIX, &state),
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
            if out.get("id") == step.original.as_ref()?.get("id") && out.get("method").is_none() {
                // The answer: under the id the caller asked with now, and the end.
                out["id"] = caller.id.clone();
                step.rest = None;
            }
            return Some((Ok(event(&out)), step));
        }
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn sealer(key: &str) -> SessionSealer {
        SessionSealer::from_proxy_key(&SecretString::from(key.to_owned()))
    }

    fn retry(state: &str, responses: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "book", "arguments": {}, "requestState": state, "inputResponses": responses}})
    }

    fn state(answered: Vec<Answered>, expires: i64) -> InputState {
        InputState {
            key: "k1".into(),
            server: 4,
            subject: "u7".into(),
            request: binding(&retry("", json!({}))),
            method: "elicitation/create".into(),
            input_key: "elicitation".into(),
            answered,
            expires,
        }
    }

    #[test]
    fn a_retry_where_nothing_is_held_replays_every_answer_so_far_in_order() {
        let (sealer, clock, waiting, owner) =
            (sealer("shared"), Clock::system(), Waiting::default(), (4, "u7".to_owned()));
        let first = Answered { method: "roots/list".into(), result: json!({"roots": []}) };
        let sealed = sealer.seal_as(STATE_PREFIX, &state(vec![first.clone()], expiry(&clock)));
        let answer = json!({"action": "accept", "content": {"seat": "12A"}});
        let Some(Resumed::Replay(replay)) =
            resume(&sealer, &clock, &waiting, &owner, &retry(&sealed, json!({"elicitation": answer})), &json!(9))
        else {
            panic!("expected a replay");
        };
        let second = Answered { method: "elicitation/create".into(), result: answer };
        assert_eq!(Vec::from(replay), vec![first.clone(), second]);
        // Without this round's input, only the earlier answers: the upstream asks again.
        let Some(Resumed::Replay(replay)) =
            resume(&sealer, &clock, &waiting, &owner, &retry(&sealed, json!({})), &json!(9))
        else {
            panic!("expected a replay");
        };
        assert_eq!(Vec::from(replay), vec![first]);
    }

    #[test]
    fn states_of_another_caller_request_key_or_time_are_refused() {
        let (sealer, clock, waiting) = (super::tests::sealer("shared"), Clock::system(), Waiting::default());
        let fresh = sealer.seal_as(STATE_PREFIX, &state(vec![], expiry(&clock)));
        let input = json!({"elicitation": {"action": "decline"}});
        let ok = |owner: (i64, &str), message: &Value, sealer: &SessionSealer| {
            resume(sealer, &clock, &waiting, &(owner.0, owner.1.to_owned()), message, &json!(1)).is_some()
        };
        assert!(ok((4, "u7"), &retry(&fresh, input.clone()), &sealer));
        assert!(!ok((4, "u8"), &retry(&fresh, input.clone()), &sealer), "another caller");
        assert!(!ok((5, "u7"), &retry(&fresh, input.clone()), &sealer), "another server");
        let mut other_tool = retry(&fresh, input.clone());
        other_tool["params"]["name"] = json!("cancel");
        assert!(!ok((4, "u7"), &other_tool, &sealer), "another tool");
        assert!(!ok((4, "u7"), &retry(&fresh, input.clone()), &super::tests::sealer("other")), "another key");
        let expired = sealer.seal_as(STATE_PREFIX, &state(vec![], clock.now().timestamp() - 1));
        assert!(!ok((4, "u7"), &retry(&expired, input.clone()), &sealer), "expired");
        clock.advance(chrono::Duration::seconds(HELD_FOR.as_secs() as i64));
        assert!(!ok((4, "u7"), &retry(&fresh, input.clone()), &sealer), "expired on the gateway's clock");
        let session = sealer.seal(&crate::session::GatewaySession::default());
        let relabelled = session.replacen("mgs1.", STATE_PREFIX, 1);
        assert!(!ok((4, "u7"), &retry(&relabelled, input), &sealer), "a session id is no state");
    }
}
