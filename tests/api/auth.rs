use chrono::Duration;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Client, ADMIN_EMAIL, ADMIN_PASSWORD};

#[tokio::test]
async fn bootstrap_admin_can_sign_in_and_is_platform_admin() {
    let app = spawn_app().await;
    let mut client = app.client();
    let body = client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.expect(200);
    assert_eq!(body["user"]["email"], ADMIN_EMAIL);
    assert_eq!(body["user"]["is_platform_admin"], true);
    assert!(body["user"].get("password_hash").is_none());
    let me = client.get("/api/v1/me").await.expect(200);
    assert_eq!(me["user"]["email"], ADMIN_EMAIL);
    assert_eq!(me["csrf_token"], body["csrf_token"]);
}

#[tokio::test]
async fn login_sets_a_hardened_cookie_and_logout_revokes_the_session_server_side() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let set_cookie = res.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = res.json::<serde_json::Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();

    let me = http.get(format!("{}/api/v1/me", app.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(me.status(), 200);

    let out = http
        .post(format!("{}/api/v1/auth/logout", app.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    // Replaying the old cookie after logout fails: the session is gone from the server.
    let me = http.get(format!("{}/api/v1/me", app.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test]
async fn wrong_password_unknown_user_and_no_session_are_401() {
    let app = spawn_app().await;
    let mut client = app.client();
    client.login(ADMIN_EMAIL, "not-the-password").await.problem(401, "invalid_credentials");
    client.login("nobody@example.com", "whatever-password").await.problem(401, "invalid_credentials");
    client.get("/api/v1/me").await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn sessions_expire() {
    let app = spawn_app_with(|s| s.session_ttl_minutes = 60).await;
    let client = app.admin().await;
    client.get("/api/v1/me").await.expect(200);
    app.clock.advance(Duration::minutes(59));
    client.get("/api/v1/me").await.expect(200);
    app.clock.advance(Duration::minutes(2));
    client.get("/api/v1/me").await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn unsafe_requests_without_the_csrf_token_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let mut client = app.admin().await;
    let csrf = client.csrf.take();
    client.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.problem(403, "csrf_failed");
    client.csrf = Some("forged-token".into());
    client.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.problem(403, "csrf_failed");
    client.csrf = csrf;
    let list = client.get("/api/v1/tenants").await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "the refused request created nothing");
    client.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);
}

#[tokio::test]
async fn repeated_failures_are_throttled_even_with_the_right_password() {
    let app = spawn_app_with(|s| {
        s.login_max_failures = 3;
        s.login_window_minutes = 15;
    })
    .await;
    let mut client = app.client();
    for _ in 0..3 {
        client.login(ADMIN_EMAIL, "wrong-password-guess").await.problem(401, "invalid_credentials");
    }
    let reply = client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let retry: u64 = reply.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    reply.problem(429, "too_many_attempts");
    app.clock.advance(Duration::minutes(16));
    client.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.expect(200);
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions() {
    let app = spawn_app().await;
    let first = app.admin().await;
    let second = app.admin().await;
    first
        .post(
            "/api/v1/me/password",
            json!({"current_password": "wrong-one-here", "new_password": "a-new-long-password"}),
        )
        .await
        .problem(422, "validation_failed");
    first
        .post("/api/v1/me/password", json!({"current_password": ADMIN_PASSWORD, "new_password": "short"}))
        .await
        .problem(422, "validation_failed");
    first
        .post("/api/v1/me/password", json!({"current_password": ADMIN_PASSWORD, "new_password": "a-new-long-password"}))
        .await
        .expect(204);
    first.get("/api/v1/me").await.expect(200);
    second.get("/api/v1/me").await.problem(401, "unauthenticated");
    let mut fresh = Client::new(&app.base);
    fresh.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.problem(401, "invalid_credentials");
    fresh.login(ADMIN_EMAIL, "a-new-long-password").await.expect(200);
}
