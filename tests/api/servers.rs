use insta::assert_json_snapshot;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Client, TestApp};
use crate::peers;

/// A tenant `acme` with an admin `boss`, members `ann` and `bob`, and `eve` outside it.
async fn setup(app: &TestApp) -> (Client, Client, Client, Client, Client) {
    let admin = app.admin().await;
    let boss = app.user(&admin, "boss@example.com").await;
    let ann = app.user(&admin, "ann@example.com").await;
    let bob = app.user(&admin, "bob@example.com").await;
    let eve = app.user(&admin, "eve@example.com").await;
    app.tenant(
        &admin,
        "acme",
        &[("boss@example.com", "admin"), ("ann@example.com", "member"), ("bob@example.com", "member")],
    )
    .await;
    (admin, boss, ann, bob, eve)
}

fn remote(slug: &str, url: &str) -> Value {
    json!({"slug": slug, "display_name": slug, "kind": "remote", "url": url})
}

fn slugs(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|s| s["slug"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn remote_and_virtual_servers_crud() {
    let app = spawn_app().await;
    let (_, _, ann, _, _) = setup(&app).await;
    let created = ann
        .post(
            "/api/v1/tenants/acme/servers",
            json!({
                "slug": "github", "display_name": "GitHub", "kind": "remote",
                "url": "https://api.github.example/mcp", "description": "Issues and PRs",
                "additional_headers": {"X-Team": "platform"},
                "tool_settings": [{"name": "delete_repo", "disabled": true},
                                  {"name": "create_issue", "description": "Open an issue",
                                   "annotations": {"readOnlyHint": false, "destructiveHint": false}}],
                "tags": ["scm", "scm", "github"]
            }),
        )
        .await
        .expect(201);
    assert_eq!(created["kind"], "remote");
    assert_eq!(created["transport"], "streamable_http");
    assert_eq!(created["role"], "manager", "the creator manages the server");
    assert_eq!(created["tags"], json!(["scm", "github"]));
    assert_eq!(created["tls"]["reject_unauthorized"], true);
    assert!(created["mcp_url"].as_str().unwrap().ends_with("/acme/mcp/github/server"));
    assert_eq!(created["tool_settings"][1]["annotations"]["readOnlyHint"], false);

    ann.post("/api/v1/tenants/acme/servers", remote("linear", "http://linear.internal:8080/mcp")).await.expect(201);
    let virt = ann
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "dev", "display_name": "Dev tools", "kind": "virtual",
                   "servers": [{"server": "github", "enabled_tools": ["create_issue"]}, {"server": "linear"}]}),
        )
        .await
        .expect(201);
    assert_eq!(virt["kind"], "virtual");
    assert!(virt.get("url").is_none());
    assert_eq!(
        virt["servers"],
        json!([{"server": "github", "enabled_tools": ["create_issue"]}, {"server": "linear", "enabled_tools": "all"}])
    );

    let got = ann.get("/api/v1/tenants/acme/servers/github").await.expect(200);
    assert_eq!(got["additional_headers"], json!({"X-Team": "platform"}));
    let patched = ann
        .patch(
            "/api/v1/tenants/acme/servers/github",
            json!({"display_name": "GitHub Enterprise", "description": null, "transport": "sse",
                   "tls": {"reject_unauthorized": false}}),
        )
        .await
        .expect(200);
    assert_eq!(patched["display_name"], "GitHub Enterprise");
    assert!(patched["description"].is_null());
    assert_eq!(patched["transport"], "sse");
    assert_eq!(patched["tls"]["reject_unauthorized"], false);
    let patched =
        ann.patch("/api/v1/tenants/acme/servers/dev", json!({"servers": [{"server": "linear"}]})).await.expect(200);
    assert_eq!(patched["servers"], json!([{"server": "linear", "enabled_tools": "all"}]));
    let reply = ann.patch("/api/v1/tenants/acme/servers/dev", json!({"url": "http://x.example/mcp"})).await;
    assert_eq!(reply.error_fields(), ["url"]);
    reply.problem(422, "validation_failed");
    let reply = ann.patch("/api/v1/tenants/acme/servers/dev", json!({"kind": "remote"})).await;
    assert_eq!(reply.error_fields(), ["kind"], "the kind cannot change");

    assert_eq!(slugs(&ann.get("/api/v1/tenants/acme/servers").await.expect(200)), ["github", "linear", "dev"]);
    ann.delete("/api/v1/tenants/acme/servers/dev").await.expect(204);
    ann.delete("/api/v1/tenants/acme/servers/github").await.expect(204);
    ann.get("/api/v1/tenants/acme/servers/github").await.problem(404, "not_found");
    assert_eq!(slugs(&ann.get("/api/v1/tenants/acme/servers").await.expect(200)), ["linear"]);
}

