//! What the admin console needs of the gateway: its files at `/` under a strict CSP, the tool
//! tester's token (a session's own access, through the real proxy), server search, audit
//! filters, and the tenant's logo on its pages.

use serde_json::json;

use crate::gateway::{conformance_upstream, grant, open_session, post, remote, tenant_with_ann};
use crate::helpers::{spawn_app, Client};
use crate::proxy::wait_for_policy;

#[tokio::test]
async fn the_console_is_served_at_the_root_with_a_strict_csp() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let shell = http.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(shell.status(), 200);
    let csp = shell.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    let etag = shell.headers()["etag"].to_str().unwrap().to_owned();
    assert!(shell.text().await.unwrap().contains(r#"<script type="module" src="/console/js/main.js">"#));

    let again = http.get(format!("{}/", app.base)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304, "an unchanged console is revalidated, not sent again");
    let module = http.get(format!("{}/console/js/api.js", app.base)).send().await.unwrap();
    assert_eq!(module.status(), 200);
    assert!(module.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    // Only the console's own files: not its type declarations, package files or anything above.
    for missing in ["/console/package.json", "/console/types/api.d.ts", "/console/../Cargo.toml", "/console/index.html"]
    {
        let status = http.get(format!("{}{missing}", app.base)).send().await.unwrap().status();
        assert_eq!(status, 404, "{missing}");
    }
    // The gateway's own paths keep answering as before.
    assert_eq!(http.get(format!("{}/api/v1/me", app.base)).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn the_tool_tester_calls_through_the_proxy_with_the_persons_own_access() {
    let app = spawn_app().await;
    let (admin, _) = tenant_with_ann(&app).await;
    let upstream = conformance_upstream().await;
    remote(&admin, "fixture", &upstream).await;
    remote(&admin, "private", &upstream).await;
    grant(&admin, "fixture", "user:ann@example.com").await;
    wait_for_policy(&app).await;
    let ann = app.signed_in("ann@example.com", "pw-ann@example.com-secret").await;

    let issued = ann.post("/api/v1/tenants/acme/servers/fixture/try-token", json!(null)).await.expect(201);
    let token = issued["access_token"].as_str().unwrap();
    let url = format!("{}/acme/mcp/fixture/server", app.base);
    assert_eq!(issued["mcp_url"], url.as_str());
    let session = open_session(&url, token).await;
    let (status, _, listed) =
        post(&url, token, Some(&session), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    assert_eq!(status, 200);
    assert!(listed[0]["result"]["tools"].as_array().unwrap().len() > 3, "{listed:?}");

    // The token is for that one URL: another server of the tenant refuses it.
    let other = format!("{}/acme/mcp/private/server", app.base);
    let (status, _, _) = post(&other, token, None, json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).await;
    assert_eq!(status, 401, "a tool-tester token is bound to its server's URL");
    // A server she cannot use is not there for her, token or not.
    ann.post("/api/v1/tenants/acme/servers/private/try-token", json!(null)).await.problem(404, "not_found");

    // Only a console session gets one: a PAT already reaches the proxy by itself.
    let pat =
        ann.post("/api/v1/me/tokens", json!({"name": "cli"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    Client::with_token(&app.base, &pat)
        .post("/api/v1/tenants/acme/servers/fixture/try-token", json!(null))
        .await
        .problem(403, "forbidden");
    // Without the CSRF header, a session's unsafe request is refused.
    let mut no_csrf = app.signed_in("ann@example.com", "pw-ann@example.com-secret").await;
    no_csrf.csrf = None;
    assert_eq!(no_csrf.post("/api/v1/tenants/acme/servers/fixture/try-token", json!(null)).await.status, 403);

    let audit = admin.get("/api/v1/tenants/acme/audit-events?action=server.try_token").await.expect(200);
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    assert_eq!(audit["items"][0]["actor"], "user:ann@example.com");
    assert_eq!(audit["items"][0]["target"], "server:fixture");
}

#[tokio::test]
async fn servers_are_searched_by_name_and_audit_events_filtered() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.tenant(&admin, "acme", &[]).await;
    let upstream = conformance_upstream().await;
    for (slug, name) in [("github", "GitHub Issues"), ("linear", "Linear"), ("git-50pct", "Git 50%_off")] {
        admin
            .post(
                "/api/v1/tenants/acme/servers",
                json!({"slug": slug, "display_name": name, "kind": "remote", "url": upstream}),
            )
            .await
            .expect(201);
    }
    let found = |q: &'static str| {
        let admin = &admin;
        async move {
            let page = admin.get(&format!("/api/v1/tenants/acme/servers?q={q}")).await.expect(200);
            let mut slugs: Vec<String> =
                page["items"].as_array().unwrap().iter().map(|s| s["slug"].as_str().unwrap().to_owned()).collect();
            slugs.sort();
            slugs
        }
    };
    assert_eq!(found("git").await, ["git-50pct", "github"]);
    assert_eq!(found("ISSUES").await, ["github"], "case does not matter");
    assert_eq!(found("%25_").await, ["git-50pct"], "LIKE wildcards typed by a person match themselves");
    assert_eq!(found("%25").await, ["git-50pct"]);
    assert!(found("nothing").await.is_empty());

    let events = |query: &'static str| {
        let admin = &admin;
        async move { admin.get(&format!("/api/v1/tenants/acme/audit-events?{query}")).await.expect(200)["items"].clone() }
    };
    let github = events("server=github").await;
    assert!(!github.as_array().unwrap().is_empty());
    assert!(github.as_array().unwrap().iter().all(|e| e["target"] == "server:github"));
    assert!(events("outcome=denied").await.as_array().unwrap().is_empty());
    assert_eq!(events("outcome=success&action=server.create").await.as_array().unwrap().len(), 3);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let since = admin
        .get(&format!("/api/v1/tenants/acme/audit-events?since={}", mcpgate::pages::url_encode(&later)))
        .await
        .expect(200);
    assert!(since["items"].as_array().unwrap().is_empty(), "nothing happened after an hour from now");
    let until = admin
        .get(&format!("/api/v1/tenants/acme/audit-events?until={}", mcpgate::pages::url_encode(&later)))
        .await
        .expect(200);
    assert!(until["items"].as_array().unwrap().len() >= 4);
    admin.get("/api/v1/tenants/acme/audit-events?since=yesterday").await.problem(422, "validation_failed");
}

#[tokio::test]
async fn a_tenant_logo_is_https_only_and_shown_on_its_pages() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.tenant(&admin, "acme", &[]).await;
    for bad in ["http://cdn.example/logo.png", "javascript:alert(1)", "data:image/png;base64,AAAA", "logo.png"] {
        admin.patch("/api/v1/tenants/acme", json!({"logo_url": bad})).await.problem(422, "validation_failed");
    }
    let tenant = admin.get("/api/v1/tenants/acme").await.expect(200);
    assert_eq!(tenant["logo_url"], serde_json::Value::Null, "a refused logo changes nothing");
    let set = admin
        .patch("/api/v1/tenants/acme", json!({"logo_url": "https://cdn.example/acme.svg", "display_name": "Acme Corp"}))
        .await
        .expect(200);
    assert_eq!(set["logo_url"], "https://cdn.example/acme.svg");

    // The connect page of one of its servers names the tenant and shows its logo.
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "keyed", "display_name": "Keyed", "kind": "remote", "url": conformance_upstream().await,
                   "auth_data": {"type": "header", "auth_level": "per_user", "headers": {"x-api-key": "{{API_KEY}}"}}}),
        )
        .await
        .expect(201);
    let page = reqwest::get(format!("{}/connect/acme/keyed", app.base)).await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"src="https://cdn.example/acme.svg""#) && html.contains("Acme Corp"), "{html}");
    assert!(html.contains(r#"href="/console/app.css""#));

    let cleared = admin.patch("/api/v1/tenants/acme", json!({"logo_url": ""})).await.expect(200);
    assert_eq!(cleared["logo_url"], serde_json::Value::Null);
}
