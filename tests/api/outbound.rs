//! Outbound auth end to end: real rmcp upstreams that demand a shared key, a key per user, a
//! client-credentials token or a per-user OAuth token from a real authorization server (the
//! guarded fixture), reached through the proxy with the credential the gateway attaches.

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::gateway::post;
use crate::guarded::{self, Guard, MACHINE_ID, MACHINE_SECRET};
use crate::helpers::{spawn_app, Client, TestApp};
use crate::proxy::wait_for_policy;

struct People {
    admin: Client,
    ann: Client,
    ann_token: String,
    bob: Client,
    bob_token: String,
}

async fn people(app: &TestApp) -> People {
    let admin = app.admin().await;
    let ann = app.user(&admin, "ann@example.com").await;
    let bob = app.user(&admin, "bob@example.com").await;
    app.tenant(&admin, "acme", &[("ann@example.com", "member"), ("bob@example.com", "member")]).await;
    let token = |c: &Client| {
        let c = Client { base: c.base.clone(), http: c.http.clone(), csrf: c.csrf.clone() };
        async move {
            c.post("/api/v1/me/tokens", json!({"name": "ide"})).await.expect(201)["token"].as_str().unwrap().to_owned()
        }
    };
    let ann_token = token(&ann).await;
    let bob_token = token(&bob).await;
    People { admin, ann, ann_token, bob, bob_token }
}

/// Registers a remote server with outbound auth, used by ann and bob.
async fn server(p: &People, slug: &str, url: &str, auth: Value) -> Value {
    let created = p
        .admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": slug, "display_name": slug, "kind": "remote", "url": url, "auth_data": auth}),
        )
        .await
        .expect(201);
    for who in ["user:ann@example.com", "user:bob@example.com"] {
        p.admin
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/tenants/acme/servers/{slug}/collaborators"),
                Some(json!({"subject": who, "role": "user"})),
            )
            .await
            .expect(201);
    }
    created
}

fn mcp_url(app: &TestApp, slug: &str) -> String {
    format!("{}/acme/mcp/{slug}/server", app.base)
}

/// initialize, then `whoami`: the identity the upstream saw, or the JSON-RPC error on the way.
async fn whoami(url: &str, token: &str) -> Result<String, Value> {
    whoami_with(url, token, json!({})).await
}

async fn whoami_with(url: &str, token: &str, capabilities: Value) -> Result<String, Value> {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, session, messages) = post(url, token, None, init).await;
    assert_eq!(status, 200, "{messages:?}");
    if let Some(error) = messages[0].get("error") {
        return Err(error.clone());
    }
    let session = session.expect("a session");
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let (_, _, messages) = post(url, token, Some(&session), call).await;
    let reply = messages.iter().find(|m| m["id"] == 2).cloned().expect("a reply");
    match reply.get("error") {
        Some(error) => Err(error.clone()),
        None => Ok(reply["result"]["content"][0]["text"].as_str().unwrap().to_owned()),
    }
}

