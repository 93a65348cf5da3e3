//! Prometheus metrics of the process (`prometheus-client`): the proxy's requests and their
//! outcomes, upstream latency and errors, sessions and streams, the snapshot in force, and what
//! the control plane adds (tokens, grants, database). One registry per process, because the
//! places that count (the upstream client, the decision log, the publisher) are far apart and
//! all belong to the one process that exports them.
//!
//! Label sets are bounded: tenants and servers are registered ones (unknown ones are counted
//! under `-`), methods are MCP's own (anything else is `other`), reasons are `ProxyError`'s.
//! Tool names are not labels.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub tenant: String,
    pub server: String,
    pub method: String,
    pub outcome: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub tenant: String,
    pub server: String,
    pub tool: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// Seconds, from 0.5 ms to about 16 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    /// Every family's name (with the `mcpgate_` prefix) and type.
    families: Vec<(&'static str, &'static str)>,
    pub requests: Family<RequestLabels, Counter>,
    /// `tools/call` by tool name, for servers that opted in.
    pub tool_calls: Family<ToolLabels, Counter>,
    /// From the request's arrival to its decision (allowed: the upstream's response headers).
    pub request_seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// From sending to an upstream to its response headers.
    pub upstream_seconds: Histogram,
    pub upstream_errors: Family<KindLabels, Counter>,
    pub sessions_opened: Counter,
    pub open_streams: Gauge,
    pub in_flight: Gauge,
    pub rate_limited: Counter,
    pub snapshot_version: Gauge,
    /// Unix seconds of the snapshot in force (its age is `time() - this`).
    pub snapshot_issued: Gauge<f64, AtomicU64>,
    pub snapshot_rejected: Counter,
    /// Bytes of snapshot updates a replica received, by kind (`full`, `delta`).
    pub snapshot_bytes: Family<KindLabels, Counter>,
    pub tokens: Family<KindLabels, Gauge>,
    pub oauth_grants: Gauge,
    pub db_connections: Family<StateLabels, Gauge>,
    pub db_transaction_seconds: Histogram,
    /// 1 on the control plane that holds the publishing lease, 0 on the others.
    pub publisher: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("mcpgate");
        let m = Self {
            registry: Registry::default(),
            families: Vec::new(),
            requests: Family::default(),
            tool_calls: Family::default(),
            request_seconds: Family::new_with_constructor(latency),
            upstream_seconds: latency(),
            upstream_errors: Family::default(),
            sessions_opened: Counter::default(),
            open_streams: Gauge::default(),
            in_flight: Gauge::default(),
            rate_limited: Counter::default(),
            snapshot_version: Gauge::default(),
            snapshot_issued: Gauge::default(),
            snapshot_rejected: Counter::default(),
            snapshot_bytes: Family::default(),
            tokens: Family::default(),
            oauth_grants: Gauge::default(),
            db_connections: Family::default(),
            db_transaction_seconds: latency(),
            publisher: Gauge::default(),
        };
        let mut families = Vec::new();
        // Registered and listed together, so the list is what is exported.
        macro_rules! register {
            ($name:literal, $kind:literal, $help:expr, $metric:expr) => {{
                registry.register($name, $help, $metric.clone());
                families.push((concat!("mcpgate_", $name), $kind));
            }};
        }
        register!(
            "mcp_requests",
            "counter",
            "MCP messages decided by the proxy, by tenant, server, method, outcome and refusal reason",
            m.requests
        );
        register!(
            "mcp_tool_calls",
            "counter",
            "tools/call decisions by tool name, for servers whose managers opted in (other names count as `other`)",
            m.tool_calls
        );
        register!(
            "mcp_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its decision (for relayed requests, to the upstream's response headers)",
            m.request_seconds
        );
        register!(
            "upstream_response_seconds",
            "histogram",
            "Time from sending to an upstream to its response headers",
            m.upstream_seconds
        );
        register!(
            "upstream_errors",
            "counter",
            "Upstream requests that failed: timeout, unreachable, status, protocol",
            m.upstream_errors
        );
        register!("sessions_opened", "counter", "Gateway MCP sessions opened (initialize)", m.sessions_opened);
        register!("open_streams", "gauge", "Response streams (SSE) being relayed now", m.open_streams);
        register!("requests_in_flight", "gauge", "MCP requests being served now", m.in_flight);
        register!("rate_limited", "counter", "MCP requests refused by the per-identity budget", m.rate_limited);
        register!("snapshot_version", "gauge", "Version of the policy snapshot in force", m.snapshot_version);
        register!(
            "snapshot_issued_timestamp_seconds",
            "gauge",
            "When the policy snapshot in force was issued (Unix seconds)",
            m.snapshot_issued
        );
        register!(
            "snapshot_rejected",
            "counter",
            "Policy snapshots refused: bad signature, unknown key, older than the one in force",
            m.snapshot_rejected
        );
        register!(
            "snapshot_received_bytes",
            "counter",
            "Bytes of policy updates a replica received from the control plane: full snapshots and deltas",
            m.snapshot_bytes
        );
        register!("tokens", "gauge", "Live tokens by kind (personal, virtual_account)", m.tokens);
        register!("oauth_grants", "gauge", "Live sign-ins of MCP clients (refresh-token families)", m.oauth_grants);
        register!("db_connections", "gauge", "Database pool connections by state (idle, in_use)", m.db_connections);
        register!(
            "db_transaction_duration_seconds",
            "histogram",
            "Time from beginning an audited change to its commit",
            m.db_transaction_seconds
        );
        register!(
            "control_publisher",
            "gauge",
            "1 on the control plane that publishes snapshots and runs background jobs, 0 on the others",
            m.publisher
        );
        Self { registry, families, ..m }
    }

    /// The sample names a scrape can show: `_total` on counters; `_bucket`, `_sum` and `_count`
    /// on histograms.
    pub fn sample_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (name, kind) in &self.families {
            match *kind {
                "counter" => names.push(format!("{name}_total")),
                "histogram" => names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"))),
                _ => names.push((*name).to_owned()),
            }
        }
        names
    }

    /// The text exposition format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Serves `GET /metrics` on a listener of its own, never the public one: the metrics name
