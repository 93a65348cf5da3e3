//! Tests of the real `mcpgate` binary as an operator runs it: first start, crash safety, and
//! what ends up in its output.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{fresh_database, Client};

pub struct Server {
    pub child: Child,
    pub base: String,
    stdout: Vec<String>,
}

/// Starts `mcpgate serve` on a free port and waits until it says where it listens.
pub fn start(data_dir: &Path, database_url: &str, env: &[(&str, &str)], stderr_file: &Path) -> Server {
    let data_dir = data_dir.to_str().unwrap();
    let mut env = env.to_vec();
    env.push(("DATABASE_URL", database_url));
    spawn(&["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir], &env, stderr_file)
}

/// Starts a replica (`mcpgate proxy`) on a free port, following `control_planes` (a comma
/// list) with the proxy key they share.
pub fn replica(control_planes: &str, proxy_key: &str, stderr_file: &Path) -> Server {
    let env = [("MCPGATE_PROXY_KEY", proxy_key), ("MCPGATE_CONTROL_PLANE", control_planes)];
    spawn(&["proxy", "--listen", "127.0.0.1:0"], &env, stderr_file)
}

/// Runs `mcpgate` with `args` and waits until it says which port it listens on.
pub fn spawn(args: &[&str], env: &[(&str, &str)], stderr_file: &Path) -> Server {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(stderr_file).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcpgate"));
    command
        .args(args)
        .env("MCPGATE_LOG_FORMAT", "text")
        .env("MCPGATE_UPSTREAM_ALLOW_PRIVATE", "true")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    #[allow(clippy::zombie_processes)] // `Server`'s Drop kills and waits for it
    let mut child = command.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdout = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("mcpgate did not report its port");
        stdout.push(line.clone());
        if let Some(rest) = line.split("listening on port ").nth(1) {
            let port: u16 = rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap();
            return Server { child, base: format!("http://127.0.0.1:{port}"), stdout };
        }
    }
}

impl Server {
    /// SIGKILL (std's `Child::kill` on Unix): no shutdown hooks, no flushing.
    pub fn kill(mut self) -> Vec<String> {
        std::mem::take(&mut self.stdout)
    }
}

impl Drop for Server {
    // Also reaps the server when an assertion fails mid-test.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn first_start_prints_a_generated_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let log = dir.path().join("stderr.log");
    let server = start(dir.path(), &db, &[], &log);
    let password_line = server.stdout.iter().find(|l| l.trim_start().starts_with("password:")).cloned();
    let email_line = server.stdout.iter().find(|l| l.trim_start().starts_with("email:")).cloned();
    let password = password_line.expect("generated password printed").split_whitespace().nth(1).unwrap().to_owned();
    let email = email_line.expect("admin email printed").split_whitespace().nth(1).unwrap().to_owned();
    assert!(password.len() >= 20);
    let mut client = Client::new(&server.base);
    assert_eq!(client.login(&email, &password).await.expect(200)["user"]["is_platform_admin"], true);
    server.kill();
    assert!(!std::fs::read_to_string(&log).unwrap().contains(&password), "the password is never logged");

    let server = start(dir.path(), &db, &[], &log);
    assert!(
        !server.stdout.iter().any(|l| l.contains("password:")),
        "second start prints no password: {:?}",
        server.stdout
    );
    let mut client = Client::new(&server.base);
    client.login(&email, &password).await.expect(200);
    server.kill();
}

#[tokio::test]
async fn sigkill_during_concurrent_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let log = dir.path().join("stderr.log");
    let env = [("MCPGATE_ADMIN_EMAIL", "ops@example.com"), ("MCPGATE_ADMIN_PASSWORD", "ops-password-123")];
    let server = start(dir.path(), &db, &env, &log);
    let mut client = Client::new(&server.base);
    client.login("ops@example.com", "ops-password-123").await.expect(200);
    client.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);

    // Eight writers create teams and tokens as fast as they are answered; each remembers
    // what was acknowledged (a 201 reached it) until the process is killed under them.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(&str, String)>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, acknowledged) = (client.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let (kind, path, body) = if i % 2 == 0 {
                    ("team", "/api/v1/tenants/acme/teams", json!({"slug": format!("w{w}-{i}"), "display_name": "T"}))
                } else {
                    ("token", "/api/v1/me/tokens", json!({"name": format!("w{w}-{i}")}))
                };
                match client.try_post(path, body).await {
                    Some(201) => acknowledged.lock().unwrap().push((kind, format!("w{w}-{i}"))),
                    Some(status) => panic!("a write was refused with {status}"),
                    None => return, // the process is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "the writers got going: {}", acknowledged.len());

    let server = start(dir.path(), &db, &env, &log);
    let mut client = Client::new(&server.base);
    client.login("ops@example.com", "ops-password-123").await.expect(200);
    // Every page of both lists.
    let mut stored = Vec::new();
    for (path, field) in [("/api/v1/tenants/acme/teams", "slug"), ("/api/v1/me/tokens", "name")] {
        let mut cursor = String::new();
        loop {
            let page = client.get(&format!("{path}?limit=200{cursor}")).await.expect(200);
            stored.extend(page["items"].as_array().unwrap().iter().map(|t| t[field].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
    }
    let lost: Vec<_> = acknowledged.iter().filter(|(_, name)| !stored.contains(name)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost after SIGKILL: {lost:?} (of {})", acknowledged.len());
    server.kill();
}

#[tokio::test]
async fn no_secret_reaches_the_output_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let log = dir.path().join("stderr.log");
    let admin_password = "Adm1n-Secret-Password";
    let env = [
        ("MCPGATE_ADMIN_EMAIL", "ops@example.com"),
        ("MCPGATE_ADMIN_PASSWORD", admin_password),
        ("MCPGATE_LOG", "trace"),
    ];
    let server = start(dir.path(), &db, &env, &log);
    let mut client = Client::new(&server.base);
    client.login("ops@example.com", "Wrong-Guess-Password").await.expect(401);
    let login = client.login("ops@example.com", admin_password).await.expect(200);
    let csrf = login["csrf_token"].as_str().unwrap().to_owned();
    let cookies = {
        // Read the session cookie value the way a browser would see it.
        let res = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", server.base))
            .json(&json!({"email": "ops@example.com", "password": admin_password}))
            .send()
            .await
            .unwrap();
        res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().split('=').nth(1).unwrap().to_owned()
    };
    client
        .post(
            "/api/v1/users",
            json!({"email": "ann@example.com", "display_name": "Ann", "password": "Ann-User-Password"}),
        )
        .await
        .expect(201);
    client
        .post("/api/v1/me/password", json!({"current_password": admin_password, "new_password": "Next-Admin-Password"}))
        .await
        .expect(204);
    let pat = client.post("/api/v1/me/tokens", json!({"name": "script"})).await.expect(201)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    Client::with_token(&server.base, &pat).get("/api/v1/me").await.expect(200);
    client.post("/api/v1/auth/logout", json!({})).await.expect(204);
    let stdout = server.kill().join("\n");
    let stderr = std::fs::read_to_string(&log).unwrap();
    let output = format!("{stdout}\n{stderr}");
    assert!(stderr.contains("TRACE"), "trace logging was on");
    assert!(stderr.contains("signed in"), "sign-ins are logged (without secrets)");
    for secret in [
        admin_password,
        "Wrong-Guess-Password",
        "Ann-User-Password",
        "Next-Admin-Password",
        csrf.as_str(),
        cookies.as_str(),
        &pat[8..],
    ] {
        assert!(!output.contains(secret), "secret {secret:?} appeared in the output");
    }
}

#[tokio::test]
async fn cli_token_round_trip_in_a_shell_script() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli_roundtrip.sh");
    let output = Command::new("bash")
        .arg(script)
        .env("MCPGATE_BIN", env!("CARGO_BIN_EXE_mcpgate"))
        .env("DATABASE_URL", &db)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "script failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("cli round trip: ok"), "{stdout}");
}

/// An upstream whose `tools/list` takes two seconds (anything else is answered at once).
async fn slow_upstream() -> String {
    async fn answer(body: String) -> ([(&'static str, &'static str); 1], String) {
        let message: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if message["method"] == "tools/list" {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let result = match message["method"].as_str() {
            Some("tools/list") => json!({"tools": [{"name": "slow", "inputSchema": {"type": "object"}}]}),
            _ => json!({}),
        };
        (
            [("content-type", "application/json")],
            json!({"jsonrpc": "2.0", "id": message["id"], "result": result}).to_string(),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().route("/mcp", axum::routing::post(answer))).await.unwrap();
    });
    format!("http://127.0.0.1:{port}/mcp")
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_and_writes_their_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let log = dir.path().join("stderr.log");
    let env = [("MCPGATE_ADMIN_EMAIL", "ops@example.com"), ("MCPGATE_ADMIN_PASSWORD", "ops-password-123")];
    let mut server = start(dir.path(), &db, &env, &log);
    let mut client = Client::new(&server.base);
    client.login("ops@example.com", "ops-password-123").await.expect(200);
    client.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);
    client
        .post(
            "/api/v1/tenants/acme/servers",
            json!({"slug": "slow", "display_name": "Slow", "kind": "remote", "url": slow_upstream().await}),
        )
        .await
        .expect(201);
    let token =
        client.post("/api/v1/me/tokens", json!({"name": "t"})).await.expect(201)["token"].as_str().unwrap().to_owned();
    let url = format!("{}/acme/mcp/slow/server", server.base);
    let rpc = |method: &'static str| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            reqwest::Client::new()
                .post(&url)
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method}))
                .send()
                .await
        }
    };
    // The proxy serves the token once the snapshot that has it is in force.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rpc("ping").await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "the token was never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let in_flight = tokio::spawn(rpc("tools/list"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // The request that was being served when the signal came is answered in full.
    let answer = in_flight.await.unwrap().expect("the request in flight is not cut");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["result"]["tools"][0]["name"], "slow", "{body}");
    // Then the process exits by itself, cleanly.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "mcpgate did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert!(reqwest::get(format!("{}/healthz", server.base)).await.is_err(), "nothing listens any more");

    // Its decision was written before the exit: the audit trail has the tools/list.
    let store = mcpgate::store::connect(&db, 1).await.unwrap();
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let calls = mcpgate::store::entities::audit_events::Entity::find()
        .filter(mcpgate::store::entities::audit_events::Column::Action.eq("mcp.request"))
        .all(&store)
        .await
        .unwrap();
    assert!(
        calls.iter().any(|e| e.details.as_ref().is_some_and(|d| d["method"] == "tools/list")),
        "the decision of the request served during shutdown was lost: {calls:?}"
    );
}

