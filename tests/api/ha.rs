//! A highly available control plane: two `mcpgate serve` processes on one PostgreSQL
//! database and a replica following both. Runs with `TEST_DATABASE_URL` (the PostgreSQL leg
//! of CI); SQLite is a single-process database and has nothing to fail over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{fresh_database, Client};
use crate::process::{replica, start, Server};

async fn readiness(base: &str) -> Option<Value> {
    let res = reqwest::get(format!("{base}/readyz")).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.json().await.ok()
}

/// Waits until `check` holds for the server's readiness answer.
pub(crate) async fn wait_ready(base: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(ready) = readiness(base).await.filter(|r| check(r)) {
            return ready;
        }
        assert!(Instant::now() < deadline, "{base} did not get ready in {within:?}: {:?}", readiness(base).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn rpc(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> Result<reqwest::Response, String> {
    let mut req = http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body)
        .timeout(Duration::from_secs(10));
    if let Some(session) = session {
        req = req.header("mcp-session-id", session);
    }
    req.send().await.map_err(|e| e.to_string())
}

/// A gateway MCP session (sealed, so any replica with the proxy key continues it).
async fn open_session(http: &reqwest::Client, url: &str, token: &str) -> Result<String, String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "ha-test", "version": "1"}}});
    let res = rpc(http, url, token, None, init).await?;
    let status = res.status();
    let session = res.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = res.text().await.map_err(|e| e.to_string())?;
    let session = session.ok_or_else(|| format!("{status}: {text}"))?;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    rpc(http, url, token, Some(&session), initialized).await?;
    Ok(session)
}

/// One `tools/call` of the fixture's `add` in a new session; an error says what came back.
async fn call(http: &reqwest::Client, url: &str, token: &str) -> Result<(), String> {
    let session = open_session(http, url, token).await?;
    call_in(http, url, token, &session).await
}

async fn call_in(http: &reqwest::Client, url: &str, token: &str, session: &str) -> Result<(), String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}});
    let res = rpc(http, url, token, Some(session), body).await?;
    let status = res.status();
    let text = res.text().await.map_err(|e| e.to_string())?;
    if status == 200 && text.contains("\"5\"") {
        Ok(())
    } else {
        Err(format!("{status}: {text}"))
    }
}

#[tokio::test]
async fn killing_the_publishing_control_plane_hands_publishing_over_and_serving_never_stops() {
    if std::env::var("TEST_DATABASE_URL").map_or(true, |u| u.is_empty()) {
        eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let log = dir.path().join("stderr.log");
    // What the control planes share besides the database: the master key and the proxy key.
    let env = [
        ("MCPGATE_ADMIN_EMAIL", "ops@example.com"),
        ("MCPGATE_ADMIN_PASSWORD", "ops-password-123"),
        ("MCPGATE_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        ("MCPGATE_PROXY_KEY", "mgw_proxy_shared-by-the-control-planes"),
    ];
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = start(&dir_a, &db, &env, &log);
    let b = start(&dir_b, &db, &env, &log);
    assert_eq!(wait_ready(&a.base, Duration::from_secs(10), |_| true).await["role"], "publisher");
    assert_eq!(wait_ready(&b.base, Duration::from_secs(10), |_| true).await["role"], "follower");

    let mut admin = Client::new(&b.base);
    admin.login("ops@example.com", "ops-password-123").await.expect(200);
    admin.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);
    let upstream = crate::peers::rmcp_upstream().await;
    admin
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "calc", "display_name": "Calc", "kind": "remote", "url": upstream}),
        )
        .await
        .expect(201);
    let token = admin.post("/api/v1/me/tokens", json!({"name": "load"})).await.expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let control = format!("{},{}", a.base, b.base);
    let replica: Server = replica(&control, env[3].1, &log);
    let targets = [format!("{}/acme/mcp/calc/server", replica.base), format!("{}/acme/mcp/calc/server", b.base)];
    let http = reqwest::Client::new();
    // Both serve the token once the snapshot that has it reached them.
    for url in &targets {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = call(&http, url, &token).await {
            assert!(Instant::now() < deadline, "{url} never accepted the token: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Steady calls through the replica and through the surviving control plane's proxy.
    let (done, failures, calls) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for url in targets.clone() {
        let (http, token, done, failures, calls) =
            (http.clone(), token.clone(), done.clone(), failures.clone(), calls.clone());
        load.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            let session = open_session(&http, &url, &token).await.unwrap();
            while done.load(Ordering::Relaxed) == 0 {
                calls.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = call_in(&http, &url, &token, &session).await {
                    failures.fetch_add(1, Ordering::Relaxed);
                    errors.push(e);
                }
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGKILL the publisher, then change the policy on the survivor: a new token.
    a.kill();
    let killed = Instant::now();
    let fresh = admin.post("/api/v1/me/tokens", json!({"name": "after"})).await.expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ready = wait_ready(&b.base, Duration::from_secs(10), |r| r["role"] == "publisher").await;
    let took_over = killed.elapsed();
    // The change made after the kill is published and reaches the replica.
    let deadline = killed + Duration::from_secs(10);
    while let Err(e) = call(&http, &targets[0], &fresh).await {
        assert!(Instant::now() < deadline, "the replica never got the snapshot with the new token: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published = killed.elapsed();
    eprintln!(
        "publisher killed: survivor took the lease after {took_over:?} (policy version {}), \
         the change made after the kill served by the replica after {published:?}",
        ready["policy_version"]
    );
    assert!(published < Duration::from_secs(10), "took {published:?}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(1, Ordering::Relaxed);
    let mut errors = Vec::new();
    for task in load {
        errors.extend(task.await.unwrap());
    }
    let calls = calls.load(Ordering::Relaxed);
    assert!(calls > 20, "the load ran: {calls} calls");
    assert!(errors.is_empty(), "{} of {calls} calls failed while the publisher died: {errors:?}", errors.len());
    drop(replica);
    drop(b);
}