/// tenants and servers. Returns the bound port and the server to run.
pub fn serve(listen: &str) -> std::io::Result<(u16, actix_web::dev::Server)> {
    let listener = std::net::TcpListener::bind(listen)?;
    let port = listener.local_addr()?.port();
    let server =
        actix_web::HttpServer::new(|| actix_web::App::new().route("/metrics", actix_web::web::get().to(exposition)))
            .workers(1)
            .listen(listener)?
            .run();
    Ok((port, server))
}

async fn exposition() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(get().encode())
}

/// MCP's methods keep their name; anything else is `other`, so a client cannot grow the label
/// set by inventing methods.
pub fn method_label(method: Option<&str>) -> &'static str {
    const KNOWN: &[&str] = &[
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "server/discover",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
        "GET",
        "DELETE",
    ];
    match method {
        Some(m) => KNOWN.iter().find(|k| **k == m).copied().unwrap_or(if m.starts_with("notifications/") {
            "notifications/other"
        } else {
            "other"
        }),
        None => "none",
    }
}

/// An in-flight request or open stream, counted while this lives.
pub struct Tracked(&'static Gauge);

impl Tracked {
    pub fn stream() -> Self {
        get().open_streams.inc();
        Self(&get().open_streams)
    }

    pub fn request() -> Self {
        get().in_flight.inc();
        Self(&get().in_flight)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_a_bounded_label_set() {
        assert_eq!(method_label(Some("tools/call")), "tools/call");
        assert_eq!(method_label(Some("made/up/1")), "other");
        assert_eq!(method_label(Some("notifications/whatever")), "notifications/other");
        assert_eq!(method_label(None), "none");
    }

    #[test]
    fn the_exposition_names_every_family() {
        get()
            .requests
            .get_or_create(&RequestLabels {
                tenant: "t".into(),
                server: "s".into(),
                method: "tools/call".into(),
                outcome: "allowed".into(),
                reason: String::new(),
            })
            .inc();
        let text = get().encode();
        for name in
            ["mcpgate_mcp_requests_total", "mcpgate_upstream_response_seconds_bucket", "mcpgate_snapshot_version"]
        {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
