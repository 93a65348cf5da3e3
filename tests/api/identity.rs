//! Identity providers against a real OpenID Provider (`oidc-provider`, npm, on loopback): SSO on
//! the authorize page and for the platform, just-in-time users, domains, verified emails,
//! groups to teams, invitations, SSO-mandatory domains.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use reqwest::header::LOCATION;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Client, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::oauth::{authorize_url, pkce, public_client, query_of, unescape, Browser, Decision};
use crate::peers;

const SECRET: &str = "corp-client-secret-0123456789";
/// Where the provider sends `cli`'s codes: never contacted, the test reads the redirect.
const CLI_REDIRECT: &str = "http://127.0.0.1:9/cb";

/// A running OpenID Provider, killed on drop.
pub struct Op {
    child: Child,
    pub issuer: String,
    accounts: tempfile::NamedTempFile,
}

impl Op {
    /// Changes what the provider says about people from their next sign-in on.
    pub fn set_accounts(&self, accounts: &Value) {
        std::fs::write(self.accounts.path(), accounts.to_string()).unwrap();
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the provider with one confidential client `gw` whose redirect URI is the gateway's,
/// and the given accounts (login -> claims).
pub fn op(app: &TestApp, accounts: Value) -> Op {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    op_on(app, accounts, port, "k1")
}

/// The provider on `port`, signing with a new key `key_id`. Besides `gw` it knows `cli` (a
/// client that gets ID tokens for people, audience `cli`) and `ci-bot` (client credentials,
/// JWT access tokens).
pub fn op_on(app: &TestApp, accounts: Value, port: u16, key_id: &str) -> Op {
    let entry = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oidc-provider.mjs");
    let clients = json!([{
        "client_id": "gw",
        "client_secret": SECRET,
        "redirect_uris": [format!("{}/oauth/sso/callback", app.base)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }, {
        "client_id": "cli",
        "client_secret": SECRET,
        "redirect_uris": [CLI_REDIRECT],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }, {
        "client_id": "ci-bot",
        "client_secret": SECRET,
        "redirect_uris": [],
        "grant_types": ["client_credentials"],
        "response_types": [],
    }]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), accounts.to_string()).unwrap();
    #[allow(clippy::zombie_processes)] // Op's Drop kills and waits for it
    let mut child = Command::new("node")
        .arg(entry)
        .env("PORT", port.to_string())
        .env("CLIENTS", clients.to_string())
        .env("ACCOUNTS_FILE", file.path())
        .env("KEY_ID", key_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node is installed");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening"), "oidc-provider did not start: {line}");
    // Keep reading: a closed pipe would stop the provider at its next line of output.
    std::thread::spawn(move || for _ in out.lines() {});
    Op { child, issuer: format!("http://127.0.0.1:{port}"), accounts: file }
}

fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@corp.example", "email_verified": true, "name": "Alice", "groups": ["eng", "staff"]},
        "bob": {"email": "bob@corp.example", "email_verified": false},
        "eve": {"email": "eve@elsewhere.example", "email_verified": true},
        "carol": {"email": "carol@corp.example", "email_verified": true},
        "frank": {"email": "frank@partner.example", "email_verified": true},
        "root": {"email": ADMIN_EMAIL, "email_verified": true},
    })
}

fn corp_idp(op: &Op) -> Value {
    json!({
        "slug": "corp",
        "display_name": "Corp SSO",
        "issuer": op.issuer,
        "client_id": "gw",
        "client_secret": SECRET,
        "scopes": ["openid", "email", "profile", "groups"],
        "allowed_domains": ["corp.example"],
        "groups_claim": "groups",
        "group_teams": {"eng": "engineers"},
    })
}

/// Answers one of the provider's own pages at `current`: its login form (as `login`, any
/// password), else its consent form. Returns the provider's answer and where it was sent.
async fn answer_provider_page(
    browser: &Browser,
    current: &url::Url,
    body: &str,
    login: &str,
) -> (reqwest::Response, url::Url) {
    let start = body.find("action=\"").unwrap_or_else(|| panic!("{current}: {body}")) + 8;
    let action = current.join(&unescape(&body[start..start + body[start..].find('"').unwrap()])).unwrap();
    let form: Vec<(&str, &str)> = if body.contains("name=\"login\"") {
        vec![("prompt", "login"), ("login", login), ("password", "any-password")]
    } else {
        vec![("prompt", "consent")]
    };
    (browser.http.post(action.clone()).form(&form).send().await.unwrap(), action)
}

