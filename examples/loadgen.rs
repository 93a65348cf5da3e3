//! A small MCP load generator for `bench/load`: N workers, each with one keep-alive
//! connection and one MCP session, call a tool in a loop for a fixed time and report latency
//! percentiles and throughput as one JSON line.
//!
//! `loadgen call URL [--token T] [--concurrency N] [--seconds S] [--warmup S]`
//! `loadgen sessions URL [--token T] [--count N]` opens N sessions and leaves them idle.

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
}

fn args() -> Args {
    let mut raw = std::env::args().skip(1);
    let mode = raw.next().unwrap_or_default();
    let url = raw.next().unwrap_or_default();
    let mut parsed = Args { mode, url, token: None, concurrency: 1, seconds: 5.0, warmup: 1.0, count: 1000 };
    while let Some(flag) = raw.next() {
        let value = raw.next().unwrap_or_default();
        match flag.as_str() {
            "--token" => parsed.token = Some(value),
            "--concurrency" => parsed.concurrency = value.parse().unwrap_or(1),
            "--seconds" => parsed.seconds = value.parse().unwrap_or(5.0),
            "--warmup" => parsed.warmup = value.parse().unwrap_or(1.0),
            "--count" => parsed.count = value.parse().unwrap_or(1000),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!parsed.url.is_empty(), "usage: loadgen call|sessions URL [flags]");
    parsed
}

struct Session {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    id: Option<String>,
}

impl Session {
    async fn post(&self, body: &Value) -> Result<(Option<String>, String), String> {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = &self.id {
            req = req.header("mcp-session-id", id);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let id = res.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((id, res.text().await.map_err(|e| e.to_string())?))
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

#[tokio::main]
async fn main() {
    mcpgate::http_client::install_crypto_provider();
    let a = args();
    match a.mode.as_str() {
        "call" => call(&a).await,
        "sessions" => sessions(&a).await,
        other => panic!("unknown mode {other:?}; use call or sessions"),
    }
}
