//! `mcpgate proxy`: a standalone replica. It holds no database and no state of its own; it
//! long-polls the control plane for signed snapshots (verified against the published keys,
//! like the in-process proxy), serves only the MCP routes and health checks, and sends its
//! decisions back to the control plane's audit trail.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tracing_actix_web::TracingLogger;

use crate::credentials::{CredentialError, CredentialRequest, CredentialResolver, Resolved};
use crate::decisions::{DecisionLog, Destination};
use crate::failover::ControlPlanes;
use crate::holder::{PolicyHolder, Rejected};
use crate::routes::{ProxyConfig, ProxyState};
use crate::session::SessionSealer;
use mcpgate_policy::clock::Clock;
use mcpgate_policy::Jwks;

/// How long one long-poll asks the control plane to wait.
const WAIT_SECONDS: u64 = 30;

/// What a replica needs to know; the binary fills it from its settings.
pub struct ReplicaConfig {
    /// Address to bind, e.g. `127.0.0.1:8081`.
    pub listen: String,
    /// The gateway's public base URL (as the control plane's): gateway tokens name it.
    pub public_url: Option<String>,
    /// The control planes to follow, comma-separated; the next is used when one fails.
    pub control_plane: Option<String>,
    /// The key that reads snapshots and credentials from the control plane.
    pub proxy_key: Option<SecretString>,
    pub upstream_timeout_seconds: u32,
    pub max_concurrent: usize,
    pub allowed_origins: Vec<String>,
    pub rate_limit_per_minute: u32,
    pub egress: crate::egress::Egress,
    /// HTTP workers; 0 for one per core.
    pub workers: usize,
    /// Where to serve Prometheus `/metrics`; not served when unset.
    pub metrics_listen: Option<String>,
    /// How long requests and streams in flight may take to finish on SIGTERM, in seconds.
    pub shutdown_timeout_seconds: u32,
    /// Ask for snapshot updates as signed deltas (full snapshots otherwise).
    pub snapshot_deltas: bool,
}

/// The URL of a bound address (a wildcard bind is reached on loopback).
pub fn bound_base_url(bound: std::net::SocketAddr) -> String {
    let host = if bound.ip().is_unspecified() { "127.0.0.1".to_owned() } else { bound.ip().to_string() };
    format!("http://{host}:{}", bound.port())
}

pub struct Replica {
    port: u16,
    server: Server,
    pub policy: Arc<PolicyHolder>,
    metrics_port: Option<u16>,
    decisions: DecisionLog,
}

impl Replica {
    pub async fn build(settings: ReplicaConfig, clock: Clock) -> anyhow::Result<Self> {
        let control = settings
            .control_plane
            .clone()
            .context("a replica needs the control plane's URL: --control-plane or MCPGATE_CONTROL_PLANE")?;
        let planes = Arc::new(ControlPlanes::parse(&control)?);
        let proxy_key: SecretString = settings.proxy_key.clone().context(
            "a replica needs the proxy key: --proxy-key or MCPGATE_PROXY_KEY (`mcpgate proxy-key` prints it)",
        )?;
        let listener = TcpListener::bind(&settings.listen).with_context(|| format!("binding {}", settings.listen))?;
        let bound = listener.local_addr()?;
        let public_base = match &settings.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => bound_base_url(bound),
        };
        let policy = Arc::new(PolicyHolder::default());
        let client = crate::http_client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        tokio::spawn(follow(
            client.clone(),
            planes.clone(),
            proxy_key.clone(),
            policy.clone(),
            settings.snapshot_deltas,
        ));
        let decisions = DecisionLog::spawn(Destination::ControlPlane {
            client,
            planes: planes.clone(),
            proxy_key: proxy_key.clone(),
        });
        let flush = decisions.clone();
        let proxy = web::Data::new(ProxyState::new(
            policy.clone(),
            ProxyConfig {
                public_base,
                upstream_timeout: Duration::from_secs(u64::from(settings.upstream_timeout_seconds.max(1))),
                max_concurrent: settings.max_concurrent,
                allowed_origins: settings.allowed_origins.clone(),
                rate_limit_per_minute: settings.rate_limit_per_minute,
                idp_keys: Arc::new(crate::idp::IdpKeys::new(Arc::new(settings.egress.clone()))?),
                egress: Arc::new(settings.egress.clone()),
            },
            clock,
            SessionSealer::from_proxy_key(&proxy_key),
            decisions,
            Arc::new(RemoteResolver {
                client: crate::http_client::builder().timeout(Duration::from_secs(30)).build()?,
                planes,
                proxy_key: proxy_key.clone(),
            }),
        )?);
        let holder = web::Data::new(policy.clone());
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(holder.clone())
                .configure(|cfg| crate::routes::configure(cfg, proxy.clone()))
                .route(
                    "/healthz",
                    web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
                )
                .route("/readyz", web::get().to(ready))
                .wrap(TracingLogger::<crate::span::LeanSpan>::new())
        })
        .on_connect(crate::http_client::no_delay)
        .listen(listener)?
        .shutdown_timeout(u64::from(settings.shutdown_timeout_seconds));
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        let metrics_port = match &settings.metrics_listen {
            Some(listen) => {
                let (port, metrics) = crate::metrics::serve(listen)?;
                tokio::spawn(metrics);
                Some(port)
            }
            None => None,
        };
        Ok(Self { port: bound.port(), server: server.run(), policy, metrics_port, decisions: flush })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `/metrics` is served on, when it is.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Serves until a signal stops it; then sends the control plane the decisions it still
    /// holds (graceful shutdown, as `mcpgate serve`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.decisions.flush().await;
        result
    }
}

