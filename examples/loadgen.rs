//! A small MCP load generator for `bench/load`: N workers, each with one keep-alive
//! connection and one MCP session, call a tool in a loop for a fixed time and report latency
//! percentiles and throughput as one JSON line.
//!
//! `loadgen call URL [--token T] [--concurrency N] [--seconds S] [--warmup S]`
//! `loadgen sessions URL [--token T] [--count N]` opens N sessions and leaves them idle.
//! `loadgen soak URL,URL… [--token T] [--streams N] [--concurrency C] [--seconds S]` holds N
//! server-to-client SSE streams open across the URLs (one session each) while C workers call a
//! tool, for S seconds. Like a load balancer, a call that cannot reach one URL (refused,
//! reset) is sent to the next, and a stream that ends is reopened on the next URL; what
//! happened is reported per URL.
//! `loadgen api BASE_URL --login EMAIL:PASSWORD --mix read|write [--concurrency N] [--seconds S]`
//! drives the control plane's REST API as a signed-in admin (one session, shared): `read`
//! lists and reads servers and tokens; `write` creates and revokes a token and renames a
//! server, then lists the servers (three writes to one read). Requests, not iterations, count.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark tool fails loudly

use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Args {
    mode: String,
    url: String,
    token: Option<String>,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
    count: usize,
    streams: usize,
    login: Option<String>,
    mix: String,
}

fn args() -> Args {
    let mut raw = std::env::args().skip(1);
    let mode = raw.next().unwrap_or_default();
    let url = raw.next().unwrap_or_default();
    let mut parsed = Args {
        mode,
        url,
        token: None,
        concurrency: 1,
        seconds: 5.0,
        warmup: 1.0,
        count: 1000,
        streams: 1000,
        login: None,
        mix: "read".into(),
    };
    while let Some(flag) = raw.next() {
        let value = raw.next().unwrap_or_default();
        match flag.as_str() {
            "--token" => parsed.token = Some(value),
            "--concurrency" => parsed.concurrency = value.parse().unwrap_or(1),
            "--seconds" => parsed.seconds = value.parse().unwrap_or(5.0),
            "--warmup" => parsed.warmup = value.parse().unwrap_or(1.0),
            "--count" => parsed.count = value.parse().unwrap_or(1000),
            "--streams" => parsed.streams = value.parse().unwrap_or(1000),
            "--login" => parsed.login = Some(value),
            "--mix" => parsed.mix = value,
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!parsed.url.is_empty(), "usage: loadgen call|sessions|soak|api URL [flags]");
    parsed
}

struct Session {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    id: Option<String>,
}

impl Session {
    /// Sends a request with the session's token, id and protocol version; a transport failure
    /// (refused, reset) is told apart from an error answer.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let mut req = req.header("mcp-protocol-version", "2025-11-25");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = &self.id {
            req = req.header("mcp-session-id", id);
        }
        let res = req.send().await.map_err(|e| format!("transport: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        Ok(res)
    }

    async fn post(&self, body: &Value) -> Result<(Option<String>, String), String> {
        let req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        let res = self.send(req).await?;
        let id = res.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((id, res.text().await.map_err(|e| format!("transport: {e}"))?))
    }

    /// The session's server-to-client SSE stream (GET), read until it ends.
    async fn listen(&self) -> Result<reqwest::Response, String> {
        self.send(self.http.get(&self.url).header("accept", "text/event-stream")).await
    }

    async fn open(url: &str, token: Option<String>) -> Result<Self, String> {
        // One connection per worker, kept alive.
        let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().map_err(|e| e.to_string())?;
        let mut session = Session { http, url: url.to_owned(), token, id: None };
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "loadgen", "version": "1"}}});
        let (id, _) = session.post(&init).await?;
        session.id = id;
        session.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        Ok(session)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank].as_secs_f64() * 1000.0
}