/// A browser: keeps cookies, does not follow redirects so each hop can be checked.
fn browser() -> reqwest::Client {
    mcpgate::http_client::install_crypto_provider();
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A browser signed in to the gateway as this person (a provider's callback is accepted only
/// in the browser of the person who started the authorization).
async fn browser_of(base: &str, email: &str, password: &str) -> reqwest::Client {
    let browser = browser();
    let res = browser
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    browser
}

async fn submit(browser: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    browser.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn absolute(app: &TestApp, location: &str) -> String {
    if location.starts_with('/') {
        format!("{}{location}", app.base)
    } else {
        location.to_owned()
    }
}

/// The sign-in form's token (its cookie is in the browser's jar since the form was shown).
fn form_token_in(html: &str) -> String {
    let start = html.find("name=\"form_token\" value=\"").expect("a form token") + "name=\"form_token\" value=\"".len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

fn csrf_in(html: &str) -> String {
    let start = html.find("name=\"csrf_token\" value=\"").expect("a CSRF field") + "name=\"csrf_token\" value=\"".len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// Follows a connect URL in a fresh browser: the sign-in form, then the key form or the
/// provider's consent (auto-approved by the fixture) and back. Returns the final page.
async fn connect_in_browser(app: &TestApp, url: &str, email: &str, key: Option<&str>) -> String {
    let browser = browser();
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\""), "a sign-in form: {html}");
    let path = url.strip_prefix(&app.base).unwrap();
    let token = form_token_in(&html);
    let password = format!("pw-{email}-secret");
    let fields = [("email", email), ("password", &password), ("form_token", &token)];
    let signed_in = submit(&browser, &format!("{url}/sign-in"), &fields).await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(location(&signed_in), path);
    let mut next = browser.get(url).send().await.unwrap();
    if let Some(key) = key {
        assert_eq!(next.status(), 200);
        let form = next.text().await.unwrap();
        assert!(form.contains("name=\"API_KEY\""), "{form}");
        let saved = submit(&browser, url, &[("csrf_token", &csrf_in(&form)), ("API_KEY", key)]).await;
        assert_eq!(saved.status(), 200);
        return saved.text().await.unwrap();
    }
    // The provider's authorize endpoint, then its redirect to the gateway's callback.
    while next.status() == 303 || next.status() == 302 {
        next = browser.get(absolute(app, &location(&next))).send().await.unwrap();
    }
    assert_eq!(next.status(), 200);
    next.text().await.unwrap()
}

/// Servers with their own TLS settings are relayed by another client than the default ones
/// (crates/proxy/src/direct.rs); both send the configured headers and the credential.
#[tokio::test]
async fn servers_with_their_own_tls_settings_get_headers_and_credentials_too() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let upstream = guarded::start(Guard::header("x-api-key", &[("k-tls-41", "keyed")])).await;
    let auth = json!({"type": "header", "auth_level": "global", "headers": {"X-Api-Key": "k-tls-41"}});
    server(&p, "verified", &upstream.url, auth.clone()).await;
    server(&p, "unverified", &upstream.url, auth).await;
    p.admin
        .patch("/api/v1/tenants/acme/servers/unverified", json!({"tls": {"reject_unauthorized": false}}))
        .await
        .expect(200);
    wait_for_policy(&app).await;
    for slug in ["verified", "unverified"] {
        assert_eq!(whoami(&mcp_url(&app, slug), &p.ann_token).await.unwrap(), "keyed", "{slug}");
    }
    // A refused key is a refused key on either path.
    let wrong = json!({"auth_data": {"type": "header", "auth_level": "global", "headers": {"X-Api-Key": "nope"}}});
    p.admin.patch("/api/v1/tenants/acme/servers/unverified", wrong).await.expect(200);
    wait_for_policy(&app).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, _, refused) = post(&mcp_url(&app, "unverified"), &p.ann_token, None, init).await;
    assert_eq!(status, 502);
    assert_eq!(
        refused[0]["error"]["message"],
        "acme/unverified: the upstream refused the gateway's credential (HTTP 401); ask a manager of the server to check its auth"
    );
}

#[tokio::test]
async fn shared_and_per_user_keys_with_overrides() {
    let app = spawn_app().await;
    let p = people(&app).await;

    // A shared key: every caller reaches the upstream with it, unless they have their own.
    let shared =
        guarded::start(Guard::header("x-api-key", &[("k-shared-5b1c", "shared"), ("k-bobs-own-77", "bob-own")])).await;
    let view = server(
        &p,
        "shared",
        &shared.url,
        json!({"type": "header", "auth_level": "global", "headers": {"X-Api-Key": "k-shared-5b1c"}}),
    )
    .await;
    assert_eq!(view["auth_data"], json!({"type": "header", "auth_level": "global", "secret_headers": ["X-Api-Key"]}));
    assert!(!view.to_string().contains("k-shared"), "the key is write-only: {view}");
    let schema = p.ann.get("/api/v1/tenants/acme/servers/shared/auth-override-schema").await.expect(200);
    assert_eq!(schema["overridable_headers"], json!(["X-Api-Key"]));
    p.bob
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/shared/auth-overrides/me",
            Some(json!({"values": {"X-Api-Key": "k-bobs-own-77"}})),
        )
        .await
        .expect(201);
    wait_for_policy(&app).await;
    assert_eq!(whoami(&mcp_url(&app, "shared"), &p.ann_token).await.unwrap(), "shared");
    assert_eq!(
        whoami(&mcp_url(&app, "shared"), &p.bob_token).await.unwrap(),
        "bob-own",
        "an override wins over the default"
    );

    // Keys per user: nobody has one until they add it.
    let own = guarded::start(Guard::header(
        "authorization",
        &[
            ("Bearer key-ann-1f", "ann-upstream"),
            ("Bearer key-bob-9c", "bob-upstream"),
            ("Bearer key-bot-3e", "bot-upstream"),
        ],
    ))
    .await;
    let view = server(
        &p,
        "own",
        &own.url,
        json!({"type": "header", "auth_level": "per_user", "headers": {"Authorization": "Bearer {{API_KEY}}"}}),
    )
    .await;
    assert_eq!(view["auth_data"]["placeholders"], json!(["API_KEY"]));
    wait_for_policy(&app).await;
    let error = whoami(&mcp_url(&app, "own"), &p.ann_token).await.unwrap_err();
    let connect = format!("{}/connect/acme/own", app.base);
    let how = p.ann.get("/api/v1/tenants/acme/servers/own/how-to-use").await.expect(200);
    assert_eq!(how["before_first_use"], json!([{"server": "own", "kind": "key", "connect_url": connect}]));
    let how = p.ann.get("/api/v1/tenants/acme/servers/shared/how-to-use").await.expect(200);
    assert!(how.get("before_first_use").is_none(), "a shared key asks nothing of users");
    assert_eq!(error["code"], -32003, "{error}");
    assert_eq!(error["data"]["url"], connect.as_str());
    assert!(error["message"].as_str().unwrap().contains("API_KEY"), "{error}");

    // The URL in the error works: sign in, enter the key, done.
    let done = connect_in_browser(&app, &connect, "ann@example.com", Some("key-ann-1f")).await;
    assert!(done.contains("Saved"), "{done}");
    wait_for_policy(&app).await;
    assert_eq!(whoami(&mcp_url(&app, "own"), &p.ann_token).await.unwrap(), "ann-upstream");

    // A manager sets bob's; bob may not set ann's; each caller gets only their own key.
    let bad = p
        .admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/own/auth-overrides/user:bob@example.com",
            Some(json!({"values": {"TOKEN": "x"}})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.error_fields().contains(&"values.TOKEN".to_owned()), "{:?}", bad.body);
    p.admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/own/auth-overrides/user:bob@example.com",
            Some(json!({"values": {"API_KEY": "key-bob-9c"}})),
        )
        .await
        .expect(201);
    p.bob
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/own/auth-overrides/user:ann@example.com",
            Some(json!({"values": {"API_KEY": "key-bob-9c"}})),
        )
        .await
        .problem(403, "forbidden");
    wait_for_policy(&app).await;
    assert_eq!(whoami(&mcp_url(&app, "own"), &p.bob_token).await.unwrap(), "bob-upstream");
    assert_eq!(whoami(&mcp_url(&app, "own"), &p.ann_token).await.unwrap(), "ann-upstream");

    // A virtual account has its own too, set by a manager; it says where when it has none.
    p.admin
        .post(
            "/api/v1/tenants/acme/virtual-accounts",
            json!({"name": "bot", "permissions": [{"server": "own", "role": "user"}]}),
        )
        .await
        .expect(201);
    let bot_token = p.admin.post("/api/v1/tenants/acme/virtual-accounts/bot/tokens", json!({})).await.expect(201)
        ["token"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_policy(&app).await;
    let error = whoami(&mcp_url(&app, "own"), &bot_token).await.unwrap_err();
    assert_eq!(
        error["data"]["url"],
        format!("{}/api/v1/tenants/acme/servers/own/auth-overrides/virtualaccount:bot", app.base),
        "{error}"
    );
    p.admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/own/auth-overrides/virtualaccount:bot",
            Some(json!({"values": {"API_KEY": "key-bot-3e"}})),
        )
        .await
        .expect(201);
    wait_for_policy(&app).await;
    assert_eq!(whoami(&mcp_url(&app, "own"), &bot_token).await.unwrap(), "bot-upstream");
    p.admin.delete("/api/v1/tenants/acme/servers/own/auth-overrides/virtualaccount:bot").await.expect(204);

    // Listing shows whose are set, never a value; a user sees only their own.
    let all = p.admin.get("/api/v1/tenants/acme/servers/own/auth-overrides").await.expect(200);
    let subjects: Vec<&str> = all["items"].as_array().unwrap().iter().map(|o| o["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, vec!["user:ann@example.com", "user:bob@example.com"]);
    assert!(!all.to_string().contains("key-"), "{all}");
    assert_eq!(all["items"][0]["values_set"], json!(["API_KEY"]));
    let mine = p.bob.get("/api/v1/tenants/acme/servers/own/auth-overrides").await.expect(200);
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["subject"], "user:bob@example.com");

    // Removing bob's key: bob is asked for one again.
    p.bob.delete("/api/v1/tenants/acme/servers/own/auth-overrides/me").await.expect(204);
    wait_for_policy(&app).await;
    assert_eq!(whoami(&mcp_url(&app, "own"), &p.bob_token).await.unwrap_err()["code"], -32003);

    // A client that declared URL-mode elicitation gets the URL elicitation error instead.
    let error =
        whoami_with(&mcp_url(&app, "own"), &p.bob_token, json!({"elicitation": {"url": {}}})).await.unwrap_err();
    assert_eq!(error["code"], -32042, "{error}");
    assert_eq!(error["data"]["elicitations"][0]["mode"], "url");
    assert_eq!(error["data"]["elicitations"][0]["url"], connect.as_str());

    // A virtual server over both: bob (no key for `own`) still reaches `shared`.
    p.admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "both", "display_name": "both", "kind": "virtual", "servers": [{"server": "shared"}, {"server": "own"}]}),
        )
        .await
        .expect(201);
    p.admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/both/collaborators",
            Some(json!({"subject": "user:bob@example.com", "role": "user"})),
        )
        .await
        .expect(201);
    wait_for_policy(&app).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, session, messages) = post(&mcp_url(&app, "both"), &p.bob_token, None, init).await;
    assert_eq!(status, 200);
    let how = p.bob.get("/api/v1/tenants/acme/servers/both/how-to-use").await.expect(200);
    assert_eq!(how["before_first_use"], json!([{"server": "own", "kind": "key", "connect_url": connect}]));
    let actions = &messages[0]["result"]["_meta"]["mcpgate/actions"];
    assert_eq!(actions[0]["server"], "own", "{messages:?}");
    assert_eq!(actions[0]["url"], connect.as_str());
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let (_, _, messages) = post(&mcp_url(&app, "both"), &p.bob_token, session.as_deref(), call).await;
    assert_eq!(messages[0]["result"]["content"][0]["text"], "bob-own", "{messages:?}");
}