/// Follows a gateway link through the provider's login (as `login`) and consent until the
/// gateway's callback answers: its redirect (status, location), or the page it shows
/// (status, the URL, the body).
async fn through_provider(
    browser: &Browser,
    app: &TestApp,
    op: &Op,
    start: &str,
    login: &str,
) -> (u16, String, String) {
    let mut current = url::Url::parse(&app.base).unwrap().join(start).unwrap();
    let mut res = browser.http.get(current.clone()).send().await.unwrap();
    for _ in 0..30 {
        let status = res.status().as_u16();
        let at_callback = current.path() == "/oauth/sso/callback";
        if res.status().is_redirection() {
            let location = current.join(res.headers()[LOCATION].to_str().unwrap()).unwrap();
            if at_callback {
                return (status, location.to_string(), String::new());
            }
            current = location;
            res = browser.http.get(current.clone()).send().await.unwrap();
            continue;
        }
        let body = res.text().await.unwrap();
        if !current.as_str().starts_with(&op.issuer) {
            return (status, current.to_string(), body);
        }
        (res, current) = answer_provider_page(browser, &current, &body, login).await;
    }
    panic!("the sign-in did not end");
}

/// The first "Continue with" link of a page.
fn continue_link(page: &str) -> String {
    let marker = page.find("Continue with").unwrap_or_else(|| panic!("no SSO button: {page}"));
    let href = page[..marker].rfind("href=\"").unwrap() + 6;
    unescape(&page[href..href + page[href..].find('"').unwrap()])
}

async fn acme_with_engineers(app: &TestApp, admin: &Client) {
    admin.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);
    admin
        .post("/api/v1/tenants/acme/teams", json!({"slug": "engineers", "display_name": "Engineers"}))
        .await
        .expect(201);
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "fixture", "display_name": "F", "kind": "remote", "url": peers::rmcp_upstream().await}),
        )
        .await
        .expect(201);
    admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/fixture/collaborators",
            Some(json!({"subject": "team:engineers", "role": "user"})),
        )
        .await
        .expect(201);
    let _ = app;
}

