//! The error model: every failure is an RFC 9457 problem document with a stable code, the
//! request id, and the offending field named. Bodies are pinned with insta snapshots.

use insta::assert_json_snapshot;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn problem_documents_for_bad_input() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let url = format!("{}/api/v1/tenants", app.base);
    let csrf = admin.csrf.clone().unwrap();
    let raw = |body: &'static str, content_type: &'static str| {
        admin.http.post(&url).header("x-csrf-token", &csrf).header(CONTENT_TYPE, content_type).body(body).send()
    };

    let res = raw(r#"{"slug": "acme", "display_name": "#, "application/json").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/problem+json");
    let header_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["request_id"], header_id.as_str());
    assert_json_snapshot!("bad_json", body, {".request_id" => "[request-id]"});

    let res = raw(r#"{"slug": "acme"}"#, "text/plain").await.unwrap();
    assert_eq!(res.status(), 415);
    assert_json_snapshot!("wrong_content_type", res.json::<serde_json::Value>().await.unwrap(), {".request_id" => "[request-id]"});

    let big =
        Box::leak(format!(r#"{{"slug": "acme", "display_name": "{}"}}"#, "x".repeat(300 * 1024)).into_boxed_str());
    let res = raw(big, "application/json").await.unwrap();
    assert_eq!(res.status(), 413);

    let body = admin
        .post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme", "owner": "me"}))
        .await
        .problem(422, "validation_failed");
    assert_json_snapshot!("unknown_field", body, {".request_id" => "[request-id]"});

    let body = admin.post("/api/v1/tenants", json!({"display_name": "Acme"})).await.problem(422, "validation_failed");
    assert_json_snapshot!("missing_field", body, {".request_id" => "[request-id]"});

    let body = admin
        .post("/api/v1/tenants", json!({"slug": 42, "display_name": "Acme"}))
        .await
        .problem(422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], "slug");

    let body = admin
        .post("/api/v1/tenants", json!({"slug": "Not A Slug", "display_name": "Acme"}))
        .await
        .problem(422, "validation_failed");
    assert_json_snapshot!("invalid_slug", body, {".request_id" => "[request-id]"});

    admin.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);
    let body = admin
        .post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"}))
        .await
        .problem(409, "already_exists");
    assert_json_snapshot!("duplicate_slug", body, {".request_id" => "[request-id]"});

    let body = admin.get("/api/v1/no-such-route").await.problem(404, "not_found");
    assert_json_snapshot!("unknown_route", body, {".request_id" => "[request-id]"});

    let list = admin.get("/api/v1/tenants").await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "bad requests changed nothing");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let res = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let other = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert_ne!(other.headers()["x-request-id"].to_str().unwrap(), id, "ids are per request");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let client = app.client();
    assert_eq!(client.get("/healthz").await.expect(200)["status"], "ok");
    assert_eq!(client.get("/readyz").await.expect(200)["status"], "ok");
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_with_allow() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/api/v1/me", "GET"),
        (reqwest::Method::DELETE, "/api/v1/tenants", "GET, POST"),
        (reqwest::Method::PATCH, "/api/v1/tenants/acme/servers/github/probe", "POST"),
    ] {
        let reply = admin.send(method.clone(), path, Some(json!({}))).await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        assert_eq!(reply.headers["allow"], allow);
        assert_eq!(reply.body["code"], "method_not_allowed");
        assert!(!reply.body["request_id"].as_str().unwrap_or_default().is_empty());
    }
    // A path the API does not have stays 404, whatever the method.
    admin.send(reqwest::Method::PUT, "/api/v1/nothing-here", Some(json!({}))).await.problem(404, "not_found");
    admin.get("/api/v1/tenants/acme/servers/github/probe/extra").await.problem(404, "not_found");
}