/// Credentials from the control plane's credential endpoint, authenticated by the proxy key.
struct RemoteResolver {
    client: reqwest::Client,
    planes: Arc<ControlPlanes>,
    proxy_key: SecretString,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Answer {
    Resolved(Resolved),
    Failed { error: CredentialError },
}

#[async_trait::async_trait]
impl CredentialResolver for RemoteResolver {
    async fn resolve(&self, request: &CredentialRequest) -> Result<Resolved, CredentialError> {
        let failed = |why: String| CredentialError::Unavailable {
            message: format!("the gateway could not fetch the upstream credential: {why}"),
        };
        // A control plane that is down or failing is skipped for the next.
        let response = self
            .planes
            .try_each(|base| {
                let sent = self
                    .client
                    .post(format!("{base}/api/v1/policy/credentials"))
                    .bearer_auth(self.proxy_key.expose_secret())
                    .json(request)
                    .send();
                async move {
                    let response = sent.await.map_err(|e| failed(e.without_url().to_string()))?;
                    if !response.status().is_success() {
                        return Err(failed(format!("the control plane answered {}", response.status())));
                    }
                    Ok(response)
                }
            })
            .await?;
        match response.json::<Answer>().await.map_err(|e| failed(e.without_url().to_string()))? {
            Answer::Resolved(resolved) => Ok(resolved),
            Answer::Failed { error } => Err(error),
        }
    }
}

async fn ready(holder: web::Data<Arc<PolicyHolder>>) -> HttpResponse {
    match holder.version() {
        Some(version) => HttpResponse::Ok().json(serde_json::json!({"status": "ready", "policy_version": version})),
        None => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "waiting", "message": "no verified policy snapshot yet"})),
    }
}

async fn fetch_keys(client: &reqwest::Client, control: &str) -> anyhow::Result<Jwks> {
    let res = client.get(format!("{control}/api/v1/policy/keys")).timeout(Duration::from_secs(10)).send().await?;
    anyhow::ensure!(res.status().is_success(), "the control plane answered {} for the keys", res.status());
    Ok(res.json().await?)
}

