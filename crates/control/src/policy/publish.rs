//! Publication: after every committed change the policy version in `policy_state` is ahead of
//! the newest stored snapshot; the publisher compiles the store at that version, signs it with
//! the active key, stores it in the history and hands it to subscribers (long-polls, the
//! in-process proxy). Changes close together are coalesced into one snapshot.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    AccessMode, ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, IsolationLevel, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::json;
use tokio::sync::{watch, Notify};

use crate::auth::seal::{Place, Sealer};
use crate::lease::Leadership;
use crate::policy::compile::compile;
use crate::policy::sign::{self, KeyMaterial};
use crate::policy::Jwks;
use crate::store::entities::{audit_events, policy_snapshots, policy_state, signing_keys};

pub const KEY_ACTIVE: &str = "active";
pub const KEY_PUBLISHED: &str = "published";
pub const KEY_RETIRED: &str = "retired";

/// How long after a change the publisher waits for more changes to fold into one snapshot.
const COALESCE: Duration = Duration::from_millis(100);
/// Fallback interval, for changes made by another process (the CLI).
const RECHECK: Duration = Duration::from_millis(500);
/// How often a control plane that does not publish looks for a newer stored snapshot.
const FOLLOW: Duration = Duration::from_millis(250);

/// A stored, signed snapshot.
#[derive(Clone, Debug)]
pub struct Published {
    pub version: i64,
    pub issued_at: DateTime<Utc>,
    pub kid: String,
    pub document: Arc<str>,
}

impl From<policy_snapshots::Model> for Published {
    fn from(m: policy_snapshots::Model) -> Self {
        Self { version: m.version, issued_at: m.issued_at, kid: m.kid, document: m.document.into() }
    }
}

/// Bumps the policy version; called inside the transaction of every policy-relevant change.
pub async fn bump(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    policy_state::Entity::update_many()
        .col_expr(policy_state::Column::Version, Expr::col(policy_state::Column::Version).add(1))
        .filter(policy_state::Column::Id.eq(1))
        .exec(db)
        .await
        .map(|_| ())
}

/// The keys a verifier should trust: the active key and those still published.
pub async fn trusted_keys(db: &impl ConnectionTrait) -> Result<Jwks, DbErr> {
    let keys = signing_keys::Entity::find()
        .filter(signing_keys::Column::State.is_in([KEY_ACTIVE, KEY_PUBLISHED]))
        .order_by_asc(signing_keys::Column::Id)
        .all(db)
        .await?;
    Ok(Jwks {
        keys: keys
            .iter()
            .filter_map(|k| {
                use base64::Engine;
                let public = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&k.public_key).ok()?;
                Some(sign::Jwk::ed25519(&k.kid, &public))
            })
            .collect(),
    })
}

async fn store_key(db: &impl ConnectionTrait, sealer: &Sealer, now: DateTime<Utc>) -> anyhow::Result<KeyMaterial> {
    use base64::Engine;
    let key = KeyMaterial::generate()?;
    signing_keys::ActiveModel {
        kid: Set(key.kid.clone()),
        private_key: Set(sealer.seal_at(&key.pkcs8, &Place::signing_key(&key.kid))?),
        public_key: Set(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key.public)),
        state: Set(KEY_ACTIVE.to_owned()),
        created_at: Set(now),
        retired_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(key)
}

/// The active signing key, created on first use.
pub async fn active_key(db: &impl ConnectionTrait, sealer: &Sealer, now: DateTime<Utc>) -> anyhow::Result<KeyMaterial> {
    match signing_keys::Entity::find().filter(signing_keys::Column::State.eq(KEY_ACTIVE)).one(db).await? {
        Some(row) => {
            KeyMaterial::from_pkcs8(sealer.open_at(&row.private_key, &Place::signing_key(&row.kid))?, Some(row.kid))
        }
        None => store_key(db, sealer, now).await,
    }
}