#[tokio::test]
async fn client_credentials_token_is_shared_cached_and_renewed_on_401() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let upstream = guarded::start(Guard::OAuth).await;
    let auth = json!({"type": "oauth2", "grant_type": "client_credentials", "token_url": format!("{}/token", upstream.base),
        "client_id": MACHINE_ID, "client_secret": MACHINE_SECRET, "scopes": ["mcp"]});
    let view = server(&p, "machine", &upstream.url, auth).await;
    assert_eq!(view["auth_data"]["client_secret_set"], true);
    assert!(!view.to_string().contains(MACHINE_SECRET));
    wait_for_policy(&app).await;

    let url = mcp_url(&app, "machine");
    assert_eq!(whoami(&url, &p.ann_token).await.unwrap(), "machine");
    assert_eq!(whoami(&url, &p.bob_token).await.unwrap(), "machine");
    assert_eq!(upstream.issuer.machine_tokens.load(Ordering::SeqCst), 1, "one token for every caller until it expires");
    assert_eq!(*upstream.issuer.resources.lock().unwrap(), vec![upstream.url.clone()], "resource names the upstream");

    // The provider forgets its tokens: the upstream's 401 makes the gateway fetch a new one
    // and send the request again; the caller sees nothing of it.
    upstream.issuer.forget_access_tokens();
    assert_eq!(whoami(&url, &p.ann_token).await.unwrap(), "machine");
    assert_eq!(upstream.issuer.machine_tokens.load(Ordering::SeqCst), 2);

    // A wrong secret: a clear error, not a hang or a 401 for the caller to misread.
    p.admin
        .patch(
            "/api/v1/tenants/acme/servers/machine",
            json!({"auth_data": {"type": "oauth2", "grant_type": "client_credentials", "token_url": format!("{}/token", upstream.base),
                "client_id": MACHINE_ID, "client_secret": "wrong"}}),
        )
        .await
        .expect(200);
    wait_for_policy(&app).await;
    upstream.issuer.forget_access_tokens();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, _, messages) = post(&url, &p.ann_token, None, init).await;
    assert_eq!(status, 502, "{messages:?}");
    assert!(messages[0]["error"]["message"].as_str().unwrap().contains("invalid_client"), "{messages:?}");
}

