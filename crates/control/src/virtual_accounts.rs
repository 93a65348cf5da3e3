//! Virtual accounts: non-human identities for automation, owned by the tenant, not a person.
//! Their `permissions` are collaborator entries (`virtualaccount:<name>`) on servers; an account
//! with the tenant `admin` role can also manage the tenant through the API.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::{Actor, Change, Event};
use crate::auth::seal::Sealer;
use crate::domain::Slug;
use crate::error::{Error, FieldError, Result};
use crate::page::{self, PageRequest, Paged};
use crate::servers::{ServerRole, SubjectKind};
use crate::store::entities::{access_tokens, collaborators, servers, tenants, virtual_accounts};
use crate::tokens::{self, Issued};

/// Grace period of a regeneration when neither the request nor the account's rotation
/// settings name one.
pub const DEFAULT_GRACE_DAYS: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// Server slug in the account's tenant.
    pub server: String,
    pub role: ServerRole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoRotate {
    /// A new token is issued when the newest one is this many days old.
    pub interval_days: u32,
    /// The previous token keeps working this many days after a rotation.
    pub grace_days: u32,
}

pub struct NewVirtualAccount {
    pub name: Slug,
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    pub tenant_admin: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub auto_rotate: Option<AutoRotate>,
}

#[derive(Default)]
pub struct VirtualAccountPatch {
    pub description: Option<Option<String>>,
    pub permissions: Option<Vec<Permission>>,
    pub tenant_admin: Option<bool>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub auto_rotate: Option<Option<AutoRotate>>,
}

pub const TENANT_ADMIN: &str = "admin";

pub fn auto_rotate_of(va: &virtual_accounts::Model) -> Option<AutoRotate> {
    match (va.rotate_interval_days, va.rotate_grace_days) {
        (Some(interval), Some(grace)) => {
            Some(AutoRotate { interval_days: interval.max(0) as u32, grace_days: grace.max(0) as u32 })
        }
        _ => None,
    }
}

/// The virtual account of this name in the tenant, for collaborator subjects.
pub async fn resolve_subject(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    name: &str,
) -> Result<Option<virtual_accounts::Model>> {
    Ok(virtual_accounts::Entity::find()
        .filter(virtual_accounts::Column::TenantId.eq(tenant.id))
        .filter(virtual_accounts::Column::Name.eq(name))
        .one(db)
        .await?)
}

pub async fn name_of(db: &impl ConnectionTrait, id: i64) -> Result<Option<String>> {
    Ok(virtual_accounts::Entity::find_by_id(id).one(db).await?.map(|va| va.name))
}

/// The names of several accounts, by id, in one query.
pub async fn names_of(db: &impl ConnectionTrait, ids: Vec<i64>) -> Result<std::collections::HashMap<i64, String>> {
    if ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    Ok(virtual_accounts::Entity::find()
        .filter(virtual_accounts::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|va| (va.id, va.name))
        .collect())
}

pub async fn get(db: &impl ConnectionTrait, tenant: &tenants::Model, name: &str) -> Result<virtual_accounts::Model> {
    resolve_subject(db, tenant, name).await?.ok_or(Error::NotFound)
}

pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    page: PageRequest,
) -> Result<Paged<virtual_accounts::Model>> {
    let select = virtual_accounts::Entity::find().filter(virtual_accounts::Column::TenantId.eq(tenant.id));
    Ok(page::fetch(db, select, virtual_accounts::Column::Id, |v| v.id, page).await?)
}

fn va_condition(va_id: i64) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(collaborators::Column::SubjectKind.eq(SubjectKind::VirtualAccount.as_str()))
        .add(collaborators::Column::SubjectId.eq(va_id))
}

/// The account's permissions, read back from its collaborator entries.
pub async fn permissions_of(db: &impl ConnectionTrait, va: &virtual_accounts::Model) -> Result<Vec<Permission>> {
    let rows = collaborators::Entity::find().filter(va_condition(va.id)).all(db).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.server_id).collect();
    let slugs: BTreeMap<i64, String> = servers::Entity::find()
        .filter(servers::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s.slug))
        .collect();
    let mut out: Vec<Permission> = rows
        .into_iter()
        .filter_map(|r| {
            let server = slugs.get(&r.server_id)?.clone();
            Some(ServerRole::parse(&r.role).map(|role| Permission { server, role }))
        })
        .collect::<Result<_, _>>()?;
    out.sort_by(|a, b| a.server.cmp(&b.server));
    Ok(out)
}

