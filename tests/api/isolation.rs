//! The tenant-isolation matrix: every tenant-scoped route of the OpenAPI document, called by a
//! tenant admin of another tenant — with a console session, a PAT, an admin virtual account's
//! token and a gateway JWT — answers exactly as it answers for a tenant that does not exist
//! (404; a gateway JWT, which the API does not take at all, 401 — also when the body is
//! invalid: the caller's rights are checked before it), never succeeds, and changes nothing. The
//! routes come from `openapi/openapi.json`, so a new route is covered without editing this test.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Client};

#[tokio::test]
async fn another_tenants_credentials_reach_nothing_in_a_tenant() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.user(&admin, "ann@example.com").await;
    app.user(&admin, "mallory@example.com").await;
    // The victim tenant, with one of everything a route can name.
    app.tenant(&admin, "victim", &[("ann@example.com", "admin")]).await;
    let ann = app.signed_in("ann@example.com", "pw-ann@example.com-secret").await;
    let upstream = "http://127.0.0.1:9/mcp";
    ann.post(
        "/api/v1/tenants/victim/servers",
        json!({"slug": "srv", "display_name": "Srv", "kind": "remote", "url": upstream,
               "auth_data": {"type": "header", "auth_level": "per_user", "headers": {"x-key": "{{KEY}}"}}}),
    )
    .await
    .expect(201);
    ann.post("/api/v1/tenants/victim/teams", json!({"slug": "team1", "display_name": "Team"})).await.expect(201);
    ann.post("/api/v1/tenants/victim/virtual-accounts", json!({"name": "va1"})).await.expect(201);
    let va_token = ann.post("/api/v1/tenants/victim/virtual-accounts/va1/tokens", json!({})).await.expect(201);
    let invitation = ann
        .post("/api/v1/tenants/victim/invitations", json!({"email": "new@example.com", "role": "member"}))
        .await
        .expect(201);

    // The attacker: admin of a tenant of their own, with every kind of credential.
    app.tenant(&admin, "attacker", &[("mallory@example.com", "admin")]).await;
    let mallory = app.signed_in("mallory@example.com", "pw-mallory@example.com-secret").await;
    mallory
        .post(
            "/api/v1/tenants/attacker/servers",
            json!({"slug": "own", "display_name": "Own", "kind": "remote", "url": upstream}),
        )
        .await
        .expect(201);
    let pat =
        mallory.post("/api/v1/me/tokens", json!({"name": "p"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    mallory
        .post("/api/v1/tenants/attacker/virtual-accounts", json!({"name": "bot", "tenant_role": "admin"}))
        .await
        .expect(201);
    let bot = mallory.post("/api/v1/tenants/attacker/virtual-accounts/bot/tokens", json!({})).await.expect(201)
        ["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwt = mallory.post("/api/v1/tenants/attacker/servers/own/try-token", json!(null)).await.expect(201)
        ["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let callers: Vec<(&str, Client, &[u16])> = vec![
        ("session", mallory, &[404]),
        ("PAT", Client::with_token(&app.base, &pat), &[404]),
        ("VA token", Client::with_token(&app.base, &bot), &[404]),
        ("gateway JWT", Client::with_token(&app.base, &jwt), &[401]),
    ];

    let values = [
        ("tenant", "victim".to_owned()),
        ("server", "srv".to_owned()),
        ("team", "team1".to_owned()),
        ("name", "va1".to_owned()),
        ("email", "ann@example.com".to_owned()),
        ("subject", "user:ann@example.com".to_owned()),
        ("idp", "idp1".to_owned()),
    ];
    let document: Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        if !path.contains("{tenant}") {
            continue;
        }
        let mut url = path.clone();
        for (name, value) in &values {
            url = url.replace(&format!("{{{name}}}"), &mcpgate::pages::url_encode(value));
        }
        // `{id}` is the invitation's or the token's, whichever the route is about.
        let id = if path.contains("/invitations/") { &invitation["id"] } else { &va_token["id"] };
        url = url.replace("{id}", id.as_str().unwrap());
        assert!(!url.contains('{'), "a path parameter this test does not know: {path}");
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let nowhere = url.replacen("victim", "no-such-tenant", 1);
            for (who, client, expected) in &callers {
                let reply = client.send(method.clone(), &url, body.clone()).await;
                assert!(
                    expected.contains(&reply.status.as_u16()),
                    "{method} {url} with another tenant's {who} answered {}: {}",
                    reply.status,
                    reply.body
                );
                // The answer must be exactly the one for a tenant that does not exist.
                let absent = client.send(method.clone(), &nowhere, body.clone()).await;
                assert_eq!(
                    (reply.status, &reply.body["code"], &reply.body["detail"]),
                    (absent.status, &absent.body["code"], &absent.body["detail"]),
                    "{method} {url} with another tenant's {who} tells the tenant exists"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 4 * 40, "only {checked} calls: the document lost its tenant routes?");

    // Nothing changed in the victim tenant.
    let server = ann.get("/api/v1/tenants/victim/servers/srv").await.expect(200);
    assert_eq!(server["display_name"], "Srv");
    ann.get("/api/v1/tenants/victim/teams/team1").await.expect(200);
    let tokens = ann.get("/api/v1/tenants/victim/virtual-accounts/va1/tokens").await.expect(200);
    assert_eq!(tokens["items"][0]["status"], "active");
    let members = ann.get("/api/v1/tenants/victim/members").await.expect(200);
    assert!(members["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["email"] == "ann@example.com" && m["role"] == "admin"));
    let invitations = ann.get("/api/v1/tenants/victim/invitations").await.expect(200);
    assert_eq!(invitations["items"][0]["status"], "pending");
    let events = ann.get("/api/v1/tenants/victim/audit-events?limit=200").await.expect(200);
    assert!(
        events["items"].as_array().unwrap().iter().all(|e| !e["actor"].as_str().unwrap().contains("mallory")
            && !e["actor"].as_str().unwrap().contains("bot")),
        "the attacker left a trace of a change: {events}"
    );
}