fn emails(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn sso_on_the_authorize_page_creates_people_just_in_time_with_teams_from_groups() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    acme_with_engineers(&app, &admin).await;
    let op = op(&app, accounts());

    // Registration: the secret is write-only, the redirect URI to register is given.
    let idp = admin.post("/api/v1/tenants/acme/identity-providers", corp_idp(&op)).await.expect(201);
    assert_eq!(idp["redirect_uri"], format!("{}/oauth/sso/callback", app.base));
    assert_eq!(idp["has_client_secret"], true);
    assert!(!idp.to_string().contains(SECRET));
    let tested = admin.post("/api/v1/tenants/acme/identity-providers/corp/test", json!({})).await.expect(200);
    assert_eq!(tested["issuer"], op.issuer);
    assert!(tested["keys"].as_u64().unwrap() >= 1);

    // An MCP client asks to connect; the sign-in page offers the tenant's provider.
    let client_id = public_client(&app).await;
    let (verifier, challenge) = pkce();
    let resource = format!("{}/acme/mcp/fixture/server", app.base);
    let redirect = "http://127.0.0.1:40000/callback";
    let authorize = authorize_url(&app, &client_id, redirect, &challenge, &resource);
    let browser = Browser::new(&app.base);
    let page = browser.http.get(&authorize).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Continue with Corp SSO"), "{page}");
    let (status, location, _) = through_provider(&browser, &app, &op, &continue_link(&page), "alice").await;
    // Back at the gateway, signed in: the same consent page a password sign-in leads to.
    assert_eq!(status, 303);
    assert_eq!(location, authorize);
    let consent = browser.http.get(&location).send().await.unwrap().text().await.unwrap();
    assert!(consent.contains("action=\"/oauth/authorize/decision\""), "{consent}");
    let back = browser.authorize(&authorize, ("unused", "unused"), Decision::Approve, &[]).await;
    let code = query_of(&back)["code"].clone();
    let (status, tokens) = crate::oauth::exchange(&app, &client_id, redirect, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    // The token works at the proxy: alice is in `engineers` through her `eng` group.
    let mcp = reqwest::Client::new()
        .post(&resource)
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(mcp.status(), 200);

    let members = admin.get("/api/v1/tenants/acme/members").await.expect(200);
    assert!(emails(&members).contains(&"alice@corp.example".to_owned()));
    let team = admin.get("/api/v1/tenants/acme/teams/engineers/members").await.expect(200);
    assert_eq!(emails(&team), ["alice@corp.example"]);
    let audit = admin.get("/api/v1/tenants/acme/audit-events?action=user.create").await.expect(200);
    assert_eq!(audit["items"][0]["details"]["just_in_time"], true);

    // Groups are followed at every sign-in: without `eng`, alice leaves `engineers`.
    let mut moved = accounts();
    moved["alice"]["groups"] = json!(["staff"]);
    op.set_accounts(&moved);
    let again = Browser::new(&app.base);
    let start = "/oauth/sso/start?tenant=acme&idp=corp&return_to=%2F";
    let (status, location, _) = through_provider(&again, &app, &op, start, "alice").await;
    assert_eq!((status, location), (303, format!("{}/", app.base)));
    let team = admin.get("/api/v1/tenants/acme/teams/engineers/members").await.expect(200);
    assert!(emails(&team).is_empty(), "{team}");
}

#[tokio::test]
async fn sso_refusals_have_their_own_codes_in_the_page_and_the_audit_trail() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    acme_with_engineers(&app, &admin).await;
    let op = op(&app, accounts());
    admin.post("/api/v1/tenants/acme/identity-providers", corp_idp(&op)).await.expect(201);
    // carol has a password account the provider did not create: the tenant's provider cannot
    // take it over, whatever email it asserts.
    app.user(&admin, "carol@corp.example").await;
    let start = "/oauth/sso/start?tenant=acme&idp=corp&return_to=%2F";
    for (login, code) in
        [("bob", "unverified_email"), ("eve", "domain_not_allowed"), ("carol", "not_vouched"), ("root", "not_vouched")]
    {
        let (status, _, page) = through_provider(&Browser::new(&app.base), &app, &op, start, login).await;
        assert_eq!(status, 403, "{login}: {page}");
        assert!(page.contains(&format!("<code>{code}</code>")), "{login}: {page}");
    }
    let audit = admin.get("/api/v1/tenants/acme/audit-events?action=user.sign_in").await.expect(200);
    let outcomes: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["not_vouched", "not_vouched", "domain_not_allowed", "unverified_email"]);
    // Nobody was created or added.
    let members = admin.get("/api/v1/tenants/acme/members").await.expect(200);
    assert_eq!(emails(&members), [ADMIN_EMAIL]);
    // A flow not started in this browser is refused.
    let stray = Browser::new(&app.base);
    let res = stray.http.get(format!("{}/oauth/sso/callback?code=x&state=y", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn providers_are_validated_and_only_tenant_admins_manage_them() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    acme_with_engineers(&app, &admin).await;
    let member = app.user(&admin, "m@example.com").await;
    admin.post("/api/v1/tenants/acme/members", json!({"email": "m@example.com", "role": "member"})).await.expect(201);
    let bad = json!({"slug": "x", "display_name": "X", "issuer": "not a url", "client_id": "gw",
        "scopes": ["email"], "group_teams": {"eng": "nope"}, "allowed_domains": ["not a domain"]});
    let reply = admin.post("/api/v1/tenants/acme/identity-providers", bad).await;
    let mut fields = reply.error_fields();
    fields.sort();
    assert_eq!(fields, ["allowed_domains[0]", "group_teams.eng", "issuer", "scopes"]);
    reply.problem(422, "validation_failed");
    let ok = json!({"slug": "corp", "display_name": "Corp", "issuer": "https://idp.corp.example", "client_id": "gw"});
    member.post("/api/v1/tenants/acme/identity-providers", ok.clone()).await.problem(403, "forbidden");
    admin.post("/api/v1/tenants/acme/identity-providers", ok.clone()).await.expect(201);
    admin.post("/api/v1/tenants/acme/identity-providers", ok).await.problem(409, "already_exists");
    let changed =
        admin.patch("/api/v1/tenants/acme/identity-providers/corp", json!({"accept_jwt": true})).await.expect(200);
    assert_eq!((changed["accept_jwt"].as_bool(), changed["login"].as_bool()), (Some(true), Some(true)));
    // The test names what failed: here the egress policy of a default gateway would let it
    // through, but the name does not resolve.
    admin.post("/api/v1/tenants/acme/identity-providers/corp/test", json!({})).await.problem(503, "unavailable");
    admin.delete("/api/v1/tenants/acme/identity-providers/corp").await.expect(204);
    admin.get("/api/v1/tenants/acme/identity-providers/corp").await.problem(404, "not_found");
}

#[tokio::test]
async fn an_sso_mandatory_domain_refuses_passwords_and_points_to_its_provider() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    acme_with_engineers(&app, &admin).await;
    let op = op(&app, accounts());
    let mut body = corp_idp(&op);
    body["sso_required"] = json!(true);
    admin.post("/api/v1/tenants/acme/identity-providers", body).await.expect(201);
    let dora = json!({"email": "dora@corp.example", "display_name": "Dora", "password": "pw-dora@corp.example-secret"});
    admin.post("/api/v1/users", dora).await.expect(201);
    let refused = Client::new(&app.base)
        .post("/api/v1/auth/login", json!({"email": "dora@corp.example", "password": "pw-dora@corp.example-secret"}))
        .await
        .problem(403, "sso_required");
    assert!(refused["detail"].as_str().unwrap().contains("/oauth/sso/start?tenant=acme&idp=corp"), "{refused}");
    // Other domains keep their passwords.
    let mut root = Client::new(&app.base);
    root.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.expect(200);
    // Home-realm discovery names the provider, and that it is required.
    let found = Client::new(&app.base).get("/api/v1/auth/providers?email=dora%40corp.example").await.expect(200);
    assert_eq!(found["items"][0]["slug"], "corp");
    assert_eq!(found["items"][0]["required"], true);
}