/// Rotation: a new key becomes active; the previous one stays published (so snapshots and
/// tokens it signed still verify) until `retire`. Bumps the policy version so the new key
/// reaches the proxies in the next snapshot.
pub async fn rotate_key(db: &DatabaseConnection, sealer: &Sealer, now: DateTime<Utc>) -> anyhow::Result<String> {
    let txn = db.begin().await?;
    signing_keys::Entity::update_many()
        .col_expr(signing_keys::Column::State, Expr::value(KEY_PUBLISHED))
        .filter(signing_keys::Column::State.eq(KEY_ACTIVE))
        .exec(&txn)
        .await?;
    let key = store_key(&txn, sealer, now).await?;
    bump(&txn).await?;
    txn.commit().await?;
    Ok(key.kid)
}

/// Stops publishing keys other than the active one.
pub async fn retire_published_keys(db: &DatabaseConnection, now: DateTime<Utc>) -> anyhow::Result<u64> {
    let txn = db.begin().await?;
    let retired = signing_keys::Entity::update_many()
        .col_expr(signing_keys::Column::State, Expr::value(KEY_RETIRED))
        .col_expr(signing_keys::Column::RetiredAt, Expr::value(now))
        .filter(signing_keys::Column::State.eq(KEY_PUBLISHED))
        .exec(&txn)
        .await?
        .rows_affected;
    bump(&txn).await?;
    txn.commit().await?;
    Ok(retired)
}

pub async fn latest_stored(db: &impl ConnectionTrait) -> Result<Option<Published>, DbErr> {
    Ok(policy_snapshots::Entity::find()
        .order_by_desc(policy_snapshots::Column::Version)
        .one(db)
        .await?
        .map(Published::from))
}

/// A consistent read of the whole store: PostgreSQL needs REPEATABLE READ for that; a SQLite
/// transaction already reads one snapshot of the database.
async fn consistent_txn(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadWrite)).await
        }
        _ => db.begin().await,
    }
}