#[tokio::test]
async fn per_user_oauth_connects_refreshes_and_stays_per_user() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let upstream = guarded::start(Guard::OAuth).await;
    // Nothing but the grant type: endpoints are discovered (RFC 9728 → RFC 8414) and the
    // gateway registers itself (RFC 7591).
    server(&p, "oauthy", &upstream.url, json!({"type": "oauth2", "grant_type": "authorization_code"})).await;
    wait_for_policy(&app).await;
    let url = mcp_url(&app, "oauthy");
    let connect = format!("{}/connect/acme/oauthy", app.base);

    let error = whoami(&url, &p.ann_token).await.unwrap_err();
    assert_eq!(error["code"], -32003);
    assert_eq!(error["data"]["url"], connect.as_str());
    let how = p.ann.get("/api/v1/tenants/acme/servers/oauthy/how-to-use").await.expect(200);
    assert_eq!(how["before_first_use"][0]["kind"], "authorization");

    // An authorization ann started cannot be completed in bob's signed-in browser.
    let started = p.ann.post("/api/v1/me/connections/acme/oauthy", json!({})).await.expect(200);
    let bobs_browser = browser();
    let form = bobs_browser.get(&connect).send().await.unwrap().text().await.unwrap();
    let signed_in = submit(
        &bobs_browser,
        &format!("{connect}/sign-in"),
        &[
            ("email", "bob@example.com"),
            ("password", "pw-bob@example.com-secret"),
            ("form_token", &form_token_in(&form)),
        ],
    )
    .await;
    assert_eq!(signed_in.status(), 303);
    let back = bobs_browser.get(started["authorization_url"].as_str().unwrap()).send().await.unwrap();
    let refused = bobs_browser.get(location(&back)).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("another user"));
    assert_eq!(p.bob.get("/api/v1/me/connections").await.expect(200)["items"], json!([]));

    // Ann connects through the API: the authorization URL, the provider, the callback.
    let started = p.ann.post("/api/v1/me/connections/acme/oauthy", json!({})).await.expect(200);
    let authorization = started["authorization_url"].as_str().unwrap();
    let query: std::collections::HashMap<String, String> =
        url::Url::parse(authorization).unwrap().query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["resource"], upstream.url);
    assert_eq!(query["redirect_uri"], format!("{}/oauth/upstream/callback", app.base));
    // The provider's answer reaching a browser that is not signed in (or not as ann) links
    // nothing: that would be account-linking CSRF.
    let stranger = browser();
    let back = stranger.get(authorization).send().await.unwrap();
    let refused = stranger.get(location(&back)).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("not signed in"));
    let started = p.ann.post("/api/v1/me/connections/acme/oauthy", json!({})).await.expect(200);
    let authorization = started["authorization_url"].as_str().unwrap();
    let browser = browser_of(&app.base, "ann@example.com", "pw-ann@example.com-secret").await;
    let back = browser.get(authorization).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let callback = location(&back);
    let done = browser.get(&callback).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Connected"));
    // The state is single use.
    assert_eq!(browser.get(&callback).send().await.unwrap().status(), 403);
    let audit = p.admin.get("/api/v1/tenants/acme/audit-events?action=connection.create").await.expect(200);
    assert_eq!(audit["items"][0]["actor"], "user:ann@example.com", "{audit}");
    let connections = p.ann.get("/api/v1/me/connections").await.expect(200);
    assert_eq!(connections["items"][0]["server"], "oauthy");
    assert_eq!(connections["items"][0]["status"], "authenticated");
    assert!(!connections.to_string().contains("at-"), "no token in the API: {connections}");
    wait_for_policy(&app).await;
    let ann_upstream = whoami(&url, &p.ann_token).await.unwrap();
    assert!(ann_upstream.starts_with("upstream-user-"), "{ann_upstream}");

    // Bob follows the URL from his error in a browser: sign in, provider, back.
    let done = connect_in_browser(&app, &connect, "bob@example.com", None).await;
    assert!(done.contains("Connected"), "{done}");
    wait_for_policy(&app).await;
    let bob_upstream = whoami(&url, &p.bob_token).await.unwrap();
    assert!(bob_upstream.starts_with("upstream-user-") && bob_upstream != ann_upstream, "{bob_upstream}");
    assert_eq!(whoami(&url, &p.ann_token).await.unwrap(), ann_upstream, "ann's grant is ann's alone");

    // Upstream 401 → one refresh → the request again.
    upstream.issuer.forget_access_tokens();
    assert_eq!(whoami(&url, &p.ann_token).await.unwrap(), ann_upstream);
    assert_eq!(upstream.issuer.refreshes.load(Ordering::SeqCst), 1);

    // Concurrent callers whose token was refused: one refresh between them.
    upstream.issuer.forget_access_tokens();
    let calls = (0..5).map(|_| whoami(&url, &p.ann_token));
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result.unwrap(), ann_upstream);
    }
    assert_eq!(upstream.issuer.refreshes.load(Ordering::SeqCst), 2, "refreshed once per grant");

    // Tokens that are about to expire are renewed before use.
    upstream.issuer.lifetime.store(5, Ordering::SeqCst);
    upstream.issuer.forget_access_tokens();
    assert_eq!(whoami(&url, &p.ann_token).await.unwrap(), ann_upstream);
    let before = upstream.issuer.refreshes.load(Ordering::SeqCst);
    assert_eq!(whoami(&url, &p.ann_token).await.unwrap(), ann_upstream);
    assert!(upstream.issuer.refreshes.load(Ordering::SeqCst) > before, "an expiring token is refreshed first");
    upstream.issuer.lifetime.store(3600, Ordering::SeqCst);

    // Bob disconnects: revoked at the provider, and he is asked to connect again.
    let revoked = upstream.issuer.revoked.load(Ordering::SeqCst);
    p.bob.delete("/api/v1/me/connections/acme/oauthy").await.expect(204);
    assert_eq!(upstream.issuer.revoked.load(Ordering::SeqCst), revoked + 1);
    wait_for_policy(&app).await;
    assert_eq!(whoami(&url, &p.bob_token).await.unwrap_err()["code"], -32003);
    // The provider drops the grant: the next call says so, with the URL, and so does the list.
    upstream.issuer.forget_all_grants();
    let error = whoami(&url, &p.ann_token).await.unwrap_err();
    assert_eq!(error["code"], -32003, "{error}");
    assert!(error["message"].as_str().unwrap().contains("invalid_grant"), "{error}");
    let connections = p.ann.get("/api/v1/me/connections").await.expect(200);
    assert_eq!(connections["items"][0]["status"], "unauthenticated");
    assert_eq!(connections["items"][0]["reason"], "invalid_grant");

    assert!(
        upstream.issuer.resources.lock().unwrap().iter().all(|r| r == &upstream.url),
        "resource on every token request"
    );
}