#[tokio::test]
async fn invitations_are_accepted_by_password_and_by_sso_once() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    acme_with_engineers(&app, &admin).await;
    let op = op(&app, accounts());
    admin.post("/api/v1/tenants/acme/identity-providers", corp_idp(&op)).await.expect(201);

    // By password: an existing account.
    app.user(&admin, "dan@example.com").await;
    let invited = admin
        .post("/api/v1/tenants/acme/invitations", json!({"email": "dan@example.com", "role": "member"}))
        .await
        .expect(201);
    let url = invited["url"].as_str().unwrap().to_owned();
    assert_eq!(invited["status"], "pending");
    let listed = admin.get("/api/v1/tenants/acme/invitations").await.expect(200);
    assert!(listed["items"][0].get("url").is_none(), "the link is shown once");
    let browser = Browser::new(&app.base);
    let page = browser.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("dan@example.com") && page.contains("Continue with Corp SSO"), "{page}");
    let form = [
        ("token", crate::oauth::hidden(&page, "token")),
        ("form_token", crate::oauth::hidden(&page, "form_token")),
        ("email", "dan@example.com".to_owned()),
        ("password", "pw-dan@example.com-secret".to_owned()),
    ];
    let done = browser.http.post(format!("{}/invitations/accept", app.base)).form(&form).send().await.unwrap();
    assert_eq!(done.status(), 200);
    // The link works once.
    let again = browser.http.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 404);

    // By SSO: someone outside the provider's domains, invited as admin, created on acceptance.
    let invited = admin
        .post("/api/v1/tenants/acme/invitations", json!({"email": "frank@partner.example", "role": "admin"}))
        .await
        .expect(201);
    let url = invited["url"].as_str().unwrap().to_owned();
    let browser = Browser::new(&app.base);
    let page = browser.http.get(&url).send().await.unwrap().text().await.unwrap();
    let (status, location, _) = through_provider(&browser, &app, &op, &continue_link(&page), "frank").await;
    assert_eq!((status, location), (303, format!("{}/", app.base)));
    let members = admin.get("/api/v1/tenants/acme/members").await.expect(200);
    let roles: Vec<(String, String)> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    assert!(roles.contains(&("dan@example.com".into(), "member".into())), "{roles:?}");
    assert!(roles.contains(&("frank@partner.example".into(), "admin".into())), "{roles:?}");
    // A revoked invitation's link stops working.
    let third = admin
        .post("/api/v1/tenants/acme/invitations", json!({"email": "gina@example.com", "role": "member"}))
        .await
        .expect(201);
    admin.delete(&format!("/api/v1/tenants/acme/invitations/{}", third["id"].as_str().unwrap())).await.expect(204);
    let res = Browser::new(&app.base).http.get(third["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let listed = admin.get("/api/v1/tenants/acme/invitations").await.expect(200);
    let statuses: Vec<&str> =
        listed["items"].as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["revoked", "accepted", "accepted"]);
}