#[tokio::test]
async fn invalid_servers_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let (_, boss, _, _, _) = setup(&app).await;
    let cases = [
        (remote("github", "ftp://example.com/mcp"), "url"),
        (remote("github", "not a url"), "url"),
        (remote("github", "https://user:secret@example.com/mcp"), "url"),
        (remote("Git Hub", "https://example.com/mcp"), "slug"),
        (json!({"slug": "github", "display_name": "x", "kind": "remote"}), "url"),
        (
            json!({"slug": "v", "display_name": "x", "kind": "virtual", "url": "https://e.com/mcp", "servers": []}),
            "url",
        ),
        (json!({"slug": "v", "display_name": "x", "kind": "virtual"}), "servers"),
        (
            json!({"slug": "github", "display_name": "x", "kind": "remote", "url": "https://e.com/mcp",
                "servers": [{"server": "a"}]}),
            "servers",
        ),
        (
            json!({"slug": "github", "display_name": "x", "kind": "remote", "url": "https://e.com/mcp",
                "additional_headers": {"Authorization": "Bearer x"}}),
            "additional_headers.Authorization",
        ),
        (
            json!({"slug": "github", "display_name": "x", "kind": "remote", "url": "https://e.com/mcp",
                "tls": {"ca_certificate": "not a certificate"}}),
            "tls.ca_certificate",
        ),
        (
            json!({"slug": "github", "display_name": "x", "kind": "remote", "url": "https://e.com/mcp",
                "tool_settings": [{"name": "a"}, {"name": "a"}]}),
            "tool_settings[1].name",
        ),
        (
            json!({"slug": "github", "display_name": "x", "kind": "remote", "url": "https://e.com/mcp",
                "tool_settings": [{"name": "a", "annotations": {"dangerous": true}}]}),
            "tool_settings[0].annotations.dangerous",
        ),
        (json!({"slug": "github", "display_name": "x", "kind": "cloud", "url": "https://e.com/mcp"}), "kind"),
    ];
    for (body, field) in cases {
        let reply = boss.post("/api/v1/tenants/acme/servers", body.clone()).await;
        assert_eq!(reply.error_fields(), [field], "for {body}");
        reply.problem(422, "validation_failed");
    }
    boss.post("/api/v1/tenants/acme/servers", remote("github", "https://e.com/mcp")).await.expect(201);
    let reply = boss.post("/api/v1/tenants/acme/servers", remote("github", "https://e.com/mcp")).await;
    assert_eq!(reply.error_fields(), ["slug"]);
    reply.problem(409, "already_exists");
    assert_eq!(slugs(&boss.get("/api/v1/tenants/acme/servers").await.expect(200)), ["github"]);
}

