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
use crate::policy::delta::{self, ContentDigest};
use crate::policy::sign::{self, KeyMaterial};
use crate::policy::{Jwks, Snapshot};
use crate::store::entities::{audit_events, policy_snapshots, policy_state, signing_keys};
use crate::store::Db;

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
    /// The signed delta from the snapshot stored before this one, and that one's version.
    pub delta: Option<(i64, Arc<str>)>,
}

impl From<policy_snapshots::Model> for Published {
    fn from(m: policy_snapshots::Model) -> Self {
        let from = m.summary.get("previous_version").and_then(serde_json::Value::as_i64);
        Self {
            version: m.version,
            issued_at: m.issued_at,
            kid: m.kid,
            document: m.document.into(),
            delta: from.zip(m.delta).map(|(from, delta)| (from, delta.into())),
        }
    }
}

/// The snapshot the publisher stored last, as compiled, with its content digest: the base of
/// the next delta.
struct Compiled {
    snapshot: Snapshot,
    digest: ContentDigest,
}

/// How many versions back stored snapshots keep their full document.
const KEEP_DOCUMENTS: i64 = 100;

/// How many deltas a replica that is behind may be sent instead of the full snapshot.
pub const MAX_DELTA_CHAIN: u64 = 64;

/// The signed deltas that take a holder of version `after` to the newest stored snapshot, in
/// order, with that snapshot's version; `None` when they do not chain all the way (a snapshot
/// stored without one, a replica too far behind) or would be no smaller than the full document.
pub async fn delta_chain(db: &impl ConnectionTrait, after: i64) -> Result<Option<(i64, Vec<Arc<str>>)>, DbErr> {
    let rows: Vec<(i64, serde_json::Value, Option<String>, i64)> = policy_snapshots::Entity::find()
        .select_only()
        .columns([
            policy_snapshots::Column::Version,
            policy_snapshots::Column::Summary,
            policy_snapshots::Column::Delta,
            policy_snapshots::Column::Size,
        ])
        .filter(policy_snapshots::Column::Version.gt(after))
        .order_by_asc(policy_snapshots::Column::Version)
        .limit(MAX_DELTA_CHAIN + 1)
        .into_tuple()
        .all(db)
        .await?;
    if rows.is_empty() || rows.len() as u64 > MAX_DELTA_CHAIN {
        return Ok(None);
    }
    let mut chain = Vec::with_capacity(rows.len());
    let (mut at, mut bytes) = (after, 0usize);
    for (version, summary, delta, _) in &rows {
        let from = summary.get("previous_version").and_then(serde_json::Value::as_i64);
        match delta {
            Some(delta) if from == Some(at) => {
                bytes += delta.len();
                chain.push(Arc::from(delta.as_str()));
                at = *version;
            }
            _ => return Ok(None),
        }
    }
    let full = rows.last().map(|r| r.3).unwrap_or(0) as usize;
    Ok((bytes < full).then_some((at, chain)))
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

/// Creates the first signing key when there is none. Nothing secret is read: the publisher
/// asks every tick, and only a publication needs the key itself ([`active_key`]).
async fn ensure_active_key(db: &impl ConnectionTrait, sealer: &Sealer, now: DateTime<Utc>) -> anyhow::Result<()> {
    let active: Option<String> = signing_keys::Entity::find()
        .select_only()
        .column(signing_keys::Column::Kid)
        .filter(signing_keys::Column::State.eq(KEY_ACTIVE))
        .into_tuple()
        .one(db)
        .await?;
    if active.is_none() {
        store_key(db, sealer, now).await?;
    }
    Ok(())
}

/// Rotation: a new key becomes active; the previous one stays published (so snapshots and
/// tokens it signed still verify) until `retire`. Bumps the policy version so the new key
/// reaches the proxies in the next snapshot.
pub async fn rotate_key(db: &DatabaseConnection, sealer: &Sealer, now: DateTime<Utc>) -> anyhow::Result<String> {
    let txn = crate::store::begin_write(db).await?;
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
    let txn = crate::store::begin_write(db).await?;
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
async fn consistent_read(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await
        }
        _ => db.begin().await,
    }
}