#[tokio::test]
async fn the_platform_provider_signs_admins_in_to_the_console() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let op = op(&app, accounts());
    let body = json!({"slug": "staff", "display_name": "Staff SSO", "issuer": op.issuer, "client_id": "gw",
        "client_secret": SECRET, "allowed_domains": ["example.com"]});
    admin.post("/api/v1/identity-providers", body).await.expect(201);
    let offered = Client::new(&app.base).get("/api/v1/auth/providers?return_to=%2F").await.expect(200);
    assert_eq!(offered["items"][0]["display_name"], "Staff SSO");
    let start = offered["items"][0]["start_url"].as_str().unwrap().to_owned();
    let browser = Browser::new(&app.base);
    let (status, location, _) = through_provider(&browser, &app, &op, &start, "root").await;
    assert_eq!((status, location), (303, format!("{}/", app.base)));
    // The browser now holds a session of the platform admin.
    let me = browser.http.get(format!("{}/api/v1/me", app.base)).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["user"]["email"], ADMIN_EMAIL);
}

/// An ID token of the provider for `login`, issued to `cli` (code flow with PKCE).
async fn id_token(op: &Op, login: &str) -> String {
    let browser = Browser::new(&op.issuer);
    let (verifier, challenge) = pkce();
    let mut current = url::Url::parse(&format!(
        "{}/auth?client_id=cli&response_type=code&scope=openid%20email&redirect_uri={}&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        op.issuer,
        crate::oauth::urlencode(CLI_REDIRECT)
    ))
    .unwrap();
    let mut res = browser.http.get(current.clone()).send().await.unwrap();
    let code = loop {
        if res.status().is_redirection() {
            let location = current.join(res.headers()[LOCATION].to_str().unwrap()).unwrap();
            if location.as_str().starts_with(CLI_REDIRECT) {
                break query_of(location.as_str())["code"].clone();
            }
            current = location;
            res = browser.http.get(current.clone()).send().await.unwrap();
            continue;
        }
        let body = res.text().await.unwrap();
        (res, current) = answer_provider_page(&browser, &current, &body, login).await;
    };
    let tokens: Value = reqwest::Client::new()
        .post(format!("{}/token", op.issuer))
        .basic_auth("cli", Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CLI_REDIRECT),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["id_token"].as_str().unwrap_or_else(|| panic!("{tokens}")).to_owned()
}

