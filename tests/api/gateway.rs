//! The proxy end to end with real peers: the rmcp client and the conformance fixture (an rmcp
//! server), virtual servers over two rmcp upstreams, standalone replicas sharing sessions,
//! the request checks, and the decisions in the audit trail.

#![allow(deprecated)] // sampling is deprecated in the newest revision, still part of 2025-11-25

use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, GetPromptRequestParams, Implementation, ReadResourceRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Client, TestApp};
use crate::proxy::wait_for_policy;
use crate::{fixture, peers};

pub async fn conformance_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(fixture::serve(listener));
    format!("http://127.0.0.1:{port}/mcp")
}

/// The conformance fixture as a server of the session-ful revisions only (it refuses 2026-07-28).
pub async fn session_only_upstream() -> String {
    session_only_upstream_counting().await.0
}

/// As [`session_only_upstream`], with the count of requests it gets without a session id.
pub async fn session_only_upstream_counting() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sessionless = std::sync::Arc::default();
    tokio::spawn(fixture::serve_counting(listener, true, std::sync::Arc::clone(&sessionless)));
    (format!("http://127.0.0.1:{port}/mcp"), sessionless)
}

/// Tenant `acme` with `ann` (member) holding a token; returns (admin, ann's token).
pub async fn tenant_with_ann(app: &TestApp) -> (Client, String) {
    let admin = app.admin().await;
    let ann = app.user(&admin, "ann@example.com").await;
    app.tenant(&admin, "acme", &[("ann@example.com", "member")]).await;
    let token =
        ann.post("/api/v1/me/tokens", json!({"name": "ide"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    (admin, token)
}

pub async fn remote(admin: &Client, slug: &str, url: &str) {
    admin
        .post("/api/v1/tenants/acme/servers", json!({"slug": slug, "display_name": slug, "kind": "remote", "url": url}))
        .await
        .expect(201);
}

pub async fn grant(admin: &Client, server: &str, subject: &str) {
    admin
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/tenants/acme/servers/{server}/collaborators"),
            Some(json!({"subject": subject, "role": "user"})),
        )
        .await
        .expect(201);
}

/// One raw MCP POST: status, session id and every JSON-RPC message of the answer (JSON or SSE).
pub async fn post(url: &str, token: &str, session: Option<&str>, body: Value) -> (u16, Option<String>, Vec<Value>) {
    let mut req = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let session = res.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    let sse = res.headers().get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = res.text().await.unwrap();
    let messages = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(&text).into_iter().collect()
    };
    (status, session, messages)
}

fn initialize(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
}

pub async fn open_session(url: &str, token: &str) -> String {
    let (status, session, _) = post(url, token, None, initialize(1)).await;
    assert_eq!(status, 200);
    let session = session.expect("a gateway session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(url, token, Some(&session), initialized).await.0, 202);
    session
}

/// A client that answers sampling and elicitation requests the way a person and a model would.
#[derive(Clone)]
struct Responder;

impl ClientHandler for Responder {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            serde_json::from_value::<ClientCapabilities>(json!({"sampling": {}, "elicitation": {}})).unwrap(),
            Implementation::new("gateway-test", "1"),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let asked = serde_json::to_value(&params.messages).unwrap()[0]["content"]["text"].as_str().unwrap().to_owned();
        Ok(serde_json::from_value(json!({"role": "assistant", "model": "test-model",
            "content": {"type": "text", "text": format!("model says hi to {asked}")}}))
        .unwrap())
    }

    async fn create_elicitation(
        &self,
        _: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(serde_json::from_value(json!({"action": "accept", "content": {"response": "yes please"}})).unwrap())
    }
}

#[tokio::test]
async fn an_rmcp_client_gets_sampling_elicitation_resources_and_prompts_through_the_proxy() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    remote(&admin, "fixture", &conformance_upstream().await).await;
    grant(&admin, "fixture", "user:ann@example.com").await;
    wait_for_policy(&app).await;

    let url = format!("{}/acme/mcp/fixture/server", app.base);
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::new(),
        StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(token.clone()),
    );
    let client = Responder.serve(transport).await.expect("initialize through the proxy");
    let call = |name: &str, args: Value| {
        CallToolRequestParams::new(name.to_owned()).with_arguments(args.as_object().unwrap().clone())
    };
    let text = |v: &rmcp::model::CallToolResult| serde_json::to_value(&v.content).unwrap()[0]["text"].clone();

    let sampled = client.call_tool(call("test_sampling", json!({"prompt": "the gateway"}))).await.unwrap();
    assert_eq!(text(&sampled), "LLM response: model says hi to the gateway", "sampling round trip");
    let elicited = client.call_tool(call("test_elicitation", json!({"message": "continue?"}))).await.unwrap();
    assert_eq!(text(&elicited), r#"User response: action="accept", content={"response":"yes please"}"#);

    let resources = client.list_all_resources().await.unwrap();
    assert!(resources.iter().any(|r| r.uri == "test://static-text"));
    let read = client.read_resource(ReadResourceRequestParams::new("test://template/42/data")).await.unwrap();
    assert!(serde_json::to_string(&read).unwrap().contains("Data for ID: 42"));

    let prompts = client.list_all_prompts().await.unwrap();
    assert_eq!(prompts.len(), 4);
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("test_prompt_with_arguments")
                .with_arguments(json!({"arg1": "a", "arg2": "b"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert!(serde_json::to_string(&prompt).unwrap().contains("arg1='a', arg2='b'"));
    client.cancel().await.unwrap();

    // Progress notifications arrive on the call's stream, before its result.
    let session = open_session(&url, &token).await;
    let progress_call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p-1"}}});
    let (status, _, messages) = post(&url, &token, Some(&session), progress_call).await;
    assert_eq!(status, 200);
    let progress: Vec<f64> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            assert_eq!(m["params"]["progressToken"], "p-1");
            m["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(progress, [0.0, 50.0, 100.0]);
    assert_eq!(messages.last().unwrap()["id"], 7);

    // DELETE ends the upstream session; the gateway session is then gone too.
    let deleted = reqwest::Client::new()
        .delete(&url)
        .bearer_auth(&token)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let ping = json!({"jsonrpc": "2.0", "id": 8, "method": "ping"});
    assert_eq!(post(&url, &token, Some(&session), ping).await.0, 404);
}

#[tokio::test]
async fn a_virtual_server_merges_routes_and_filters_tools_and_survives_a_dead_member() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    remote(&admin, "alpha", &peers::rmcp_upstream().await).await;
    remote(&admin, "beta", &conformance_upstream().await).await;
    remote(&admin, "gone", &peers::closed_port_url()).await;
    admin.post("/api/v1/tenants/acme/servers/beta/probe", json!({})).await.expect(200);
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "combo", "display_name": "Combo", "kind": "virtual",
                "servers": [{"server": "alpha", "enabled_tools": "all"},
                            {"server": "beta", "enabled_tools": ["echo", "test_simple_text", "test_error_handling"]},
                            {"server": "gone"}],
                "tool_settings": [{"name": "add", "disabled": true},
                                  {"name": "test_simple_text", "description": "Says something simple"}]}),
        )
        .await
        .expect(201);
    // A role on the virtual server does not extend to members: ann needs each of them too.
    for server in ["combo", "alpha", "beta", "gone"] {
        grant(&admin, server, "user:ann@example.com").await;
    }
    wait_for_policy(&app).await;

    let url = format!("{}/acme/mcp/combo/server", app.base);
    let session = open_session(&url, &token).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _, messages) = post(&url, &token, Some(&session), list).await;
    assert_eq!(status, 200);
    let result = &messages[0]["result"];
    let mut names: Vec<&str> =
        result["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    // `echo` exists on both members and gets a suffix per member; `add` is disabled; beta's
    // other tools are not enabled.
    assert_eq!(names, ["echo_alpha", "echo_beta", "test_error_handling", "test_simple_text"]);
    let simple = result["tools"].as_array().unwrap().iter().find(|t| t["name"] == "test_simple_text").unwrap();
    assert_eq!(simple["description"], "Says something simple");
    assert_eq!(result["_meta"]["mcpgate/unavailable"], json!(["gone"]), "the dead member is named, not fatal");

    let call = |id: i64, name: &str, args: Value| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}});
    let (_, _, reply) = post(&url, &token, Some(&session), call(3, "echo_beta", json!({"message": "to beta"}))).await;
    assert_eq!(reply.last().unwrap()["result"]["content"][0]["text"], "to beta");
    let (_, _, reply) = post(&url, &token, Some(&session), call(4, "echo_alpha", json!({"message": "to alpha"}))).await;
    assert_eq!(reply.last().unwrap()["result"]["content"][0]["text"], "to alpha");
    let (_, _, reply) = post(&url, &token, Some(&session), call(5, "add", json!({"a": 1, "b": 2}))).await;
    assert_eq!(reply[0]["error"]["code"], -32602);
    assert!(reply[0]["error"]["message"].as_str().unwrap().contains("disabled"), "{}", reply[0]);
    let (_, _, reply) = post(&url, &token, Some(&session), call(6, "test_sampling", json!({"prompt": "x"}))).await;
    assert!(reply[0]["error"]["message"].as_str().unwrap().contains("not offered"), "not enabled on the member");

    // The refusal is in the audit trail with the snapshot version that decided it.
    let version = app.state.policy.version().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = admin.get("/api/v1/tenants/acme/audit-events?action=mcp.request").await.expect(200);
        let denied = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["outcome"] == "denied" && e["details"]["reason"] == "tool_disabled")
            .cloned();
        if let Some(event) = denied {
            assert_eq!(event["actor"], "user:ann@example.com");
            assert_eq!(event["target"], "server:combo");
            assert_eq!(event["details"]["reason"], "tool_disabled");
            assert_eq!(event["details"]["snapshot_version"], version);
            let allowed = events["items"].as_array().unwrap().iter().filter(|e| e["outcome"] == "allowed").count();
            assert!(allowed >= 4, "allowed calls are recorded too");
            break;
        }
        assert!(Instant::now() < deadline, "no decision was recorded: {events}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_proxy_refuses_foreign_origins_mismatched_headers_and_removed_collaborators() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    remote(&admin, "fixture", &peers::rmcp_upstream().await).await;
    grant(&admin, "fixture", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let url = format!("{}/acme/mcp/fixture/server", app.base);
    let http = reqwest::Client::new();
    let base = |r: reqwest::RequestBuilder| {
        r.bearer_auth(&token).header("accept", "application/json, text/event-stream").json(&initialize(1))
    };

    let evil = base(http.post(&url)).header("origin", "http://evil.example.com").send().await.unwrap();
    assert_eq!(evil.status(), 403, "a page from another site cannot drive the gateway");
    let rebound = base(http.post(&url)).header("host", "evil.example.com").send().await.unwrap();
    assert_eq!(rebound.status(), 403, "DNS rebinding onto a loopback gateway");
    let version = base(http.post(&url)).header("mcp-protocol-version", "1999-01-01").send().await.unwrap();
    assert_eq!(version.status(), 400);
    let mismatch = base(http.post(&url))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), 400);
    assert!(mismatch.text().await.unwrap().contains("does not match"));
    let forged = base(http.post(&url)).header("mcp-session-id", "mgs1.forged").send().await.unwrap();
    assert_eq!(forged.status(), 404, "a session id the gateway did not seal");

    let session = open_session(&url, &token).await;
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    assert_eq!(post(&url, &token, Some(&session), ping.clone()).await.0, 200);
    admin.delete("/api/v1/tenants/acme/servers/fixture/collaborators/user:ann@example.com").await.expect(204);
    wait_for_policy(&app).await;
    assert_eq!(post(&url, &token, Some(&session), ping).await.0, 403, "access ends with the grant");
}

