//! Persistence: sea-orm entities and the connection. SQLite by default, PostgreSQL when the
//! database URL says so; both run the same migrations.

pub mod entities;

use std::time::Duration;

use mcpgate_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

/// The database as the gateway uses it. SQLite allows one writer at a time, so `write` is a
/// single connection (writes queue in its pool instead of failing on the lock) and `read` a
/// pool of read-only connections: in WAL mode they read a committed snapshot each and never
/// wait for the writer. On PostgreSQL both are the same pool.
#[derive(Clone, Debug)]
pub struct Db {
    pub write: DatabaseConnection,
    pub read: DatabaseConnection,
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        let write = connect(url, max_connections).await?;
        let read = connect_readers(url, &write, max_connections).await?;
        Ok(Self { write, read })
    }
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        // Statements carry digests and hashes as parameters; keep them out of the logs.
        .sqlx_logging(false);
    options
}

/// Opens the writing pool. SQLite gets WAL (readers never block the writer), foreign keys and
/// a busy timeout so writers in other processes (the CLI) wait instead of failing;
/// `synchronous=NORMAL` is durable across process crashes in WAL mode, which is the failure a
/// gateway process sees.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    // SQLite: the one writer. PostgreSQL: the configured pool, which also reads.
    let max_connections = if is_sqlite(url) { 1 } else { max_connections };
    let mut options = options(url, max_connections);
    options.map_sqlx_sqlite_opts(|opts| {
        opts.journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
    });
    Database::connect(options).await
}

/// The reading pool beside `writer`: on SQLite, `max_connections` connections of their own
/// that refuse to write (`query_only`, so a write sent to them by mistake fails loudly
/// instead of racing the writer); on PostgreSQL, the writer's pool itself.
pub async fn connect_readers(
    url: &str,
    writer: &DatabaseConnection,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    // An in-memory SQLite database exists once per connection: its readers are the writer.
    if !is_sqlite(url) || url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(writer.clone());
    }
    let mut options = options(url, max_connections.max(2));
    options.map_sqlx_sqlite_opts(|opts| {
        opts.create_if_missing(false).foreign_keys(true).busy_timeout(Duration::from_secs(5)).pragma("query_only", "ON")
    });
    Database::connect(options).await
}

/// Begins a write transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes the write lock at
/// once, so a transaction that reads and then writes never fails half-way (SQLITE_BUSY, no
/// busy wait) because another writer committed in between; it waits its turn instead.
pub async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
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
