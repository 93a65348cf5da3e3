//! The governance holes found from outside (a plain member getting around the gateway's
//! decisions), one test each, and the suspected ones a code read added. Every test here failed
//! on the main branch before they were closed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::LOCATION;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gateway::{grant, post};
use crate::guarded::{self, Guard};
use crate::helpers::{spawn_app, spawn_app_with, Client, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::oauth::{authorize_url, hidden, mcp_url, pkce, public_client, query_of, Browser};
use crate::peers;
use crate::proxy::{setup, wait_for_policy};

/// A bare HTTP listener that records the head of every request it gets and answers each with
/// `reply`, made once from the recorder's own base URL.
struct Recorder {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start(reply: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, answer) = (seen.clone(), Arc::new(reply(&base)));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (log, answer) = (log.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 8192];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    log.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { base, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn mcp(app: &TestApp, server: &str) -> String {
    format!("{}/acme/mcp/{server}/server", app.base)
}

fn call(id: i64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

/// A tenant `acme` with ann and bob as plain members, their clients and PAT for ann.
async fn members(app: &TestApp) -> (Client, Client, Client, String) {
    let admin = app.admin().await;
    let ann = app.user(&admin, "ann@example.com").await;
    let bob = app.user(&admin, "bob@example.com").await;
    app.tenant(&admin, "acme", &[("ann@example.com", "member"), ("bob@example.com", "member")]).await;
    let token =
        ann.post("/api/v1/me/tokens", json!({"name": "ide"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    (admin, ann, bob, token)
}

/// Registers a remote server of `acme` with this outbound auth.
async fn remote(client: &Client, slug: &str, url: &str, auth: Value) {
    let body = json!({"slug": slug, "display_name": slug, "kind": "remote", "url": url, "auth_data": auth});
    client.post("/api/v1/tenants/acme/servers", body).await.expect(201);
}

/// An upstream that takes one shared key, registered with it as `slug`'s global header.
async fn shared_key_server(admin: &Client, slug: &str, key: &str) -> guarded::Fixture {
    let upstream = guarded::start(Guard::header("x-api-key", &[(key, "owner")])).await;
    remote(
        admin,
        slug,
        &upstream.url,
        json!({"type": "header", "auth_level": "global", "headers": {"X-Api-Key": key}}),
    )
    .await;
    upstream
}

async fn audit(admin: &Client, action: &str) -> Vec<Value> {
    let page = admin.get(&format!("/api/v1/tenants/acme/audit-events?action={action}&limit=100")).await.expect(200);
    page["items"].as_array().unwrap().clone()
}

// 1. Virtual servers launder access.
#[tokio::test]
async fn a_virtual_server_does_not_launder_access_to_its_members() {
    let app = spawn_app().await;
    let (admin, ann, _, token) = members(&app).await;
    shared_key_server(&admin, "secret", "shared-secret").await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "open", "display_name": "Open", "kind": "remote", "url": peers::rmcp_upstream().await}),
        )
        .await
        .expect(201);
    grant(&admin, "open", "user:ann@example.com").await;

    // Ann cannot compose a server she may not use; the answer is the one for a slug that does
    // not exist, so it reveals nothing.
    let virtual_over = |member: &str| json!({"slug": "mine", "display_name": "Mine", "kind": "virtual", "servers": [{"server": member}]});
    let hidden_one =
        ann.post("/api/v1/tenants/acme/servers", virtual_over("secret")).await.problem(422, "validation_failed");
    let missing =
        ann.post("/api/v1/tenants/acme/servers", virtual_over("nothere")).await.problem(422, "validation_failed");
    assert_eq!(hidden_one["errors"][0]["code"], "unknown_server");
    assert_eq!(
        hidden_one["errors"][0]["message"].as_str().unwrap().replace("secret", "X"),
        missing["errors"][0]["message"].as_str().unwrap().replace("nothere", "X")
    );
    // Nor add it to a virtual server she manages.
    ann.post("/api/v1/tenants/acme/servers", virtual_over("open")).await.expect(201);
    let patched = ann
        .patch("/api/v1/tenants/acme/servers/mine", json!({"servers": [{"server": "open"}, {"server": "secret"}]}))
        .await;
    assert_eq!(patched.error_fields(), ["servers[1].server"]);

    // A virtual server an admin built over it, shared with ann, shows her nothing of it and
    // never sends its credential on her behalf.
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "combo", "display_name": "Combo", "kind": "virtual",
                   "servers": [{"server": "open"}, {"server": "secret"}]}),
        )
        .await
        .expect(201);
    grant(&admin, "combo", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let url = mcp(&app, "combo");
    let (status, session, _) = post(
        &url,
        &token,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200);
    let session = session.unwrap();
    let (_, _, listed) =
        post(&url, &token, Some(&session), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    let names: Vec<&str> =
        listed[0]["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"echo") && !names.iter().any(|n| n.contains("whoami")), "{names:?}");
    let (_, _, called) = post(&url, &token, Some(&session), call(3, "whoami")).await;
    assert_eq!(called[0]["error"]["code"], -32602, "{called:?}");
    // Granted the member itself, she reaches it (after starting a session that includes it).
    grant(&admin, "secret", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let (status, _, _) =
        post(&url, &token, Some(&session), json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"})).await;
    assert_eq!(status, 404, "the session's members changed: start again");
}

// 2. SSRF: upstreams on internal addresses, and the probe as a port scanner.
#[tokio::test]
async fn upstreams_on_internal_addresses_are_refused_by_default() {
    let app = spawn_app_with(|s| s.upstream_allow_private = false).await;
    let (_, ann, _, token) = members(&app).await;
    let internal = Recorder::start(|_| "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".into()).await;
    let port = internal.base.rsplit(':').next().unwrap().to_owned();
    for url in [
        format!("http://127.0.0.1:{port}/mcp"),
        format!("http://localhost:{port}/mcp"),
        format!("http://[::ffff:127.0.0.1]:{port}/mcp"),
        format!("http://0.0.0.0:{port}/mcp"),
        format!("http://2130706433:{port}/mcp"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[fd00::1]/mcp".to_owned(),
    ] {
        let reply = ann
            .post(
                "/api/v1/tenants/acme/servers",
                json!({"slug": "inside", "display_name": "x", "kind": "remote", "url": url}),
            )
            .await;
        assert_eq!(reply.error_fields(), ["url"], "{url}: {}", reply.body);
        assert_eq!(reply.body["errors"][0]["code"], "egress_refused", "{url}");
    }
    // OAuth endpoints named in auth_data too.
    let reply = ann
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "inside", "display_name": "x", "kind": "remote", "url": "https://mcp.example.invalid/mcp",
                   "auth_data": {"type": "oauth2", "grant_type": "client_credentials", "client_id": "c", "client_secret": "s",
                                 "token_url": format!("http://127.0.0.1:{port}/token")}}),
        )
        .await;
    assert_eq!(reply.error_fields(), ["auth_data.token_url"], "{}", reply.body);

    // A server stored before the policy (or whose name now resolves inside) is refused at
    // every use: probe and proxy send nothing.
    ann.post(
        "/api/v1/tenants/acme/servers",
        json!({"slug": "moved", "display_name": "Moved", "kind": "remote", "url": "https://mcp.example.invalid/mcp"}),
    )
    .await
    .expect(201);
    let row = mcpgate::store::entities::servers::Entity::find().all(&app.state.db).await.unwrap();
    let mut active = row.into_iter().find(|s| s.slug == "moved").unwrap().into_active_model();
    active.url = Set(Some(format!("http://127.0.0.1:{port}/mcp")));
    active.update(&app.state.db).await.unwrap();
    mcpgate::policy::publish::bump(&app.state.db).await.unwrap();
    let probe = ann.post("/api/v1/tenants/acme/servers/moved/probe", json!({})).await.expect(200);
    assert_eq!(probe["reachable"], false);
    assert_eq!(probe["error"]["code"], "egress_refused", "{probe}");
    wait_for_policy(&app).await;
    let (status, _, answer) = post(&mcp(&app, "moved"), &token, None, call(1, "x")).await;
    assert_eq!(status, 502, "{answer:?}");
    assert!(answer[0]["error"]["message"].as_str().unwrap().contains("does not call"), "{answer:?}");
    assert!(internal.requests().is_empty(), "nothing reached the internal address");

    // An operator can open exactly the networks they mean.
    let open = spawn_app_with(|s| {
        s.upstream_allow_private = false;
        s.upstream_allowed_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let admin = open.admin().await;
    open.tenant(&admin, "acme", &[]).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "inside", "display_name": "x", "kind": "remote", "url": format!("http://127.0.0.1:{port}/mcp")}),
        )
        .await
        .expect(201);
    let refused = admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "meta", "display_name": "x", "kind": "remote", "url": "http://169.254.169.254/"}),
        )
        .await;
    assert_eq!(refused.error_fields(), ["url"]);
}

