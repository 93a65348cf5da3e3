//! "Sign in with mcpgate": the gateway's OAuth authorization server, driven by real MCP client
//! libraries (rmcp's `auth` feature here, the TypeScript SDK's `auth()` in tests/peers) and by a
//! headless browser stand-in that fills in the gateway's pages over HTTP.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::LOCATION;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::auth::{AuthClient, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::gateway::grant;
use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::proxy::{setup, status, wait_for_policy};

const ANN: (&str, &str) = ("ann@example.com", "pw-ann@example.com-secret");

/// A person's browser: cookies, no automatic redirects, and the gateway's pages filled in.
pub struct Browser {
    pub http: reqwest::Client,
    base: String,
}

/// What to do on the consent page.
#[derive(Clone, Copy, PartialEq)]
pub enum Decision {
    Approve,
    Deny,
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The value of a hidden input on a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} on the page: {page}")) + marker.len();
    unescape(&page[start..start + page[start..].find('"').unwrap()])
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let http =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, base: base.to_owned() }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        }
    }

    /// Follows an authorization URL through sign-in, consent and any per-user key forms (filled
    /// with `keys`) until the gateway sends the browser elsewhere; returns that URL.
    pub async fn authorize(&self, url: &str, who: (&str, &str), decision: Decision, keys: &[(&str, &str)]) -> String {
        let base = self.base.clone();
        self.authorize_until(url, who, decision, keys, |next| !next.starts_with(&base)).await
    }

    /// As `authorize`, stopping at the first redirect `stop` picks.
    pub async fn authorize_until(
        &self,
        url: &str,
        who: (&str, &str),
        decision: Decision,
        keys: &[(&str, &str)],
        stop: impl Fn(&str) -> bool,
    ) -> String {
        let mut current = url.to_owned();
        for _ in 0..20 {
            let res = self.http.get(&current).send().await.unwrap();
            let res = if res.status().is_redirection() {
                res
            } else {
                let status = res.status();
                let page = res.text().await.unwrap();
                if status == 403 && page.contains("Go back to the application") {
                    // The person may not use the server: they read why and go back.
                    let start = page.find("<a href=\"").unwrap() + 9;
                    return unescape(&page[start..start + page[start..].find('"').unwrap()]);
                }
                assert_eq!(status, 200, "{current}: {page}");
                if page.contains("action=\"/oauth/authorize/sign-in\"") {
                    let form = [
                        ("email", who.0.to_owned()),
                        ("password", who.1.to_owned()),
                        ("return_to", hidden(&page, "return_to")),
                        ("form_token", hidden(&page, "form_token")),
                    ];
                    self.http.post(format!("{}/oauth/authorize/sign-in", self.base)).form(&form).send().await.unwrap()
                } else if page.contains("action=\"/oauth/authorize/decision\"") {
                    assert!(page.contains("Approve") && page.contains("Deny"), "{page}");
                    let choice = if decision == Decision::Approve { "approve" } else { "deny" };
                    let form = [
                        ("csrf_token", hidden(&page, "csrf_token")),
                        ("request", hidden(&page, "request")),
                        ("decision", choice.to_owned()),
                    ];
                    self.http.post(format!("{}/oauth/authorize/decision", self.base)).form(&form).send().await.unwrap()
                } else if page.contains("/sign-in\">") && page.contains("action=\"/connect/") {
                    // The connect page's own sign-in, keeping the way back.
                    let start = page.find("action=\"/connect/").unwrap() + 8;
                    let action = unescape(&page[start..start + page[start..].find('"').unwrap()]);
                    let mut form = vec![
                        ("email", who.0.to_owned()),
                        ("password", who.1.to_owned()),
                        ("form_token", hidden(&page, "form_token")),
                    ];
                    if page.contains("name=\"return_to\"") {
                        form.push(("return_to", hidden(&page, "return_to")));
                    }
                    self.http.post(self.absolute(&action)).form(&form).send().await.unwrap()
                } else if let Some(start) = page.find("action=\"/connect/") {
                    let action = &page[start + 8..];
                    let action = unescape(&action[..action.find('"').unwrap()]);
                    let mut form: Vec<(String, String)> = vec![
                        ("csrf_token".into(), hidden(&page, "csrf_token")),
                        ("return_to".into(), hidden(&page, "return_to")),
                    ];
                    form.extend(keys.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                    self.http.post(self.absolute(&action)).form(&form).send().await.unwrap()
                } else {
                    panic!("unexpected page at {current}: {page}");
                }
            };
            assert!(res.status().is_redirection(), "expected a redirect, got {}", res.status());
            let location = self.absolute(res.headers()[LOCATION].to_str().unwrap());
            if stop(&location) {
                return location;
            }
            current = location;
        }
        panic!("the authorization did not end");
    }
}

pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

async fn register(app: &TestApp, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new().post(format!("{}/oauth/register", app.base)).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let res = reqwest::Client::new().post(format!("{}/oauth/token", app.base)).form(form).send().await.unwrap();
    let status = res.status().as_u16();
    assert_eq!(res.headers()["cache-control"], "no-store");
    (status, res.json().await.unwrap())
}

/// `grant_type=authorization_code` for a public client: (status, body).
pub async fn exchange(app: &TestApp, client_id: &str, redirect: &str, code: &str, verifier: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ];
    token_request(app, &form).await
}

pub fn mcp_url(app: &TestApp) -> String {
    format!("{}/acme/mcp/fixture/server", app.base)
}

