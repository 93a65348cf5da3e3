use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Client, TestApp, ADMIN_EMAIL};

async fn create_pat(client: &Client, body: Value) -> (String, String) {
    let created = client.post("/api/v1/me/tokens", body).await.expect(201);
    (created["token"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned())
}

fn token_list(body: &Value) -> Vec<Value> {
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn pat_create_use_list_revoke() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let created = admin.post("/api/v1/me/tokens", json!({"name": "deploy"})).await.expect(201);
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mgw_pat_"), "{token}");
    assert!(token.starts_with(created["prefix"].as_str().unwrap()));
    let expires: chrono::DateTime<Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires > Utc::now() + Duration::days(364), "defaults to the maximum lifetime");

    // The token drives the API with the owner's rights, with no CSRF token.
    let script = Client::with_token(&app.base, &token);
    assert_eq!(script.get("/api/v1/me").await.expect(200)["user"]["email"], ADMIN_EMAIL);
    script.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);

    // Lists never show the secret.
    let listed = admin.get("/api/v1/me/tokens").await;
    assert!(!listed.body.to_string().contains(&token[8..]), "the secret is not listed");
    let items = token_list(&listed.expect(200));
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "active");
    assert!(items[0].get("token").is_none());

    admin.delete(&format!("/api/v1/me/tokens/{}", created["id"].as_str().unwrap())).await.expect(204);
    script.get("/api/v1/me").await.problem(401, "invalid_token");
    assert_eq!(token_list(&admin.get("/api/v1/me/tokens").await.expect(200))[0]["status"], "revoked");
    // Someone else's token id is not found.
    let other = app.user(&admin, "ann@example.com").await;
    other.delete(&format!("/api/v1/me/tokens/{}", created["id"].as_str().unwrap())).await.problem(404, "not_found");
}

#[tokio::test]
async fn expiry_is_honoured_and_bounded() {
    let app = spawn_app_with(|s| s.pat_max_lifetime_days = 30).await;
    let admin = app.admin().await;
    let in_an_hour = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let (token, _) = create_pat(&admin, json!({"name": "short", "expires_at": in_an_hour})).await;
    let script = Client::with_token(&app.base, &token);
    script.get("/api/v1/me").await.expect(200);
    app.clock.advance(Duration::minutes(61));
    script.get("/api/v1/me").await.problem(401, "invalid_token");
    assert_eq!(token_list(&admin.get("/api/v1/me/tokens").await.expect(200))[0]["status"], "expired");

    for (at, code) in [
        ((Utc::now() - Duration::days(1)).to_rfc3339(), "in_the_past"),
        ((Utc::now() + Duration::days(90)).to_rfc3339(), "too_far"),
    ] {
        let reply = admin.post("/api/v1/me/tokens", json!({"name": "x", "expires_at": at})).await;
        assert_eq!(reply.error_fields(), ["expires_at"]);
        assert_eq!(reply.body["errors"][0]["code"], code);
        reply.problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn malformed_tokens_are_rejected() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (token, _) = create_pat(&admin, json!({"name": "t"})).await;
    let mut last = token.clone();
    let c = last.pop().unwrap();
    last.push(if c == 'a' { 'b' } else { 'a' });
    for bad in [last.as_str(), &token[..token.len() - 1], "mgw_pat_nope", "not-a-token", ""] {
        Client::with_token(&app.base, bad).get("/api/v1/me").await.problem(401, "invalid_token");
    }
    let reply = Client::with_token(&app.base, "garbage").get("/api/v1/me").await;
    assert_eq!(reply.headers["www-authenticate"], "Bearer error=\"invalid_token\"");
}

#[tokio::test]
async fn revoke_all_and_disabled_users() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ann = app.user(&admin, "ann@example.com").await;
    let (t1, _) = create_pat(&ann, json!({"name": "one"})).await;
    let (t2, _) = create_pat(&ann, json!({"name": "two"})).await;
    let (t3, _) = create_pat(&ann, json!({"name": "three"})).await;
    let revoked = ann.post("/api/v1/me/tokens/revoke-all", json!({})).await.expect(200);
    assert_eq!(revoked["revoked"], 3);
    for t in [&t1, &t2] {
        Client::with_token(&app.base, t).get("/api/v1/me").await.problem(401, "invalid_token");
    }
    let _ = t3;

    let (t4, _) = create_pat(&ann, json!({"name": "four"})).await;
    let script = Client::with_token(&app.base, &t4);
    let ann_id = script.get("/api/v1/me").await.expect(200)["user"]["id"].as_i64().unwrap();
    // Admins see and revoke anyone's tokens.
    let listed = admin.get(&format!("/api/v1/users/{ann_id}/tokens")).await.expect(200);
    assert_eq!(token_list(&listed).len(), 4);
    admin.patch(&format!("/api/v1/users/{ann_id}"), json!({"disabled": true})).await.expect(200);
    script.get("/api/v1/me").await.problem(401, "invalid_token");
    admin.patch(&format!("/api/v1/users/{ann_id}"), json!({"disabled": false})).await.expect(200);
    script.get("/api/v1/me").await.expect(200);
    let id = token_list(&listed)[3]["id"].as_str().unwrap().to_owned();
    admin.delete(&format!("/api/v1/users/{ann_id}/tokens/{id}")).await.expect(204);
    script.get("/api/v1/me").await.problem(401, "invalid_token");
}

