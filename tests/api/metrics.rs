//! Prometheus `/metrics`: served on its own listener only, and after known traffic it counts
//! exactly that traffic, with bounded labels. The dashboard under `deploy/` uses only metrics
//! the process exports.

use std::collections::BTreeSet;

use serde_json::json;

use crate::gateway::{conformance_upstream, open_session, post};
use crate::helpers::spawn_app_with;
use crate::proxy::wait_for_policy;

/// The value of the sample whose line starts with `series` (name and labels as exported).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

#[tokio::test]
async fn metrics_count_known_traffic_with_bounded_labels() {
    let app = spawn_app_with(|s| s.metrics_listen = Some("127.0.0.1:0".into())).await;
    let metrics = app.metrics.clone().expect("metrics are served when metrics_listen is set");
    // The public listener does not serve them: they name tenants and servers.
    assert_eq!(reqwest::get(format!("{}/metrics", app.base)).await.unwrap().status(), 404);

    // Tenant `metricsco` is this test's alone: the registry is the process's, shared by every
    // test running beside this one.
    let admin = app.admin().await;
    app.user(&admin, "ann@example.com").await;
    app.user(&admin, "bob@example.com").await;
    app.tenant(&admin, "metricsco", &[("ann@example.com", "member"), ("bob@example.com", "member")]).await;
    admin
        .post(
            "/api/v1/tenants/metricsco/servers",
            json!({"slug": "fixture", "display_name": "Fixture", "kind": "remote", "url": conformance_upstream().await}),
        )
        .await
        .expect(201);
    admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/tenants/metricsco/servers/fixture/collaborators",
            Some(json!({"subject": "user:ann@example.com", "role": "user"})),
        )
        .await
        .expect(201);
    let token = |client: crate::helpers::Client| async move {
        client.post("/api/v1/me/tokens", json!({"name": "m"})).await.expect(201)["token"].as_str().unwrap().to_owned()
    };
    let ann = token(app.signed_in("ann@example.com", "pw-ann@example.com-secret").await).await;
    let bob = token(app.signed_in("bob@example.com", "pw-bob@example.com-secret").await).await;
    wait_for_policy(&app).await;

    let url = format!("{}/metricsco/mcp/fixture/server", app.base);
    let session = open_session(&url, &ann).await;
    for id in 2..4 {
        let (status, _, _) =
            post(&url, &ann, Some(&session), json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})).await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = post(&url, &bob, None, json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    assert_eq!(status, 403);
    // Made-up methods and servers do not become labels.
    post(&url, &ann, Some(&session), json!({"jsonrpc": "2.0", "id": 9, "method": "x/made-up"})).await;
    for n in 0..3 {
        let nowhere = format!("{}/metricsco/mcp/nowhere-{n}/server", app.base);
        post(&nowhere, &ann, None, json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    }
    mcpgate::control::gauges::refresh(&app.state.db, app.clock.now()).await.unwrap();

    let scrape = reqwest::get(&metrics).await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = scrape.text().await.unwrap();
    let requests = |server: &str, method: &str, outcome: &str, reason: &str| {
        sample(
            &text,
            &format!(
                r#"mcpgate_mcp_requests_total{{tenant="metricsco",server="{server}",method="{method}",outcome="{outcome}",reason="{reason}"}}"#
            ),
        )
    };
    assert_eq!(requests("fixture", "initialize", "allowed", ""), Some(1.0), "{text}");
    assert_eq!(requests("fixture", "tools/list", "allowed", ""), Some(2.0), "{text}");
    assert_eq!(requests("fixture", "tools/list", "denied", "not_collaborator"), Some(1.0), "{text}");
    assert_eq!(requests("-", "tools/list", "denied", "not_found"), Some(3.0), "three unknown servers, one series");
    assert!(!text.contains("nowhere-") && !text.contains("x/made-up"), "unbounded labels leaked:\n{text}");
    assert!(sample(&text, r#"mcpgate_mcp_request_duration_seconds_count{method="tools/list"}"#).unwrap() >= 3.0);
    assert!(sample(&text, "mcpgate_upstream_response_seconds_count").unwrap() >= 3.0);
    assert!(sample(&text, "mcpgate_sessions_opened_total").unwrap() >= 1.0);
    assert!(sample(&text, "mcpgate_snapshot_version").unwrap() >= 1.0);
    assert!(sample(&text, "mcpgate_snapshot_issued_timestamp_seconds").unwrap() > 1.7e9);
    // The gauges are process-wide, and every test app sets them from its own store when it
    // starts: read them right after this app's refresh, again if another app got in between.
    let mut live = 0.0;
    for _ in 0..20 {
        mcpgate::control::gauges::refresh(&app.state.db, app.clock.now()).await.unwrap();
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        live = sample(&text, r#"mcpgate_tokens{kind="personal"}"#).unwrap_or(0.0);
        if live >= 2.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(live >= 2.0, "live personal tokens: {live}");
    assert!(sample(&text, r#"mcpgate_db_connections{state="idle"}"#).is_some());
    assert!(sample(&text, "mcpgate_db_transaction_duration_seconds_count").unwrap() >= 5.0);
}

#[test]
fn the_dashboard_uses_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana/mcpgate.json")).expect("the dashboard is JSON");
    let exported: BTreeSet<String> = mcpgate::proxy::metrics::get().sample_names().into_iter().collect();
    let mut used = BTreeSet::new();
    let expressions = dashboard["panels"].as_array().unwrap().iter().flat_map(|p| p["targets"].as_array().unwrap());
    for target in expressions {
        let expr = target["expr"].as_str().unwrap();
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("mcpgate_") {
                used.insert(word.to_owned());
            }
        }
    }
    assert!(used.len() >= 10, "the dashboard shows the gateway: {used:?}");
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "the dashboard uses metrics nobody exports: {missing:?}\nexported: {exported:?}");
}

#[tokio::test]
async fn tool_names_are_labels_only_where_a_server_opted_in_and_only_known_ones() {
    let app = spawn_app_with(|s| s.metrics_listen = Some("127.0.0.1:0".into())).await;
    let metrics = app.metrics.clone().unwrap();
    let admin = app.admin().await;
    admin.post("/api/v1/tenants", json!({"slug": "toolmetrics", "display_name": "T"})).await.expect(201);
    let upstream = crate::peers::rmcp_upstream().await;
    let counted = admin
        .post(
            "/api/v1/tenants/toolmetrics/servers",
            json!({"slug": "counted", "display_name": "Counted", "kind": "remote", "url": upstream,
                   "metrics_tool_names": true, "tool_settings": [{"name": "echo"}]}),
        )
        .await
        .expect(201);
    assert_eq!(counted["metrics_tool_names"], true);
    let plain = admin
        .post(
            "/api/v1/tenants/toolmetrics/servers",
            json!({"slug": "plain", "display_name": "Plain", "kind": "remote", "url": upstream}),
        )
        .await
        .expect(201);
    assert_eq!(plain["metrics_tool_names"], false, "off unless asked for");
    let token =
        admin.post("/api/v1/me/tokens", json!({"name": "m"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    wait_for_policy(&app).await;

    let call = |tool: &str, id: i64| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"message": "hi", "a": 1, "b": 2}}});
    for server in ["counted", "plain"] {
        let url = format!("{}/toolmetrics/mcp/{server}/server", app.base);
        let session = open_session(&url, &token).await;
        // `echo` has settings on `counted`; `add` is a real tool without; the third is made up.
        for (id, tool) in [(2, "echo"), (3, "echo"), (4, "add"), (5, "made-up-tool")] {
            let (status, _, _) = post(&url, &token, Some(&session), call(tool, id)).await;
            assert_eq!(status, 200);
        }
    }

    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    let calls = |tool: &str| {
        sample(
            &text,
            &format!(
                r#"mcpgate_mcp_tool_calls_total{{tenant="toolmetrics",server="counted",tool="{tool}",outcome="allowed"}}"#
            ),
        )
    };
    assert_eq!(calls("echo"), Some(2.0), "{text}");
    assert_eq!(calls("other"), Some(2.0), "names the server did not choose are `other`");
    assert!(!text.contains(r#"tool="made-up-tool""#) && !text.contains(r#"tool="add""#));
    assert!(
        !text.lines().any(|l| l.starts_with("mcpgate_mcp_tool_calls_total") && l.contains(r#"server="plain""#)),
        "a server that did not opt in has no tool series"
    );

    // Turning it off stops the counting.
    admin.patch("/api/v1/tenants/toolmetrics/servers/counted", json!({"metrics_tool_names": false})).await.expect(200);
    wait_for_policy(&app).await;
    let url = format!("{}/toolmetrics/mcp/counted/server", app.base);
    let session = open_session(&url, &token).await;
    post(&url, &token, Some(&session), call("echo", 9)).await;
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert_eq!(
        sample(
            &text,
            r#"mcpgate_mcp_tool_calls_total{tenant="toolmetrics",server="counted",tool="echo",outcome="allowed"}"#
        ),
        Some(2.0)
    );
}
