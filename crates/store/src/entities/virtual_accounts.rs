use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "virtual_accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub description: Option<String>,
    /// `admin` lets the account manage the tenant through the API; NULL for none.
    pub tenant_role: Option<String>,
    pub expires_at: Option<ChronoDateTimeUtc>,
    pub rotate_interval_days: Option<i32>,
    pub rotate_grace_days: Option<i32>,
    pub last_rotated_at: Option<ChronoDateTimeUtc>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