/// Every byte of the database: the SQLite files, or every row of every table on PostgreSQL.
async fn database_contents(data_dir: &std::path::Path, database_url: &str) -> String {
    if database_url.starts_with("sqlite:") {
        let mut all = String::new();
        for entry in std::fs::read_dir(data_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with("mcpgate.db") {
                all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
        return all;
    }
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(database_url).await.unwrap();
    let tables = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        ))
        .await
        .unwrap();
    let mut all = String::new();
    for row in tables {
        let table: String = row.try_get("", "table_name").unwrap();
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT row_to_json(t)::text AS j FROM \"{table}\" t"),
            ))
            .await
            .unwrap();
        for r in rows {
            all.push_str(&r.try_get::<String>("", "j").unwrap());
        }
    }
    all
}

/// The real binary with a tenant `acme` whose admin is the platform admin; returns the
/// server, a signed-in admin client and the admin's token.
async fn binary_with_tenant(
    dir: &std::path::Path,
    database_url: &str,
    env: &[(&str, &str)],
) -> (crate::process::Server, Client, String) {
    let server = crate::process::start(dir, database_url, env, &dir.join("stderr.log"));
    let mut admin = Client::new(&server.base);
    admin.login("ops@example.com", "ops-password-123").await.expect(200);
    admin.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);
    let members = admin.get("/api/v1/tenants/acme/members").await.expect(200);
    assert_eq!(members["items"][0]["email"], "ops@example.com", "the creator is the tenant's first admin");
    let token =
        admin.post("/api/v1/me/tokens", json!({"name": "ide"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    (server, admin, token)
}

/// Registers remote servers `(slug, url, auth_data)`.
async fn register(admin: &Client, servers: Vec<(&str, &String, Value)>) {
    for (slug, url, auth) in servers {
        admin
            .post(
                "/api/v1/tenants/acme/servers",
                json!({"slug": slug, "display_name": slug, "kind": "remote", "url": url, "auth_data": auth}),
            )
            .await
            .expect(201);
    }
}

/// The real binary at TRACE: no upstream secret, and none of the gateway's own OAuth secrets
/// (client secret, code, access and refresh tokens), is logged or stored in clear.
#[tokio::test]
async fn no_outbound_secret_is_stored_or_logged_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = crate::helpers::fresh_database(dir.path()).await;
    let log = dir.path().join("stderr.log");
    let env = [
        ("MCPGATE_ADMIN_EMAIL", "ops@example.com"),
        ("MCPGATE_ADMIN_PASSWORD", "ops-password-123"),
        ("MCPGATE_LOG", "trace"),
    ];
    let (server, admin, token) = binary_with_tenant(dir.path(), &database_url, &env).await;

    let shared_key = "Shared-Key-3f9a1c";
    let own_key = "Own-Key-77d2e0";
    let shared = guarded::start(Guard::header("x-api-key", &[(shared_key, "shared")])).await;
    let own = guarded::start(Guard::header("authorization", &[(&format!("Bearer {own_key}"), "own")])).await;
    let machine = guarded::start(Guard::OAuth).await;
    let oauth = guarded::start(Guard::OAuth).await;
    let servers = [
        (
            "shared",
            &shared.url,
            json!({"type": "header", "auth_level": "global", "headers": {"X-Api-Key": shared_key}}),
        ),
        (
            "own",
            &own.url,
            json!({"type": "header", "auth_level": "per_user", "headers": {"Authorization": "Bearer {{API_KEY}}"}}),
        ),
        (
            "machine",
            &machine.url,
            json!({"type": "oauth2", "grant_type": "client_credentials", "token_url": format!("{}/token", machine.base),
                "client_id": MACHINE_ID, "client_secret": MACHINE_SECRET}),
        ),
        ("oauthy", &oauth.url, json!({"type": "oauth2", "grant_type": "authorization_code"})),
    ];
    register(&admin, servers.into()).await;
    admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/own/auth-overrides/me",
            Some(json!({"values": {"API_KEY": own_key}})),
        )
        .await
        .expect(201);
    let started = admin.post("/api/v1/me/connections/acme/oauthy", json!({})).await.expect(200);
    let browser = browser_of(&server.base, "ops@example.com", "ops-password-123").await;
    let back = browser.get(started["authorization_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(browser.get(location(&back)).send().await.unwrap().status(), 200);
    // Published within ~100 ms of the last change.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (slug, who) in [("shared", "shared"), ("own", "own"), ("machine", "machine"), ("oauthy", "upstream-user-1")] {
        let url = format!("{}/acme/mcp/{slug}/server", server.base);
        assert_eq!(whoami(&url, &token).await.unwrap(), who);
    }
    // Refresh once too, so a rotated refresh token is among the secrets.
    oauth.issuer.forget_access_tokens();
    assert_eq!(whoami(&format!("{}/acme/mcp/oauthy/server", server.base), &token).await.unwrap(), "upstream-user-1");
    assert_eq!(oauth.issuer.refreshes.load(Ordering::SeqCst), 1);

    // The gateway's own OAuth server: a confidential client's secret, the code, the tokens.
    let gateway_secrets = sign_in_with_gateway(&server.base, ("ops@example.com", "ops-password-123")).await;

    let stdout = server.kill().join("\n");
    let output = format!("{stdout}\n{}", std::fs::read_to_string(&log).unwrap());
    assert!(output.contains("TRACE"), "trace logging was on");
    let stored = database_contents(dir.path(), &database_url).await;
    assert!(stored.contains("acme"), "the database was read");
    let mut secrets = vec![shared_key.to_owned(), own_key.to_owned(), MACHINE_SECRET.to_owned()];
    secrets.extend(machine.issuer.issued.lock().unwrap().iter().cloned());
    secrets.extend(oauth.issuer.issued.lock().unwrap().iter().cloned());
    secrets.extend(gateway_secrets);
    assert!(secrets.len() >= 13, "{secrets:?}");
    for secret in &secrets {
        assert!(!output.contains(secret.as_str()), "{secret} appeared in the output");
        assert!(!stored.contains(secret.as_str()), "{secret} is stored in clear");
    }
}

/// A confidential client signs `who` in through the gateway and refreshes once; returns every
/// secret that passed: client secret, code, access and refresh tokens.
async fn sign_in_with_gateway(base: &str, who: (&str, &str)) -> Vec<String> {
    use crate::oauth::{pkce, Browser, Decision};
    let http = reqwest::Client::new();
    let redirect = "https://app.example/callback";
    let client: Value = http
        .post(format!("{base}/oauth/register"))
        .json(&json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "client_secret_basic"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, secret) = (client["client_id"].as_str().unwrap(), client["client_secret"].as_str().unwrap());
    let (verifier, challenge) = pkce();
    let mut url = url::Url::parse(&format!("{base}/oauth/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", id)
        .append_pair("redirect_uri", redirect)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &format!("{base}/acme/mcp/shared/server"));
    let back = Browser::new(base).authorize(url.as_str(), who, Decision::Approve, &[]).await;
    let code = url::Url::parse(&back).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let token = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let res = http.post(format!("{base}/oauth/token")).basic_auth(id, Some(secret)).form(&form).send().await;
            res.unwrap().json::<Value>().await.unwrap()
        }
    };
    let first = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code.clone()),
        ("redirect_uri", redirect.into()),
        ("code_verifier", verifier),
    ])
    .await;
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let second = token(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh.clone())]).await;
    let mut secrets = vec![secret.to_owned(), code, refresh];
    for answer in [&first, &second] {
        secrets.push(answer["access_token"].as_str().unwrap().to_owned());
    }
    secrets.push(second["refresh_token"].as_str().expect("refreshed").to_owned());
    secrets
}