#[tokio::test]
async fn last_used_is_recorded_without_a_write_per_request() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (token, _) = create_pat(&admin, json!({"name": "t"})).await;
    let script = Client::with_token(&app.base, &token);
    for _ in 0..5 {
        script.get("/api/v1/me").await.expect(200);
    }
    // Not yet written: uses are coalesced in memory.
    assert!(token_list(&admin.get("/api/v1/me/tokens").await.expect(200))[0]["last_used_at"].is_null());
    let written = app.state.token_usage.flush(&app.state.db).await.unwrap();
    assert_eq!(written, 1, "five uses, one write");
    let used = &token_list(&admin.get("/api/v1/me/tokens").await.expect(200))[0];
    assert!(used["last_used_at"].as_str().is_some());
}

/// Tenant `acme` with server `github` managed by the platform admin.
async fn tenant_with_server(app: &TestApp) -> Client {
    let admin = app.admin().await;
    app.tenant(&admin, "acme", &[]).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "github", "display_name": "GitHub", "kind": "remote", "url": "https://e.com/mcp"}),
        )
        .await
        .expect(201);
    admin
}

fn subjects(body: &Value) -> Vec<(String, String)> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["subject"].as_str().unwrap().to_owned(), c["role"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn virtual_account_permissions_are_collaborators() {
    let app = spawn_app().await;
    let admin = tenant_with_server(&app).await;
    let va = admin
        .post(
            "/api/v1/tenants/acme/virtual-accounts",
            json!({"name": "ci", "description": "deploys", "permissions": [{"server": "github", "role": "user"}]}),
        )
        .await
        .expect(201);
    assert_eq!(va["permissions"], json!([{"server": "github", "role": "user"}]));
    let collaborators = admin.get("/api/v1/tenants/acme/servers/github/collaborators").await.expect(200);
    assert!(subjects(&collaborators).contains(&("virtualaccount:ci".into(), "user".into())));

    let issued = admin.post("/api/v1/tenants/acme/virtual-accounts/ci/tokens", json!({})).await.expect(201);
    let token = issued["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mgw_va_"));
    let ci = Client::with_token(&app.base, &token);
    assert_eq!(ci.get("/api/v1/tenants/acme/servers/github").await.expect(200)["role"], "user");
    ci.patch("/api/v1/tenants/acme/servers/github", json!({"display_name": "x"})).await.problem(403, "forbidden");
    ci.get("/api/v1/me").await.problem(403, "forbidden");

    admin
        .patch(
            "/api/v1/tenants/acme/virtual-accounts/ci",
            json!({"permissions": [{"server": "github", "role": "manager"}]}),
        )
        .await
        .expect(200);
    let collaborators = admin.get("/api/v1/tenants/acme/servers/github/collaborators").await.expect(200);
    assert!(subjects(&collaborators).contains(&("virtualaccount:ci".into(), "manager".into())));
    ci.patch("/api/v1/tenants/acme/servers/github", json!({"display_name": "GitHub (CI)"})).await.expect(200);

    admin.patch("/api/v1/tenants/acme/virtual-accounts/ci", json!({"permissions": []})).await.expect(200);
    let collaborators = admin.get("/api/v1/tenants/acme/servers/github/collaborators").await.expect(200);
    assert!(!subjects(&collaborators).iter().any(|(s, _)| s == "virtualaccount:ci"));
    ci.get("/api/v1/tenants/acme/servers/github").await.problem(404, "not_found");

    let reply = admin
        .patch("/api/v1/tenants/acme/virtual-accounts/ci", json!({"permissions": [{"server": "nope", "role": "user"}]}))
        .await;
    assert_eq!(reply.error_fields(), ["permissions[0].server"]);
    reply.problem(422, "validation_failed");
    admin.post("/api/v1/tenants/acme/virtual-accounts", json!({"name": "ci"})).await.problem(409, "already_exists");
}

