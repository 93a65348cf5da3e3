//! Every proxy decision (allowed, denied and why, upstream outcome and latency) becomes an
//! audit event carrying the snapshot version that made it. The request path only pushes onto a
//! bounded channel; a background task writes batches — to a [`DecisionSink`] the control plane
//! provides in `mcpgate serve` (its store), or to the control plane's decision endpoint from a
//! standalone replica, which has no database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub const ACTION: &str = "mcp.request";
const CHANNEL: usize = 16 * 1024;
const BATCH: usize = 500;
/// How often queued events are written: fewer, larger writes under load.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub at: DateTime<Utc>,
    /// Unknown tenants have no id.
    pub tenant_id: Option<i64>,
    pub tenant: String,
    pub server: String,
    /// `user:<email>`, `virtualaccount:<name>` or `anonymous`.
    pub actor: String,
    /// `allowed`, `denied` or `error`.
    pub outcome: String,
    /// Why: `unauthenticated`, `not_found`, `not_collaborator`, `tool_disabled`, `upstream_timeout`…
    pub reason: Option<String>,
    /// The JSON-RPC method, or the HTTP method for GET/DELETE.
    pub method: Option<String>,
    /// The tool or prompt name, or resource URI.
    pub name: Option<String>,
    pub snapshot_version: i64,
    pub upstream_status: Option<u16>,
    pub latency_ms: Option<f64>,
    pub request_id: Option<String>,
}

/// Where `mcpgate serve` keeps decisions: implemented by the control plane over its store.
#[async_trait::async_trait]
pub trait DecisionSink: Send + Sync {
    async fn write(&self, batch: Vec<Decision>) -> anyhow::Result<()>;
}

/// Where batches go.
pub enum Destination {
    Sink(Arc<dyn DecisionSink>),
    /// The control planes' decision endpoint, on the first of them that takes the batch.
    ControlPlane {
        client: reqwest::Client,
        planes: Arc<crate::failover::ControlPlanes>,
        proxy_key: SecretString,
    },
}

impl Destination {
    async fn write(&self, batch: Vec<Decision>) -> anyhow::Result<()> {
        match self {
            Self::Sink(sink) => sink.write(batch).await,
            Self::ControlPlane { client, planes, proxy_key } => {
                // Serialised once, straight from the batch (through a `Value` it cost a replica
                // 11 % of its instructions per call).
                let body = bytes::Bytes::from(serde_json::to_vec(&Batch { items: &batch })?);
                planes
                    .try_each(|base| {
                        let request = client
                            .post(format!("{base}/api/v1/policy/decisions"))
                            .bearer_auth(proxy_key.expose_secret())
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body.clone())
                            .timeout(Duration::from_secs(10));
                        async move {
                            let res = request.send().await?;
                            anyhow::ensure!(res.status().is_success(), "the control plane answered {}", res.status());
                            Ok(())
                        }
                    })
                    .await
            }
        }
    }
}

/// The decision endpoint's body.
#[derive(Serialize)]
struct Batch<'a> {
    items: &'a [Decision],
}

#[derive(Clone)]
pub struct DecisionLog {
    tx: mpsc::Sender<Decision>,
    dropped: Arc<AtomicU64>,
    /// Asks the writer to write what it holds now, and to say when it has.
    flushes: mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl DecisionLog {
    /// Starts the writer task.
    pub fn spawn(destination: Destination) -> Self {
        let (tx, mut rx) = mpsc::channel::<Decision>(CHANNEL);
        let (flushes, mut asked) = mpsc::channel::<tokio::sync::oneshot::Sender<()>>(8);
        let dropped = Arc::new(AtomicU64::new(0));
        let lost = dropped.clone();
        tokio::spawn(async move {
            // Drained on a timer rather than woken per event: a request never pays for a
            // cross-thread wake-up of the writer.
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut open = true;
            let mut flushable = true;
            while open {
                let ack = tokio::select! {
                    _ = tick.tick() => None,
                    ack = asked.recv(), if flushable => {
                        flushable = ack.is_some();
                        ack
                    }
                };
                let mut batch = Vec::new();
                loop {
                    match rx.try_recv() {
                        Ok(decision) => batch.push(decision),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                for chunk in batch.chunks(BATCH) {
                    if let Err(e) = destination.write(chunk.to_vec()).await {
                        tracing::warn!(error = %e, events = chunk.len(), "writing proxy audit events failed");
                    }
                }
                let missed = lost.swap(0, Ordering::Relaxed);
                if missed > 0 {
                    tracing::warn!(missed, "proxy audit events dropped: the writer could not keep up");
                }
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
        });
        Self { tx, dropped, flushes }
    }

    /// Writes every decision emitted so far and returns once they are written (or the
    /// destination refused them): the last step of a graceful shutdown.
    pub async fn flush(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        if self.flushes.send(ack).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Never blocks the request: when the writer is far behind the event is counted and dropped.
    pub fn emit(&self, decision: Decision) {
        if self.tx.try_send(decision).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
