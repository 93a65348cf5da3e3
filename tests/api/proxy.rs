//! The MCP route, driven by the official Rust SDK client (rmcp) against an rmcp upstream.

use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::json;

use crate::helpers::{spawn_app, Client, TestApp};
use crate::peers;

/// Tenant `acme` with server `fixture` (an rmcp upstream), `ann` a collaborator with a token,
/// `bob` a member without access. Returns (admin, ann's token, bob's token).
pub async fn setup(app: &TestApp) -> (Client, String, String) {
    let upstream = peers::rmcp_upstream().await;
    let admin = app.admin().await;
    let ann = app.user(&admin, "ann@example.com").await;
    let bob = app.user(&admin, "bob@example.com").await;
    app.tenant(&admin, "acme", &[("ann@example.com", "member"), ("bob@example.com", "member")]).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "fixture", "display_name": "Fixture", "kind": "remote", "url": upstream}),
        )
        .await
        .expect(201);
    admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/fixture/collaborators",
            Some(json!({"subject": "user:ann@example.com", "role": "user"})),
        )
        .await
        .expect(201);
    let ann_token =
        ann.post("/api/v1/me/tokens", json!({"name": "ide"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    let bob_token =
        bob.post("/api/v1/me/tokens", json!({"name": "ide"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    wait_for_policy(app).await;
    (admin, ann_token, bob_token)
}

/// Waits until the in-process proxy holds a snapshot covering every change made so far.
pub async fn wait_for_policy(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let published = app.state.publisher.latest().map(|p| p.version);
        let state = mcpgate::policy::publish::latest_stored(&app.state.db).await.unwrap().map(|p| p.version);
        let wanted: i64 = {
            use sea_orm::EntityTrait;
            mcpgate::store::entities::policy_state::Entity::find_by_id(1)
                .one(&app.state.db)
                .await
                .unwrap()
                .unwrap()
                .version
        };
        if app.state.policy.version() == Some(wanted) && published == Some(wanted) && state == Some(wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "policy did not catch up");
        app.state.publisher.poke();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mcp_url(app: &TestApp) -> String {
    format!("{}/acme/mcp/fixture/server", app.base)
}

pub async fn status(url: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new().post(url).header("content-type", "application/json").header("accept", "application/json, text/event-stream").body(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.headers().clone())
}

#[tokio::test]
async fn an_rmcp_client_uses_tools_through_the_proxy_with_a_token() {
    let app = spawn_app().await;
    let (_, ann_token, _) = setup(&app).await;
    let config = StreamableHttpClientTransportConfig::with_uri(mcp_url(&app)).auth_header(ann_token);
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    let client = ClientConfig::new(ClientCapabilities::default(), Implementation::new("test", "1"))
        .serve(transport)
        .await
        .expect("initialize through the proxy");
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo"]);
    let result = client
        .call_tool(
            CallToolRequestParams::new("add").with_arguments(json!({"a": 2, "b": 40}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(&result.content).unwrap()[0]["text"], "42");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_proxy_answers_401_403_and_404_from_the_snapshot() {
    let app = spawn_app().await;
    let (admin, ann_token, bob_token) = setup(&app).await;
    let (code, headers) = status(&mcp_url(&app), None).await;
    assert_eq!(code, 401);
    assert_eq!(
        headers["www-authenticate"],
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/acme/mcp/fixture/server\"",
            app.base
        )
        .as_str()
    );
    assert_eq!(status(&mcp_url(&app), Some("mgw_pat_garbage")).await.0, 401);
    assert_eq!(status(&mcp_url(&app), Some(&bob_token)).await.0, 403, "member, not a collaborator");
    assert_eq!(status(&format!("{}/acme/mcp/nope/server", app.base), Some(&ann_token)).await.0, 404);
    // Someone outside the tenant cannot tell the server exists.
    let eve = app.user(&admin, "eve@example.com").await;
    let eve_token =
        eve.post("/api/v1/me/tokens", json!({"name": "x"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    wait_for_policy(&app).await;
    assert_eq!(status(&mcp_url(&app), Some(&eve_token)).await.0, 404);
    assert_eq!(status(&mcp_url(&app), Some(&ann_token)).await.0, 200);
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_the_proxy_within_a_second() {
    let app = spawn_app().await;
    let (_, ann_token, _) = setup(&app).await;
    assert_eq!(status(&mcp_url(&app), Some(&ann_token)).await.0, 200);
    let ann = Client::with_token(&app.base, &ann_token);
    let id = ann.get("/api/v1/me/tokens").await.expect(200)["items"][0]["id"].as_str().unwrap().to_owned();
    ann.delete(&format!("/api/v1/me/tokens/{id}")).await.expect(204);
    let revoked_at = Instant::now();
    loop {
        if status(&mcp_url(&app), Some(&ann_token)).await.0 == 401 {
            break;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(1), "still accepted a second after revocation");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_identity_has_its_own_request_budget() {
    let app = crate::helpers::spawn_app_with(|s| s.proxy_rate_limit_per_minute = 3).await;
    let (_admin, ann, bob) = setup(&app).await;
    let url = format!("{}/acme/mcp/fixture/server", app.base);
    for _ in 0..3 {
        assert_eq!(status(&url, Some(&ann)).await.0, 200, "within the budget the request goes through");
    }
    let res = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&ann)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=21).contains(&wait), "3 a minute: one comes back within 20 s, got {wait}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32005);
    // Bob's budget is his own (he is not a collaborator: 403, not 429).
    assert_eq!(status(&url, Some(&bob)).await.0, 403);
}

#[tokio::test]
async fn gateway_access_tokens_are_accepted_for_their_own_mcp_url_only() {
    use mcpgate::auth::access_token::{mint, AccessClaims};
    let app = spawn_app().await;
    let (admin, _ann, _bob) = setup(&app).await;
    let ann_id = admin.get("/api/v1/users?limit=200").await.expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ann@example.com")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let key = mcpgate::policy::publish::active_key(&app.state.db, &app.state.sealer, app.clock.now()).await.unwrap();
    let url = format!("{}/acme/mcp/fixture/server", app.base);
    let now = app.clock.now().timestamp();
    let token = |aud: &str, sub: String, exp: i64| {
        let claims = AccessClaims {
            iss: app.base.clone(),
            sub,
            aud: aud.to_owned(),
            exp,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: "test-client".into(),
            grant_id: None,
            scope: None,
        };
        mint(&key, &claims).unwrap()
    };
    let ann_token = token(&url, format!("u{ann_id}"), now + 3600);
    assert_eq!(status(&url, Some(&ann_token)).await.0, 200, "a token for this URL works");
    let elsewhere = token(&format!("{}/acme/mcp/other/server", app.base), format!("u{ann_id}"), now + 3600);
    assert_eq!(status(&url, Some(&elsewhere)).await.0, 401, "a token for another MCP URL does not");
    assert_eq!(status(&url, Some(&token(&url, format!("u{ann_id}"), now - 1))).await.0, 401, "expired");
    assert_eq!(status(&url, Some(&token(&url, "u999999".into(), now + 3600))).await.0, 401, "unknown user");
    let forged = mint(
        &mcpgate::policy::sign::KeyMaterial::generate().unwrap(),
        &AccessClaims {
            iss: app.base.clone(),
            sub: format!("u{ann_id}"),
            aud: url.clone(),
            exp: now + 3600,
            iat: now,
            jti: "x".into(),
            client_id: "c".into(),
            grant_id: None,
            scope: None,
        },
    )
    .unwrap();
    assert_eq!(status(&url, Some(&forged)).await.0, 401, "signed by a key the snapshot does not hold");
}