#[tokio::test]
async fn a_tenant_admin_account_manages_servers_without_a_human_token() {
    let app = spawn_app().await;
    let admin = tenant_with_server(&app).await;
    app.tenant(&admin, "other", &[]).await;
    admin
        .post("/api/v1/tenants/acme/virtual-accounts", json!({"name": "pipeline", "tenant_role": "admin"}))
        .await
        .expect(201);
    let token = admin.post("/api/v1/tenants/acme/virtual-accounts/pipeline/tokens", json!({})).await.expect(201)
        ["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let pipeline = Client::with_token(&app.base, &token);
    let created = pipeline
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "linear", "display_name": "Linear", "kind": "remote", "url": "https://l.example/mcp"}),
        )
        .await
        .expect(201);
    assert_eq!(created["role"], "manager");
    let collaborators = pipeline.get("/api/v1/tenants/acme/servers/linear/collaborators").await.expect(200);
    assert_eq!(subjects(&collaborators), [("virtualaccount:pipeline".to_owned(), "manager".to_owned())]);
    pipeline.patch("/api/v1/tenants/acme/servers/github", json!({"display_name": "GH"})).await.expect(200);
    // Its reach ends at its tenant, and it is no platform admin.
    pipeline.get("/api/v1/tenants/other").await.problem(404, "not_found");
    pipeline.post("/api/v1/tenants", json!({"slug": "mine", "display_name": "x"})).await.problem(403, "forbidden");
    let listed = pipeline.get("/api/v1/tenants").await.expect(200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

/// These tests move the clock by days; the admin's console session must outlive that.
async fn long_sessions() -> TestApp {
    spawn_app_with(|s| s.session_ttl_minutes = 60 * 24 * 60).await
}

#[tokio::test]
async fn regenerate_keeps_the_old_token_for_the_grace_period() {
    let app = long_sessions().await;
    let admin = tenant_with_server(&app).await;
    admin
        .post(
            "/api/v1/tenants/acme/virtual-accounts",
            json!({"name": "ci", "permissions": [{"server": "github", "role": "user"}]}),
        )
        .await
        .expect(201);
    let old = admin.post("/api/v1/tenants/acme/virtual-accounts/ci/tokens", json!({})).await.expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_client = Client::with_token(&app.base, &old);
    // The account rotates itself with its current token.
    let new = old_client
        .post("/api/v1/tenants/acme/virtual-accounts/ci/tokens/regenerate", json!({"grace_days": 2}))
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_client = Client::with_token(&app.base, &new);
    app.clock.advance(Duration::days(1));
    old_client.get("/api/v1/tenants/acme/servers/github").await.expect(200);
    new_client.get("/api/v1/tenants/acme/servers/github").await.expect(200);
    app.clock.advance(Duration::days(1) + Duration::minutes(1));
    old_client.get("/api/v1/tenants/acme/servers/github").await.problem(401, "invalid_token");
    new_client.get("/api/v1/tenants/acme/servers/github").await.expect(200);
    // Another account cannot rotate this one.
    admin.post("/api/v1/tenants/acme/virtual-accounts", json!({"name": "other"})).await.expect(201);
    let other = admin.post("/api/v1/tenants/acme/virtual-accounts/other/tokens", json!({})).await.expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    Client::with_token(&app.base, &other)
        .post("/api/v1/tenants/acme/virtual-accounts/ci/tokens/regenerate", json!({}))
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn scheduled_rotation_issues_a_token_to_claim_once() {
    let app = long_sessions().await;
    let admin = tenant_with_server(&app).await;
    admin
        .post(
            "/api/v1/tenants/acme/virtual-accounts",
            json!({"name": "ci", "permissions": [{"server": "github", "role": "user"}],
                   "auto_rotate": {"interval_days": 7, "grace_days": 2}}),
        )
        .await
        .expect(201);
    let old = admin.post("/api/v1/tenants/acme/virtual-accounts/ci/tokens", json!({})).await.expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotate = || mcpgate::control::virtual_accounts::rotate_due(&app.state.db, &app.state.sealer, app.clock.now());
    assert_eq!(rotate().await.unwrap(), 0, "not due yet");
    app.clock.advance(Duration::days(7) + Duration::minutes(1));
    assert_eq!(rotate().await.unwrap(), 1);
    assert_eq!(rotate().await.unwrap(), 0, "one rotation per interval");

    let old_client = Client::with_token(&app.base, &old);
    let listed = old_client.get("/api/v1/tenants/acme/virtual-accounts/ci/tokens").await.expect(200);
    let pending: Vec<&Value> = listed["items"].as_array().unwrap().iter().filter(|t| t["claimable"] == true).collect();
    assert_eq!(pending.len(), 1);
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let claimed = old_client
        .post(&format!("/api/v1/tenants/acme/virtual-accounts/ci/tokens/{id}/claim"), json!({}))
        .await
        .expect(200);
    let new = claimed["token"].as_str().unwrap().to_owned();
    old_client
        .post(&format!("/api/v1/tenants/acme/virtual-accounts/ci/tokens/{id}/claim"), json!({}))
        .await
        .problem(409, "nothing_to_claim");
    let new_client = Client::with_token(&app.base, &new);
    new_client.get("/api/v1/tenants/acme/servers/github").await.expect(200);
    app.clock.advance(Duration::days(2) + Duration::minutes(1));
    old_client.get("/api/v1/tenants/acme/servers/github").await.problem(401, "invalid_token");
    new_client.get("/api/v1/tenants/acme/servers/github").await.expect(200);

    let audit = admin.get("/api/v1/tenants/acme/audit-events?action=token.regenerate").await.expect(200);
    assert_eq!(audit["items"][0]["actor"], "system", "the rotation job is in the audit trail");
}

#[tokio::test]
async fn deleting_the_creator_leaves_the_virtual_account_working() {
    let app = spawn_app().await;
    let admin = tenant_with_server(&app).await;
    let boss = app.user(&admin, "boss@example.com").await;
    admin.post("/api/v1/tenants/acme/members", json!({"email": "boss@example.com", "role": "admin"})).await.expect(201);
    boss.post(
        "/api/v1/tenants/acme/virtual-accounts",
        json!({"name": "ci", "permissions": [{"server": "github", "role": "user"}]}),
    )
    .await
    .expect(201);
    let token = boss.post("/api/v1/tenants/acme/virtual-accounts/ci/tokens", json!({})).await.expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let boss_id = boss.get("/api/v1/me").await.expect(200)["user"]["id"].as_i64().unwrap();
    admin.delete(&format!("/api/v1/users/{boss_id}")).await.expect(204);
    boss.get("/api/v1/me").await.problem(401, "unauthenticated");
    let ci = Client::with_token(&app.base, &token);
    ci.get("/api/v1/tenants/acme/servers/github").await.expect(200);
    assert_eq!(admin.get("/api/v1/tenants/acme/virtual-accounts/ci").await.expect(200)["name"], "ci");
}

#[tokio::test]
async fn expired_virtual_accounts_stop_working() {
    let app = long_sessions().await;
    let admin = tenant_with_server(&app).await;
    let in_a_day = (Utc::now() + Duration::days(1)).to_rfc3339();
    admin
        .post(
            "/api/v1/tenants/acme/virtual-accounts",
            json!({"name": "temp", "expires_at": in_a_day, "permissions": [{"server": "github", "role": "user"}]}),
        )
        .await
        .expect(201);
    let token = admin.post("/api/v1/tenants/acme/virtual-accounts/temp/tokens", json!({})).await.expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let temp = Client::with_token(&app.base, &token);
    temp.get("/api/v1/tenants/acme/servers/github").await.expect(200);
    app.clock.advance(Duration::days(1) + Duration::minutes(1));
    temp.get("/api/v1/tenants/acme/servers/github").await.problem(401, "invalid_token");
}