/// Replaces the account's collaborator entries with `permissions`, keeping every server
/// with at least one manager.
async fn set_permissions(
    txn: &impl ConnectionTrait,
    tenant: &tenants::Model,
    va: &virtual_accounts::Model,
    permissions: &[Permission],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut errors = Vec::new();
    let mut wanted = Vec::new();
    let mut seen = HashSet::new();
    for (i, p) in permissions.iter().enumerate() {
        let field = format!("permissions[{i}].server");
        if !seen.insert(p.server.clone()) {
            errors.push(FieldError::new(field, "duplicate", format!("{} is listed twice", p.server)));
            continue;
        }
        match servers::Entity::find()
            .filter(servers::Column::TenantId.eq(tenant.id))
            .filter(servers::Column::Slug.eq(p.server.as_str()))
            .one(txn)
            .await?
        {
            Some(server) => wanted.push((server, p.role)),
            None => errors.push(FieldError::new(
                field,
                "unknown_server",
                format!("no server {} in tenant {}", p.server, tenant.slug),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let existing = collaborators::Entity::find().filter(va_condition(va.id)).all(txn).await?;
    collaborators::Entity::delete_many().filter(va_condition(va.id)).exec(txn).await?;
    for (server, role) in &wanted {
        collaborators::ActiveModel {
            server_id: Set(server.id),
            subject_kind: Set(SubjectKind::VirtualAccount.as_str().to_owned()),
            subject_id: Set(va.id),
            role: Set(role.as_str().to_owned()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(txn)
        .await?;
    }
    // A server this account managed must still have a manager.
    for old in existing.iter().filter(|c| c.role == ServerRole::Manager.as_str()) {
        let managers = collaborators::Entity::find()
            .filter(collaborators::Column::ServerId.eq(old.server_id))
            .filter(collaborators::Column::Role.eq(ServerRole::Manager.as_str()))
            .count(txn)
            .await?;
        if managers == 0 {
            let slug = servers::Entity::find_by_id(old.server_id).one(txn).await?.map(|s| s.slug).unwrap_or_default();
            return Err(Error::conflict(
                "last_manager",
                None,
                format!("{} is the last manager of server {slug}; give it another manager first", va.name),
            ));
        }
    }
    Ok(())
}

pub async fn create<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    new: NewVirtualAccount,
    now: DateTime<Utc>,
) -> Result<virtual_accounts::Model> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let va = virtual_accounts::ActiveModel {
        tenant_id: Set(tenant.id),
        name: Set(new.name.as_str().to_owned()),
        description: Set(new.description),
        tenant_role: Set(new.tenant_admin.then(|| TENANT_ADMIN.to_owned())),
        expires_at: Set(new.expires_at),
        rotate_interval_days: Set(new.auto_rotate.map(|r| r.interval_days as i32)),
        rotate_grace_days: Set(new.auto_rotate.map(|r| r.grace_days as i32)),
        last_rotated_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| Error::unique_violation(e, "name", format!("a virtual account named {} already exists", new.name)))?;
    set_permissions(txn, tenant, &va, &new.permissions, now).await?;
    let details = json!({"permissions": new.permissions, "tenant_role": va.tenant_role});
    change
        .commit(
            Event::new("virtual_account.create", format!("virtualaccount:{}", va.name)).tenant(tenant).details(details),
        )
        .await?;
    Ok(va)
}

pub async fn update<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    va: virtual_accounts::Model,
    patch: VirtualAccountPatch,
    now: DateTime<Utc>,
) -> Result<virtual_accounts::Model> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    if let Some(permissions) = &patch.permissions {
        set_permissions(txn, tenant, &va, permissions, now).await?;
    }
    let mut active: virtual_accounts::ActiveModel = va.into();
    if let Some(v) = patch.description {
        active.description = Set(v);
    }
    if let Some(admin) = patch.tenant_admin {
        active.tenant_role = Set(admin.then(|| TENANT_ADMIN.to_owned()));
    }
    if let Some(v) = patch.expires_at {
        active.expires_at = Set(v);
    }
    if let Some(v) = patch.auto_rotate {
        active.rotate_interval_days = Set(v.map(|r| r.interval_days as i32));
        active.rotate_grace_days = Set(v.map(|r| r.grace_days as i32));
    }
    active.updated_at = Set(now);
    let va = active.update(txn).await?;
    let details = json!({"permissions": patch.permissions, "tenant_role": va.tenant_role});
    change
        .commit(
            Event::new("virtual_account.update", format!("virtualaccount:{}", va.name)).tenant(tenant).details(details),
        )
        .await?;
    Ok(va)
}

/// Deletes an account, its tokens and its permissions.
pub async fn delete<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    va: virtual_accounts::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    set_permissions(txn, tenant, &va, &[], now).await?;
    virtual_accounts::Entity::delete_by_id(va.id).exec(txn).await?;
    change.commit(Event::new("virtual_account.delete", format!("virtualaccount:{}", va.name)).tenant(tenant)).await?;
    Ok(())
}

fn grace_of(va: &virtual_accounts::Model, requested: Option<u32>) -> Duration {
    let days = requested.or(va.rotate_grace_days.map(|d| d.max(0) as u32)).unwrap_or(DEFAULT_GRACE_DAYS);
    Duration::days(i64::from(days))
}

/// Issues a new token now; the previous ones keep working for the grace period.
pub async fn regenerate<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    va: &virtual_accounts::Model,
    grace_days: Option<u32>,
    now: DateTime<Utc>,
) -> Result<Issued> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let (issued, event) = tokens::regenerate_in(txn, tenant, va, grace_of(va, grace_days), now).await?;
    change.commit(event).await?;
    Ok(issued)
}