pub fn authorize_url(app: &TestApp, client_id: &str, redirect: &str, challenge: &str, resource: &str) -> String {
    let mut url = url::Url::parse(&format!("{}/oauth/authorize", app.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("state", "st-1")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", resource);
    url.into()
}

/// A public client registered like Claude Code does (loopback, port-less).
pub async fn public_client(app: &TestApp) -> String {
    let (code, body) = register(
        app,
        json!({"client_name": "Test IDE", "redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none",
               "grant_types": ["authorization_code", "refresh_token"]}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(body.get("client_secret").is_none(), "a public client gets no secret");
    body["client_id"].as_str().unwrap().to_owned()
}

/// Signs ann in through the browser and exchanges the code: (access, refresh).
async fn sign_in(app: &TestApp, browser: &Browser, client_id: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:49152/callback";
    let back = browser
        .authorize(&authorize_url(app, client_id, redirect, &challenge, &mcp_url(app)), ANN, Decision::Approve, &[])
        .await;
    assert!(back.starts_with(redirect), "{back}");
    let q = query_of(&back);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], app.base, "RFC 9207 iss");
    let (code, body) = exchange(app, client_id, redirect, &q["code"], &verifier).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
}

/// Polls the proxy until it answers `want` for the token; fails after a second.
async fn proxy_answers_within_a_second(app: &TestApp, token: &str, want: u16) {
    let start = Instant::now();
    loop {
        if status(&mcp_url(app), Some(token)).await.0 == want {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "the proxy did not answer {want} within a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn discovery_starts_from_the_401_and_names_this_issuer() {
    let app = spawn_app().await;
    setup(&app).await;
    let (code, headers) = status(&mcp_url(&app), None).await;
    assert_eq!(code, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    let prm_url = challenge.split('"').nth(1).unwrap();
    assert_eq!(prm_url, format!("{}/.well-known/oauth-protected-resource/acme/mcp/fixture/server", app.base));
    let prm: Value = reqwest::get(prm_url).await.unwrap().json().await.unwrap();
    assert_eq!(prm["resource"], mcp_url(&app));
    assert_eq!(prm["authorization_servers"], json!([app.base]));
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let res = reqwest::get(format!("{}{path}", app.base)).await.unwrap();
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let meta: Value = res.json().await.unwrap();
        assert_eq!(meta["issuer"], app.base, "issuer is the public base URL exactly");
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(meta["client_id_metadata_document_supported"], true);
        assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
        assert_eq!(meta["token_endpoint"], format!("{}/oauth/token", app.base));
    }
    let jwks: Value = reqwest::get(format!("{}/oauth/jwks", app.base)).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}

#[tokio::test]
async fn registration_accepts_real_clients_redirect_uris_and_refuses_others() {
    let app = spawn_app().await;
    for (client, uris) in [
        (
            "Cursor",
            json!(["cursor://anysphere.cursor-retrieval/oauth/user-callback", "https://cursor.com/oauth/callback"]),
        ),
        ("VS Code", json!(["https://vscode.dev/redirect", "http://127.0.0.1:33418/"])),
        ("Claude Code", json!(["http://localhost:51234/callback"])),
    ] {
        let (code, body) =
            register(&app, json!({"client_name": client, "redirect_uris": uris, "token_endpoint_auth_method": "none"}))
                .await;
        assert_eq!(code, 201, "{client}: {body}");
        assert_eq!(body["redirect_uris"], uris);
        assert_eq!(body["client_name"], client);
        assert!(body["client_id"].as_str().unwrap().starts_with("mcpgate_client_"));
    }
    // A confidential client gets its secret once.
    let (code, body) = register(
        &app,
        json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    assert_eq!(code, 201);
    assert!(body["client_secret"].as_str().unwrap().len() >= 43);
    for (bad, error) in [
        (json!({"redirect_uris": ["http://evil.example/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["javascript:alert(1)"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (json!({"client_name": "x"}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["password"]}), "invalid_client_metadata"),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "client_name": "x".repeat(5000)}),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": vec!["https://a.example/cb"; 21]}), "invalid_redirect_uri"),
    ] {
        let (code, body) = register(&app, bad.clone()).await;
        assert_eq!((code, body["error"].as_str().unwrap()), (400, error), "{bad}: {body}");
        assert!(body["error_description"].as_str().unwrap().len() > 10);
    }
}

#[tokio::test]
async fn code_flow_with_pkce_gives_tokens_for_exactly_one_mcp_url() {
    let app = spawn_app().await;
    let (admin, _, _) = setup(&app).await;
    let client_id = public_client(&app).await;
    let browser = Browser::new(&app.base);
    let (access, _) = sign_in(&app, &browser, &client_id).await;
    assert_eq!(status(&mcp_url(&app), Some(&access)).await.0, 200, "the access token works at the proxy");
    // Another MCP URL does not take it (aud mismatch), even one ann may use.
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "other", "display_name": "Other", "kind": "remote", "url": "http://127.0.0.1:9/mcp"}),
        )
        .await
        .expect(201);
    grant(&admin, "other", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let (code, headers) = status(&format!("{}/acme/mcp/other/server", app.base), Some(&access)).await;
    assert_eq!(code, 401);
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer error=\"invalid_token\""));

    // Consent is remembered: the same client reconnecting is not asked again.
    let (_, challenge) = pkce();
    let url = authorize_url(&app, &client_id, "http://127.0.0.1:50000/callback", &challenge, &mcp_url(&app));
    let res = browser.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let back = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(back.starts_with("http://127.0.0.1:50000/callback?code="), "any loopback port: {back}");
}

#[tokio::test]
async fn authorization_requests_are_checked_before_anything_is_issued() {
    let app = spawn_app().await;
    setup(&app).await;
    let client_id = public_client(&app).await;
    let browser = Browser::new(&app.base);
    let redirect = "http://127.0.0.1:40000/callback";
    let (verifier, challenge) = pkce();
    // Errors about the client or redirect URI are shown, never redirected.
    for url in [
        authorize_url(&app, "unknown-client", redirect, &challenge, &mcp_url(&app)),
        authorize_url(&app, &client_id, "http://evil.example/callback", &challenge, &mcp_url(&app)),
        authorize_url(&app, &client_id, "http://127.0.0.1:40000/other", &challenge, &mcp_url(&app)),
    ] {
        let res = browser.http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 400, "{url}");
        assert!(res.headers().get(LOCATION).is_none());
    }
    // Others go back to the client with the RFC 6749 code.
    let no_pkce = authorize_url(&app, &client_id, redirect, &challenge, &mcp_url(&app))
        .replace("&code_challenge_method=S256", "&code_challenge_method=plain");
    let missing = format!(
        "{}/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&state=s&resource={}",
        app.base,
        urlencode(redirect),
        urlencode(&mcp_url(&app))
    );
    let foreign =
        authorize_url(&app, &client_id, redirect, &challenge, "https://elsewhere.example/acme/mcp/fixture/server");
    for (url, error) in [(no_pkce, "invalid_request"), (missing, "invalid_request"), (foreign, "invalid_target")] {
        let res = browser.http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 303, "{url}");
        let q = query_of(res.headers()[LOCATION].to_str().unwrap());
        assert_eq!(q["error"], error, "{url}");
        assert_eq!(q["iss"], app.base);
    }

    // A wrong password shows the page again, naming the client and the MCP URL; the form only
    // ever leads back into the authorization.
    let start = authorize_url(&app, &client_id, redirect, &challenge, &mcp_url(&app));
    let return_to = start.strip_prefix(&app.base).unwrap().to_owned();
    let shown = browser.http.get(&start).send().await.unwrap().text().await.unwrap();
    let token = hidden(&shown, "form_token");
    let sign_in = |password: &str, return_to: &str| {
        let form = [
            ("email", ANN.0.to_owned()),
            ("password", password.to_owned()),
            ("return_to", return_to.to_owned()),
            ("form_token", token.clone()),
        ];
        browser.http.post(format!("{}/oauth/authorize/sign-in", app.base)).form(&form).send()
    };
    let res = sign_in("wrong-password", &return_to).await.unwrap();
    assert_eq!(res.status(), 401);
    let page = res.text().await.unwrap();
    assert!(page.contains("not correct") && page.contains("Test IDE") && page.contains(&mcp_url(&app)), "{page}");
    assert_eq!(sign_in(ANN.1, "https://evil.example/").await.unwrap().status(), 400);

    // Someone who may not use the server is told so on a page; the client learns only that
    // access was denied, not who was signed in.
    let bob = Browser::new(&app.base);
    let back = bob
        .authorize(
            &authorize_url(&app, &client_id, redirect, &challenge, &mcp_url(&app)),
            ("bob@example.com", "pw-bob@example.com-secret"),
            Decision::Approve,
            &[],
        )
        .await;
    let q = query_of(&back);
    assert_eq!(q["error"], "access_denied");
    assert!(!q["error_description"].contains("bob"), "{q:?}");

    // A wrong verifier, then a replayed code.
    let back = browser
        .authorize(&authorize_url(&app, &client_id, redirect, &challenge, &mcp_url(&app)), ANN, Decision::Approve, &[])
        .await;
    let code = query_of(&back)["code"].clone();
    let (wrong, body) = exchange(&app, &client_id, redirect, &code, &pkce().0).await;
    assert_eq!((wrong, body["error"].as_str().unwrap()), (400, "invalid_grant"));
    let (reused, body) = exchange(&app, &client_id, redirect, &code, &verifier).await;
    assert_eq!((reused, body["error"].as_str().unwrap()), (400, "invalid_grant"), "a code is spent by its first use");

    // A good exchange, then its code replayed: the tokens it bought stop working.
    let back = browser
        .authorize(&authorize_url(&app, &client_id, redirect, &challenge, &mcp_url(&app)), ANN, Decision::Approve, &[])
        .await;
    let code = query_of(&back)["code"].clone();
    let (ok, body) = exchange(&app, &client_id, redirect, &code, &verifier).await;
    assert_eq!(ok, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(status(&mcp_url(&app), Some(&access)).await.0, 200);
    let (replay, body) = exchange(&app, &client_id, redirect, &code, &verifier).await;
    assert_eq!((replay, body["error"].as_str().unwrap()), (400, "invalid_grant"));
    proxy_answers_within_a_second(&app, &access, 401).await;

    // Codes last 60 seconds.
    let back = browser
        .authorize(&authorize_url(&app, &client_id, redirect, &challenge, &mcp_url(&app)), ANN, Decision::Approve, &[])
        .await;
    app.clock.advance(chrono::Duration::seconds(61));
    let (late, body) = exchange(&app, &client_id, redirect, &query_of(&back)["code"], &verifier).await;
    assert_eq!((late, body["error"].as_str().unwrap()), (400, "invalid_grant"));
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_family() {
    let app = spawn_app().await;
    setup(&app).await;
    let client_id = public_client(&app).await;
    let browser = Browser::new(&app.base);
    let (access1, refresh1) = sign_in(&app, &browser, &client_id).await;
    let refresh = |token: String, resource: Option<String>| {
        let app = &app;
        let client_id = client_id.clone();
        async move {
            let mut form =
                vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", token), ("client_id", client_id)];
            if let Some(r) = resource {
                form.push(("resource", r));
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token_request(app, &form).await
        }
    };
    // Without resource (some clients), and with the right one (others).
    let (code, body) = refresh(refresh1.clone(), None).await;
    assert_eq!(code, 200, "{body}");
    let refresh2 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh1, "rotated");
    let (code, body) = refresh(refresh2.clone(), Some("https://elsewhere.example/x".into())).await;
    assert_eq!((code, body["error"].as_str().unwrap()), (400, "invalid_target"));
    let (code, body) = refresh(refresh2.clone(), Some(mcp_url(&app))).await;
    assert_eq!(code, 200, "{body}");
    let refresh3 = body["refresh_token"].as_str().unwrap().to_owned();
    let access3 = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(status(&mcp_url(&app), Some(&access3)).await.0, 200);

    // refresh1 was rotated: presenting it again revokes the whole sign-in.
    let (code, body) = refresh(refresh1, None).await;
    assert_eq!((code, body["error"].as_str().unwrap()), (400, "invalid_grant"));
    let (code, _) = refresh(refresh3, None).await;
    assert_eq!(code, 400, "the newest refresh token of the family is dead too");
    proxy_answers_within_a_second(&app, &access3, 401).await;
    proxy_answers_within_a_second(&app, &access1, 401).await;
}

#[tokio::test]
async fn a_sign_in_expires_when_idle_and_at_its_absolute_end() {
    let app = spawn_app_with(|s| {
        s.oauth_sign_in_idle_hours = 24;
        s.oauth_sign_in_max_hours = 48;
    })
    .await;
    setup(&app).await;
    let client_id = public_client(&app).await;
    let browser = Browser::new(&app.base);
    let refresh = |token: String| {
        let app = &app;
        let client_id = client_id.clone();
        async move {
            token_request(app, &[("grant_type", "refresh_token"), ("refresh_token", &token), ("client_id", &client_id)])
                .await
        }
    };
    let (_, token) = sign_in(&app, &browser, &client_id).await;
    app.clock.advance(chrono::Duration::hours(25));
    let (code, body) = refresh(token).await;
    assert_eq!((code, body["error"].as_str().unwrap()), (400, "invalid_grant"), "idle for longer than a day");

    let browser = Browser::new(&app.base);
    let (_, mut token) = sign_in(&app, &browser, &client_id).await;
    for _ in 0..3 {
        app.clock.advance(chrono::Duration::hours(20));
        let (code, body) = refresh(token.clone()).await;
        if code != 200 {
            assert_eq!(body["error"], "invalid_grant");
            return;
        }
        token = body["refresh_token"].as_str().unwrap().to_owned();
    }
    panic!("a sign-in refreshed within the idle time still ends 48 hours after it began");
}

#[tokio::test]
async fn deny_sends_access_denied_and_a_retry_succeeds() {
    let app = spawn_app().await;
    let (admin, _, _) = setup(&app).await;
    let client_id = public_client(&app).await;
    let browser = Browser::new(&app.base);
    let (_, challenge) = pkce();
    let url = authorize_url(&app, &client_id, "http://127.0.0.1:40001/callback", &challenge, &mcp_url(&app));
    let back = browser.authorize(&url, ANN, Decision::Deny, &[]).await;
    let q = query_of(&back);
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("access_denied", "st-1"));
    let (access, _) = sign_in(&app, &browser, &client_id).await;
    assert_eq!(status(&mcp_url(&app), Some(&access)).await.0, 200);
    // "Not you?" on the consent page ends the browser's session and starts the request again.
    let other_client = public_client(&app).await;
    let (_, challenge) = pkce();
    let url = authorize_url(&app, &other_client, "http://127.0.0.1:40001/callback", &challenge, &mcp_url(&app));
    let page = browser.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Use another account"), "{page}");
    let form = [("csrf_token", hidden(&page, "csrf_token")), ("return_to", hidden(&page, "return_to"))];
    let res =
        browser.http.post(format!("{}/oauth/authorize/switch-account", app.base)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let again = browser.absolute(res.headers()[LOCATION].to_str().unwrap());
    assert_eq!(again, url);
    let page = browser.http.get(&again).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in to mcpgate"), "signed out: {page}");
    // Both decisions are in the tenant's audit trail.
    let events = admin.get("/api/v1/tenants/acme/audit-events?limit=200").await.expect(200);
    let actions: Vec<&str> = events["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"oauth_consent.deny") && actions.contains(&"oauth_consent.approve"), "{actions:?}");
}

#[tokio::test]
async fn platform_admins_see_and_end_anyones_sign_ins() {
    let app = spawn_app().await;
    setup(&app).await;
    let client_id = public_client(&app).await;
    let browser = Browser::new(&app.base);
    let (access, _) = sign_in(&app, &browser, &client_id).await;
    let ann = app.signed_in(ANN.0, ANN.1).await;
    let ann_id = ann.get("/api/v1/me").await.expect(200)["user"]["id"].as_i64().unwrap();
    let path = format!("/api/v1/users/{ann_id}/authorizations");
    // A person cannot look at anyone's sign-ins through the admin route, not even their own.
    ann.get(&path).await.problem(403, "forbidden");
    let admin = app.admin().await;
    let list = admin.get(&path).await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["client_name"], "Test IDE");
    let id = list["items"][0]["id"].as_str().unwrap();
    ann.delete(&format!("{path}/{id}")).await.problem(403, "forbidden");
    admin.delete(&format!("/api/v1/users/{}/authorizations/{id}", ann_id + 1000)).await.problem(404, "not_found");
    admin.delete(&format!("{path}/{id}")).await.expect(204);
    proxy_answers_within_a_second(&app, &access, 401).await;
    assert_eq!(admin.get(&path).await.expect(200)["items"], json!([]));
    admin.delete(&format!("{path}/{id}")).await.problem(404, "not_found");
}

#[tokio::test]
async fn users_list_and_revoke_their_authorizations_and_clients_revoke_tokens() {
    let app = spawn_app().await;
    setup(&app).await;
    let client_id = public_client(&app).await;
    let browser = Browser::new(&app.base);
    let (access, _) = sign_in(&app, &browser, &client_id).await;
    let ann = app.signed_in(ANN.0, ANN.1).await;
    let list = ann.get("/api/v1/me/authorizations").await.expect(200);
    let item = &list["items"][0];
    assert_eq!(item["client_name"], "Test IDE");
    assert_eq!(item["resource"], mcp_url(&app));
    assert!(item["last_used_at"].is_string());
    assert!(list["next_cursor"].is_null());
    ann.delete(&format!("/api/v1/me/authorizations/{}", item["id"].as_str().unwrap())).await.expect(204);
    proxy_answers_within_a_second(&app, &access, 401).await;
    assert_eq!(ann.get("/api/v1/me/authorizations").await.expect(200)["items"], json!([]));
    ann.delete("/api/v1/me/authorizations/nope").await.problem(404, "not_found");
    // Revoked means asked again: the consent page comes back.
    let (_, challenge) = pkce();
    let url = authorize_url(&app, &client_id, "http://127.0.0.1:40002/callback", &challenge, &mcp_url(&app));
    let page = browser.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Allow access?"), "{page}");

    // RFC 7009 from the client: an access token, then a refresh token.
    let (access, refresh) = sign_in(&app, &browser, &client_id).await;
    let revoke = |token: String| {
        let base = app.base.clone();
        let client_id = client_id.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/oauth/revoke"))
                .form(&[("token", token.as_str()), ("client_id", &client_id)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(revoke(access.clone()).await, 200);
    proxy_answers_within_a_second(&app, &access, 401).await;
    assert_eq!(revoke(refresh.clone()).await, 200);
    let (code, _) =
        token_request(&app, &[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client_id)])
            .await;
    assert_eq!(code, 400);
    assert_eq!(revoke("not-a-token".into()).await, 200, "unknown tokens are not an error (RFC 7009)");
}

fn json_body(v: Value) -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "application/json")], v.to_string())
}

