//! Virtual accounts: non-human identities for automation, owned by the tenant, not a person.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::error::ApiResult;
use crate::store::entities::{tenants, virtual_accounts};

/// The virtual account of this name in the tenant, for collaborator subjects.
pub async fn resolve_subject(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
    name: &str,
) -> ApiResult<Option<virtual_accounts::Model>> {
    Ok(virtual_accounts::Entity::find()
        .filter(virtual_accounts::Column::TenantId.eq(tenant.id))
        .filter(virtual_accounts::Column::Name.eq(name))
        .one(db)
        .await?)
}

pub async fn name_of(db: &impl ConnectionTrait, id: i64) -> ApiResult<Option<String>> {
    Ok(virtual_accounts::Entity::find_by_id(id).one(db).await?.map(|va| va.name))
}
