//! A minimal client for the legacy HTTP+SSE transport (protocol revision 2024-11-05), enough
//! to probe such an upstream: open the event stream, learn the message endpoint from the
//! `endpoint` event, POST requests there and read their responses from the stream.

use futures_util::StreamExt;
use reqwest::header::ACCEPT;
use serde_json::{json, Value};
use sse_stream::SseStream;

use crate::probe::ProbeFailure;
use crate::probe::{classify, failure, headers, Found};
use crate::servers::{ProbedTool, Upstream};

const LEGACY_REVISION: &str = "2024-11-05";

/// Upper bound on tools/list pages, against an upstream that never stops paginating.
const MAX_PAGES: usize = 100;

pub(crate) async fn probe(upstream: &Upstream, client: reqwest::Client) -> Result<Found, ProbeFailure> {
    let url = upstream.url.as_str();
    let extra = headers(upstream);
    let mut get = client.get(upstream.url.clone()).header(ACCEPT, "text/event-stream");
    for (k, v) in &extra {
        get = get.header(k, v);
    }
    let res = get.send().await.map_err(|e| classify(&e, url))?;
    if !res.status().is_success() {
        let status = res.status();
        let code = if status.as_u16() == 401 || status.as_u16() == 403 { "unauthorized" } else { "http_error" };
        return Err(failure(code, format!("{url} answered the event-stream request with HTTP {status}")));
    }
    let mut events = SseStream::from_bytes_stream(res.bytes_stream());

    let endpoint = loop {
        let event = events
            .next()
            .await
            .ok_or_else(|| {
                failure("protocol_error", format!("{url} closed the event stream before naming its endpoint"))
            })?
            .map_err(|e| failure("protocol_error", format!("{url} sent a malformed event stream: {e}")))?;
        if event.event.as_deref() == Some("endpoint") {
            let data = event.data.unwrap_or_default();
            break crate::proxy::legacy::message_endpoint(&upstream.url, &data)
                .map_err(|what| failure("protocol_error", format!("{url} named {what}")))?;
        }
    };

    let post = |message: Value| {
        let mut req = client.post(endpoint.clone()).json(&message);
        for (k, v) in &extra {
            req = req.header(k, v);
        }
        async move {
            let res = req.send().await.map_err(|e| classify(&e, url))?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err(failure("http_error", format!("{url} refused a message with HTTP {}", res.status())))
            }
        }
    };

    post(json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": LEGACY_REVISION,
            "capabilities": {},
            "clientInfo": {"name": "mcpgate-probe", "version": env!("CARGO_PKG_VERSION")}
        }
    }))
    .await?;
    let init = response(&mut events, 1, url).await?;
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;

    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..MAX_PAGES {
        let id = 2 + page as i64;
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params})).await?;
        let result = response(&mut events, id, url).await?;
        let listed: Vec<ProbedTool> = serde_json::from_value(result["tools"].clone())
            .map_err(|e| failure("protocol_error", format!("{url} sent an invalid tools/list result: {e}")))?;
        tools.extend(listed);
        cursor = result["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(Found {
        protocol_version: init["protocolVersion"].as_str().unwrap_or(LEGACY_REVISION).to_owned(),
        server_name: init["serverInfo"]["name"].as_str().map(str::to_owned),
        server_version: init["serverInfo"]["version"].as_str().map(str::to_owned),
        tools,
    })
}

/// Reads the stream until the response to request `id` arrives; returns its `result`.
async fn response<S>(events: &mut S, id: i64, url: &str) -> Result<Value, ProbeFailure>
where
    S: futures_util::Stream<Item = Result<sse_stream::Sse, sse_stream::Error>> + Unpin,
{
    while let Some(event) = events.next().await {
        let event =
            event.map_err(|e| failure("protocol_error", format!("{url} sent a malformed event stream: {e}")))?;
        if !matches!(event.event.as_deref(), None | Some("message")) {
            continue;
        }
        let Some(message) = event.data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) else { continue };
        if message["id"].as_i64() != Some(id) {
            continue;
        }
        if let Some(error) = message.get("error") {
            return Err(failure("protocol_error", format!("{url} answered with a JSON-RPC error: {error}")));
        }
        return Ok(message["result"].clone());
    }
    Err(failure("protocol_error", format!("{url} closed the event stream before answering")))
}
