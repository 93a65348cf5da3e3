use serde_json::json;

use crate::helpers::spawn_app;

fn emails(body: &serde_json::Value) -> Vec<String> {
    body["items"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn everyone_team_is_built_in_and_follows_tenant_membership() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let boss = app.user(&admin, "boss@example.com").await;
    app.user(&admin, "ann@example.com").await;
    app.tenant(&admin, "acme", &[("boss@example.com", "admin")]).await;

    let teams = boss.get("/api/v1/tenants/acme/teams").await.expect(200);
    assert_eq!(teams["items"][0]["slug"], "everyone");
    assert_eq!(teams["items"][0]["builtin"], true);
    assert_eq!(
        emails(&boss.get("/api/v1/tenants/acme/teams/everyone/members").await.expect(200)),
        ["boss@example.com"]
    );

    admin.post("/api/v1/tenants/acme/members", json!({"email": "ann@example.com", "role": "member"})).await.expect(201);
    assert_eq!(
        emails(&boss.get("/api/v1/tenants/acme/teams/everyone/members").await.expect(200)),
        ["boss@example.com", "ann@example.com"]
    );
    boss.delete("/api/v1/tenants/acme/teams/everyone").await.problem(409, "builtin_team");
    boss.patch("/api/v1/tenants/acme/teams/everyone", json!({"display_name": "All"}))
        .await
        .problem(409, "builtin_team");
    boss.post("/api/v1/tenants/acme/teams/everyone/members", json!({"email": "ann@example.com"}))
        .await
        .problem(409, "builtin_team");
}

#[tokio::test]
async fn teams_crud_and_membership_rules() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let boss = app.user(&admin, "boss@example.com").await;
    let ann = app.user(&admin, "ann@example.com").await;
    app.user(&admin, "stranger@example.com").await;
    app.tenant(&admin, "acme", &[("boss@example.com", "admin"), ("ann@example.com", "member")]).await;

    let team = boss
        .post(
            "/api/v1/tenants/acme/teams",
            json!({"slug": "platform", "display_name": "Platform", "description": "infra"}),
        )
        .await
        .expect(201);
    assert_eq!(team["builtin"], false);
    boss.post("/api/v1/tenants/acme/teams", json!({"slug": "platform", "display_name": "Again"}))
        .await
        .problem(409, "already_exists");
    boss.post("/api/v1/tenants/acme/teams", json!({"slug": "Bad Slug", "display_name": "x"}))
        .await
        .problem(422, "validation_failed");
    ann.post("/api/v1/tenants/acme/teams", json!({"slug": "rogue", "display_name": "Rogue"}))
        .await
        .problem(403, "forbidden");

    boss.post("/api/v1/tenants/acme/teams/platform/members", json!({"email": "ann@example.com"})).await.expect(201);
    boss.post("/api/v1/tenants/acme/teams/platform/members", json!({"email": "ann@example.com"}))
        .await
        .problem(409, "already_exists");
    let reply =
        boss.post("/api/v1/tenants/acme/teams/platform/members", json!({"email": "stranger@example.com"})).await;
    assert_eq!(reply.body["errors"][0]["code"], "not_a_member");
    reply.problem(422, "validation_failed");
    assert_eq!(emails(&ann.get("/api/v1/tenants/acme/teams/platform/members").await.expect(200)), ["ann@example.com"]);

    let patched = boss
        .patch("/api/v1/tenants/acme/teams/platform", json!({"display_name": "Platform Eng", "description": null}))
        .await
        .expect(200);
    assert_eq!(patched["display_name"], "Platform Eng");
    assert!(patched["description"].is_null());

    // Leaving the tenant removes the user from its teams.
    boss.delete("/api/v1/tenants/acme/members/ann@example.com").await.expect(204);
    assert!(emails(&boss.get("/api/v1/tenants/acme/teams/platform/members").await.expect(200)).is_empty());

    boss.delete("/api/v1/tenants/acme/teams/platform").await.expect(204);
    boss.get("/api/v1/tenants/acme/teams/platform").await.problem(404, "not_found");
}
