use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn members_are_added_listed_changed_and_removed() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let boss = app.user(&admin, "boss@example.com").await;
    app.user(&admin, "ann@example.com").await;
    app.tenant(&admin, "acme", &[("boss@example.com", "admin")]).await;

    // A tenant admin cannot enrol people from elsewhere on the platform, and cannot tell an
    // existing account from an unknown email by trying.
    let existing = boss
        .post("/api/v1/tenants/acme/members", json!({"email": "ann@example.com", "role": "member"}))
        .await
        .problem(403, "forbidden");
    let unknown = boss
        .post("/api/v1/tenants/acme/members", json!({"email": "ghost@example.com", "role": "member"}))
        .await
        .problem(403, "forbidden");
    assert_eq!(existing["detail"], unknown["detail"]);
    let added = admin
        .post("/api/v1/tenants/acme/members", json!({"email": "ann@example.com", "role": "member"}))
        .await
        .expect(201);
    assert_eq!(added["role"], "member");
    boss.post("/api/v1/tenants/acme/members", json!({"email": "ann@example.com", "role": "admin"}))
        .await
        .problem(409, "already_exists");
    let reply =
        admin.post("/api/v1/tenants/acme/members", json!({"email": "ghost@example.com", "role": "member"})).await;
    assert_eq!(reply.error_fields(), ["email"]);
    reply.problem(422, "validation_failed");
    let reply = boss.post("/api/v1/tenants/acme/members", json!({"email": "ann@example.com", "role": "owner"})).await;
    assert_eq!(reply.error_fields(), ["role"]);
    reply.problem(422, "validation_failed");

    let list = boss.get("/api/v1/tenants/acme/members").await.expect(200);
    let emails: Vec<&str> = list["items"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["boss@example.com", "ann@example.com"]);

    boss.patch("/api/v1/tenants/acme/members/ann@example.com", json!({"role": "admin"})).await.expect(200);
    boss.patch("/api/v1/tenants/acme/members/nobody@example.com", json!({"role": "admin"}))
        .await
        .problem(404, "not_found");
    boss.delete("/api/v1/tenants/acme/members/ann@example.com").await.expect(204);
    let list = boss.get("/api/v1/tenants/acme/members").await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_tenant_keeps_at_least_one_admin() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let boss = app.user(&admin, "boss@example.com").await;
    app.user(&admin, "ann@example.com").await;
    app.tenant(&admin, "acme", &[("boss@example.com", "admin"), ("ann@example.com", "member")]).await;
    boss.patch("/api/v1/tenants/acme/members/boss@example.com", json!({"role": "member"}))
        .await
        .problem(409, "last_admin");
    boss.delete("/api/v1/tenants/acme/members/boss@example.com").await.problem(409, "last_admin");
    boss.patch("/api/v1/tenants/acme/members/ann@example.com", json!({"role": "admin"})).await.expect(200);
    boss.patch("/api/v1/tenants/acme/members/boss@example.com", json!({"role": "member"})).await.expect(200);
    // Now a member, boss can no longer manage members.
    boss.delete("/api/v1/tenants/acme/members/ann@example.com").await.problem(403, "forbidden");
}