#[tokio::test]
async fn a_replica_gets_credentials_from_the_control_plane() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let own = guarded::start(Guard::header("authorization", &[("Bearer key-ann-1f", "ann-upstream")])).await;
    let machine = guarded::start(Guard::OAuth).await;
    server(
        &p,
        "own",
        &own.url,
        json!({"type": "header", "auth_level": "per_user", "headers": {"Authorization": "Bearer {{API_KEY}}"}}),
    )
    .await;
    let cc = json!({"type": "oauth2", "grant_type": "client_credentials", "token_url": format!("{}/token", machine.base),
        "client_id": MACHINE_ID, "client_secret": MACHINE_SECRET});
    server(&p, "machine", &machine.url, cc).await;
    wait_for_policy(&app).await;
    let (base, policy) = crate::gateway::running_replica(&app).await;
    let url = format!("{base}/acme/mcp/own/server");
    let error = whoami(&url, &p.ann_token).await.unwrap_err();
    assert_eq!(error["code"], -32003);
    assert_eq!(error["data"]["url"], format!("{}/connect/acme/own", app.base), "the URL is the control plane's page");
    p.ann
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/own/auth-overrides/me",
            Some(json!({"values": {"API_KEY": "key-ann-1f"}})),
        )
        .await
        .expect(201);
    wait_for_policy(&app).await;
    let wanted = app.state.policy.version();
    while policy.version() < wanted {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The replica loaded one full snapshot and took the change as a delta.
    let (full, deltas) = policy.applied();
    assert_eq!(full, 1, "no fall-back to the full snapshot");
    assert!(deltas >= 1);
    assert_eq!(whoami(&url, &p.ann_token).await.unwrap(), "ann-upstream");
    assert_eq!(whoami(&format!("{base}/acme/mcp/machine/server"), &p.bob_token).await.unwrap(), "machine");

    // The credential endpoint answers the proxy key only; not even a platform admin reads secrets.
    let ask = json!({"server": 1, "subject": "u1"});
    p.admin.post("/api/v1/policy/credentials", ask.clone()).await.problem(401, "unauthenticated");
    let with_pat = Client::with_token(&app.base, &p.ann_token);
    with_pat.post("/api/v1/policy/credentials", ask).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn rotating_the_master_key_keeps_every_secret_usable() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = crate::helpers::fresh_database(dir.path()).await;
    let log = dir.path().join("stderr.log");
    let env = [("MCPGATE_ADMIN_EMAIL", "ops@example.com"), ("MCPGATE_ADMIN_PASSWORD", "ops-password-123")];
    let shared = guarded::start(Guard::header("x-api-key", &[("Shared-Key-0a", "shared")])).await;
    let own = guarded::start(Guard::header("authorization", &[("Bearer Own-Key-0b", "own")])).await;
    let (server, admin, token) = binary_with_tenant(dir.path(), &database_url, &env).await;
    register(
        &admin,
        vec![
            (
                "shared",
                &shared.url,
                json!({"type": "header", "auth_level": "global", "headers": {"X-Api-Key": "Shared-Key-0a"}}),
            ),
            (
                "own",
                &own.url,
                json!({"type": "header", "auth_level": "per_user", "headers": {"Authorization": "Bearer {{API_KEY}}"}}),
            ),
        ],
    )
    .await;
    admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/own/auth-overrides/me",
            Some(json!({"values": {"API_KEY": "Own-Key-0b"}})),
        )
        .await
        .expect(201);
    server.kill();

    let key_file = dir.path().join("master.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_mcpgate"))
        .args(["keys", "rotate-master", "--data-dir"])
        .arg(dir.path())
        .env("DATABASE_URL", &database_url)
        .env_remove("MCPGATE_MASTER_KEY")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(rotated.status.success(), "{said}{}", String::from_utf8_lossy(&rotated.stderr));
    assert!(said.contains("re-sealed"), "{said}");
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(old_key, new_key);
    assert!(!said.contains(new_key.trim()), "a key file's key is not printed");

    // Everything still opens under the new key: snapshot signing, shared key, override.
    let server = crate::process::start(dir.path(), &database_url, &env, &log);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(whoami(&format!("{}/acme/mcp/shared/server", server.base), &token).await.unwrap(), "shared");
    assert_eq!(whoami(&format!("{}/acme/mcp/own/server", server.base), &token).await.unwrap(), "own");
    server.kill();
}

