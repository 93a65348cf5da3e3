//! Personal access tokens and virtual-account tokens: issue, list, revoke, regenerate with a
//! grace period, and authenticate. Only digests are stored; a token's secret exists in the
//! response that created it and nowhere else.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use serde_json::json;

use crate::audit::{Actor, Change, Event};
use crate::auth::token::{self, TokenKind};
use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::page::{self, PageRequest, Paged};
use crate::store::entities::{access_tokens, tenants, users, virtual_accounts};

/// A token as created: the row and the secret, which is shown once.
pub struct Issued {
    pub row: access_tokens::Model,
    pub secret: String,
}

pub fn is_active(row: &access_tokens::Model, now: DateTime<Utc>) -> bool {
    row.revoked_at.is_none() && row.expires_at.is_none_or(|at| at > now)
}

async fn insert(
    db: &impl ConnectionTrait,
    kind: TokenKind,
    owner: (Option<i64>, Option<i64>),
    name: String,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Issued, DbErr> {
    let new = token::generate(kind);
    let row = access_tokens::ActiveModel {
        public_id: Set(uuid::Uuid::new_v4().to_string()),
        kind: Set(kind.as_str().to_owned()),
        user_id: Set(owner.0),
        virtual_account_id: Set(owner.1),
        name: Set(name),
        digest: Set(new.digest),
        prefix: Set(new.display_prefix),
        created_at: Set(now),
        expires_at: Set(expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
        pending_secret: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(Issued { row, secret: new.secret })
}

pub async fn issue_pat<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    user: &users::Model,
    name: String,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Issued> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let issued = insert(txn, TokenKind::PersonalAccess, (Some(user.id), None), name, expires_at, now).await?;
    let details = json!({"token_id": issued.row.public_id, "name": issued.row.name, "expires_at": expires_at});
    change.commit(Event::new("token.create", format!("user:{}", user.email)).details(details)).await?;
    Ok(issued)
}

pub async fn list_for_user(
    db: &impl ConnectionTrait,
    user_id: i64,
    page: PageRequest,
) -> Result<Paged<access_tokens::Model>> {
    let select = access_tokens::Entity::find().filter(access_tokens::Column::UserId.eq(user_id));
    Ok(page::fetch(db, select, access_tokens::Column::Id, |t| t.id, page).await?)
}

pub async fn list_for_virtual_account(
    db: &impl ConnectionTrait,
    va_id: i64,
    page: PageRequest,
) -> Result<Paged<access_tokens::Model>> {
    let select = access_tokens::Entity::find().filter(access_tokens::Column::VirtualAccountId.eq(va_id));
    Ok(page::fetch(db, select, access_tokens::Column::Id, |t| t.id, page).await?)
}

/// Which tokens an operation applies to.
#[derive(Clone, Copy)]
pub enum Owner {
    User(i64),
    VirtualAccount(i64),
}

impl Owner {
    fn condition(self) -> sea_orm::sea_query::SimpleExpr {
        match self {
            Self::User(id) => access_tokens::Column::UserId.eq(id),
            Self::VirtualAccount(id) => access_tokens::Column::VirtualAccountId.eq(id),
        }
    }
}

pub async fn find(db: &impl ConnectionTrait, owner: Owner, public_id: &str) -> Result<access_tokens::Model> {
    access_tokens::Entity::find()
        .filter(owner.condition())
        .filter(access_tokens::Column::PublicId.eq(public_id))
        .one(db)
        .await?
        .ok_or(Error::NotFound)
}

/// Revokes one token. Revoking a revoked token changes nothing.
pub async fn revoke<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: Option<&tenants::Model>,
    owner: Owner,
    public_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let row = find(txn, owner, public_id).await?;
    if row.revoked_at.is_none() {
        let target = format!("token:{}", row.public_id);
        let mut active: access_tokens::ActiveModel = row.into();
        active.revoked_at = Set(Some(now));
        active.pending_secret = Set(None);
        active.update(txn).await?;
        change.commit(Event::new("token.revoke", target).in_tenant(tenant)).await?;
    }
    // Already revoked: nothing changed, the transaction rolls back on drop.
    Ok(())
}

/// Revokes every live token of an owner; returns how many.
pub async fn revoke_all<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: Option<&tenants::Model>,
    owner: Owner,
    target: String,
    now: DateTime<Utc>,
) -> Result<u64> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let revoked = access_tokens::Entity::update_many()
        .col_expr(access_tokens::Column::RevokedAt, Expr::value(now))
        .col_expr(access_tokens::Column::PendingSecret, Expr::value(Option::<String>::None))
        .filter(owner.condition())
        .filter(access_tokens::Column::RevokedAt.is_null())
        .exec(txn)
        .await?
        .rows_affected;
    change
        .commit(Event::new("token.revoke_all", target).in_tenant(tenant).details(json!({"revoked": revoked})))
        .await?;
    Ok(revoked)
}