/// Publishes a snapshot if the policy version moved past the newest stored one. The store is
/// compiled on a reading connection, so writers keep going while a large snapshot compiles;
/// only storing the result takes the writer. Callers serialise publications
/// ([`Publisher::publish_now`]).
async fn publish_if_changed(
    db: &Db,
    sealer: &Sealer,
    now: DateTime<Utc>,
    compiled: &mut Option<Compiled>,
) -> anyhow::Result<Option<Published>> {
    // Creating the first key is a write, which the reading side cannot do.
    ensure_active_key(&db.write, sealer, now).await?;
    let txn = consistent_read(&db.read).await?;
    let version = policy_state::Entity::find_by_id(1).one(&txn).await?.map(|s| s.version).unwrap_or(0);
    // The newest stored snapshot's version and time; its document is read only when a delta
    // needs it as a base (this runs every half second, and the document can be megabytes).
    let previous: Option<(i64, DateTime<Utc>)> = policy_snapshots::Entity::find()
        .select_only()
        .columns([policy_snapshots::Column::Version, policy_snapshots::Column::IssuedAt])
        .order_by_desc(policy_snapshots::Column::Version)
        .into_tuple()
        .one(&txn)
        .await?;
    if previous.is_some_and(|(stored, _)| stored >= version) {
        txn.commit().await?;
        return Ok(None);
    }
    let key = active_key(&txn, sealer, now).await?;
    let keys = trusted_keys(&txn).await?;
    let snapshot = compile(&txn, version, &key.kid, keys.clone(), now).await?;
    let document = sign::sign(&snapshot, &key)?;
    // The delta from the previous stored snapshot: from the one compiled here last, or after a
    // restart (or a change of publisher) from its stored document.
    let base = match (compiled.take(), previous) {
        (Some(c), Some((stored, _))) if c.snapshot.version == stored => Some(c),
        (_, Some(_)) => latest_stored(&txn)
            .await?
            .and_then(|p| sign::verify(&p.document, &keys).ok())
            .map(|snapshot| Compiled { digest: delta::content_digest(&snapshot), snapshot }),
        (_, None) => None,
    };
    let (delta, digest) = match &base {
        Some(base) => {
            let delta = delta::diff(&base.snapshot, base.digest, &snapshot);
            (Some(sign::sign_delta(&delta, &key)?), delta.digest)
        }
        None => (None, delta::content_digest(&snapshot)),
    };
    // What changed: the audited actions since the previous snapshot.
    let mut changes = audit_events::Entity::find().order_by_desc(audit_events::Column::Id).limit(50);
    if let Some((_, issued_at)) = previous {
        changes = changes.filter(audit_events::Column::At.gt(issued_at));
    }
    let changes: Vec<String> =
        changes.all(&txn).await?.into_iter().map(|e| format!("{} {}", e.action, e.target)).collect();
    txn.commit().await?;
    let row = policy_snapshots::ActiveModel {
        version: Set(version),
        issued_at: Set(now),
        kid: Set(key.kid.clone()),
        size: Set(document.len() as i64),
        summary: Set(json!({
            "previous_version": previous.map(|(stored, _)| stored),
            "changes": changes,
            "servers": snapshot.servers.len(),
            "tokens": snapshot.tokens.len(),
        })),
        document: Set(document),
        delta: Set(delta),
    }
    .insert(&db.write)
    .await?;
    // Only the newest document is ever served (a replica behind gets deltas or the newest in
    // full), so older ones are dropped rather than kept at full size for every change; their
    // row (version, size, summary, delta) stays as history.
    policy_snapshots::Entity::update_many()
        .col_expr(policy_snapshots::Column::Document, Expr::value(""))
        .filter(policy_snapshots::Column::Version.lte(version - KEEP_DOCUMENTS))
        .filter(policy_snapshots::Column::Document.ne(""))
        .exec(&db.write)
        .await?;
    *compiled = Some(Compiled { snapshot, digest });
    Ok(Some(row.into()))
}

/// Holds the newest published snapshot for readers and wakes the publishing task.
pub struct Publisher {
    latest: watch::Sender<Option<Published>>,
    wake: Notify,
    /// One publication at a time (the loop, start-up and pages that catch up all publish),
    /// holding the last compiled snapshot.
    publishing: tokio::sync::Mutex<Option<Compiled>>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self { latest: watch::channel(None).0, wake: Notify::new(), publishing: tokio::sync::Mutex::new(None) }
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
    pub async fn publish_now(&self, db: &Db, sealer: &Sealer, now: DateTime<Utc>) -> anyhow::Result<()> {
        let mut compiled = self.publishing.lock().await;
        if let Some(published) = publish_if_changed(db, sealer, now, &mut compiled).await? {
            self.set(published);
        } else if self.latest().is_none() {
            if let Some(stored) = latest_stored(&db.read).await? {
                self.set(stored);
            }
        }
        Ok(())
    }

    /// Brings the latest snapshot up to every committed change: the publisher publishes now;
    /// a follower waits (up to `patience`) for the publisher to store that version.
    pub async fn catch_up(
        &self,
        db: &Db,
        sealer: &Sealer,
        now: DateTime<Utc>,
        leadership: &Leadership,
        patience: Duration,
    ) -> anyhow::Result<()> {
        if leadership.is_publisher() {
            return self.publish_now(db, sealer, now).await;
        }
        let wanted = policy_state::Entity::find_by_id(1).one(&db.read).await?.map(|s| s.version).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            self.follow_stored(&db.read).await?;
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
        db: &Db,
        sealer: &Sealer,
        clock: &crate::clock::Clock,
        leadership: &Leadership,
    ) -> anyhow::Result<()> {
        let mut tries: u32 = 0;
        loop {
            if leadership.is_publisher() {
                return self.publish_now(db, sealer, clock.now()).await;
            }
            self.follow_stored(&db.read).await?;
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
    pub async fn run(self: Arc<Self>, db: Db, sealer: Sealer, clock: crate::clock::Clock, leadership: Arc<Leadership>) {
        loop {
            if leadership.is_publisher() {
                let _ = tokio::time::timeout(RECHECK, self.wake.notified()).await;
                tokio::time::sleep(COALESCE).await;
                if let Err(e) = self.publish_now(&db, &sealer, clock.now()).await {
                    tracing::error!(error = format!("{e:#}"), "publishing the policy snapshot failed");
                    // Perhaps another process published this version while the lease moved.
                    self.follow_stored(&db.read).await.ok();
                }
            } else {
                tokio::time::sleep(FOLLOW).await;
                if let Err(e) = self.follow_stored(&db.read).await {
                    tracing::warn!(error = %e, "reading the published policy snapshot failed");
                }
            }
        }
    }
}
