//! Tenant membership and roles. A tenant always keeps at least one admin.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};

use crate::audit::{Actor, Change, Event};
use crate::domain::{Email, TenantRole};
use crate::error::{Error, FieldError, Result};
use crate::page::{self, PageRequest, Paged};
use crate::servers::SubjectKind;
use crate::store::entities::{collaborators, team_members, teams, tenant_members, tenants, users as user_rows};
use crate::users;

/// A membership with the user it belongs to.
pub struct Member {
    pub membership: tenant_members::Model,
    pub user: user_rows::Model,
    pub role: TenantRole,
}

impl Member {
    fn of(membership: tenant_members::Model, user: user_rows::Model) -> Result<Self> {
        Ok(Self { role: TenantRole::parse(&membership.role)?, membership, user })
    }
}

/// Loads the users of a page of membership rows in one query.
pub async fn with_users(db: &impl ConnectionTrait, rows: Paged<tenant_members::Model>) -> Result<Paged<Member>> {
    let ids: Vec<i64> = rows.items.iter().map(|m| m.user_id).collect();
    let mut by_id: HashMap<i64, user_rows::Model> = user_rows::Entity::find()
        .filter(user_rows::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    let next_after = rows.next_after;
    let items = rows
        .items
        .into_iter()
        .filter_map(|membership| by_id.remove(&membership.user_id).map(|user| Member::of(membership, user)))
        .collect::<Result<_>>()?;
    Ok(Paged { items, next_after })
}

pub async fn list(db: &impl ConnectionTrait, tenant: &tenants::Model, page: PageRequest) -> Result<Paged<Member>> {
    let select = tenant_members::Entity::find().filter(tenant_members::Column::TenantId.eq(tenant.id));
    let rows = page::fetch(db, select, tenant_members::Column::Id, |m| m.id, page).await?;
    with_users(db, rows).await
}

/// Finds an existing user by email for adding to a tenant or team; a missing user is a
/// validation error on `field`.
pub async fn existing_user(db: &impl ConnectionTrait, field: &str, email: &Email) -> Result<user_rows::Model> {
    users::find_by_email(db, email).await?.ok_or_else(|| {
        FieldError::new(field, "unknown_user", format!("no user with email {email}; create the user first")).into()
    })
}

pub async fn add<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    email: &Email,
    role: TenantRole,
    now: DateTime<Utc>,
) -> Result<Member> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let user = existing_user(txn, "email", email).await?;
    let membership = tenant_members::ActiveModel {
        tenant_id: Set(tenant.id),
        user_id: Set(user.id),
        role: Set(role.as_str().to_owned()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| Error::unique_violation(e, "email", format!("{email} is already a member of {}", tenant.slug)))?;
    let details = serde_json::json!({"role": role.as_str()});
    change.commit(Event::new("member.add", format!("user:{email}")).tenant(tenant).details(details)).await?;
    Member::of(membership, user)
}

pub async fn get(db: &impl ConnectionTrait, tenant: &tenants::Model, email: &Email) -> Result<Member> {
    let user = users::find_by_email(db, email).await?.ok_or(Error::NotFound)?;
    let membership = tenant_members::Entity::find()
        .filter(tenant_members::Column::TenantId.eq(tenant.id))
        .filter(tenant_members::Column::UserId.eq(user.id))
        .one(db)
        .await?
        .ok_or(Error::NotFound)?;
    Member::of(membership, user)
}

async fn ensure_other_admin(db: &impl ConnectionTrait, member: &Member) -> Result<()> {
    if member.role != TenantRole::Admin {
        return Ok(());
    }
    // Two admins demoting each other at once must not both see the other still there: the
    // tenant row is locked for the rest of the transaction (PostgreSQL; SQLite has one writer).
    tenants::Entity::find_by_id(member.membership.tenant_id).lock_exclusive().one(db).await?;
    let admins = tenant_members::Entity::find()
        .filter(tenant_members::Column::TenantId.eq(member.membership.tenant_id))
        .filter(tenant_members::Column::Role.eq(TenantRole::Admin.as_str()))
        .count(db)
        .await?;
    if admins <= 1 {
        return Err(Error::conflict(
            "last_admin",
            None,
            "a tenant must keep at least one admin; make another member an admin first",
        ));
    }
    Ok(())
}

pub async fn set_role<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    email: &Email,
    role: TenantRole,
    now: DateTime<Utc>,
) -> Result<Member> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let member = get(txn, tenant, email).await?;
    if role != TenantRole::Admin {
        ensure_other_admin(txn, &member).await?;
    }
    let mut active: tenant_members::ActiveModel = member.membership.into();
    active.role = Set(role.as_str().to_owned());
    let membership = active.update(txn).await?;
    let details = serde_json::json!({"role": role.as_str()});
    change.commit(Event::new("member.update", format!("user:{email}")).tenant(tenant).details(details)).await?;
    Member::of(membership, member.user)
}

/// Removes a member from the tenant, its teams, and the servers they were a collaborator on.
pub async fn remove<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<()> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let member = get(txn, tenant, email).await?;
    ensure_other_admin(txn, &member).await?;
    let team_ids: Vec<i64> = teams::Entity::find()
        .filter(teams::Column::TenantId.eq(tenant.id))
        .all(txn)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    team_members::Entity::delete_many()
        .filter(team_members::Column::TeamId.is_in(team_ids))
        .filter(team_members::Column::UserId.eq(member.user.id))
        .exec(txn)
        .await?;
    let server_ids = crate::servers::ids_in(txn, tenant).await?;
    collaborators::Entity::delete_many()
        .filter(collaborators::Column::ServerId.is_in(server_ids))
        .filter(collaborators::Column::SubjectKind.eq(SubjectKind::User.as_str()))
        .filter(collaborators::Column::SubjectId.eq(member.user.id))
        .exec(txn)
        .await?;
    tenant_members::Entity::delete_by_id(member.membership.id).exec(txn).await?;
    change.commit(Event::new("member.remove", format!("user:{email}")).tenant(tenant)).await?;
    Ok(())
}