/// The newest stored snapshot's version, once it is newer than `after`.
async fn newest_snapshot_after(client: &Client, after: i64) -> i64 {
    for _ in 0..100 {
        let history = client.get("/api/v1/policy/snapshots?limit=1").await.expect(200);
        let newest = history["items"][0]["version"].as_i64().unwrap();
        if newest > after {
            return newest;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no snapshot newer than {after} was published");
}

#[tokio::test]
async fn after_a_restart_the_next_snapshot_still_comes_as_a_delta() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let log = dir.path().join("stderr.log");
    let env = [("MCPGATE_ADMIN_EMAIL", "ops@example.com"), ("MCPGATE_ADMIN_PASSWORD", "ops-password-123")];
    let server = start(dir.path(), &db, &env, &log);
    let mut client = Client::new(&server.base);
    client.login("ops@example.com", "ops-password-123").await.expect(200);
    let first = newest_snapshot_after(&client, 0).await;
    client.post("/api/v1/tenants", json!({"slug": "acme", "display_name": "Acme"})).await.expect(201);
    let before_restart = newest_snapshot_after(&client, first).await;
    server.kill();

    // The new process has compiled nothing yet: the base of its first delta is the stored
    // document of the snapshot a replica holds.
    let server = start(dir.path(), &db, &env, &log);
    let mut client = Client::new(&server.base);
    client.login("ops@example.com", "ops-password-123").await.expect(200);
    client.post("/api/v1/tenants", json!({"slug": "globex", "display_name": "Globex"})).await.expect(201);
    let newest = newest_snapshot_after(&client, before_restart).await;
    let res = client
        .http
        .get(format!("{}/api/v1/policy/snapshot?after={before_restart}&deltas=true", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/json", "deltas, not the full snapshot");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["version"], newest);
    let keys: mcpgate::policy::Jwks =
        reqwest::get(format!("{}/api/v1/policy/keys", server.base)).await.unwrap().json().await.unwrap();
    let delta = mcpgate::policy::sign::verify_delta(body["deltas"][0].as_str().unwrap(), &keys).unwrap();
    assert_eq!(delta.from, before_restart);
    assert_eq!(delta.changes["tenants"].added[0]["slug"], "globex");
    server.kill();
}