/// An upstream that answers every POST with an event stream (a priming event, a progress
/// notification, then the answer) and keeps the stream open afterwards, as a server may.
async fn upstream_keeping_its_streams_open() -> String {
    use futures_util::StreamExt;
    let answer = |body: axum::body::Bytes| async move {
        let id = serde_json::from_slice::<Value>(&body).unwrap()["id"].clone();
        let events = [
            "id: p1\nretry: 500\ndata: \n\n".to_owned(),
            format!(
                "data: {}\n\n",
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}})
            ),
            format!(
                "data: {}\n\n",
                json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "done"}]}})
            ),
        ];
        // Never ends the body.
        let stream =
            futures_util::stream::iter(events.map(Ok::<_, std::io::Error>)).chain(futures_util::stream::pending());
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from_stream(stream))
            .unwrap()
    };
    let router = axum::Router::new().route("/mcp", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://127.0.0.1:{port}/mcp")
}

#[tokio::test]
async fn a_call_is_answered_when_its_answer_arrives_even_if_the_upstream_keeps_the_stream_open() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    remote(&admin, "open", &upstream_keeping_its_streams_open().await).await;
    grant(&admin, "open", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let url = format!("{}/acme/mcp/open/server", app.base);
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "slow", "arguments": {}}});
    // Before, the client's read of the answer waited for an end of the body that never came.
    let (status, _, messages) = tokio::time::timeout(Duration::from_secs(20), post(&url, &token, None, call))
        .await
        .expect("the call ends with its answer");
    assert_eq!(status, 200);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0]["method"], "notifications/progress", "what came before the answer is relayed, in order");
    assert_eq!(messages[1]["id"], 7);
    assert_eq!(messages[1]["result"]["content"][0]["text"], "done");
}

