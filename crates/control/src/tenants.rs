//! Tenants: the isolation boundary and first path segment of every MCP URL.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait};

use crate::audit::{Actor, Change, Event};
use crate::caller::Caller;
use crate::domain::{DisplayName, Slug, TenantRole};
use crate::error::{Error, Result};
use crate::page::{self, PageRequest, Paged};
use crate::store::entities::{teams, tenant_members, tenants, virtual_members};
use crate::teams::EVERYONE;

/// Creates a tenant with its built-in `everyone` team and, when a person creates it, that
/// person as its first admin member, atomically.
pub async fn create<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    creator: Option<i64>,
    slug: Slug,
    display_name: DisplayName,
    now: DateTime<Utc>,
) -> Result<tenants::Model> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let tenant = tenants::ActiveModel {
        slug: Set(slug.as_str().to_owned()),
        display_name: Set(display_name.into_inner()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| Error::unique_violation(e, "slug", format!("a tenant with slug {slug} already exists")))?;
    teams::ActiveModel {
        tenant_id: Set(tenant.id),
        slug: Set(EVERYONE.to_owned()),
        display_name: Set("Everyone".to_owned()),
        description: Set(Some("Every member of the tenant".to_owned())),
        builtin: Set(true),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    if let Some(user_id) = creator {
        tenant_members::ActiveModel {
            tenant_id: Set(tenant.id),
            user_id: Set(user_id),
            role: Set(TenantRole::Admin.as_str().to_owned()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(txn)
        .await?;
    }
    let details = serde_json::json!({"creator_is_admin": creator.is_some()});
    change.commit(Event::new("tenant.create", format!("tenant:{slug}")).tenant(&tenant).details(details)).await?;
    Ok(tenant)
}

/// Slugs of tenants by id.
pub async fn slugs_of(db: &impl ConnectionTrait, ids: Vec<i64>) -> Result<HashMap<i64, String>> {
    let rows = tenants::Entity::find().filter(tenants::Column::Id.is_in(ids)).all(db).await?;
    Ok(rows.into_iter().map(|t| (t.id, t.slug)).collect())
}

pub async fn find_by_slug(db: &impl ConnectionTrait, slug: &str) -> Result<Option<tenants::Model>> {
    Ok(tenants::Entity::find().filter(tenants::Column::Slug.eq(slug)).one(db).await?)
}

/// The tenants a user can see: all of them for a platform admin, else those they belong to.
pub async fn list_visible(
    db: &impl ConnectionTrait,
    caller: &Caller,
    page: PageRequest,
) -> Result<Paged<tenants::Model>> {
    let mut select = tenants::Entity::find();
    if let Caller::VirtualAccount(va) = caller {
        select = select.filter(tenants::Column::Id.eq(va.tenant_id));
    } else if let Some(user) = caller.user().filter(|u| !u.is_platform_admin) {
        select = select.filter(
            tenants::Column::Id.in_subquery(
                Query::select()
                    .column(tenant_members::Column::TenantId)
                    .from(tenant_members::Entity)
                    .and_where(tenant_members::Column::UserId.eq(user.id))
                    .to_owned(),
            ),
        );
    }
    Ok(page::fetch(db, select, tenants::Column::Id, |t| t.id, page).await?)
}

pub async fn update<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: tenants::Model,
    display_name: Option<DisplayName>,
    logo_url: Option<Option<String>>,
    now: DateTime<Utc>,
) -> Result<tenants::Model> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    let mut active: tenants::ActiveModel = tenant.into();
    if let Some(name) = display_name {
        active.display_name = Set(name.into_inner());
    }
    if let Some(logo) = logo_url {
        active.logo_url = Set(logo);
    }
    active.updated_at = Set(now);
    let tenant = active.update(txn).await?;
    let details = serde_json::json!({"display_name": tenant.display_name, "logo_url": tenant.logo_url});
    change
        .commit(Event::new("tenant.update", format!("tenant:{}", tenant.slug)).tenant(&tenant).details(details))
        .await?;
    Ok(tenant)
}

/// Deletes a tenant; members, teams and everything else in it go with it (foreign keys cascade).
pub async fn delete<C: TransactionTrait>(
    db: &C,
    actor: &Actor,
    tenant: tenants::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    let change = Change::begin(db, actor, now).await?;
    let txn = change.db();
    // Virtual-member links restrict server deletion; inside a dying tenant they go first.
    let server_ids = crate::servers::ids_in(txn, &tenant).await?;
    virtual_members::Entity::delete_many()
        .filter(virtual_members::Column::VirtualServerId.is_in(server_ids))
        .exec(txn)
        .await?;
    tenants::Entity::delete_by_id(tenant.id).exec(txn).await?;
    change.commit(Event::new("tenant.delete", format!("tenant:{}", tenant.slug)).tenant(&tenant)).await?;
    Ok(())
}

/// The caller's own role in a tenant, if they are a member.
pub async fn role_of(db: &impl ConnectionTrait, tenant_id: i64, user_id: i64) -> Result<Option<TenantRole>> {
    Ok(tenant_members::Entity::find()
        .filter(tenant_members::Column::TenantId.eq(tenant_id))
        .filter(tenant_members::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .map(|m| TenantRole::parse(&m.role))
        .transpose()?)
}

/// The user's roles in the given tenants, in one query.
pub async fn roles_in(
    db: &impl ConnectionTrait,
    user_id: i64,
    tenant_ids: Vec<i64>,
) -> Result<HashMap<i64, TenantRole>> {
    tenant_members::Entity::find()
        .filter(tenant_members::Column::UserId.eq(user_id))
        .filter(tenant_members::Column::TenantId.is_in(tenant_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|m| Ok((m.tenant_id, TenantRole::parse(&m.role)?)))
        .collect()
}
