//! Real MCP upstreams for the tests: a server built with the official Rust SDK (rmcp), and
//! the reference server `@modelcontextprotocol/server-everything` (npm, in tests/peers).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_router, ErrorData};

#[derive(Clone, Default)]
pub struct Fixture;

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// Text to send back.
    pub message: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    pub a: i64,
    pub b: i64,
}

#[tool_router(server_handler)]
impl Fixture {
    #[tool(description = "Echo a message back")]
    fn echo(&self, Parameters(EchoArgs { message }): Parameters<EchoArgs>) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(message)]))
    }

    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text((a + b).to_string())]))
    }
}

/// Starts the rmcp fixture on a random port; returns its MCP endpoint URL.
pub async fn rmcp_upstream() -> String {
    let service = StreamableHttpService::new(
        || Ok(Fixture),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://127.0.0.1:{port}/mcp")
}

/// The rmcp fixture behind a check of its own: every request must carry a JWT of `issuer` for
/// `audience`, verified against the provider's published keys (as an upstream that trusts the
/// organisation's identity provider does). Returns its MCP endpoint URL.
pub async fn jwt_guarded_upstream(issuer: String, audience: String) -> String {
    let service = StreamableHttpService::new(
        || Ok(Fixture),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let guard = move |request: axum::extract::Request, next: axum::middleware::Next| {
        let (issuer, audience) = (issuer.clone(), audience.clone());
        async move {
            let token = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned);
            let verified = match token {
                Some(token) => {
                    let keys: jsonwebtoken::jwk::JwkSet =
                        reqwest::get(format!("{issuer}/jwks")).await.unwrap().json().await.unwrap();
                    let header = jsonwebtoken::decode_header(&token).ok();
                    let key = header.as_ref().and_then(|h| keys.find(h.kid.as_deref()?));
                    key.and_then(|k| jsonwebtoken::DecodingKey::from_jwk(k).ok()).is_some_and(|key| {
                        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                        validation.set_issuer(&[issuer.as_str()]);
                        validation.set_audience(&[audience.as_str()]);
                        jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).is_ok()
                    })
                }
                None => false,
            };
            if verified {
                next.run(request).await
            } else {
                axum::response::IntoResponse::into_response((
                    axum::http::StatusCode::UNAUTHORIZED,
                    "a valid JWT is required",
                ))
            }
        }
    };
    let router = axum::Router::new().nest_service("/mcp", service).layer(axum::middleware::from_fn(guard));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://127.0.0.1:{port}/mcp")
}

/// A running `server-everything`, killed on drop.
pub struct Everything {
    child: Child,
    pub url: String,
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts server-everything in `streamableHttp` or `sse` mode and waits until it accepts
/// connections.
pub fn everything(mode: &str) -> Everything {
    let entry = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(entry.exists(), "server-everything is not installed: run `npm ci --prefix tests/peers`");
    let path = if mode == "sse" { "sse" } else { "mcp" };
    node_peer(&entry, &[mode], path)
}

/// Starts the TypeScript SDK v2 upstream (tests/peers/v2-upstream.mjs, protocol revision
/// 2026-07-28) as `dual` (it also serves 2025-era requests) or `modern-only`.
pub fn v2_upstream(posture: &str) -> Everything {
    let entry = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/v2-upstream.mjs");
    node_peer(&entry, &[posture], "mcp")
}

/// Starts the TypeScript SDK v2 conformance server (tests/peers/v2-everything.mjs), refusing
/// 2025-era requests.
pub fn v2_everything_modern_only() -> Everything {
    let entry = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/v2-everything.mjs");
    node_peer(&entry, &["--modern-only"], "mcp")
}

/// Starts a Node peer on a free port (given as `PORT`) and waits until it accepts connections.
fn node_peer(entry: &std::path::Path, args: &[&str], path: &str) -> Everything {
    // The port is free when picked but not held: another test may bind it before node does,
    // and then node exits (EADDRINUSE) while the port answers for someone else. Such a start
    // is seen by node having exited, and is retried on another port.
    for _ in 0..5 {
        let port = free_port();
        #[allow(clippy::zombie_processes)] // Everything's Drop kills and waits for it
        let child = Command::new("node")
            .arg(entry)
            .args(args)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is installed");
        let mut server = Everything { child, url: format!("http://127.0.0.1:{port}/{path}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut exited = false;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{} did not start", entry.display());
            exited = server.child.try_wait().ok().flatten().is_some();
            if exited {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !exited {
            std::thread::sleep(Duration::from_millis(200));
            exited = server.child.try_wait().ok().flatten().is_some();
        }
        if !exited {
            return server;
        }
    }
    panic!("{} did not start on any of five ports", entry.display());
}

/// A TCP port that accepts connections and never answers: an upstream that hangs.
pub fn black_hole() -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(8) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    (format!("http://127.0.0.1:{port}/mcp"), handle)
}

/// A port with nothing listening. Port 1 (tcpmux) is privileged and unused here, so unlike a
/// freed ephemeral port it cannot be taken by another test's listener in the meantime.
pub fn closed_port_url() -> String {
    "http://127.0.0.1:1/mcp".to_owned()
}
