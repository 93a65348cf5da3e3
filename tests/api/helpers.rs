//! `spawn_app()` and typed helpers for talking to it.

use std::path::PathBuf;

use mcpgate::{Application, Clock, Settings};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

pub struct TestApp {
    pub base: String,
    pub clock: Clock,
    pub state: actix_web::web::Data<mcpgate::startup::AppState>,
    /// Where `/metrics` is served, when the test asked for it (`metrics_listen`).
    pub metrics: Option<String>,
    _dir: tempfile::TempDir,
}

/// A fresh database URL for one test: a new SQLite file, or a new PostgreSQL database when
/// `TEST_DATABASE_URL` names a server.
pub async fn fresh_database(dir: &std::path::Path) -> String {
    // Every test starts here; reqwest (rustls without a default provider) needs one installed.
    mcpgate::http_client::install_crypto_provider();
    match std::env::var("TEST_DATABASE_URL") {
        Ok(server) if !server.is_empty() => {
            let name = format!("mcpgate_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(&server).await.expect("connect to TEST_DATABASE_URL");
            admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.expect("create test database");
            admin.close().await.ok();
            let (prefix, _) = server.rsplit_once('/').expect("TEST_DATABASE_URL has a database name");
            format!("{prefix}/{name}")
        }
        _ => format!("sqlite://{}?mode=rwc", dir.join("mcpgate.db").display()),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database(dir.path()).await;
    let mut settings = Settings::with_defaults(PathBuf::from(dir.path())).expect("default settings");
    settings.listen = "127.0.0.1:0".into();
    settings.database_url = Some(database_url.into());
    settings.admin_email = Some(ADMIN_EMAIL.into());
    settings.admin_password = Some(ADMIN_PASSWORD.to_owned().into());
    settings.workers = 1;
    settings.db_max_connections = 4;
    // The test peers listen on loopback, which the default egress policy refuses.
    settings.upstream_allow_private = true;
    adjust(&mut settings);
    let clock = Clock::system();
    let app = Application::build(settings, clock.clone()).await.expect("build application");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state.clone();
    let metrics = app.metrics_port().map(|port| format!("http://127.0.0.1:{port}/metrics"));
    tokio::spawn(app.run_until_stopped());
    TestApp { base, clock, state, metrics, _dir: dir }
}

/// An HTTP client with its own cookie jar, which sends the CSRF token once it has one.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub csrf: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts a problem document with this status and code, and returns it.
    #[track_caller]
    pub fn problem(self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        let ct = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(ct, "application/problem+json", "problem content type");
        assert_eq!(self.body["code"], code, "problem code; body: {}", self.body);
        assert_eq!(self.body["status"], status);
        let header_id = self.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(!header_id.is_empty(), "x-request-id header");
        assert_eq!(self.body["request_id"], header_id, "request id in body equals header");
        self.body
    }

    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        mcpgate::http_client::install_crypto_provider();
        // Idle connections are dropped before the gateway's 5 s keep-alive closes them: a
        // request sent on one the server is closing that instant fails with IncompleteMessage.
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .pool_idle_timeout(std::time::Duration::from_secs(3))
            .build()
            .expect("client");
        Self { base: base.to_owned(), http, csrf: None }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(csrf) = &self.csrf {
            req = req.header("x-csrf-token", csrf);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, headers, body }
    }

    /// A POST whose answer counts only when it arrived whole: its status, or `None` when the
    /// connection failed (the server was killed).
    pub async fn try_post(&self, path: &str, body: Value) -> Option<u16> {
        let mut req = self.http.post(format!("{}{}", self.base, path)).json(&body);
        if let Some(csrf) = &self.csrf {
            req = req.header("x-csrf-token", csrf);
        }
        let res = req.send().await.ok()?;
        let status = res.status().as_u16();
        res.bytes().await.ok()?;
        Some(status)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// A client that authenticates with a bearer token instead of a session.
    pub fn with_token(base: &str, token: &str) -> Self {
        mcpgate::http_client::install_crypto_provider();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().expect("header value"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .pool_idle_timeout(std::time::Duration::from_secs(3))
            .build()
            .expect("client");
        Self { base: base.to_owned(), http, csrf: None }
    }

    pub async fn login(&mut self, email: &str, password: &str) -> Reply {
        let reply = self.post("/api/v1/auth/login", json!({"email": email, "password": password})).await;
        if reply.status == StatusCode::OK {
            self.csrf = reply.body["csrf_token"].as_str().map(str::to_owned);
        }
        reply
    }
}

impl TestApp {
    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    /// A client signed in as the bootstrap platform admin.
    pub async fn admin(&self) -> Client {
        self.signed_in(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    pub async fn signed_in(&self, email: &str, password: &str) -> Client {
        let mut client = self.client();
        client.login(email, password).await.expect(200);
        client
    }

    /// Creates a user (as admin) and returns a client signed in as them.
    pub async fn user(&self, admin: &Client, email: &str) -> Client {
        let password = format!("pw-{email}-secret");
        admin
            .post("/api/v1/users", json!({"email": email, "display_name": email, "password": password}))
            .await
            .expect(201);
        self.signed_in(email, &password).await
    }

    /// Creates a tenant with `admin` (a platform admin, who becomes its first admin member) and
    /// adds members with roles. When one of them is an admin, the platform admin then steps
    /// back out of the membership (keeping platform rights), so the tenant's members are exactly
    /// those named.
    pub async fn tenant(&self, admin: &Client, slug: &str, members: &[(&str, &str)]) {
        let created = admin.post("/api/v1/tenants", json!({"slug": slug, "display_name": slug})).await.expect(201);
        assert_eq!(created["role"], "admin", "the creator is the tenant's first admin");
        for (email, role) in members {
            admin
                .post(&format!("/api/v1/tenants/{slug}/members"), json!({"email": email, "role": role}))
                .await
                .expect(201);
        }
        if members.iter().any(|(_, role)| *role == "admin") {
            let me = admin.get("/api/v1/me").await.expect(200);
            let email = me["user"]["email"].as_str().unwrap().to_owned();
            if !members.iter().any(|(e, _)| *e == email) {
                admin.delete(&format!("/api/v1/tenants/{slug}/members/{email}")).await.expect(204);
            }
        }
    }
}