#[tokio::test]
async fn a_virtual_server_can_call_a_member_with_credentials_of_its_own() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let upstream =
        guarded::start(Guard::header("x-api-key", &[("k-member-own", "member"), ("k-virtual-own", "via-virtual")]))
            .await;
    server(
        &p,
        "tool",
        &upstream.url,
        json!({"type": "header", "auth_level": "global", "headers": {"X-Api-Key": "k-member-own"}}),
    )
    .await;

    let per_user = json!({"slug": "bad", "display_name": "bad", "kind": "virtual", "servers": [{"server": "tool",
        "auth_data": {"type": "header", "auth_level": "per_user", "headers": {"X-Api-Key": "{{KEY}}"}}}]});
    let refused = p.admin.post("/api/v1/tenants/acme/servers", per_user).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.error_fields(), vec!["servers[0].auth_data"]);

    let combo = json!({"slug": "combo", "display_name": "combo", "kind": "virtual", "servers": [{"server": "tool",
        "auth_data": {"type": "header", "auth_level": "global", "headers": {"X-Api-Key": "k-virtual-own"}}}]});
    let view = p.admin.post("/api/v1/tenants/acme/servers", combo).await.expect(201);
    assert_eq!(
        view["servers"][0]["auth_data"],
        json!({"type": "header", "auth_level": "global", "secret_headers": ["X-Api-Key"]})
    );
    assert!(!view.to_string().contains("k-virtual-own"), "{view}");
    p.admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/combo/collaborators",
            Some(json!({"subject": "user:ann@example.com", "role": "user"})),
        )
        .await
        .expect(201);
    wait_for_policy(&app).await;
    assert_eq!(whoami(&mcp_url(&app, "tool"), &p.ann_token).await.unwrap(), "member");
    assert_eq!(whoami(&mcp_url(&app, "combo"), &p.ann_token).await.unwrap(), "via-virtual");
    let snapshot = serde_json::to_string(&app.state.policy.current().unwrap().snapshot).unwrap();
    assert!(!snapshot.contains("k-virtual-own") && !snapshot.contains("k-member-own"), "no secret in the snapshot");
}

