//! Which control plane publishes. Several `mcpgate serve` processes on one PostgreSQL database
//! all answer the API and the OAuth server, but only one at a time compiles and signs
//! snapshots and runs the background jobs: the one holding a PostgreSQL advisory lock on a
//! connection of its own. The lock is the connection's, so when the holder dies (even by
//! SIGKILL) the server releases it as the socket closes, and another process takes it on its
//! next try, within [`RETRY`]. With SQLite there is one process, and it always publishes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::{self, Connection, PgConnection};
use sea_orm::{DatabaseBackend, DatabaseConnection};

use crate::proxy::metrics;

/// The advisory-lock key of the publishing lease (an arbitrary constant: "mcpgate" in ASCII).
const LEASE_KEY: i64 = 0x006d_6370_6761_7465;
/// The advisory-lock key held while migrating and bootstrapping at start-up.
const STARTUP_KEY: i64 = LEASE_KEY + 1;
/// How often a follower tries to take the lease, and the holder checks it still has it.
pub const RETRY: Duration = Duration::from_secs(1);

/// This process's part: always the publisher (SQLite), or whoever holds the lease.
pub struct Leadership {
    url: Option<String>,
    held: AtomicBool,
}

impl Leadership {
    /// For the database `db` was opened on (`url`, needed for the lease's own connection).
    pub fn new(db: &DatabaseConnection, url: &str) -> Arc<Self> {
        let postgres = db.get_database_backend() == DatabaseBackend::Postgres;
        let me = Arc::new(Self { url: postgres.then(|| url.to_owned()), held: AtomicBool::new(!postgres) });
        metrics::get().publisher.set(i64::from(!postgres));
        me
    }

    /// Whether this process publishes snapshots and runs the background jobs now.
    pub fn is_publisher(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    fn set(&self, held: bool) {
        if self.held.swap(held, Ordering::AcqRel) != held {
            metrics::get().publisher.set(i64::from(held));
            if held {
                tracing::info!("this control plane now publishes policy snapshots and runs the background jobs");
            } else {
                tracing::warn!("this control plane lost the publishing lease; it follows the publisher now");
            }
        }
    }

    /// Tries once to take the lease; the connection that holds it is returned to keep.
    async fn try_take(url: &str) -> anyhow::Result<Option<PgConnection>> {
        let mut conn = PgConnection::connect(url).await?;
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEASE_KEY).fetch_one(&mut conn).await?;
        if taken {
            Ok(Some(conn))
        } else {
            conn.close().await.ok();
            Ok(None)
        }
    }

    /// Takes the lease now if it is free (at start-up, so a lone process publishes at once);
    /// the returned holder keeps it and must be handed to [`Leadership::run`].
    pub async fn acquire_now(&self) -> Holder {
        let Some(url) = &self.url else { return Holder(None) };
        match Self::try_take(url).await {
            Ok(Some(conn)) => {
                self.set(true);
                Holder(Some(conn))
            }
            Ok(None) => Holder(None),
            Err(e) => {
                tracing::warn!(error = %e, "taking the publishing lease failed");
                Holder(None)
            }
        }
    }

    /// Keeps the lease: the holder checks its connection every [`RETRY`] and steps down when
    /// it fails; a follower tries to take the lease as often.
    pub async fn run(self: Arc<Self>, mut holder: Holder) {
        let Some(url) = self.url.clone() else { return };
        let mut tick = tokio::time::interval(RETRY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match holder.0.as_mut() {
                Some(conn) => {
                    // The lock lives as long as this connection; a failed ping means it may
                    // already be someone else's.
                    let alive = tokio::time::timeout(RETRY * 3, sqlx::query("SELECT 1").execute(&mut *conn)).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        holder.0 = None;
                        self.set(false);
                    }
                }
                None => match Self::try_take(&url).await {
                    Ok(Some(conn)) => {
                        holder.0 = Some(conn);
                        self.set(true);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "taking the publishing lease failed"),
                },
            }
        }
    }
}

/// The connection that holds the lease, if this process holds it.
pub struct Holder(Option<PgConnection>);

/// Serialises start-up work (migrations, the first administrator) between control planes
/// starting together on one PostgreSQL database; nothing to do on SQLite. The lock is released
/// when the returned guard is closed or dropped.
pub async fn startup_lock(db: &DatabaseConnection, url: &str) -> anyhow::Result<StartupGuard> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(StartupGuard(None));
    }
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("SELECT pg_advisory_lock($1)").bind(STARTUP_KEY).execute(&mut conn).await?;
    Ok(StartupGuard(Some(conn)))
}

pub struct StartupGuard(Option<PgConnection>);

impl StartupGuard {
    pub async fn release(self) {
        if let Some(conn) = self.0 {
            // Closing the session releases its advisory locks.
            conn.close().await.ok();
        }
    }
}