/// A JWT access token of the provider for the machine client `ci-bot`.
async fn machine_token(op: &Op) -> String {
    let tokens: Value = reqwest::Client::new()
        .post(format!("{}/token", op.issuer))
        .basic_auth("ci-bot", Some(SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "mcp")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().unwrap_or_else(|| panic!("{tokens}")).to_owned()
}

/// `initialize` at an MCP URL with a bearer token: the status and the body.
async fn initialize(url: &str, token: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The API's answer to `GET /api/v1/me` with a bearer token.
async fn me(app: &TestApp, token: &str) -> (u16, Value) {
    let res = reqwest::Client::new().get(format!("{}/api/v1/me", app.base)).bearer_auth(token).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Tenant `acme` with the provider `corp` accepting JWTs for audience `cli` and mapping
/// `ci-bot` to the virtual account `ci`; alice signed up through it once (so it vouches for
/// her) and may use `fixture`.
async fn jwt_setup(app: &TestApp, admin: &Client, op: &Op) {
    acme_with_engineers(app, admin).await;
    admin
        .post(
            "/api/v1/tenants/acme/virtual-accounts",
            json!({"name": "ci", "permissions": [{"server": "fixture", "role": "user"}]}),
        )
        .await
        .expect(201);
    let mut body = corp_idp(op);
    body["accept_jwt"] = json!(true);
    body["audiences"] = json!(["cli", "https://mcp.example.test/"]);
    body["virtual_accounts"] = json!([{"claims": {"client_id": "ci-bot"}, "virtual_account": "ci"}]);
    admin.post("/api/v1/tenants/acme/identity-providers", body).await.expect(201);
    let start = "/oauth/sso/start?tenant=acme&idp=corp&return_to=%2F";
    let (status, _, _) = through_provider(&Browser::new(&app.base), app, op, start, "alice").await;
    assert_eq!(status, 303);
    admin.post("/api/v1/tenants/acme/identity-providers/corp/test", json!({})).await.expect(200);
    // The in-process proxy holds the snapshot with the provider's keys from here on.
    app.state.current_policy().await.unwrap();
}

#[tokio::test]
async fn idp_jwts_are_accepted_by_the_api_and_the_proxy_and_each_refusal_says_why() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let op = op(&app, accounts());
    jwt_setup(&app, &admin, &op).await;
    let url = format!("{}/acme/mcp/fixture/server", app.base);

    let alice = id_token(&op, "alice").await;
    let (status, body) = me(&app, &alice).await;
    assert_eq!((status, body["user"]["email"].as_str()), (200, Some("alice@corp.example")), "{body}");
    assert_eq!(initialize(&url, &alice).await.0, 200);
    // A machine token maps to the virtual account by its claims.
    let bot = machine_token(&op).await;
    let servers = Client::with_token(&app.base, &bot).get("/api/v1/tenants/acme/servers").await.expect(200);
    assert_eq!(servers["items"][0]["slug"], "fixture");
    assert_eq!(initialize(&url, &bot).await.0, 200);

    // Each refusal, distinct on the API and at the proxy.
    let refused = |code: &'static str| {
        move |(status, body): (u16, Value)| {
            assert_eq!((status, body["code"].as_str()), (401, Some(code)), "{body}");
        }
    };
    // Not this gateway's audience: `gw`'s ID tokens are for the gateway's SSO only.
    let other_op = self::op(&app, accounts());
    let stranger = id_token(&other_op, "alice").await;
    refused("jwt_unknown_issuer")(me(&app, &stranger).await);
    let (status, body) = initialize(&url, &stranger).await;
    assert_eq!(status, 401);
    assert!(body.contains("jwt_unknown_issuer"), "{body}");
    // Someone the provider did not sign up through the gateway (and no account at all).
    let eve = id_token(&op, "eve").await;
    refused("jwt_unmapped_subject")(me(&app, &eve).await);
    assert!(initialize(&url, &eve).await.1.contains("jwt_unmapped_subject"));
    // A tampered token.
    let mut parts: Vec<String> = alice.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    refused("jwt_invalid")(me(&app, &parts.join(".")).await);
    // Later than its expiry (and its leeway).
    app.clock.advance(chrono::Duration::hours(2));
    refused("jwt_expired")(me(&app, &alice).await);
    assert!(initialize(&url, &alice).await.1.contains("jwt_expired"));
    app.clock.advance(chrono::Duration::hours(-4));
    refused("jwt_not_yet_valid")(me(&app, &alice).await);
    app.clock.advance(chrono::Duration::hours(2));
    // A disabled user stops at once on the API and with the next snapshot at the proxy.
    let users = admin.get("/api/v1/users?limit=200").await.expect(200);
    let id =
        users["items"].as_array().unwrap().iter().find(|u| u["email"] == "alice@corp.example").unwrap()["id"].clone();
    admin.patch(&format!("/api/v1/users/{id}"), json!({"disabled": true})).await.expect(200);
    refused("jwt_user_disabled")(me(&app, &alice).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !initialize(&url, &alice).await.1.contains("jwt_user_disabled") {
        assert!(std::time::Instant::now() < deadline, "the proxy still took a disabled user's token");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The proxy's refusals are in the audit trail with their reasons.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let audit = admin.get("/api/v1/tenants/acme/audit-events?action=mcp.request&limit=200").await.expect(200);
    let reasons: std::collections::BTreeSet<String> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["details"]["reason"].as_str().map(str::to_owned))
        .collect();
    for reason in ["jwt_expired", "jwt_unmapped_subject", "jwt_user_disabled"] {
        assert!(reasons.contains(reason), "{reason} not in {reasons:?}");
    }
    // The API's refusals are platform events (no tenant is known yet), each with its code.
    use mcpgate::store::entities::audit_events;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let api_refusals: std::collections::BTreeSet<String> = audit_events::Entity::find()
        .filter(audit_events::Column::Action.eq("auth.jwt_rejected"))
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    let want: std::collections::BTreeSet<String> = [
        "jwt_unknown_issuer",
        "jwt_unmapped_subject",
        "jwt_invalid",
        "jwt_expired",
        "jwt_not_yet_valid",
        "jwt_user_disabled",
    ]
    .map(String::from)
    .into();
    assert_eq!(api_refusals, want);
}

#[tokio::test]
async fn a_replica_verifies_idp_jwts_follows_key_rotation_and_outlives_the_provider() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let first = op_on(&app, accounts(), port, "k1");
    jwt_setup(&app, &admin, &first).await;
    let (replica, _) = crate::gateway::running_replica(&app).await;
    let url = format!("{replica}/acme/mcp/fixture/server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let alice = id_token(&first, "alice").await;
    while initialize(&url, &alice).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the replica did not take the provider's token");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The provider rotates to a new key: the replica fetches it on the first token that
    // names it, with no change at the control plane.
    drop(first);
    let second = op_on(&app, accounts(), port, "k2");
    let rotated = id_token(&second, "alice").await;
    assert_eq!(mcpgate::policy::idp::peek(&rotated).unwrap().1.as_deref(), Some("k2"));
    let (status, body) = initialize(&url, &rotated).await;
    assert_eq!(status, 200, "{body}");
    // The provider goes away: keys already fetched keep valid tokens working.
    drop(second);
    let (status, body) = initialize(&url, &rotated).await;
    assert_eq!(status, 200, "{body}");
    // A token signed with a key nobody published is refused as such.
    let third = op_on(&app, accounts(), port, "k3");
    let unknown = id_token(&third, "alice").await;
    drop(third);
    let (status, body) = initialize(&url, &unknown).await;
    assert_eq!(status, 401);
    assert!(body.contains("jwt_unknown_key"), "{body}");
}

#[tokio::test]
async fn passthrough_forwards_the_callers_idp_jwt_and_nothing_else() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let op = op(&app, accounts());
    jwt_setup(&app, &admin, &op).await;
    // An upstream that trusts the organisation's provider and checks the token itself.
    let upstream = peers::jwt_guarded_upstream(op.issuer.clone(), "cli".into()).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "private", "display_name": "P", "kind": "remote", "url": upstream, "auth_data": {"type": "passthrough"}}),
        )
        .await
        .expect(201);
    admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/private/collaborators",
            Some(json!({"subject": "team:everyone", "role": "user"})),
        )
        .await
        .expect(201);
    app.state.current_policy().await.unwrap();
    let url = format!("{}/acme/mcp/private/server", app.base);
    let alice = id_token(&op, "alice").await;
    let http = reqwest::Client::new();
    let post = |body: Value, session: Option<&str>| {
        let mut request = http
            .post(&url)
            .bearer_auth(&alice)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200, "{:?}", init.headers());
    let session = init.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), Some(&session)).await.unwrap();
    // A call with the same token reaches the tool through the upstream's own check.
    let call = http
        .post(&url)
        .bearer_auth(&alice)
        .header("mcp-session-id", &session)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "through"}}}))
        .send()
        .await
        .unwrap();
    let text = call.text().await.unwrap();
    assert!(text.contains("through"), "{text}");
    // The gateway's own tokens are never forwarded: the gateway says what the server needs.
    admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/private/collaborators",
            Some(json!({"subject": "virtualaccount:ci", "role": "user"})),
        )
        .await
        .expect(201);
    let token = admin.post("/api/v1/tenants/acme/virtual-accounts/ci/tokens", json!({})).await.expect(201);
    app.state.current_policy().await.unwrap();
    let (status, body) = initialize(&url, token["token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("identity-provider token"), "{body}");
}

#[tokio::test]
async fn a_tenants_provider_cannot_be_used_to_get_around_the_gateway() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let op = op(&app, accounts());
    jwt_setup(&app, &admin, &op).await;
    // Another tenant whose admin points a provider at the same issuer cannot use it to act as
    // the platform admin or as acme's people.
    admin.post("/api/v1/tenants", json!({"slug": "evil", "display_name": "Evil"})).await.expect(201);
    admin
        .post(
            "/api/v1/tenants/evil/servers",
            json!({"slug": "mine", "display_name": "M", "kind": "remote", "url": peers::rmcp_upstream().await}),
        )
        .await
        .expect(201);
    let mut body = corp_idp(&op);
    body["accept_jwt"] = json!(true);
    body["audiences"] = json!(["cli"]);
    body["group_teams"] = json!({});
    body["allowed_domains"] = json!(["example.com", "corp.example"]);
    admin.post("/api/v1/tenants/evil/identity-providers", body).await.expect(201);
    admin.post("/api/v1/tenants/evil/identity-providers/corp/test", json!({})).await.expect(200);
    app.state.current_policy().await.unwrap();
    let root = id_token(&op, "root").await;
    let (status, body) = me(&app, &root).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("jwt_unmapped_subject")), "{body}");
    // alice's token (vouched for by acme's provider) reaches acme, not evil's servers.
    let alice = id_token(&op, "alice").await;
    assert_eq!(initialize(&format!("{}/acme/mcp/fixture/server", app.base), &alice).await.0, 200);
    // At evil's servers only evil's providers (and the platform's) are asked: none vouches.
    let (status, body) = initialize(&format!("{}/evil/mcp/mine/server", app.base), &alice).await;
    assert_eq!(status, 401);
    assert!(body.contains("jwt_unmapped_subject"), "{body}");
    // A provider's JWT does not mint the gateway's own tokens.
    Client::with_token(&app.base, &alice)
        .post("/api/v1/me/tokens", json!({"name": "x"}))
        .await
        .problem(403, "forbidden");
    // An HMAC-signed token naming the provider (algorithm confusion) is refused unread.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": op.issuer, "aud": "cli", "exp": 4_000_000_000u64, "email": "alice@corp.example", "email_verified": true, "sub": "alice"}),
        &jsonwebtoken::EncodingKey::from_secret(b"anything").unwrap(),
    )
    .unwrap();
    let (status, body) = me(&app, &forged).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("jwt_invalid")), "{body}");
    // A provider's answer that names another issuer is a mix-up, refused before the code is used.
    let browser = Browser::new(&app.base);
    let started = browser
        .http
        .get(format!("{}/oauth/sso/start?tenant=acme&idp=corp&return_to=%2F", app.base))
        .send()
        .await
        .unwrap();
    let state = query_of(started.headers()[LOCATION].to_str().unwrap())["state"].clone();
    let answer = browser
        .http
        .get(format!("{}/oauth/sso/callback?code=x&state={state}&iss=http%3A%2F%2Fevil.example", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().contains("another issuer"));
    // Teams a provider may fill are the tenant's own, never `everyone`.
    let reply = admin
        .patch("/api/v1/tenants/acme/identity-providers/corp", json!({"group_teams": {"staff": "everyone"}}))
        .await;
    assert_eq!(reply.error_fields(), ["group_teams.staff"]);
    // An invitation is for its email only.
    app.user(&admin, "mallory@example.com").await;
    let invited = admin
        .post("/api/v1/tenants/acme/invitations", json!({"email": "dan@example.com", "role": "admin"}))
        .await
        .expect(201);
    let token = invited["url"].as_str().unwrap().split("token=").nth(1).unwrap().to_owned();
    let mallory = app.signed_in("mallory@example.com", "pw-mallory@example.com-secret").await;
    mallory.post("/api/v1/me/invitations/accept", json!({"token": token})).await.problem(404, "not_found");
}

