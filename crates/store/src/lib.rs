//! Persistence: sea-orm entities and the connection. SQLite by default, PostgreSQL when the
//! database URL says so; both run the same migrations.

pub mod entities;

use std::time::Duration;

use mcpgate_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

/// Opens the pool. SQLite gets WAL (readers never block the writer), foreign keys and a busy
/// timeout so concurrent writers wait instead of failing; `synchronous=NORMAL` is durable
/// across process crashes in WAL mode, which is the failure a gateway process sees.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    // SQLite has one writer, and a deferred transaction that reads and then writes fails at
    // once (SQLITE_BUSY_SNAPSHOT, no busy wait) when another connection committed in between;
    // sea-orm cannot open `BEGIN IMMEDIATE` transactions, so SQLite gets one connection and
    // statements queue in the pool instead. PostgreSQL uses the configured pool.
    let max_connections = if url.starts_with("sqlite:") { 1 } else { max_connections };
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        // Statements carry digests and hashes as parameters; keep them out of the logs.
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
        });
    Database::connect(options).await
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Number of migrations not yet applied.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<usize, DbErr> {
    Ok(Migrator::get_pending_migrations(db).await?.len())
}

pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}