/// Follows the control plane forever: long-poll, verify, install; back off on failure. The last
/// good snapshot keeps serving whatever happens here.
async fn follow(
    client: reqwest::Client,
    planes: Arc<ControlPlanes>,
    proxy_key: SecretString,
    holder: Arc<PolicyHolder>,
    use_deltas: bool,
) {
    let mut keys: Option<Jwks> = None;
    let mut backoff = Duration::from_millis(250);
    let mut failures = 0;
    loop {
        let (index, control) = planes.current();
        match poll_once(&client, control, &proxy_key, &holder, &mut keys, use_deltas).await {
            Ok(()) => {
                backoff = Duration::from_millis(250);
                failures = 0;
            }
            Err(e) => {
                tracing::warn!(error = %e, control_plane = control, retry_in_ms = backoff.as_millis() as u64, "following the control plane failed");
                planes.failed(index);
                // The next control plane is tried at once; a full round of failures backs off.
                failures += 1;
                if failures % planes.len() == 0 {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// What the control plane sends with `deltas=true` (the control plane's `SnapshotDeltas`).
#[derive(serde::Deserialize)]
struct Deltas {
    deltas: Vec<String>,
}

async fn poll_once(
    client: &reqwest::Client,
    control: &str,
    proxy_key: &SecretString,
    holder: &PolicyHolder,
    keys: &mut Option<Jwks>,
    use_deltas: bool,
) -> anyhow::Result<()> {
    let after = match holder.version() {
        Some(v) if use_deltas => format!("?after={v}&wait={WAIT_SECONDS}&deltas=true"),
        Some(v) => format!("?after={v}&wait={WAIT_SECONDS}"),
        None => String::new(),
    };
    let res = client
        .get(format!("{control}/api/v1/policy/snapshot{after}"))
        .bearer_auth(proxy_key.expose_secret())
        .timeout(Duration::from_secs(WAIT_SECONDS + 15))
        .send()
        .await?;
    match res.status().as_u16() {
        304 => return Ok(()),
        200 => {}
        401 | 403 => anyhow::bail!("the control plane refused the proxy key ({})", res.status()),
        other => anyhow::bail!("the control plane answered {other}"),
    }
    let is_deltas = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = res.text().await?;
    let metrics = crate::metrics::get();
    let kind = if is_deltas { "delta" } else { "full" };
    metrics.snapshot_bytes.get_or_create(&crate::metrics::KindLabels { kind: kind.into() }).inc_by(body.len() as u64);
    if keys.is_none() {
        *keys = Some(fetch_keys(client, control).await?);
    }
    if is_deltas {
        let deltas: Deltas = serde_json::from_str(&body)?;
        return match apply_deltas(holder, &deltas.deltas, client, control, keys).await {
            Ok(version) => {
                tracing::debug!(version, "policy snapshot in force (from deltas)");
                Ok(())
            }
            Err(e) => {
                // The snapshot in force keeps serving; the full document puts things right.
                tracing::warn!(error = %e, "a policy snapshot delta was refused; fetching the full snapshot");
                fetch_full(client, control, proxy_key, holder, keys).await
            }
        };
    }
    offer_full(holder, &body, client, control, keys).await
}

async fn apply_deltas(
    holder: &PolicyHolder,
    deltas: &[String],
    client: &reqwest::Client,
    control: &str,
    keys: &mut Option<Jwks>,
) -> Result<i64, Rejected> {
    let mut version = holder.version().unwrap_or(0);
    for delta in deltas {
        version = verified(client, control, keys, |keys| holder.offer_delta(delta, keys)).await?;
    }
    Ok(version)
}

/// `offer` of a signed document (a snapshot, a delta) under the keys read so far. One that
/// does not verify may be signed by a key rotated in since: the keys are read again, once.
async fn verified(
    client: &reqwest::Client,
    control: &str,
    keys: &mut Option<Jwks>,
    offer: impl Fn(&Jwks) -> Result<i64, Rejected>,
) -> Result<i64, Rejected> {
    let result = offer(keys.as_ref().unwrap_or(&Jwks::default()));
    if !matches!(result, Err(Rejected::Invalid(_))) {
        return result;
    }
    match fetch_keys(client, control).await {
        Ok(fresh) => offer(keys.insert(fresh)),
        Err(e) => {
            tracing::warn!(error = %e, "reading the control plane's keys again failed");
            result
        }
    }
}

/// The newest full snapshot, without waiting.
async fn fetch_full(
    client: &reqwest::Client,
    control: &str,
    proxy_key: &SecretString,
    holder: &PolicyHolder,
    keys: &mut Option<Jwks>,
) -> anyhow::Result<()> {
    let res = client
        .get(format!("{control}/api/v1/policy/snapshot"))
        .bearer_auth(proxy_key.expose_secret())
        .timeout(Duration::from_secs(30))
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "the control plane answered {} for the snapshot", res.status());
    let body = res.text().await?;
    crate::metrics::get()
        .snapshot_bytes
        .get_or_create(&crate::metrics::KindLabels { kind: "full".into() })
        .inc_by(body.len() as u64);
    offer_full(holder, &body, client, control, keys).await
}

async fn offer_full(
    holder: &PolicyHolder,
    document: &str,
    client: &reqwest::Client,
    control: &str,
    keys: &mut Option<Jwks>,
) -> anyhow::Result<()> {
    match verified(client, control, keys, |keys| holder.offer(document, keys)).await {
        Ok(version) => {
            tracing::debug!(version, "policy snapshot in force");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