#[tokio::test]
async fn a_person_the_provider_no_longer_knows_loses_their_sign_ins_at_the_next_refresh() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    acme_with_engineers(&app, &admin).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let first = op_on(&app, accounts(), port, "k1");
    let mut body = corp_idp(&first);
    body["scopes"] = json!(["openid", "email", "profile", "groups", "offline_access"]);
    admin.post("/api/v1/tenants/acme/identity-providers", body).await.expect(201);

    // alice signs in to an MCP client through the provider.
    let client_id = public_client(&app).await;
    let (verifier, challenge) = pkce();
    let resource = format!("{}/acme/mcp/fixture/server", app.base);
    let redirect = "http://127.0.0.1:40000/callback";
    let authorize = authorize_url(&app, &client_id, redirect, &challenge, &resource);
    let browser = Browser::new(&app.base);
    let page = browser.http.get(&authorize).send().await.unwrap().text().await.unwrap();
    let (status, _, _) = through_provider(&browser, &app, &first, &continue_link(&page), "alice").await;
    assert_eq!(status, 303);
    let back = browser.authorize(&authorize, ("unused", "unused"), Decision::Approve, &[]).await;
    let code = query_of(&back)["code"].clone();
    let (status, tokens) = crate::oauth::exchange(&app, &client_id, redirect, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = |token: String| {
        let (base, client_id) = (app.base.clone(), client_id.clone());
        async move {
            let res = reqwest::Client::new()
                .post(format!("{base}/oauth/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", client_id.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    // While the provider still knows her, refreshes go through (and ask it each time).
    let (status, renewed) = refresh(tokens["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 200, "{renewed}");
    let access = renewed["access_token"].as_str().unwrap().to_owned();
    assert_eq!(initialize(&resource, &access).await.0, 200);

    // The provider forgets her session (a restart of this in-memory provider forgets them all).
    drop(first);
    let _second = op_on(&app, accounts(), port, "k1");
    let (status, refused) = refresh(renewed["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_grant")), "{refused}");
    assert!(refused["error_description"].as_str().unwrap().contains("corp"), "{refused}");
    // Her access token stops at the proxy with the next snapshot.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while initialize(&resource, &access).await.0 != 401 {
        assert!(std::time::Instant::now() < deadline, "the proxy still took the ended sign-in's token");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