#[tokio::test]
async fn client_id_metadata_documents_are_fetched_with_an_ssrf_guard() {
    // A document served on loopback: allowed only when configured.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let doc_url = format!("http://127.0.0.1:{port}/client.json");
    let liar_url = format!("http://127.0.0.1:{port}/liar.json");
    let doc = doc_url.clone();
    let router = axum::Router::new()
        .route(
            "/client.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { json_body(json!({"client_id": doc, "client_name": "Doc Client", "redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"})) }
            }),
        )
        .route("/liar.json", axum::routing::get(move || async move { json_body(json!({"client_id": "https://someone-else.example/c.json", "redirect_uris": ["http://127.0.0.1/cb"]})) }));
    tokio::spawn(async move { axum::serve(listener, router).await });

    let guarded = spawn_app().await;
    setup(&guarded).await;
    let (_, challenge) = pkce();
    let url = authorize_url(&guarded, &doc_url, "http://127.0.0.1:40003/callback", &challenge, &mcp_url(&guarded));
    let res = Browser::new(&guarded.base).http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 400, "a loopback document is refused by default");
    assert!(res.text().await.unwrap().contains("client_id must be an https URL"));

    let app = spawn_app_with(|s| s.oauth_cimd_allow_private = true).await;
    setup(&app).await;
    let browser = Browser::new(&app.base);
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:40004/callback";
    let back = browser
        .authorize(&authorize_url(&app, &doc_url, redirect, &challenge, &mcp_url(&app)), ANN, Decision::Approve, &[])
        .await;
    let (code, body) = exchange(&app, &doc_url, redirect, &query_of(&back)["code"], &verifier).await;
    assert_eq!(code, 200, "{body}");
    // Redirect URIs come from the document; a document naming another client_id is refused.
    let res = browser
        .http
        .get(authorize_url(&app, &doc_url, "http://127.0.0.1:40004/elsewhere", &challenge, &mcp_url(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = browser
        .http
        .get(authorize_url(&app, &liar_url, "http://127.0.0.1:40004/cb", &challenge, &mcp_url(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("not the URL it was fetched from"));
}

/// Virtual account `ci` of `acme`, a user of `fixture`, and a token of it (the creation answer).
pub async fn ci_account(admin: &crate::helpers::Client) -> Value {
    admin
        .post(
            "/api/v1/tenants/acme/virtual-accounts",
            json!({"name": "ci", "permissions": [{"server": "fixture", "role": "user"}]}),
        )
        .await
        .expect(201);
    admin.post("/api/v1/tenants/acme/virtual-accounts/ci/tokens", json!({})).await.expect(201)
}

#[tokio::test]
async fn virtual_accounts_get_short_lived_jwts_with_client_credentials() {
    let app = spawn_app().await;
    let (admin, _, _) = setup(&app).await;
    let secret = ci_account(&admin).await["token"].as_str().unwrap().to_owned();
    let basic = |id: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", urlencode(id))))
    };
    let ask = |auth: String, resource: String| {
        let base = app.base.clone();
        async move {
            let res = reqwest::Client::new()
                .post(format!("{base}/oauth/token"))
                .header("authorization", auth)
                .form(&[("grant_type", "client_credentials"), ("resource", resource.as_str())])
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (code, body) = ask(basic("acme/ci"), mcp_url(&app)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    let jwt = body["access_token"].as_str().unwrap().to_owned();
    wait_for_policy(&app).await;
    assert_eq!(status(&mcp_url(&app), Some(&jwt)).await.0, 200);
    let (code, body) = ask(basic("acme/other"), mcp_url(&app)).await;
    assert_eq!((code, body["error"].as_str().unwrap()), (401, "invalid_client"));
    let (code, body) = ask(basic("acme/ci"), format!("{}/acme/mcp/nothere/server", app.base)).await;
    assert_eq!((code, body["error"].as_str().unwrap()), (400, "invalid_target"));
    let (code, body) = token_request(&app, &[("grant_type", "password"), ("client_id", "x")]).await;
    assert_eq!((code, body["error"].as_str().unwrap()), (400, "unsupported_grant_type"));
}

#[tokio::test]
async fn sign_in_chains_through_a_virtual_servers_per_user_key_step() {
    let app = spawn_app().await;
    let (admin, _, _) = setup(&app).await;
    let keyed = crate::guarded::start(crate::guarded::Guard::header("x-api-key", &[("ann-key", "ann")])).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "keyed", "display_name": "Keyed", "kind": "remote", "url": keyed.url,
                   "auth_data": {"type": "header", "auth_level": "per_user", "headers": {"x-api-key": "{{API_KEY}}"}}}),
        )
        .await
        .expect(201);
    admin
        .post("/api/v1/tenants/acme/servers", json!({"slug": "bundle", "display_name": "Bundle", "kind": "virtual", "servers": [{"server": "fixture", "enabled_tools": "all"}, {"server": "keyed", "enabled_tools": "all"}]}))
        .await
        .expect(201);
    // Through a virtual server a person reaches only the members they may use themselves.
    for server in ["bundle", "keyed"] {
        grant(&admin, server, "user:ann@example.com").await;
    }
    wait_for_policy(&app).await;
    let client_id = public_client(&app).await;
    let browser = Browser::new(&app.base);
    let bundle = format!("{}/acme/mcp/bundle/server", app.base);
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:40005/callback";
    let back = browser
        .authorize(
            &authorize_url(&app, &client_id, redirect, &challenge, &bundle),
            ANN,
            Decision::Approve,
            &[("API_KEY", "ann-key")],
        )
        .await;
    assert!(back.starts_with(redirect), "back at the client after the key step: {back}");
    let (code, body) = exchange(&app, &client_id, redirect, &query_of(&back)["code"], &verifier).await;
    assert_eq!(code, 200, "{body}");
    // The key was saved as ann's Auth Override: the keyed member's tools are there for her.
    let config = StreamableHttpClientTransportConfig::with_uri(bundle.clone())
        .auth_header(body["access_token"].as_str().unwrap());
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    let client =
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("t", "1")).serve(transport).await.unwrap();
    let names: Vec<String> = client.list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
    assert!(names.iter().any(|n| n.contains("whoami")), "{names:?}");
    client.cancel().await.unwrap();
    let overrides = admin.get("/api/v1/tenants/acme/servers/keyed/auth-overrides").await.expect(200);
    assert_eq!(overrides["items"][0]["values_set"], json!(["API_KEY"]), "{overrides}");
    // A browser whose session ends in the middle of the key step signs in again on the connect
    // page and still ends at the client.
    admin
        .send(reqwest::Method::DELETE, "/api/v1/tenants/acme/servers/keyed/auth-overrides/user:ann@example.com", None)
        .await
        .expect(204);
    let fresh = Browser::new(&app.base);
    let (_, challenge2) = pkce();
    let at_step = fresh
        .authorize_until(
            &authorize_url(&app, &client_id, redirect, &challenge2, &bundle),
            ANN,
            Decision::Approve,
            &[],
            |u| u.contains("/connect/acme/keyed"),
        )
        .await;
    assert!(at_step.contains("step=1&steps=1"), "the step knows its place in the sign-in: {at_step}");
    let page = fresh.http.get(&at_step).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Step 1 of 1 of your sign-in"), "{page}");
    let other_browser = Browser::new(&app.base);
    let back = other_browser.authorize(&at_step, ANN, Decision::Approve, &[("API_KEY", "ann-key")]).await;
    assert!(back.starts_with(redirect) && query_of(&back).contains_key("code"), "{back}");

    // A second sign-in skips the step it already did.
    let (_, challenge) = pkce();
    let res = browser.http.get(authorize_url(&app, &client_id, redirect, &challenge, &bundle)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()[LOCATION].to_str().unwrap().starts_with(redirect));
}

/// rmcp's own flow: discovery, registration, the authorization URL; the browser step; the code.
async fn rmcp_sign_in(app: &TestApp, browser: &Browser, redirect: &str) -> rmcp::transport::auth::AuthorizationManager {
    let url = mcp_url(app);
    // Discovery starts where a client's does: the proxy's 401 and its challenge.
    let (code, headers) = status(&url, None).await;
    assert_eq!(code, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap().to_owned();
    let mut oauth = OAuthState::new(url.as_str(), None).await.unwrap();
    let request = AuthorizationRequest::new(redirect).with_client_name("rmcp test client").with_challenge(challenge);
    oauth.start_authorization(request).await.unwrap();
    let authorization_url = oauth.get_authorization_url().await.unwrap();
    let q = query_of(&authorization_url);
    assert_eq!(q["resource"], url, "rmcp sends the MCP URL as resource");
    assert_eq!(q["code_challenge_method"], "S256");
    let back = browser.authorize(&authorization_url, ANN, Decision::Approve, &[]).await;
    oauth.handle_callback_url(&back).await.unwrap();
    oauth.into_authorization_manager().unwrap()
}

/// Acceptance: a real MCP client library does the whole flow — discovery from the 401,
/// dynamic registration, authorize with PKCE and resource, sign-in and Approve (headless), the
/// token, tools/call through the proxy, refresh, and a new sign-in after the old one expired.
#[tokio::test]
async fn the_rmcp_client_signs_in_calls_tools_refreshes_and_signs_in_again() {
    let app = spawn_app_with(|s| s.oauth_sign_in_idle_hours = 1).await;
    setup(&app).await;
    let browser = Browser::new(&app.base);
    let redirect = "http://127.0.0.1:40123/callback";
    let manager = rmcp_sign_in(&app, &browser, redirect).await;
    let auth_client = AuthClient::new(reqwest::Client::new(), manager);
    let call = |auth_client: AuthClient<reqwest::Client>| {
        let url = mcp_url(&app);
        async move {
            let transport = StreamableHttpClientTransport::with_client(
                auth_client,
                StreamableHttpClientTransportConfig::with_uri(url),
            );
            let client = ClientConfig::new(ClientCapabilities::default(), Implementation::new("rmcp-oauth", "1"))
                .serve(transport)
                .await?;
            let result = client
                .call_tool(
                    CallToolRequestParams::new("add")
                        .with_arguments(json!({"a": 20, "b": 22}).as_object().unwrap().clone()),
                )
                .await?;
            client.cancel().await.ok();
            Ok::<_, Box<dyn std::error::Error>>(serde_json::to_value(&result.content)?[0]["text"].clone())
        }
    };
    assert_eq!(call(auth_client.clone()).await.unwrap(), "42");
    // rmcp registered itself (RFC 7591) under its own name.
    let ann = app.signed_in(ANN.0, ANN.1).await;
    let listed = ann.get("/api/v1/me/authorizations").await.expect(200);
    assert_eq!(listed["items"][0]["client_name"], "rmcp test client", "{listed}");
    let first = auth_client.get_access_token().await.unwrap();
    auth_client.auth_manager.lock().await.refresh_token().await.expect("refresh");
    let second = auth_client.get_access_token().await.unwrap();
    assert_ne!(first, second, "refresh gave a new access token");
    assert_eq!(call(auth_client.clone()).await.unwrap(), "42");

    // The sign-in ends (idle for longer than an hour): refresh fails, the client signs in again.
    app.clock.advance(chrono::Duration::minutes(61));
    assert!(auth_client.auth_manager.lock().await.refresh_token().await.is_err(), "expired sign-in refuses refresh");
    let manager = rmcp_sign_in(&app, &browser, redirect).await;
    assert_eq!(call(AuthClient::new(reqwest::Client::new(), manager)).await.unwrap(), "42");
}

/// Acceptance: the TypeScript SDK's `auth()` against the same gateway (tests/peers/oauth-client.mjs):
/// the whole flow, a refresh, and a new sign-in once the first has expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_signs_in_calls_tools_refreshes_and_signs_in_again() {
    let app = spawn_app_with(|s| s.oauth_sign_in_idle_hours = 1).await;
    setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("client-state.json");
    let run = |phase: &str| {
        let output = std::process::Command::new("node")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oauth-client.mjs"))
            .args([phase, &mcp_url(&app), ANN.0, ANN.1, store.to_str().unwrap()])
            .output()
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(output.status.success(), "{phase}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };
    let out = tokio::task::block_in_place(|| run("first"));
    assert!(out.contains("registered mcpgate_client_"), "{out}");
    assert!(out.contains("tool result 42"), "{out}");
    assert!(out.contains("refreshed"), "{out}");
    app.clock.advance(chrono::Duration::minutes(61));
    let out = tokio::task::block_in_place(|| run("again"));
    assert!(out.contains("refresh refused"), "{out}");
    assert!(out.contains("signed in again"), "{out}");
    assert!(out.contains("tool result 42"), "{out}");
}

#[tokio::test]
async fn sign_in_chains_through_the_providers_own_consent_for_per_user_oauth() {
    let app = spawn_app().await;
    let (admin, _, _) = setup(&app).await;
    let provider = crate::guarded::start(crate::guarded::Guard::OAuth).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "oauthy", "display_name": "OAuthy", "kind": "remote", "url": provider.url,
                   "auth_data": {"type": "oauth2", "grant_type": "authorization_code"}}),
        )
        .await
        .expect(201);
    grant(&admin, "oauthy", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let client_id = public_client(&app).await;
    let browser = Browser::new(&app.base);
    let resource = format!("{}/acme/mcp/oauthy/server", app.base);
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:40006/callback";
    // After Approve the browser goes to the provider. Declining there still ends the sign-in at
    // the client (the server's tools will ask for the connection later)…
    let at_provider = browser
        .authorize(&authorize_url(&app, &client_id, redirect, &challenge, &resource), ANN, Decision::Approve, &[])
        .await;
    let upstream_state = query_of(&at_provider)["state"].clone();
    let declined =
        format!("{}/oauth/upstream/callback?error=access_denied&state={}", app.base, urlencode(&upstream_state));
    let back = browser.authorize(&declined, ANN, Decision::Approve, &[]).await;
    assert!(back.starts_with(redirect) && query_of(&back).contains_key("code"), "{back}");
    // …and the next sign-in offers the step again; this test provider approves at once and
    // sends the browser back to the gateway, which sends it on to the client.
    let at_provider = browser
        .authorize(&authorize_url(&app, &client_id, redirect, &challenge, &resource), ANN, Decision::Approve, &[])
        .await;
    assert!(at_provider.starts_with(&provider.url.replace("/mcp", "")), "{at_provider}");
    let res = browser.http.get(&at_provider).send().await.unwrap();
    let callback = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&format!("{}/oauth/upstream/callback", app.base)), "{callback}");
    let back = browser.authorize(&callback, ANN, Decision::Approve, &[]).await;
    assert!(back.starts_with(redirect), "{back}");
    let (code, body) = exchange(&app, &client_id, redirect, &query_of(&back)["code"], &verifier).await;
    assert_eq!(code, 200, "{body}");
    let ann = app.signed_in(ANN.0, ANN.1).await;
    let connections = ann.get("/api/v1/me/connections").await.expect(200);
    assert_eq!(connections["items"][0]["server"], "oauthy");
    assert_eq!(connections["items"][0]["status"], "authenticated");
    // The upstream answers ann with the token the provider gave her.
    let config =
        StreamableHttpClientTransportConfig::with_uri(resource).auth_header(body["access_token"].as_str().unwrap());
    let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    let client =
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("t", "1")).serve(transport).await.unwrap();
    let result = client.call_tool(CallToolRequestParams::new("whoami")).await.unwrap();
    assert!(serde_json::to_value(&result.content).unwrap()[0]["text"].as_str().unwrap().contains("upstream-user-1"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn revocations_travel_in_snapshots_until_the_tokens_expire_then_are_forgotten() {
    use mcpgate::auth::oauth_server::grants;
    let app = spawn_app().await;
    setup(&app).await;
    let client_id = public_client(&app).await;
    let (_, refresh) = sign_in(&app, &Browser::new(&app.base), &client_id).await;
    let revoked = reqwest::Client::new()
        .post(format!("{}/oauth/revoke", app.base))
        .form(&[("token", refresh.as_str()), ("client_id", &client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    wait_for_policy(&app).await;
    assert_eq!(
        app.state.policy.current().unwrap().snapshot.revoked_gateway_tokens.len(),
        1,
        "the sign-in's id is listed"
    );
    // Once its last access token has expired (1 hour) the id need not travel any more, and a day
    // later the sign-in itself is purged.
    app.clock.advance(chrono::Duration::hours(25));
    assert!(grants::revoked_ids(&app.state.db, app.clock.now()).await.unwrap().is_empty());
    assert!(grants::purge(&app.state.db, app.clock.now()).await.unwrap() >= 1);
    // A client that registered and was never approved goes after a week; an approved one stays.
    let (_, idle) =
        register(&app, json!({"redirect_uris": ["https://idle.example/cb"], "token_endpoint_auth_method": "none"}))
            .await;
    app.clock.advance(chrono::Duration::days(8));
    grants::purge(&app.state.db, app.clock.now()).await.unwrap();
    let known = |id: String| {
        let db = app.state.db.clone();
        let now = app.clock.now();
        async move { mcpgate::auth::oauth_server::clients::find(&db, &id, false, now).await.is_ok() }
    };
    assert!(!known(idle["client_id"].as_str().unwrap().to_owned()).await);
    assert!(known(client_id.clone()).await);
    let ann = app.signed_in(ANN.0, ANN.1).await;
    assert_eq!(ann.get("/api/v1/me/authorizations").await.expect(200)["items"], json!([]));
}

#[tokio::test]
async fn a_replica_accepts_gateway_tokens_and_drops_revoked_ones_within_a_second() {
    let app = spawn_app().await;
    setup(&app).await;
    let client_id = public_client(&app).await;
    let (access, _) = sign_in(&app, &Browser::new(&app.base), &client_id).await;
    let (base, _) = crate::gateway::running_replica(&app).await;
    let url = format!("{base}/acme/mcp/fixture/server");
    assert_eq!(status(&url, Some(&access)).await.0, 200, "the replica takes the gateway's token");
    let ann = app.signed_in(ANN.0, ANN.1).await;
    let id = ann.get("/api/v1/me/authorizations").await.expect(200)["items"][0]["id"].as_str().unwrap().to_owned();
    ann.delete(&format!("/api/v1/me/authorizations/{id}")).await.expect(204);
    let revoked = Instant::now();
    while status(&url, Some(&access)).await.0 != 401 {
        assert!(revoked.elapsed() < Duration::from_secs(1), "the replica still took a revoked token after a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_address_cannot_fill_the_client_table() {
    let app = spawn_app().await;
    let body = json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"});
    // 30 at once, then one more every 2 s: on a loaded machine the burst itself may take long
    // enough to earn one or two more.
    let started = Instant::now();
    let mut accepted = 0u64;
    let res = loop {
        let res = reqwest::Client::new().post(format!("{}/oauth/register", app.base)).json(&body).send().await.unwrap();
        if res.status() == 429 {
            break res;
        }
        assert_eq!(res.status(), 201);
        accepted += 1;
        assert!(accepted <= 60, "one address registered 60 clients without being refused");
    };
    let earned = started.elapsed().as_secs() / 2 + 1;
    assert!((30..=30 + earned).contains(&accepted), "{accepted} registrations before the first refusal");
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&wait), "30 a minute: the next one comes within 2 s, got {wait}");
}