/// A standalone replica following `app`, behind the same public URL (gateway tokens name it),
/// started and holding the control plane's current snapshot; returns its base URL and policy.
pub async fn running_replica(app: &TestApp) -> (String, std::sync::Arc<mcpgate::proxy::holder::PolicyHolder>) {
    let mut settings = mcpgate::config::Settings::with_defaults(std::env::temp_dir()).unwrap();
    settings.listen = "127.0.0.1:0".into();
    settings.workers = 1;
    settings.public_url = Some(app.base.clone());
    settings.upstream_allow_private = true;
    settings.control_plane = Some(app.base.clone());
    settings.proxy_key = Some(app.state.proxy_key.expose_secret().to_owned().into());
    let replica =
        mcpgate::proxy::replica::Replica::build(settings.replica_config(), mcpgate::Clock::system()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", replica.port());
    let policy = replica.policy.clone();
    tokio::spawn(replica.run_until_stopped());
    let wanted = app.state.policy.version();
    let deadline = Instant::now() + Duration::from_secs(10);
    while policy.version() < wanted {
        assert!(Instant::now() < deadline, "the replica did not load the snapshot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (base, policy)
}

#[tokio::test]
async fn a_session_started_on_one_replica_continues_on_another() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    remote(&admin, "fixture", &peers::rmcp_upstream().await).await;
    grant(&admin, "fixture", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let (one_base, _) = running_replica(&app).await;
    let (two_base, _) = running_replica(&app).await;
    assert_eq!(reqwest::get(format!("{one_base}/readyz")).await.unwrap().status(), 200);

    let on = |base: &str| format!("{base}/acme/mcp/fixture/server");
    let session = open_session(&on(&one_base), &token).await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 20, "b": 22}}});
    let (status, _, reply) = post(&on(&two_base), &token, Some(&session), call).await;
    assert_eq!(status, 200, "replica two continues replica one's session");
    assert_eq!(reply.last().unwrap()["result"]["content"][0]["text"], "42");

    // A revocation reaches the replicas through the long-poll.
    let ann = Client::with_token(&app.base, &token);
    let id = ann.get("/api/v1/me/tokens").await.expect(200)["items"][0]["id"].as_str().unwrap().to_owned();
    ann.delete(&format!("/api/v1/me/tokens/{id}")).await.expect(204);
    let revoked = Instant::now();
    loop {
        if post(&on(&two_base), &token, None, initialize(3)).await.0 == 401 {
            break;
        }
        assert!(revoked.elapsed() < Duration::from_secs(2), "replica still accepts a revoked token");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_replica_without_a_snapshot_fails_closed_and_keeps_the_last_good_one() {
    let app = spawn_app().await;
    let mut settings = mcpgate::config::Settings::with_defaults(std::env::temp_dir()).unwrap();
    settings.listen = "127.0.0.1:0".into();
    settings.workers = 1;
    settings.control_plane = Some(peers::closed_port_url().trim_end_matches("/mcp").to_owned());
    settings.proxy_key = Some("mgw_proxy_whatever".to_owned().into());
    let lonely =
        mcpgate::proxy::replica::Replica::build(settings.replica_config(), mcpgate::Clock::system()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", lonely.port());
    tokio::spawn(lonely.run_until_stopped());
    let res =
        reqwest::Client::new().post(format!("{base}/acme/mcp/x/server")).json(&initialize(1)).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.text().await.unwrap().contains("no verified policy"));
    assert_eq!(reqwest::get(format!("{base}/readyz")).await.unwrap().status(), 503);

    // The in-process proxy: bad snapshots are refused and requests keep being decided by the
    // last good one.
    let (admin, token) = tenant_with_ann(&app).await;
    remote(&admin, "fixture", &peers::rmcp_upstream().await).await;
    grant(&admin, "fixture", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let good = app.state.policy.version().unwrap();
    let keys = mcpgate::policy::publish::trusted_keys(&app.state.db).await.unwrap();
    let latest = app.state.publisher.latest().unwrap().document.to_string();
    let parts: Vec<&str> = latest.split('.').collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1]).unwrap(),
    )
    .unwrap();
    payload["version"] = json!(good + 100);
    let forged_payload =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload.to_string().as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert!(app.state.policy.offer(&tampered, &keys).is_err(), "tampered");
    assert!(app.state.policy.offer(&latest, &mcpgate::policy::Jwks::default()).is_err(), "unknown key");
    assert_eq!(app.state.policy.version(), Some(good));
    let url = format!("{}/acme/mcp/fixture/server", app.base);
    assert_eq!(post(&url, &token, None, initialize(1)).await.0, 200, "still serving the last good snapshot");
}

