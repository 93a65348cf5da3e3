//! Protocol revision 2026-07-28 (stateless: no `initialize`, no session, the envelope in every
//! request's `_meta`) through the gateway, with real SDK clients and upstreams of both eras:
//! the TypeScript SDK v2 client pinned to the revision or running the 2025 handshake, the rmcp
//! fixture serving 2025-11-25 only, server-everything over legacy HTTP+SSE, and a TypeScript SDK
//! v2 server that refuses 2025 requests.

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use std::sync::atomic::Ordering;

use crate::gateway::{
    grant, node_report, remote, session_only_upstream, session_only_upstream_counting, tenant_with_ann,
};
use crate::helpers::spawn_app;
use crate::peers;
use crate::proxy::wait_for_policy;

/// Runs the v2 client (tests/peers/v2-client.mjs) against `url`; returns its report.
async fn v2_client(url: &str, token: &str, mode: &str, tools: &[&str]) -> Value {
    let mut args = vec![url.to_owned(), token.to_owned(), mode.to_owned()];
    args.extend(tools.iter().map(|t| (*t).to_owned()));
    node_report("v2-client.mjs", args).await
}

const ECHOED: &str = "through the gateway";

#[tokio::test]
async fn clients_of_either_revision_reach_upstreams_of_either_through_remote_and_virtual_servers() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    let modern = peers::v2_upstream("modern-only");
    let old = peers::everything("sse");
    remote(&admin, "fixture", &session_only_upstream().await).await;
    remote(&admin, "modern", &modern.url).await;
    legacy_sse(&admin, "old", &old.url).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "combo", "display_name": "Combo", "kind": "virtual",
                "servers": [{"server": "fixture", "enabled_tools": ["echo"]}, {"server": "modern"}]}),
        )
        .await
        .expect(201);
    for server in ["fixture", "modern", "old", "combo"] {
        grant(&admin, server, "user:ann@example.com").await;
    }
    wait_for_policy(&app).await;
    let url = |server: &str| format!("{}/acme/mcp/{server}/server", app.base);

    // A stateless client over a session-ful upstream: the gateway bridges.
    let report = v2_client(&url("fixture"), &token, "stateless", &["echo"]).await;
    assert_eq!(report["version"], "2026-07-28", "{report}");
    assert_eq!(report["session"], false);
    assert_eq!(report["server"], "mcpgate-conformance-fixture");
    assert!(report["tools"].as_array().unwrap().contains(&json!("echo")));
    assert_eq!(report["texts"], json!([ECHOED]));
    // … and over a legacy HTTP+SSE upstream (protocol 2024-11-05).
    let report = v2_client(&url("old"), &token, "stateless", &["echo"]).await;
    assert_eq!((report["version"].as_str(), report["session"].as_bool()), (Some("2026-07-28"), Some(false)));
    assert_eq!(report["texts"], json!([format!("Echo: {ECHOED}")]), "{report}");
    // A stateless client over an upstream of its own revision: relayed.
    let report = v2_client(&url("modern"), &token, "stateless", &["echo"]).await;
    assert_eq!((report["version"].as_str(), report["session"].as_bool()), (Some("2026-07-28"), Some(false)));
    assert_eq!(report["texts"], json!([format!("v2 echo: {ECHOED}")]));
    // A session-ful client over an upstream that refuses 2025 requests: the gateway answers
    // `initialize` from its discovery and sends each request with the envelope.
    let report = v2_client(&url("modern"), &token, "legacy", &["echo"]).await;
    assert_eq!(report["version"], "2025-11-25", "{report}");
    assert_eq!(report["session"], true);
    assert_eq!(report["server"], "v2-upstream-modern-only");
    assert_eq!(report["texts"], json!([format!("v2 echo: {ECHOED}")]));

    // A virtual server over one member of each revision, for clients of each.
    for mode in ["stateless", "legacy"] {
        let report = v2_client(&url("combo"), &token, mode, &["echo_fixture", "echo_modern"]).await;
        assert_eq!(report["session"], mode == "legacy", "{report}");
        let mut tools: Vec<&str> = report["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        tools.sort();
        assert_eq!(tools, ["echo_fixture", "echo_modern"], "{mode}");
        assert_eq!(report["texts"], json!([ECHOED, format!("v2 echo: {ECHOED}")]), "{mode}: {report}");
    }
}