pub async fn issue_va_token<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    va: &virtual_accounts::Model,
    name: String,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Issued> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let issued = insert(txn, TokenKind::VirtualAccount, (None, Some(va.id)), name, expires_at, now).await?;
    let details = json!({"token_id": issued.row.public_id});
    change
        .commit(Event::new("token.create", format!("virtualaccount:{}", va.name)).tenant(tenant).details(details))
        .await?;
    Ok(issued)
}

/// Issues a new token for a virtual account; its other live tokens keep working for `grace`,
/// then stop. Runs inside the caller's change, which commits with the event returned.
pub async fn regenerate_in(
    txn: &impl ConnectionTrait,
    tenant: &tenants::Model,
    va: &virtual_accounts::Model,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<(Issued, Event)> {
    let until = now + grace;
    let live = access_tokens::Entity::find()
        .filter(access_tokens::Column::VirtualAccountId.eq(va.id))
        .filter(access_tokens::Column::RevokedAt.is_null())
        .all(txn)
        .await?;
    for row in live.into_iter().filter(|r| is_active(r, now)) {
        if row.expires_at.is_none_or(|at| at > until) {
            let mut active: access_tokens::ActiveModel = row.into();
            active.expires_at = Set(Some(until));
            active.update(txn).await?;
        }
    }
    let issued =
        insert(txn, TokenKind::VirtualAccount, (None, Some(va.id)), "regenerated".to_owned(), None, now).await?;
    let mut active: virtual_accounts::ActiveModel = va.clone().into();
    active.last_rotated_at = Set(Some(now));
    active.update(txn).await?;
    let details = json!({"token_id": issued.row.public_id, "previous_valid_until": until});
    let event = Event::new("token.regenerate", format!("virtualaccount:{}", va.name)).tenant(tenant).details(details);
    Ok((issued, event))
}

/// Finds the caller a presented bearer token stands for. `None` for anything malformed,
/// unknown, revoked or expired, or whose owner is disabled or expired.
pub async fn authenticate(
    db: &impl ConnectionTrait,
    presented: &str,
    now: DateTime<Utc>,
) -> Result<Option<(access_tokens::Model, Caller)>> {
    let Some(kind) = token::parse(presented) else { return Ok(None) };
    let Some(row) = access_tokens::Entity::find()
        .filter(access_tokens::Column::Digest.eq(token::digest(presented)))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if row.kind != kind.as_str() || !is_active(&row, now) {
        return Ok(None);
    }
    let caller = match (row.user_id, row.virtual_account_id) {
        (Some(user_id), _) => {
            users::Entity::find_by_id(user_id).one(db).await?.filter(|u| !u.disabled).map(Caller::User)
        }
        (None, Some(va_id)) => virtual_accounts::Entity::find_by_id(va_id)
            .one(db)
            .await?
            .filter(|va| va.expires_at.is_none_or(|at| at > now))
            .map(Caller::VirtualAccount),
        (None, None) => None,
    };
    Ok(caller.map(|c| (row, c)))
}

/// `last_used_at`, coalesced: requests record into memory, a periodic flush writes one UPDATE
/// per token used since the last flush, so authentication costs no write.
#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<i64, DateTime<Utc>>>,
}

impl UsageRecorder {
    pub fn record(&self, token_id: i64, at: DateTime<Utc>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.entry(token_id).or_insert(at);
        if *entry < at {
            *entry = at;
        }
    }

    /// Writes what was recorded; returns how many tokens were updated.
    pub async fn flush(&self, db: &impl ConnectionTrait) -> Result<usize, DbErr> {
        let batch: Vec<(i64, DateTime<Utc>)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().collect()
        };
        for (id, at) in &batch {
            access_tokens::Entity::update_many()
                .col_expr(access_tokens::Column::LastUsedAt, Expr::value(*at))
                .filter(access_tokens::Column::Id.eq(*id))
                .exec(db)
                .await?;
        }
        Ok(batch.len())
    }
}

/// The newest live token of a virtual account, for rotation scheduling.
pub async fn newest_live(
    db: &impl ConnectionTrait,
    va_id: i64,
    now: DateTime<Utc>,
) -> Result<Option<access_tokens::Model>, DbErr> {
    Ok(access_tokens::Entity::find()
        .filter(access_tokens::Column::VirtualAccountId.eq(va_id))
        .filter(access_tokens::Column::RevokedAt.is_null())
        .order_by_desc(access_tokens::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .find(|t| is_active(t, now)))
}