/// Publishes a snapshot if the policy version moved past the newest stored one.
pub async fn publish_if_changed(
    db: &DatabaseConnection,
    sealer: &Sealer,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Published>> {
    let txn = consistent_txn(db).await?;
    let version = policy_state::Entity::find_by_id(1).one(&txn).await?.map(|s| s.version).unwrap_or(0);
    let previous = latest_stored(&txn).await?;
    if previous.as_ref().is_some_and(|p| p.version >= version) {
        txn.commit().await?;
        return Ok(None);
    }
    let key = active_key(&txn, sealer, now).await?;
    let keys = trusted_keys(&txn).await?;
    let snapshot = compile(&txn, version, &key.kid, keys, now).await?;
    let document = sign::sign(&snapshot, &key)?;
    // What changed: the audited actions since the previous snapshot.
    let mut changes = audit_events::Entity::find().order_by_desc(audit_events::Column::Id).limit(50);
    if let Some(p) = &previous {
        changes = changes.filter(audit_events::Column::At.gt(p.issued_at));
    }
    let changes: Vec<String> =
        changes.all(&txn).await?.into_iter().map(|e| format!("{} {}", e.action, e.target)).collect();
    let row = policy_snapshots::ActiveModel {
        version: Set(version),
        issued_at: Set(now),
        kid: Set(key.kid.clone()),
        size: Set(document.len() as i64),
        summary: Set(json!({
            "previous_version": previous.as_ref().map(|p| p.version),
            "changes": changes,
            "servers": snapshot.servers.len(),
            "tokens": snapshot.tokens.len(),
        })),
        document: Set(document),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(Some(row.into()))
}

/// Holds the newest published snapshot for readers and wakes the publishing task.
pub struct Publisher {
    latest: watch::Sender<Option<Published>>,
    wake: Notify,
}

impl Default for Publisher {
    fn default() -> Self {
        Self { latest: watch::channel(None).0, wake: Notify::new() }
    }
}

impl Publisher {
    pub fn latest(&self) -> Option<Published> {
        self.latest.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Published>> {
        self.latest.subscribe()
    }

    /// A change was committed: publish soon.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    pub fn set(&self, published: Published) {
        self.latest.send_if_modified(|current| {
            if current.as_ref().is_some_and(|c| c.version >= published.version) {
                false
            } else {
                *current = Some(published);
                true
            }
        });
    }

    /// Publishes now if needed (startup, tests), then keeps publishing on every poke.
    pub async fn publish_now(
        &self,
        db: &DatabaseConnection,
        sealer: &Sealer,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if let Some(published) = publish_if_changed(db, sealer, now).await? {
            self.set(published);
        } else if self.latest().is_none() {
            if let Some(stored) = latest_stored(db).await? {
                self.set(stored);
            }
        }
        Ok(())
    }

    /// Brings the latest snapshot up to every committed change: the publisher publishes now;
    /// a follower waits (up to `patience`) for the publisher to store that version.
    pub async fn catch_up(
        &self,
        db: &DatabaseConnection,
        sealer: &Sealer,
        now: DateTime<Utc>,
        leadership: &Leadership,
        patience: Duration,
    ) -> anyhow::Result<()> {
        if leadership.is_publisher() {
            return self.publish_now(db, sealer, now).await;
        }
        let wanted = policy_state::Entity::find_by_id(1).one(db).await?.map(|s| s.version).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            self.follow_stored(db).await?;
            if self.latest().is_some_and(|p| p.version >= wanted) || tokio::time::Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Loads the newest snapshot another control plane stored, if it is newer than ours.
    pub async fn follow_stored(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let ours = self.latest().map(|p| p.version);
        let newest: Option<i64> = policy_snapshots::Entity::find()
            .select_only()
            .column(policy_snapshots::Column::Version)
            .order_by_desc(policy_snapshots::Column::Version)
            .into_tuple()
            .one(db)
            .await?;
        if newest.is_some_and(|n| ours.is_none_or(|o| n > o)) {
            if let Some(stored) = latest_stored(db).await? {
                self.set(stored);
            }
        }
        Ok(())
    }

    /// The first snapshot, before serving: the publisher makes it (or finds it); a follower
    /// waits for the publisher to store one, or for the lease to come its way.
    pub async fn start(
        &self,
        db: &DatabaseConnection,
        sealer: &Sealer,
        clock: &crate::clock::Clock,
        leadership: &Leadership,
    ) -> anyhow::Result<()> {
        let mut tries: u32 = 0;
        loop {
            if leadership.is_publisher() {
                return self.publish_now(db, sealer, clock.now()).await;
            }
            self.follow_stored(db).await?;
            if self.latest().is_some() {
                return Ok(());
            }
            // Said at once, then every ten seconds.
            if tries.is_multiple_of(40) {
                tracing::info!("waiting for the publishing control plane's first policy snapshot");
            }
            tokio::time::sleep(FOLLOW).await;
            tries += 1;
        }
    }

    /// The publishing loop. The publisher wakes on a poke (or every half second), waits
    /// briefly so a burst of changes becomes one snapshot, and publishes; a follower reads
    /// what the publisher stored.
    pub async fn run(
        self: Arc<Self>,
        db: DatabaseConnection,
        sealer: Sealer,
        clock: crate::clock::Clock,
        leadership: Arc<Leadership>,
    ) {
        loop {
            if leadership.is_publisher() {
                let _ = tokio::time::timeout(RECHECK, self.wake.notified()).await;
                tokio::time::sleep(COALESCE).await;
                if let Err(e) = self.publish_now(&db, &sealer, clock.now()).await {
                    tracing::error!(error = format!("{e:#}"), "publishing the policy snapshot failed");
                    // Perhaps another process published this version while the lease moved.
                    self.follow_stored(&db).await.ok();
                }
            } else {
                tokio::time::sleep(FOLLOW).await;
                if let Err(e) = self.follow_stored(&db).await {
                    tracing::warn!(error = %e, "reading the published policy snapshot failed");
                }
            }
        }
    }
}