/// One stateless POST with the routing headers the revision requires; status and the reply.
async fn stateless(url: &str, token: &str, version: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-method", body["method"].as_str().unwrap());
    if let Some(name) = body["params"]["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    if let Some(v) = version {
        request = request.header("mcp-protocol-version", v);
    }
    let response = request.json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let sse =
        response.headers().get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let reply = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id").is_some() && m.get("method").is_none())
            .unwrap_or_default()
    } else {
        serde_json::from_str(&text).unwrap_or_default()
    };
    (status, reply)
}

/// An SSE response read one JSON-RPC message at a time, while it is still open. Events without
/// data (priming events, keep-alive comments) are skipped; any data must be a message.
struct Events {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<actix_web::web::Bytes>>>>,
    buffer: String,
}

impl Events {
    fn new(response: reqwest::Response) -> Self {
        Events { stream: Box::pin(response.bytes_stream()), buffer: String::new() }
    }

    async fn next(&mut self) -> Value {
        use futures_util::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data = event.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim);
                if let Some(data) = data.filter(|d| !d.is_empty()) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), self.stream.next())
                .await
                .expect("the stream goes on")
                .expect("the stream is open")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

fn envelope(version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    })
}

fn request(id: i64, method: &str, mut params: Value, meta: Value) -> Value {
    params["_meta"] = meta;
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A stateless `subscriptions/listen` (request `id`) for `notifications`, its stream open.
async fn listen(url: &str, token: &str, id: i64, notifications: Value) -> Events {
    let listen = request(id, "subscriptions/listen", json!({"notifications": notifications}), envelope("2026-07-28"));
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-method", "subscriptions/listen")
        .header("mcp-protocol-version", "2026-07-28")
        .json(&listen)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    Events::new(response)
}

/// A legacy HTTP+SSE upstream registered as remote server `slug`.
async fn legacy_sse(admin: &crate::helpers::Client, slug: &str, url: &str) {
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": slug, "display_name": slug, "kind": "remote", "url": url, "transport": "sse"}),
        )
        .await
        .expect(201);
}