async fn call(a: &Args) {
    let mut workers = Vec::new();
    let start_at = Instant::now() + Duration::from_millis(200);
    let measure_from = start_at + Duration::from_secs_f64(a.warmup);
    let stop_at = measure_from + Duration::from_secs_f64(a.seconds);
    for worker in 0..a.concurrency {
        let (url, token) = (a.url.clone(), a.token.clone());
        workers.push(tokio::spawn(async move {
            let session = Session::open(&url, token).await.expect("initialize");
            tokio::time::sleep_until(start_at.into()).await;
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            loop {
                let now = Instant::now();
                if now >= stop_at {
                    break;
                }
                n += 1;
                let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"message": format!("w{worker} n{n}")}}});
                let ok = matches!(session.post(&body).await, Ok((_, text)) if text.contains("\"result\""));
                let took = now.elapsed();
                if now >= measure_from {
                    if ok {
                        latencies.push(took);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.expect("worker");
        all.extend(l);
        errors += e;
    }
    all.sort();
    let report = json!({
        "concurrency": a.concurrency,
        "requests": all.len(),
        "errors": errors,
        "rps": all.len() as f64 / a.seconds,
        "p50_ms": percentile(&all, 50.0),
        "p99_ms": percentile(&all, 99.0),
    });
    println!("{report}");
}

async fn sessions(a: &Args) {
    let mut open = Vec::new();
    for _ in 0..a.count {
        open.push(Session::open(&a.url, a.token.clone()).await.expect("initialize"));
    }
    println!("{}", json!({"sessions": open.len()}));
    // Hold them (and their connections) until killed.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    drop(open);
}

#[derive(Default, serde::Serialize)]
struct PerUrl {
    url: String,
    calls_ok: u64,
    /// Answers that came back wrong: an HTTP error status or a JSON-RPC error.
    calls_failed: u64,
    /// Calls that could not reach this URL and went to the next.
    calls_moved: u64,
    streams_opened: u64,
    /// Streams that ended before the run did (a restart drains them).
    streams_ended: u64,
    stream_open_failures: u64,
}

async fn soak(a: &Args) {
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};
    let urls: Vec<String> = a.url.split(',').map(str::to_owned).collect();
    let stats =
        Arc::new(Mutex::new(urls.iter().map(|u| PerUrl { url: u.clone(), ..Default::default() }).collect::<Vec<_>>()));
    let stop_at = Instant::now() + Duration::from_secs_f64(a.seconds);
    let transport = |e: &str| e.starts_with("transport:");

    let mut tasks = Vec::new();
    for i in 0..a.streams {
        let (urls, token, stats) = (urls.clone(), a.token.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            let mut at = i % urls.len();
            while Instant::now() < stop_at {
                let opened = match Session::open(&urls[at], token.clone()).await {
                    Ok(session) => session.listen().await.map(|res| (session, res)),
                    Err(e) => Err(e),
                };
                match opened {
                    Ok((_session, res)) => {
                        stats.lock().unwrap()[at].streams_opened += 1;
                        let mut body = res.bytes_stream();
                        let ended = loop {
                            match tokio::time::timeout_at(stop_at.into(), body.next()).await {
                                Err(_) => break false, // the run is over, the stream still open
                                Ok(Some(Ok(_))) => continue,
                                Ok(_) => break true,
                            }
                        };
                        if !ended {
                            return;
                        }
                        stats.lock().unwrap()[at].streams_ended += 1;
                    }
                    Err(_) => {
                        stats.lock().unwrap()[at].stream_open_failures += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                at = (at + 1) % urls.len();
            }
        }));
        // Open them at a pace the upstream's session set-up keeps up with.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (urls, token, stats) = (urls.clone(), a.token.clone(), stats.clone());
        workers.push(tokio::spawn(async move {
            let mut sessions: Vec<Option<Session>> = (0..urls.len()).map(|_| None).collect();
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < stop_at {
                n += 1;
                let mut at = (w + n as usize) % urls.len();
                // Each call tries every URL at most once, like a load balancer's retry.
                for _ in 0..urls.len() {
                    if sessions[at].is_none() {
                        match Session::open(&urls[at], token.clone()).await {
                            Ok(s) => sessions[at] = Some(s),
                            Err(e) if transport(&e) => {
                                stats.lock().unwrap()[at].calls_moved += 1;
                                at = (at + 1) % urls.len();
                                continue;
                            }
                            Err(_) => {
                                stats.lock().unwrap()[at].calls_failed += 1;
                                break;
                            }
                        }
                    }
                    let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"message": format!("w{w} n{n}")}}});
                    let started = Instant::now();
                    let result = sessions[at].as_ref().unwrap().post(&body).await;
                    match result {
                        Ok((_, text)) if text.contains("\"result\"") => {
                            latencies.push(started.elapsed());
                            stats.lock().unwrap()[at].calls_ok += 1;
                            break;
                        }
                        Err(e) if transport(&e) => {
                            // The connection is gone (a restart): a new session elsewhere.
                            sessions[at] = None;
                            stats.lock().unwrap()[at].calls_moved += 1;
                            at = (at + 1) % urls.len();
                        }
                        Ok((_, text)) => {
                            eprintln!("call failed at {}: {text}", urls[at]);
                            stats.lock().unwrap()[at].calls_failed += 1;
                            break;
                        }
                        Err(e) => {
                            eprintln!("call failed at {}: {e}", urls[at]);
                            sessions[at] = None;
                            stats.lock().unwrap()[at].calls_failed += 1;
                            break;
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    for t in tasks {
        t.await.expect("stream");
    }
    all.sort();
    let per_url = std::mem::take(&mut *stats.lock().unwrap());
    let report = json!({
        "streams": a.streams,
        "concurrency": a.concurrency,
        "seconds": a.seconds,
        "calls": all.len(),
        "rps": all.len() as f64 / a.seconds,
        "p50_ms": percentile(&all, 50.0),
        "p99_ms": percentile(&all, 99.0),
        "per_url": per_url,
    });
    println!("{report}");
}

/// A signed-in API session: its cookie and CSRF token.
struct ApiSession {
    cookie: String,
    csrf: String,
}

async fn api_login(base: &str, login: &str) -> ApiSession {
    let (email, password) = login.split_once(':').expect("--login EMAIL:PASSWORD");
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login");
    assert!(res.status().is_success(), "login: HTTP {}", res.status());
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ");
    let body: Value = res.json().await.expect("login body");
    ApiSession { cookie, csrf: body["csrf_token"].as_str().expect("csrf_token").to_owned() }
}

/// One API request; `Ok` with the body when the status is the expected one.
async fn api_request(
    http: &reqwest::Client,
    session: &ApiSession,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = http.request(method, url).header("cookie", &session.cookie).header("x-csrf-token", &session.csrf);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    if status == reqwest::StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    res.json().await.map_err(|e| e.to_string())
}

async fn api(a: &Args) {
    use reqwest::Method;
    let base = a.url.trim_end_matches('/').to_owned();
    let session = std::sync::Arc::new(api_login(&base, a.login.as_deref().expect("--login")).await);
    let write = match a.mix.as_str() {
        "read" => false,
        "write" => true,
        other => panic!("unknown mix {other:?}; use read or write"),
    };
    let start_at = Instant::now() + Duration::from_millis(200);
    let measure_from = start_at + Duration::from_secs_f64(a.warmup);
    let stop_at = measure_from + Duration::from_secs_f64(a.seconds);
    let mut workers = Vec::new();
    for worker in 0..a.concurrency {
        let (base, session) = (base.clone(), session.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let api = format!("{base}/api/v1");
            tokio::time::sleep_until(start_at.into()).await;
            let (mut latencies, mut errors, mut n) = (Vec::new(), 0u64, 0u64);
            let mut record = |started: Instant, ok: bool| {
                if started >= measure_from {
                    if ok {
                        latencies.push(started.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            };
            while Instant::now() < stop_at {
                n += 1;
                if write {
                    let t = Instant::now();
                    let created = api_request(
                        &http,
                        &session,
                        Method::POST,
                        format!("{api}/me/tokens"),
                        Some(json!({"name": format!("bench w{worker} n{n}")})),
                    )
                    .await;
                    record(t, created.is_ok());
                    if let Ok(created) = created {
                        let t = Instant::now();
                        let id = created["id"].as_str().unwrap_or_default();
                        let revoked =
                            api_request(&http, &session, Method::DELETE, format!("{api}/me/tokens/{id}"), None).await;
                        record(t, revoked.is_ok());
                    }
                    let t = Instant::now();
                    let renamed = api_request(
                        &http,
                        &session,
                        Method::PATCH,
                        format!("{api}/tenants/acme/servers/s{}", worker % 20),
                        Some(json!({"display_name": format!("Server w{worker} n{n}")})),
                    )
                    .await;
                    record(t, renamed.is_ok());
                    let t = Instant::now();
                    let listed =
                        api_request(&http, &session, Method::GET, format!("{api}/tenants/acme/servers"), None).await;
                    record(t, listed.is_ok());
                } else {
                    for path in [
                        "tenants/acme/servers".to_owned(),
                        format!("tenants/acme/servers/s{}", (worker + n as usize) % 20),
                        "me/tokens".to_owned(),
                    ] {
                        let t = Instant::now();
                        let ok = api_request(&http, &session, Method::GET, format!("{api}/{path}"), None).await.is_ok();
                        record(t, ok);
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.expect("worker");
        all.extend(l);
        errors += e;
    }
    all.sort();
    let report = json!({
        "mix": a.mix,
        "concurrency": a.concurrency,
        "requests": all.len(),
        "errors": errors,
        "rps": all.len() as f64 / a.seconds,
        "p50_ms": percentile(&all, 50.0),
        "p99_ms": percentile(&all, 99.0),
    });
    println!("{report}");
}

#[tokio::main]
async fn main() {
    mcpgate::http_client::install_crypto_provider();
    let a = args();
    match a.mode.as_str() {
        "call" => call(&a).await,
        "sessions" => sessions(&a).await,
        "soak" => soak(&a).await,
        "api" => api(&a).await,
        other => panic!("unknown mode {other:?}; use call, sessions, soak or api"),
    }
}
