use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn tenant_crud() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let created = admin.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme Inc"})).await.expect(201);
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["display_name"], "Acme Inc");

    let got = admin.get("/api/v1/tenants/acme").await.expect(200);
    assert_eq!(got["display_name"], "Acme Inc");

    let patched = admin.patch("/api/v1/tenants/acme", json!({"display_name": "Acme Corporation"})).await.expect(200);
    assert_eq!(patched["display_name"], "Acme Corporation");
    assert_eq!(admin.get("/api/v1/tenants/acme").await.expect(200)["display_name"], "Acme Corporation");

    // The slug is part of every MCP URL and cannot be changed.
    let reply = admin.patch("/api/v1/tenants/acme", json!({"slug": "other"})).await;
    assert_eq!(reply.error_fields(), ["slug"]);
    reply.problem(422, "validation_failed");

    admin.delete("/api/v1/tenants/acme").await.expect(204);
    admin.get("/api/v1/tenants/acme").await.problem(404, "not_found");
    admin.delete("/api/v1/tenants/acme").await.problem(404, "not_found");
    // The slug is free again.
    admin.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme again"})).await.expect(201);
}

#[tokio::test]
async fn slugs_are_validated_and_unique() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for bad in ["Acme", "acme corp", "-acme", "acme-", "1acme", "ac--me", "", "ac/me", "acmé"] {
        let reply = admin.post("/api/v1/tenants", json!({"slug": bad, "display_name": "x"})).await;
        assert_eq!(reply.error_fields(), ["slug"], "slug {bad:?}");
        let body = reply.problem(422, "validation_failed");
        assert_eq!(body["errors"][0]["code"], "invalid_slug");
    }
    admin.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);
    let reply = admin.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Other"})).await;
    assert_eq!(reply.error_fields(), ["slug"]);
    reply.problem(409, "already_exists");
    let list = admin.get("/api/v1/tenants").await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "failed creates left nothing behind");
}

#[tokio::test]
async fn membership_roles_are_enforced_and_outsiders_see_404() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let boss = app.user(&admin, "boss@example.com").await;
    let worker = app.user(&admin, "worker@example.com").await;
    let outsider = app.user(&admin, "outsider@example.com").await;
    app.tenant(&admin, "acme", &[("boss@example.com", "admin"), ("worker@example.com", "member")]).await;

    // A member reads but cannot change the tenant.
    let seen = worker.get("/api/v1/tenants/acme").await.expect(200);
    assert_eq!(seen["role"], "member");
    worker.patch("/api/v1/tenants/acme", json!({"display_name": "Hacked"})).await.problem(403, "forbidden");
    worker
        .post("/api/v1/tenants/acme/members", json!({"email": "outsider@example.com", "role": "member"}))
        .await
        .problem(403, "forbidden");
    worker.delete("/api/v1/tenants/acme").await.problem(403, "forbidden");

    // A tenant admin changes it but may not delete it or create tenants.
    assert_eq!(boss.get("/api/v1/tenants/acme").await.expect(200)["role"], "admin");
    boss.patch("/api/v1/tenants/acme", json!({"display_name": "Acme Ltd"})).await.expect(200);
    boss.delete("/api/v1/tenants/acme").await.problem(403, "forbidden");
    boss.post("/api/v1/tenants", json!({"slug": "mine", "display_name": "Mine"})).await.problem(403, "forbidden");

    // An outsider cannot tell the tenant exists: same answer as for a missing one.
    let hidden = outsider.get("/api/v1/tenants/acme").await.problem(404, "not_found");
    let missing = outsider.get("/api/v1/tenants/does-not-exist").await.problem(404, "not_found");
    assert_eq!(hidden["detail"], missing["detail"]);
    outsider.patch("/api/v1/tenants/acme", json!({"display_name": "x"})).await.problem(404, "not_found");
    outsider.get("/api/v1/tenants/acme/members").await.problem(404, "not_found");
    outsider.get("/api/v1/tenants/acme/teams").await.problem(404, "not_found");
    assert!(outsider.get("/api/v1/tenants").await.expect(200)["items"].as_array().unwrap().is_empty());

    let visible = worker.get("/api/v1/tenants").await.expect(200);
    assert_eq!(visible["items"][0]["slug"], "acme");
    assert_eq!(visible["items"][0]["role"], "member");
}

#[tokio::test]
async fn lists_paginate_with_an_opaque_cursor() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let slugs: Vec<String> = (0..7).map(|i| format!("tenant-{i}")).collect();
    for slug in &slugs {
        admin.post("/api/v1/tenants", json!({"slug": slug, "display_name": slug})).await.expect(201);
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = "/api/v1/tenants?limit=3".to_owned();
    loop {
        let page = admin.get(&path).await.expect(200);
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|t| t["slug"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/tenants?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, slugs, "every item once, in creation order");

    // Exactly a full last page: no dangling empty page.
    let page = admin.get("/api/v1/tenants?limit=7").await.expect(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert!(page["next_cursor"].is_null());

    for bad in ["limit=0", "limit=201", "limit=ten"] {
        let reply = admin.get(&format!("/api/v1/tenants?{bad}")).await;
        assert_eq!(reply.error_fields(), ["limit"], "{bad}");
        reply.problem(422, "validation_failed");
    }
    let reply = admin.get("/api/v1/tenants?cursor=garbage").await;
    assert_eq!(reply.error_fields(), ["cursor"]);
    reply.problem(422, "validation_failed");
}