#[tokio::test]
async fn virtual_members_must_be_remote_servers_of_the_same_tenant() {
    let app = spawn_app().await;
    let (admin, boss, _, _, _) = setup(&app).await;
    app.tenant(&admin, "other", &[("boss@example.com", "admin")]).await;
    boss.post("/api/v1/tenants/other/servers", remote("secret", "https://e.com/mcp")).await.expect(201);
    boss.post("/api/v1/tenants/acme/servers", remote("github", "https://e.com/mcp")).await.expect(201);
    boss.post(
        "/api/v1/tenants/acme/servers",
        json!({"slug": "v1", "display_name": "V1", "kind": "virtual", "servers": [{"server": "github"}]}),
    )
    .await
    .expect(201);
    let virtual_with =
        |members: Value| json!({"slug": "v2", "display_name": "V2", "kind": "virtual", "servers": members});
    for (members, field, code) in [
        (json!([{"server": "secret"}]), "servers[0].server", "unknown_server"),
        (json!([{"server": "v1"}]), "servers[0].server", "not_remote"),
        (json!([{"server": "github"}, {"server": "github"}]), "servers[1].server", "duplicate"),
        (json!([{"server": "github", "enabled_tools": []}]), "servers[0].enabled_tools", "empty"),
        (json!([{"server": "github", "enabled_tools": "some"}]), "servers[0].enabled_tools", "invalid_type"),
    ] {
        let reply = boss.post("/api/v1/tenants/acme/servers", virtual_with(members.clone())).await;
        assert_eq!(reply.error_fields(), [field], "for {members}");
        assert_eq!(reply.body["errors"][0]["code"], code, "for {members}: {}", reply.body);
        reply.problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn enabled_tools_are_checked_against_the_probed_list() {
    let upstream = peers::rmcp_upstream().await;
    let app = spawn_app().await;
    let (_, boss, _, _, _) = setup(&app).await;
    boss.post("/api/v1/tenants/acme/servers", remote("fixture", &upstream)).await.expect(201);
    let body = |tools: Value| {
        json!({"slug": "v", "display_name": "V", "kind": "virtual",
               "servers": [{"server": "fixture", "enabled_tools": tools}]})
    };
    // Not probed yet: names cannot be checked, so they are accepted.
    boss.post("/api/v1/tenants/acme/servers", body(json!(["anything"]))).await.expect(201);
    boss.delete("/api/v1/tenants/acme/servers/v").await.expect(204);

    let report = boss.post("/api/v1/tenants/acme/servers/fixture/probe", json!({})).await.expect(200);
    assert_eq!(report["reachable"], true, "{report}");
    let reply = boss.post("/api/v1/tenants/acme/servers", body(json!(["echo", "nope"]))).await;
    assert_eq!(reply.error_fields(), ["servers[0].enabled_tools"]);
    assert_eq!(reply.body["errors"][0]["code"], "unknown_tool");
    reply.problem(422, "validation_failed");
    boss.post("/api/v1/tenants/acme/servers", body(json!(["echo"]))).await.expect(201);
}

#[tokio::test]
async fn a_server_in_use_by_a_virtual_server_cannot_be_deleted() {
    let app = spawn_app().await;
    let (_, boss, _, _, _) = setup(&app).await;
    boss.post("/api/v1/tenants/acme/servers", remote("github", "https://e.com/mcp")).await.expect(201);
    for v in ["dev", "ops"] {
        boss.post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": v, "display_name": v, "kind": "virtual", "servers": [{"server": "github"}]}),
        )
        .await
        .expect(201);
    }
    let body = boss.delete("/api/v1/tenants/acme/servers/github").await.problem(409, "server_in_use");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("dev") && detail.contains("ops"), "names the virtual servers: {detail}");
    boss.get("/api/v1/tenants/acme/servers/github").await.expect(200);
    boss.delete("/api/v1/tenants/acme/servers/dev").await.expect(204);
    boss.delete("/api/v1/tenants/acme/servers/ops").await.expect(204);
    boss.delete("/api/v1/tenants/acme/servers/github").await.expect(204);
}

