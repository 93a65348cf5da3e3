//! Teams: named groups of tenant members, usable as collaborators. The built-in `everyone`
//! team exists in every tenant; its members are the tenant's members, so it is never edited.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait};

use crate::audit::{Actor, Change, Event};
use crate::domain::{DisplayName, Email, Slug};
use crate::error::{Error, Result};
use crate::members;
use crate::page::{self, PageRequest, Paged};
use crate::servers::SubjectKind;
use crate::store::entities::{collaborators, team_members, teams, tenant_members, tenants, users};

pub const EVERYONE: &str = "everyone";

pub struct TeamPatch {
    pub display_name: Option<DisplayName>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
}

fn builtin_refusal() -> Error {
    Error::conflict(
        "builtin_team",
        None,
        "the everyone team is built in: it always holds every tenant member and cannot be changed",
    )
}

pub async fn create<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    slug: Slug,
    display_name: DisplayName,
    description: Option<String>,
    now: DateTime<Utc>,
) -> Result<teams::Model> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let team = teams::ActiveModel {
        tenant_id: Set(tenant.id),
        slug: Set(slug.as_str().to_owned()),
        display_name: Set(display_name.into_inner()),
        description: Set(description),
        builtin: Set(false),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| {
        Error::unique_violation(e, "slug", format!("a team with slug {slug} already exists in this tenant"))
    })?;
    change.commit(Event::new("team.create", format!("team:{slug}")).tenant(tenant)).await?;
    Ok(team)
}

pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    page: PageRequest,
) -> Result<Paged<teams::Model>> {
    let select = teams::Entity::find().filter(teams::Column::TenantId.eq(tenant.id));
    Ok(page::fetch(db, select, teams::Column::Id, |t| t.id, page).await?)
}

pub async fn get(db: &impl ConnectionTrait, tenant: &tenants::Model, slug: &str) -> Result<teams::Model> {
    teams::Entity::find()
        .filter(teams::Column::TenantId.eq(tenant.id))
        .filter(teams::Column::Slug.eq(slug))
        .one(db)
        .await?
        .ok_or(Error::NotFound)
}

pub async fn update<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    team: teams::Model,
    patch: TeamPatch,
    now: DateTime<Utc>,
) -> Result<teams::Model> {
    if team.builtin {
        return Err(builtin_refusal());
    }
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let mut active: teams::ActiveModel = team.into();
    if let Some(name) = patch.display_name {
        active.display_name = Set(name.into_inner());
    }
    if let Some(description) = patch.description {
        active.description = Set(description);
    }
    let team = active.update(txn).await?;
    change.commit(Event::new("team.update", format!("team:{}", team.slug)).tenant(tenant)).await?;
    Ok(team)
}

/// Deletes a team; its server collaborations go with it.
pub async fn delete<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    team: teams::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    if team.builtin {
        return Err(builtin_refusal());
    }
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    collaborators::Entity::delete_many()
        .filter(collaborators::Column::SubjectKind.eq(SubjectKind::Team.as_str()))
        .filter(collaborators::Column::SubjectId.eq(team.id))
        .exec(txn)
        .await?;
    teams::Entity::delete_by_id(team.id).exec(txn).await?;
    change.commit(Event::new("team.delete", format!("team:{}", team.slug)).tenant(tenant)).await?;
    Ok(())
}

/// Members of a team with their users. For `everyone` these are the tenant's members.
pub async fn list_members(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    team: &teams::Model,
    page: PageRequest,
) -> Result<Paged<users::Model>> {
    if team.builtin {
        return Ok(members::list(db, tenant, page).await?.map(|m| m.user));
    }
    let select = team_members::Entity::find().filter(team_members::Column::TeamId.eq(team.id));
    let rows = page::fetch(db, select, team_members::Column::Id, |m| m.id, page).await?;
    let ids: Vec<i64> = rows.items.iter().map(|m| m.user_id).collect();
    let mut found = users::Entity::find().filter(users::Column::Id.is_in(ids.clone())).all(db).await?;
    // Keep the membership order of the page.
    found.sort_by_key(|u| ids.iter().position(|id| *id == u.id));
    Ok(Paged { items: found, next_after: rows.next_after })
}

/// Adds a tenant member to a team.
pub async fn add_member<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    team: &teams::Model,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<users::Model> {
    if team.builtin {
        return Err(builtin_refusal());
    }
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let user = members::existing_user(txn, "email", email).await?;
    let is_member = tenant_members::Entity::find()
        .filter(tenant_members::Column::TenantId.eq(tenant.id))
        .filter(tenant_members::Column::UserId.eq(user.id))
        .one(txn)
        .await?
        .is_some();
    if !is_member {
        return Err(crate::error::FieldError::new(
            "email",
            "not_a_member",
            format!("{email} is not a member of tenant {}; add them to the tenant first", tenant.slug),
        )
        .into());
    }
    team_members::ActiveModel {
        team_id: Set(team.id),
        user_id: Set(user.id),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| Error::unique_violation(e, "email", format!("{email} is already in team {}", team.slug)))?;
    let details = serde_json::json!({"email": email.as_str()});
    change.commit(Event::new("team.member_add", format!("team:{}", team.slug)).tenant(tenant).details(details)).await?;
    Ok(user)
}

pub async fn remove_member<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: &tenants::Model,
    team: &teams::Model,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<()> {
    if team.builtin {
        return Err(builtin_refusal());
    }
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let user = crate::users::find_by_email(txn, email).await?.ok_or(Error::NotFound)?;
    let deleted = team_members::Entity::delete_many()
        .filter(team_members::Column::TeamId.eq(team.id))
        .filter(team_members::Column::UserId.eq(user.id))
        .exec(txn)
        .await?
        .rows_affected;
    if deleted == 0 {
        return Err(Error::NotFound);
    }
    let details = serde_json::json!({"email": email.as_str()});
    change
        .commit(Event::new("team.member_remove", format!("team:{}", team.slug)).tenant(tenant).details(details))
        .await?;
    Ok(())
}