// 3. Account-linking CSRF at the provider callback, and the RFC 9207 issuer.
#[tokio::test]
async fn the_provider_callback_links_nothing_without_the_starting_persons_session() {
    let app = spawn_app().await;
    let (admin, ann, _, _) = members(&app).await;
    let provider = guarded::start(Guard::OAuth).await;
    remote(&admin, "oauthy", &provider.url, json!({"type": "oauth2", "grant_type": "authorization_code"})).await;
    grant(&admin, "oauthy", "user:ann@example.com").await;
    let browser =
        || reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let started = ann.post("/api/v1/me/connections/acme/oauthy", json!({})).await.expect(200);
    // A browser with no gateway session opens the provider's answer (a link someone sent).
    let stranger = browser();
    let answer = stranger.get(started["authorization_url"].as_str().unwrap()).send().await.unwrap();
    let callback = answer.headers()[LOCATION].to_str().unwrap().to_owned();
    let refused = stranger.get(&callback).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("set-cookie").is_none());
    assert_eq!(ann.get("/api/v1/me/connections").await.expect(200)["items"], json!([]), "nothing linked to ann");

    // An answer naming another issuer (a mix-up) is refused even in ann's own browser.
    let started = ann.post("/api/v1/me/connections/acme/oauthy", json!({})).await.expect(200);
    let own = browser();
    own.post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"email": "ann@example.com", "password": "pw-ann@example.com-secret"}))
        .send()
        .await
        .unwrap();
    let answer = own.get(started["authorization_url"].as_str().unwrap()).send().await.unwrap();
    let callback = answer.headers()[LOCATION].to_str().unwrap().to_owned();
    let mixed = own.get(format!("{callback}&iss=https%3A%2F%2Fevil.example")).send().await.unwrap();
    assert_eq!(mixed.status(), 403);
    assert!(mixed.text().await.unwrap().contains("evil.example"));
    assert_eq!(ann.get("/api/v1/me/connections").await.expect(200)["items"], json!([]));
}