#[tokio::test]
async fn collaborator_roles_decide_who_sees_and_manages_a_server() {
    let app = spawn_app().await;
    let (_, boss, ann, bob, eve) = setup(&app).await;
    ann.post("/api/v1/tenants/acme/servers", remote("github", "https://e.com/mcp")).await.expect(201);

    // Bob is a member of the tenant but not a collaborator: the server does not exist for him.
    bob.get("/api/v1/tenants/acme/servers/github").await.problem(404, "not_found");
    bob.patch("/api/v1/tenants/acme/servers/github", json!({"display_name": "x"})).await.problem(404, "not_found");
    assert!(slugs(&bob.get("/api/v1/tenants/acme/servers").await.expect(200)).is_empty());
    // Eve is not even in the tenant.
    eve.get("/api/v1/tenants/acme/servers/github").await.problem(404, "not_found");
    // The tenant admin manages every server.
    assert_eq!(boss.get("/api/v1/tenants/acme/servers/github").await.expect(200)["role"], "manager");

    // As a user, Bob reads the server but cannot change it or its collaborators.
    let added = ann
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/github/collaborators",
            Some(json!({"subject": "user:bob@example.com", "role": "user"})),
        )
        .await
        .expect(201);
    assert_eq!(added["subject"], "user:bob@example.com");
    assert_eq!(bob.get("/api/v1/tenants/acme/servers/github").await.expect(200)["role"], "user");
    bob.patch("/api/v1/tenants/acme/servers/github", json!({"display_name": "x"})).await.problem(403, "forbidden");
    bob.delete("/api/v1/tenants/acme/servers/github").await.problem(403, "forbidden");
    bob.send(
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/servers/github/collaborators",
        Some(json!({"subject": "user:bob@example.com", "role": "manager"})),
    )
    .await
    .problem(403, "forbidden");
    let collaborators = bob.get("/api/v1/tenants/acme/servers/github/collaborators").await.expect(200);
    assert_eq!(collaborators["items"].as_array().unwrap().len(), 2);

    // Promoted to manager, Bob edits it.
    ann.send(
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/servers/github/collaborators",
        Some(json!({"subject": "user:bob@example.com", "role": "manager"})),
    )
    .await
    .expect(200);
    bob.patch("/api/v1/tenants/acme/servers/github", json!({"display_name": "GitHub"})).await.expect(200);

    // Subjects must exist in the tenant.
    for (subject, code) in [
        ("user:eve@example.com", "not_a_member"),
        ("user:nobody@example.com", "unknown_subject"),
        ("team:ghosts", "unknown_subject"),
        ("virtualaccount:ci", "unknown_subject"),
        ("robot:r2d2", "invalid_subject"),
    ] {
        let reply = ann
            .send(
                reqwest::Method::PUT,
                "/api/v1/tenants/acme/servers/github/collaborators",
                Some(json!({"subject": subject, "role": "user"})),
            )
            .await;
        assert_eq!(reply.body["errors"][0]["code"], code, "{subject}: {}", reply.body);
        reply.problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn teams_grant_access_and_a_server_keeps_a_manager() {
    let app = spawn_app().await;
    let (_, boss, ann, bob, _) = setup(&app).await;
    ann.post("/api/v1/tenants/acme/servers", remote("github", "https://e.com/mcp")).await.expect(201);
    let put = |subject: &str, role: &str| {
        ann.send(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/servers/github/collaborators",
            Some(json!({"subject": subject, "role": role})),
        )
    };

    // The last manager can be neither demoted nor removed.
    put("user:ann@example.com", "user").await.problem(409, "last_manager");
    ann.delete("/api/v1/tenants/acme/servers/github/collaborators/user:ann@example.com")
        .await
        .problem(409, "last_manager");

    // Access through the built-in everyone team reaches every member.
    put("team:everyone", "user").await.expect(201);
    assert_eq!(bob.get("/api/v1/tenants/acme/servers/github").await.expect(200)["role"], "user");

    // A team of managers.
    boss.post("/api/v1/tenants/acme/teams", json!({"slug": "platform", "display_name": "Platform"})).await.expect(201);
    boss.post("/api/v1/tenants/acme/teams/platform/members", json!({"email": "bob@example.com"})).await.expect(201);
    put("team:platform", "manager").await.expect(201);
    assert_eq!(bob.get("/api/v1/tenants/acme/servers/github").await.expect(200)["role"], "manager");

    // With another manager in place, Ann can step down.
    ann.delete("/api/v1/tenants/acme/servers/github/collaborators/user:ann@example.com").await.expect(204);
    // She still has the everyone team's user role.
    assert_eq!(ann.get("/api/v1/tenants/acme/servers/github").await.expect(200)["role"], "user");
    // Deleting the team removes its collaboration.
    boss.delete("/api/v1/tenants/acme/teams/platform").await.expect(204);
    assert_eq!(bob.get("/api/v1/tenants/acme/servers/github").await.expect(200)["role"], "user");
    ann.delete("/api/v1/tenants/acme/servers/github/collaborators/team:nobody").await.problem(403, "forbidden");
    boss.delete("/api/v1/tenants/acme/servers/github/collaborators/team:nobody").await.problem(404, "not_found");
}

#[tokio::test]
async fn cross_tenant_attempts_never_reveal_a_server() {
    let app = spawn_app().await;
    let (admin, boss, ann, _, _) = setup(&app).await;
    ann.post("/api/v1/tenants/acme/servers", remote("github", "https://e.com/mcp")).await.expect(201);
    app.user(&admin, "mallory@example.com").await;
    let mallory = app.signed_in("mallory@example.com", "pw-mallory@example.com-secret").await;
    app.tenant(&admin, "evil", &[("mallory@example.com", "admin")]).await;

    // Through her own tenant's path, the server does not exist.
    let hidden = mallory.get("/api/v1/tenants/evil/servers/github").await.problem(404, "not_found");
    let missing = mallory.get("/api/v1/tenants/evil/servers/no-such").await.problem(404, "not_found");
    assert_eq!(hidden["detail"], missing["detail"]);
    // Through the owner's path, neither does the tenant.
    mallory.get("/api/v1/tenants/acme/servers/github").await.problem(404, "not_found");
    mallory.post("/api/v1/tenants/acme/servers/github/probe", json!({})).await.problem(404, "not_found");
    mallory.get("/api/v1/tenants/acme/servers/github/how-to-use").await.problem(404, "not_found");
    // As a virtual member it is as unknown as a made-up name.
    let reply = mallory
        .post(
            "/api/v1/tenants/evil/servers",
            json!({"slug": "v", "display_name": "V", "kind": "virtual", "servers": [{"server": "github"}]}),
        )
        .await;
    assert_eq!(reply.body["errors"][0]["code"], "unknown_server");
    let unknown = mallory
        .post(
            "/api/v1/tenants/evil/servers",
            json!({"slug": "v", "display_name": "V", "kind": "virtual", "servers": [{"server": "made-up"}]}),
        )
        .await;
    assert_eq!(
        reply.body["errors"][0]["message"].as_str().unwrap().replace("github", "X"),
        unknown.body["errors"][0]["message"].as_str().unwrap().replace("made-up", "X")
    );
    // Her tenant can have its own "github".
    mallory.post("/api/v1/tenants/evil/servers", remote("github", "https://evil.example/mcp")).await.expect(201);
    assert_eq!(boss.get("/api/v1/tenants/acme/servers/github").await.expect(200)["url"], "https://e.com/mcp");
}

#[tokio::test]
async fn how_to_use_gives_ready_to_paste_configuration() {
    let app = spawn_app_with(|s| s.public_url = Some("https://gateway.example.com".into())).await;
    let (_, _, ann, _, _) = setup(&app).await;
    ann.post("/api/v1/tenants/acme/servers", remote("github", "https://e.com/mcp")).await.expect(201);
    let how = ann.get("/api/v1/tenants/acme/servers/github/how-to-use").await.expect(200);
    assert_eq!(how["mcp_url"], "https://gateway.example.com/acme/mcp/github/server");
    for client in ["cursor", "vscode"] {
        for way in ["sign_in", "api_key"] {
            let content: Value = serde_json::from_str(how[client][way]["content"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{client}.{way} is not JSON: {e}"));
            assert!(content.to_string().contains("https://gateway.example.com/acme/mcp/github/server"));
        }
    }
    let vscode: Value = serde_json::from_str(how["vscode"]["sign_in"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(vscode["servers"]["acme-github"]["type"], "http");
    assert_json_snapshot!("how_to_use", how);
}

#[tokio::test]
async fn probe_reports_tools_of_an_rmcp_upstream_and_caches_them() {
    let upstream = peers::rmcp_upstream().await;
    let app = spawn_app().await;
    let (_, _, ann, bob, _) = setup(&app).await;
    ann.post("/api/v1/tenants/acme/servers", remote("fixture", &upstream)).await.expect(201);
    let report = ann.post("/api/v1/tenants/acme/servers/fixture/probe", json!({})).await.expect(200);
    assert_eq!(report["reachable"], true, "{report}");
    assert!(report["error"].is_null());
    assert!(report["protocol_version"].as_str().unwrap().starts_with("20"));
    let mut names: Vec<&str> =
        report["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["add", "echo"]);

    let server = ann.get("/api/v1/tenants/acme/servers/fixture").await.expect(200);
    assert_eq!(server["probe"]["tools"].as_array().unwrap().len(), 2);
    assert_eq!(server["probe"]["protocol_version"], report["protocol_version"]);
    // Users may look, only managers probe.
    ann.send(
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/servers/fixture/collaborators",
        Some(json!({"subject": "user:bob@example.com", "role": "user"})),
    )
    .await
    .expect(201);
    bob.post("/api/v1/tenants/acme/servers/fixture/probe", json!({})).await.problem(403, "forbidden");
    let events = ann.get("/api/v1/tenants/acme/servers").await.expect(200);
    assert_eq!(slugs(&events), ["fixture"]);
}

#[tokio::test]
async fn probe_works_against_server_everything_over_streamable_http_and_legacy_sse() {
    let app = spawn_app().await;
    let (_, boss, _, _, _) = setup(&app).await;
    let streamable = peers::everything("streamableHttp");
    let legacy = peers::everything("sse");
    boss.post("/api/v1/tenants/acme/servers", remote("everything", &streamable.url)).await.expect(201);
    let mut sse = remote("everything-sse", &legacy.url);
    sse["transport"] = json!("sse");
    boss.post("/api/v1/tenants/acme/servers", sse).await.expect(201);
    for slug in ["everything", "everything-sse"] {
        let report = boss.post(&format!("/api/v1/tenants/acme/servers/{slug}/probe"), json!({})).await.expect(200);
        assert_eq!(report["reachable"], true, "{slug}: {report}");
        let names: Vec<&str> =
            report["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"echo"), "{slug}: {names:?}");
        assert!(names.len() >= 5, "{slug}: {names:?}");
        assert!(report["server_name"].as_str().is_some(), "{slug}: {report}");
    }
}

#[tokio::test]
async fn probe_of_an_unreachable_or_hanging_upstream_fails_clearly_within_the_timeout() {
    let app = spawn_app_with(|s| s.probe_timeout_seconds = 2).await;
    let (_, boss, _, _, _) = setup(&app).await;
    boss.post("/api/v1/tenants/acme/servers", remote("closed", &peers::closed_port_url())).await.expect(201);
    let (hang_url, _hold) = peers::black_hole();
    boss.post("/api/v1/tenants/acme/servers", remote("hangs", &hang_url)).await.expect(201);

    let started = std::time::Instant::now();
    let report = boss.post("/api/v1/tenants/acme/servers/closed/probe", json!({})).await.expect(200);
    assert_eq!(report["reachable"], false);
    assert_eq!(report["error"]["code"], "unreachable", "{report}");
    assert!(report["error"]["message"].as_str().unwrap().contains("127.0.0.1"));

    let report = boss.post("/api/v1/tenants/acme/servers/hangs/probe", json!({})).await.expect(200);
    assert_eq!(report["reachable"], false);
    assert_eq!(report["error"]["code"], "timeout", "{report}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    // A failed probe leaves no tool list behind.
    assert!(boss.get("/api/v1/tenants/acme/servers/hangs").await.expect(200)["probe"].is_null());
    // A virtual server has nothing to probe.
    boss.post(
        "/api/v1/tenants/acme/servers",
        json!({"slug": "v", "display_name": "V", "kind": "virtual", "servers": [{"server": "closed"}]}),
    )
    .await
    .expect(201);
    boss.post("/api/v1/tenants/acme/servers/v/probe", json!({})).await.problem(409, "virtual_server");
}

#[tokio::test]
async fn mutations_are_audited_newest_first_and_filterable() {
    let app = spawn_app().await;
    let (_, boss, ann, _, _) = setup(&app).await;
    ann.post("/api/v1/tenants/acme/servers", remote("github", "https://e.com/mcp")).await.expect(201);
    ann.patch("/api/v1/tenants/acme/servers/github", json!({"display_name": "GitHub"})).await.expect(200);
    ann.send(
        reqwest::Method::PUT,
        "/api/v1/tenants/acme/servers/github/collaborators",
        Some(json!({"subject": "team:everyone", "role": "user"})),
    )
    .await
    .expect(201);
    let deleted = ann.delete("/api/v1/tenants/acme/servers/github").await;
    let request_id = deleted.headers["x-request-id"].to_str().unwrap().to_owned();
    deleted.expect(204);

    // Members may not read the trail; admins may.
    ann.get("/api/v1/tenants/acme/audit-events").await.problem(403, "forbidden");
    let events = boss.get("/api/v1/tenants/acme/audit-events?actor=user:ann@example.com").await.expect(200);
    let actions: Vec<&str> =
        events["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["server.delete", "collaborator.put", "server.update", "server.create"]);
    let newest = &events["items"][0];
    assert_eq!(newest["target"], "server:github");
    assert_eq!(newest["outcome"], "success");
    assert_eq!(newest["request_id"], request_id.as_str(), "the event names the request that made it");

    let only = boss.get("/api/v1/tenants/acme/audit-events?action=collaborator.put").await.expect(200);
    assert_eq!(only["items"].as_array().unwrap().len(), 1);
    assert_eq!(only["items"][0]["details"]["subject"], "team:everyone");

    // The tenant setup itself is in the trail too, by the platform admin.
    let setup_events = boss.get("/api/v1/tenants/acme/audit-events?action=member.add").await.expect(200);
    assert_eq!(setup_events["items"].as_array().unwrap().len(), 3);
    // Paginated, newest first.
    let page = boss.get("/api/v1/tenants/acme/audit-events?limit=2").await.expect(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = boss.get(&format!("/api/v1/tenants/acme/audit-events?limit=2&cursor={cursor}")).await.expect(200);
    assert_eq!(next["items"][0]["action"], "server.update");
}

/// The server list reads roles and virtual members for a whole page at once: a page with one
/// virtual server and one with four (11 and 14 servers) cost the same number of queries (it
/// was 1 + 3 per server).
#[tokio::test]
async fn a_page_of_servers_costs_the_same_queries_whatever_its_size() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let app = spawn_app().await;
    let (_admin, boss, ann, _bob, _eve) = setup(&app).await;
    for i in 0..10 {
        let body =
            json!({"slug": format!("r{i}"), "display_name": "R", "kind": "remote", "url": "http://127.0.0.1:9/mcp"});
        ann.post("/api/v1/tenants/acme/servers", body).await.expect(201);
    }
    for i in 0..4 {
        let members = json!([{"server": format!("r{}", 2 * i)}, {"server": format!("r{}", 2 * i + 1)}]);
        let body = json!({"slug": format!("v{i}"), "display_name": "V", "kind": "virtual", "servers": members});
        ann.post("/api/v1/tenants/acme/servers", body).await.expect(201);
    }
    // Through the API: ann (a plain member) manages what she registered; the virtual servers
    // list their members.
    let page = ann.get("/api/v1/tenants/acme/servers?limit=200").await.expect(200);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 14);
    assert!(items.iter().all(|s| s["role"] == "manager"));
    let v3 = items.iter().find(|s| s["slug"] == "v3").unwrap();
    assert_eq!(v3["servers"][0]["server"], "r6");
    assert_eq!(v3["servers"][1]["server"], "r7");
    assert_eq!(
        boss.get("/api/v1/tenants/acme/servers?limit=200").await.expect(200)["items"].as_array().unwrap().len(),
        14
    );

    // Counted on a connection of the test's own (the callback is the clone's).
    let queries = Arc::new(AtomicUsize::new(0));
    let mut db = app.state.db.clone();
    let counter = queries.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let tenant = mcpgate::control::tenants::find_by_slug(&db, "acme").await.unwrap().unwrap();
    let email = mcpgate::domain::Email::parse("email", "ann@example.com").unwrap();
    let ann_row = mcpgate::control::users::find_by_email(&db, &email).await.unwrap().unwrap();
    let caller = mcpgate::control::caller::Caller::User(ann_row);
    let mut cost = Vec::new();
    for limit in [11, 14] {
        queries.store(0, Ordering::Relaxed);
        let request = mcpgate::control::page::PageRequest { after: None, limit, descending: false };
        let page = mcpgate::control::servers::visible_page(&db, &tenant, &caller, false, None, request).await.unwrap();
        assert_eq!(page.items.len() as u64, limit.min(14));
        cost.push(queries.load(Ordering::Relaxed));
    }
    assert_eq!(cost[0], cost[1], "queries for a page of 11 and of 14: {cost:?}");
    assert!(cost[1] <= 8, "a page costs a handful of queries: {}", cost[1]);
}

#[tokio::test]
async fn reads_are_served_while_a_write_transaction_holds_the_writer() {
    use sea_orm::{ConnectionTrait, DatabaseBackend};
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.tenant(&admin, "acme", &[]).await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "s", "display_name": "S", "kind": "remote", "url": "https://e.com/mcp"}),
        )
        .await
        .expect(201);

    // A long write (a big import, a key rotation) holds SQLite's one writer…
    let txn = mcpgate::store::begin_write(&app.state.db).await.unwrap();
    txn.execute_unprepared("UPDATE policy_state SET version = version WHERE id = 1").await.unwrap();
    // …and sign-in checks, lists and details are still answered at once, from the readers.
    let started = std::time::Instant::now();
    let listed = tokio::time::timeout(std::time::Duration::from_secs(5), admin.get("/api/v1/tenants/acme/servers"))
        .await
        .expect("a read does not wait for the writer");
    assert_eq!(listed.expect(200)["items"].as_array().unwrap().len(), 1);
    admin.get("/api/v1/tenants/acme/servers/s").await.expect(200);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    if app.state.db.get_database_backend() == DatabaseBackend::Sqlite {
        // Writes take their turn: this one waits for the transaction, then goes through.
        let writer = admin.clone();
        let write = tokio::spawn(async move { writer.post("/api/v1/me/tokens", json!({"name": "queued"})).await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!write.is_finished(), "one writer at a time");
        txn.commit().await.unwrap();
        write.await.unwrap().expect(201);
    } else {
        txn.commit().await.unwrap();
    }
}