/// Runs the TypeScript SDK client (tests/peers/ts-client.mjs) against `url`; returns its report.
async fn typescript_client(url: &str, token: &str, profile: &str) -> Value {
    node_report("ts-client.mjs", vec![url.to_owned(), token.to_owned(), profile.to_owned()]).await
}

/// Runs a client script of tests/peers with `args`; returns the one JSON report it prints.
pub async fn node_report(script: &str, args: Vec<String>) -> Value {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(script);
    let shown = script.display().to_string();
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new("node").arg(script).args(args).output())
            .await
            .unwrap()
            .expect("node is installed");
    assert!(output.status.success(), "{shown} failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

#[tokio::test]
async fn the_typescript_sdk_client_works_through_the_proxy_with_both_upstreams() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    let everything = peers::everything("streamableHttp");
    remote(&admin, "everything", &everything.url).await;
    remote(&admin, "fixture", &conformance_upstream().await).await;
    grant(&admin, "everything", "user:ann@example.com").await;
    grant(&admin, "fixture", "user:ann@example.com").await;
    wait_for_policy(&app).await;

    let report = typescript_client(&format!("{}/acme/mcp/everything/server", app.base), &token, "everything").await;
    assert_eq!(report["session"], true);
    assert!(report["tools"].as_array().unwrap().len() > 5, "{report}");
    assert!(report["echo"].as_str().unwrap().contains("through the gateway"));
    assert!(report["progress"].as_array().unwrap().len() >= 3, "progress notifications relayed: {report}");
    let sampling = report["sampling"].as_str().unwrap();
    assert!(sampling.contains("sampled: ") && sampling.contains("hello"), "sampling round trip: {report}");
    assert!(report["elicitation"].as_str().unwrap().contains("decline"), "elicitation round trip: {report}");
    assert!(report["resources"].as_u64().unwrap() > 0);
    assert!(report["prompt"].as_str().unwrap().contains("Paris"));
    assert_eq!(report["terminated"], true);

    let report = typescript_client(&format!("{}/acme/mcp/fixture/server", app.base), &token, "fixture").await;
    assert_eq!(report["server"], "mcpgate-conformance-fixture");
    assert_eq!(report["progress"], json!([0, 50, 100]));
    assert!(report["sampling"].as_str().unwrap().contains("LLM response: sampled: hello"), "{report}");
    assert!(report["elicitation"].as_str().unwrap().contains("decline"), "{report}");
    assert_eq!(report["read"], "test://static-text");
    assert!(report["prompt"].as_str().unwrap().contains("arg1='Paris'"));
    assert_eq!(report["terminated"], true);
}