#[tokio::test]
async fn outbound_auth_is_checked_replaced_and_removed_through_the_api() {
    let app = spawn_app().await;
    let p = people(&app).await;
    let create = |auth: Value| json!({"slug": "s", "display_name": "s", "kind": "remote", "url": "https://up.example/mcp", "auth_data": auth});
    let cases = [
        (
            json!({"type": "header", "auth_level": "global", "headers": {"Authorization": "Bearer {{KEY}}"}}),
            "auth_data.headers.Authorization",
        ),
        (json!({"type": "header", "auth_level": "per_user", "headers": {"X-Key": "fixed"}}), "auth_data.headers"),
        (
            json!({"type": "header", "auth_level": "global", "headers": {"Mcp-Session-Id": "x"}}),
            "auth_data.headers.Mcp-Session-Id",
        ),
        (json!({"type": "oauth2", "grant_type": "client_credentials", "client_id": "a"}), "auth_data.client_secret"),
        (
            json!({"type": "oauth2", "grant_type": "authorization_code", "token_url": "https://as.example/token"}),
            "auth_data.authorization_url",
        ),
        (
            json!({"type": "oauth2", "grant_type": "authorization_code", "authorization_url": "javascript:alert(1)", "token_url": "https://as.example/token"}),
            "auth_data.authorization_url",
        ),
    ];
    for (auth, field) in cases {
        let reply = p.admin.post("/api/v1/tenants/acme/servers", create(auth.clone())).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{auth}");
        assert!(reply.error_fields().contains(&field.to_owned()), "{auth}: {:?}", reply.body);
    }
    let virtual_with_auth = json!({"slug": "v", "display_name": "v", "kind": "virtual", "servers": [],
        "auth_data": {"type": "passthrough"}});
    let reply = p.admin.post("/api/v1/tenants/acme/servers", virtual_with_auth).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);

    p.admin
        .post(
            "/api/v1/tenants/acme/servers",
            create(json!({"type": "header", "auth_level": "global", "headers": {"X-Key": "first-secret"}})),
        )
        .await
        .expect(201);
    let replaced = p
        .admin
        .patch(
            "/api/v1/tenants/acme/servers/s",
            json!({"auth_data": {"type": "oauth2", "grant_type": "authorization_code"}}),
        )
        .await
        .expect(200);
    assert_eq!(replaced["auth_data"]["type"], "oauth2");
    assert_eq!(replaced["auth_data"]["client_secret_set"], false);
    wait_for_policy(&app).await;
    let entry = |app: &TestApp| {
        let policy = app.state.policy.current().unwrap();
        serde_json::to_value(&policy.snapshot.servers.iter().find(|s| s.slug == "s").unwrap().outbound_auth).unwrap()
    };
    assert_eq!(entry(&app), json!({"type": "oauth2", "grant_type": "authorization_code"}));
    let removed = p.admin.patch("/api/v1/tenants/acme/servers/s", json!({"auth_data": null})).await.expect(200);
    assert!(removed.get("auth_data").is_none(), "{removed}");
    wait_for_policy(&app).await;
    assert_eq!(entry(&app), json!({"type": "none"}));
    // Only managers change it.
    p.ann.patch("/api/v1/tenants/acme/servers/s", json!({"auth_data": null})).await.problem(404, "not_found");
}