/// The scheduled-rotation job: for every account with `auto_rotate` whose newest live token
/// is `interval_days` old, issues a new token (sealed until its one-time pickup) and starts the
/// old token's grace period. Returns how many accounts were rotated.
pub async fn rotate_due<C: TransactionTrait + ConnectionTrait>(
    db: &C,
    sealer: &Sealer,
    now: DateTime<Utc>,
) -> Result<usize> {
    let candidates = virtual_accounts::Entity::find()
        .filter(virtual_accounts::Column::RotateIntervalDays.is_not_null())
        .all(db)
        .await?;
    let mut rotated = 0;
    let system = Actor::system();
    for va in candidates {
        let (Some(rotate), false) = (auto_rotate_of(&va), va.expires_at.is_some_and(|at| at <= now)) else { continue };
        let Some(newest) = tokens::newest_live(db, va.id, now).await? else { continue };
        if newest.pending_secret.is_some() || newest.created_at + Duration::days(i64::from(rotate.interval_days)) > now
        {
            continue;
        }
        let Some(tenant) = tenants::Entity::find_by_id(va.tenant_id).one(db).await? else { continue };
        let change = Change::begin(db, &system, now).await?;
        let txn = change.db();
        let (issued, event) = tokens::regenerate_in(txn, &tenant, &va, grace_of(&va, None), now).await?;
        let place = crate::auth::seal::Place::pending_token(&issued.row.public_id);
        let mut active: access_tokens::ActiveModel = issued.row.into();
        active.name = Set("scheduled rotation".to_owned());
        active.pending_secret = Set(Some(sealer.seal_at(issued.secret.as_bytes(), &place)?));
        active.update(txn).await?;
        change.commit(event).await?;
        rotated += 1;
    }
    Ok(rotated)
}

/// Hands out a token issued by scheduled rotation, once.
pub async fn claim<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    va: &virtual_accounts::Model,
    public_id: &str,
    sealer: &Sealer,
    now: DateTime<Utc>,
) -> Result<Issued> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let row = tokens::find(txn, tokens::Owner::VirtualAccount(va.id), public_id).await?;
    let sealed = row.pending_secret.clone().ok_or_else(|| {
        Error::conflict("nothing_to_claim", None, "this token was already handed out, or was not issued by rotation")
    })?;
    let place = crate::auth::seal::Place::pending_token(&row.public_id);
    let secret = String::from_utf8(sealer.open_at(&sealed, &place)?).map_err(|e| Error::Internal(e.into()))?;
    let mut active: access_tokens::ActiveModel = row.into();
    active.pending_secret = Set(None);
    let row = active.update(txn).await?;
    let details = json!({"token_id": row.public_id});
    change
        .commit(Event::new("token.claim", format!("virtualaccount:{}", va.name)).tenant(tenant).details(details))
        .await?;
    Ok(Issued { row, secret })
}
