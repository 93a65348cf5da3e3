use serde_json::json;

use crate::helpers::{spawn_app, ADMIN_EMAIL};

#[tokio::test]
async fn platform_admin_manages_users_and_others_cannot() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ann = app.user(&admin, "ann@example.com").await;
    ann.get("/api/v1/users").await.problem(403, "forbidden");
    ann.post("/api/v1/users", json!({"email": "x@example.com", "display_name": "X"})).await.problem(403, "forbidden");

    let created =
        admin.post("/api/v1/users", json!({"email": "  Bob@Example.com ", "display_name": "Bob"})).await.expect(201);
    assert_eq!(created["email"], "bob@example.com", "emails are normalised");
    assert_eq!(created["has_password"], false);
    admin
        .post("/api/v1/users", json!({"email": "bob@example.com", "display_name": "Bob again"}))
        .await
        .problem(409, "already_exists");

    let reply =
        admin.post("/api/v1/users", json!({"email": "not-an-email", "display_name": "", "password": "short"})).await;
    let mut fields = reply.error_fields();
    fields.sort();
    assert_eq!(fields, ["display_name", "email", "password"], "every invalid field is named");
    reply.problem(422, "validation_failed");

    let users = admin.get("/api/v1/users").await.expect(200);
    let emails: Vec<&str> = users["items"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, [ADMIN_EMAIL, "ann@example.com", "bob@example.com"]);
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_the_last_admin_is_kept() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let ann = app.user(&admin, "ann@example.com").await;
    let ann_id = ann.get("/api/v1/me").await.expect(200)["user"]["id"].as_i64().unwrap();
    admin.patch(&format!("/api/v1/users/{ann_id}"), json!({"disabled": true})).await.expect(200);
    ann.get("/api/v1/me").await.problem(401, "unauthenticated");
    let mut again = app.client();
    again.login("ann@example.com", "pw-ann@example.com-secret").await.problem(401, "invalid_credentials");

    let admin_id = admin.get("/api/v1/me").await.expect(200)["user"]["id"].as_i64().unwrap();
    admin
        .patch(&format!("/api/v1/users/{admin_id}"), json!({"is_platform_admin": false}))
        .await
        .problem(409, "last_admin");
    admin.patch(&format!("/api/v1/users/{admin_id}"), json!({"disabled": true})).await.problem(409, "last_admin");
    admin.get("/api/v1/users/999999").await.problem(404, "not_found");
    admin.get("/api/v1/users/not-a-number").await.problem(404, "not_found");
}