// 4. Disabled tools reachable in a JSON-RPC batch.
#[tokio::test]
async fn a_batch_is_decided_message_by_message() {
    let app = spawn_app().await;
    let (admin, token, _) = setup(&app).await;
    admin
        .patch("/api/v1/tenants/acme/servers/fixture", json!({"tool_settings": [{"name": "add", "disabled": true}]}))
        .await
        .expect(200);
    wait_for_policy(&app).await;
    let url = mcp(&app, "fixture");
    let batch = json!([call(1, "add"), {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                       {"jsonrpc": "2.0", "method": "notifications/initialized"}]);
    let res = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-03-26")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let answers: Vec<Value> = res.json().await.unwrap();
    assert_eq!(answers.len(), 2, "one answer per request, none for the notification: {answers:?}");
    assert_eq!((answers[0]["id"].clone(), answers[0]["error"]["code"].clone()), (json!(1), json!(-32602)));
    assert!(answers[0]["error"]["message"].as_str().unwrap().contains("disabled"));
    assert_eq!(answers[1]["id"], 2);
    assert!(answers[1]["error"]["message"].as_str().unwrap().contains("not sent"));
    // Revisions without batches refuse them.
    for version in ["2025-06-18", "2025-11-25"] {
        let (status, _, answer) = {
            let res = reqwest::Client::new()
                .post(&url)
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", version)
                .json(&json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), (), res.json::<Value>().await.unwrap())
        };
        assert_eq!(status, 400, "{version}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("no JSON-RPC batches"), "{answer}");
    }
    // Each message has its own decision in the audit trail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let decisions = audit(&admin, "mcp.request").await;
    let refused: Vec<&Value> = decisions.iter().filter(|d| d["details"]["reason"] == "tool_disabled").collect();
    assert_eq!(refused.len(), 1, "{decisions:?}");
    assert_eq!(refused[0]["details"]["name"], "add");
    assert!(decisions
        .iter()
        .any(|d| d["details"]["reason"] == "batch_refused" && d["details"]["method"] == "tools/list"));
}

// 5. Upstream redirects carry credentials to other origins.
#[tokio::test]
async fn upstream_redirects_are_not_followed_with_credentials() {
    let app = spawn_app().await;
    let (admin, _, _, token) = members(&app).await;
    let thief = Recorder::start(|_| "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".into()).await;
    let target = format!("{}/steal", thief.base);
    let redirector = Recorder::start(move |_| {
        format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {target}\r\ncontent-length: 0\r\n\r\n")
    })
    .await;
    let auth = json!({"type": "header", "auth_level": "global", "headers": {"X-Api-Key": "k-123-secret"}});
    remote(&admin, "hop", &format!("{}/mcp", redirector.base), auth).await;
    grant(&admin, "hop", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let (status, _, answer) = post(&mcp(&app, "hop"), &token, None, call(1, "x")).await;
    assert_eq!(status, 502, "{answer:?}");
    assert!(answer[0]["error"]["message"].as_str().unwrap().contains("redirected"), "{answer:?}");
    let probe = admin.post("/api/v1/tenants/acme/servers/hop/probe", json!({})).await.expect(200);
    assert_eq!(probe["reachable"], false);
    assert!(!redirector.requests().is_empty(), "the upstream itself was called");
    assert!(thief.requests().is_empty(), "nothing followed the redirect: {:?}", thief.requests());
}

// 6. A manager exfiltrates a write-only secret by moving the server.
#[tokio::test]
async fn moving_a_server_to_another_origin_does_not_take_its_secrets_along() {
    let app = spawn_app().await;
    let (admin, ann, bob, _) = members(&app).await;
    let real = shared_key_server(&admin, "vault", "vault-secret-9").await;
    admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/vault/collaborators",
            Some(json!({"subject": "user:ann@example.com", "role": "manager"})),
        )
        .await
        .expect(201);
    let thief = Recorder::start(|_| "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n".into()).await;
    // A change on the same origin keeps them.
    let kept =
        ann.patch("/api/v1/tenants/acme/servers/vault", json!({"url": format!("{}?v=2", real.url)})).await.expect(200);
    assert_eq!(kept["auth_data"]["type"], "header");
    let moved = json!({"url": format!("{}/mcp", thief.base)});
    let refused = ann.patch("/api/v1/tenants/acme/servers/vault", moved).await;
    assert_eq!(refused.error_fields(), ["auth_data"]);
    assert_eq!(refused.body["errors"][0]["code"], "required_on_origin_change");
    // Moving it with new (or no) credentials is fine; the old secret never goes there.
    ann.patch("/api/v1/tenants/acme/servers/vault", json!({"url": format!("{}/mcp", thief.base), "auth_data": null}))
        .await
        .expect(200);
    ann.post("/api/v1/tenants/acme/servers/vault/probe", json!({})).await.expect(200);
    assert!(!thief.requests().is_empty());
    assert!(thief.requests().iter().all(|r| !r.contains("vault-secret-9")), "{:?}", thief.requests());

    // People's own keys for a per-user server are dropped when it moves.
    remote(
        &admin,
        "keyed",
        &real.url,
        json!({"type": "header", "auth_level": "per_user", "headers": {"X-Api-Key": "{{API_KEY}}"}}),
    )
    .await;
    grant(&admin, "keyed", "user:bob@example.com").await;
    bob.send(
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/servers/keyed/auth-overrides/me",
        Some(json!({"values": {"API_KEY": "bobs-own-key"}})),
    )
    .await
    .expect(201);
    let headers = json!({"type": "header", "auth_level": "per_user", "headers": {"X-Api-Key": "{{API_KEY}}"}});
    admin
        .patch(
            "/api/v1/tenants/acme/servers/keyed",
            json!({"url": format!("{}/mcp", thief.base), "auth_data": headers}),
        )
        .await
        .expect(200);
    let overrides = admin.get("/api/v1/tenants/acme/servers/keyed/auth-overrides").await.expect(200);
    assert_eq!(overrides["items"], json!([]), "{overrides}");
    let changes = audit(&admin, "server.update").await;
    assert!(changes.iter().any(|e| e["details"]["origin_changed"] == true && e["details"]["credentials_dropped"] == 1));
}

// 7. Login CSRF on the page sign-in forms; whose account a form stores for.
#[tokio::test]
async fn page_sign_in_forms_refuse_cross_site_posts() {
    let app = spawn_app().await;
    let (admin, _, _, _) = members(&app).await;
    let keyed = guarded::start(Guard::header("x-api-key", &[("k", "ann")])).await;
    remote(
        &admin,
        "keyed",
        &keyed.url,
        json!({"type": "header", "auth_level": "per_user", "headers": {"x-api-key": "{{API_KEY}}"}}),
    )
    .await;
    grant(&admin, "keyed", "user:ann@example.com").await;
    let connect = format!("{}/connect/acme/keyed", app.base);
    let browser =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let shown = browser.get(&connect).send().await.unwrap();
    // A `no-referrer` page makes browsers send `Origin: null` on its own form posts.
    assert_eq!(shown.headers()["referrer-policy"], "same-origin");
    let form = shown.text().await.unwrap();
    let token = hidden(&form, "form_token");
    let sign_in = |origin: Option<&str>, token: &str| {
        let mut request = browser.post(format!("{connect}/sign-in")).form(&[
            ("email", "ann@example.com"),
            ("password", "pw-ann@example.com-secret"),
            ("form_token", token),
        ]);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    for (origin, token) in
        [(Some("https://evil.example"), token.as_str()), (Some("null"), token.as_str()), (None, "forged")]
    {
        let res = sign_in(origin, token).await.unwrap();
        assert_eq!(res.status(), 403, "{origin:?}");
        assert!(res.headers().get("set-cookie").is_none(), "no session for {origin:?}");
    }
    // A post without the form cookie (another site's page cannot have it) is refused too.
    let bare = reqwest::Client::new()
        .post(format!("{connect}/sign-in"))
        .form(&[("email", "ann@example.com"), ("password", "pw-ann@example.com-secret"), ("form_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 403);
    let res = sign_in(Some(&app.base), &token).await.unwrap();
    assert_eq!(res.status(), 303);
    // The key form says whose credential it stores.
    let key_form = browser.get(&connect).send().await.unwrap().text().await.unwrap();
    assert!(key_form.contains("Signed in as <strong>ann@example.com</strong>"), "{key_form}");
    // The authorize page's form works the same way.
    let client_id = public_client(&app).await;
    let (_, challenge) = pkce();
    let start = authorize_url(&app, &client_id, "http://127.0.0.1:40000/callback", &challenge, &mcp(&app, "keyed"));
    let other =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = other.get(&start).send().await.unwrap().text().await.unwrap();
    let res = other
        .post(format!("{}/oauth/authorize/sign-in", app.base))
        .header("origin", "https://evil.example")
        .form(&[
            ("email", "ann@example.com"),
            ("password", "pw-ann@example.com-secret"),
            ("return_to", &hidden(&page, "return_to")),
            ("form_token", &hidden(&page, "form_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

// 8. The sign-in throttle can be raced.
#[tokio::test]
async fn concurrent_wrong_passwords_cannot_outrun_the_throttle() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.user(&admin, "ann@example.com").await;
    let attempts = (0..30).map(|_| {
        let client = app.client();
        async move {
            client
                .post("/api/v1/auth/login", json!({"email": "ann@example.com", "password": "wrong-guess"}))
                .await
                .status
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let checked = statuses.iter().filter(|s| s.as_u16() == 401).count();
    let refused = statuses.iter().filter(|s| s.as_u16() == 429).count();
    assert_eq!((checked, refused), (5, 25), "{statuses:?}");
}

// 9. Unauthenticated slow bodies exhaust proxy capacity.
#[tokio::test]
async fn unauthenticated_requests_hold_no_capacity_and_read_nothing() {
    let app = spawn_app_with(|s| s.proxy_max_concurrent = 2).await;
    let (_, token, _) = setup(&app).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stalled = Vec::new();
    for _ in 0..4 {
        // Headers promising a body that never comes.
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /acme/mcp/fixture/server HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer)).await;
        let n = read.expect("answered without waiting for the body").unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 401"));
        stalled.push(socket);
    }
    // Capacity is still there for a real client.
    let started = Instant::now();
    assert_eq!(crate::proxy::status(&mcp(&app, "fixture"), Some(&token)).await.0, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
}

// 10. /oauth/authorize tells any client who is signed in and what they may use.
#[tokio::test]
async fn the_authorize_endpoint_tells_a_client_nothing_about_the_signed_in_person() {
    let app = spawn_app().await;
    setup(&app).await;
    let client_id = public_client(&app).await;
    let (_, challenge) = pkce();
    let bob = Browser::new(&app.base);
    let start = authorize_url(&app, &client_id, "http://127.0.0.1:40000/callback", &challenge, &mcp_url(&app));
    // Bob signs in; he may not use the server.
    let page = bob.http.get(&start).send().await.unwrap().text().await.unwrap();
    bob.http
        .post(format!("{}/oauth/authorize/sign-in", app.base))
        .form(&[
            ("email", "bob@example.com"),
            ("password", "pw-bob@example.com-secret"),
            ("return_to", &hidden(&page, "return_to")),
            ("form_token", &hidden(&page, "form_token")),
        ])
        .send()
        .await
        .unwrap();
    // Any later request naming this client gets a page for the person, not a redirect that
    // would tell the client who is signed in here and what they may use.
    let res = bob.http.get(&start).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get(LOCATION).is_none());
    let page = res.text().await.unwrap();
    assert!(page.contains("You cannot use acme/fixture"), "{page}");
    let start = page.find("<a href=\"").unwrap() + 9;
    let back = crate::oauth::unescape(&page[start..start + page[start..].find('"').unwrap()]);
    let q = query_of(&back);
    assert_eq!(q["error"], "access_denied");
    assert!(!back.contains("bob"), "{back}");
}

// 11. A client-credentials JWT survives its virtual-account token's revocation.
#[tokio::test]
async fn client_credentials_tokens_end_with_their_virtual_account_token() {
    let app = spawn_app().await;
    let (admin, _, _) = setup(&app).await;
    let issued = crate::oauth::ci_account(&admin).await;
    let secret = issued["token"].as_str().unwrap().to_owned();
    let res = reqwest::Client::new()
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("acme/ci", Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("resource", mcp_url(&app).as_str())])
        .send()
        .await
        .unwrap();
    let jwt = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    wait_for_policy(&app).await;
    assert_eq!(crate::proxy::status(&mcp_url(&app), Some(&jwt)).await.0, 200);
    admin
        .delete(&format!("/api/v1/tenants/acme/virtual-accounts/ci/tokens/{}", issued["id"].as_str().unwrap()))
        .await
        .expect(204);
    wait_for_policy(&app).await;
    assert_eq!(crate::proxy::status(&mcp_url(&app), Some(&jwt)).await.0, 401, "the JWT died with its token");
}

// 12. Open redirect through return_to.
#[tokio::test]
async fn return_to_never_leaves_the_gateway() {
    let app = spawn_app().await;
    let (_, _, _) = setup(&app).await;
    let ann = app.signed_in("ann@example.com", "pw-ann@example.com-secret").await;
    for bad in
        ["/\\evil.example/x", "/\t/evil.example/x", "/\\/evil.example/x", "//evil.example", "https://evil.example/"]
    {
        let reply = ann.post("/api/v1/me/connections/acme/fixture", json!({"return_to": bad})).await;
        assert_eq!(reply.error_fields(), ["return_to"], "{bad:?}: {}", reply.body);
        // The connect page drops it rather than carry it into its forms.
        let page = reqwest::Client::new()
            .get(format!("{}/connect/acme/fixture?return_to={}", app.base, crate::oauth::urlencode(bad)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!page.contains("name=\"return_to\""), "{bad:?}: {page}");
    }
}

// 13. Cross-tenant enrolment and email enumeration.
#[tokio::test]
async fn tenant_admins_cannot_enrol_outsiders_or_learn_who_has_an_account() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let boss = app.user(&admin, "boss@example.com").await;
    app.user(&admin, "carol@example.com").await;
    app.tenant(&admin, "acme", &[("boss@example.com", "admin")]).await;
    app.tenant(&admin, "globex", &[("carol@example.com", "member")]).await;
    let existing =
        boss.post("/api/v1/tenants/acme/members", json!({"email": "carol@example.com", "role": "member"})).await;
    let unknown =
        boss.post("/api/v1/tenants/acme/members", json!({"email": "nobody@example.com", "role": "member"})).await;
    assert_eq!((existing.status, unknown.status), (reqwest::StatusCode::FORBIDDEN, reqwest::StatusCode::FORBIDDEN));
    assert_eq!(existing.body["detail"], unknown.body["detail"]);
    let members = boss.get("/api/v1/tenants/acme/members").await.expect(200);
    assert_eq!(members["items"].as_array().unwrap().len(), 1);
}

// 14. Password guesses at /me/password, and a token that makes itself permanent.
#[tokio::test]
async fn password_changes_are_throttled_and_tokens_cannot_mint_tokens() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ann = app.user(&admin, "ann@example.com").await;
    let body = |current: &str| json!({"current_password": current, "new_password": "a-new-long-password"});
    for _ in 0..5 {
        ann.post("/api/v1/me/password", body("guess-guess")).await.problem(422, "validation_failed");
    }
    ann.post("/api/v1/me/password", body("pw-ann@example.com-secret")).await.problem(429, "too_many_attempts");

    let pat = ann.post("/api/v1/me/tokens", json!({"name": "laptop"})).await.expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let script = Client::with_token(&app.base, &pat);
    script.post("/api/v1/me/tokens", json!({"name": "forever"})).await.problem(403, "forbidden");
    assert_eq!(ann.get("/api/v1/me/tokens").await.expect(200)["items"].as_array().unwrap().len(), 1);
}

// 15. Control characters in credential values.
#[tokio::test]
async fn control_characters_never_reach_a_credential() {
    let app = spawn_app().await;
    let (admin, ann, _, _) = members(&app).await;
    let keyed = guarded::start(Guard::header("x-api-key", &[("k", "ann")])).await;
    remote(
        &admin,
        "keyed",
        &keyed.url,
        json!({"type": "header", "auth_level": "per_user", "headers": {"x-api-key": "{{API_KEY}}"}}),
    )
    .await;
    grant(&admin, "keyed", "user:ann@example.com").await;
    for bad in ["a\u{0}b", "a\u{1}b", "a\u{7f}b", "a\u{1b}[31mb", "line\nbreak"] {
        let reply = ann
            .send(
                reqwest::Method::PUT,
                "/api/v1/tenants/acme/servers/keyed/auth-overrides/me",
                Some(json!({"values": {"API_KEY": bad}})),
            )
            .await;
        assert_eq!(reply.error_fields(), ["values.API_KEY"], "{bad:?}");
        let reply = admin
            .post(
                "/api/v1/tenants/acme/servers",
                json!({"slug": "shared", "display_name": "x", "kind": "remote", "url": keyed.url,
                       "auth_data": {"type": "header", "auth_level": "global", "headers": {"x-api-key": bad}}}),
            )
            .await;
        assert_eq!(reply.error_fields(), ["auth_data.headers.x-api-key"], "{bad:?}");
    }
    // Credentials do not go in additional headers, which every collaborator reads.
    for name in ["X-Api-Key", "Authorization", "X-Auth-Token", "Cookie", "X-Client-Secret"] {
        let reply = admin
            .post(
                "/api/v1/tenants/acme/servers",
                json!({"slug": "leaky", "display_name": "x", "kind": "remote", "url": keyed.url,
                       "additional_headers": {name: "sk-live-123"}}),
            )
            .await;
        assert_eq!(reply.body["errors"][0]["code"], "credential_header", "{name}: {}", reply.body);
    }
    // A tab is an ordinary header character.
    ann.send(
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/servers/keyed/auth-overrides/me",
        Some(json!({"values": {"API_KEY": "k\twith-tab"}})),
    )
    .await
    .expect(201);
}

// 16. The sign-in approves what the proxy then refuses.
#[tokio::test]
async fn the_consent_page_offers_only_what_the_proxy_allows() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // A platform admin creates a tenant and a server without being a member of the tenant.
    admin.post("/api/v1/tenants", json!({"slug": "solo", "display_name": "Solo"})).await.expect(201);
    // The creator hands the tenant to someone else and steps out of its membership: a platform
    // admin who is not a member.
    app.user(&admin, "keeper@example.com").await;
    admin
        .post("/api/v1/tenants/solo/members", json!({"email": "keeper@example.com", "role": "admin"}))
        .await
        .expect(201);
    admin.delete(&format!("/api/v1/tenants/solo/members/{ADMIN_EMAIL}")).await.expect(204);
    admin
        .post(
            "/api/v1/tenants/solo/servers",
            json!({"slug": "fixture", "display_name": "F", "kind": "remote", "url": peers::rmcp_upstream().await}),
        )
        .await
        .expect(201);
    let client_id = public_client(&app).await;
    let (_, challenge) = pkce();
    let resource = format!("{}/solo/mcp/fixture/server", app.base);
    let browser = Browser::new(&app.base);
    let back = browser
        .authorize(
            &authorize_url(&app, &client_id, "http://127.0.0.1:40000/callback", &challenge, &resource),
            (ADMIN_EMAIL, ADMIN_PASSWORD),
            crate::oauth::Decision::Approve,
            &[],
        )
        .await;
    assert_eq!(query_of(&back)["error"], "access_denied", "not offered: the proxy would refuse it");
    // As a member of the tenant the same person is offered it, and the proxy takes the token.
    admin.post("/api/v1/tenants/solo/members", json!({"email": ADMIN_EMAIL, "role": "admin"})).await.expect(201);
    let (verifier, challenge) = pkce();
    let back = browser
        .authorize(
            &authorize_url(&app, &client_id, "http://127.0.0.1:40000/callback", &challenge, &resource),
            (ADMIN_EMAIL, ADMIN_PASSWORD),
            crate::oauth::Decision::Approve,
            &[],
        )
        .await;
    let code = query_of(&back)["code"].clone();
    let tokens = reqwest::Client::new()
        .post(format!("{}/oauth/token", app.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1:40000/callback"),
            ("client_id", client_id.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let jwt = tokens["access_token"].as_str().unwrap();
    assert_eq!(crate::proxy::status(&resource, Some(jwt)).await.0, 200);
}

// Suspected: a legacy SSE endpoint on another origin.
#[tokio::test]
async fn a_legacy_sse_endpoint_on_another_origin_is_not_followed() {
    let app = spawn_app().await;
    let (admin, _, _, _) = members(&app).await;
    let elsewhere = Recorder::start(|_| "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".into()).await;
    let target = format!("{}/messages", elsewhere.base);
    let legacy = Recorder::start(move |_| {
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nevent: endpoint\ndata: {target}\n\n")
    })
    .await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "old", "display_name": "Old", "kind": "remote", "transport": "sse",
                   "url": format!("{}/sse", legacy.base),
                   "auth_data": {"type": "header", "auth_level": "global", "headers": {"X-Api-Key": "legacy-secret"}}}),
        )
        .await
        .expect(201);
    let probe = admin.post("/api/v1/tenants/acme/servers/old/probe", json!({})).await.expect(200);
    assert_eq!(probe["reachable"], false);
    assert!(probe["error"]["message"].as_str().unwrap().contains("another origin"), "{probe}");
    assert!(elsewhere.requests().is_empty());
}

// Suspected: an upstream OAuth answer is read whole before its size is checked.
#[tokio::test]
async fn an_oversized_token_response_is_cut_off() {
    let app = spawn_app().await;
    let (admin, _, _, token) = members(&app).await;
    // It claims a gigabyte and sends a few: the gateway stops reading at its limit instead of
    // waiting for (and holding) the whole answer.
    let huge = Recorder::start(|_| {
        let body = format!("{{\"access_token\":\"{}", "a".repeat(3 * 1024 * 1024));
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n{body}")
    })
    .await;
    let upstream = guarded::start(Guard::OAuth).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "machine", "display_name": "M", "kind": "remote", "url": upstream.url,
                   "auth_data": {"type": "oauth2", "grant_type": "client_credentials", "client_id": "c", "client_secret": "s",
                                 "token_url": format!("{}/token", huge.base)}}),
        )
        .await
        .expect(201);
    grant(&admin, "machine", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let (_, _, answer) = post(&mcp(&app, "machine"), &token, None, call(1, "whoami")).await;
    assert!(answer[0]["error"]["message"].as_str().unwrap().contains("too large"), "{answer:?}");
}

// Suspected: the last-admin check races (PostgreSQL).
#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let a = app.user(&admin, "a@example.com").await;
    let b = app.user(&admin, "b@example.com").await;
    app.tenant(&admin, "acme", &[("a@example.com", "admin"), ("b@example.com", "admin")]).await;
    for _ in 0..5 {
        let (x, y) = tokio::join!(
            a.patch("/api/v1/tenants/acme/members/b@example.com", json!({"role": "member"})),
            b.patch("/api/v1/tenants/acme/members/a@example.com", json!({"role": "member"})),
        );
        let ok = [x.status, y.status].iter().filter(|s| s.is_success()).count();
        let list = admin.get("/api/v1/tenants/acme/members").await.expect(200);
        let admins = list["items"].as_array().unwrap().iter().filter(|m| m["role"] == "admin").count();
        assert_eq!((ok, admins), (1, 1), "{} {}", x.body, y.body);
        // Make both admins again for the next round.
        for email in ["a@example.com", "b@example.com"] {
            admin.patch(&format!("/api/v1/tenants/acme/members/{email}"), json!({"role": "admin"})).await.expect(200);
        }
    }
}

// Suspected: API answers without nosniff; the API explorer can be framed; a text 413 from the
// token endpoint; unthrottled metadata-document fetches from /oauth/authorize.
#[tokio::test]
async fn every_answer_carries_the_browser_protections_and_oauth_errors_stay_oauth() {
    let app = spawn_app_with(|s| s.oauth_cimd_allow_private = false).await;
    let http = reqwest::Client::new();
    for path in ["/api/v1/me", "/api/docs", "/api/openapi.json", "/healthz"] {
        let res = http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(res.headers()["x-frame-options"], "DENY", "{path}");
    }
    let res = http
        .post(format!("{}/oauth/token", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&pad={}", "x".repeat(2 * 1024 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
    // Made-up metadata-document client ids make the gateway fetch at most 30 a minute.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut throttled = 0;
    for i in 0..35 {
        let url = format!(
            "{}/oauth/authorize?response_type=code&client_id=https%3A%2F%2F127.0.0.1%2Fclient{i}.json&redirect_uri=x",
            app.base
        );
        let page = browser.get(url).send().await.unwrap().text().await.unwrap();
        throttled += usize::from(page.contains("too many client metadata documents"));
    }
    assert_eq!(throttled, 5);
}