#[tokio::test]
async fn the_gateway_answers_the_stateless_revisions_own_way_over_a_session_ful_upstream() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "fixture", "display_name": "Fixture", "kind": "remote", "url": session_only_upstream().await,
                "tool_settings": [{"name": "test_error_handling", "disabled": true}]}),
        )
        .await
        .expect(201);
    grant(&admin, "fixture", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let url = format!("{}/acme/mcp/fixture/server", app.base);
    let v = Some("2026-07-28");

    let (status, reply) =
        stateless(&url, &token, v, request(1, "server/discover", json!({}), envelope("2026-07-28"))).await;
    assert_eq!(status, 200, "{reply}");
    let result = &reply["result"];
    assert_eq!(result["supportedVersions"], json!(["2026-07-28"]));
    assert!(result["capabilities"]["tools"].is_object(), "{result}");
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "mcpgate-conformance-fixture");

    // The envelope's refusals, each with the request's id and HTTP 400.
    let missing = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let (status, reply) = stateless(&url, &token, v, missing).await;
    assert_eq!((status, reply["error"]["code"].as_i64(), reply["id"].as_i64()), (400, Some(-32602), Some(2)));
    let (status, reply) = stateless(&url, &token, v, request(3, "tools/list", json!({}), envelope("v999.0.0"))).await;
    assert_eq!((status, reply["error"]["code"].as_i64()), (400, Some(-32020)), "header and body disagree");
    let future = request(4, "tools/list", json!({}), envelope("v999.0.0"));
    let (status, reply) = stateless(&url, &token, Some("v999.0.0"), future).await;
    assert_eq!((status, reply["error"]["code"].as_i64()), (400, Some(-32022)), "{reply}");
    assert_eq!(reply["error"]["data"], json!({"supported": ["2026-07-28"], "requested": "v999.0.0"}));
    // Methods the revision removed, and ones it never had.
    for (id, method) in [(5, "initialize"), (6, "ping"), (7, "logging/setLevel"), (8, "unknown/method")] {
        let (status, reply) = stateless(&url, &token, v, request(id, method, json!({}), envelope("2026-07-28"))).await;
        assert_eq!((status, reply["error"]["code"].as_i64()), (404, Some(-32601)), "{method}: {reply}");
    }

    // Results as the revision has them, and the server's tool settings still apply.
    let (status, reply) = stateless(&url, &token, v, request(9, "tools/list", json!({}), envelope("2026-07-28"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        (reply["result"]["resultType"].as_str(), reply["result"]["ttlMs"].as_i64()),
        (Some("complete"), Some(0))
    );
    let names: Vec<&str> =
        reply["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"echo") && !names.contains(&"test_error_handling"), "{names:?}");
    let disabled =
        request(10, "tools/call", json!({"name": "test_error_handling", "arguments": {}}), envelope("2026-07-28"));
    let (_, reply) = stateless(&url, &token, v, disabled).await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    let call =
        request(11, "tools/call", json!({"name": "echo", "arguments": {"message": "hi"}}), envelope("2026-07-28"));
    let (status, reply) = stateless(&url, &token, v, call).await;
    assert_eq!(status, 200);
    assert_eq!(reply["result"]["content"][0]["text"], "hi");
    assert_eq!(reply["result"]["resultType"], "complete");
    assert!(reply["result"].get("ttlMs").is_none(), "a tool result is not cacheable");
}

#[tokio::test]
async fn one_upstream_session_serves_a_callers_stateless_requests() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    let (upstream, sessionless) = session_only_upstream_counting().await;
    remote(&admin, "fixture", &upstream).await;
    grant(&admin, "fixture", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let url = format!("{}/acme/mcp/fixture/server", app.base);
    let v = Some("2026-07-28");
    let echo = |id: i64, meta: Value| {
        request(id, "tools/call", json!({"name": "echo", "arguments": {"message": format!("call {id}")}}), meta)
    };

    // The first request learns what the upstream speaks (one refused discovery) and opens the
    // caller's session (one initialize); the next ones, in parallel too, reuse that session.
    let (status, reply) = stateless(&url, &token, v, echo(1, envelope("2026-07-28"))).await;
    assert_eq!((status, reply["result"]["content"][0]["text"].as_str()), (200, Some("call 1")), "{reply}");
    let opened = sessionless.load(Ordering::Relaxed);
    assert_eq!(opened, 2, "one discovery probe, one initialize");
    let calls = (2..12).map(|id| stateless(&url, &token, v, echo(id, envelope("2026-07-28"))));
    for (status, reply) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{reply}");
        assert!(reply["result"]["content"][0]["text"].as_str().unwrap().starts_with("call "));
    }
    assert_eq!(sessionless.load(Ordering::Relaxed), opened, "no new upstream session for the same caller");

    // Other declared capabilities are another session (the upstream was told what the client can do).
    let mut other = envelope("2026-07-28");
    other["io.modelcontextprotocol/clientCapabilities"] = json!({"experimental": {"x": {}}});
    let (status, _) = stateless(&url, &token, v, echo(20, other)).await;
    assert_eq!(status, 200);
    assert_eq!(sessionless.load(Ordering::Relaxed), opened + 1);
}

#[tokio::test]
async fn a_stateless_caller_gives_the_input_a_session_ful_upstream_asks_for_mid_call() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (ann, bob) = (app.user(&admin, "ann@example.com").await, app.user(&admin, "bob@example.com").await);
    app.tenant(&admin, "acme", &[("ann@example.com", "member"), ("bob@example.com", "member")]).await;
    remote(&admin, "fixture", &session_only_upstream().await).await;
    grant(&admin, "fixture", "user:ann@example.com").await;
    grant(&admin, "fixture", "user:bob@example.com").await;
    let token_of = |client: &crate::helpers::Client| {
        let client = client.clone();
        async move {
            client.post("/api/v1/me/tokens", json!({"name": "ide"})).await.expect(201)["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (token, bob) = (token_of(&ann).await, token_of(&bob).await);
    wait_for_policy(&app).await;
    let url = format!("{}/acme/mcp/fixture/server", app.base);
    let v = Some("2026-07-28");
    let mut meta = envelope("2026-07-28");
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({"elicitation": {}});
    let ask = |id: i64, extra: Value| {
        let mut params = json!({"name": "test_elicitation", "arguments": {"message": "Who are you?"}});
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        request(id, "tools/call", params, meta.clone())
    };

    // The upstream elicits (a request on its session's stream): the caller gets input_required.
    let (status, reply) = stateless(&url, &token, v, ask(1, json!({}))).await;
    assert_eq!(status, 200, "{reply}");
    let result = &reply["result"];
    assert_eq!((reply["id"].as_i64(), result["resultType"].as_str()), (Some(1), Some("input_required")), "{reply}");
    let input = &result["inputRequests"]["elicitation"];
    assert_eq!(input["method"], "elicitation/create");
    assert_eq!(input["params"]["message"], "Who are you?");
    let state = result["requestState"].as_str().unwrap().to_owned();

    // A retry without the input is asked again, under a renewed state.
    let (_, reply) = stateless(&url, &token, v, ask(2, json!({"requestState": state}))).await;
    assert_eq!(reply["result"]["resultType"], "input_required", "{reply}");
    assert_eq!(reply["result"]["inputRequests"]["elicitation"], *input);
    let state = reply["result"]["requestState"].as_str().unwrap().to_owned();

    // With the input, the upstream's tool finishes, and the caller gets its result.
    let answer = json!({"action": "accept", "content": {"response": "Ann"}});
    let retry = ask(3, json!({"requestState": state, "inputResponses": {"elicitation": answer}}));
    let (status, reply) = stateless(&url, &token, v, retry.clone()).await;
    assert_eq!((status, reply["id"].as_i64()), (200, Some(3)), "{reply}");
    assert_eq!(reply["result"]["resultType"], "complete");
    let text = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("action=\"accept\"") && text.contains("Ann"), "{text}");

    // The held answer is used up: the same retry again runs the call again, and the upstream's
    // question is answered from the retry (as a stateless upstream treats a retry).
    let (_, reply) = stateless(&url, &token, v, retry.clone()).await;
    assert_eq!(reply["result"]["resultType"], "complete", "{reply}");
    assert!(reply["result"]["content"][0]["text"].as_str().unwrap().contains("Ann"), "{reply}");
    // A state the gateway never gave out, or given for another tool, is refused.
    let forged = ask(4, json!({"requestState": "mcpgate.input.0000", "inputResponses": {"elicitation": answer}}));
    let (_, reply) = stateless(&url, &token, v, forged).await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    let mut elsewhere = retry.clone();
    elsewhere["params"]["name"] = json!("test_sampling");
    let (_, reply) = stateless(&url, &token, v, elsewhere).await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");

    // The retry reaches another replica, where nothing is held: the call runs there and gets
    // the caller's answer when the upstream asks again.
    let (_, reply) = stateless(&url, &token, v, ask(9, json!({}))).await;
    let state = reply["result"]["requestState"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let key = app.state.proxy_key.expose_secret();
    let replica = crate::process::replica(&app.base, key, &dir.path().join("replica.log"));
    let replica_url = format!("{}/acme/mcp/fixture/server", replica.base);
    let retry = ask(10, json!({"requestState": state, "inputResponses": {"elicitation": answer}}));
    // Ready once it holds a verified snapshot, which already has the token and the server.
    crate::ha::wait_ready(&replica.base, std::time::Duration::from_secs(10), |_| true).await;
    let (_, reply) = stateless(&replica_url, &token, v, retry).await;
    assert_eq!((reply["id"].as_i64(), &reply["result"]["resultType"]), (Some(10), &json!("complete")), "{reply}");
    assert!(reply["result"]["content"][0]["text"].as_str().unwrap().contains("Ann"), "{reply}");
    // Without the input there, the upstream's question comes again, under a state of its own.
    let (_, reply) = stateless(&url, &token, v, ask(11, json!({}))).await;
    let state = reply["result"]["requestState"].clone();
    let (_, reply) = stateless(&replica_url, &token, v, ask(12, json!({"requestState": state}))).await;
    assert_eq!(reply["result"]["resultType"], "input_required", "{reply}");
    assert_eq!(reply["result"]["inputRequests"]["elicitation"]["params"]["message"], "Who are you?");

    // Another caller cannot use a caller's state.
    let (_, reply) = stateless(&url, &token, v, ask(5, json!({}))).await;
    let state = reply["result"]["requestState"].as_str().unwrap().to_owned();
    let stolen = ask(6, json!({"requestState": state, "inputResponses": {"elicitation": answer}}));
    let (_, reply) = stateless(&url, &bob, v, stolen).await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");

    // A caller that cannot be asked (no elicitation declared) gets the tool's own fallback.
    let plain = request(
        7,
        "tools/call",
        json!({"name": "test_elicitation", "arguments": {"message": "x"}}),
        envelope("2026-07-28"),
    );
    let (_, reply) = stateless(&url, &token, v, plain).await;
    assert!(reply["result"]["content"][0]["text"].as_str().unwrap().contains("not supported"), "{reply}");

    // Through a virtual server too: its bridged member asks, the caller gets input_required,
    // and its retry (routed to the member as its request was) finishes the call.
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "combo", "display_name": "Combo", "kind": "virtual", "servers": [{"server": "fixture"}]}),
        )
        .await
        .expect(201);
    grant(&admin, "combo", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let combo = format!("{}/acme/mcp/combo/server", app.base);
    let (status, reply) = stateless(&combo, &token, v, ask(8, json!({}))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["result"]["resultType"], "input_required", "{reply}");
    assert_eq!(reply["result"]["inputRequests"]["elicitation"]["params"]["message"], "Who are you?");
    let state = reply["result"]["requestState"].as_str().unwrap().to_owned();
    // A state the virtual server gave is not the remote server's, nor the other way round.
    let crossed = ask(13, json!({"requestState": state, "inputResponses": {"elicitation": answer}}));
    let (_, reply) = stateless(&url, &token, v, crossed.clone()).await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    let (status, reply) = stateless(&combo, &token, v, crossed).await;
    assert_eq!((status, reply["id"].as_i64()), (200, Some(13)), "{reply}");
    assert_eq!(reply["result"]["resultType"], "complete", "{reply}");
    assert!(reply["result"]["content"][0]["text"].as_str().unwrap().contains("Ann"), "{reply}");
    // The virtual server answers as itself.
    assert_eq!(reply["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "acme/combo", "{reply}");
}

#[tokio::test]
async fn a_session_ful_client_answers_the_input_a_stateless_upstream_asks_for() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    let upstream = peers::v2_everything_modern_only();
    remote(&admin, "modern", &upstream.url).await;
    grant(&admin, "modern", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let url = format!("{}/acme/mcp/modern/server", app.base);
    let http = reqwest::Client::new();
    let post = |session: Option<&str>, body: Value| {
        let mut request = http
            .post(&url)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(s) = session {
            request = request.header("mcp-session-id", s);
        }
        request.json(&body).send()
    };

    // A 2025 client that can be asked for input (elicitation), over an upstream that refuses
    // 2025 requests: the gateway answers initialize from the upstream's discovery.
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "raw", "version": "1"}}});
    let response = post(None, initialize).await.unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    post(Some(&session), json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await.unwrap();

    // The tool answers input_required upstream; the client sees an elicitation request on the
    // call's stream, answers it, and the same stream brings the tool's result.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "test_input_required_result_elicitation", "arguments": {}}});
    let response = post(Some(&session), call).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut events = Events::new(response);
    let ask = events.next().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    assert_eq!(ask["params"]["message"], "What is your name?");
    let answer = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"name": "Ann"}}});
    // Another session cannot answer for this one.
    let (_, other, _) = crate::gateway::post(
        &url,
        &token,
        None,
        json!({"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}),
    )
    .await;
    let stolen = post(Some(other.as_deref().unwrap()), answer.clone()).await.unwrap();
    assert_eq!(stolen.status(), 400, "{:?}", stolen.text().await);
    assert_eq!(post(Some(&session), answer).await.unwrap().status(), 202);
    let result = events.next().await;
    assert_eq!(result["id"], 2, "{result}");
    assert_eq!(result["result"]["content"][0]["text"], "Hello, Ann!", "{result}");
}

#[tokio::test]
async fn a_stateless_caller_listens_for_list_changes_of_a_session_ful_upstream() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    remote(&admin, "fixture", &session_only_upstream().await).await;
    grant(&admin, "fixture", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let url = format!("{}/acme/mcp/fixture/server", app.base);
    let v = Some("2026-07-28");

    // Discovery offers what the upstream announces.
    let (_, reply) = stateless(&url, &token, v, request(1, "server/discover", json!({}), envelope("2026-07-28"))).await;
    assert_eq!(reply["result"]["capabilities"]["tools"]["listChanged"], true, "{reply}");

    let mut events = listen(&url, &token, 2, json!({"toolsListChanged": true, "promptsListChanged": false})).await;
    // First the acknowledgement of what is honoured, marked with the subscription's id.
    let ack = events.next().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(ack["params"]["notifications"], json!({"toolsListChanged": true}));
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 2);

    // A prompt-list change is not asked for; a tool-list change arrives, marked.
    for (id, tool) in [(3, "test_trigger_prompt_change"), (4, "test_trigger_tool_change")] {
        let call = request(id, "tools/call", json!({"name": tool, "arguments": {}}), envelope("2026-07-28"));
        let (status, reply) = stateless(&url, &token, v, call).await;
        assert_eq!(status, 200, "{reply}");
    }
    let change = events.next().await;
    assert_eq!(change["method"], "notifications/tools/list_changed", "{change}");
    assert_eq!(change["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 2);
}

#[tokio::test]
async fn a_stateless_caller_listens_for_resource_updates_of_a_legacy_sse_upstream() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    let old = peers::everything("sse");
    legacy_sse(&admin, "old", &old.url).await;
    grant(&admin, "old", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let url = format!("{}/acme/mcp/old/server", app.base);
    let v = Some("2026-07-28");

    // Discovery offers what the upstream announced, subscriptions included.
    let (_, reply) = stateless(&url, &token, v, request(1, "server/discover", json!({}), envelope("2026-07-28"))).await;
    assert_eq!(reply["result"]["capabilities"]["resources"]["subscribe"], true, "{reply}");

    let uri = "demo://resource/static/document/architecture.md";
    let mut events = listen(&url, &token, 2, json!({"resourceSubscriptions": [uri], "toolsListChanged": true})).await;
    let ack = events.next().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(ack["params"]["notifications"], json!({"resourceSubscriptions": [uri], "toolsListChanged": true}));
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 2);

    // The upstream sends an update of every resource its session subscribed to as soon as the
    // tool turns updates on (and its log of the subscription, which was not asked for).
    let toggle =
        request(3, "tools/call", json!({"name": "toggle-subscriber-updates", "arguments": {}}), envelope("2026-07-28"));
    let (status, reply) = stateless(&url, &token, v, toggle).await;
    assert_eq!(status, 200, "{reply}");
    let update = events.next().await;
    assert_eq!(update["method"], "notifications/resources/updated", "{update}");
    assert_eq!(update["params"]["uri"], uri);
    assert_eq!(update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 2);
}

#[tokio::test]
async fn a_stateless_caller_listens_through_a_virtual_server_to_members_of_both_revisions() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    let modern = peers::v2_upstream("modern-only");
    remote(&admin, "fixture", &session_only_upstream().await).await;
    remote(&admin, "modern", &modern.url).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "combo", "display_name": "Combo", "kind": "virtual",
                "servers": [{"server": "fixture"}, {"server": "modern"}]}),
        )
        .await
        .expect(201);
    for server in ["fixture", "modern", "combo"] {
        grant(&admin, server, "user:ann@example.com").await;
    }
    wait_for_policy(&app).await;
    let url = format!("{}/acme/mcp/combo/server", app.base);
    let v = Some("2026-07-28");

    // Discovery offers list changes, since a member does.
    let (_, reply) = stateless(&url, &token, v, request(1, "server/discover", json!({}), envelope("2026-07-28"))).await;
    assert_eq!(reply["result"]["capabilities"]["tools"]["listChanged"], true, "{reply}");

    let mut events = listen(&url, &token, 2, json!({"toolsListChanged": true, "promptsListChanged": false})).await;
    let ack = events.next().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(ack["params"]["notifications"], json!({"toolsListChanged": true}));
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 2);

    // The session-ful member's tool-list change reaches the caller, marked as its subscription's
    // (the member's own listen stays open beside it); a prompt-list change was not asked for.
    for (id, tool) in [(3, "test_trigger_prompt_change"), (4, "test_trigger_tool_change")] {
        let call = request(id, "tools/call", json!({"name": tool, "arguments": {}}), envelope("2026-07-28"));
        let (status, reply) = stateless(&url, &token, v, call).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply.get("result").is_some(), "{reply}");
    }
    let change = events.next().await;
    assert_eq!(change["method"], "notifications/tools/list_changed", "{change}");
    assert_eq!(change["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 2);
}