#[tokio::test]
async fn an_rmcp_client_reaches_server_everything_and_a_legacy_sse_upstream() {
    let app = spawn_app().await;
    let (admin, token) = tenant_with_ann(&app).await;
    let streamable = peers::everything("streamableHttp");
    let legacy = peers::everything("sse");
    remote(&admin, "everything", &streamable.url).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "legacy", "display_name": "Legacy", "kind": "remote", "url": legacy.url, "transport": "sse",
                "tool_settings": [{"name": "get-env", "disabled": true}]}),
        )
        .await
        .expect(201);
    grant(&admin, "everything", "user:ann@example.com").await;
    grant(&admin, "legacy", "user:ann@example.com").await;
    wait_for_policy(&app).await;

    for server in ["everything", "legacy"] {
        let url = format!("{}/acme/mcp/{server}/server", app.base);
        let transport = StreamableHttpClientTransport::with_client(
            reqwest::Client::new(),
            StreamableHttpClientTransportConfig::with_uri(url).auth_header(token.clone()),
        );
        let client = Responder.serve(transport).await.unwrap_or_else(|e| panic!("{server}: {e}"));
        let tools: Vec<String> = client.list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
        assert!(tools.contains(&"get-sum".to_owned()), "{server}: {tools:?}");
        assert_eq!(tools.contains(&"get-env".to_owned()), server == "everything", "tool settings apply");
        let sum = client
            .call_tool(
                CallToolRequestParams::new("get-sum")
                    .with_arguments(json!({"a": 2, "b": 3}).as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        assert!(serde_json::to_string(&sum.content).unwrap().contains('5'), "{server}");
        let sampled = client
            .call_tool(
                CallToolRequestParams::new("trigger-sampling-request")
                    .with_arguments(json!({"prompt": "relay"}).as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        let sampled = serde_json::to_string(&sampled.content).unwrap();
        assert!(sampled.contains("model says hi to") && sampled.contains("relay"), "{server}: {sampled}");
        client.cancel().await.unwrap();
    }
}
